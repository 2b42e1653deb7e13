#pragma once

// One TCP connection on a worker loop, optionally with TLS on top (from the
// start for 993/995, or pushed later by STARTTLS/STLS).
//
// Reads land in pool buffers (ciphertext into the TLS engine, plaintext into
// input()); writes try uv_try_write first and queue the rest, with one
// uv_write in flight at a time. Every byte buffer goes back to the pool as
// soon as it is drained, so an idle connection holds none.
//
// Lifetime: a Connection is created with Create() and owned through
// ConnectionPtr. Releasing the pointer calls Close(): the connection then
// owns itself, flushes what is queued (TLS close_notify included), half-closes,
// drains the peer for a short linger, and frees itself in the close callback.
// The handler is never called again after Close().

#include <uv.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/strings/string_view.h"
#include "protocol/buffer.h"
#include "tls/tls_context.h"
#include "tls/tls_engine.h"

namespace postern {

class Connection;

class ConnectionHandler {
 public:
  virtual ~ConnectionHandler() = default;
  // New plaintext is in c.input(). The handler drains what it consumes.
  virtual void OnData(Connection& c) = 0;
  // Queued output fell to the low watermark (after having passed it), or to
  // zero when no watermark is set.
  virtual void OnDrained(Connection& c) = 0;
  // The peer closed, reset, or broke the TLS layer: `reason` says which.
  // The connection reads nothing more; the handler should Close() it.
  virtual void OnEnd(Connection& c, absl::string_view reason) = 0;
  // A TCP connect started with Connect() finished (status 0) or failed.
  virtual void OnConnected(Connection& /*c*/, int /*status*/) {}
};

class Connection {
 public:
  struct Deleter {
    void operator()(Connection* c) const { c->Close(); }
  };
  using Ptr = std::unique_ptr<Connection, Deleter>;

  // Wraps a fresh uv_tcp_t of `loop` (accept into tcp() next, or Connect()).
  static Ptr Create(uv_loop_t* loop, BufferPool& pool, ConnectionHandler* handler);

  uv_tcp_t* tcp() { return &tcp_; }
  uv_loop_t* loop() const { return tcp_.loop; }
  void set_handler(ConnectionHandler* h) { handler_ = h; }

  // Starts a TCP connect; the handler's OnConnected reports the result.
  int Connect(const sockaddr* addr);
  // TCP_NODELAY (we never wait for more bytes), keepalive.
  void SetSocketOptions();

  void StartReading();
  void StopReading();
  bool reading() const { return reading_; }

  // Plaintext received and not yet consumed.
  Buffer& input() { return input_; }

  // Queues plaintext (moved out of `data`), encrypting it when TLS is on.
  void Write(Buffer& data);
  void Write(absl::string_view data);
  // Bytes queued toward the peer and not yet accepted by the kernel.
  size_t pending() const { return out_.size(); }
  // OnDrained fires when pending() falls to `low` after passing `high`.
  void SetWatermarks(size_t high, size_t low) {
    high_ = static_cast<uint32_t>(std::min<size_t>(high, UINT32_MAX));
    low_ = static_cast<uint32_t>(std::min<size_t>(low, UINT32_MAX));
  }
  bool above_high_watermark() const { return out_.size() > high_; }

  // Server-side TLS from now on: whatever arrives next is a ClientHello.
  void StartServerTls(const TlsContext& ctx);
  bool tls() const { return engine_ != nullptr; }
  const char* tls_version() const;
  bool handshake_done() const { return engine_ != nullptr && engine_->handshake_done(); }

  // Peer address as "ip:port" (empty when unknown) and the bare IP.
  std::string PeerAddress() const;
  static std::string FormatAddress(const sockaddr* sa, bool with_port);

  uint64_t bytes_in() const { return bytes_in_; }    // plaintext received
  uint64_t bytes_out() const { return bytes_out_; }  // plaintext sent

  // How long a closed connection may flush and wait for the peer's EOF.
  void set_linger(uint32_t ms) { linger_ms_ = ms; }

  // See the class comment. Idempotent. `abort` skips the flush.
  void Close(bool abort = false);

 private:
  Connection(BufferPool& pool, ConnectionHandler* handler);
  ~Connection();

  static void OnAlloc(uv_handle_t* h, size_t suggested, uv_buf_t* buf);
  static void OnRead(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf);
  static void OnWrite(uv_write_t* req, int status);
  static void OnShutdown(uv_shutdown_t* req, int status);
  static void OnConnect(uv_connect_t* req, int status);
  static void OnClosed(uv_handle_t* h);

  void ReadStart();
  void HandleRead(ssize_t nread);
  void Flush();
  void StartWrites();
  void AfterWrite(int status);
  void FinishClose();
  void Fail(absl::string_view reason);
  Buffer& ReadTarget() { return engine_ ? engine_->cipher_in() : input_; }

  // Only the socket lives in every connection; requests and the linger
  // timer are allocated when needed (an idle connection is kept small).
  struct Closing {
    uv_shutdown_t shutdown;
    uv_timer_t linger;
  };

  uv_tcp_t tcp_;
  std::unique_ptr<Closing> closing_state_;

  BufferPool* pool_;
  ConnectionHandler* handler_;
  // A closing connection flushes and drains what the peer still sends for at
  // most linger_ms_ (closing with unread bytes would make the kernel send RST
  // and could destroy our last line, e.g. "* BYE", before the peer reads it).
  std::unique_ptr<TlsEngine> engine_;
  Buffer input_;
  Buffer out_;  // bytes for the socket (ciphertext when TLS)
  // Sized to keep an idle connection in a small allocation class.
  uint32_t in_flight_ = 0;  // bytes of out_'s head handed to uv_write (<= 16 slabs)
  uint32_t high_ = UINT32_MAX;
  uint32_t low_ = 0;
  uint32_t linger_ms_ = 5000;
  uint8_t open_handles_ = 0;
  bool above_ = false;
  bool reading_ = false;
  bool closing_ = false;
  bool ended_ = false;  // peer EOF/error seen
  bool shutdown_sent_ = false;
  uint64_t bytes_in_ = 0;
  uint64_t bytes_out_ = 0;
};

using ConnectionPtr = Connection::Ptr;

}  // namespace postern
