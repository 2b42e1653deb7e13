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

// A question in flight that its asker may abandon: destroying the handle
// guarantees the answer is never delivered (loop thread only).
class Pending {
 public:
  virtual ~Pending() = default;
};

// The usual Pending: the answering side checks `*cancelled` before it calls.
class CancelFlag final : public Pending {
 public:
  CancelFlag() : cancelled_(std::make_shared<bool>(false)) {}
  ~CancelFlag() override { *cancelled_ = true; }
  std::shared_ptr<bool> flag() const { return cancelled_; }

 private:
  std::shared_ptr<bool> cancelled_;
};

class Router {
 public:
  virtual ~Router() = default;
  // Answers through `done`, always after Route() has returned, on the
  // caller's loop, and never after the returned handle was destroyed (the
  // session drops it when it ends: no answer can reach it then).
  virtual std::unique_ptr<Pending> Route(const RouteRequest& request, RouteCallback done) = 0;
};

// The consistent-hash ring over the configured shards (routing/shard_ring.h),
// keyed on the normalized user name. Immutable: shared by the workers of one
// config snapshot.
class RingRouter : public Router {
 public:
  RingRouter(std::shared_ptr<const ShardRing> ring, bool domain_only, Poster post);
  std::unique_ptr<Pending> Route(const RouteRequest& request, RouteCallback done) override;
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
  std::unique_ptr<Pending> Route(const RouteRequest& request, RouteCallback done) override;
  // The synchronous answer, for tests and for routers built on this one.
  size_t Lookup(const std::string& user) const;

 private:
  absl::flat_hash_map<std::string, size_t> users_;
  size_t default_backend_;
  Poster post_;
};

}  // namespace postern
