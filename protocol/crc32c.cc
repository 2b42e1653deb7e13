#include "protocol/crc32c.h"

#include <array>
#include <cstddef>

namespace postern {
namespace {

// The reflected Castagnoli polynomial (RFC 3720 section 12.1).
constexpr uint32_t kPolynomial = 0x82F63B78u;

constexpr std::array<uint32_t, 256> MakeTable() {
  std::array<uint32_t, 256> table{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t crc = i;
    for (int bit = 0; bit < 8; ++bit) crc = (crc >> 1) ^ ((crc & 1u) != 0 ? kPolynomial : 0u);
    table[i] = crc;
  }
  return table;
}

constexpr std::array<uint32_t, 256> kTable = MakeTable();

}  // namespace

uint32_t Crc32cUpdate(uint32_t state, absl::string_view data) {
  for (const char c : data) {
    state = (state >> 8) ^ kTable[(state ^ static_cast<uint8_t>(c)) & 0xFFu];
  }
  return state;
}

uint32_t Crc32c(absl::string_view data) { return Crc32cFinish(Crc32cUpdate(kCrc32cInit, data)); }

}  // namespace postern
