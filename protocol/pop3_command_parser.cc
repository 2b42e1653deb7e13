#include "protocol/pop3_command_parser.h"

#include <algorithm>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"

namespace postern {
namespace {

// VCHAR = %x21-7E (RFC 5234), the keyword's characters (RFC 2449 section 3).
bool IsVchar(char c) { return c >= 0x21 && c <= 0x7e; }

// Control characters (and DEL); 8-bit bytes are not controls here.
bool IsCtl(char c) {
  const auto u = static_cast<unsigned char>(c);
  return u < 0x20 || u == 0x7f;
}

}  // namespace

absl::StatusOr<Pop3Command> ParsePop3Command(absl::string_view line) {
  if (line.find('\0') != absl::string_view::npos) {
    return absl::InvalidArgumentError("NUL in command");
  }
  const size_t end = std::min(line.find(' '), line.size());
  const absl::string_view keyword = line.substr(0, end);
  if (keyword.size() < 3 || keyword.size() > 4 ||
      !std::all_of(keyword.begin(), keyword.end(), IsVchar)) {
    return absl::InvalidArgumentError("Unknown command");
  }
  Pop3Command cmd;
  cmd.name = absl::AsciiStrToUpper(keyword);
  absl::string_view rest = line.substr(end);

  if (cmd.name == "PASS") {
    // Exactly one space separates the keyword from the password; the rest is
    // the password as typed (RFC 1939 section 7).
    if (!rest.empty()) rest.remove_prefix(1);
    if (rest.find_first_of("\r\n") != absl::string_view::npos) {
      return absl::InvalidArgumentError("Invalid characters in password");
    }
    if (!rest.empty()) cmd.args.emplace_back(rest);
    return cmd;
  }

  while (!rest.empty()) {
    const size_t start = rest.find_first_not_of(' ');
    if (start == absl::string_view::npos) break;  // trailing spaces
    rest.remove_prefix(start);
    const size_t stop = std::min(rest.find(' '), rest.size());
    const absl::string_view arg = rest.substr(0, stop);
    rest.remove_prefix(stop);
    if (std::any_of(arg.begin(), arg.end(), IsCtl)) {
      return absl::InvalidArgumentError("Invalid characters in argument");
    }
    // AUTH's initial response may be as long as the line allows (RFC 5034
    // section 4); everything else is held to RFC 2449 section 4's line length.
    const bool initial_response = cmd.name == "AUTH" && cmd.args.size() == 1;
    if (arg.size() > kPop3MaxArgLength && !initial_response) {
      return absl::InvalidArgumentError("Argument too long");
    }
    if (cmd.args.size() == kPop3MaxArgs) return absl::InvalidArgumentError("Too many arguments");
    cmd.args.emplace_back(arg);
  }
  return cmd;
}

Pop3CommandReader::Pop3CommandReader(const Pop3ReaderLimits& limits)
    : limits_(limits), splitter_(limits.max_line) {}

bool Pop3CommandReader::ChargeError() {
  if (dead_) return false;
  if (errors_ >= limits_.error_budget) {
    dead_ = true;
    error_text_ = "Too many invalid commands";
    return false;
  }
  ++errors_;
  return true;
}

Pop3CommandReader::Event Pop3CommandReader::Fail(std::string text) {
  if (!ChargeError()) return Event::kFatal;
  error_text_ = std::move(text);
  return Event::kError;
}

Pop3CommandReader::Event Pop3CommandReader::Take(Buffer& buf, size_t max_line,
                                                 absl::string_view* line, size_t* consumed) {
  splitter_.set_max_line(max_line);
  switch (splitter_.Next(buf, line, consumed)) {
    case LineSplitter::Status::kNeedMore:
      buf.Drain(*consumed);
      return Event::kNeedMore;
    case LineSplitter::Status::kTooLong:
      buf.Drain(*consumed);
      return Fail("Line too long");
    case LineSplitter::Status::kLine:
      break;
  }
  return Event::kLine;  // the caller drains after it has used *line
}

Pop3CommandReader::Event Pop3CommandReader::Next(Buffer& buf) {
  if (dead_) return Event::kFatal;
  absl::string_view line;
  size_t consumed = 0;
  Event event = Take(buf, limits_.max_line, &line, &consumed);
  if (event != Event::kLine) return event;
  if (line.find('\0') != absl::string_view::npos) {
    // NUL has no place in a POP3 command (RFC 1939 section 3: printable
    // ASCII): a client sending one is broken or hostile; close.
    buf.Drain(consumed);
    dead_ = true;
    error_text_ = "NUL byte in command";
    return Event::kFatal;
  }
  absl::StatusOr<Pop3Command> cmd = ParsePop3Command(line);
  buf.Drain(consumed);
  if (!cmd.ok()) return Fail(std::string(cmd.status().message()));
  command_ = *std::move(cmd);
  return Event::kCommand;
}

Pop3CommandReader::Event Pop3CommandReader::NextLine(Buffer& buf, std::string* line) {
  if (dead_) return Event::kFatal;
  absl::string_view view;
  size_t consumed = 0;
  Event event = Take(buf, limits_.max_sasl_line, &view, &consumed);
  if (event != Event::kLine) return event;
  line->assign(view.data(), view.size());
  buf.Drain(consumed);
  return Event::kLine;
}

}  // namespace postern
