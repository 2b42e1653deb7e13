// Microbenchmarks of routing/shard_ring.h: the lookup every login runs, and
// the build a configuration load or reload runs.

#include <benchmark/benchmark.h>

#include <cmath>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "routing/hash64.h"
#include "routing/shard_ring.h"

namespace postern {
namespace {

std::vector<ShardSpec> Shards(size_t n) {
  std::vector<ShardSpec> s;
  for (size_t i = 0; i < n; ++i)
    s.push_back({absl::StrCat("store-", i), static_cast<uint32_t>(1 + i % 3)});
  return s;
}

// 65,536 normalized user names, visited in order: consecutive lookups hit
// unrelated parts of the ring, as logins do.
const std::vector<std::string>& Keys() {
  static const auto* keys = [] {
    auto* k = new std::vector<std::string>();
    for (size_t i = 0; i < 65536; ++i) {
      k->push_back(
          NormalizeUser(absl::StrCat("user", i * 7919, "@example", i % 97, ".com"), false));
    }
    return k;
  }();
  return *keys;
}

// ShardRing::Lookup (XxHash64 of the key, then the ring) with Arg shards of
// weights 1-3 (1,024 points per unit of weight).
void BM_RingLookup(benchmark::State& state) {
  const auto ring = *ShardRing::Build(Shards(static_cast<size_t>(state.range(0))));
  const std::vector<std::string>& keys = Keys();
  size_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(ring->Lookup(keys[i++ & 0xFFFF]));
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
  state.counters["points"] = static_cast<double>(ring->points());
  state.counters["ring_MiB"] = static_cast<double>(ring->memory_bytes()) / (1 << 20);
}
BENCHMARK(BM_RingLookup)->Arg(10)->Arg(100)->Arg(1000);

// ShardRing::Build for Arg shards: points, sort, index.
void BM_RingBuild(benchmark::State& state) {
  const std::vector<ShardSpec> shards = Shards(static_cast<size_t>(state.range(0)));
  for (auto _ : state) {
    auto ring = ShardRing::Build(shards);
    benchmark::DoNotOptimize(ring->get());
  }
}
BENCHMARK(BM_RingBuild)->Arg(10)->Arg(100)->Arg(1000)->Unit(benchmark::kMillisecond);

// For comparison (routing/README.md): weighted rendezvous hashing, the other
// algorithm with exact minimal movement, scores every shard per lookup
// (score = -weight / ln(u), u from XxHash64 of the key seeded with the
// shard's hash; Schindelhauer and Schomaker's weighted HRW).
void BM_RendezvousLookupReference(benchmark::State& state) {
  const std::vector<ShardSpec> shards = Shards(static_cast<size_t>(state.range(0)));
  std::vector<uint64_t> seeds;
  for (const ShardSpec& s : shards) seeds.push_back(XxHash64(s.name, 0));
  const std::vector<std::string>& keys = Keys();
  size_t i = 0;
  for (auto _ : state) {
    const std::string& key = keys[i++ & 0xFFFF];
    size_t best = 0;
    double best_score = -HUGE_VAL;
    for (size_t s = 0; s < shards.size(); ++s) {
      const uint64_t h = XxHash64(key, seeds[s]);
      const double u = (static_cast<double>(h >> 11) + 0.5) * 0x1p-53;
      const double score = -static_cast<double>(shards[s].weight) / std::log(u);
      if (score > best_score) {
        best_score = score;
        best = s;
      }
    }
    benchmark::DoNotOptimize(best);
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}
BENCHMARK(BM_RendezvousLookupReference)->Arg(10)->Arg(100)->Arg(1000);

}  // namespace
}  // namespace postern
