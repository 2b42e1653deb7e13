#pragma once

// The raw protocol trace of one session whose user is named in
// log.trace_users: every byte both ways, as "trace" log events (dir client
// or server), for debugging a client's problem. Before login the dialogue
// goes through a TraceMasker (protocol/trace_masker.h: passwords, SASL
// responses and their literals become "***") and is kept, bounded, until a
// login names the user: only then is it written, so sessions of other users
// leave nothing. After login the relayed bytes are written as they pass
// (the relay does not splice a traced session). A session writes at most
// kMaxBytes each way; past that one event says the trace was cut.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "protocol/buffer.h"
#include "protocol/trace_masker.h"

namespace postern {

class SessionTrace {
 public:
  static constexpr size_t kMaxKept = 16 * 1024;      // before login, while the user is unknown
  static constexpr uint64_t kMaxBytes = 8ull << 20;  // written per direction
  static constexpr size_t kChunk = 4096;             // bytes per event

  SessionTrace(std::string session, bool imap) : session_(std::move(session)), masker_(imap) {}

  // Pre-login: what the client sent and what Postern answered.
  void PreloginClient(absl::string_view bytes);
  void PreloginServer(absl::string_view bytes);
  // A login named `user`: from now on everything is written (the kept
  // pre-login dialogue first).
  void Activate(absl::string_view user);
  bool active() const { return active_; }
  // After login: relayed bytes (already plain text: after TLS).
  void Relayed(bool from_client, const Buffer& bytes);
  void Relayed(bool from_client, absl::string_view bytes);
  // The bytes of `bytes` from `offset` on (those before were written).
  void RelayedFrom(bool from_client, const Buffer& bytes, size_t offset);

 private:
  void Keep(bool from_client, std::string text);
  void Write(bool from_client, absl::string_view text);

  const std::string session_;
  TraceMasker masker_;
  std::string user_;
  bool active_ = false;
  std::vector<std::pair<bool, std::string>> kept_;
  size_t kept_bytes_ = 0;
  bool kept_cut_ = false;
  uint64_t written_[2] = {0, 0};  // server, client
  bool cut_[2] = {false, false};
};

}  // namespace postern
