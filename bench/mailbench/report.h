#pragma once

// Summaries of measured times (percentiles) and a minimal JSON writer for
// the one machine-readable line mailbench prints last.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace postern::mailbench {

struct Distribution {
  uint64_t count = 0;
  double mean = 0;
  double p50 = 0;
  double p90 = 0;
  double p99 = 0;
  double max = 0;
};

// Sorts `ns` and summarizes it in units of `unit_ns` nanoseconds
// (1e6: milliseconds, 1e3: microseconds). Percentiles are nearest-rank.
Distribution Summarize(std::vector<uint64_t>& ns, double unit_ns);

// Builds one JSON object, in insertion order.
class JsonObject {
 public:
  JsonObject& Add(absl::string_view key, double value);
  JsonObject& Add(absl::string_view key, uint64_t value);
  JsonObject& Add(absl::string_view key, int value);
  JsonObject& Add(absl::string_view key, bool value);
  JsonObject& Add(absl::string_view key, absl::string_view value);
  JsonObject& Add(absl::string_view key, const char* value) {
    return Add(key, absl::string_view(value));
  }
  JsonObject& Add(absl::string_view key, const Distribution& d);
  JsonObject& AddRaw(absl::string_view key, absl::string_view json);
  std::string Build() const { return "{" + body_ + "}"; }

 private:
  void Key(absl::string_view key);
  std::string body_;
};

std::string JsonQuote(absl::string_view s);

}  // namespace postern::mailbench
