#include "proxy/utf8.h"

#include <cstdint>

namespace postern {

size_t Utf8SequenceLength(absl::string_view in, size_t* bad) {
  if (in.empty()) {
    if (bad != nullptr) *bad = 0;
    return 0;
  }
  const auto b = [&](size_t i) { return static_cast<uint8_t>(in[i]); };
  const uint8_t c = b(0);
  if (c < 0x80) return 1;
  // Table 3-7: the lead byte fixes the length and the range of the second
  // byte; every later byte is 80..BF.
  size_t len = 0;
  uint8_t lo = 0x80, hi = 0xBF;
  if (c >= 0xC2 && c <= 0xDF) {
    len = 2;
  } else if (c == 0xE0) {
    len = 3;
    lo = 0xA0;
  } else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) {
    len = 3;
  } else if (c == 0xED) {
    len = 3;
    hi = 0x9F;  // no surrogates
  } else if (c == 0xF0) {
    len = 4;
    lo = 0x90;
  } else if (c >= 0xF1 && c <= 0xF3) {
    len = 4;
  } else if (c == 0xF4) {
    len = 4;
    hi = 0x8F;  // nothing above U+10FFFF
  } else {
    if (bad != nullptr) *bad = 1;  // 80..C1, F5..FF: never a lead byte
    return 0;
  }
  size_t i = 1;
  for (; i < len && i < in.size(); ++i) {
    const uint8_t x = b(i);
    const uint8_t l = i == 1 ? lo : 0x80;
    const uint8_t h = i == 1 ? hi : 0xBF;
    if (x < l || x > h) break;
  }
  if (i == len) return len;
  if (bad != nullptr) *bad = i;  // the lead byte and the continuation bytes that fit
  return 0;
}

void AppendUtf8Sanitized(std::string* out, absl::string_view in) {
  size_t start = 0;  // the valid run not yet copied
  size_t i = 0;
  while (i < in.size()) {
    if (static_cast<uint8_t>(in[i]) < 0x80) {
      ++i;
      continue;
    }
    size_t bad = 0;
    const size_t n = Utf8SequenceLength(in.substr(i), &bad);
    if (n > 0) {
      i += n;
      continue;
    }
    out->append(in.data() + start, i - start);
    out->append(kUtf8Replacement.data(), kUtf8Replacement.size());
    i += bad;
    start = i;
  }
  out->append(in.data() + start, in.size() - start);
}

bool IsValidUtf8(absl::string_view in) {
  size_t i = 0;
  while (i < in.size()) {
    if (static_cast<uint8_t>(in[i]) < 0x80) {
      ++i;
      continue;
    }
    const size_t n = Utf8SequenceLength(in.substr(i));
    if (n == 0) return false;
    i += n;
  }
  return true;
}

}  // namespace postern
