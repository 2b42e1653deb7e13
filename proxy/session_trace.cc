#include "proxy/session_trace.h"

#include <algorithm>

#include "proxy/event_log.h"

namespace postern {

void SessionTrace::PreloginClient(absl::string_view bytes) {
  std::string masked;
  masker_.Client(bytes, &masked);
  if (!masked.empty()) Keep(true, std::move(masked));
}

void SessionTrace::PreloginServer(absl::string_view bytes) {
  std::string text;
  masker_.Server(bytes, &text);
  if (!text.empty()) Keep(false, std::move(text));
}

void SessionTrace::Keep(bool from_client, std::string text) {
  if (active_) {
    Write(from_client, text);
    return;
  }
  if (kept_bytes_ + text.size() > kMaxKept) {
    kept_cut_ = true;
    return;
  }
  kept_bytes_ += text.size();
  kept_.emplace_back(from_client, std::move(text));
}

void SessionTrace::Activate(absl::string_view user) {
  if (active_) return;
  active_ = true;
  user_ = std::string(user);
  LogEvent("trace_start").Str("session", session_).Safe("user", user_).Emit();
  for (const auto& [from_client, text] : kept_) Write(from_client, text);
  if (kept_cut_) {
    LogEvent("trace_cut")
        .Str("session", session_)
        .Str("detail", "pre-login dialogue longer than kept")
        .Emit();
  }
  kept_.clear();
  kept_.shrink_to_fit();
}

void SessionTrace::Relayed(bool from_client, const Buffer& bytes) {
  if (!active_) return;
  bytes.ForEachSlice([&](absl::string_view s) { Relayed(from_client, s); });
}

void SessionTrace::RelayedFrom(bool from_client, const Buffer& bytes, size_t offset) {
  if (!active_) return;
  bytes.ForEachSlice([&](absl::string_view s) {
    if (offset >= s.size()) {
      offset -= s.size();
      return;
    }
    Relayed(from_client, s.substr(offset));
    offset = 0;
  });
}

void SessionTrace::Relayed(bool from_client, absl::string_view bytes) {
  if (active_) Write(from_client, bytes);
}

void SessionTrace::Write(bool from_client, absl::string_view text) {
  const int d = from_client ? 1 : 0;
  while (!text.empty() && !cut_[d]) {
    if (written_[d] >= kMaxBytes) {
      cut_[d] = true;
      LogEvent("trace_cut")
          .Str("session", session_)
          .Str("dir", from_client ? "client" : "server")
          .Num("bytes", written_[d])
          .Emit();
      return;
    }
    // Never past kMaxBytes: the last event before the cut is shortened.
    const size_t n =
        static_cast<size_t>(std::min<uint64_t>({text.size(), kChunk, kMaxBytes - written_[d]}));
    LogEvent("trace")
        .Str("session", session_)
        .Safe("user", user_)
        .Str("dir", from_client ? "client" : "server")
        .Quoted("data", text.substr(0, n), kChunk)
        .Emit();
    written_[d] += n;
    text.remove_prefix(n);
  }
}

}  // namespace postern
