#include "routing/hash64.h"

#include <string>

#include "gtest/gtest.h"

namespace postern {
namespace {

// Known answers of XXH64. The short strings' values are the ones published
// with xxHash; all of them agree with Debian's libxxhash 0.8.1 (XXH64()).
TEST(XxHash64, KnownAnswers) {
  EXPECT_EQ(XxHash64("", 0), 0xEF46DB3751D8E999ull);
  EXPECT_EQ(XxHash64("a", 0), 0xD24EC4F1A98C6E5Bull);
  EXPECT_EQ(XxHash64("abc", 0), 0x44BC2CF5AD770999ull);
  EXPECT_EQ(XxHash64("message digest", 0), 0x066ED728FCEEB3BEull);
  EXPECT_EQ(XxHash64("abcdefghijklmnopqrstuvwxyz", 0), 0xCFE1F278FA89835Cull);
  EXPECT_EQ(XxHash64("Nobody inspects the spammish repetition", 0), 0xFBCEA83C8A378BF1ull);
  EXPECT_EQ(XxHash64("alice@example.com", 0), 0xC21EB846CC96C11Eull);
  EXPECT_EQ(XxHash64("example.com", 0), 0x2883BA7DC9AA3289ull);
}

// xxHash's own sanity buffer (xxhsum's "sanityBuffer": byte i is the top
// byte of a 64-bit product sequence) at lengths that take every path of
// the algorithm (< 4, 4..7, 8..31, exactly 32, several stripes plus tails),
// with seed 0 and with seed PRIME32 = 2654435761.
TEST(XxHash64, SanityBuffer) {
  std::string buf;
  uint64_t gen = 2654435761u;
  for (int i = 0; i < 2367; ++i) {
    buf.push_back(static_cast<char>(gen >> 56));
    gen *= 11400714785074694797ull;
  }
  const struct {
    size_t len;
    uint64_t seed0;
    uint64_t seed_prime;
  } cases[] = {
      {0, 0xEF46DB3751D8E999ull, 0xAC75FDA2929B17EFull},
      {1, 0xE934A84ADB052768ull, 0x5014607643A9B4C3ull},
      {4, 0x9136A0DCA57457EEull, 0xCAAB286BD8E9FDB5ull},
      {8, 0xCDBCF538E71D1348ull, 0xFE0C047A5353CDACull},
      {14, 0x8282DCC4994E35C8ull, 0xC3BD6BF63DEB6DF0ull},
      {32, 0x18B216492BB44B70ull, 0xB3F33BDF93ADE409ull},
      {222, 0xB641AE8CB691C174ull, 0x20CB8AB7AE10C14Aull},
      {2367, 0xA82418DDEC0EA581ull, 0xA36A93C18052673Aull},
  };
  for (const auto& c : cases) {
    const absl::string_view data = absl::string_view(buf).substr(0, c.len);
    EXPECT_EQ(XxHash64(data, 0), c.seed0) << "len " << c.len;
    EXPECT_EQ(XxHash64(data, 2654435761u), c.seed_prime) << "len " << c.len;
  }
}

TEST(SplitMix64, KnownOutputs) {
  uint64_t state = 0;
  EXPECT_EQ(SplitMix64(&state), 0xE220A8397B1DCDAFull);
  EXPECT_EQ(SplitMix64(&state), 0x6E789E6AA1B965F4ull);
  EXPECT_EQ(SplitMix64(&state), 0x06C45D188009454Full);
  EXPECT_EQ(state, 3 * 0x9E3779B97F4A7C15ull);
}

}  // namespace
}  // namespace postern
