// Microbenchmarks of proxy/metrics.h's hot path: what a worker pays per
// counted event through a handle it resolved earlier (no lookup, no lock),
// next to what resolving costs (at session start or reload) and a scrape.

#include <benchmark/benchmark.h>

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "proxy/metrics.h"

namespace postern {
namespace {

// Counter::Add on one worker's shard: a relaxed load and store of a cell
// only this thread writes.
void BM_CounterAdd(benchmark::State& state) {
  MetricsRegistry r({.shards = 2});
  Counter c = r.AddCounter("bytes_total", "Bytes.", {"dir"})->Get(0, {"in"});
  uint64_t n = 1;
  for (auto _ : state) {
    c.Add(n);
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}
BENCHMARK(BM_CounterAdd);

// The same event counted with an atomic read-modify-write (lock xadd on
// x86): what the single-writer cells avoid.
void BM_AtomicFetchAddForComparison(benchmark::State& state) {
  std::atomic<uint64_t> cell{0};
  for (auto _ : state) {
    cell.fetch_add(1, std::memory_order_relaxed);
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}
BENCHMARK(BM_AtomicFetchAddForComparison);

// Gauge::Add (sessions open: +1 / -1 per worker).
void BM_GaugeAdd(benchmark::State& state) {
  MetricsRegistry r({.shards = 2});
  Gauge g = r.AddGauge("open", "Open.")->Get(1, {});
  for (auto _ : state) {
    g.Add(1);
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}
BENCHMARK(BM_GaugeAdd);

// Histogram::Observe with Arg bounds (exponential from 0.5 ms), values
// spread over every bucket: the linear bucket search, one bucket cell and
// the sum.
void BM_HistogramObserve(benchmark::State& state) {
  const size_t bounds = static_cast<size_t>(state.range(0));
  MetricsRegistry r({.shards = 2});
  Histogram h = r.AddHistogram("lat_seconds", "Latency.", {"listener"},
                               MetricsRegistry::ExponentialBounds(0.0005, 2, bounds))
                    ->Get(0, {"imaps"});
  std::vector<double> values;
  for (size_t i = 0; i < 1024; ++i) values.push_back(0.0004 * static_cast<double>(1u << (i % 20)));
  size_t i = 0;
  for (auto _ : state) {
    h.Observe(values[i++ & 1023]);
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}
BENCHMARK(BM_HistogramObserve)->Arg(8)->Arg(16);

// CounterFamily::Get for an existing series (what a session start would
// pay if it resolved per session instead of per listener): mutex, hash.
void BM_CounterResolve(benchmark::State& state) {
  MetricsRegistry r({.shards = 2});
  CounterFamily f = *r.AddCounter("logins_total", "Logins.", {"listener", "result"});
  f.Get(0, {"imaps", "ok"});
  for (auto _ : state) {
    benchmark::DoNotOptimize(f.Get(0, {"imaps", "ok"}));
  }
}
BENCHMARK(BM_CounterResolve);

// MetricsRegistry::Scrape of Arg series (counters, 4 shards).
void BM_Scrape(benchmark::State& state) {
  MetricsRegistry r({.shards = 4});
  CounterFamily f = *r.AddCounter("bytes_total", "Bytes.", {"backend", "direction"});
  for (int64_t i = 0; i < state.range(0); ++i) {
    for (size_t w = 0; w < 4; ++w) f.Get(w, {absl::StrCat("store", i), "in"}).Add(w + 1);
  }
  size_t bytes = 0;
  for (auto _ : state) {
    std::string text = r.Scrape();
    bytes = text.size();
    benchmark::DoNotOptimize(text);
  }
  state.counters["bytes"] = static_cast<double>(bytes);
}
BENCHMARK(BM_Scrape)->Arg(100)->Arg(10000);

}  // namespace
}  // namespace postern
