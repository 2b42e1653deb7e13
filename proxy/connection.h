#pragma once

// One TCP connection on a worker loop, optionally with TLS on top (from the
// start for 993/995, or pushed later by STARTTLS/STLS).
//
// The socket is a plain non-blocking fd watched through the worker's Poller
// (poller.h says why not a uv_tcp_t). Reads land in pool buffers (ciphertext
// into the TLS engine, plaintext into input()); writes go straight to the
// kernel with sendmsg and only what it does not take is queued, with write
// readiness watched until it is gone. Every byte buffer goes back to the pool
// as soon as it is drained, so an idle connection holds none.
//
// Lifetime: a Connection is created with Create() and owned through
// ConnectionPtr. Releasing the pointer calls Close(): the connection then
// owns itself, flushes what is queued (TLS close_notify included), half-closes,
// drains the peer for a short linger, and frees itself in the close callback.
// The handler is never called again after Close().

#include <sys/socket.h>
#include <uv.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/strings/string_view.h"
#include "protocol/buffer.h"
#include "proxy/config.h"
#include "proxy/poller.h"
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
  // Raw mode only (set_raw): the socket is readable and the handler reads
  // it itself (splice), or calls ReadBuffered() for the normal path.
  virtual void OnReadable(Connection& c);
  // Raw mode only: the socket became writable after WaitWritable().
  virtual void OnWritable(Connection& /*c*/) {}
  // The server-side TLS handshake just finished (what was written before it
  // has been flushed to the peer).
  virtual void OnTlsReady(Connection& /*c*/) {}
};

class Connection final : private Poller::Watcher {
 public:
  struct Deleter {
    void operator()(Connection* c) const { c->Close(); }
  };
  using Ptr = std::unique_ptr<Connection, Deleter>;

  // A connection without a socket yet: Adopt() an accepted one or Connect().
  static Ptr Create(Poller& poller, BufferPool& pool, ConnectionHandler* handler);

  uv_loop_t* loop() const { return poller_->loop(); }
  int fd() const { return fd_; }  // -1 before Adopt/Connect and once closed
  void set_handler(ConnectionHandler* h) { handler_ = h; }

  // Takes an accepted, non-blocking socket.
  void Adopt(int fd);
  // Starts a TCP connect (from `source` when given: its port 0 lets the
  // kernel pick one per destination, IP_BIND_ADDRESS_NO_PORT): 0 and the
  // handler's OnConnected reports the result later, or a negative errno now.
  int Connect(const sockaddr* addr, const SocketAddress* source = nullptr);
  // TCP_NODELAY (we never wait for more bytes), keepalive.
  void SetSocketOptions();
  // The same on any socket (a listening one passes them to accepted ones).
  static bool SetTcpOptions(int fd);

  void StartReading();
  void StopReading();
  bool reading() const { return reading_; }

  // Plaintext received and not yet consumed.
  Buffer& input() { return input_; }

  // Raw mode (plaintext only): readiness goes to the handler's OnReadable /
  // OnWritable, which move bytes on fd() themselves (the relay's splice).
  // Close() leaves raw mode.
  void set_raw(bool raw) { raw_ = raw; }
  // Reads into input() as outside raw mode (then OnData), for one event.
  void ReadBuffered() { ReadSome(); }
  // Processes bytes already in input() as if they had just been read (they
  // came behind a PROXY header): with TLS they are the first ciphertext.
  void Rescan();
  // Raw mode: OnWritable once the socket can take bytes.
  void WaitWritable();
  // Bytes the handler moved itself (for bytes_in()/bytes_out()).
  void CountRaw(uint64_t in, uint64_t out) {
    bytes_in_ += in;
    bytes_out_ += out;
  }
  // Ends the connection as a read error would: reading stops, the handler's
  // OnEnd gets `reason`.
  void Fail(absl::string_view reason);

  // While corked, writes are queued and handed to the kernel together at
  // Uncork() (one sendmsg for a batch of replies).
  void Cork() { corked_ = true; }
  void Uncork();
  // TCP_NOTSENT_LOWAT (bytes the kernel may hold unsent for this socket; 0:
  // the system default). Before login Postern keeps it at
  // limits.max_pending_replies (set on the listening socket, inherited), so
  // a client that does not read cannot make the kernel hold megabytes of
  // replies for it either; the relay restores the default.
  static bool SetNotSentLowat(int fd, uint32_t bytes);

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
  // False when no engine could be made (then nothing may go on in
  // plaintext: the caller ends the session).
  [[nodiscard]] bool StartServerTls(const TlsContext& ctx);
  // Client-side TLS from now on (toward a backend): whatever plaintext was
  // received before is dropped (never taken as an answer: response
  // injection after STARTTLS, DIGEST e.5), the ClientHello goes out, and
  // OnTlsReady comes once the handshake (and the peer's certificate check
  // against `name`) is done. `offer`: a session to resume, or null.
  [[nodiscard]] bool StartClientTls(const TlsContext& ctx, const std::string& name,
                                    SSL_SESSION* offer);
  // The newest resumable session the peer gave us (client side), or null.
  TlsSession TakeTlsSession() { return engine_ ? engine_->TakeSession() : TlsSession(); }
  bool tls_resumed() const { return engine_ != nullptr && engine_->resumed(); }
  bool tls() const { return engine_ != nullptr; }
  const char* tls_version() const;
  // The negotiated cipher suite ("TLS_AES_128_GCM_SHA256"), "" before TLS.
  const char* tls_cipher() const;
  // The server name the client asked for (SNI), "" if none.
  const char* tls_server_name() const;
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
  // The process is stopping: every connection of this loop thread that is
  // closing gives its peer at most `ms` more (lingers started later use
  // set_linger).
  static void ShortenLingers(uint32_t ms);
  // The process is stopping: from loop time `loop_ms` on, no closing
  // connection of this loop thread lingers on (see OnLingerTimeout). An
  // earlier time than one set before wins.
  static void StopLingeringAt(uint64_t loop_ms);

 private:
  Connection(BufferPool& pool, ConnectionHandler* handler);
  ~Connection();

  static void OnClosed(uv_handle_t* h);

  // Poller::Watcher
  void OnReady(uint32_t events) override;

  void ReadStart();
  void ReadSome();
  // nread: bytes read, UV_EOF, or a negative errno.
  void HandleRead(ssize_t nread);
  void FinishConnect();
  void Flush();
  void StartWrites();
  void WriteFailed();
  // Tells the poller what we wait for now (nothing: the fd is not watched).
  // EPOLLIN is only dropped when `settle` (see the .cc).
  void UpdateInterest(bool settle = false);
  void FinishClose();
  // The linger ran out: another period for a peer that took some of our
  // bytes since the last look (a slow reader of the literal before a BYE),
  // until the process must stop; otherwise Abandon(reset).
  void OnLingerTimeout();
  // Bytes we still owe the peer: queued here and not yet acknowledged by it.
  uint64_t Unsent() const;
  // Closing, and nothing more is flushed or read (abort, linger timer
  // expired, write error): FinishClose closes the socket at once.
  // `reset`: we give up on a peer that does not take our bytes (the linger
  // ran out, an abort): if any are still unsent, the socket is reset.
  void Abandon(bool reset = false);
  Buffer& ReadTarget() { return engine_ ? engine_->cipher_in() : input_; }

  // Only a closing connection needs a timer (its linger); it also frees the
  // connection from its close callback, after the poller's dispatch.
  struct Closing {
    uv_timer_t linger;
    uint64_t unsent = 0;   // Unsent() when the linger (re)started
    uint64_t started = 0;  // loop time the close began
    // The loop thread's closing connections, so a shutdown can cut their
    // lingers short (ShortenLingers).
    Closing* prev = nullptr;
    Closing* next = nullptr;
  };
  static thread_local Closing* closing_list_;
  static thread_local uint64_t stop_lingering_at_;  // loop time; 0: not stopping

  Poller* poller_;
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
  int fd_ = -1;
  int write_error_ = 0;  // negative errno of a failed send, reported from the loop
  uint32_t high_ = UINT32_MAX;
  uint32_t low_ = 0;
  uint32_t linger_ms_ = 5000;
  uint32_t interest_ = 0;  // EPOLLIN / EPOLLOUT registered with the poller
  // Bit fields: an idle connection fits a 160-byte allocation.
  bool want_write_ : 1 = false;      // the kernel was full: waiting for EPOLLOUT
  bool raw_write_wait_ : 1 = false;  // raw mode: OnWritable when writable
  bool raw_ : 1 = false;
  bool connecting_ : 1 = false;
  bool above_ : 1 = false;
  bool reading_ : 1 = false;
  bool closing_ : 1 = false;
  bool ended_ : 1 = false;  // peer EOF/error seen
  bool shutdown_sent_ : 1 = false;
  bool registered_ : 1 = false;  // the fd is in the poller's epoll set
  bool corked_ : 1 = false;
  uint64_t bytes_in_ = 0;
  uint64_t bytes_out_ = 0;
};

using ConnectionPtr = Connection::Ptr;

}  // namespace postern
