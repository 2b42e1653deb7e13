#include "proxy/relay.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"
#include "proxy/worker.h"

namespace postern {
namespace {

// Chunks per readable event while the sender has more and the receiver takes
// it all (then the other sockets get their turn; level-triggered epoll comes
// back).
constexpr int kMaxSplicesPerEvent = 16;
// Server-to-client bytes are spliced only inside literal payloads at least
// this long (below it a copy costs about what the pipe does: bench/micro
// relay_bench); the lines around them go through the tracker.
constexpr uint64_t kMinSplicedLiteral = 32 * 1024;
// Between literals the tracker must see the response lines. Once the stream
// has carried bulk (a buffered read of at least kBulkRead bytes), the relay
// peeks (MSG_PEEK) at most kPeek bytes first: when those end inside a
// literal with at least kMinSplicedLiteral bytes still to come, the peeked
// bytes and the rest of the literal are spliced together, so a FETCH of
// many messages moves each body in the kernel instead of reading its first
// 64 KiB through a buffer. A peek that finds no such literal falls back to
// a buffered read, and peeking stops until bulk comes again.
constexpr size_t kPeek = 4096;
constexpr size_t kBulkRead = 16 * 1024;

}  // namespace

Relay::Relay(Worker& worker, Protocol protocol, Connection& client, Connection& backend,
             StageHost& host)
    : worker_(worker),
      client_(client),
      backend_(backend),
      host_(host),
      pop3_(protocol == Protocol::kPop3 ? std::make_unique<Pop3ResponseTracker>() : nullptr),
      protocol_(protocol) {}

void Relay::Start() {
  client_.set_handler(this);
  backend_.set_handler(this);
  client_.input().set_pool(worker_.bulk_pool());
  backend_.input().set_pool(worker_.bulk_pool());
  // What the client pipelined after its login goes first, then plain
  // relaying.
  if (!client_.input().empty()) {
    Track(client_, client_.input());
    backend_.Write(client_.input());
  }
  if (!backend_.input().empty()) {
    Track(backend_, backend_.input());
    if (trace_ != nullptr) trace_->Relayed(false, backend_.input());
    client_.Write(backend_.input());
  }
  // POP3 answers end at a line with a single ".": only a tracker that sees
  // every byte finds it, so POP3 pairs are never spliced.
  if (protocol_ == Protocol::kImap && !client_.tls() && !backend_.tls() && trace_ == nullptr) {
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

void Relay::Track(Connection& from, const Buffer& bytes) {
  if (protocol_ == Protocol::kImap) {
    if (&from == &backend_) bytes.ForEachSlice([this](absl::string_view s) { imap_.Feed(s); });
  } else if (&from == &backend_) {
    bytes.ForEachSlice([this](absl::string_view s) { pop3_->ServerBytes(s); });
  } else {
    bytes.ForEachSlice([this](absl::string_view s) { pop3_->ClientBytes(s); });
  }
}

void Relay::OnData(Connection& c) {
  if (finished_) return;
  host_.StageActivity();
  if (draining_) {
    // No more commands; the server's bytes up to the next safe point.
    if (&c == &client_) {
      c.input().Clear();
    } else {
      DrainFrom(c.input());
    }
    return;
  }
  Track(c, c.input());
  if (trace_ != nullptr) trace_->Relayed(&c == &client_, c.input());
  if (splice_ != nullptr && &c == &backend_ && c.input().size() >= kBulkRead) peek_ = true;
  Connection& to = Other(c);
  to.Write(c.input());
  if (to.above_high_watermark()) c.StopReading();
}

bool Relay::DrainFrom(Buffer& bytes) {
  size_t take = 0;
  bool found = AtBoundary();
  bytes.ForEachSlice([&](absl::string_view s) {
    if (found) return;
    const size_t used = protocol_ == Protocol::kImap ? imap_.FeedUntilBoundary(s)
                                                     : pop3_->ServerBytes(s, /*stop=*/true);
    take += used;
    found = AtBoundary();
  });
  if (!found) {
    client_.Write(bytes);
    if (client_.above_high_watermark()) backend_.StopReading();
    return false;
  }
  if (take == bytes.size()) {
    client_.Write(bytes);
  } else {
    // The rest belongs to a response that the client will not get.
    std::string prefix(take, '\0');
    bytes.CopyOut(0, take, prefix.data());
    bytes.Clear();
    client_.Write(prefix);
  }
  FinishDrain();
  return true;
}

void Relay::FinishDrain() {
  SpillAll();  // the notice goes after what the client was already owed
  client_.Write(drain_->notice);
  host_.StageEnded(drain_->reason);
}

void Relay::OnDrained(Connection& c) {
  if (finished_) return;
  // The side that was slow caught up: read from its peer again (not the
  // client once draining: its commands have stopped for good).
  if (draining_ && &c == &backend_) return;
  Other(c).StartReading();
}

void Relay::OnEnd(Connection& c, absl::string_view reason) {
  if (finished_) return;
  if (&c == &backend_ && !draining_) {
    host_.StageBackendLost(absl::StrCat("backend: ", reason));
    return;
  }
  host_.StageEnded(absl::StrCat(&c == &client_ ? "client: " : "backend: ", reason));
}

void Relay::OnReadable(Connection& c) {
  if (finished_ || splice_ == nullptr) {
    c.ReadBuffered();
    return;
  }
  const bool up = &c == &client_;
  SpliceDir& d = up ? splice_->up : splice_->down;
  if (d.pending > 0) {
    // The receiver is full and the pipe holds bytes owed before anything
    // read now (a drain restarts reading while they wait): its OnWritable
    // resumes us. Checked first: a buffered read here would overtake them.
    c.StopReading();
    return;
  }
  Connection& to = Other(c);
  // Bytes already queued for the receiver go first: until they are gone (or
  // without a pipe to lend), this event takes the buffered path.
  if (to.pending() > 0) {
    c.ReadBuffered();
    return;
  }
  if (!up) {
    SpliceDown(c, d);
    return;
  }
  if (!worker_.pipes().Get(&d.pipe)) {
    c.ReadBuffered();
    return;
  }
  host_.StageActivity();
  for (int i = 0; i < kMaxSplicesPerEvent; ++i) {
    int err = 0;
    ssize_t n = SpliceIn(c, d, d.pipe.capacity, &err);
    if (n <= 0) {
      worker_.pipes().Put(&d.pipe);  // empty
      if (n < 0 && (err == EAGAIN || err == EWOULDBLOCK)) return;
      c.Fail(n == 0 ? "peer closed" : absl::StrCat("read error: ", std::strerror(err)));
      return;
    }
    // Blocked (the pipe keeps the rest) or failed (the session ended).
    if (!SpliceOut(c, to, d)) return;
    if (static_cast<size_t>(n) < d.pipe.capacity) break;  // the socket had no more
  }
  worker_.pipes().Put(&d.pipe);  // empty: back until the next event
}

ssize_t Relay::SpliceIn(Connection& from, SpliceDir& d, size_t want, int* err) {
  ssize_t n;
  do {
    n = splice(from.fd(), nullptr, d.pipe.w, nullptr, want, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
  } while (n < 0 && errno == EINTR);
  if (n < 0) *err = errno;
  if (n <= 0) return n;
  d.pending += static_cast<size_t>(n);
  from.CountRaw(static_cast<uint64_t>(n), 0);
  return n;
}

void Relay::SpliceDown(Connection& c, SpliceDir& d) {
  // Server to client: only literal payloads are spliced, each with the
  // response lines before it once those have been peeked at; other bytes go
  // through the tracker on the buffered path (ReadBuffered -> OnData).
  // Several responses may gather in the pipe before it is emptied into the
  // client's socket: fewer, larger sends (on loopback each send also runs
  // the receiver's side of TCP and wakes it).
  static thread_local char peek_bytes[kPeek];
  bool lent = false;
  bool buffered = false;  // what is next goes through the tracker
  int failed = 0;         // errno of a failed read, or -1 for EOF
  for (int i = 0; i < kMaxSplicesPerEvent; ++i) {
    uint64_t limit = imap_.literal_remaining();
    size_t peeked = 0;
    ImapResponseTracker ahead;
    // A long literal is spliced as it comes; in peek mode also the rest of
    // a short one (no copy), and the lines after it are peeked at next.
    if (limit < kMinSplicedLiteral && !(peek_ && limit > 0 && !draining_)) {
      // Draining: the peeked lines may hold the boundary the drain stops
      // at, so they take the buffered path (DrainFrom).
      if (!peek_ || draining_) {
        buffered = true;
        break;
      }
      ssize_t p;
      do {
        p = recv(c.fd(), peek_bytes, kPeek, MSG_PEEK | MSG_DONTWAIT);
      } while (p < 0 && errno == EINTR);
      if (p < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;  // all taken
      if (p > 0) {
        ahead = imap_;
        ahead.Feed(absl::string_view(peek_bytes, static_cast<size_t>(p)));
        if (ahead.literal_remaining() >= kMinSplicedLiteral) {
          peeked = static_cast<size_t>(p);
          // Saturating: a literal announced with 20 digits is UINT64_MAX
          // long (ImapResponseTracker), and a wrapped sum would end the
          // splice inside the peeked line (at 0 bytes, a false EOF).
          const uint64_t lit = ahead.literal_remaining();
          limit = lit > UINT64_MAX - peeked ? UINT64_MAX : peeked + lit;
        }
      }
      if (peeked == 0) {
        // No literal worth a pipe (or EOF, or an error: the buffered read
        // reports those): the buffered path, and until bulk comes again
        // unless the peek only caught the start of a line still arriving.
        if (p <= 0 || static_cast<size_t>(p) == kPeek || ahead.at_boundary()) peek_ = false;
        buffered = true;
        break;
      }
    }
    if (!lent) {
      if (!worker_.pipes().Get(&d.pipe)) {
        buffered = true;  // none to lend
        break;
      }
      lent = true;
      host_.StageActivity();
    }
    if (d.pipe.capacity - d.pending < std::min<uint64_t>(limit, kPeek)) {
      // Nearly full: empty it first. Blocked (the pipe keeps the rest) or
      // failed (the session ended).
      if (!SpliceOut(c, client_, d)) return;
    }
    const size_t want = static_cast<size_t>(std::min<uint64_t>(d.pipe.capacity - d.pending, limit));
    int err = 0;
    ssize_t n = SpliceIn(c, d, want, &err);
    if (n <= 0) {
      if (n == 0 || (err != EAGAIN && err != EWOULDBLOCK)) failed = n == 0 ? -1 : err;
      break;
    }
    // The tracker stands exactly where the bytes moved end.
    imap_.Spliced(static_cast<uint64_t>(n), absl::string_view(peek_bytes, peeked), ahead);
    if (static_cast<size_t>(n) < want) break;  // the socket had no more
  }
  if (!lent) {
    if (buffered) c.ReadBuffered();
    return;
  }
  // What the pipe gathered goes before anything read buffered. Blocked (the
  // pipe keeps the rest, reading stops) or failed (the session ended).
  if (d.pending > 0 && !SpliceOut(c, client_, d)) return;
  worker_.pipes().Put(&d.pipe);  // empty
  if (failed != 0) {
    c.Fail(failed < 0 ? "peer closed" : absl::StrCat("read error: ", std::strerror(failed)));
    return;
  }
  // Otherwise the turns of this event were used up, or the socket emptied:
  // level-triggered epoll comes back for what is left.
  if (buffered) c.ReadBuffered();
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
  if (!draining_ || &from != &client_) from.StartReading();
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

void Relay::Shutdown(absl::string_view notice, const char* reason) {
  if (finished_ || draining_) return;
  drain_ = std::make_unique<Drain>(Drain{notice, reason});
  // The client's commands stop here; the server's answers go on to the
  // first point between two responses, and the notice goes there.
  draining_ = true;
  client_.StopReading();
  if (AtBoundary()) {
    FinishDrain();
    return;
  }
  backend_.StartReading();
}

void Relay::Finish() {
  if (finished_) return;
  SpillAll();
  finished_ = true;
}

}  // namespace postern
