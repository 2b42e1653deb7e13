#include "proxy/log_text.h"

#include <mutex>

#include "absl/container/flat_hash_set.h"
#include "spdlog/spdlog.h"

namespace postern {

namespace {

std::string Escape(absl::string_view text, size_t max, bool spaces) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(text.size() < max ? text.size() : max);
  for (size_t i = 0; i < text.size(); ++i) {
    if (out.size() >= max) {
      out.append("...");
      break;
    }
    const auto c = static_cast<unsigned char>(text[i]);
    if (c > 0x20 && c < 0x7f && c != '\\' && c != '"') {
      out.push_back(static_cast<char>(c));
    } else if (c == ' ' && spaces) {
      out.push_back(static_cast<char>(c));
    } else {
      out.append("\\x");
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 0xf]);
    }
  }
  return out;
}

}  // namespace

std::string LogSafe(absl::string_view text, size_t max) { return Escape(text, max, false); }

std::string LogQuoted(absl::string_view text, size_t max) { return Escape(text, max, true); }

void LogOnce(const std::string& key, const std::string& message, spdlog::level::level_enum level) {
  static std::mutex mu;
  static absl::flat_hash_set<std::string>* seen = new absl::flat_hash_set<std::string>();
  {
    std::lock_guard<std::mutex> lock(mu);
    if (!seen->insert(key).second) return;
  }
  spdlog::log(level, "{}", message);
}

}  // namespace postern
