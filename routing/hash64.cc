#include "routing/hash64.h"

#include <cstddef>

namespace postern {
namespace {

// xxhash_spec.md, "XXH64 algorithm description".
constexpr uint64_t kPrime1 = 0x9E3779B185EBCA87ull;
constexpr uint64_t kPrime2 = 0xC2B2AE3D27D4EB4Full;
constexpr uint64_t kPrime3 = 0x165667B19E3779F9ull;
constexpr uint64_t kPrime4 = 0x85EBCA77C2B2AE63ull;
constexpr uint64_t kPrime5 = 0x27D4EB2F165667C5ull;

inline uint64_t Rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

// Little-endian reads, byte by byte: the same on every host, and the
// compiler turns them into single loads on x86-64 and arm64.
inline uint64_t Read64(const unsigned char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = v << 8 | p[i];
  return v;
}

inline uint64_t Read32(const unsigned char* p) {
  return static_cast<uint64_t>(p[0]) | static_cast<uint64_t>(p[1]) << 8 |
         static_cast<uint64_t>(p[2]) << 16 | static_cast<uint64_t>(p[3]) << 24;
}

// Step 2: "round".
inline uint64_t Round(uint64_t acc, uint64_t lane) {
  acc += lane * kPrime2;
  acc = Rotl(acc, 31);
  return acc * kPrime1;
}

// Step 3: "mergeAccumulator".
inline uint64_t Merge(uint64_t acc, uint64_t v) {
  acc ^= Round(0, v);
  return acc * kPrime1 + kPrime4;
}

}  // namespace

uint64_t XxHash64(absl::string_view data, uint64_t seed) {
  const auto* p = reinterpret_cast<const unsigned char*>(data.data());
  const size_t len = data.size();
  const unsigned char* const end = p + len;
  uint64_t acc;
  if (len >= 32) {
    // Steps 1-3: four accumulators over 32-byte stripes.
    uint64_t v1 = seed + kPrime1 + kPrime2;
    uint64_t v2 = seed + kPrime2;
    uint64_t v3 = seed;
    uint64_t v4 = seed - kPrime1;
    const unsigned char* const limit = end - 32;
    do {
      v1 = Round(v1, Read64(p));
      v2 = Round(v2, Read64(p + 8));
      v3 = Round(v3, Read64(p + 16));
      v4 = Round(v4, Read64(p + 24));
      p += 32;
    } while (p <= limit);
    acc = Rotl(v1, 1) + Rotl(v2, 7) + Rotl(v3, 12) + Rotl(v4, 18);
    acc = Merge(acc, v1);
    acc = Merge(acc, v2);
    acc = Merge(acc, v3);
    acc = Merge(acc, v4);
  } else {
    // Special case: fewer than 32 bytes.
    acc = seed + kPrime5;
  }
  // Step 4: the input length.
  acc += static_cast<uint64_t>(len);
  // Step 5: the remaining bytes, 8, then 4, then 1 at a time.
  while (end - p >= 8) {
    acc ^= Round(0, Read64(p));
    acc = Rotl(acc, 27) * kPrime1 + kPrime4;
    p += 8;
  }
  if (end - p >= 4) {
    acc ^= Read32(p) * kPrime1;
    acc = Rotl(acc, 23) * kPrime2 + kPrime3;
    p += 4;
  }
  while (p < end) {
    acc ^= static_cast<uint64_t>(*p) * kPrime5;
    acc = Rotl(acc, 11) * kPrime1;
    ++p;
  }
  // Step 6: final mix (avalanche).
  acc ^= acc >> 33;
  acc *= kPrime2;
  acc ^= acc >> 29;
  acc *= kPrime3;
  acc ^= acc >> 32;
  return acc;
}

}  // namespace postern
