// postern: an IMAP/POP3 proxy. See README.md.
//
//   postern --config FILE         run in the foreground
//   postern --check-config FILE   validate FILE and exit (0 ok, 2 bad)

#include <cstdio>
#include <cstring>
#include <string>

#include "proxy/config.h"
#include "proxy/event_log.h"
#include "proxy/server.h"
#include "proxy/version.h"
#include "spdlog/spdlog.h"

// jemalloc reads this at start-up. Freed pages go back to the system within
// a second instead of ten: many long-lived small sessions, and bursts of
// buffers that should not stay resident after the burst. The background
// thread does the purging also while Postern is idle (without it decay only
// runs on allocation activity: bench/soak saw +11 MiB stay for 30 s).
extern "C" {
const char* malloc_conf = "dirty_decay_ms:1000,muzzy_decay_ms:0,background_thread:true";
}

namespace {

void Usage(FILE* out) {
  std::fprintf(out,
               "usage: postern --config FILE\n"
               "       postern --check-config FILE\n"
               "       postern --version\n");
}

}  // namespace

int main(int argc, char** argv) {
  std::string config_path;
  bool check_only = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if ((a == "--config" || a == "-c" || a == "--check-config") && i + 1 < argc) {
      check_only = check_only || a == "--check-config";
      config_path = argv[++i];
    } else if (a == "--version") {
      std::printf("postern %s\n", POSTERN_VERSION);
      return 0;
    } else if (a == "--help" || a == "-h") {
      Usage(stdout);
      return 0;
    } else {
      Usage(stderr);
      return 2;
    }
  }
  if (config_path.empty()) {
    Usage(stderr);
    return 2;
  }

  // Until the config is read: text to stdout (errors about the config
  // itself go to stderr, below).
  postern::InstallLogger(false);

  absl::StatusOr<std::shared_ptr<const postern::Config>> config =
      postern::LoadConfigFile(config_path);
  if (!config.ok()) {
    std::fprintf(stderr, "%s\n", std::string(config.status().message()).c_str());
    return 2;
  }
  if (check_only) {
    // Load the certificates, keys and passwd-files too: a config that
    // cannot start is bad.
    absl::Status st = postern::CheckSnapshot(**config);
    if (!st.ok()) {
      std::fprintf(stderr, "%s\n", std::string(st.message()).c_str());
      return 2;
    }
    std::printf("config ok\n");
    return 0;
  }
  postern::InstallLogger((*config)->log.json);
  // Start-up lines (listening addresses, ready) are always printed; the
  // configured level applies once the server is ready (Server::Run).
  spdlog::set_level(spdlog::level::info);

  absl::StatusOr<std::unique_ptr<postern::Server>> server =
      postern::Server::Create(config_path, *config);
  if (!server.ok()) {
    // On stderr as the config errors are (a supervisor shows it), and in
    // the log.
    std::fprintf(stderr, "%s\n", std::string(server.status().message()).c_str());
    spdlog::error("{}", std::string(server.status().message()));
    return 1;
  }
  return (*server)->Run();
}
