// BackendHealth: consecutive failures mark a backend down for the cooldown,
// a success brings it back; backend-side drops are counted per second; the
// source address turn is per backend and shared by every worker.

#include "proxy/backend_health.h"

#include <algorithm>
#include <set>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace postern {
namespace {

Config TwoBackends() {
  Config c;
  for (const char* name : {"a", "b"}) {
    BackendConfig b;
    b.name = name;
    c.backends.push_back(b);
  }
  return c;
}

TEST(BackendHealthTest, FailuresMarkDownAndASuccessBringsBack) {
  const Config c = TwoBackends();
  BackendHealth h(c, nullptr);
  HealthConfig hc;
  hc.failures = 2;
  hc.cooldown = std::chrono::seconds(60);
  BackendHealth::Slot* a = h.Find("a");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(h.Find("nosuch"), nullptr);
  h.Failed(*a, hc, "refused");
  EXPECT_TRUE(h.Up(*a));
  h.Failed(*a, hc, "refused");
  EXPECT_FALSE(h.Up(*a));
  EXPECT_TRUE(h.Up(*h.Find("b")));
  h.Succeeded(*a);
  EXPECT_TRUE(h.Up(*a));
  // The count starts over after a success.
  h.Failed(*a, hc, "refused");
  EXPECT_TRUE(h.Up(*a));
}

TEST(BackendHealthTest, DropsAreCountedWithinASecond) {
  const Config c = TwoBackends();
  BackendHealth h(c, nullptr);
  BackendHealth::Slot* a = h.Find("a");
  const uint32_t first = h.Dropped(*a);
  const uint32_t second = h.Dropped(*a);
  // Both in one second, unless the second turned in between.
  EXPECT_TRUE(second == first + 1 || second == 1);
  EXPECT_EQ(h.Dropped(*h.Find("b")), 1u);
}

TEST(BackendHealthTest, SourceTurnsArePerBackend) {
  const Config c = TwoBackends();
  BackendHealth h(c, nullptr);
  BackendHealth::Slot* a = h.Find("a");
  BackendHealth::Slot* b = h.Find("b");
  // Two addresses alternate for a, whatever else takes turns elsewhere.
  std::vector<uint32_t> seen;
  for (int i = 0; i < 6; ++i) {
    seen.push_back(a->NextSource() % 2);
    b->NextSource();
    b->NextSource();
  }
  EXPECT_EQ(seen, (std::vector<uint32_t>{0, 1, 0, 1, 0, 1}));
}

TEST(BackendHealthTest, SourceTurnsAreSharedByWorkers) {
  const Config c = TwoBackends();
  BackendHealth h(c, nullptr);
  BackendHealth::Slot* a = h.Find("a");
  constexpr int kPerThread = 5000;
  std::vector<std::vector<uint32_t>> got(2);
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) got[t].push_back(a->NextSource());
    });
  }
  for (std::thread& t : threads) t.join();
  std::set<uint32_t> all(got[0].begin(), got[0].end());
  all.insert(got[1].begin(), got[1].end());
  // Every turn taken once: the two addresses get half each.
  EXPECT_EQ(all.size(), 2u * kPerThread);
  EXPECT_EQ(*all.rbegin(), 2u * kPerThread - 1);
}

}  // namespace
}  // namespace postern

namespace postern {
namespace {

TEST(BackendHealthTest, AReloadKeepsTheSlotsOfTheBackendsItKeeps) {
  Config before = TwoBackends();
  BackendHealth old(before, nullptr);
  HealthConfig hc;
  hc.failures = 1;
  hc.cooldown = std::chrono::seconds(60);
  old.Failed(*old.Find("a"), hc, "test");
  old.Find("b")->drained.store(true);
  old.Find("b")->sessions.fetch_add(3);

  Config after;
  for (const char* name : {"b", "c"}) {
    BackendConfig bc;
    bc.name = name;
    after.backends.push_back(bc);
  }
  BackendHealth next(after, &old);
  EXPECT_EQ(next.Find("a"), nullptr);  // gone from the config
  ASSERT_NE(next.Find("b"), nullptr);
  EXPECT_EQ(next.Find("b"), old.Find("b"));  // the same slot: sessions of both count there
  EXPECT_TRUE(next.Find("b")->drained.load());
  EXPECT_EQ(next.Find("b")->sessions.load(), 3);
  ASSERT_NE(next.Find("c"), nullptr);
  EXPECT_TRUE(next.Usable(*next.Find("c")));
  EXPECT_FALSE(next.Usable(*next.Find("b")));  // drained
  EXPECT_TRUE(next.Up(*next.Find("b")));
}

}  // namespace
}  // namespace postern
