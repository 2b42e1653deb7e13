#pragma once

// Helpers shared by the files of tls/ (not for use outside it).

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace postern::tls_internal {

// Drains BoringSSL's thread-local error queue into "lib: REASON; ...".
std::string TakeErrors();

// The whole file. Errors read "<label>: <path>: <strerror>", or
// "<label>: no file given" for an empty path.
absl::StatusOr<std::string> ReadFile(absl::string_view label, const std::string& path);

}  // namespace postern::tls_internal
