#pragma once

// The byte relay after login (IMAP to IMAP, POP3 to POP3): no protocol code
// acts on the bytes (Dovecot's login_proxy_detach). Bytes read from one side
// move slab by slab, without copying, to the other side's writer; when the
// bytes queued toward one side pass limits.relay_high_watermark the other
// side is not read until they fall to the low watermark.
//
// A tracker (protocol/stream_tracker.h) watches where the server's responses
// end, so that a session told to stop ends right after a complete response,
// never inside a literal or a multi-line answer. It skips literal payloads
// by count, which costs nothing per relayed megabyte.
//
// When both sides are plaintext and the protocol is IMAP the relay splices:
// client -> backend always, backend -> client for literal payloads (FETCH
// bodies) and the response lines before them, which the tracker sees by
// peeking (MSG_PEEK), socket -> pipe -> socket in the kernel
// (proxy/README.md).

#include <memory>
#include <string>

#include "protocol/stream_tracker.h"
#include "proxy/config.h"
#include "proxy/connection.h"
#include "proxy/pipe_pool.h"
#include "proxy/session_trace.h"
#include "proxy/stage.h"

namespace postern {

class Worker;

class Relay final : public Stage, public ConnectionHandler {
 public:
  Relay(Worker& worker, Protocol protocol, Connection& client, Connection& backend,
        StageHost& host);

  // Stage
  void Start() override;
  void Shutdown(absl::string_view notice, const char* reason) override;
  void IdleTimeout() override { host_.StageEnded("idle timeout"); }
  void Finish() override;
  std::string Describe() const override { return spliced_ ? "splice" : "relay"; }
  // Before Start(): the session is traced (log.trace_users); the relay then
  // passes every byte through user space (no splice).
  void set_trace(SessionTrace* trace) { trace_ = trace; }

  // ConnectionHandler
  void OnData(Connection& c) override;
  void OnDrained(Connection& c) override;
  void OnEnd(Connection& c, absl::string_view reason) override;
  void OnReadable(Connection& c) override;
  void OnWritable(Connection& c) override;

 private:
  // One direction of a spliced relay: the pipe lent while bytes are in it.
  struct SpliceDir {
    Pipe pipe;
    size_t pending = 0;  // bytes in the pipe, not yet taken by the receiver
  };
  struct Splice {
    SpliceDir up;    // client -> backend
    SpliceDir down;  // backend -> client
  };

  Connection& Other(Connection& c) { return &c == &client_ ? backend_ : client_; }
  // Empties the pipe into the receiver: true when it is empty (the caller
  // gives it back), false when the receiver is full (the pipe keeps the
  // rest) or broken (the session may have ended then).
  bool SpliceOut(Connection& from, Connection& to, SpliceDir& d);
  // Moves at most `want` bytes from the sender into the lent pipe (added to
  // `pending`): their count, 0 at the sender's EOF, -1 with *err set.
  ssize_t SpliceIn(Connection& from, SpliceDir& d, size_t want, int* err);
  // The server's side of OnReadable: literals (and the response lines
  // peeked at before them) spliced, the rest read buffered.
  void SpliceDown(Connection& c, SpliceDir& d);
  // Moves what a pipe still holds into the receiver's write queue.
  void Spill(SpliceDir& d, Connection& to);
  // Both directions, and the relay leaves raw mode (buffered from here on).
  void SpillAll();
  // The trackers take what one side sent before it is passed on.
  void Track(Connection& from, const Buffer& bytes);
  bool AtBoundary() const {
    return protocol_ == Protocol::kImap ? imap_.at_boundary() : pop3_->at_boundary();
  }
  // Draining: passes on the server's bytes up to the next response boundary,
  // then the notice, and ends. True when it ended.
  bool DrainFrom(Buffer& bytes);
  void FinishDrain();

  Worker& worker_;
  Connection& client_;
  Connection& backend_;
  StageHost& host_;
  std::unique_ptr<Splice> splice_;
  SessionTrace* trace_ = nullptr;
  ImapResponseTracker imap_;  // backend -> client, IMAP
  // Both directions, POP3 sessions only: its ring of owed answers is 512
  // bytes, which an IMAP session (most of those held idle) should not carry.
  std::unique_ptr<Pop3ResponseTracker> pop3_;
  // While draining: the static notice owed to the client and why (on the
  // heap: an idle relay fits jemalloc's 128-byte class without them).
  struct Drain {
    absl::string_view notice;
    const char* reason;
  };
  std::unique_ptr<Drain> drain_;
  const Protocol protocol_;
  bool spliced_ = false;  // for Describe(): the pair was spliced
  bool peek_ = false;     // spliced: the backend sent bulk, peek before reading
  bool draining_ = false;
  bool finished_ = false;
};

}  // namespace postern
