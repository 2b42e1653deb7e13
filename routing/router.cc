#include "routing/router.h"

#include <utility>

namespace postern {

StaticRouter::StaticRouter(absl::flat_hash_map<std::string, size_t> users, size_t default_backend,
                           Poster post)
    : users_(std::move(users)), default_backend_(default_backend), post_(std::move(post)) {}

size_t StaticRouter::Lookup(const std::string& user) const {
  auto it = users_.find(user);
  return it == users_.end() ? default_backend_ : it->second;
}

void StaticRouter::Route(const RouteRequest& request, RouteCallback done) {
  RouteResult r{RouteResult::Kind::kBackend, Lookup(request.user)};
  post_([done = std::move(done), r]() { done(r); });
}

RingRouter::RingRouter(std::shared_ptr<const ShardRing> ring, bool domain_only, Poster post)
    : ring_(std::move(ring)), domain_only_(domain_only), post_(std::move(post)) {}

size_t RingRouter::Lookup(const std::string& user) const {
  return ring_->Lookup(NormalizeUser(user, domain_only_));
}

void RingRouter::Route(const RouteRequest& request, RouteCallback done) {
  RouteResult r{RouteResult::Kind::kShard, Lookup(request.user)};
  post_([done = std::move(done), r]() { done(r); });
}

}  // namespace postern
