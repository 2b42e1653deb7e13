#include "routing/abuse.h"

#include <malloc.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/routing/redis_test_util.h"

namespace postern {
namespace {

using namespace std::chrono_literals;
using testing_redis::LogCapture;
using testing_redis::TestLoop;
using testing_redis::TestRedisServer;
using SteadyClock = std::chrono::steady_clock;

// A table on a clock the test moves by hand.
struct ManualClock {
  int64_t now = 1'000'000;
  AbuseTable::Clock fn() {
    return [this] { return now; };
  }
};

AbuseSubject S(const std::string& ip, const std::string& user, int prefix = 64) {
  return AbuseSubject::Make(ip, user, prefix);
}

TEST(AbusePolicyTest, Validate) {
  AbusePolicy p;
  EXPECT_TRUE(p.Validate().ok());
  AbusePolicy bad = p;
  bad.factor = 0.5;
  EXPECT_FALSE(bad.Validate().ok());
  bad = p;
  bad.max_delay = 1s;  // below first_delay
  EXPECT_FALSE(bad.Validate().ok());
  bad = p;
  bad.window = 0ms;
  EXPECT_FALSE(bad.Validate().ok());
  bad = p;
  bad.max_entries = 0;
  EXPECT_FALSE(bad.Validate().ok());
  bad = p;
  bad.ipv6_prefix = 129;
  EXPECT_FALSE(bad.Validate().ok());
  EXPECT_FALSE(AbuseTable::Create(bad).ok());
  EXPECT_TRUE(AbuseTable::Create(p).ok());
}

TEST(AbusePolicyTest, DelaysDoubleUpToTheCap) {
  AbusePolicy p;
  const int64_t want[] = {0, 2000, 4000, 8000, 15000, 15000, 15000};
  for (uint32_t n = 0; n < 7; ++n) EXPECT_EQ(p.DelayFor(n).count(), want[n]) << n;
  EXPECT_EQ(p.DelayFor(4'000'000'000u).count(), 15000);
  p.first_delay = 100ms;
  p.factor = 3;
  p.max_delay = 1s;
  EXPECT_EQ(p.DelayFor(1).count(), 100);
  EXPECT_EQ(p.DelayFor(2).count(), 300);
  EXPECT_EQ(p.DelayFor(3).count(), 900);
  EXPECT_EQ(p.DelayFor(4).count(), 1000);
  p.factor = 1;
  EXPECT_EQ(p.DelayFor(50).count(), 100);
}

TEST(AbuseTableTest, DelaysGrowWithFailures) {
  ManualClock clock;
  AbuseTable t(AbusePolicy(), clock.fn());
  AbuseSubject s = S("192.0.2.7", "alice");
  const int64_t want[] = {2000, 4000, 8000, 15000, 15000};
  for (int64_t w : want) {
    AbuseDecision d = t.Failed(s);
    EXPECT_EQ(d.delay.count(), w);
    EXPECT_FALSE(d.blocked);
  }
  EXPECT_EQ(t.Check(s).user_failures, 5u);
  EXPECT_EQ(t.Check(s).ip_failures, 5u);
  EXPECT_EQ(t.Check(s).delay.count(), 0);  // not blocked: no delay before trying
  // The delay follows the larger count: a fresh user from this IP starts at 15 s.
  EXPECT_EQ(t.Failed(S("192.0.2.7", "bob")).delay.count(), 15000);
}

TEST(AbuseTableTest, UserBlockedAfterN) {
  ManualClock clock;
  AbusePolicy p;
  p.block_after_user = 3;
  p.block_after_ip = 0;
  AbuseTable t(p, clock.fn());
  EXPECT_FALSE(t.Failed(S("192.0.2.1", "alice")).blocked);
  EXPECT_FALSE(t.Failed(S("192.0.2.2", "alice")).blocked);
  AbuseDecision third = t.Failed(S("192.0.2.3", "alice"));
  EXPECT_TRUE(third.blocked);
  EXPECT_EQ(third.user_failures, 3u);
  // Any IP, this user: refused, with the delay.
  AbuseDecision d = t.Check(S("198.51.100.9", "Alice"));
  EXPECT_TRUE(d.blocked);
  EXPECT_EQ(d.delay.count(), 8000);
  EXPECT_EQ(d.reason, "user blocked: 3 failed logins");
  // Other users from the same IPs: fine.
  EXPECT_FALSE(t.Check(S("192.0.2.3", "bob")).blocked);
}

TEST(AbuseTableTest, IpBlockedAfterN) {
  ManualClock clock;
  AbusePolicy p;
  p.block_after_ip = 5;
  AbuseTable t(p, clock.fn());
  for (int i = 0; i < 4; ++i) EXPECT_FALSE(t.Failed(S("192.0.2.7", absl::StrCat("u", i))).blocked);
  EXPECT_TRUE(t.Failed(S("192.0.2.7", "u4")).blocked);
  AbuseDecision d = t.Check(S("192.0.2.7", "anyone"));
  EXPECT_TRUE(d.blocked);
  EXPECT_EQ(d.reason, "client IP 192.0.2.7 blocked: 5 failed logins");
  EXPECT_FALSE(t.Check(S("192.0.2.8", "u0")).blocked);
}

TEST(AbuseTableTest, WindowRestartsWithEachFailureAndExpires) {
  ManualClock clock;
  AbusePolicy p;
  p.window = 60s;
  p.block_after_user = 0;
  p.block_after_ip = 0;
  AbuseTable t(p, clock.fn());
  AbuseSubject s = S("192.0.2.7", "alice");
  t.Failed(s);
  clock.now += 50'000;
  t.Failed(s);
  clock.now += 50'000;  // 100 s after the first, 50 s after the last
  EXPECT_EQ(t.Check(s).user_failures, 2u);
  EXPECT_EQ(t.Failed(s).delay.count(), 8000);  // the third
  clock.now += 60'000;                         // a window of quiet
  EXPECT_EQ(t.Check(s).user_failures, 0u);
  EXPECT_EQ(t.Check(s).ip_failures, 0u);
  EXPECT_EQ(t.Failed(s).delay.count(), 2000);  // starts again
}

TEST(AbuseTableTest, BlockLastsBlockForThenCountsStartAgain) {
  ManualClock clock;
  AbusePolicy p;
  p.window = 60s;
  p.block_for = 300s;
  p.block_after_user = 2;
  AbuseTable t(p, clock.fn());
  AbuseSubject s = S("192.0.2.7", "alice");
  t.Failed(s);
  EXPECT_TRUE(t.Failed(s).blocked);
  clock.now += 299'000;
  EXPECT_TRUE(t.Check(s).blocked);
  clock.now += 1'000;
  AbuseDecision d = t.Check(s);
  EXPECT_FALSE(d.blocked);
  EXPECT_EQ(d.user_failures, 0u);
  EXPECT_FALSE(t.Failed(s).blocked);
}

TEST(AbuseTableTest, BlockSyncedFromTheFleetEndsWithIt) {
  ManualClock clock;
  AbusePolicy p;
  p.window = 60s;
  p.block_for = 300s;
  p.block_after_user = 2;
  AbuseTable t(p, clock.fn());
  // Redis says: blocked, 100 s left. It ends here then too, not 300 s on.
  AbuseSubject s = S("192.0.2.7", "alice");
  t.Sync(s, 0, 2, -1ms, 100'000ms);
  EXPECT_TRUE(t.Check(s).blocked);
  // Unknown (no TTL in Redis), or longer than block_for: a whole block_for.
  AbuseSubject u = S("192.0.2.7", "bob");
  AbuseSubject v = S("192.0.2.7", "carol");
  t.Sync(u, 0, 2, -1ms, -1ms);
  t.Sync(v, 0, 2, -1ms, 900'000ms);
  clock.now += 99'999;
  EXPECT_TRUE(t.Check(s).blocked);
  clock.now += 1;
  EXPECT_FALSE(t.Check(s).blocked);
  EXPECT_EQ(t.Check(s).user_failures, 0u);
  clock.now += 199'999;
  EXPECT_TRUE(t.Check(u).blocked);
  EXPECT_TRUE(t.Check(v).blocked);
  clock.now += 1;
  EXPECT_FALSE(t.Check(u).blocked);
  EXPECT_FALSE(t.Check(v).blocked);
  // A count below the limit gets a whole window whatever Redis has left
  // (it is read again at each check while Redis answers).
  AbuseSubject w = S("192.0.2.7", "dave");
  t.Sync(w, 0, 1, -1ms, 5'000ms);
  clock.now += 59'999;
  EXPECT_EQ(t.Check(w).user_failures, 1u);
}

TEST(AbuseTableTest, SyncedBlocksKeepTheOrderOfExpiry) {
  // Three users whose entries share a shard (AbuseTable::Counts::ShardOf:
  // the key's first two bytes, 32 shards), so that one shard's list holds
  // a whole block_for block and, behind it, a block synced with less left.
  auto shard = [](const AbuseSubject& s) {
    const size_t lo = s.user_key.bytes[0];
    const size_t hi = s.user_key.bytes[1];
    return (lo | hi << 8) % 32;
  };
  std::vector<AbuseSubject> same;
  const size_t want = shard(S("192.0.2.1", "n0"));
  for (int i = 0; same.size() < 3; ++i) {
    AbuseSubject c = S("192.0.2.1", absl::StrCat("n", i));
    if (shard(c) == want) same.push_back(c);
  }
  ManualClock clock;
  AbusePolicy p;
  p.block_for = 300s;
  p.block_after_user = 2;
  p.block_after_ip = 0;
  AbuseTable t(p, clock.fn());
  t.Failed(same[0]);
  ASSERT_TRUE(t.Failed(same[0]).blocked);  // ends in 300 s
  t.Sync(same[1], 0, 2, -1ms, 10'000ms);   // ends in 10 s
  ASSERT_EQ(t.stats().users, 2u);
  clock.now += 10'000;
  // A new entry in that shard sweeps the expired one, which was put ahead
  // of the longer block (behind it, it would stay until that one ends).
  t.Failed(same[2]);
  EXPECT_EQ(t.stats().users, 2u);
  EXPECT_TRUE(t.Check(same[0]).blocked);
  EXPECT_FALSE(t.Check(same[1]).blocked);
}

TEST(AbuseTableTest, SuccessForgivesOnlyTheUsersOwnFailures) {
  ManualClock clock;
  AbusePolicy p;
  p.block_after_ip = 8;
  AbuseTable t(p, clock.fn());
  const std::string ip = "192.0.2.7";
  // Someone guesses at three accounts, and alice mistypes twice.
  for (const char* u : {"u1", "u2", "u3"}) t.Failed(S(ip, u));
  t.Failed(S(ip, "alice"));
  t.Failed(S(ip, "alice"));
  EXPECT_EQ(t.Check(S(ip, "x")).ip_failures, 5u);
  t.Succeeded(S(ip, "alice"));
  EXPECT_EQ(t.Check(S(ip, "alice")).user_failures, 0u);
  EXPECT_EQ(t.Check(S(ip, "x")).ip_failures, 3u);  // the guesses stay
  EXPECT_EQ(t.Check(S(ip, "u1")).user_failures, 1u);
  // An attacker holding one valid account cannot launder its guesses by
  // logging in with it between them.
  for (int round = 0; round < 3; ++round) {
    t.Failed(S(ip, absl::StrCat("victim", round)));
    t.Succeeded(S(ip, "mallory"));
  }
  EXPECT_EQ(t.Check(S(ip, "x")).ip_failures, 6u);
  // alice's typos from another IP are not forgiven on this one.
  t.Failed(S("198.51.100.1", "alice"));
  t.Failed(S(ip, "alice"));
  t.Succeeded(S(ip, "alice"));
  EXPECT_EQ(t.Check(S("198.51.100.1", "x")).ip_failures, 1u);
  EXPECT_EQ(t.Check(S(ip, "x")).ip_failures, 6u);
  // A success that brings a blocked IP under its limit lifts the block.
  t.Failed(S(ip, "bob"));
  t.Failed(S(ip, "bob"));
  EXPECT_TRUE(t.Check(S(ip, "x")).blocked);
  t.Succeeded(S(ip, "bob"));
  EXPECT_FALSE(t.Check(S(ip, "x")).blocked);
}

TEST(AbuseTableTest, SubjectsAreNormalized) {
  EXPECT_EQ(S("192.0.2.7", "Alice@Example.COM").user_key,
            S("192.0.2.7", "alice@example.com").user_key);
  EXPECT_NE(S("192.0.2.7", "alice").user_key, S("192.0.2.7", "alice ").user_key);
  // IPv6 by /64 (configurable), IPv4-mapped as IPv4.
  EXPECT_EQ(S("2001:db8:1:2:aaaa::1", "a").ip, "2001:db8:1:2::/64");
  EXPECT_EQ(S("2001:db8:1:2:aaaa::1", "a").ip_key, S("2001:db8:1:2:bbbb::9", "a").ip_key);
  EXPECT_NE(S("2001:db8:1:2::1", "a").ip_key, S("2001:db8:1:3::1", "a").ip_key);
  EXPECT_EQ(S("2001:db8:1:2:aaaa::1", "a", 48).ip, "2001:db8:1::/48");
  EXPECT_EQ(S("2001:db8::1", "a", 128).ip, "2001:db8::1");
  EXPECT_EQ(S("::ffff:192.0.2.7", "a").ip, "192.0.2.7");
  EXPECT_EQ(S("::ffff:192.0.2.7", "a").ip_key, S("192.0.2.7", "a").ip_key);
  // Whatever the session passes, no client byte gets into a key.
  AbuseSubject odd = S("not an\r\naddress", std::string("a\0b\r\n*1\r\n", 9));
  EXPECT_EQ(odd.ip.size(), 33u);
  EXPECT_EQ(odd.ip[0], '?');
  EXPECT_EQ(odd.user_hex.size(), 32u);
  EXPECT_EQ(odd.user_hex.find_first_not_of("0123456789abcdef"), std::string::npos);
  EXPECT_NE(S("192.0.2.7", "").pair_key, S("192.0.2.7", std::string("\0", 1)).pair_key);
}

TEST(AbuseTableTest, SizeCapEvictsCountsBeforeBlocks) {
  ManualClock clock;
  AbusePolicy p;
  p.max_entries = 320;  // 10 per shard
  p.block_after_user = 3;
  p.block_after_ip = 0;
  AbuseTable t(p, clock.fn());
  AbuseSubject victim = S("192.0.2.1", "victim");
  for (int i = 0; i < 3; ++i) t.Failed(victim);
  ASSERT_TRUE(t.Check(victim).blocked);
  // Twenty thousand names sprayed from twenty thousand addresses.
  for (int i = 0; i < 20000; ++i) {
    clock.now += 1;
    t.Failed(S(absl::StrCat("10.", i / 65536, ".", (i / 256) % 256, ".", i % 256),
               absl::StrCat("spray", i)));
  }
  AbuseTable::Stats st = t.stats();
  EXPECT_LE(st.users, 320u);
  EXPECT_LE(st.ips, 320u);
  EXPECT_LE(st.pairs, 320u);
  EXPECT_GE(st.evictions, 3u * (20000 - 320));
  EXPECT_TRUE(t.Check(victim).blocked) << "the spray lifted a block";
  // The latest counts are still there, the oldest are gone.
  EXPECT_EQ(t.Check(S("10.0.78.31", "spray19999")).user_failures, 1u);
  EXPECT_EQ(t.Check(S("10.0.0.0", "spray0")).user_failures, 0u);
  // Past their window, entries are swept as new ones come in.
  clock.now += p.block_for.count();
  for (int i = 0; i < 2000; ++i) t.Failed(S("192.0.2.200", absl::StrCat("late", i)));
  EXPECT_FALSE(t.Check(victim).blocked);
  EXPECT_EQ(t.Check(S("10.0.78.31", "spray19999")).user_failures, 0u);
}

TEST(AbuseTableTest, TwoThreads) {
  AbusePolicy p;
  p.block_after_ip = 0;
  p.block_after_user = 0;
  p.max_entries = 1000;
  auto t = std::make_shared<AbuseTable>(p);
  constexpr int kRounds = 20000;
  auto work = [&](int id) {
    AbuseSubject shared = S("10.0.0.1", "shared");
    for (int i = 0; i < kRounds; ++i) {
      t->Failed(shared);
      t->Check(shared);
      // Churn: names of its own, some succeeding, to make evictions.
      AbuseSubject mine = S(absl::StrCat("10.1.", id, ".", i % 200), absl::StrCat(id, "-", i));
      t->Failed(mine);
      if (i % 3 == 0) t->Succeeded(mine);
    }
  };
  std::thread a(work, 1), b(work, 2);
  a.join();
  b.join();
  EXPECT_EQ(t->Check(S("10.0.0.1", "shared")).user_failures, 2u * kRounds);
  EXPECT_LE(t->stats().users, 1000u);
}

TEST(AbuseTableTest, MemoryPerFailure) {
  AbusePolicy p;
  p.max_entries = 1'000'000;
  struct mallinfo2 before = mallinfo2();
  auto t = std::make_unique<AbuseTable>(p);
  constexpr int kN = 100000;
  for (int i = 0; i < kN; ++i) {
    t->Failed(S(absl::StrCat("10.", i / 65536, ".", (i / 256) % 256, ".", i % 256),
                absl::StrCat("user", i, "@example.com")));
  }
  struct mallinfo2 after = mallinfo2();
  double per = static_cast<double>(after.uordblks - before.uordblks) / kN;
  AbuseTable::Stats st = t->stats();
  EXPECT_EQ(st.users, static_cast<size_t>(kN));
  // Three entries (IP, user, pair) per failure with new names.
  std::printf("abuse table: %d failures with new IPs and users: %.0f bytes each (3 entries)\n", kN,
              per);
  EXPECT_LT(per, 600);
}

// --- the guard, without Redis ----------------------------------------------

TEST(AbuseGuardTest, LocalOnly) {
  TestLoop loop;
  AbusePolicy p;
  p.block_after_user = 2;
  auto table = std::make_shared<AbuseTable>(p);
  {
    AbuseGuard g(table, nullptr, loop.poster());
    bool returned = false, inside = false;
    std::optional<AbuseDecision> got;
    auto h = g.Check("192.0.2.7", "alice", [&](AbuseDecision d) {
      if (!returned) inside = true;
      got = d;
    });
    returned = true;
    ASSERT_TRUE(loop.RunUntil([&] { return got.has_value(); }));
    EXPECT_FALSE(inside);
    EXPECT_FALSE(got->blocked);
    EXPECT_EQ(g.Failed("192.0.2.7", "alice").delay.count(), 2000);
    EXPECT_TRUE(g.Failed("192.0.2.7", "alice").blocked);
    got.reset();
    h = g.Check("198.51.100.1", "alice", [&](AbuseDecision d) { got = d; });
    ASSERT_TRUE(loop.RunUntil([&] { return got.has_value(); }));
    EXPECT_TRUE(got->blocked);
    EXPECT_EQ(got->delay.count(), 4000);
    // Cancelled before the answer was posted.
    int ran = 0;
    auto c = g.Check("192.0.2.7", "bob", [&](AbuseDecision) { ++ran; });
    c.reset();
    loop.RunFor(20ms);
    EXPECT_EQ(ran, 0);
    g.Succeeded("192.0.2.7", "alice");
    EXPECT_EQ(g.stats().checks, 3u);
    EXPECT_EQ(g.stats().refused, 1u);
    EXPECT_EQ(g.stats().redis_fallbacks, 0u);
  }
  EXPECT_TRUE(loop.Close());
}

TEST(AbuseGuardTest, Disabled) {
  TestLoop loop;
  AbusePolicy p;
  p.enabled = false;
  p.block_after_user = 1;
  auto table = std::make_shared<AbuseTable>(p);
  {
    AbuseGuard g(table, nullptr, loop.poster());
    EXPECT_EQ(g.Failed("192.0.2.7", "alice").delay.count(), 0);
    std::optional<AbuseDecision> got;
    auto h = g.Check("192.0.2.7", "alice", [&](AbuseDecision d) { got = d; });
    ASSERT_TRUE(loop.RunUntil([&] { return got.has_value(); }));
    EXPECT_FALSE(got->blocked);
  }
  EXPECT_TRUE(loop.Close());
}

// --- with Redis: two instances of a fleet ----------------------------------

class AbuseFleetTest : public ::testing::Test {
 protected:
  // One Postern instance: its own table, a Redis client, a guard.
  struct Instance {
    std::shared_ptr<AbuseTable> table;
    std::unique_ptr<RedisClient> redis;
    std::unique_ptr<AbuseGuard> guard;
  };

  void SetUp() override {
    if (TestRedisServer::FindBinary().empty()) {
      GTEST_SKIP() << "redis-server is not installed (apt-get install redis-server; "
                      "deploy/install-deps.sh does): skipping the fleet tests";
    }
    std::string error;
    ASSERT_TRUE(server_.Start(&error)) << error;
    policy_.block_after_user = 10;
    policy_.block_after_ip = 15;
    policy_.window = 60s;
    policy_.block_for = 120s;
  }

  void TearDown() override {
    a_ = Instance();
    b_ = Instance();
    EXPECT_TRUE(loop_.Close());
  }

  Instance Make() {
    Instance i;
    i.table = std::make_shared<AbuseTable>(policy_);
    RedisOptions o;
    o.address = server_.address();
    o.name = "abuse";
    o.connect_timeout = 300ms;
    o.backoff_initial = 50ms;
    o.backoff_max = 200ms;
    i.redis = *RedisClient::Create(loop_.get(), o);
    EXPECT_TRUE(loop_.RunUntil([&] { return i.redis->connected(); }));
    i.guard = std::make_unique<AbuseGuard>(i.table, i.redis.get(), loop_.poster());
    return i;
  }

  AbuseDecision CheckNow(Instance& i, const std::string& ip, const std::string& user) {
    std::optional<AbuseDecision> got;
    auto h = i.guard->Check(ip, user, [&](AbuseDecision d) { got = d; });
    EXPECT_TRUE(loop_.RunUntil([&] { return got.has_value(); }));
    return got.value_or(AbuseDecision());
  }

  // Waits until the instance's writes to Redis have been answered and the
  // answers delivered.
  void Settle(Instance& i) {
    uint64_t sent = i.redis->stats().commands;
    EXPECT_TRUE(loop_.RunUntil([&] {
      const RedisStats& st = i.redis->stats();
      return st.replies + st.failures() - st.unavailable - st.overflows >= sent;
    }));
    loop_.RunFor(5ms);  // the replies are delivered on the next turn of the loop
  }

  std::string Key(const std::string& kind, const std::string& id) const {
    return absl::StrCat(policy_.redis_prefix, kind, id);
  }

  TestLoop loop_;
  TestRedisServer server_;
  AbusePolicy policy_;
  Instance a_, b_;
};

TEST_F(AbuseFleetTest, InstancesSeeEachOthersFailures) {
  a_ = Make();
  b_ = Make();
  // Ten failures for alice on A, from ten addresses.
  for (int i = 0; i < 10; ++i) a_.guard->Failed(absl::StrCat("192.0.2.", i), "alice");
  Settle(a_);
  AbuseSubject alice = S("203.0.113.9", "alice");
  EXPECT_EQ(server_.Cli({"GET", Key("u:", alice.user_hex)}), "10");
  int64_t ttl = std::stoll(server_.Cli({"PTTL", Key("u:", alice.user_hex)}));
  EXPECT_GT(ttl, 110'000);  // block_for, not window
  EXPECT_LE(ttl, 120'000);
  // B has counted nothing itself, and refuses alice from anywhere.
  EXPECT_EQ(b_.table->Check(alice).user_failures, 0u);
  AbuseDecision d = CheckNow(b_, "203.0.113.9", "alice");
  EXPECT_TRUE(d.blocked);
  EXPECT_EQ(d.reason, "user blocked: 10 failed logins");
  EXPECT_EQ(d.delay.count(), 15000);
  EXPECT_FALSE(CheckNow(b_, "203.0.113.9", "bob").blocked);
  // The IP limit too: fifteen failures from one address, spread over A and B.
  for (int i = 0; i < 15; ++i) {
    Instance& inst = i % 2 == 0 ? a_ : b_;
    inst.guard->Failed("198.51.100.7", absl::StrCat("guess", i));
    Settle(inst);
  }
  d = CheckNow(a_, "198.51.100.7", "carol");
  EXPECT_TRUE(d.blocked);
  EXPECT_EQ(d.reason, "client IP 198.51.100.7 blocked: 15 failed logins");
  EXPECT_EQ(a_.guard->stats().redis_fallbacks, 0u);
  EXPECT_EQ(b_.guard->stats().redis_fallbacks, 0u);
}

TEST_F(AbuseFleetTest, BlockLearnedFromRedisEndsWithTheFleets) {
  LogCapture log;
  policy_.block_for = 600ms;
  a_ = Make();
  b_ = Make();
  for (int i = 0; i < 10; ++i) a_.guard->Failed(absl::StrCat("192.0.2.", i), "ivy");
  Settle(a_);
  AbuseSubject ivy = S("203.0.113.9", "ivy");
  ASSERT_TRUE(a_.table->Check(ivy).blocked);
  EXPECT_EQ(log.Count("user \"ivy\" blocked for 0.6 s after 10 failed logins"), 1) << log.text();
  // B learns of the block half-way through it...
  loop_.RunFor(300ms);
  EXPECT_TRUE(CheckNow(b_, "203.0.113.9", "ivy").blocked);
  EXPECT_TRUE(b_.table->Check(ivy).blocked);
  // ...and lifts it when Redis and A do, not 600 ms after it learned of it
  // (while blocked, B does not ask Redis again).
  loop_.RunFor(400ms);
  EXPECT_EQ(server_.Cli({"EXISTS", Key("u:", ivy.user_hex)}), "0");
  EXPECT_FALSE(a_.table->Check(ivy).blocked);
  EXPECT_FALSE(b_.table->Check(ivy).blocked);
  EXPECT_FALSE(CheckNow(b_, "203.0.113.9", "ivy").blocked);
}

TEST_F(AbuseFleetTest, SuccessOnOneInstanceClearsTheFleetCount) {
  a_ = Make();
  b_ = Make();
  for (int i = 0; i < 9; ++i) a_.guard->Failed("192.0.2.1", "carol");
  Settle(a_);
  EXPECT_EQ(a_.table->Check(S("192.0.2.1", "carol")).user_failures, 9u);
  b_.guard->Succeeded("192.0.2.1", "carol");
  Settle(b_);
  AbuseSubject carol = S("192.0.2.1", "carol");
  EXPECT_EQ(server_.Cli({"EXISTS", Key("u:", carol.user_hex)}), "0");
  EXPECT_EQ(server_.Cli({"EXISTS", Key("p:", carol.pair_hex)}), "0");
  EXPECT_EQ(server_.Cli({"EXISTS", Key("ip:", "192.0.2.1")}), "0");  // her own typos
  // A still counts 9 locally until it asks the fleet, which says 0: one
  // more typo does not block her.
  EXPECT_FALSE(CheckNow(a_, "192.0.2.1", "carol").blocked);
  EXPECT_EQ(a_.table->Check(carol).user_failures, 0u);
  EXPECT_FALSE(a_.guard->Failed("192.0.2.1", "carol").blocked);
}

TEST_F(AbuseFleetTest, KeysHoldNoClientBytes) {
  a_ = Make();
  std::string user("evil\r\n*1\r\n$8\r\nFLUSHALL\r\n\0", 25);
  a_.guard->Failed("192.0.2.1", user);
  Settle(a_);
  EXPECT_EQ(server_.Cli({"DBSIZE"}), "3");
  AbuseSubject s = S("192.0.2.1", user);
  EXPECT_EQ(server_.Cli({"GET", Key("u:", s.user_hex)}), "1");
  EXPECT_EQ(server_.Cli({"GET", Key("ip:", "192.0.2.1")}), "1");
  EXPECT_EQ(server_.Cli({"GET", Key("p:", s.pair_hex)}), "1");
}

TEST_F(AbuseFleetTest, RedisStoppedMidTest) {
  LogCapture log;
  a_ = Make();
  for (int i = 0; i < 8; ++i) a_.guard->Failed("192.0.2.1", "dave");
  Settle(a_);
  server_.Kill();
  ASSERT_TRUE(loop_.RunUntil([&] { return !a_.redis->available(); }));
  // Answers at once, from the local counts.
  auto start = SteadyClock::now();
  AbuseDecision d = CheckNow(a_, "192.0.2.1", "dave");
  EXPECT_LT(SteadyClock::now() - start, 50ms);
  EXPECT_FALSE(d.blocked);
  EXPECT_EQ(d.user_failures, 8u);
  start = SteadyClock::now();
  EXPECT_FALSE(a_.guard->Failed("192.0.2.1", "dave").blocked);
  EXPECT_TRUE(a_.guard->Failed("192.0.2.1", "dave").blocked);  // the tenth, counted here
  EXPECT_LT(SteadyClock::now() - start, 40ms);  // below redis_timeout (50 ms): no wait
  EXPECT_TRUE(CheckNow(a_, "192.0.2.9", "dave").blocked);
  for (int i = 0; i < 20; ++i) CheckNow(a_, "192.0.2.1", absl::StrCat("x", i));
  EXPECT_GE(a_.guard->stats().redis_fallbacks, 22u);
  EXPECT_TRUE(a_.guard->degraded());
  // One line, not one per login.
  EXPECT_EQ(log.Count("abuse: Redis not usable"), 1) << log.text();
  EXPECT_EQ(log.Count("user \"dave\" blocked for 120 s after 10 failed logins"), 1) << log.text();
  // Redis back: counted fleet-wide again, and said so once.
  std::string error;
  ASSERT_TRUE(server_.Restart(&error)) << error;
  ASSERT_TRUE(loop_.RunUntil([&] { return a_.redis->connected(); }, 5s));
  a_.guard->Failed("192.0.2.1", "erin");
  Settle(a_);
  EXPECT_FALSE(a_.guard->degraded());
  EXPECT_EQ(log.Count("abuse: Redis answers again"), 1) << log.text();
}

TEST_F(AbuseFleetTest, SlowRedisCostsAtMostTheTimeout) {
  LogCapture log;
  a_ = Make();
  for (int i = 0; i < 3; ++i) a_.guard->Failed("192.0.2.1", "frank");
  Settle(a_);
  ASSERT_EQ(server_.Cli({"CLIENT", "PAUSE", "1000", "ALL"}), "OK");
  auto start = SteadyClock::now();
  AbuseDecision d = CheckNow(a_, "192.0.2.1", "frank");
  auto took = SteadyClock::now() - start;
  EXPECT_GE(took, policy_.redis_timeout - 5ms);
  EXPECT_LT(took, 300ms);
  EXPECT_EQ(d.user_failures, 3u);  // local
  EXPECT_EQ(a_.guard->stats().redis_fallbacks, 1u);
  EXPECT_EQ(log.Count("abuse: Redis not usable"), 1) << log.text();
  loop_.RunFor(1200ms);  // the pause ends; late replies are dropped
}

TEST_F(AbuseFleetTest, Cancellation) {
  a_ = Make();
  int ran = 0;
  // Cancelled while its check is on the wire.
  auto h = a_.guard->Check("192.0.2.1", "gina", [&](AbuseDecision) { ++ran; });
  h.reset();
  // Cancelled after the reply arrived, before it was delivered.
  uint64_t replies = a_.redis->stats().replies;
  h = a_.guard->Check("192.0.2.1", "gina", [&](AbuseDecision) { ++ran; });
  ASSERT_TRUE(loop_.RunUntil([&] { return a_.redis->stats().replies >= replies + 2; }));
  h.reset();
  loop_.RunFor(30ms);
  EXPECT_EQ(ran, 0);
  // The guard destroyed with writes and a check in flight.
  for (int i = 0; i < 5; ++i) a_.guard->Failed("192.0.2.1", "gina");
  a_.guard->Succeeded("192.0.2.2", "gina");
  h.reset();
  a_.guard.reset();
  loop_.RunFor(50ms);
  EXPECT_EQ(ran, 0);
}

}  // namespace
}  // namespace postern
