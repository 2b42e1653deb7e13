#include "proxy/connection.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstring>

#include "absl/strings/str_cat.h"

namespace postern {
namespace {

constexpr size_t kMaxIov = 16;

uv_stream_t* Stream(uv_tcp_t* t) { return reinterpret_cast<uv_stream_t*>(t); }

}  // namespace

Connection::Ptr Connection::Create(uv_loop_t* loop, BufferPool& pool, ConnectionHandler* handler) {
  auto* c = new Connection(pool, handler);
  uv_tcp_init(loop, &c->tcp_);
  c->tcp_.data = c;
  c->open_handles_ = 1;
  return Ptr(c);
}

Connection::Connection(BufferPool& pool, ConnectionHandler* handler)
    : pool_(&pool), handler_(handler), input_(pool), out_(pool) {}

Connection::~Connection() = default;

int Connection::Connect(const sockaddr* addr) {
  auto* req = new uv_connect_t;
  req->data = this;
  int r = uv_tcp_connect(req, &tcp_, addr, &Connection::OnConnect);
  if (r != 0) delete req;
  return r;
}

void Connection::OnConnect(uv_connect_t* req, int status) {
  auto* c = static_cast<Connection*>(req->data);
  delete req;
  if (c->closing_ || c->handler_ == nullptr) return;
  c->handler_->OnConnected(*c, status);
}

void Connection::SetSocketOptions() {
  // No Nagle anywhere: every response we write is complete and must leave
  // now, or a peer with delayed ACKs stalls ~40 ms (TESTBED.md).
  uv_tcp_nodelay(&tcp_, 1);
  uv_tcp_keepalive(&tcp_, 1, 300);
}

void Connection::StartReading() {
  if (closing_) return;  // a closing connection reads only to discard (Close)
  ReadStart();
}

void Connection::ReadStart() {
  if (reading_ || ended_) return;
  if (uv_read_start(Stream(&tcp_), &Connection::OnAlloc, &Connection::OnRead) == 0) {
    reading_ = true;
  }
}

void Connection::StopReading() {
  if (!reading_) return;
  uv_read_stop(Stream(&tcp_));
  reading_ = false;
}

void Connection::OnAlloc(uv_handle_t* h, size_t, uv_buf_t* buf) {
  auto* c = static_cast<Connection*>(h->data);
  absl::Span<char> span = c->ReadTarget().Reserve();
  buf->base = span.data();
  buf->len = span.size();
}

void Connection::OnRead(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) {
  auto* c = static_cast<Connection*>(s->data);
  if (buf != nullptr && buf->base != nullptr) {
    c->ReadTarget().Commit(nread > 0 ? static_cast<size_t>(nread) : 0);
  }
  c->HandleRead(nread);
}

void Connection::HandleRead(ssize_t nread) {
  if (nread == 0) return;  // EAGAIN
  if (closing_) {
    // Lingering: discard, and finish at the peer's EOF.
    input_.Clear();
    if (engine_) engine_->cipher_in().Clear();
    if (nread < 0) FinishClose();
    return;
  }
  if (nread < 0) {
    Fail(nread == UV_EOF ? "peer closed" : absl::StrCat("read error: ", uv_strerror(nread)));
    return;
  }
  if (engine_) {
    size_t before = input_.size();
    TlsEngine::Result r = engine_->Read(input_);
    bytes_in_ += input_.size() - before;
    out_.MoveFrom(engine_->cipher_out());
    Flush();
    if (r == TlsEngine::Result::kError) {
      Fail(absl::StrCat("tls error: ", engine_->error()));
      return;
    }
    if (r == TlsEngine::Result::kClosed) {
      Fail("peer sent close_notify");
      return;
    }
    if (input_.empty()) return;
  } else {
    bytes_in_ += static_cast<size_t>(nread);
  }
  if (handler_ != nullptr) handler_->OnData(*this);
}

void Connection::Fail(absl::string_view reason) {
  if (ended_) return;
  ended_ = true;
  StopReading();
  if (handler_ != nullptr) handler_->OnEnd(*this, reason);
}

void Connection::Write(Buffer& data) {
  if (closing_ || data.empty()) {
    data.Clear();
    return;
  }
  bytes_out_ += data.size();
  if (engine_) {
    engine_->Write(data);  // an engine error surfaces on the next Read
    data.Clear();
    out_.MoveFrom(engine_->cipher_out());
  } else {
    out_.MoveFrom(data);
  }
  Flush();
}

void Connection::Write(absl::string_view data) {
  if (closing_ || data.empty()) return;
  bytes_out_ += data.size();
  if (engine_) {
    engine_->Write(data);
    out_.MoveFrom(engine_->cipher_out());
  } else {
    out_.Append(data);
  }
  Flush();
}

void Connection::Flush() {
  if (in_flight_ == 0) StartWrites();
  // Watermarks are judged on every change, also while a write is in flight
  // (skipping them then once lost the OnDrained that resumes the peer).
  if (out_.size() > high_) {
    above_ = true;
  } else if (above_ && out_.size() <= low_) {
    above_ = false;
    if (handler_ != nullptr && !closing_) handler_->OnDrained(*this);
  }
  if (closing_ && out_.empty() && in_flight_ == 0) FinishClose();
}

void Connection::StartWrites() {
  iovec iov[kMaxIov];
  while (!out_.empty()) {
    size_t n = out_.Peek(iov, kMaxIov);
    size_t total = 0;
    for (size_t i = 0; i < n; ++i) total += iov[i].iov_len;
    // uv_buf_t has iovec's layout on Unix.
    int r = uv_try_write(Stream(&tcp_), reinterpret_cast<uv_buf_t*>(iov), n);
    if (r > 0) out_.Drain(static_cast<size_t>(r));
    if (r < 0 || static_cast<size_t>(r) < total) break;
  }
  if (!out_.empty()) {
    // The kernel is full (or an error is pending: uv_write reports it, later,
    // through OnWrite, never from inside a caller's Write()).
    size_t n = out_.Peek(iov, kMaxIov);
    in_flight_ = 0;
    for (size_t i = 0; i < n; ++i) in_flight_ += static_cast<uint32_t>(iov[i].iov_len);
    auto* req = new uv_write_t;
    req->data = this;
    int r = uv_write(req, Stream(&tcp_), reinterpret_cast<uv_buf_t*>(iov), static_cast<unsigned>(n),
                     &Connection::OnWrite);
    if (r != 0) {
      // The socket is gone; the read side reports it.
      delete req;
      in_flight_ = 0;
      out_.Clear();
    }
  }
}

void Connection::OnWrite(uv_write_t* req, int status) {
  auto* c = static_cast<Connection*>(req->data);
  delete req;
  c->AfterWrite(status);
}

void Connection::AfterWrite(int status) {
  size_t done = in_flight_;
  in_flight_ = 0;
  if (status < 0) {
    out_.Clear();
    if (closing_) {
      FinishClose();
    } else {
      Fail(absl::StrCat("write error: ", uv_strerror(status)));
    }
    return;
  }
  out_.Drain(done);
  Flush();
}

void Connection::StartServerTls(const TlsContext& ctx) {
  engine_ = TlsEngine::CreateServer(ctx, *pool_);
}

const char* Connection::tls_version() const {
  if (engine_ == nullptr || !engine_->handshake_done()) return "none";
  return engine_->version();
}

std::string Connection::FormatAddress(const sockaddr* sa, bool with_port) {
  char ip[INET6_ADDRSTRLEN] = {0};
  int port = 0;
  if (sa->sa_family == AF_INET) {
    auto* in = reinterpret_cast<const sockaddr_in*>(sa);
    inet_ntop(AF_INET, &in->sin_addr, ip, sizeof(ip));
    port = ntohs(in->sin_port);
    return with_port ? absl::StrCat(ip, ":", port) : std::string(ip);
  }
  if (sa->sa_family == AF_INET6) {
    auto* in6 = reinterpret_cast<const sockaddr_in6*>(sa);
    inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof(ip));
    port = ntohs(in6->sin6_port);
    return with_port ? absl::StrCat("[", ip, "]:", port) : std::string(ip);
  }
  return "";
}

std::string Connection::PeerAddress() const {
  sockaddr_storage ss;
  int len = sizeof(ss);
  if (uv_tcp_getpeername(&tcp_, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return "";
  return FormatAddress(reinterpret_cast<sockaddr*>(&ss), true);
}

void Connection::Close(bool abort) {
  if (closing_) return;
  closing_ = true;
  handler_ = nullptr;
  input_.Clear();
  closing_state_ = std::make_unique<Closing>();
  uv_timer_init(tcp_.loop, &closing_state_->linger);
  closing_state_->linger.data = this;
  ++open_handles_;
  uv_timer_start(
      &closing_state_->linger,
      [](uv_timer_t* t) {
        auto* c = static_cast<Connection*>(t->data);
        c->out_.Clear();
        c->FinishClose();
      },
      linger_ms_, 0);
  if (abort || (ended_ && out_.empty())) {
    StopReading();
    out_.Clear();
    if (in_flight_ == 0) FinishClose();
    return;
  }
  if (engine_ && engine_->handshake_done()) {
    engine_->Shutdown();
    out_.MoveFrom(engine_->cipher_out());
  }
  // Keep reading (and discarding) until the peer's EOF or the linger timer.
  ReadStart();
  Flush();
}

void Connection::FinishClose() {
  // Everything we meant to say has been handed to the kernel (or given up):
  // half-close so the peer sees EOF after our last byte, then wait for its
  // EOF (HandleRead) or the linger timer.
  if (in_flight_ > 0) return;  // OnWrite comes back here
  if (!shutdown_sent_ && !ended_ && out_.empty() && reading_) {
    shutdown_sent_ = true;
    closing_state_->shutdown.data = this;
    if (uv_shutdown(&closing_state_->shutdown, Stream(&tcp_), &Connection::OnShutdown) == 0) {
      return;
    }
  }
  if (uv_is_closing(reinterpret_cast<uv_handle_t*>(&tcp_))) return;
  engine_.reset();
  input_.Clear();
  out_.Clear();
  uv_close(reinterpret_cast<uv_handle_t*>(&tcp_), &Connection::OnClosed);
  uv_close(reinterpret_cast<uv_handle_t*>(&closing_state_->linger), &Connection::OnClosed);
}

void Connection::OnShutdown(uv_shutdown_t* req, int status) {
  auto* c = static_cast<Connection*>(req->data);
  // Wait for the peer's EOF unless the shutdown failed.
  if (status < 0) {
    c->reading_ = false;
    c->ended_ = true;
    c->FinishClose();
  }
}

void Connection::OnClosed(uv_handle_t* h) {
  auto* c = static_cast<Connection*>(h->data);
  if (--c->open_handles_ == 0) delete c;
}

}  // namespace postern
