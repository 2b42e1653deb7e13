#pragma once

// Expected SHA-256 digests of the messages a bulk session fetches, per user
// and message number (--sha256 FILE). Each line of the file is
//
//   USER NUMBER HEX
//
// with HEX the 64-digit SHA-256 of the message as the protocol delivers it:
// the IMAP BODY[] literal's content, which is also the POP3 RETR body with
// the dot-stuffing and the final "." line removed (both have CRLF line ends).
// Empty lines and lines starting with '#' are skipped.

#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace postern::mailbench {

using Sha256 = std::array<uint8_t, 32>;

class DigestTable {
 public:
  static absl::StatusOr<DigestTable> Parse(absl::string_view text);
  static absl::StatusOr<DigestTable> Load(const std::string& path);

  // The expected digest of message `number` (1-based) of `user`, or nullptr.
  const Sha256* Find(absl::string_view user, uint64_t number) const;
  size_t size() const { return digests_.size(); }

 private:
  std::map<std::pair<std::string, uint64_t>, Sha256, std::less<>> digests_;
};

// Lowercase hex of a digest (for error messages and tests).
std::string HexOf(const Sha256& d);

}  // namespace postern::mailbench
