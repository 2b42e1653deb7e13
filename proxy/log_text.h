#pragma once

// Client-controlled text in log lines. Everything a client can choose (user
// names, ID values, SASL data, backend error text echoing it) goes through
// LogSafe before it reaches a log line, so that it can never end a line,
// start a forged one, add a forged key=value field, or smuggle terminal
// escapes: only printable ASCII other than ' ', '\' and '"' passes; every
// other byte is written \xHH. LogQuoted is for values written inside
// "...": spaces pass there. Long values are cut (with "...").

#include <cstddef>
#include <string>

#include "absl/strings/string_view.h"
#include "spdlog/common.h"

namespace postern {

std::string LogSafe(absl::string_view text, size_t max = 256);
std::string LogQuoted(absl::string_view text, size_t max = 512);

// Logs `message` as a warning the first time `key` is seen in the process
// (a misconfiguration reported once, not on every login).
// `level`: warn unless the message is only a hint.
void LogOnce(const std::string& key, const std::string& message,
             spdlog::level::level_enum level = spdlog::level::warn);

}  // namespace postern
