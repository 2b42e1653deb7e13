#include "proxy/event_log.h"

#include <time.h>

#include <atomic>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "proxy/log_text.h"
#include "spdlog/details/log_msg.h"
#include "spdlog/formatter.h"
#include "spdlog/sinks/stdout_sinks.h"

namespace postern {
namespace {

std::atomic<bool> g_json{true};

// An event's payload starts with this byte (never in anything else logged:
// every peer-chosen byte below 0x20 is escaped); the formatter then writes
// the fields as they are.
constexpr char kEventMark = '\x1e';

// The length of the well-formed UTF-8 sequence at s[i] (not overlong, not a
// surrogate, at most U+10FFFF), or 0.
size_t Utf8Length(absl::string_view s, size_t i) {
  const auto b = [&](size_t k) { return static_cast<unsigned char>(s[i + k]); };
  const unsigned char c = b(0);
  const size_t left = s.size() - i;
  auto cont = [&](size_t k) { return k < left && (b(k) & 0xc0) == 0x80; };
  if (c >= 0xc2 && c <= 0xdf) return cont(1) ? 2 : 0;
  if (c >= 0xe0 && c <= 0xef) {
    if (!cont(1) || !cont(2)) return 0;
    if (c == 0xe0 && b(1) < 0xa0) return 0;   // overlong
    if (c == 0xed && b(1) >= 0xa0) return 0;  // surrogates
    return 3;
  }
  if (c >= 0xf0 && c <= 0xf4) {
    if (!cont(1) || !cont(2) || !cont(3)) return 0;
    if (c == 0xf0 && b(1) < 0x90) return 0;   // overlong
    if (c == 0xf4 && b(1) >= 0x90) return 0;  // above U+10FFFF
    return 4;
  }
  return 0;
}

class JsonFormatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    using namespace std::chrono;
    const auto t = msg.time;
    const time_t secs = system_clock::to_time_t(t);
    const auto ms = duration_cast<milliseconds>(t.time_since_epoch()).count() % 1000;
    struct tm tm {};
    gmtime_r(&secs, &tm);
    char ts[40];
    const int n = std::snprintf(ts, sizeof(ts), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
                                tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                                tm.tm_sec, static_cast<int>(ms));
    const absl::string_view payload(msg.payload.data(), msg.payload.size());
    // The names log.level uses ("warn", not spdlog's "warning").
    static constexpr absl::string_view kLevels[] = {"trace", "debug",    "info", "warn",
                                                    "error", "critical", "off"};
    const absl::string_view level = kLevels[static_cast<size_t>(msg.level) % 7];
    std::string line =
        absl::StrCat("{\"ts\":\"", absl::string_view(ts, n > 0 ? n : 0), "\",\"level\":\"",
                     absl::string_view(level.data(), level.size()), "\",");
    if (!payload.empty() && payload[0] == kEventMark) {
      absl::StrAppend(&line, payload.substr(1), "}\n");
    } else {
      absl::StrAppend(&line, "\"msg\":\"", JsonEscape(payload, 16384), "\"}\n");
    }
    dest.append(line.data(), line.data() + line.size());
  }
  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<JsonFormatter>();
  }
};

}  // namespace

std::string JsonEscape(absl::string_view text, size_t max) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(text.size() < max ? text.size() + 8 : max + 8);
  for (size_t i = 0; i < text.size();) {
    if (i >= max) {
      out.append("...");
      break;
    }
    const auto c = static_cast<unsigned char>(text[i]);
    if (c >= 0x20 && c < 0x7f) {
      if (c == '"' || c == '\\') out.push_back('\\');
      out.push_back(static_cast<char>(c));
      ++i;
      continue;
    }
    if (c < 0x20 || c == 0x7f) {
      out.append("\\u00");
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 0xf]);
      ++i;
      continue;
    }
    const size_t len = Utf8Length(text, i);
    // U+2028 / U+2029 end lines in some JavaScript readers; C1 controls
    // (U+0080..U+009F) move terminals.
    const bool c1 = len == 2 && c == 0xc2 && static_cast<unsigned char>(text[i + 1]) < 0xa0;
    const bool separator = len == 3 && c == 0xe2 &&
                           static_cast<unsigned char>(text[i + 1]) == 0x80 &&
                           (static_cast<unsigned char>(text[i + 2]) & 0xfe) == 0xa8;
    if (len == 0 || c1 || separator) {
      // Not UTF-8 (or a control): the byte stays visible as text.
      out.append("\\\\x");
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 0xf]);
      ++i;
      continue;
    }
    out.append(text.data() + i, len);
    i += len;
  }
  return out;
}

void InstallLogger(bool json) {
  g_json.store(json);
  auto logger = spdlog::get("postern");
  if (logger == nullptr) {
    logger = spdlog::stdout_logger_mt("postern");
    spdlog::set_default_logger(logger);
  }
  if (json) {
    logger->set_formatter(std::make_unique<JsonFormatter>());
  } else {
    logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %l %v");
  }
  // A crash or a kill loses no finished line; lines are written whole.
  logger->flush_on(spdlog::level::trace);
}

bool LogIsJson() { return g_json.load(std::memory_order_relaxed); }

LogEvent::LogEvent(const char* name, spdlog::level::level_enum level)
    : level_(level), on_(spdlog::should_log(level)), json_(LogIsJson()) {
  if (!on_) return;
  if (json_) {
    out_.push_back(kEventMark);
    absl::StrAppend(&out_, "\"event\":\"", name, "\"");
  } else {
    out_ = name;
    for (char& c : out_) {
      if (c == '_') c = ' ';
    }
    out_.push_back(':');
  }
}

LogEvent& LogEvent::Str(absl::string_view key, absl::string_view value) {
  if (!on_) return *this;
  if (json_) {
    absl::StrAppend(&out_, ",\"", key, "\":\"", JsonEscape(value), "\"");
  } else {
    absl::StrAppend(&out_, " ", key, "=", value.empty() ? "-" : LogSafe(value, 4096));
  }
  return *this;
}

LogEvent& LogEvent::Safe(absl::string_view key, absl::string_view value) {
  if (!on_) return *this;
  if (json_) {
    absl::StrAppend(&out_, ",\"", key, "\":\"", JsonEscape(value, 1024), "\"");
  } else {
    absl::StrAppend(&out_, " ", key, "=", value.empty() ? "-" : LogSafe(value));
  }
  return *this;
}

LogEvent& LogEvent::Quoted(absl::string_view key, absl::string_view value, size_t max) {
  if (!on_) return *this;
  if (json_) {
    absl::StrAppend(&out_, ",\"", key, "\":\"", JsonEscape(value, max), "\"");
  } else {
    absl::StrAppend(&out_, " ", key, "=\"", LogQuoted(value, max * 4), "\"");
  }
  return *this;
}

LogEvent& LogEvent::Bare(absl::string_view key, absl::string_view text) {
  if (!on_) return *this;
  if (json_) {
    absl::StrAppend(&out_, ",\"", key, "\":", text);
  } else {
    absl::StrAppend(&out_, " ", key, "=", text);
  }
  return *this;
}

LogEvent& LogEvent::Num(absl::string_view key, int64_t value) {
  return on_ ? Bare(key, absl::StrCat(value)) : *this;
}

LogEvent& LogEvent::Num(absl::string_view key, uint64_t value) {
  return on_ ? Bare(key, absl::StrCat(value)) : *this;
}

LogEvent& LogEvent::Flag(absl::string_view key, bool value) {
  return Bare(key, value ? "true" : "false");
}

void LogEvent::Emit() {
  if (on_) spdlog::log(level_, "{}", out_);
}

}  // namespace postern
