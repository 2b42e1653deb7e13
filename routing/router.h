#pragma once

// Where a user's mailbox lives. Routing is asynchronous: later routers ask
// Redis or an HTTP auth service, so every answer comes through a callback,
// and never from inside Route() itself (callers are not re-entered).

#include <cstddef>
#include <functional>
#include <memory>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "routing/shard_ring.h"

namespace postern {

struct RouteRequest {
  std::string user;
  std::string client_ip;
  bool pop3 = false;  // the client speaks POP3 (else IMAP)
};

struct RouteResult {
  enum class Kind { kBackend, kShard };
  Kind kind = Kind::kBackend;
  // An index into the configuration's backends or shards (of the config
  // snapshot the router was built from: the session that asks holds it).
  size_t index = 0;
};

using RouteCallback = std::function<void(absl::StatusOr<RouteResult>)>;
// Runs a function later on the caller's event loop (the worker's Defer).
using Poster = std::function<void(std::function<void()>)>;

class Router {
 public:
  virtual ~Router() = default;
  // Answers through `done`, always after Route() has returned. The caller
  // may have ended by then: answers go through the worker's deferred queue,
  // which frees ended sessions only after running what was queued, and the
  // session ignores an answer to a login it abandoned. A router answering
  // from its own I/O callbacks must let the caller cancel instead.
  virtual void Route(const RouteRequest& request, RouteCallback done) = 0;
};

// The consistent-hash ring over the configured shards (routing/shard_ring.h),
// keyed on the normalized user name. Immutable: shared by the workers of one
// config snapshot.
class RingRouter : public Router {
 public:
  RingRouter(std::shared_ptr<const ShardRing> ring, bool domain_only, Poster post);
  void Route(const RouteRequest& request, RouteCallback done) override;
  size_t Lookup(const std::string& user) const;

 private:
  std::shared_ptr<const ShardRing> ring_;
  bool domain_only_;
  Poster post_;
};

// A fixed user -> backend map with a default backend (the config's
// routing.users and routing.default_backend). Immutable once built: shared
// by the workers of one config snapshot.
class StaticRouter : public Router {
 public:
  StaticRouter(absl::flat_hash_map<std::string, size_t> users, size_t default_backend, Poster post);
  void Route(const RouteRequest& request, RouteCallback done) override;
  // The synchronous answer, for tests and for routers built on this one.
  size_t Lookup(const std::string& user) const;

 private:
  absl::flat_hash_map<std::string, size_t> users_;
  size_t default_backend_;
  Poster post_;
};

}  // namespace postern
