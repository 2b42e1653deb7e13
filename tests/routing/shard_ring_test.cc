#include "routing/shard_ring.h"

#include <algorithm>
#include <cstdio>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "routing/hash64.h"

namespace postern {
namespace {

using ::testing::HasSubstr;

constexpr size_t kUsers = 100000;

// 100,000 user names as they reach the router, normalized.
const std::vector<std::string>& Users() {
  static const auto* users = [] {
    auto* u = new std::vector<std::string>();
    for (size_t i = 0; i < kUsers; ++i) {
      u->push_back(NormalizeUser(absl::StrCat("User", i, "@Example", i % 97, ".com"), false));
    }
    return u;
  }();
  return *users;
}

std::vector<ShardSpec> EqualShards(int n) {
  std::vector<ShardSpec> s;
  for (int i = 0; i < n; ++i) s.push_back({absl::StrCat("store-", i), 1});
  return s;
}

std::shared_ptr<const ShardRing> MustBuild(std::vector<ShardSpec> shards,
                                           const ShardRingOptions& options = {}) {
  absl::StatusOr<std::shared_ptr<const ShardRing>> ring = ShardRing::Build(shards, options);
  EXPECT_TRUE(ring.ok()) << ring.status();
  return ring.ok() ? *ring : nullptr;
}

// The shard name each user lands on.
std::vector<std::string> Placement(const ShardRing& ring) {
  std::vector<std::string> out;
  out.reserve(kUsers);
  for (const std::string& u : Users()) out.push_back(ring.shard(ring.Lookup(u)).name);
  return out;
}

double Percent(size_t n) { return 100.0 * static_cast<double>(n) / kUsers; }

// Adding an 11th shard to 10 moves about 1/11 of the users, all of them to
// the new shard.
TEST(ShardRing, AddingAShardMovesOnlyToIt) {
  const std::vector<std::string> before = Placement(*MustBuild(EqualShards(10)));
  const std::vector<std::string> after = Placement(*MustBuild(EqualShards(11)));
  size_t moved = 0;
  for (size_t i = 0; i < kUsers; ++i) {
    if (before[i] == after[i]) continue;
    ++moved;
    EXPECT_EQ(after[i], "store-10") << Users()[i] << " moved from " << before[i];
  }
  std::printf("adding store-10 to 10 shards moved %.2f%% of %zu users (1/11 = %.2f%%)\n",
              Percent(moved), kUsers, 100.0 / 11);
  EXPECT_NEAR(Percent(moved), 100.0 / 11, 1.0);
}

// Removing one of 10 shards moves its users and nobody else.
TEST(ShardRing, RemovingAShardMovesOnlyItsUsers) {
  std::vector<ShardSpec> ten = EqualShards(10);
  const std::vector<std::string> before = Placement(*MustBuild(ten));
  ten.erase(ten.begin() + 3);
  const std::vector<std::string> after = Placement(*MustBuild(ten));
  size_t moved = 0;
  for (size_t i = 0; i < kUsers; ++i) {
    if (before[i] == "store-3") {
      ++moved;
      EXPECT_NE(after[i], "store-3");
    } else {
      EXPECT_EQ(after[i], before[i]) << Users()[i];
    }
  }
  std::printf("removing store-3 of 10 shards moved %.2f%% of users (1/10 = 10%%)\n",
              Percent(moved));
  EXPECT_NEAR(Percent(moved), 10.0, 1.0);
}

// Changing one shard's weight moves users only to it (weight up) or only
// from it (weight down).
TEST(ShardRing, ChangingAWeightMovesOnlyThatShardsUsers) {
  std::vector<ShardSpec> shards = EqualShards(10);
  const std::vector<std::string> before = Placement(*MustBuild(shards));
  shards[5].weight = 2;
  const std::vector<std::string> heavier = Placement(*MustBuild(shards));
  size_t moved = 0;
  for (size_t i = 0; i < kUsers; ++i) {
    if (before[i] != heavier[i]) {
      ++moved;
      EXPECT_EQ(heavier[i], "store-5");
    }
  }
  // store-5 goes from 1/10 to 2/11 of the points.
  std::printf(
      "store-5 of 10 shards from weight 1 to 2 moved %.2f%% of users (2/11 - 1/10 = "
      "%.2f%%)\n",
      Percent(moved), 100.0 * (2.0 / 11 - 1.0 / 10));
  EXPECT_NEAR(Percent(moved), 100.0 * (2.0 / 11 - 1.0 / 10), 1.0);
}

// Weights 1, 2, 3, 4 get 10, 20, 30, 40 % of the users, within 2 points.
TEST(ShardRing, WeightsAreHonoured) {
  const auto ring = MustBuild({{"w1", 1}, {"w2", 2}, {"w3", 3}, {"w4", 4}});
  std::vector<size_t> count(4);
  for (const std::string& u : Users()) ++count[ring->Lookup(u)];
  for (size_t i = 0; i < 4; ++i) {
    std::printf("weight %zu: %.2f%% (expected %zu%%)\n", i + 1, Percent(count[i]), 10 * (i + 1));
    EXPECT_NEAR(Percent(count[i]), 10.0 * static_cast<double>(i + 1), 2.0);
  }
}

// Equal shards get equal shares: 10 shards within 1.5 points of 10%.
TEST(ShardRing, EqualShardsAreBalanced) {
  const auto ring = MustBuild(EqualShards(10));
  std::vector<size_t> count(10);
  for (const std::string& u : Users()) ++count[ring->Lookup(u)];
  const auto [lo, hi] = std::minmax_element(count.begin(), count.end());
  std::printf("10 equal shards: from %.2f%% to %.2f%% of users\n", Percent(*lo), Percent(*hi));
  for (size_t c : count) EXPECT_NEAR(Percent(c), 10.0, 1.5);
}

// The same configuration gives the same answers: built twice, and listed in
// other orders (Lookup's index follows the listing; the shard it names does
// not change).
TEST(ShardRing, SameAnswersForTheSameConfigInAnyOrder) {
  std::vector<ShardSpec> shards = {{"alpha", 1}, {"bravo", 3},   {"charlie", 2}, {"delta", 1},
                                   {"echo", 5},  {"foxtrot", 1}, {"golf", 2}};
  const std::vector<std::string> first = Placement(*MustBuild(shards));
  EXPECT_EQ(Placement(*MustBuild(shards)), first);
  std::reverse(shards.begin(), shards.end());
  EXPECT_EQ(Placement(*MustBuild(shards)), first);
  std::mt19937 rng(7);
  for (int i = 0; i < 3; ++i) {
    std::shuffle(shards.begin(), shards.end(), rng);
    EXPECT_EQ(Placement(*MustBuild(shards)), first);
  }
}

// The placement is a contract between instances and between versions: a
// user's mailbox stays where the ring put it. These answers come from an
// independent reference (a few lines of Python over Debian's libxxhash:
// XXH64 of each name, SplitMix64 points, sorted, first point at or after
// XXH64 of the key) and must never change; if they do, the ring's definition
// changed (hash, point generation, tie-breaking or points_per_weight) and
// every deployment would move its users.
TEST(ShardRing, KnownAnswers) {
  const auto ring = MustBuild({{"store1", 1}, {"store2", 1}, {"store3", 2}});
  const std::pair<const char*, const char*> answers[] = {
      {"alice", "store3"},       {"bob", "store2"},
      {"carol", "store3"},       {"alice@example.com", "store3"},
      {"example.com", "store3"}, {"", "store2"},
      {"dave", "store1"},        {"erin", "store3"},
  };
  for (const auto& [user, shard] : answers) {
    EXPECT_EQ(ring->shard(ring->Lookup(user)).name, shard) << "'" << user << "'";
  }
  // The ring's first points, by the definition in shard_ring.h.
  uint64_t state = XxHash64("store1", 0);
  const uint64_t first_point_of_store1 = SplitMix64(&state);
  EXPECT_EQ(ring->shard(ring->LookupHash(first_point_of_store1)).name, "store1");
  EXPECT_EQ(ring->points(), 4u * 1024u);
}

// Every hash lands on the owner of the first point at or after it: checked
// against a linear scan on a small ring, around every point.
TEST(ShardRing, LookupMatchesALinearScan) {
  ShardRingOptions options;
  options.points_per_weight = 7;
  std::vector<ShardSpec> shards = EqualShards(5);
  shards[2].weight = 3;
  const auto ring = MustBuild(shards, options);
  // The points, rebuilt from the definition.
  std::vector<std::pair<uint64_t, std::string>> points;
  for (const ShardSpec& s : shards) {
    uint64_t state = XxHash64(s.name, 0);
    for (uint32_t j = 0; j < s.weight * options.points_per_weight; ++j) {
      points.emplace_back(SplitMix64(&state), s.name);
    }
  }
  std::sort(points.begin(), points.end());
  auto scan = [&](uint64_t h) {
    for (const auto& [p, name] : points) {
      if (p >= h) return name;
    }
    return points.front().second;
  };
  std::vector<uint64_t> probes = {0, 1, ~uint64_t{0}, ~uint64_t{0} - 1, uint64_t{1} << 63};
  for (const auto& [p, name] : points) {
    probes.insert(probes.end(), {p - 1, p, p + 1});
  }
  std::mt19937_64 rng(1);
  for (int i = 0; i < 10000; ++i) probes.push_back(rng());
  for (uint64_t h : probes) {
    EXPECT_EQ(ring->shard(ring->LookupHash(h)).name, scan(h)) << h;
  }
}

TEST(ShardRing, OneShardTakesEveryone) {
  const auto ring = MustBuild({{"only", 1}});
  for (size_t i = 0; i < 1000; ++i) EXPECT_EQ(ring->Lookup(Users()[i]), 0u);
  EXPECT_EQ(ring->LookupHash(0), 0u);
  EXPECT_EQ(ring->LookupHash(~uint64_t{0}), 0u);
}

TEST(ShardRing, SharedBetweenThreads) {
  const auto ring = MustBuild(EqualShards(100));
  const std::vector<std::string> want = Placement(*ring);
  std::vector<std::thread> threads;
  std::vector<size_t> mismatches(4);
  for (size_t t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (size_t i = t; i < kUsers; i += 4) {
        if (ring->shard(ring->Lookup(Users()[i])).name != want[i]) ++mismatches[t];
      }
    });
  }
  for (std::thread& t : threads) t.join();
  for (size_t m : mismatches) EXPECT_EQ(m, 0u);
}

TEST(ShardRing, BuildErrors) {
  auto error = [](std::vector<ShardSpec> shards, ShardRingOptions options = {}) {
    absl::StatusOr<std::shared_ptr<const ShardRing>> r = ShardRing::Build(shards, options);
    EXPECT_TRUE(absl::IsInvalidArgument(r.status())) << r.status();
    return std::string(r.status().message());
  };
  EXPECT_THAT(error({}), HasSubstr("no shard"));
  EXPECT_THAT(error({{"", 1}}), HasSubstr("no name"));
  EXPECT_THAT(error({{"a", 1}, {"b", 1}, {"a", 2}}), HasSubstr("duplicate shard 'a'"));
  EXPECT_THAT(error({{"a", 0}}), HasSubstr("weight 0"));
  EXPECT_THAT(error({{"a", 1001}}), HasSubstr("weight 1001"));
  EXPECT_THAT(error({{"a", 1}}, ShardRingOptions{0}), HasSubstr("points_per_weight"));
  std::vector<ShardSpec> heavy = EqualShards(5);
  for (ShardSpec& s : heavy) s.weight = 1000;  // 5,120,000 points
  EXPECT_THAT(error(heavy), HasSubstr("lower the weights"));
}

TEST(ShardRing, ThousandShards) {
  const auto ring = MustBuild(EqualShards(1000));
  EXPECT_EQ(ring->points(), 1000u * 1024u);
  std::vector<size_t> count(1000);
  for (size_t i = 0; i < 1000000; ++i) ++count[ring->Lookup(absl::StrCat("u", i))];
  const auto [lo, hi] = std::minmax_element(count.begin(), count.end());
  std::printf(
      "1000 equal shards, 1,000,000 users: from %zu to %zu per shard (mean 1000); %zu "
      "ring bytes\n",
      *lo, *hi, ring->memory_bytes());
  EXPECT_GT(*lo, 800u);
  EXPECT_LT(*hi, 1200u);
}

TEST(NormalizeUser, Cases) {
  EXPECT_EQ(NormalizeUser("Alice@Example.COM", false), "alice@example.com");
  EXPECT_EQ(NormalizeUser("Alice@Example.COM", true), "example.com");
  EXPECT_EQ(NormalizeUser("alice", true), "alice");
  EXPECT_EQ(NormalizeUser("ALICE", false), "alice");
  // The last '@' separates the domain.
  EXPECT_EQ(NormalizeUser("\"a@b\"@Host.Example", true), "host.example");
  EXPECT_EQ(NormalizeUser("alice@", true), "");
  EXPECT_EQ(NormalizeUser("", false), "");
  // Only ASCII is folded: UTF-8 bytes are kept as they are.
  EXPECT_EQ(NormalizeUser("J\xC3\x96RG@Exämple.org", false), "j\xC3\x96rg@exämple.org");
  EXPECT_EQ(NormalizeUser(std::string("a\0B", 3), false), std::string("a\0b", 3));
}

}  // namespace
}  // namespace postern
