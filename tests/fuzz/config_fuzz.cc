// The YAML configuration loader on arbitrary text: ParseConfig(yaml,
// "fuzz.yaml").
//
// Checks: it never crashes or throws; every error names the file
// ("fuzz.yaml:" then the line and the key); an accepted configuration keeps
// the rules the loader promises (at least one listener and backend, routing
// indices in range, watermarks ordered, limits and names within bounds).
//
// Relative tls.certificate / tls.key paths resolve against the directory of
// "fuzz.yaml", i.e. the working directory; the loader only opens and fstats
// such files, and run.sh starts the fuzzer in a scratch directory.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "proxy/config.h"
#include "tests/fuzz/fuzz_util.h"

namespace postern::fuzz {
namespace {

bool IsToken(const std::string& s) {
  if (s.empty() || s.size() > 255) return false;
  for (char c : s) {
    if (c <= 0x20 || c >= 0x7f) return false;
  }
  return true;
}

void Check(const Config& c) {
  POSTERN_FUZZ_CHECK(c.source == "fuzz.yaml");
  POSTERN_FUZZ_CHECK(c.workers >= 0 && c.workers <= 256);
  POSTERN_FUZZ_CHECK(IsToken(c.hostname));
  POSTERN_FUZZ_CHECK(!c.listeners.empty());
  bool tls_needed = false;
  for (const ListenerConfig& l : c.listeners) {
    POSTERN_FUZZ_CHECK(IsToken(l.name));
    POSTERN_FUZZ_CHECK(l.backlog >= 1 && l.backlog <= 65535);
    POSTERN_FUZZ_CHECK(l.address.length > 0 && !l.address.text.empty());
    tls_needed = tls_needed || l.tls != TlsMode::kNone;
  }
  POSTERN_FUZZ_CHECK(c.tls_needed == tls_needed);
  if (tls_needed) POSTERN_FUZZ_CHECK(!c.tls.certificate.empty() && !c.tls.key.empty());
  POSTERN_FUZZ_CHECK(c.tls.min_version == "1.2" || c.tls.min_version == "1.3");
  POSTERN_FUZZ_CHECK(!c.backends.empty());
  for (const BackendConfig& b : c.backends) {
    POSTERN_FUZZ_CHECK(IsToken(b.name));
    POSTERN_FUZZ_CHECK(b.imap_port >= 1 && b.pop3_port >= 1);
    POSTERN_FUZZ_CHECK(PortOf(b.imap) == b.imap_port && PortOf(b.pop3) == b.pop3_port);
  }
  POSTERN_FUZZ_CHECK(c.default_backend < c.backends.size());
  for (const auto& [user, index] : c.user_backends) {
    POSTERN_FUZZ_CHECK(!user.empty());
    POSTERN_FUZZ_CHECK(index < c.backends.size());
  }
  POSTERN_FUZZ_CHECK(c.limits.max_line >= 512 && c.limits.max_line <= (size_t{1} << 30));
  POSTERN_FUZZ_CHECK(c.limits.max_prelogin_literal <= (size_t{1} << 30));
  POSTERN_FUZZ_CHECK(c.limits.error_budget >= 1 && c.limits.max_auth_attempts >= 1);
  POSTERN_FUZZ_CHECK(c.limits.relay_low_watermark < c.limits.relay_high_watermark);
  for (const TimeoutsConfig::Ms ms :
       {c.timeouts.login, c.timeouts.backend_connect, c.timeouts.backend_login,
        c.timeouts.imap_idle, c.timeouts.pop3_idle, c.timeouts.shutdown_grace}) {
    POSTERN_FUZZ_CHECK(ms.count() > 0);
  }
}

}  // namespace
}  // namespace postern::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string yaml(reinterpret_cast<const char*>(data), size);
  const absl::StatusOr<std::shared_ptr<const postern::Config>> config =
      postern::ParseConfig(yaml, "fuzz.yaml");
  if (config.ok()) {
    POSTERN_FUZZ_CHECK(*config != nullptr);
    postern::fuzz::Check(**config);
  } else {
    POSTERN_FUZZ_CHECK(absl::IsInvalidArgument(config.status()));
    POSTERN_FUZZ_CHECK(absl::StartsWith(config.status().message(), "fuzz.yaml:"));
  }
  return 0;
}
