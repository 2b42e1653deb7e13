#pragma once

// Postern's log: one line per record to stdout, as JSON objects (log.format:
// json, the default) or as text (log.format: text). Records that operators
// parse are events with named fields (LogEvent): session end, auth failure,
// backend health change, reload, trace. Every other line is a message.
//
//   JSON:  {"ts":"2026-12-01T16:00:00.123Z","level":"info","event":"session_end",
//           "session":"AbCd...","user":"alice",...}
//          {"ts":"...","level":"warn","msg":"redis: connection refused"}
//   text:  2026-12-01T16:00:00.123 info session end: session=AbCd... user=alice ...
//
// Values a peer chose (user names, error texts echoing them) go in through
// Safe()/Quoted(): in JSON every string is escaped (control bytes as \u00XX,
// bytes that are not UTF-8 as the text \xHH), in text they pass LogSafe /
// LogQuoted (proxy/log_text.h). Neither can end a line or forge a field.
//
// Written by hand (about 150 lines) rather than taken from a library: Debian
// has no JSON-lines sink for spdlog, and the escaping rules above (never
// fail, never emit invalid UTF-8, keep undecodable bytes visible) are ours.

#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"
#include "spdlog/spdlog.h"

namespace postern {

// Installs the process's logger (stdout, the given format) as spdlog's
// default. Safe to call again (a reload that changes log.format).
void InstallLogger(bool json);
bool LogIsJson();

// Escapes `text` as the inside of a JSON string (no quotes), at most `max`
// bytes of input ("..." marks a cut).
std::string JsonEscape(absl::string_view text, size_t max = 4096);

class LogEvent {
 public:
  // `name`: snake_case ("session_end"); the text form uses spaces.
  // `level`: the line's; below the logger's level nothing is formatted (a
  // login storm at log.level warn builds no session_end line).
  explicit LogEvent(const char* name, spdlog::level::level_enum level = spdlog::level::info);
  // Text Postern chose (config names, its own words, numbers).
  LogEvent& Str(absl::string_view key, absl::string_view value);
  // Text a peer chose: one token in text form.
  LogEvent& Safe(absl::string_view key, absl::string_view value);
  // Text a peer chose that may hold spaces: quoted in text form.
  LogEvent& Quoted(absl::string_view key, absl::string_view value, size_t max = 1024);
  LogEvent& Num(absl::string_view key, int64_t value);
  LogEvent& Num(absl::string_view key, uint64_t value);
  LogEvent& Num(absl::string_view key, int value) { return Num(key, static_cast<int64_t>(value)); }
  LogEvent& Num(absl::string_view key, uint32_t value) {
    return Num(key, static_cast<uint64_t>(value));
  }
  LogEvent& Flag(absl::string_view key, bool value);
  void Emit();

 private:
  // A number or a boolean: unquoted in both forms.
  LogEvent& Bare(absl::string_view key, absl::string_view text);
  spdlog::level::level_enum level_;
  bool on_;  // the logger takes this level
  bool json_;
  std::string out_;
};

}  // namespace postern
