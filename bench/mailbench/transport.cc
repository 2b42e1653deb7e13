#include "bench/mailbench/transport.h"

#include <errno.h>
#include <openssl/err.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

#include "absl/strings/str_cat.h"

namespace postern::mailbench {

Transport::Transport(int fd, SSL* ssl) : fd_(fd), ssl_(ssl) {
  if (ssl_ != nullptr) SSL_set_fd(ssl_, fd_);
}

Transport::~Transport() {
  if (ssl_ != nullptr) SSL_free(ssl_);
  if (fd_ >= 0) close(fd_);
}

Io Transport::FinishConnect() {
  int err = 0;
  socklen_t len = sizeof(err);
  if (getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
  if (err == 0) return Io::kOk;
  error_ = absl::StrCat("connect: ", std::strerror(err));
  return Io::kError;
}

Io Transport::SslResult(int ret, const char* what) {
  int e = SSL_get_error(ssl_, ret);
  switch (e) {
    case SSL_ERROR_WANT_READ:
      return Io::kWantRead;
    case SSL_ERROR_WANT_WRITE:
      return Io::kWantWrite;
    case SSL_ERROR_ZERO_RETURN:
      return Io::kEof;
    case SSL_ERROR_SYSCALL:
      if (ERR_peek_error() == 0 && (ret == 0 || errno == 0 || errno == ECONNRESET)) {
        // The peer closed without close_notify (or reset): end of stream.
        ERR_clear_error();
        return Io::kEof;
      }
      [[fallthrough]];
    default: {
      char buf[256];
      unsigned long code = ERR_get_error();
      ERR_error_string_n(code, buf, sizeof(buf));
      error_ = absl::StrCat(what, ": ", code != 0 ? buf : std::strerror(errno));
      ERR_clear_error();
      return Io::kError;
    }
  }
}

Io Transport::Handshake() {
  if (ssl_ == nullptr) return Io::kOk;
  int r = SSL_do_handshake(ssl_);
  if (r == 1) return Io::kOk;
  Io io = SslResult(r, "TLS handshake");
  if (io == Io::kEof) {
    error_ = "TLS handshake: connection closed";
    return Io::kError;
  }
  return io;
}

Io Transport::Read(char* buf, size_t cap, size_t* n) {
  if (ssl_ != nullptr) {
    int r = SSL_read(ssl_, buf, static_cast<int>(std::min<size_t>(cap, 1 << 30)));
    if (r > 0) {
      *n = static_cast<size_t>(r);
      return Io::kOk;
    }
    return SslResult(r, "TLS read");
  }
  for (;;) {
    ssize_t r = recv(fd_, buf, cap, 0);
    if (r > 0) {
      *n = static_cast<size_t>(r);
      return Io::kOk;
    }
    if (r == 0) return Io::kEof;
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return Io::kWantRead;
    if (errno == ECONNRESET) return Io::kEof;
    error_ = absl::StrCat("read: ", std::strerror(errno));
    return Io::kError;
  }
}

Io Transport::Write(absl::string_view data, size_t* n) {
  if (ssl_ != nullptr) {
    int r = SSL_write(ssl_, data.data(), static_cast<int>(std::min<size_t>(data.size(), 1 << 30)));
    if (r > 0) {
      *n = static_cast<size_t>(r);
      return Io::kOk;
    }
    Io io = SslResult(r, "TLS write");
    if (io == Io::kEof) {
      error_ = "TLS write: connection closed";
      return Io::kError;
    }
    return io;
  }
  for (;;) {
    ssize_t r = send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
    if (r >= 0) {
      *n = static_cast<size_t>(r);
      return Io::kOk;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return Io::kWantWrite;
    error_ = absl::StrCat("write: ", std::strerror(errno));
    return Io::kError;
  }
}

void Transport::Shutdown() {
  if (ssl_ != nullptr && SSL_is_init_finished(ssl_)) {
    SSL_shutdown(ssl_);
    ERR_clear_error();
  }
}

}  // namespace postern::mailbench
