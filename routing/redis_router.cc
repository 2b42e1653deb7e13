#include "routing/redis_router.h"

#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "spdlog/spdlog.h"

namespace postern {

RedisOverrideRouter::RedisOverrideRouter(uv_loop_t* loop, RedisClient* redis,
                                         const RedisOptions& subscriber_options, Options options,
                                         std::unique_ptr<Router> ring, Resolve resolve, Poster post)
    : loop_(loop),
      redis_(redis),
      options_(std::move(options)),
      ring_(std::move(ring)),
      resolve_(std::move(resolve)),
      post_(std::move(post)) {
  // Keyspace notifications for our keys (any database), and our own channel.
  auto sub = RedisSubscriber::Create(
      loop, subscriber_options, {absl::StrCat(options_.prefix, "route-changed")},
      {absl::StrCat("__keyspace@*__:", options_.prefix, "route:*")},
      [this](const RedisMessage& m) { OnMessage(m); },
      [this](RedisSubscriber::Event e) {
        // Messages may have been missed: nothing cached can be trusted.
        if (e != RedisSubscriber::Event::kSubscribed) cache_.clear();
      });
  if (sub.ok()) {
    subscriber_ = *std::move(sub);
  } else {
    spdlog::warn("redis overrides: no invalidation subscription ({}): cached answers live {} ms",
                 std::string(sub.status().message()), options_.cache_ttl.count());
  }
}

RedisOverrideRouter::~RedisOverrideRouter() = default;

void RedisOverrideRouter::OnMessage(const RedisMessage& m) {
  if (!m.pattern.empty()) {
    // __keyspace@0__:<prefix>route:<user>
    const std::string marker = absl::StrCat(":", options_.prefix, "route:");
    const size_t at = m.channel.find(marker);
    if (at != std::string::npos) Invalidate(m.channel.substr(at + marker.size()));
    return;
  }
  Invalidate(m.payload);
}

void RedisOverrideRouter::Invalidate(const std::string& user) {
  if (cache_.erase(user) > 0) ++stats_.invalidations;
}

void RedisOverrideRouter::Fallback(absl::string_view why) {
  ++stats_.fallbacks;
  if (on_fallback_) on_fallback_();
  const uint64_t now = uv_now(loop_);
  if (last_warning_ms_ == 0 || now - last_warning_ms_ >= 60'000) {
    spdlog::warn("redis overrides unavailable, routing by the ring: {} ({} time(s) so far)",
                 std::string(why), stats_.fallbacks);
    last_warning_ms_ = now;
  }
}

std::unique_ptr<Pending> RedisOverrideRouter::Route(const RouteRequest& request,
                                                    RouteCallback done) {
  ++stats_.lookups;
  const std::string user = NormalizeUser(request.user, /*domain_only=*/false);
  const uint64_t now = uv_now(loop_);
  auto it = cache_.find(user);
  if (it != cache_.end() && it->second.expires_ms > now) {
    ++stats_.cache_hits;
    if (!it->second.route.has_value()) return ring_->Route(request, std::move(done));
    ++stats_.overrides;
    auto handle = std::make_unique<CancelFlag>();
    post_([flag = handle->flag(), done = std::move(done), r = *it->second.route]() {
      if (!*flag) done(r);
    });
    return handle;
  }
  if (!redis_->available()) {
    Fallback("not connected");
    return ring_->Route(request, std::move(done));
  }
  // The handle the caller holds cancels the Redis command; the ring's
  // answer, when it comes to that, is asked on the caller's behalf.
  struct State {
    std::unique_ptr<RedisClient::Pending> command;
    std::unique_ptr<Pending> ring;
  };
  class Handle final : public Pending {
   public:
    std::shared_ptr<State> state = std::make_shared<State>();
  };
  auto handle = std::make_unique<Handle>();
  std::weak_ptr<State> weak = handle->state;
  const std::string key = absl::StrCat(options_.prefix, "route:", user);
  const absl::string_view argv[] = {"GET", key};
  handle->state->command = redis_->Command(
      argv,
      [this, weak, user, request, done = std::move(done)](absl::StatusOr<RedisValue> v) mutable {
        std::shared_ptr<State> state = weak.lock();
        if (state == nullptr) return;  // the asker is gone
        std::optional<RouteResult> route;
        if (!v.ok() || v->type == RedisValue::Type::kError) {
          Fallback(v.ok() ? v->str : std::string(v.status().message()));
        } else {
          if (v->type == RedisValue::Type::kString) {
            route = resolve_(v->str);
            if (!route.has_value()) {
              // The value is the operator's; the user name is the client's: not logged.
              spdlog::warn("a redis override names no configured shard or backend: '{}'",
                           v->str.size() > 64 ? std::string("(a long value)") : v->str);
            }
          }
          if (cache_.size() >= options_.max_cache) cache_.clear();  // rare; bounded
          cache_[user] =
              Entry{route, uv_now(loop_) + static_cast<uint64_t>(options_.cache_ttl.count())};
        }
        if (route.has_value()) {
          ++stats_.overrides;
          done(*route);
          return;
        }
        state->ring = ring_->Route(request, std::move(done));
      },
      options_.timeout);
  return handle;
}

}  // namespace postern
