#include "bench/mailbench/digests.h"

#include <fstream>
#include <sstream>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace postern::mailbench {
namespace {

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

absl::StatusOr<DigestTable> DigestTable::Parse(absl::string_view text) {
  DigestTable t;
  int lineno = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++lineno;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line[0] == '#') continue;
    std::vector<absl::string_view> f = absl::StrSplit(line, ' ', absl::SkipEmpty());
    uint64_t number = 0;
    if (f.size() != 3 || !absl::SimpleAtoi(f[1], &number) || number == 0 || f[2].size() != 64) {
      return absl::InvalidArgumentError(
          absl::StrCat("line ", lineno, ": expected 'USER NUMBER SHA256HEX'"));
    }
    Sha256 d{};
    for (size_t i = 0; i < d.size(); ++i) {
      int hi = HexValue(f[2][2 * i]);
      int lo = HexValue(f[2][2 * i + 1]);
      if (hi < 0 || lo < 0) {
        return absl::InvalidArgumentError(absl::StrCat("line ", lineno, ": bad hex digit"));
      }
      d[i] = static_cast<uint8_t>(hi * 16 + lo);
    }
    if (!t.digests_.emplace(std::make_pair(std::string(f[0]), number), d).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("line ", lineno, ": ", f[0], " message ", number, " listed twice"));
    }
  }
  if (t.digests_.empty()) return absl::InvalidArgumentError("no digests");
  return t;
}

absl::StatusOr<DigestTable> DigestTable::Load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read '", path, "'"));
  std::stringstream ss;
  ss << in.rdbuf();
  absl::StatusOr<DigestTable> t = Parse(ss.str());
  if (!t.ok()) return absl::InvalidArgumentError(absl::StrCat(path, ": ", t.status().message()));
  return t;
}

const Sha256* DigestTable::Find(absl::string_view user, uint64_t number) const {
  auto it = digests_.find(std::make_pair(std::string(user), number));
  return it == digests_.end() ? nullptr : &it->second;
}

std::string HexOf(const Sha256& d) {
  static const char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(64);
  for (uint8_t b : d) {
    out += kHex[b >> 4];
    out += kHex[b & 15];
  }
  return out;
}

}  // namespace postern::mailbench
