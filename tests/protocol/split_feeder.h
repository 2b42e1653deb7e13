#pragma once

// Helpers shared by the protocol tests: every way of cutting an input into
// pieces that the parsers must treat the same.

#include <cstddef>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace postern::testing {

using Chunks = std::vector<absl::string_view>;

// All the cuttings of `input` a parser test runs: whole, every split into two
// at each point, one byte at a time, and a few seeded random cuttings.
inline std::vector<Chunks> AllCuttings(absl::string_view input, uint32_t seed = 1) {
  std::vector<Chunks> out;
  out.push_back({input});
  for (size_t k = 0; k <= input.size(); ++k) {
    out.push_back({input.substr(0, k), input.substr(k)});
  }
  Chunks bytes;
  for (size_t i = 0; i < input.size(); ++i) bytes.push_back(input.substr(i, 1));
  out.push_back(bytes);
  std::mt19937 rng(seed);
  for (int r = 0; r < 20; ++r) {
    Chunks c;
    size_t pos = 0;
    while (pos < input.size()) {
      size_t n = std::uniform_int_distribution<size_t>(1, 9)(rng);
      n = std::min(n, input.size() - pos);
      c.push_back(input.substr(pos, n));
      pos += n;
    }
    out.push_back(c);
  }
  return out;
}

inline std::string Describe(const Chunks& chunks) {
  std::string s = std::to_string(chunks.size()) + " chunks:";
  for (absl::string_view c : chunks) s += " " + std::to_string(c.size());
  return s;
}

}  // namespace postern::testing
