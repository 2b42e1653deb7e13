#include "proxy/metrics.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <deque>
#include <limits>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "proxy/utf8.h"

namespace postern {
namespace metrics_internal {

Cell detached_cells[2];

namespace {

constexpr size_t kChunkCells = 1024;  // 8 KiB of cells per chunk and shard
constexpr size_t kMaxBounds = 64;
constexpr size_t kMaxLabelValueBytes = 256;
constexpr absl::string_view kOverflowValue = "__overflow__";

// A shard's block of cells; separate allocations per shard, aligned to the
// cache line, so two workers never write the same line.
struct alignas(64) Chunk {
  Cell cells[kChunkCells];
};

}  // namespace

struct Series {
  std::vector<std::string> values;  // sanitized
  uint32_t first_cell = 0;
};

struct Family {
  std::string name;
  std::string help;  // sanitized UTF-8
  MetricsRegistry::Type type = MetricsRegistry::Type::kCounter;
  std::vector<std::string> label_names;
  std::vector<double> bounds;  // histograms
  uint32_t cells_per_series = 1;
  // Append-only (a deque: references stay valid while it grows, so a
  // scrape can read series it listed under the lock after letting go).
  std::deque<Series> series;
  absl::flat_hash_map<std::string, uint32_t> index;  // key of the values -> series
  int64_t overflow = -1;                             // the overflow series, once made
  uint64_t dropped = 0;
};

}  // namespace metrics_internal

using metrics_internal::Cell;
using metrics_internal::Chunk;
using metrics_internal::Family;
using metrics_internal::kChunkCells;
using metrics_internal::kMaxBounds;
using metrics_internal::Series;

// A callback family: its description and the callback, shared between the
// registry and the CallbackRegistration (either may go first).
struct CallbackRegistration::Entry {
  std::string name;
  std::string help;
  MetricsRegistry::Type type = MetricsRegistry::Type::kGauge;
  std::vector<std::string> label_names;
  size_t max_series = 0;
  std::atomic<uint64_t> dropped{0};
  std::mutex mu;  // held while the callback runs and while it is removed
  std::function<void(CallbackSink&)> fn;
  // Cleared (under `mu`) with `fn`; read without `mu` by the registry, which
  // may be called from inside the callback.
  std::atomic<bool> live{true};
};

void CallbackRegistration::Reset() {
  if (entry_ == nullptr) return;
  {
    std::lock_guard<std::mutex> lock(entry_->mu);
    entry_->fn = nullptr;
    entry_->live.store(false);
  }
  entry_.reset();
}

struct MetricsRegistry::State {
  mutable std::mutex mu;
  std::vector<std::unique_ptr<Family>> families;
  std::vector<std::shared_ptr<CallbackRegistration::Entry>> callbacks;
  // Every sample name in use (a histogram takes four).
  absl::flat_hash_set<std::string> names;
  // shard -> its chunks; chunk i holds cells [i * kChunkCells, (i+1) * kChunkCells).
  std::vector<std::vector<Chunk*>> chunks;
  uint32_t next_cell = 0;

  ~State() {
    for (auto& shard : chunks) {
      for (Chunk* c : shard) delete c;
    }
  }

  Cell* CellAt(size_t shard, uint32_t index) const {
    return &chunks[shard][index / kChunkCells]->cells[index % kChunkCells];
  }

  // `n` consecutive cells (in every shard), never across a chunk boundary.
  uint32_t AllocateCells(uint32_t n) {
    if (next_cell % kChunkCells + n > kChunkCells) {
      next_cell += static_cast<uint32_t>(kChunkCells - next_cell % kChunkCells);
    }
    const uint32_t first = next_cell;
    next_cell += n;
    const size_t needed = (next_cell + kChunkCells - 1) / kChunkCells;
    for (auto& shard : chunks) {
      while (shard.size() < needed) shard.push_back(new Chunk());
    }
    return first;
  }

  // Drops callback families whose registration is gone (and their names).
  void PruneCallbacks() {
    auto dead = [&](const std::shared_ptr<CallbackRegistration::Entry>& e) {
      if (e->live.load()) return false;
      names.erase(e->name);
      return true;
    };
    callbacks.erase(std::remove_if(callbacks.begin(), callbacks.end(), dead), callbacks.end());
  }
};

namespace {

using Type = MetricsRegistry::Type;

bool IsMetricName(absl::string_view s) {
  // [a-z_][a-z0-9_]*: the format's [a-zA-Z_:][a-zA-Z0-9_:]* without colons
  // (reserved for recording rules) and capitals (promtool: snake case).
  if (s.empty() || absl::ascii_isdigit(static_cast<unsigned char>(s[0]))) return false;
  for (char c : s) {
    if (!(absl::ascii_islower(static_cast<unsigned char>(c)) ||
          absl::ascii_isdigit(static_cast<unsigned char>(c)) || c == '_')) {
      return false;
    }
  }
  return true;
}

bool IsLabelName(absl::string_view s) {
  // [a-zA-Z_][a-zA-Z0-9_]*, and "__" prefixes are Prometheus's own.
  if (s.empty() || absl::ascii_isdigit(static_cast<unsigned char>(s[0]))) return false;
  if (absl::StartsWith(s, "__")) return false;
  for (char c : s) {
    if (!(absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_')) return false;
  }
  return true;
}

const char* TypeName(Type t) {
  switch (t) {
    case Type::kCounter:
      return "counter";
    case Type::kGauge:
      return "gauge";
    case Type::kHistogram:
      return "histogram";
  }
  return "untyped";
}

std::vector<std::string> SampleNames(absl::string_view name, Type type) {
  if (type != Type::kHistogram) return {std::string(name)};
  return {std::string(name), absl::StrCat(name, "_bucket"), absl::StrCat(name, "_sum"),
          absl::StrCat(name, "_count")};
}

absl::Status CheckFamily(absl::string_view name, absl::string_view help, Type type,
                         const std::vector<std::string>& label_names,
                         const std::vector<double>& bounds) {
  if (!IsMetricName(name)) {
    return absl::InvalidArgumentError(
        absl::StrCat("metric name \"", name, "\" is not [a-z_][a-z0-9_]*"));
  }
  const bool total = absl::EndsWith(name, "_total");
  if (type == Type::kCounter && !total) {
    return absl::InvalidArgumentError(absl::StrCat("counter \"", name, "\" must end in _total"));
  }
  if (type != Type::kCounter && total) {
    return absl::InvalidArgumentError(absl::StrCat("only counters end in _total (\"", name, "\")"));
  }
  for (absl::string_view suffix : {"_count", "_sum", "_bucket"}) {
    if (absl::EndsWith(name, suffix)) {
      return absl::InvalidArgumentError(
          absl::StrCat("\"", name, "\": ", suffix, " is a histogram's sample suffix"));
    }
  }
  if (help.empty()) return absl::InvalidArgumentError(absl::StrCat(name, ": empty help"));
  absl::flat_hash_set<absl::string_view> seen;
  for (const std::string& l : label_names) {
    if (!IsLabelName(l)) {
      return absl::InvalidArgumentError(absl::StrCat(name, ": bad label name \"", l, "\""));
    }
    if (!seen.insert(l).second) {
      return absl::InvalidArgumentError(absl::StrCat(name, ": label \"", l, "\" twice"));
    }
    if (type == Type::kHistogram && l == "le") {
      return absl::InvalidArgumentError(absl::StrCat(name, ": \"le\" is the bucket label"));
    }
  }
  if (type == Type::kHistogram) {
    if (bounds.empty() || bounds.size() > kMaxBounds) {
      return absl::InvalidArgumentError(
          absl::StrCat(name, ": 1 to ", kMaxBounds, " bucket bounds, not ", bounds.size()));
    }
    for (size_t i = 0; i < bounds.size(); ++i) {
      if (!std::isfinite(bounds[i]) || (i > 0 && !(bounds[i] > bounds[i - 1]))) {
        return absl::InvalidArgumentError(
            absl::StrCat(name, ": bounds must be finite and strictly increasing"));
      }
    }
  }
  return absl::OkStatus();
}

// Cut to kMaxLabelValueBytes, ill-formed UTF-8 replaced.
std::string CleanValue(absl::string_view v) {
  std::string out;
  AppendUtf8Sanitized(&out, v.substr(0, metrics_internal::kMaxLabelValueBytes));
  return out;
}

// The series index key: each value with its length in front.
std::string SeriesKey(const std::vector<std::string>& values) {
  std::string key;
  for (const std::string& v : values) {
    const uint32_t n = static_cast<uint32_t>(v.size());
    key.append(reinterpret_cast<const char*>(&n), sizeof(n));
    key.append(v);
  }
  return key;
}

void AppendHelpEscaped(std::string* out, absl::string_view s) {
  for (char c : s) {
    if (c == '\\') {
      out->append("\\\\");
    } else if (c == '\n') {
      out->append("\\n");
    } else {
      out->push_back(c);
    }
  }
}

void AppendLabelValueEscaped(std::string* out, absl::string_view s) {
  for (char c : s) {
    if (c == '\\') {
      out->append("\\\\");
    } else if (c == '"') {
      out->append("\\\"");
    } else if (c == '\n') {
      out->append("\\n");
    } else {
      out->push_back(c);
    }
  }
}

void AppendHeader(std::string* out, absl::string_view name, absl::string_view help, Type type) {
  absl::StrAppend(out, "# HELP ", name, " ");
  AppendHelpEscaped(out, help);
  absl::StrAppend(out, "\n# TYPE ", name, " ", TypeName(type), "\n");
}

// `name{a="x",b="y"[,le="..."]} ` (no braces without labels).
void AppendSeriesName(std::string* out, absl::string_view name,
                      const std::vector<std::string>& label_names,
                      const std::vector<std::string>& values, absl::string_view le = {}) {
  out->append(name.data(), name.size());
  if (label_names.empty() && le.empty()) {
    out->push_back(' ');
    return;
  }
  out->push_back('{');
  for (size_t i = 0; i < label_names.size(); ++i) {
    if (i > 0) out->push_back(',');
    absl::StrAppend(out, label_names[i], "=\"");
    AppendLabelValueEscaped(out, values[i]);
    out->push_back('"');
  }
  if (!le.empty()) absl::StrAppend(out, label_names.empty() ? "" : ",", "le=\"", le, "\"");
  out->append("} ");
}

bool ValuesLess(const std::vector<std::string>& a, const std::vector<std::string>& b) {
  return a < b;
}

// A callback's series, summed by label values.
class SinkImpl final : public CallbackSink {
 public:
  SinkImpl(size_t labels, size_t max_series, std::atomic<uint64_t>* dropped)
      : labels_(labels), max_series_(max_series), dropped_(dropped) {}
  using CallbackSink::Emit;
  void Emit(LabelValues values, double value) override {
    if (values.size() != labels_) return;
    std::vector<std::string> clean;
    clean.reserve(values.size());
    for (absl::string_view v : values) clean.push_back(CleanValue(v));
    std::string key = SeriesKey(clean);
    auto it = index_.find(key);
    if (it != index_.end()) {
      series_[it->second].second += value;
      return;
    }
    if (series_.size() >= max_series_) {
      dropped_->fetch_add(1, std::memory_order_relaxed);
      return;
    }
    index_.emplace(std::move(key), series_.size());
    series_.emplace_back(std::move(clean), value);
  }
  std::vector<std::pair<std::vector<std::string>, double>>& series() { return series_; }

 private:
  size_t labels_;
  size_t max_series_;
  std::atomic<uint64_t>* dropped_;
  absl::flat_hash_map<std::string, size_t> index_;
  std::vector<std::pair<std::vector<std::string>, double>> series_;
};

}  // namespace

std::string FormatMetricValue(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  // Whole numbers as integers ("4000000", not to_chars's shorter "4e+06").
  if (std::trunc(v) == v && std::fabs(v) <= 9007199254740992.0) {
    return absl::StrCat(static_cast<int64_t>(v));
  }
  char buf[64];
  // Otherwise the shortest form that reads back as the same double ("3", "0.25", "1e+21").
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), v);
  if (ec != std::errc()) return absl::StrCat(v);
  return std::string(buf, end);
}

std::vector<double> MetricsRegistry::ExponentialBounds(double start, double factor, size_t count) {
  std::vector<double> out;
  double b = start;
  for (size_t i = 0; i < count; ++i, b *= factor) out.push_back(b);
  return out;
}

MetricsRegistry::MetricsRegistry(MetricsRegistryOptions options)
    : options_(std::move(options)), state_(std::make_unique<State>()) {
  if (options_.shards == 0) options_.shards = 1;
  if (options_.max_series_per_family == 0) options_.max_series_per_family = 1;
  state_->chunks.resize(options_.shards);
  state_->names.insert(options_.dropped_series_name);
}

MetricsRegistry::~MetricsRegistry() = default;

absl::StatusOr<Family*> MetricsRegistry::Register(absl::string_view name, absl::string_view help,
                                                  Type type, std::vector<std::string> label_names,
                                                  std::vector<double> bounds) {
  if (absl::Status s = CheckFamily(name, help, type, label_names, bounds); !s.ok()) return s;
  std::lock_guard<std::mutex> lock(state_->mu);
  state_->PruneCallbacks();
  const std::vector<std::string> samples = SampleNames(name, type);
  for (const std::string& s : samples) {
    if (state_->names.contains(s)) {
      return absl::AlreadyExistsError(absl::StrCat("metric name \"", s, "\" is taken"));
    }
  }
  state_->names.insert(samples.begin(), samples.end());
  auto f = std::make_unique<Family>();
  f->name = std::string(name);
  AppendUtf8Sanitized(&f->help, help);
  f->type = type;
  f->label_names = std::move(label_names);
  f->bounds = std::move(bounds);
  f->cells_per_series = type == Type::kHistogram ? static_cast<uint32_t>(f->bounds.size() + 2) : 1;
  Family* raw = f.get();
  state_->families.push_back(std::move(f));
  if (raw->label_names.empty()) {
    raw->series.push_back(Series{{}, state_->AllocateCells(raw->cells_per_series)});
    raw->index.emplace(SeriesKey({}), 0);
  }
  return raw;
}

Cell* MetricsRegistry::Resolve(Family* f, size_t shard, LabelValues values) {
  if (f == nullptr || shard >= options_.shards || values.size() != f->label_names.size()) {
    return nullptr;
  }
  std::vector<std::string> clean;
  clean.reserve(values.size());
  for (absl::string_view v : values) clean.push_back(CleanValue(v));
  std::string key = SeriesKey(clean);
  std::lock_guard<std::mutex> lock(state_->mu);
  if (auto it = f->index.find(key); it != f->index.end()) {
    return state_->CellAt(shard, f->series[it->second].first_cell);
  }
  if (f->index.size() >= options_.max_series_per_family) {
    ++f->dropped;
    if (f->overflow < 0) {
      f->overflow = static_cast<int64_t>(f->series.size());
      f->series.push_back(
          Series{std::vector<std::string>(f->label_names.size(),
                                          std::string(metrics_internal::kOverflowValue)),
                 state_->AllocateCells(f->cells_per_series)});
    }
    return state_->CellAt(shard, f->series[static_cast<size_t>(f->overflow)].first_cell);
  }
  const uint32_t first = state_->AllocateCells(f->cells_per_series);
  f->index.emplace(std::move(key), static_cast<uint32_t>(f->series.size()));
  f->series.push_back(Series{std::move(clean), first});
  return state_->CellAt(shard, first);
}

absl::StatusOr<CounterFamily> MetricsRegistry::AddCounter(absl::string_view name,
                                                          absl::string_view help,
                                                          std::vector<std::string> label_names) {
  absl::StatusOr<Family*> f = Register(name, help, Type::kCounter, std::move(label_names), {});
  if (!f.ok()) return f.status();
  return CounterFamily(this, *f);
}

absl::StatusOr<GaugeFamily> MetricsRegistry::AddGauge(absl::string_view name,
                                                      absl::string_view help,
                                                      std::vector<std::string> label_names) {
  absl::StatusOr<Family*> f = Register(name, help, Type::kGauge, std::move(label_names), {});
  if (!f.ok()) return f.status();
  return GaugeFamily(this, *f);
}

absl::StatusOr<HistogramFamily> MetricsRegistry::AddHistogram(absl::string_view name,
                                                              absl::string_view help,
                                                              std::vector<std::string> label_names,
                                                              std::vector<double> bounds) {
  absl::StatusOr<Family*> f =
      Register(name, help, Type::kHistogram, std::move(label_names), std::move(bounds));
  if (!f.ok()) return f.status();
  return HistogramFamily(this, *f);
}

absl::StatusOr<CallbackRegistration> MetricsRegistry::AddCallback(
    absl::string_view name, absl::string_view help, Type type, std::vector<std::string> label_names,
    std::function<void(CallbackSink&)> callback) {
  if (type == Type::kHistogram) {
    return absl::InvalidArgumentError("callback families are counters or gauges");
  }
  if (!callback) return absl::InvalidArgumentError(absl::StrCat(name, ": no callback"));
  if (absl::Status s = CheckFamily(name, help, type, label_names, {}); !s.ok()) return s;
  auto e = std::make_shared<CallbackRegistration::Entry>();
  e->name = std::string(name);
  AppendUtf8Sanitized(&e->help, help);
  e->type = type;
  e->label_names = std::move(label_names);
  e->max_series = options_.max_series_per_family;
  e->fn = std::move(callback);
  std::lock_guard<std::mutex> lock(state_->mu);
  state_->PruneCallbacks();
  if (state_->names.contains(e->name)) {
    return absl::AlreadyExistsError(absl::StrCat("metric name \"", name, "\" is taken"));
  }
  state_->names.insert(e->name);
  state_->callbacks.push_back(e);
  return CallbackRegistration(std::move(e));
}

Counter CounterFamily::Get(size_t shard, LabelValues values) const {
  if (registry_ == nullptr) return Counter();
  Cell* c = registry_->Resolve(family_, shard, values);
  return c == nullptr ? Counter() : Counter(c);
}

Gauge GaugeFamily::Get(size_t shard, LabelValues values) const {
  if (registry_ == nullptr) return Gauge();
  Cell* c = registry_->Resolve(family_, shard, values);
  return c == nullptr ? Gauge() : Gauge(c);
}

Histogram HistogramFamily::Get(size_t shard, LabelValues values) const {
  if (registry_ == nullptr) return Histogram();
  Cell* c = registry_->Resolve(family_, shard, values);
  if (c == nullptr) return Histogram();
  return Histogram(family_->bounds.data(), static_cast<uint32_t>(family_->bounds.size()), c);
}

std::string MetricsRegistry::Scrape() const {
  // Under the lock: which families and series exist, the chunk tables and
  // the callbacks. The cells are read and everything is formatted after
  // letting go, so resolving handles never waits for a long scrape (series
  // and chunks are never freed or moved while the registry lives).
  struct Listed {
    const Family* family;
    std::vector<const Series*> series;
    uint64_t dropped;
  };
  std::vector<Listed> listed;
  std::vector<std::vector<Chunk*>> chunks;
  std::vector<std::shared_ptr<CallbackRegistration::Entry>> callbacks;
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    listed.reserve(state_->families.size());
    for (const auto& f : state_->families) {
      Listed l{f.get(), {}, f->dropped};
      l.series.reserve(f->series.size());
      for (const Series& s : f->series) l.series.push_back(&s);
      listed.push_back(std::move(l));
    }
    chunks = state_->chunks;
    callbacks = state_->callbacks;
  }
  auto cell = [&](size_t shard, uint32_t index) -> const Cell& {
    return chunks[shard][index / kChunkCells]->cells[index % kChunkCells];
  };
  const size_t shards = chunks.size();

  // (name, text) per family, sorted by name at the end.
  std::vector<std::pair<absl::string_view, std::string>> blocks;
  std::vector<std::pair<absl::string_view, uint64_t>> dropped;
  for (Listed& l : listed) {
    const Family& f = *l.family;
    if (l.dropped > 0) dropped.emplace_back(f.name, l.dropped);
    if (l.series.empty()) continue;
    std::sort(l.series.begin(), l.series.end(),
              [](const Series* a, const Series* b) { return ValuesLess(a->values, b->values); });
    std::string out;
    AppendHeader(&out, f.name, f.help, f.type);
    for (const Series* s : l.series) {
      switch (f.type) {
        case Type::kCounter: {
          uint64_t sum = 0;
          for (size_t sh = 0; sh < shards; ++sh) {
            sum += cell(sh, s->first_cell).load(std::memory_order_relaxed);
          }
          AppendSeriesName(&out, f.name, f.label_names, s->values);
          absl::StrAppend(&out, sum, "\n");
          break;
        }
        case Type::kGauge: {
          double sum = 0;
          for (size_t sh = 0; sh < shards; ++sh) {
            sum += absl::bit_cast<double>(cell(sh, s->first_cell).load(std::memory_order_relaxed));
          }
          AppendSeriesName(&out, f.name, f.label_names, s->values);
          absl::StrAppend(&out, FormatMetricValue(sum), "\n");
          break;
        }
        case Type::kHistogram: {
          const size_t buckets = f.bounds.size() + 1;
          std::vector<uint64_t> counts(buckets, 0);
          double sum = 0;
          for (size_t sh = 0; sh < shards; ++sh) {
            for (size_t b = 0; b < buckets; ++b) {
              counts[b] += cell(sh, s->first_cell + static_cast<uint32_t>(b))
                               .load(std::memory_order_relaxed);
            }
            sum += absl::bit_cast<double>(cell(sh, s->first_cell + static_cast<uint32_t>(buckets))
                                              .load(std::memory_order_relaxed));
          }
          const std::string bucket_name = absl::StrCat(f.name, "_bucket");
          uint64_t cumulative = 0;
          for (size_t b = 0; b < buckets; ++b) {
            cumulative += counts[b];
            const std::string le = b < f.bounds.size() ? FormatMetricValue(f.bounds[b]) : "+Inf";
            AppendSeriesName(&out, bucket_name, f.label_names, s->values, le);
            absl::StrAppend(&out, cumulative, "\n");
          }
          AppendSeriesName(&out, absl::StrCat(f.name, "_sum"), f.label_names, s->values);
          absl::StrAppend(&out, FormatMetricValue(sum), "\n");
          AppendSeriesName(&out, absl::StrCat(f.name, "_count"), f.label_names, s->values);
          absl::StrAppend(&out, cumulative, "\n");
          break;
        }
      }
    }
    blocks.emplace_back(f.name, std::move(out));
  }

  for (const auto& e : callbacks) {
    SinkImpl sink(e->label_names.size(), e->max_series, &e->dropped);
    {
      std::lock_guard<std::mutex> lock(e->mu);
      if (!e->fn) continue;
      e->fn(sink);
    }
    if (const uint64_t d = e->dropped.load(std::memory_order_relaxed); d > 0) {
      dropped.emplace_back(e->name, d);
    }
    auto& series = sink.series();
    if (series.empty()) continue;
    std::sort(series.begin(), series.end(),
              [](const auto& a, const auto& b) { return ValuesLess(a.first, b.first); });
    std::string out;
    AppendHeader(&out, e->name, e->help, e->type);
    for (const auto& [values, value] : series) {
      AppendSeriesName(&out, e->name, e->label_names, values);
      absl::StrAppend(&out, FormatMetricValue(value), "\n");
    }
    blocks.emplace_back(e->name, std::move(out));
  }

  if (!dropped.empty()) {
    std::sort(dropped.begin(), dropped.end());
    std::string out;
    AppendHeader(&out, options_.dropped_series_name,
                 "Label sets sent to a family's overflow series once the family had its "
                 "maximum number of series.",
                 Type::kCounter);
    const std::vector<std::string> label_names = {"family"};
    for (const auto& [family, n] : dropped) {
      AppendSeriesName(&out, options_.dropped_series_name, label_names, {std::string(family)});
      absl::StrAppend(&out, n, "\n");
    }
    blocks.emplace_back(options_.dropped_series_name, std::move(out));
  }

  std::sort(blocks.begin(), blocks.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  size_t total = 0;
  for (const auto& b : blocks) total += b.second.size();
  std::string text;
  text.reserve(total);
  for (const auto& b : blocks) text.append(b.second);
  return text;
}

}  // namespace postern
