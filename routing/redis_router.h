#pragma once

// Per-user routing overrides kept in Redis (issue 10): a mailbox being moved
// between shards is pointed at its new home with one write,
//   SET <prefix>route:<user>  "shard:<name>" | "backend:<name>" | "<name>"
// (user normalized as the ring's key, lower-cased), read by every instance
// of the fleet. Precedence (README.md, "Routing"): a directory's answer,
// then this override, then the ring.
//
// Lookups are asynchronous (the worker's RedisClient), remembered for
// routing.override_cache_ttl, and forgotten sooner when Redis says the key
// changed: a keyspace notification for it (Redis with
// notify-keyspace-events including "K$g"), or a message on
// <prefix>route-changed carrying the user (for Redis without
// notifications). After a lost subscription the cache is emptied. Redis
// unreachable or slow: the ring answers, a counter counts it, and the log
// says so at most once a minute; the client reconnects with backoff.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "routing/redis_client.h"
#include "routing/router.h"

namespace postern {

class RedisOverrideRouter final : public Router {
 public:
  // What an override's value names, in the caller's config snapshot; nullopt
  // for a name it does not know (logged, then the ring answers).
  using Resolve = std::function<std::optional<RouteResult>(absl::string_view value)>;

  struct Options {
    std::string prefix = "postern:";  // keys: <prefix>route:<user>
    std::chrono::milliseconds cache_ttl{1000};
    std::chrono::milliseconds timeout{200};  // per lookup; then the ring
    size_t max_cache = 100'000;
  };

  struct Stats {
    uint64_t lookups = 0;
    uint64_t cache_hits = 0;
    uint64_t overrides = 0;  // answers from an override
    uint64_t fallbacks = 0;  // Redis unavailable or failing: the ring answered
    uint64_t invalidations = 0;
  };

  // `redis` (the worker's) outlives the router; `subscriber_options` opens
  // the invalidation subscription on `loop`.
  RedisOverrideRouter(uv_loop_t* loop, RedisClient* redis, const RedisOptions& subscriber_options,
                      Options options, std::unique_ptr<Router> ring, Resolve resolve, Poster post);
  ~RedisOverrideRouter() override;

  std::unique_ptr<Pending> Route(const RouteRequest& request, RouteCallback done) override;
  const Stats& stats() const { return stats_; }
  // Called on the loop each time the ring answered for want of Redis.
  void set_on_fallback(std::function<void()> fn) { on_fallback_ = std::move(fn); }
  // A user's override changed (pub/sub); `user` already normalized.
  void Invalidate(const std::string& user);

 private:
  struct Entry {
    std::optional<RouteResult> route;  // nullopt: no override, the ring decides
    uint64_t expires_ms;
  };
  void Fallback(absl::string_view why);
  void OnMessage(const RedisMessage& m);

  uv_loop_t* loop_;
  RedisClient* redis_;
  Options options_;
  std::unique_ptr<Router> ring_;
  Resolve resolve_;
  Poster post_;
  std::unique_ptr<RedisSubscriber> subscriber_;
  absl::flat_hash_map<std::string, Entry> cache_;
  Stats stats_;
  std::function<void()> on_fallback_;
  uint64_t last_warning_ms_ = 0;
};

}  // namespace postern
