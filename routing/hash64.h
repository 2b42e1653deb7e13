#pragma once

// Fixed 64-bit hash functions for routing decisions that every Postern
// instance must make alike (the shard ring): the same bytes give the same
// value on every machine, compiler and run. No std::hash, no absl::Hash
// (both may change between builds, and absl::Hash is seeded per process).

#include <cstdint>

#include "absl/strings/string_view.h"

namespace postern {

// XXH64 (xxHash, 64-bit variant), implemented from its specification
// (Yann Collet, "xxHash fast digest algorithm", doc/xxhash_spec.md, version
// 0.1.1, section "XXH64 algorithm description"). Little-endian input reads,
// whatever the host. XxHash64("", 0) == 0xEF46DB3751D8E999.
uint64_t XxHash64(absl::string_view data, uint64_t seed = 0);

// One step of SplitMix64 (Steele, Lea and Flood, "Fast splittable
// pseudorandom number generators", OOPSLA 2014; the constants of Vigna's
// splitmix64.c): advances *state by the golden gamma and returns the mixed
// value. From state 0 the first outputs are 0xE220A8397B1DCDAF,
// 0x6E789E6AA1B965F4, 0x06C45D188009454F.
inline uint64_t SplitMix64(uint64_t* state) {
  uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

}  // namespace postern
