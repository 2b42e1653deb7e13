#include "proxy/relay.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "proxy/worker.h"

namespace postern {
namespace {

// Chunks per readable event while the sender has more and the receiver takes
// it all (then the other sockets get their turn; level-triggered epoll comes
// back).
constexpr int kMaxSplicesPerEvent = 16;

}  // namespace

Relay::Relay(Worker& worker, Connection& client, Connection& backend, StageHost& host)
    : worker_(worker), client_(client), backend_(backend), host_(host) {}

void Relay::Start() {
  client_.set_handler(this);
  backend_.set_handler(this);
  client_.input().set_pool(worker_.bulk_pool());
  backend_.input().set_pool(worker_.bulk_pool());
  // From here on no protocol code runs: what the client pipelined after its
  // login goes first, then plain relaying.
  if (!client_.input().empty()) backend_.Write(client_.input());
  if (!backend_.input().empty()) client_.Write(backend_.input());
  if (!client_.tls() && !backend_.tls()) {
    // Both sides plaintext: bytes go socket -> pipe -> socket in the kernel,
    // never through our buffers (ARCHITECTURE.md; issue 3's splice lever).
    splice_ = std::make_unique<Splice>();
    spliced_ = true;
    client_.set_raw(true);
    backend_.set_raw(true);
  }
  client_.StartReading();
  backend_.StartReading();
}

void Relay::OnData(Connection& c) {
  if (finished_) return;
  host_.StageActivity();
  Connection& to = Other(c);
  to.Write(c.input());
  if (to.above_high_watermark()) c.StopReading();
}

void Relay::OnDrained(Connection& c) {
  if (finished_) return;
  // The side that was slow caught up: read from its peer again.
  Other(c).StartReading();
}

void Relay::OnEnd(Connection& c, absl::string_view reason) {
  if (finished_) return;
  host_.StageEnded(absl::StrCat(&c == &client_ ? "client: " : "backend: ", reason));
}

void Relay::OnReadable(Connection& c) {
  if (finished_ || splice_ == nullptr) {
    c.ReadBuffered();
    return;
  }
  const bool up = &c == &client_;
  Connection& to = Other(c);
  SpliceDir& d = up ? splice_->up : splice_->down;
  if (d.pending > 0) {
    c.StopReading();  // the receiver is full; its OnWritable resumes us
    return;
  }
  // Bytes already queued for the receiver go first: until they are gone (or
  // without a pipe to lend), this event takes the buffered path.
  if (to.pending() > 0 || !worker_.pipes().Get(&d.pipe)) {
    c.ReadBuffered();
    return;
  }
  host_.StageActivity();
  for (int i = 0; i < kMaxSplicesPerEvent; ++i) {
    ssize_t n;
    do {
      n = splice(c.fd(), nullptr, d.pipe.w, nullptr, d.pipe.capacity,
                 SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    } while (n < 0 && errno == EINTR);
    if (n <= 0) {
      int err = errno;
      worker_.pipes().Put(&d.pipe);  // empty
      if (n < 0 && (err == EAGAIN || err == EWOULDBLOCK)) return;
      c.Fail(n == 0 ? "peer closed" : absl::StrCat("read error: ", std::strerror(err)));
      return;
    }
    d.pending = static_cast<size_t>(n);
    c.CountRaw(d.pending, 0);
    // Blocked (the pipe keeps the rest) or failed (the session ended).
    if (!SpliceOut(c, to, d)) return;
    if (static_cast<size_t>(n) < d.pipe.capacity) break;  // the socket had no more
  }
  worker_.pipes().Put(&d.pipe);  // empty: back until the next event
}

void Relay::OnWritable(Connection& to) {
  if (finished_ || splice_ == nullptr) return;
  const bool up = &to == &backend_;
  SpliceDir& d = up ? splice_->up : splice_->down;
  if (SpliceOut(Other(to), to, d)) worker_.pipes().Put(&d.pipe);
}

bool Relay::SpliceOut(Connection& from, Connection& to, SpliceDir& d) {
  while (d.pending > 0) {
    ssize_t m =
        splice(d.pipe.r, nullptr, to.fd(), nullptr, d.pending, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (m > 0) {
      d.pending -= static_cast<size_t>(m);
      to.CountRaw(0, static_cast<uint64_t>(m));
      continue;
    }
    if (m < 0 && errno == EINTR) continue;
    if (m < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      // The receiver's kernel buffer is full: the pipe holds the rest (it is
      // the backpressure window), the sender waits.
      from.StopReading();
      to.WaitWritable();
      return false;
    }
    int err = m < 0 ? errno : EPIPE;
    PipePool::Discard(&d.pipe);
    d.pending = 0;
    to.Fail(absl::StrCat("write error: ", std::strerror(err)));  // may end the session
    return false;
  }
  from.StartReading();
  return true;
}

void Relay::SpillAll() {
  if (splice_ == nullptr) return;
  // Bytes still in a pipe are owed to the receiver: its close flushes them.
  Spill(splice_->down, client_);
  Spill(splice_->up, backend_);
  splice_.reset();
  client_.set_raw(false);
  backend_.set_raw(false);
}

void Relay::Spill(SpliceDir& d, Connection& to) {
  if (!d.pipe.valid()) return;
  Buffer bytes(worker_.bulk_pool());
  while (d.pending > 0) {
    absl::Span<char> span = bytes.Reserve();
    ssize_t n = read(d.pipe.r, span.data(), std::min(span.size(), d.pending));
    if (n <= 0) {
      bytes.Commit(0);
      break;
    }
    bytes.Commit(static_cast<size_t>(n));
    d.pending -= static_cast<size_t>(n);
  }
  PipePool::Discard(&d.pipe);
  d.pending = 0;
  to.Write(bytes);  // counted as sent here, as they were not by the splice
}

void Relay::Shutdown(absl::string_view notice) {
  if (finished_) return;
  SpillAll();  // the notice goes after what the client was already owed
  client_.Write(notice);
  host_.StageEnded("server shutdown");
}

void Relay::Finish() {
  if (finished_) return;
  SpillAll();
  finished_ = true;
}

}  // namespace postern
