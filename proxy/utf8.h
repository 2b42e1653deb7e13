#pragma once

// UTF-8 checks for text that leaves the process in formats that require
// UTF-8 (JSON in the admin API, label values in /metrics) while its bytes
// may have come from a client (user names in session lists).

#include <cstddef>
#include <string>

#include "absl/strings/string_view.h"

namespace postern {

// U+FFFD REPLACEMENT CHARACTER in UTF-8.
inline constexpr absl::string_view kUtf8Replacement = "\xEF\xBF\xBD";

// The length (1 to 4) of the well-formed UTF-8 sequence at the start of `in`
// (Unicode 15, table 3-7: no overlong forms, no surrogates, nothing above
// U+10FFFF), or 0 when `in` is empty or does not start with one. `*bad`, when
// given and the result is 0, is set to the length of the maximal subpart
// (at least 1 for a non-empty `in`): the bytes one U+FFFD stands for under
// the "maximal subpart" practice of Unicode section 3.9 (also WHATWG's
// decoder), so that a stray byte never swallows the valid text after it.
size_t Utf8SequenceLength(absl::string_view in, size_t* bad = nullptr);

// Appends `in` to `*out` with every ill-formed part replaced by U+FFFD.
void AppendUtf8Sanitized(std::string* out, absl::string_view in);

// True when all of `in` is well-formed UTF-8.
bool IsValidUtf8(absl::string_view in);

}  // namespace postern
