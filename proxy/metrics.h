#pragma once

// The metrics registry: counters, gauges and histograms kept per worker and
// summed when /metrics is scraped, in the Prometheus text exposition format
// 0.0.4 (prometheus.io/docs/instrumenting/exposition_formats).
//
// Shape:
//
//   MetricsRegistry registry({.shards = workers});
//   CounterFamily logins = *registry.AddCounter(
//       "postern_logins_total", "Logins by listener and result.", {"listener", "result"});
//   // Off the hot path (listener creation, session start, reload), on worker w:
//   Counter ok = logins.Get(w, {"imaps", "ok"});
//   // On the hot path, on worker w only:
//   ok.Inc();
//
// Shards and threads. The registry holds one shard of cells per worker. A
// handle (Counter, Gauge, Histogram) points at cells of the shard it was
// resolved for, and only the one thread that owns that shard may write
// through it: an increment is a relaxed load and a relaxed store of a cell
// nobody else writes (no lock prefix, no lock, no lookup, no allocation; a
// few instructions). A scrape, from any thread, reads every shard's cells
// with relaxed loads and sums them. Give any other writing thread (the main
// thread, say) its own shard. Two threads writing through handles of one
// shard would lose increments (never memory safety: every cell is a
// std::atomic, so there is no data race in the C++ sense either).
//
// Why this is ASan- and TSan-clean: cells are std::atomic<uint64_t> and are
// only accessed atomically (relaxed: a scrape needs no ordering with other
// memory, only an untorn value); the cell arrays are allocated when a
// series is first resolved and never move or go away while the registry
// lives (chunks of cells, each shard's chunks separate cache lines so two
// workers never write one line); everything else (the series index, chunk
// lists, names, callbacks) is guarded by the registry's mutex, which the
// hot path never takes. tests/proxy/metrics_test.cc runs writers and
// scrapers concurrently; it runs under ASan+UBSan in the project's
// sanitizer build and passes under TSan (the command is in proxy/README.md).
//
// Label values must never be client-controlled. Use them for things the
// configuration or the code fixes: listener, backend, directory, protocol,
// stage, and result or reason from a fixed set of words in the code. Never
// for user names, client addresses, SNI, IMAP ID values or error texts from
// a peer. As a backstop, each family holds at most
// `max_series_per_family` series (10,000 by default); past it every new
// label set resolves to one overflow series (every label value
// "__overflow__") and is counted in postern_metrics_series_dropped_total
// {family="..."}. Label values are cut to 256 bytes and ill-formed UTF-8 is
// replaced by U+FFFD, so the output stays valid whatever a value holds.
// Series are never removed (a backend renamed by a reload keeps its old
// series until the process restarts: a bounded leak by the cap).
//
// Output: families sorted by name, series sorted by label values (as byte
// strings, in the order of the label names), label names in registration
// order, histogram buckets cumulative ending in le="+Inf", then _sum and
// _count. Families with no series yet are left out. `promtool check
// metrics` accepts it: the names follow its lint rules (enforced at
// registration: counters end in _total, nothing else does, no _count /
// _sum / _bucket names outside histograms, snake case, no colons).

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/base/casts.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace postern {

// The Content-Type of MetricsRegistry::Scrape()'s output.
inline constexpr absl::string_view kPrometheusContentType =
    "text/plain; version=0.0.4; charset=utf-8";

class MetricsRegistry;

namespace metrics_internal {

using Cell = std::atomic<uint64_t>;

// One writer per cell: a plain read-modify-write through relaxed atomics.
inline void AddToCell(Cell* c, uint64_t n) {
  c->store(c->load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}
inline void AddToDoubleCell(Cell* c, double d) {
  const double v = absl::bit_cast<double>(c->load(std::memory_order_relaxed)) + d;
  c->store(absl::bit_cast<uint64_t>(v), std::memory_order_relaxed);
}

// Where handles that were never resolved write: nobody reads these cells.
// (Concurrent writes from several threads only lose updates.)
extern Cell detached_cells[2];

struct Family;  // metrics.cc

}  // namespace metrics_internal

// --- handles: what the hot path holds ---------------------------------------------

// A counter series in one shard. Default-constructed: adds go nowhere.
class Counter {
 public:
  Counter() = default;
  void Add(uint64_t n) const { metrics_internal::AddToCell(cell_, n); }
  void Inc() const { Add(1); }
  // This shard's value (the scrape sums every shard's).
  uint64_t shard_value() const { return cell_->load(std::memory_order_relaxed); }

 private:
  friend class CounterFamily;
  explicit Counter(metrics_internal::Cell* cell) : cell_(cell) {}
  metrics_internal::Cell* cell_ = &metrics_internal::detached_cells[0];
};

// A gauge series in one shard: Set and Add act on this shard's value; the
// scrape shows the sum over the shards (so "sessions open" is Add(1) /
// Add(-1) on each worker). Default-constructed: goes nowhere.
class Gauge {
 public:
  Gauge() = default;
  void Set(double v) const { cell_->store(absl::bit_cast<uint64_t>(v), std::memory_order_relaxed); }
  void Add(double d) const { metrics_internal::AddToDoubleCell(cell_, d); }
  void Sub(double d) const { Add(-d); }
  double shard_value() const {
    return absl::bit_cast<double>(cell_->load(std::memory_order_relaxed));
  }

 private:
  friend class GaugeFamily;
  explicit Gauge(metrics_internal::Cell* cell) : cell_(cell) {}
  metrics_internal::Cell* cell_ = &metrics_internal::detached_cells[0];
};

// A histogram series in one shard: one cell per bucket (not cumulative:
// cumulated at scrape time, where _count is their sum) and one for the sum.
// Default-constructed: goes nowhere.
class Histogram {
 public:
  Histogram() = default;
  // Counts `v` in the first bucket whose upper bound is >= v (a value
  // exactly on a bound belongs to that bound's bucket: le is "less than or
  // equal"), or in +Inf. NaN is dropped (it would turn _sum into NaN for
  // good).
  void Observe(double v) const {
    if (v != v) return;  // NaN
    uint32_t i = 0;
    while (i < bound_count_ && v > bounds_[i]) ++i;
    metrics_internal::AddToCell(cells_ + i, 1);
    metrics_internal::AddToDoubleCell(cells_ + bound_count_ + 1, v);
  }
  // Observes a duration in seconds (the Prometheus base unit).
  void ObserveDuration(std::chrono::nanoseconds d) const {
    Observe(static_cast<double>(d.count()) * 1e-9);
  }

 private:
  friend class HistogramFamily;
  Histogram(const double* bounds, uint32_t bound_count, metrics_internal::Cell* cells)
      : bounds_(bounds), bound_count_(bound_count), cells_(cells) {}
  // Without bounds: cells_[0] is the +Inf bucket, cells_[1] the sum.
  const double* bounds_ = nullptr;
  uint32_t bound_count_ = 0;
  metrics_internal::Cell* cells_ = metrics_internal::detached_cells;
};

// --- families: where handles come from ---------------------------------------------

// Label values for Get(): one per label name, in the order of the names.
using LabelValues = absl::Span<const absl::string_view>;

// A family is a small value (two pointers) valid while its registry lives;
// copy it freely. Get() takes the registry's mutex and may allocate: call
// it off the hot path and keep the handle. A wrong number of label values
// (or a shard out of range) is a bug in the caller: it gets a detached
// handle.
class CounterFamily {
 public:
  CounterFamily() = default;
  Counter Get(size_t shard, LabelValues values) const;
  Counter Get(size_t shard, std::initializer_list<absl::string_view> values) const {
    return Get(shard, LabelValues(values.begin(), values.size()));
  }

 private:
  friend class MetricsRegistry;
  CounterFamily(MetricsRegistry* r, metrics_internal::Family* f) : registry_(r), family_(f) {}
  MetricsRegistry* registry_ = nullptr;
  metrics_internal::Family* family_ = nullptr;
};

class GaugeFamily {
 public:
  GaugeFamily() = default;
  Gauge Get(size_t shard, LabelValues values) const;
  Gauge Get(size_t shard, std::initializer_list<absl::string_view> values) const {
    return Get(shard, LabelValues(values.begin(), values.size()));
  }

 private:
  friend class MetricsRegistry;
  GaugeFamily(MetricsRegistry* r, metrics_internal::Family* f) : registry_(r), family_(f) {}
  MetricsRegistry* registry_ = nullptr;
  metrics_internal::Family* family_ = nullptr;
};

class HistogramFamily {
 public:
  HistogramFamily() = default;
  Histogram Get(size_t shard, LabelValues values) const;
  Histogram Get(size_t shard, std::initializer_list<absl::string_view> values) const {
    return Get(shard, LabelValues(values.begin(), values.size()));
  }

 private:
  friend class MetricsRegistry;
  HistogramFamily(MetricsRegistry* r, metrics_internal::Family* f) : registry_(r), family_(f) {}
  MetricsRegistry* registry_ = nullptr;
  metrics_internal::Family* family_ = nullptr;
};

// --- callback families: values computed at scrape time ---------------------------

// What a callback reports its series through. Emit() for the same label
// values more than once adds the values (a callback may report one series
// per worker and let them be summed). Series past the family's cap are
// dropped and counted; a wrong number of label values is ignored.
class CallbackSink {
 public:
  virtual void Emit(LabelValues values, double value) = 0;
  void Emit(std::initializer_list<absl::string_view> values, double value) {
    Emit(LabelValues(values.begin(), values.size()), value);
  }

 protected:
  ~CallbackSink() = default;
};

// Keeps a callback family registered; destroying it unregisters the
// callback (waiting for a scrape that is running it to finish; do not
// destroy it from inside the callback). It may outlive the registry.
class CallbackRegistration {
 public:
  struct Entry;  // metrics.cc
  CallbackRegistration() = default;
  explicit CallbackRegistration(std::shared_ptr<Entry> entry) : entry_(std::move(entry)) {}
  ~CallbackRegistration() { Reset(); }
  CallbackRegistration(CallbackRegistration&&) noexcept = default;
  CallbackRegistration& operator=(CallbackRegistration&& o) noexcept {
    if (this != &o) {
      Reset();
      entry_ = std::move(o.entry_);
    }
    return *this;
  }
  void Reset();

 private:
  std::shared_ptr<Entry> entry_;
};

// --- the registry -----------------------------------------------------------------

struct MetricsRegistryOptions {
  // One per worker (and one per any other thread that writes).
  size_t shards = 1;
  // Series per family before new label sets go to the overflow series.
  size_t max_series_per_family = 10000;
  // The counter of label sets sent to an overflow series, by family.
  std::string dropped_series_name = "postern_metrics_series_dropped_total";
};

class MetricsRegistry {
 public:
  enum class Type { kCounter, kGauge, kHistogram };

  explicit MetricsRegistry(MetricsRegistryOptions options = {});
  ~MetricsRegistry();
  MetricsRegistry(const MetricsRegistry&) = delete;
  MetricsRegistry& operator=(const MetricsRegistry&) = delete;

  size_t shards() const { return options_.shards; }

  // Registration. INVALID_ARGUMENT for a name or label name the format (or
  // promtool's lint) refuses, an empty help, duplicate label names, "le" on
  // a histogram, bounds that are not finite and strictly increasing (or
  // more than 64 of them); ALREADY_EXISTS when a name (or a histogram's
  // _bucket/_sum/_count) is taken. A family without labels gets its one
  // series at once (so it shows 0 before the first increment).
  absl::StatusOr<CounterFamily> AddCounter(absl::string_view name, absl::string_view help,
                                           std::vector<std::string> label_names = {});
  absl::StatusOr<GaugeFamily> AddGauge(absl::string_view name, absl::string_view help,
                                       std::vector<std::string> label_names = {});
  absl::StatusOr<HistogramFamily> AddHistogram(absl::string_view name, absl::string_view help,
                                               std::vector<std::string> label_names,
                                               std::vector<double> bounds);
  // A family whose series a callback reports at every scrape (buffer-pool
  // bytes, sessions open, build info). `type`: kCounter or kGauge. The
  // callback runs on the scraping thread, without the registry's lock held
  // (it may resolve handles), and must be thread-safe on its own.
  absl::StatusOr<CallbackRegistration> AddCallback(absl::string_view name, absl::string_view help,
                                                   Type type, std::vector<std::string> label_names,
                                                   std::function<void(CallbackSink&)> callback);

  // The whole exposition, from any thread, while workers increment.
  std::string Scrape() const;

  // Exponential bounds: start, start*factor, ... (count of them), for
  // AddHistogram.
  static std::vector<double> ExponentialBounds(double start, double factor, size_t count);

 private:
  friend class CounterFamily;
  friend class GaugeFamily;
  friend class HistogramFamily;
  struct State;  // metrics.cc

  absl::StatusOr<metrics_internal::Family*> Register(absl::string_view name, absl::string_view help,
                                                     Type type,
                                                     std::vector<std::string> label_names,
                                                     std::vector<double> bounds);
  // The first cell of the series' cells in `shard`, created when new; null
  // for a bad call.
  metrics_internal::Cell* Resolve(metrics_internal::Family* f, size_t shard, LabelValues values);

  MetricsRegistryOptions options_;
  std::unique_ptr<State> state_;
};

// Formats a sample value as the text format wants it: integers without a
// fraction, shortest round-trip form otherwise, "+Inf", "-Inf", "NaN".
std::string FormatMetricValue(double v);

}  // namespace postern
