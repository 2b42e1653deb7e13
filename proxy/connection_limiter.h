#pragma once

// Concurrent connections per client IP, shared by all workers
// (limits.max_connections_per_ip). Counted at accept and given back when the
// session ends. Sharded by the address's hash so workers rarely meet on a
// lock; the tables hold only addresses with open connections.

#include <atomic>
#include <cstdint>
#include <mutex>

#include "absl/container/flat_hash_map.h"
#include "proxy/peer_address.h"

namespace postern {

class ConnectionLimiter {
 public:
  // `max_per_ip` 0: no cap (still counted, for the admin views to come).
  explicit ConnectionLimiter(uint32_t max_per_ip) : max_per_ip_(max_per_ip) {}
  // A reload's new cap (connections already counted stay).
  void set_max_per_ip(uint32_t max) { max_per_ip_.store(max, std::memory_order_relaxed); }
  ConnectionLimiter(const ConnectionLimiter&) = delete;
  ConnectionLimiter& operator=(const ConnectionLimiter&) = delete;

  // Counts one more connection from `ip`: false (and nothing counted) when
  // it already has max_per_ip.
  bool Acquire(const IpKey& ip);
  void Release(const IpKey& ip);
  // Open connections from `ip` (tests, admin).
  uint32_t Count(const IpKey& ip) const;

 private:
  static constexpr size_t kShards = 32;
  struct Shard {
    mutable std::mutex mu;
    absl::flat_hash_map<IpKey, uint32_t> counts;
  };
  Shard& ShardOf(const IpKey& ip) const;

  std::atomic<uint32_t> max_per_ip_;
  mutable Shard shards_[kShards];
};

}  // namespace postern
