#pragma once

// CRC32C (Castagnoli): the checksum the PROXY protocol v2 carries in its
// PP2_TYPE_CRC32C TLV (PROXY protocol spec section 2.2.3, which refers to
// RFC 4960 Appendix B, itself taken from RFC 3720 section 12.1 and
// Appendix B.4).
//
// Reflected polynomial 0x82F63B78 (0x1EDC6F41 unreflected), initial value
// 0xFFFFFFFF, final XOR 0xFFFFFFFF. Table-driven, one byte per step: the
// headers it checks are a few hundred bytes at most.

#include <cstdint>

#include "absl/strings/string_view.h"

namespace postern {

// The CRC32C of `data`: Crc32c("123456789") == 0xE3069283.
uint32_t Crc32c(absl::string_view data);

// Incremental form, for a message in pieces: start from kCrc32cInit, feed
// every piece in order with Crc32cUpdate, finish with Crc32cFinish.
//   Crc32cFinish(Crc32cUpdate(Crc32cUpdate(kCrc32cInit, a), b)) == Crc32c(a + b)
inline constexpr uint32_t kCrc32cInit = 0xFFFFFFFFu;
uint32_t Crc32cUpdate(uint32_t state, absl::string_view data);
inline uint32_t Crc32cFinish(uint32_t state) { return state ^ 0xFFFFFFFFu; }

}  // namespace postern
