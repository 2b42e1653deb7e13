#include "bench/mailbench/report.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace postern::mailbench {
namespace {

double NearestRank(const std::vector<uint64_t>& sorted, double p) {
  size_t rank = static_cast<size_t>(std::ceil(p * static_cast<double>(sorted.size())));
  rank = std::clamp<size_t>(rank, 1, sorted.size());
  return static_cast<double>(sorted[rank - 1]);
}

std::string Number(double v) {
  if (!std::isfinite(v)) return "null";
  return absl::StrFormat("%.6g", v);
}

}  // namespace

Distribution Summarize(std::vector<uint64_t>& ns, double unit_ns) {
  Distribution d;
  if (ns.empty()) return d;
  std::sort(ns.begin(), ns.end());
  double sum = 0;
  for (uint64_t v : ns) sum += static_cast<double>(v);
  d.count = ns.size();
  d.mean = sum / static_cast<double>(ns.size()) / unit_ns;
  d.p50 = NearestRank(ns, 0.50) / unit_ns;
  d.p90 = NearestRank(ns, 0.90) / unit_ns;
  d.p99 = NearestRank(ns, 0.99) / unit_ns;
  d.max = static_cast<double>(ns.back()) / unit_ns;
  return d;
}

std::string JsonQuote(absl::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    unsigned char u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (u < 0x20 || u >= 0x7f) {
      absl::StrAppendFormat(&out, "\\u%04x", u);
    } else {
      out += c;
    }
  }
  out += '"';
  return out;
}

void JsonObject::Key(absl::string_view key) {
  if (!body_.empty()) body_ += ",";
  absl::StrAppend(&body_, JsonQuote(key), ":");
}

JsonObject& JsonObject::Add(absl::string_view key, double value) {
  Key(key);
  body_ += Number(value);
  return *this;
}

JsonObject& JsonObject::Add(absl::string_view key, uint64_t value) {
  Key(key);
  absl::StrAppend(&body_, value);
  return *this;
}

JsonObject& JsonObject::Add(absl::string_view key, int value) {
  Key(key);
  absl::StrAppend(&body_, value);
  return *this;
}

JsonObject& JsonObject::Add(absl::string_view key, bool value) {
  Key(key);
  body_ += value ? "true" : "false";
  return *this;
}

JsonObject& JsonObject::Add(absl::string_view key, absl::string_view value) {
  Key(key);
  body_ += JsonQuote(value);
  return *this;
}

JsonObject& JsonObject::Add(absl::string_view key, const Distribution& d) {
  JsonObject o;
  o.Add("n", d.count)
      .Add("mean", d.mean)
      .Add("p50", d.p50)
      .Add("p90", d.p90)
      .Add("p99", d.p99)
      .Add("max", d.max);
  return AddRaw(key, o.Build());
}

JsonObject& JsonObject::AddRaw(absl::string_view key, absl::string_view json) {
  Key(key);
  absl::StrAppend(&body_, json);
  return *this;
}

}  // namespace postern::mailbench
