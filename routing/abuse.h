#pragma once

// Failed-login limits (issue 9, "Cache and abuse"): failed logins counted
// per client IP and per user; a delay before each failure answer that grows
// with the count (2 s, 4 s, 8 s, then 15 s by default); past a number of
// failures, a temporary block: further logins from that IP, or for that
// user, are refused at once (after the delay), without asking the directory
// or a backend. routing/README.md ("Failed logins") says why it is built
// this way.
//
// Two parts:
// - AbuseTable, the counts of one Postern process, shared by its workers: a
//   sharded, locked table (like proxy/connection_limiter.h), bounded in size.
// - AbuseGuard, one per worker, on its loop: the table, plus the fleet's
//   counts in Redis through the worker's RedisClient when one is
//   configured. Redis slow or down: the guard answers from the table after
//   at most `redis_timeout`, logs it (rate-limited) and counts it; a login
//   never waits on Redis longer than that.
//
// The session calls Check() before the directory, then Failed() or
// Succeeded() once the directory or the backend has answered. A login
// refused because Check() said "blocked" is neither: it is not counted
// again, so that a block ends `block_for` after the last real failure.

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "routing/redis_client.h"
#include "routing/router.h"

namespace postern {

struct AbusePolicy {
  bool enabled = true;
  // The delay before the answer to the n-th failure in a row:
  // first_delay * factor^(n-1), at most max_delay.
  std::chrono::milliseconds first_delay{2000};
  double factor = 2.0;
  std::chrono::milliseconds max_delay{15000};
  // Failures that block the IP / the user (0: never blocked; delays still
  // grow).
  uint32_t block_after_ip = 20;
  uint32_t block_after_user = 10;
  // A count is forgotten `window` after its last failure (each failure
  // restarts the window); a block lasts `block_for` after the failure that
  // reached the limit (then the count starts again from zero).
  std::chrono::milliseconds window{std::chrono::minutes(15)};
  std::chrono::milliseconds block_for{std::chrono::minutes(15)};
  // Entries per table (IPs, users, IP+user pairs); past it the entries
  // closest to expiry go first, blocked ones last.
  size_t max_entries = 100000;
  // IPv6 clients are counted per network of this prefix (one host usually
  // has a whole /64).
  int ipv6_prefix = 64;
  // Redis keys: <prefix>ip:<address>, <prefix>u:<hash of the user>,
  // <prefix>p:<hash of address and user>.
  std::string redis_prefix = "postern:abuse:";
  // How long Check() waits for Redis before answering from local counts.
  std::chrono::milliseconds redis_timeout{50};

  absl::Status Validate() const;
  bool operator==(const AbusePolicy&) const = default;
  // The delay before answering the `failures`-th failure (0 for 0).
  std::chrono::milliseconds DelayFor(uint32_t failures) const;
};

struct AbuseDecision {
  // Check(): refuse this login now. Failed(): the next logins will be.
  bool blocked = false;
  // How long to wait before the failure answer (0 when Check() lets the
  // login through).
  std::chrono::milliseconds delay{0};
  // For the log line ("client IP 192.0.2.7 blocked: 20 failed logins");
  // never a user name.
  std::string reason;
  uint32_t ip_failures = 0;
  uint32_t user_failures = 0;
};

// A 128-bit key: the first half of a SHA-256 (user names, pairs) or the
// address itself (IPs). No client byte is ever used as is.
struct AbuseKey {
  std::array<uint8_t, 16> bytes{};
  bool operator==(const AbuseKey& o) const { return bytes == o.bytes; }
  template <typename H>
  friend H AbslHashValue(H h, const AbuseKey& k) {
    return H::combine_contiguous(std::move(h), k.bytes.data(), k.bytes.size());
  }
};

// Who a login attempt counts against, computed once per attempt.
struct AbuseSubject {
  // `ip` as text (the session's client address); `user` as the client sent
  // it: ASCII letters are lower-cased (NormalizeUser), so Alice and alice
  // share a count.
  static AbuseSubject Make(absl::string_view ip, absl::string_view user, int ipv6_prefix);

  // "192.0.2.7", "2001:db8:1:2::/64" (IPv4-mapped IPv6 as IPv4); an
  // address that does not parse: "?" and a hash of it.
  std::string ip;
  AbuseKey ip_key, user_key, pair_key;
  std::string user_hex, pair_hex;  // for the Redis keys
};

// The counts of one process, shared by all its workers. Thread-safe.
class AbuseTable {
 public:
  // Milliseconds on a monotonic clock (tests inject their own).
  using Clock = std::function<int64_t()>;
  // INVALID_ARGUMENT when the policy is not valid.
  static absl::StatusOr<std::shared_ptr<AbuseTable>> Create(AbusePolicy policy,
                                                            Clock clock = nullptr);
  // The policy must be valid (Validate()).
  explicit AbuseTable(AbusePolicy policy, Clock clock = nullptr);
  ~AbuseTable();
  AbuseTable(const AbuseTable&) = delete;
  AbuseTable& operator=(const AbuseTable&) = delete;

  const AbusePolicy& policy() const { return policy_; }
  int64_t Now() const;

  // Whether the IP or the user is blocked now (delay set only then).
  AbuseDecision Check(const AbuseSubject& s) const;
  // Counts a failure against the IP, the user and the pair.
  AbuseDecision Failed(const AbuseSubject& s);
  // Forgets the user's failures, and takes this user's own failures from
  // this IP off the IP's count (README: why not all of them).
  void Succeeded(const AbuseSubject& s);
  // Sets the local counts to the fleet's, as read from Redis (0: forgotten).
  // `ip_ttl` / `user_ttl`: what the fleet's key has left (Redis PTTL), or
  // negative when unknown. A count that blocks then ends when the fleet's
  // block does, not a whole block_for after this call (an instance that
  // learns of a block late must not hold it longer than the fleet, since
  // it does not ask Redis again while blocked). Counts below the limit get
  // a whole window from now: they are read from Redis again at each check.
  void Sync(const AbuseSubject& s, uint32_t ip_failures, uint32_t user_failures,
            std::chrono::milliseconds ip_ttl = std::chrono::milliseconds(-1),
            std::chrono::milliseconds user_ttl = std::chrono::milliseconds(-1));

  struct Stats {
    size_t ips = 0, users = 0, pairs = 0;  // entries now (expired ones included until swept)
    uint64_t evictions = 0;                // entries pushed out by the size cap
  };
  Stats stats() const;

 private:
  class Counts;
  AbuseDecision Decide(uint32_t ip, bool ip_blocked, uint32_t user, bool user_blocked,
                       const AbuseSubject& s) const;

  AbusePolicy policy_;
  Clock clock_;
  std::unique_ptr<Counts> ips_, users_, pairs_;
};

// One worker's guard: the shared table and, when configured, Redis.
class AbuseGuard {
 public:
  // A Check in progress; destroying it cancels (the callback never runs).
  class Pending {
   public:
    virtual ~Pending() = default;
  };

  // `table` is shared by the process's workers. `redis`: this worker's
  // client, or null for local counts only; it must outlive the guard, and
  // the guard its Pending checks (the worker ends its sessions first).
  // `post` runs a function later on this worker's loop (Worker::Defer).
  AbuseGuard(std::shared_ptr<AbuseTable> table, RedisClient* redis, Poster post);
  ~AbuseGuard();
  AbuseGuard(const AbuseGuard&) = delete;
  AbuseGuard& operator=(const AbuseGuard&) = delete;

  // Before asking the directory: is this IP or this user blocked? `done`
  // runs on the loop, never inside Check(), never after the Pending is
  // destroyed. Without Redis, while it is down, or when the local table
  // already blocks: from the local table (on the next turn of the loop);
  // else after Redis answers, or after redis_timeout from local counts.
  std::unique_ptr<Pending> Check(absl::string_view ip, absl::string_view user,
                                 std::function<void(AbuseDecision)> done);
  // A failed login: counted locally at once, in Redis asynchronously.
  // Returns the delay before the failure answer, and whether the next
  // attempts are blocked.
  AbuseDecision Failed(absl::string_view ip, absl::string_view user);
  // A successful login (Redis updated asynchronously).
  void Succeeded(absl::string_view ip, absl::string_view user);

  struct Stats {
    uint64_t checks = 0;
    uint64_t refused = 0;          // checks answered "blocked"
    uint64_t failures = 0;         // Failed() calls
    uint64_t redis_fallbacks = 0;  // Redis down, slow or erring: local counts used
  };
  const Stats& stats() const { return stats_; }
  // Called on the loop each time Redis was not usable (for a metric).
  void set_on_fallback(std::function<void()> fn) { on_fallback_ = std::move(fn); }
  // Redis not usable at the last attempt: counting on local counts.
  bool degraded() const { return degraded_; }
  const AbuseTable& table() const { return *table_; }

 private:
  class CheckOp;
  void FinishCheck(CheckOp* op, const absl::StatusOr<RedisValue>& reply);
  // Redis could not help: counts it, and logs it at most once a minute.
  void NoteFallback(const absl::Status& why);
  void NoteRedisOk();
  void Write(std::vector<std::string> argv, const AbuseSubject& s, bool sync);
  std::string RedisKey(absl::string_view kind, absl::string_view id) const;

  std::shared_ptr<AbuseTable> table_;
  RedisClient* redis_;
  Poster post_;
  Stats stats_;
  // Writes to Redis in flight (Failed, Succeeded), cancelled with the guard.
  absl::flat_hash_map<uint64_t, std::unique_ptr<RedisClient::Pending>> writes_;
  uint64_t next_write_ = 1;
  bool degraded_ = false;          // the last Redis operation failed
  bool warned_ = false;            // a warning not yet followed by "answers again"
  int64_t last_fallback_log_ = 0;  // table clock, 0: never
  uint64_t unlogged_fallbacks_ = 0;
  std::function<void()> on_fallback_;
};

}  // namespace postern
