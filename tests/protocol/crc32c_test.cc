#include "protocol/crc32c.h"

#include <string>

#include "gtest/gtest.h"

namespace postern {
namespace {

std::string Bytes(int first, int step) {
  std::string s;
  for (int i = 0; i < 32; ++i) s.push_back(static_cast<char>((first + step * i) & 0xFF));
  return s;
}

// RFC 3720 Appendix B.4 (the vectors RFC 4960 Appendix B points to; the RFC
// prints each CRC as the bytes on the wire, least significant first).
TEST(Crc32c, Rfc3720Vectors) {
  EXPECT_EQ(Crc32c(std::string(32, '\0')), 0x8A9136AAu);
  EXPECT_EQ(Crc32c(std::string(32, '\xFF')), 0x62A8AB43u);
  EXPECT_EQ(Crc32c(Bytes(0, 1)), 0x46DD794Eu);
  EXPECT_EQ(Crc32c(Bytes(31, -1)), 0x113FDB5Cu);
}

// The "check" value of the CRC-32C catalogue entry, and the empty message.
TEST(Crc32c, CheckValue) {
  EXPECT_EQ(Crc32c("123456789"), 0xE3069283u);
  EXPECT_EQ(Crc32c(""), 0u);
}

TEST(Crc32c, IncrementalEqualsWholeAtEverySplit) {
  const std::string data =
      std::string("The quick brown fox jumps over the lazy dog\r\n") + std::string("\0\xff", 2);
  for (size_t k = 0; k <= data.size(); ++k) {
    const uint32_t state = Crc32cUpdate(kCrc32cInit, absl::string_view(data).substr(0, k));
    EXPECT_EQ(Crc32cFinish(Crc32cUpdate(state, absl::string_view(data).substr(k))), Crc32c(data))
        << "split at " << k;
  }
}

}  // namespace
}  // namespace postern
