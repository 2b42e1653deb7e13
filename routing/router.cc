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

namespace {

std::unique_ptr<Pending> Post(const Poster& post, RouteCallback done, RouteResult r) {
  auto handle = std::make_unique<CancelFlag>();
  post([flag = handle->flag(), done = std::move(done), r]() {
    if (!*flag) done(r);
  });
  return handle;
}

}  // namespace

std::unique_ptr<Pending> StaticRouter::Route(const RouteRequest& request, RouteCallback done) {
  return Post(post_, std::move(done),
              RouteResult{RouteResult::Kind::kBackend, Lookup(request.user)});
}

RingRouter::RingRouter(std::shared_ptr<const ShardRing> ring, bool domain_only, Poster post)
    : ring_(std::move(ring)), domain_only_(domain_only), post_(std::move(post)) {}

size_t RingRouter::Lookup(const std::string& user) const {
  return ring_->Lookup(NormalizeUser(user, domain_only_));
}

std::unique_ptr<Pending> RingRouter::Route(const RouteRequest& request, RouteCallback done) {
  return Post(post_, std::move(done), RouteResult{RouteResult::Kind::kShard, Lookup(request.user)});
}

}  // namespace postern
