#pragma once

// A client connection's byte pipe: a non-blocking TCP socket, with an
// optional BoringSSL client on top (SSL_set_fd). The owner polls the socket
// (uv_poll) for whatever the last call wants.

#include <openssl/ssl.h>

#include <cstddef>
#include <string>

#include "absl/strings/string_view.h"

namespace postern::mailbench {

enum class Io { kOk, kWantRead, kWantWrite, kEof, kError };

class Transport {
 public:
  // Takes ownership of `fd` (non-blocking, connected or connecting) and `ssl`
  // (nullptr for plaintext).
  Transport(int fd, SSL* ssl);
  ~Transport();
  Transport(const Transport&) = delete;
  Transport& operator=(const Transport&) = delete;

  // Finishes a non-blocking connect: kOk, or kError with error().
  Io FinishConnect();
  // Runs the TLS handshake (kOk at once for plaintext).
  Io Handshake();
  // Reads up to `cap` bytes into `buf`; *n set on kOk.
  Io Read(char* buf, size_t cap, size_t* n);
  // Writes a prefix of `data`; *n set on kOk.
  Io Write(absl::string_view data, size_t* n);
  // Sends a TLS close_notify if possible; never waits.
  void Shutdown();

  bool tls() const { return ssl_ != nullptr; }
  bool resumed() const { return ssl_ != nullptr && SSL_session_reused(ssl_); }
  const std::string& error() const { return error_; }

 private:
  Io SslResult(int ret, const char* what);

  int fd_;
  SSL* ssl_;
  std::string error_;
};

}  // namespace postern::mailbench
