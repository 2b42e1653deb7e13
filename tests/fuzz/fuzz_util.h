#pragma once

// Shared by the libFuzzer targets of tests/fuzz/: a reader that turns the
// fuzzer's bytes into choices (limits, split points, operations), a small
// PRNG for split points seeded from those bytes, and a check that aborts with
// a message. libFuzzer and the corpus replay driver (replay_main.cc) both
// report an abort as a crash, with the input that caused it.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

// Checks an invariant of the code under test. Always on (NDEBUG or not).
#define POSTERN_FUZZ_CHECK(cond)                                          \
  do {                                                                    \
    if (!(cond)) ::postern::fuzz::CheckFailed(__FILE__, __LINE__, #cond); \
  } while (0)

namespace postern::fuzz {

[[noreturn]] inline void CheckFailed(const char* file, int line, const char* what) {
  std::fprintf(stderr, "%s:%d: fuzz check failed: %s\n", file, line, what);
  std::abort();
}

// The fuzzer's bytes, consumed from the front. Once they run out every
// choice is 0 and every byte string is empty, so any input is a valid
// program.
class FuzzInput {
 public:
  FuzzInput(const uint8_t* data, size_t size) : rest_(reinterpret_cast<const char*>(data), size) {}

  bool empty() const { return rest_.empty(); }
  size_t size() const { return rest_.size(); }

  uint8_t Byte() {
    if (rest_.empty()) return 0;
    const auto b = static_cast<uint8_t>(rest_.front());
    rest_.remove_prefix(1);
    return b;
  }
  // Big-endian. (The bytes are taken in separate statements: the order in
  // which the operands of | are evaluated is unspecified, and GCC's replay
  // must read an input the way clang's fuzzer did.)
  uint16_t U16() {
    const uint16_t high = Byte();
    return static_cast<uint16_t>(high << 8 | Byte());
  }
  uint32_t U32() {
    const uint32_t high = U16();
    return high << 16 | U16();
  }
  // A value in [lo, hi] (hi - lo < 65536).
  size_t Range(size_t lo, size_t hi) {
    const size_t span = hi - lo + 1;
    return lo + (span <= 256 ? Byte() % span : U16() % span);
  }
  bool Bool() { return (Byte() & 1) != 0; }
  // Up to n bytes.
  absl::string_view Bytes(size_t n) {
    const absl::string_view out = rest_.substr(0, n);
    rest_.remove_prefix(out.size());
    return out;
  }
  // Everything left.
  absl::string_view Rest() { return Bytes(rest_.size()); }

 private:
  absl::string_view rest_;
};

// xorshift32: split points that the fuzzer steers through the seed without
// spending input bytes on every cut.
class SplitRng {
 public:
  explicit SplitRng(uint32_t seed) : state_(seed == 0 ? 0x9e3779b9u : seed) {}
  uint32_t Next() {
    state_ ^= state_ << 13;
    state_ ^= state_ >> 17;
    state_ ^= state_ << 5;
    return state_;
  }
  // In [1, max] (max >= 1).
  size_t Chunk(size_t max) { return 1 + Next() % max; }

 private:
  uint32_t state_;
};

// Cuts `data` into pieces of 1..max_chunk bytes chosen by `rng`.
inline std::vector<absl::string_view> RandomCuts(absl::string_view data, SplitRng& rng,
                                                 size_t max_chunk) {
  std::vector<absl::string_view> out;
  while (!data.empty()) {
    const size_t n = std::min(rng.Chunk(max_chunk), data.size());
    out.push_back(data.substr(0, n));
    data.remove_prefix(n);
  }
  return out;
}

// Every byte on its own.
inline std::vector<absl::string_view> ByteCuts(absl::string_view data) {
  std::vector<absl::string_view> out;
  for (size_t i = 0; i < data.size(); ++i) out.push_back(data.substr(i, 1));
  return out;
}

// True when `view` is empty or lies inside `outer`.
inline bool Inside(absl::string_view view, absl::string_view outer) {
  if (view.empty()) return true;
  return view.data() >= outer.data() && view.data() + view.size() <= outer.data() + outer.size();
}

}  // namespace postern::fuzz
