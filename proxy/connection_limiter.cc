#include "proxy/connection_limiter.h"

namespace postern {

ConnectionLimiter::Shard& ConnectionLimiter::ShardOf(const IpKey& ip) const {
  return shards_[absl::Hash<IpKey>()(ip) % kShards];
}

bool ConnectionLimiter::Acquire(const IpKey& ip) {
  Shard& s = ShardOf(ip);
  std::lock_guard<std::mutex> lock(s.mu);
  uint32_t& n = s.counts[ip];
  const uint32_t max = max_per_ip_.load(std::memory_order_relaxed);
  if (max != 0 && n >= max) {
    if (n == 0) s.counts.erase(ip);
    return false;
  }
  ++n;
  return true;
}

void ConnectionLimiter::Release(const IpKey& ip) {
  Shard& s = ShardOf(ip);
  std::lock_guard<std::mutex> lock(s.mu);
  auto it = s.counts.find(ip);
  if (it == s.counts.end()) return;
  if (--it->second == 0) s.counts.erase(it);
}

uint32_t ConnectionLimiter::Count(const IpKey& ip) const {
  Shard& s = ShardOf(ip);
  std::lock_guard<std::mutex> lock(s.mu);
  auto it = s.counts.find(ip);
  return it == s.counts.end() ? 0 : it->second;
}

}  // namespace postern
