#pragma once

// The byte relay after login (IMAP to IMAP, POP3 to POP3): no protocol code
// at all (Dovecot's login_proxy_detach). Bytes read from one side move slab
// by slab, without copying, to the other side's writer; when the bytes
// queued toward one side pass limits.relay_high_watermark the other side is
// not read until they fall to the low watermark. When both sides are
// plaintext the relay splices instead: socket -> pipe -> socket in the
// kernel (proxy/README.md, "How a session runs").

#include <memory>
#include <string>

#include "proxy/connection.h"
#include "proxy/pipe_pool.h"
#include "proxy/stage.h"

namespace postern {

class Worker;

class Relay final : public Stage, public ConnectionHandler {
 public:
  Relay(Worker& worker, Connection& client, Connection& backend, StageHost& host);

  // Stage
  void Start() override;
  void Shutdown(absl::string_view notice) override;
  void Finish() override;
  std::string Describe() const override { return spliced_ ? "splice" : "relay"; }

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
  // Moves what a pipe still holds into the receiver's write queue.
  void Spill(SpliceDir& d, Connection& to);
  // Both directions, and the relay leaves raw mode (buffered from here on).
  void SpillAll();

  Worker& worker_;
  Connection& client_;
  Connection& backend_;
  StageHost& host_;
  std::unique_ptr<Splice> splice_;
  bool spliced_ = false;  // for Describe(): the pair was spliced
  bool finished_ = false;
};

}  // namespace postern
