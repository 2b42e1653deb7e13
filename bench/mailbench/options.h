#pragma once

// mailbench's command line: what to run, against which loopback address, how
// many clients, and the bounds that make every run stop by itself.

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "bench/mailbench/digests.h"

namespace postern::mailbench {

enum class Scenario { kLogin, kBulk, kIdle, kPing };
enum class Proto { kImap, kPop3 };

const char* ScenarioName(Scenario s);
const char* ProtoName(Proto p);

struct Options {
  Scenario scenario = Scenario::kLogin;
  Proto proto = Proto::kImap;
  std::string host = "127.0.0.1";
  uint16_t port = 0;
  sockaddr_storage address{};  // host:port, always loopback
  socklen_t address_length = 0;
  bool tls = false;
  bool resume = false;  // offer TLS session resumption (off: full handshakes)
  std::string sni = "localhost";

  std::string user = "user1";  // "%d" is replaced by 1..users, round robin
  uint32_t users = 1;
  std::string password = "demo";

  uint32_t threads = 1;
  uint32_t clients = 1;       // concurrent sessions (idle: sessions held)
  uint64_t sessions = 0;      // total sessions (0: scenario default)
  uint32_t concurrency = 64;  // idle: sessions being set up at once
  uint64_t pings = 1000;      // ping: NOOPs per session
  uint64_t messages = 0;      // bulk: messages per session (0: whole mailbox)
  // bulk: expected SHA-256 of every message (--sha256 FILE); null: no check.
  std::shared_ptr<const DigestTable> digests;
  std::string digests_path;
  double think_s = 0;    // login/bulk/ping: pause after SELECT/STAT (x 0.5..1.5 per session)
  double ramp_s = 0;     // the first --clients sessions start spread over this many seconds
  double run_for_s = 0;  // no session starts after this many seconds (0: count by --sessions)
  // Source addresses: bind to source + (session index mod sources) before
  // connecting (IPv4 loopback only; sources 0: let the kernel choose).
  in_addr source{};
  uint32_t sources = 0;
  double hold_s = 2.0;        // idle: seconds to hold every session once all are idle
  double timeout_s = 15.0;    // a reply (or connect, handshake) taking longer fails the session
  double duration_s = 300.0;  // hard cap on the whole run
  std::vector<int> pids;      // processes whose CPU time and memory to read from /proc
  std::string label;          // echoed in the JSON line
  bool json_only = false;
};

// Parses argv. Refuses any target that is not a numeric loopback address
// (127.0.0.0/8 or ::1) and counts or times outside fixed bounds.
absl::StatusOr<Options> ParseOptions(int argc, char** argv);

std::string Usage();

}  // namespace postern::mailbench
