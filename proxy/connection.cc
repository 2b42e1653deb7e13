#include "proxy/connection.h"

#include <arpa/inet.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <openssl/ssl.h>

#include "absl/strings/str_cat.h"
#include "spdlog/spdlog.h"

namespace postern {
namespace {

constexpr size_t kMaxIov = 16;
// Reads per readiness event while each fills its buffer (then the other
// sockets of the batch get their turn; level-triggered epoll calls again).
constexpr int kMaxReadsPerEvent = 16;

}  // namespace

void ConnectionHandler::OnReadable(Connection& c) { c.ReadBuffered(); }

thread_local Connection::Closing* Connection::closing_list_ = nullptr;
thread_local uint64_t Connection::stop_lingering_at_ = 0;

void Connection::StopLingeringAt(uint64_t loop_ms) {
  if (stop_lingering_at_ == 0 || loop_ms < stop_lingering_at_) stop_lingering_at_ = loop_ms;
}

void Connection::ShortenLingers(uint32_t ms) {
  for (Closing* c = closing_list_; c != nullptr; c = c->next) {
    uv_timer_t* t = &c->linger;
    if (uv_is_closing(reinterpret_cast<uv_handle_t*>(t)) ||
        !uv_is_active(reinterpret_cast<uv_handle_t*>(t)))
      continue;
    if (uv_timer_get_due_in(t) > ms) uv_timer_start(t, t->timer_cb, ms, 0);
  }
}

Connection::Ptr Connection::Create(Poller& poller, BufferPool& pool, ConnectionHandler* handler) {
  auto* c = new Connection(pool, handler);
  c->poller_ = &poller;
  return Ptr(c);
}

Connection::Connection(BufferPool& pool, ConnectionHandler* handler)
    : pool_(&pool), handler_(handler), input_(pool), out_(pool) {}

// Only OnClosed deletes a connection, after FinishClose closed its socket.
Connection::~Connection() = default;

void Connection::Adopt(int fd) { fd_ = fd; }

int Connection::Connect(const sockaddr* addr, const SocketAddress* source) {
  int fd = socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  if (source != nullptr) {
    // The port is chosen at connect time, per destination: one source
    // address serves ~64k connections to each backend address and port.
    int one = 1;
    setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
    if (bind(fd, reinterpret_cast<const sockaddr*>(&source->storage), source->length) != 0) {
      int err = errno;
      close(fd);
      return -err;
    }
  }
  socklen_t len = addr->sa_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
  int r;
  do {
    r = connect(fd, addr, len);
  } while (r != 0 && errno == EINTR);
  if (r != 0 && errno != EINPROGRESS) {
    int err = errno;
    close(fd);
    return -err;
  }
  // Also when it connected at once: the result is reported from the loop.
  fd_ = fd;
  connecting_ = true;
  UpdateInterest();
  return 0;
}

void Connection::FinishConnect() {
  connecting_ = false;
  int err = 0;
  socklen_t len = sizeof(err);
  if (getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
  if (err != 0) ended_ = true;  // nothing to read, flush or linger for
  // The handler usually starts reading: one epoll_ctl (OUT -> IN) for both.
  if (!closing_ && handler_ != nullptr) {
    handler_->OnConnected(*this, -err);
    if (err == 0 && fd_ >= 0 && !out_.empty()) Flush();
  }
  UpdateInterest();  // EPOLLOUT must not stay: it would fire on every turn
}

bool Connection::SetTcpOptions(int fd) {
  // No Nagle anywhere: every response we write is complete and must leave
  // now, or a peer with delayed ACKs stalls ~40 ms (TESTBED.md).
  int one = 1;
  int idle = 300;  // keepalive probes after 5 idle minutes
  return setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) == 0 &&
         setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one)) == 0 &&
         setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle)) == 0;
}

void Connection::SetSocketOptions() {
  if (fd_ >= 0) SetTcpOptions(fd_);
}

void Connection::UpdateInterest(bool settle) {
  if (fd_ < 0) return;
  // EPOLLRDHUP with EPOLLIN: a peer's FIN is reported as such (it comes with
  // EPOLLIN too, and the read that follows sees the EOF).
  uint32_t want = (reading_ ? EPOLLIN | EPOLLRDHUP : 0u) |
                  (want_write_ || connecting_ || raw_write_wait_ ? EPOLLOUT : 0u);
  // A paused socket stays registered for EPOLLIN until an event finds it
  // paused (settle): most pauses (a login waiting for the backend, a
  // backend between login and relay) see no bytes, and cost no syscall.
  if (!settle) want |= interest_ & (EPOLLIN | EPOLLRDHUP);
  // A paused socket stays in the set with no events: epoll still reports
  // EPOLLERR and EPOLLHUP, so a peer that resets while we do not read is
  // noticed at once (OnReady). Only a peer already gone, with nothing left
  // to write, leaves the set (a hang-up is level-triggered and would be
  // reported on every turn).
  const bool watch = want != 0 || !ended_;
  // Never registered and nothing to wait for yet (an accepted socket whose
  // session has not started reading): registering it now would only be
  // followed by a modification in the same turn.
  if (!registered_ && want == 0) return;
  if (watch == registered_ && (!watch || want == interest_)) return;
  if (!watch) {
    poller_->Remove(fd_, this);
    registered_ = false;
    interest_ = 0;
    return;
  }
  int r = registered_ ? poller_->Modify(fd_, want, this) : poller_->Add(fd_, want, this);
  if (r != 0) {
    // Only when the kernel refuses epoll memory (max_user_watches): the
    // socket stays unwatched (never a callback from inside the caller); the
    // session's timeout or the linger timer ends it.
    spdlog::error("epoll_ctl fd {}: {}", fd_, std::strerror(-r));
    if (registered_) poller_->Remove(fd_, this);
    registered_ = false;
    interest_ = 0;
    return;
  }
  registered_ = true;
  interest_ = want;
}

void Connection::OnReady(uint32_t events) {
  if (fd_ < 0) return;
  if (connecting_) {
    FinishConnect();
    return;
  }
  if (want_write_ && (events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) != 0) {
    want_write_ = false;
    if (write_error_ != 0) {
      WriteFailed();
      return;
    }
    Flush();
    if (fd_ < 0) return;
  }
  if (raw_write_wait_ && (events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) != 0) {
    raw_write_wait_ = false;
    if (handler_ != nullptr) handler_->OnWritable(*this);
    if (fd_ < 0) return;
    UpdateInterest();  // after: a receiver still full asks again, no syscall
  }
  if (!reading_) {
    if ((events & (EPOLLERR | EPOLLHUP)) != 0 && !closing_) {
      // Not reading (backpressure, a login in progress), and the peer reset
      // or both directions are shut: it is gone, whatever it still had to
      // say was discarded by the kernel.
      int err = 0;
      socklen_t len = sizeof(err);
      getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len);
      Fail(err != 0 ? absl::StrCat("peer gone: ", std::strerror(err)) : "peer hung up");
      return;
    }
    // Paused, and the peer sent something or half-closed: stop watching
    // reads now (level-triggered, it would report it again on every turn).
    if ((events & (EPOLLIN | EPOLLRDHUP)) != 0) UpdateInterest(/*settle=*/true);
    return;
  }
  if ((events & (EPOLLIN | EPOLLERR | EPOLLHUP | EPOLLRDHUP)) == 0) return;
  if (raw_ && handler_ != nullptr) {
    handler_->OnReadable(*this);
  } else {
    ReadSome();
  }
}

void Connection::WaitWritable() {
  if (closing_ || fd_ < 0) return;
  raw_write_wait_ = true;
  UpdateInterest();
}

void Connection::StartReading() {
  if (closing_) return;  // a closing connection reads only to discard (Close)
  ReadStart();
}

void Connection::ReadStart() {
  if (reading_ || ended_) return;
  reading_ = true;
  UpdateInterest();
}

void Connection::StopReading() {
  if (!reading_) return;
  reading_ = false;
  UpdateInterest();
}

void Connection::ReadSome() {
  for (int i = 0; i < kMaxReadsPerEvent && reading_ && fd_ >= 0; ++i) {
    Buffer& target = ReadTarget();
    absl::Span<char> span = target.Reserve();
    ssize_t n = read(fd_, span.data(), span.size());
    if (n < 0 && errno == EINTR) {
      target.Commit(0);
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      target.Commit(0);
      return;
    }
    int err = n < 0 ? errno : 0;
    target.Commit(n > 0 ? static_cast<size_t>(n) : 0);
    HandleRead(n > 0 ? n : (n == 0 ? UV_EOF : -err));
    if (n <= 0 || static_cast<size_t>(n) < span.size()) return;
  }
}

void Connection::HandleRead(ssize_t nread) {
  if (closing_) {
    // Lingering: discard, and finish at the peer's EOF.
    input_.Clear();
    if (engine_) engine_->cipher_in().Clear();
    if (nread < 0) {
      StopReading();  // the read side is done: level-triggered epoll would repeat it
      ended_ = true;
      FinishClose();
    }
    return;
  }
  if (nread < 0) {
    Fail(nread == UV_EOF ? "peer closed" : absl::StrCat("read error: ", uv_strerror(nread)));
    return;
  }
  if (engine_) {
    size_t before = input_.size();
    const bool was_ready = engine_->handshake_done();
    TlsEngine::Result r = engine_->Read(input_);
    bytes_in_ += input_.size() - before;
    out_.MoveFrom(engine_->cipher_out());
    Flush();
    if (r == TlsEngine::Result::kError) {
      Fail(absl::StrCat("tls error: ", engine_->error()));
      return;
    }
    if (!was_ready && engine_->handshake_done() && handler_ != nullptr && !closing_) {
      handler_->OnTlsReady(*this);
      if (closing_ || ended_ || handler_ == nullptr) return;
    }
    if (r == TlsEngine::Result::kClosed) {
      // What arrived in the same records as the close_notify is the
      // client's last word (a LOGOUT, a command): hand it on first.
      if (!input_.empty() && handler_ != nullptr) {
        handler_->OnData(*this);
        if (closing_ || ended_) return;
      }
      Fail("peer sent close_notify");
      return;
    }
    if (input_.empty()) return;
  } else {
    bytes_in_ += static_cast<size_t>(nread);
  }
  if (handler_ != nullptr) handler_->OnData(*this);
}

void Connection::Rescan() {
  if (closing_ || ended_ || fd_ < 0 || input_.empty()) return;
  if (engine_ != nullptr && !engine_->handshake_done()) {
    engine_->cipher_in().MoveFrom(input_);
  }
  HandleRead(0);
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

void Connection::Uncork() {
  if (!corked_) return;
  corked_ = false;
  if (!out_.empty()) Flush();
}

bool Connection::SetNotSentLowat(int fd, uint32_t bytes) {
  return setsockopt(fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &bytes, sizeof(bytes)) == 0;
}

void Connection::Flush() {
  if (corked_) return;
  if (!want_write_) StartWrites();
  // Watermarks are judged on every change, also while the kernel is full
  // (skipping them then once lost the OnDrained that resumes the peer).
  if (out_.size() > high_) {
    above_ = true;
  } else if (above_ && out_.size() <= low_) {
    above_ = false;
    if (handler_ != nullptr && !closing_) handler_->OnDrained(*this);
  }
  if (closing_ && out_.empty() && !want_write_) FinishClose();
}

void Connection::StartWrites() {
  if (fd_ < 0 || connecting_ || write_error_ != 0) return;
  iovec iov[kMaxIov];
  while (!out_.empty()) {
    size_t n = out_.Peek(iov, kMaxIov);
    size_t total = 0;
    for (size_t i = 0; i < n; ++i) total += iov[i].iov_len;
    msghdr msg{};
    msg.msg_iov = iov;
    msg.msg_iovlen = n;
    ssize_t r = sendmsg(fd_, &msg, MSG_NOSIGNAL);
    if (r >= 0) {
      out_.Drain(static_cast<size_t>(r));
      if (static_cast<size_t>(r) < total) break;  // the kernel is full
      continue;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) {
      // Reported from the loop (a broken socket is writable at once), never
      // from inside a caller's Write().
      write_error_ = -errno;
      out_.Clear();
      want_write_ = true;
    }
    break;
  }
  if (!out_.empty()) want_write_ = true;
  UpdateInterest();
}

void Connection::WriteFailed() {
  out_.Clear();
  if (closing_) {
    Abandon();
  } else {
    Fail(absl::StrCat("write error: ", uv_strerror(write_error_)));
  }
}

bool Connection::StartServerTls(const TlsContext& ctx) {
  engine_ = TlsEngine::CreateServer(ctx, *pool_);
  return engine_ != nullptr;
}

bool Connection::StartClientTls(const TlsContext& ctx, const std::string& name,
                                SSL_SESSION* offer) {
  engine_ = TlsEngine::CreateClient(ctx, *pool_, name);
  if (engine_ == nullptr) return false;
  if (offer != nullptr) engine_->OfferSession(offer);
  input_.Clear();
  // The ClientHello goes out now (a first Write starts the handshake).
  TlsEngine::Result r = engine_->Write(absl::string_view());
  out_.MoveFrom(engine_->cipher_out());
  Flush();
  return r != TlsEngine::Result::kError;
}

const char* Connection::tls_version() const {
  if (engine_ == nullptr || !engine_->handshake_done()) return "none";
  return engine_->version();
}

const char* Connection::tls_cipher() const {
  if (engine_ == nullptr || !engine_->handshake_done()) return "";
  const SSL_CIPHER* c = SSL_get_current_cipher(engine_->ssl());
  return c != nullptr ? SSL_CIPHER_standard_name(c) : "";
}

const char* Connection::tls_server_name() const {
  if (engine_ == nullptr) return "";
  const char* name = SSL_get_servername(engine_->ssl(), TLSEXT_NAMETYPE_host_name);
  return name != nullptr ? name : "";
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
  socklen_t len = sizeof(ss);
  if (fd_ < 0 || getpeername(fd_, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return "";
  return FormatAddress(reinterpret_cast<sockaddr*>(&ss), true);
}

void Connection::Close(bool abort) {
  if (closing_) return;
  closing_ = true;
  corked_ = false;  // what was queued goes out with the close
  handler_ = nullptr;
  raw_ = false;
  raw_write_wait_ = false;
  input_.Clear();
  closing_state_ = std::make_unique<Closing>();
  closing_state_->next = closing_list_;
  if (closing_list_ != nullptr) closing_list_->prev = closing_state_.get();
  closing_list_ = closing_state_.get();
  uv_timer_init(poller_->loop(), &closing_state_->linger);
  closing_state_->linger.data = this;
  uv_timer_start(
      &closing_state_->linger,
      [](uv_timer_t* t) { static_cast<Connection*>(t->data)->OnLingerTimeout(); }, linger_ms_, 0);
  closing_state_->started = uv_now(poller_->loop());
  if (abort || fd_ < 0 || connecting_ || (ended_ && out_.empty())) {
    Abandon(/*reset=*/abort);
    return;
  }
  // What the linger's progress is judged against (a syscall: only for a
  // connection that lingers).
  closing_state_->unsent = Unsent();
  if (engine_ && engine_->handshake_done()) {
    engine_->Shutdown();
    out_.MoveFrom(engine_->cipher_out());
  }
  // Keep reading (and discarding) until the peer's EOF or the linger timer.
  ReadStart();
  Flush();
}

uint64_t Connection::Unsent() const {
  uint64_t n = out_.size();
  int queued = 0;
  if (fd_ >= 0 && ioctl(fd_, SIOCOUTQ, &queued) == 0 && queued > 0) {
    n += static_cast<uint64_t>(queued);
  }
  return n;
}

void Connection::OnLingerTimeout() {
  // A peer still reading gets what it is owed (the rest of a literal, then
  // the BYE): giving up on it would cut the answer that the session ended
  // after. One that took nothing for a whole period is given up on, and
  // so is everyone once a stopping process reaches its deadline.
  //
  // What a closed connection may make us hold is bounded for a peer that
  // reads a byte now and then: it must take at least kMinLingerProgress
  // bytes per period (or all that is left), and outside a shutdown the
  // whole linger lasts at most kMaxLingerMs (the session, and its per-IP
  // count, are gone already).
  constexpr uint64_t kMinLingerProgress = 4096;
  constexpr uint64_t kMaxLingerMs = 120'000;
  const uint64_t unsent = Unsent();
  const uint64_t now = uv_now(poller_->loop());
  const bool stopping = stop_lingering_at_ != 0;
  const uint64_t before = closing_state_->unsent;
  const bool progress =
      unsent > 0 && unsent < before && (before - unsent >= kMinLingerProgress || unsent < 4096);
  const bool in_time =
      stopping ? now < stop_lingering_at_ : now - closing_state_->started < kMaxLingerMs;
  if (progress && in_time) {
    closing_state_->unsent = unsent;
    uint64_t next = linger_ms_;
    if (stopping) next = std::min<uint64_t>(next, stop_lingering_at_ - now);
    uv_timer_start(&closing_state_->linger, closing_state_->linger.timer_cb, next, 0);
    return;
  }
  Abandon(/*reset=*/true);
}

void Connection::Abandon(bool reset) {
  int unsent = 0;
  if (reset && fd_ >= 0 &&
      (!out_.empty() || want_write_ || (ioctl(fd_, SIOCOUTQ, &unsent) == 0 && unsent > 0))) {
    // Giving up with bytes unsent (the peer does not read, the linger ran
    // out): a reset frees them at once, where a FIN would wait behind them
    // in the kernel for as long as the peer keeps the connection (nginx's
    // reset_timedout_connection).
    linger lg{1, 0};
    setsockopt(fd_, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
  }
  out_.Clear();
  want_write_ = false;
  reading_ = false;
  ended_ = true;
  FinishClose();  // nothing left to flush or read: the socket closes now
}

void Connection::FinishClose() {
  // Everything we meant to say has been handed to the kernel (or given up):
  // half-close so the peer sees EOF after our last byte, then wait for its
  // EOF (HandleRead) or the linger timer.
  if (want_write_) return;  // OnReady comes back here
  if (!shutdown_sent_ && !ended_ && out_.empty() && reading_) {
    shutdown_sent_ = true;
    if (shutdown(fd_, SHUT_WR) == 0) return;
  }
  uv_handle_t* timer = reinterpret_cast<uv_handle_t*>(&closing_state_->linger);
  if (uv_is_closing(timer)) return;
  Closing* c = closing_state_.get();
  if (c->prev != nullptr) c->prev->next = c->next;
  if (c->next != nullptr) c->next->prev = c->prev;
  if (closing_list_ == c) closing_list_ = c->next;
  c->prev = c->next = nullptr;
  engine_.reset();
  input_.Clear();
  out_.Clear();
  reading_ = false;
  want_write_ = false;
  connecting_ = false;
  if (fd_ >= 0) {
    // Out of the epoll set before close(2): a registration belongs to the
    // open file, not the fd, and would outlive a close if the file were
    // ever shared (a dup, an inherited fd), reporting events for freed
    // memory.
    if (registered_) poller_->Remove(fd_, this);
    registered_ = false;
    interest_ = 0;
    close(fd_);
    fd_ = -1;
  }
  // Freed in the close callback: never inside a caller or a poller batch.
  uv_close(timer, &Connection::OnClosed);
}

void Connection::OnClosed(uv_handle_t* h) { delete static_cast<Connection*>(h->data); }

}  // namespace postern
