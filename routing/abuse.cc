#include "routing/abuse.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/sha.h>

#include <algorithm>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <list>
#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "routing/shard_ring.h"
#include "spdlog/spdlog.h"

namespace postern {
namespace {

// Fleet-wide counting, one round trip per event. Keys: the IP, the user,
// the pair. A count's key expires `window` after its last failure, or
// `block_for` once it has reached its limit (0: no limit).
// ARGV: window_ms, block_ms, ip_limit, user_limit. Returns the three counts.
constexpr char kFailedScript[] = R"lua(
local out = {}
local limits = {tonumber(ARGV[3]), tonumber(ARGV[4]), 0}
for i = 1, 3 do
  local n = redis.call('INCR', KEYS[i])
  local ttl = ARGV[1]
  if limits[i] > 0 and n >= limits[i] then ttl = ARGV[2] end
  redis.call('PEXPIRE', KEYS[i], ttl)
  out[i] = n
end
return out
)lua";

// A check: the IP's and the user's counts, each with what its key has left
// (PTTL: -1 without an expiry, -2 gone), so that a block learned here ends
// when the fleet's does. Returns {ip, ip_pttl, user, user_pttl}; a value
// that is not a count is an error reply.
constexpr char kCheckScript[] = R"lua(
local out = {}
for i = 1, 2 do
  local v = redis.call('GET', KEYS[i])
  local n, ttl = 0, -2
  if v then
    n = tonumber(v)
    if n == nil then return redis.error_reply('not a count: ' .. KEYS[i]) end
    ttl = redis.call('PTTL', KEYS[i])
  end
  out[2 * i - 1] = n
  out[2 * i] = ttl
end
return out
)lua";

// A success: forgets the user's count, and takes the pair's count (this
// user's failures from this IP) off the IP's. ARGV: window_ms, ip_limit.
// Returns the pair's count.
constexpr char kSucceededScript[] = R"lua(
redis.call('DEL', KEYS[2])
local p = tonumber(redis.call('GET', KEYS[3]) or '0') or 0
redis.call('DEL', KEYS[3])
if p > 0 then
  local n = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
  if n <= p then
    redis.call('DEL', KEYS[1])
  else
    redis.call('DECRBY', KEYS[1], p)
    local limit = tonumber(ARGV[2])
    if limit > 0 and n >= limit and n - p < limit then
      redis.call('PEXPIRE', KEYS[1], ARGV[1])
    end
  end
end
return p
)lua";

constexpr int64_t kFallbackLogIntervalMs = 60000;

int64_t SteadyMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// The first 16 bytes of SHA-256(domain NUL part NUL part ...).
AbuseKey Digest(std::initializer_list<absl::string_view> parts) {
  SHA256_CTX ctx;
  SHA256_Init(&ctx);
  bool first = true;
  for (absl::string_view p : parts) {
    if (!first) SHA256_Update(&ctx, "", 1);
    first = false;
    SHA256_Update(&ctx, p.data(), p.size());
  }
  uint8_t md[SHA256_DIGEST_LENGTH];
  SHA256_Final(md, &ctx);
  AbuseKey k;
  std::memcpy(k.bytes.data(), md, k.bytes.size());
  return k;
}

std::string Hex(const AbuseKey& k) {
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(k.bytes.data()), k.bytes.size()));
}

std::string NormalizeIp(absl::string_view ip, int ipv6_prefix) {
  std::string text(ip);
  char buf[INET6_ADDRSTRLEN];
  in_addr v4;
  in6_addr v6;
  if (inet_pton(AF_INET, text.c_str(), &v4) == 1) {
    inet_ntop(AF_INET, &v4, buf, sizeof(buf));
    return buf;
  }
  if (inet_pton(AF_INET6, text.c_str(), &v6) == 1) {
    if (IN6_IS_ADDR_V4MAPPED(&v6)) {
      std::memcpy(&v4, &v6.s6_addr[12], 4);
      inet_ntop(AF_INET, &v4, buf, sizeof(buf));
      return buf;
    }
    int prefix = std::clamp(ipv6_prefix, 0, 128);
    for (int i = 0; i < 16; ++i) {
      int keep = std::clamp(prefix - 8 * i, 0, 8);
      v6.s6_addr[i] &= static_cast<uint8_t>(0xff00 >> keep);
    }
    inet_ntop(AF_INET6, &v6, buf, sizeof(buf));
    return prefix == 128 ? std::string(buf) : absl::StrCat(buf, "/", prefix);
  }
  return absl::StrCat("?", Hex(Digest({"raw-ip", ip})));
}

uint32_t Saturate(int64_t v) {
  if (v <= 0) return 0;
  return static_cast<uint32_t>(std::min<int64_t>(v, std::numeric_limits<uint32_t>::max()));
}

}  // namespace

// --- policy ----------------------------------------------------------------

absl::Status AbusePolicy::Validate() const {
  if (first_delay.count() < 0 || max_delay < first_delay) {
    return absl::InvalidArgumentError("abuse: need 0 <= first_delay <= max_delay");
  }
  if (!(factor >= 1.0) || factor > 1000.0) {
    return absl::InvalidArgumentError("abuse: factor must be in 1..1000");
  }
  if (window.count() <= 0 || block_for.count() <= 0) {
    return absl::InvalidArgumentError("abuse: window and block_for must be positive");
  }
  if (max_entries == 0) return absl::InvalidArgumentError("abuse: max_entries must be > 0");
  if (ipv6_prefix < 16 || ipv6_prefix > 128) {
    return absl::InvalidArgumentError("abuse: ipv6_prefix must be in 16..128");
  }
  if (redis_timeout.count() <= 0) {
    return absl::InvalidArgumentError("abuse: redis_timeout must be positive");
  }
  return absl::OkStatus();
}

std::chrono::milliseconds AbusePolicy::DelayFor(uint32_t failures) const {
  if (failures == 0) return std::chrono::milliseconds(0);
  double d = static_cast<double>(first_delay.count());
  const double cap = static_cast<double>(max_delay.count());
  for (uint32_t i = 1; i < failures && d < cap; ++i) d *= factor;
  return std::chrono::milliseconds(static_cast<int64_t>(std::min(d, cap)));
}

AbuseSubject AbuseSubject::Make(absl::string_view ip, absl::string_view user, int ipv6_prefix) {
  AbuseSubject s;
  s.ip = NormalizeIp(ip, ipv6_prefix);
  std::string u = NormalizeUser(user, /*domain_only=*/false);
  s.ip_key = Digest({"ip", s.ip});
  s.user_key = Digest({"user", u});
  s.pair_key = Digest({"pair", s.ip, u});  // the address holds no NUL: unambiguous
  s.user_hex = Hex(s.user_key);
  s.pair_hex = Hex(s.pair_key);
  return s;
}

// --- the table ---------------------------------------------------------------

// Counts by key in 32 shards, each under its own lock. A shard keeps two
// lists in order of expiry (every entry in a list has the same lifetime,
// counted from its last update, and an update moves it to the back; a block
// synced from the fleet with less time left goes to its place in order):
// one for entries below their limit, one for blocked ones. Expired entries are
// swept from the fronts on every insertion; when a shard is full, the front
// of the first list goes, and a blocked entry only when no other is left,
// so that a flood of new names cannot lift a block.
class AbuseTable::Counts {
 public:
  struct Value {
    uint32_t n = 0;
    bool blocked = false;
  };

  Counts(size_t max_entries, uint32_t block_after, int64_t window_ms, int64_t block_ms)
      : cap_(std::max<size_t>(1, max_entries / kShards)),
        block_after_(block_after),
        window_ms_(window_ms),
        block_ms_(block_ms) {}

  Value Get(const AbuseKey& k, int64_t now) const {
    Shard& s = ShardOf(k);
    std::lock_guard<std::mutex> lock(s.mu);
    auto f = s.index.find(k);
    if (f == s.index.end() || f->second->expires <= now) return Value{};
    return Value{f->second->n, f->second->blocked};
  }

  Value Add(const AbuseKey& k, int64_t now) {
    Shard& s = ShardOf(k);
    std::lock_guard<std::mutex> lock(s.mu);
    List::iterator it = FindOrInsert(s, k, now);
    if (it->n < std::numeric_limits<uint32_t>::max()) ++it->n;
    Place(s, it, now);
    return Value{it->n, it->blocked};
  }

  // Sets the count (0: forgets the key). `remaining_ms` (when >= 0): what a
  // block has left elsewhere; a count that blocks then ends with it.
  void Set(const AbuseKey& k, uint32_t n, int64_t now, int64_t remaining_ms = -1) {
    Shard& s = ShardOf(k);
    std::lock_guard<std::mutex> lock(s.mu);
    if (n == 0) {
      EraseLocked(s, k);
      return;
    }
    List::iterator it = FindOrInsert(s, k, now);
    if (it->n == n && it->expires > now && !(it->blocked && remaining_ms >= 0)) {
      return;  // unchanged: keep its expiry
    }
    it->n = n;
    Place(s, it, now, remaining_ms);
  }

  // The count, and forgets the key.
  uint32_t Take(const AbuseKey& k, int64_t now) {
    Shard& s = ShardOf(k);
    std::lock_guard<std::mutex> lock(s.mu);
    auto f = s.index.find(k);
    if (f == s.index.end()) return 0;
    uint32_t n = f->second->expires > now ? f->second->n : 0;
    EraseLocked(s, k);
    return n;
  }

  // Takes `n` off the count, keeping its expiry unless that ends a block.
  void Subtract(const AbuseKey& k, uint32_t n, int64_t now) {
    Shard& s = ShardOf(k);
    std::lock_guard<std::mutex> lock(s.mu);
    auto f = s.index.find(k);
    if (f == s.index.end()) return;
    List::iterator it = f->second;
    if (it->expires <= now || it->n <= n) {
      EraseLocked(s, k);
      return;
    }
    it->n -= n;
    if (it->blocked && !Reached(it->n)) Place(s, it, now);
  }

  void Erase(const AbuseKey& k) {
    Shard& s = ShardOf(k);
    std::lock_guard<std::mutex> lock(s.mu);
    EraseLocked(s, k);
  }

  size_t size() const {
    size_t n = 0;
    for (Shard& s : shards_) {
      std::lock_guard<std::mutex> lock(s.mu);
      n += s.index.size();
    }
    return n;
  }

  uint64_t evictions() const {
    uint64_t n = 0;
    for (Shard& s : shards_) {
      std::lock_guard<std::mutex> lock(s.mu);
      n += s.evictions;
    }
    return n;
  }

 private:
  static constexpr size_t kShards = 32;
  struct Node {
    AbuseKey key;
    uint32_t n = 0;
    bool blocked = false;
    int64_t expires = 0;
  };
  using List = std::list<Node>;
  struct Shard {
    std::mutex mu;
    List counting;  // below the limit, in order of expiry
    List blocked;   // at or over it, in order of expiry
    absl::flat_hash_map<AbuseKey, List::iterator> index;
    uint64_t evictions = 0;
  };

  Shard& ShardOf(const AbuseKey& k) const {
    // The key is a hash already (or an address): its first bytes will do.
    return shards_[(static_cast<size_t>(k.bytes[0]) | static_cast<size_t>(k.bytes[1]) << 8) %
                   kShards];
  }

  bool Reached(uint32_t n) const { return block_after_ != 0 && n >= block_after_; }

  // Moves the entry to the back of the list its count belongs to, with a
  // fresh lifetime; or, for a block that has only `remaining_ms` left
  // elsewhere (0 <= remaining_ms < block_for), with that lifetime, at its
  // place in order of expiry (found from the back: once per block learned
  // from the fleet, since a blocked entry is not synced again).
  void Place(Shard& s, List::iterator it, int64_t now, int64_t remaining_ms = -1) {
    bool blocked = Reached(it->n);
    List& from = it->blocked ? s.blocked : s.counting;
    List& to = blocked ? s.blocked : s.counting;
    it->blocked = blocked;
    if (!blocked || remaining_ms < 0 || remaining_ms >= block_ms_) {
      it->expires = now + (blocked ? block_ms_ : window_ms_);
      to.splice(to.end(), from, it);
      return;
    }
    it->expires = now + remaining_ms;
    List::iterator pos = to.end();
    while (pos != to.begin()) {
      List::iterator prev = std::prev(pos);
      if (prev != it && prev->expires <= it->expires) break;
      pos = prev;
    }
    to.splice(pos, from, it);
  }

  // The live entry for `k`, or a new one with a count of 0 (an expired one
  // starts again from 0).
  List::iterator FindOrInsert(Shard& s, const AbuseKey& k, int64_t now) {
    auto f = s.index.find(k);
    if (f != s.index.end()) {
      List::iterator it = f->second;
      if (it->expires <= now) it->n = 0;
      return it;
    }
    Sweep(s, now);
    if (s.index.size() >= cap_) {
      List& victims = !s.counting.empty() ? s.counting : s.blocked;
      s.index.erase(victims.front().key);
      victims.pop_front();
      ++s.evictions;
    }
    s.counting.push_back(Node{k, 0, false, now});
    List::iterator it = std::prev(s.counting.end());
    s.index.emplace(k, it);
    return it;
  }

  void Sweep(Shard& s, int64_t now) {
    for (List* l : {&s.counting, &s.blocked}) {
      while (!l->empty() && l->front().expires <= now) {
        s.index.erase(l->front().key);
        l->pop_front();
      }
    }
  }

  void EraseLocked(Shard& s, const AbuseKey& k) {
    auto f = s.index.find(k);
    if (f == s.index.end()) return;
    List::iterator it = f->second;
    (it->blocked ? s.blocked : s.counting).erase(it);
    s.index.erase(f);
  }

  const size_t cap_;  // per shard
  const uint32_t block_after_;
  const int64_t window_ms_;
  const int64_t block_ms_;
  mutable Shard shards_[kShards];
};

AbuseTable::AbuseTable(AbusePolicy policy, Clock clock)
    : policy_(std::move(policy)), clock_(clock ? std::move(clock) : Clock(&SteadyMs)) {
  const int64_t window = policy_.window.count();
  const int64_t block = policy_.block_for.count();
  ips_ = std::make_unique<Counts>(policy_.max_entries, policy_.block_after_ip, window, block);
  users_ = std::make_unique<Counts>(policy_.max_entries, policy_.block_after_user, window, block);
  pairs_ = std::make_unique<Counts>(policy_.max_entries, 0, window, block);
}

AbuseTable::~AbuseTable() = default;

absl::StatusOr<std::shared_ptr<AbuseTable>> AbuseTable::Create(AbusePolicy policy, Clock clock) {
  if (absl::Status s = policy.Validate(); !s.ok()) return s;
  return std::make_shared<AbuseTable>(std::move(policy), std::move(clock));
}

int64_t AbuseTable::Now() const { return clock_(); }

AbuseDecision AbuseTable::Decide(uint32_t ip, bool ip_blocked, uint32_t user, bool user_blocked,
                                 const AbuseSubject& s) const {
  AbuseDecision d;
  d.ip_failures = ip;
  d.user_failures = user;
  d.blocked = ip_blocked || user_blocked;
  if (ip_blocked) d.reason = absl::StrCat("client IP ", s.ip, " blocked: ", ip, " failed logins");
  if (user_blocked) {
    absl::StrAppend(&d.reason, d.reason.empty() ? "" : "; ", "user blocked: ", user,
                    " failed logins");
  }
  return d;
}

AbuseDecision AbuseTable::Check(const AbuseSubject& s) const {
  int64_t now = Now();
  Counts::Value ip = ips_->Get(s.ip_key, now);
  Counts::Value user = users_->Get(s.user_key, now);
  AbuseDecision d = Decide(ip.n, ip.blocked, user.n, user.blocked, s);
  if (d.blocked) d.delay = policy_.DelayFor(std::max(ip.n, user.n));
  return d;
}

AbuseDecision AbuseTable::Failed(const AbuseSubject& s) {
  int64_t now = Now();
  Counts::Value ip = ips_->Add(s.ip_key, now);
  Counts::Value user = users_->Add(s.user_key, now);
  pairs_->Add(s.pair_key, now);
  AbuseDecision d = Decide(ip.n, ip.blocked, user.n, user.blocked, s);
  d.delay = policy_.DelayFor(std::max(ip.n, user.n));
  return d;
}

void AbuseTable::Succeeded(const AbuseSubject& s) {
  int64_t now = Now();
  users_->Erase(s.user_key);
  uint32_t own = pairs_->Take(s.pair_key, now);
  if (own > 0) ips_->Subtract(s.ip_key, own, now);
}

void AbuseTable::Sync(const AbuseSubject& s, uint32_t ip_failures, uint32_t user_failures,
                      std::chrono::milliseconds ip_ttl, std::chrono::milliseconds user_ttl) {
  int64_t now = Now();
  ips_->Set(s.ip_key, ip_failures, now, ip_ttl.count());
  users_->Set(s.user_key, user_failures, now, user_ttl.count());
}

AbuseTable::Stats AbuseTable::stats() const {
  Stats st;
  st.ips = ips_->size();
  st.users = users_->size();
  st.pairs = pairs_->size();
  st.evictions = ips_->evictions() + users_->evictions() + pairs_->evictions();
  return st;
}

// --- the guard ---------------------------------------------------------------

class AbuseGuard::CheckOp final : public AbuseGuard::Pending {
 public:
  using Done = std::function<void(AbuseDecision)>;
  explicit CheckOp(Done done) : done(std::make_shared<Done>(std::move(done))) {}
  ~CheckOp() override { *done = nullptr; }

  // Shared with a posted answer, which finds it empty once cancelled.
  std::shared_ptr<Done> done;
  AbuseSubject subject;
  std::unique_ptr<RedisClient::Pending> read;
};

AbuseGuard::AbuseGuard(std::shared_ptr<AbuseTable> table, RedisClient* redis, Poster post)
    : table_(std::move(table)), redis_(redis), post_(std::move(post)) {}

AbuseGuard::~AbuseGuard() = default;

std::string AbuseGuard::RedisKey(absl::string_view kind, absl::string_view id) const {
  return absl::StrCat(table_->policy().redis_prefix, kind, id);
}

std::unique_ptr<AbuseGuard::Pending> AbuseGuard::Check(absl::string_view ip, absl::string_view user,
                                                       std::function<void(AbuseDecision)> done) {
  ++stats_.checks;
  auto op = std::make_unique<CheckOp>(std::move(done));
  const AbusePolicy& policy = table_->policy();
  AbuseDecision local;
  if (policy.enabled) {
    op->subject = AbuseSubject::Make(ip, user, policy.ipv6_prefix);
    local = table_->Check(op->subject);
    // Blocked here already: no need to ask the fleet (the hot path under
    // attack stays off Redis).
    if (!local.blocked && redis_ != nullptr) {
      if (redis_->available()) {
        CheckOp* raw = op.get();
        std::string ip_key = RedisKey("ip:", op->subject.ip);
        std::string user_key = RedisKey("u:", op->subject.user_hex);
        op->read = redis_->Command(
            {"EVAL", kCheckScript, "2", ip_key, user_key},
            [this, raw](absl::StatusOr<RedisValue> reply) { FinishCheck(raw, reply); },
            policy.redis_timeout);
        return op;
      }
      NoteFallback(absl::UnavailableError("not connected"));
    }
  }
  if (local.blocked) ++stats_.refused;
  post_([done = op->done, local]() {
    if (!*done) return;
    CheckOp::Done fn = std::move(*done);
    *done = nullptr;
    fn(local);
  });
  return op;
}

void AbuseGuard::FinishCheck(CheckOp* op, const absl::StatusOr<RedisValue>& reply) {
  const AbuseSubject& s = op->subject;
  bool ok = false;
  if (reply.ok() && reply->type == RedisValue::Type::kArray && reply->elements.size() == 4) {
    std::optional<int64_t> v[4];
    for (size_t i = 0; i < 4; ++i) v[i] = reply->elements[i].AsInteger();
    if (v[0].has_value() && v[1].has_value() && v[2].has_value() && v[3].has_value()) {
      // Redis is the reference while it answers: a success on another
      // instance may have lowered a count this one still holds, and a
      // block made elsewhere ends when it ends there.
      table_->Sync(s, Saturate(*v[0]), Saturate(*v[2]), std::chrono::milliseconds(*v[1]),
                   std::chrono::milliseconds(*v[3]));
      NoteRedisOk();
      ok = true;
    }
  }
  if (!ok) {
    absl::Status why = reply.status();
    if (reply.ok()) {
      why = absl::InternalError(
          reply->is_error() ? reply->str
                            : absl::StrCat("unexpected check reply ", reply->DebugString()));
    }
    NoteFallback(why);
  }
  AbuseDecision d = table_->Check(s);
  if (d.blocked) ++stats_.refused;
  CheckOp::Done fn = std::move(*op->done);
  *op->done = nullptr;
  if (fn) fn(std::move(d));  // may destroy op
}

AbuseDecision AbuseGuard::Failed(absl::string_view ip, absl::string_view user) {
  ++stats_.failures;
  const AbusePolicy& policy = table_->policy();
  if (!policy.enabled) return AbuseDecision();
  AbuseSubject s = AbuseSubject::Make(ip, user, policy.ipv6_prefix);
  AbuseDecision d = table_->Failed(s);
  // Logged by the instance whose failure reached the limit ("900 s", "0.5 s").
  const std::string block_s = absl::StrCat(static_cast<double>(policy.block_for.count()) / 1000);
  if (policy.block_after_ip != 0 && d.ip_failures == policy.block_after_ip) {
    spdlog::info("abuse: client IP {} blocked for {} s after {} failed logins", s.ip, block_s,
                 d.ip_failures);
  }
  if (policy.block_after_user != 0 && d.user_failures == policy.block_after_user) {
    spdlog::info("abuse: user \"{}\" blocked for {} s after {} failed logins",
                 absl::CHexEscape(user), block_s, d.user_failures);
  }
  if (redis_ != nullptr) {
    Write({"EVAL", kFailedScript, "3", RedisKey("ip:", s.ip), RedisKey("u:", s.user_hex),
           RedisKey("p:", s.pair_hex), absl::StrCat(policy.window.count()),
           absl::StrCat(policy.block_for.count()), absl::StrCat(policy.block_after_ip),
           absl::StrCat(policy.block_after_user)},
          s, /*sync=*/true);
  }
  return d;
}

void AbuseGuard::Succeeded(absl::string_view ip, absl::string_view user) {
  const AbusePolicy& policy = table_->policy();
  if (!policy.enabled) return;
  AbuseSubject s = AbuseSubject::Make(ip, user, policy.ipv6_prefix);
  table_->Succeeded(s);
  if (redis_ != nullptr) {
    Write({"EVAL", kSucceededScript, "3", RedisKey("ip:", s.ip), RedisKey("u:", s.user_hex),
           RedisKey("p:", s.pair_hex), absl::StrCat(policy.window.count()),
           absl::StrCat(policy.block_after_ip)},
          s, /*sync=*/false);
  }
}

void AbuseGuard::Write(std::vector<std::string> argv, const AbuseSubject& s, bool sync) {
  if (!redis_->available()) {
    NoteFallback(absl::UnavailableError("not connected"));
    return;
  }
  std::vector<absl::string_view> views(argv.begin(), argv.end());
  uint64_t id = next_write_++;
  writes_[id] = redis_->Command(views, [this, id, s, sync](absl::StatusOr<RedisValue> reply) {
    writes_.erase(id);  // this callback's own handle: already detached
    if (!reply.ok() || reply->is_error()) {
      NoteFallback(reply.ok() ? absl::InternalError(reply->str) : reply.status());
      return;
    }
    NoteRedisOk();
    if (sync && reply->type == RedisValue::Type::kArray && reply->elements.size() == 3) {
      std::optional<int64_t> ip = reply->elements[0].AsInteger();
      std::optional<int64_t> user = reply->elements[1].AsInteger();
      if (ip.has_value() && user.has_value()) table_->Sync(s, Saturate(*ip), Saturate(*user));
    }
  });
}

void AbuseGuard::NoteFallback(const absl::Status& why) {
  ++stats_.redis_fallbacks;
  if (on_fallback_) on_fallback_();
  degraded_ = true;
  int64_t now = table_->Now();
  if (last_fallback_log_ != 0 && now - last_fallback_log_ < kFallbackLogIntervalMs) {
    ++unlogged_fallbacks_;
    return;
  }
  spdlog::warn("abuse: Redis not usable ({}): failed logins are counted by this instance only{}",
               std::string(why.message()),
               unlogged_fallbacks_ == 0
                   ? std::string()
                   : absl::StrCat(" (", unlogged_fallbacks_, " more time(s) since the last line)"));
  last_fallback_log_ = std::max<int64_t>(now, 1);
  unlogged_fallbacks_ = 0;
  warned_ = true;
}

void AbuseGuard::NoteRedisOk() {
  degraded_ = false;
  // One line back for each warning (which are at most one a minute).
  if (!warned_) return;
  warned_ = false;
  spdlog::info("abuse: Redis answers again: failed logins are counted fleet-wide");
}

}  // namespace postern
