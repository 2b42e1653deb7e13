#include "bench/mailbench/options.h"

#include <arpa/inet.h>

#include <cstring>
#include <functional>
#include <map>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace postern::mailbench {
namespace {

absl::Status Invalid(absl::string_view flag, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat("--", flag, ": ", why));
}

template <typename T>
absl::Status ParseInt(absl::string_view flag, absl::string_view v, T lo, T hi, T* out) {
  // SimpleAtoi takes 32- and 64-bit integers only: parse wide, then bound.
  int64_t x = 0;
  if (!absl::SimpleAtoi(v, &x)) return Invalid(flag, absl::StrCat("not a number: '", v, "'"));
  if (x < static_cast<int64_t>(lo) || x > static_cast<int64_t>(hi)) {
    return Invalid(flag, absl::StrCat("must be in [", lo, ", ", hi, "]"));
  }
  *out = static_cast<T>(x);
  return absl::OkStatus();
}

absl::Status ParseSeconds(absl::string_view flag, absl::string_view v, double lo, double hi,
                          double* out) {
  double x = 0;
  if (!absl::SimpleAtod(v, &x)) return Invalid(flag, absl::StrCat("not a number: '", v, "'"));
  if (!(x >= lo && x <= hi)) return Invalid(flag, absl::StrCat("must be in [", lo, ", ", hi, "]"));
  *out = x;
  return absl::OkStatus();
}

// Only loopback may ever be a target: 127.0.0.0/8 or ::1, numeric, no DNS.
absl::Status ResolveLoopback(Options& o) {
  std::memset(&o.address, 0, sizeof(o.address));
  in_addr a4{};
  in6_addr a6{};
  if (inet_pton(AF_INET, o.host.c_str(), &a4) == 1) {
    if ((ntohl(a4.s_addr) >> 24) != 127) {
      return Invalid("host",
                     absl::StrCat("'", o.host, "' is not a loopback address (127.0.0.0/8)"));
    }
    auto* sin = reinterpret_cast<sockaddr_in*>(&o.address);
    sin->sin_family = AF_INET;
    sin->sin_port = htons(o.port);
    sin->sin_addr = a4;
    o.address_length = sizeof(sockaddr_in);
    return absl::OkStatus();
  }
  if (inet_pton(AF_INET6, o.host.c_str(), &a6) == 1) {
    if (!IN6_IS_ADDR_LOOPBACK(&a6)) {
      return Invalid("host", absl::StrCat("'", o.host, "' is not the loopback address ::1"));
    }
    auto* sin6 = reinterpret_cast<sockaddr_in6*>(&o.address);
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons(o.port);
    sin6->sin6_addr = a6;
    o.address_length = sizeof(sockaddr_in6);
    return absl::OkStatus();
  }
  return Invalid("host", absl::StrCat("'", o.host, "' is not a numeric loopback address"));
}

}  // namespace

const char* ScenarioName(Scenario s) {
  switch (s) {
    case Scenario::kLogin:
      return "login";
    case Scenario::kBulk:
      return "bulk";
    case Scenario::kIdle:
      return "idle";
    case Scenario::kPing:
      return "ping";
  }
  return "?";
}

const char* ProtoName(Proto p) { return p == Proto::kImap ? "imap" : "pop3"; }

std::string Usage() {
  return R"(usage: mailbench --scenario login|bulk|idle|ping --proto imap|pop3 --port N [options]

Target (loopback only: 127.0.0.0/8 or ::1):
  --host ADDR            numeric loopback address (default 127.0.0.1)
  --port N               server port (required)
  --tls                  implicit TLS (IMAPS/POP3S); full handshakes unless --resume
  --resume               offer TLS session resumption (tickets / session ids)
  --sni NAME             TLS server name (default localhost)
Source (IPv4 loopback only):
  --source ADDR          bind each client socket to ADDR + (session index mod --sources)
  --sources N            how many consecutive source addresses (default 1 with --source)
Account:
  --user NAME            login name; "%d" becomes 1..--users round robin (default user1)
  --users N              number of distinct users for "%d" (default 1)
  --password PW          password (default demo)
Load:
  --threads N            client threads, one libuv loop each (default 1)
  --clients N            concurrent sessions; idle: sessions to hold (default 1)
  --sessions N           total sessions (login default 20 x clients; others: clients)
  --concurrency N        idle: sessions set up at once (default 64)
  --pings N              ping: NOOP round trips per session (default 1000)
  --messages N           bulk: messages per session (default 0: the whole mailbox)
  --hold S               idle: seconds to hold all sessions in IDLE (default 2)
  --think S              login/bulk/ping: pause after SELECT/STAT, S x 0.5..1.5 per session
  --ramp S               start the first --clients sessions spread over S seconds
  --run-for S            start no session after S seconds; those running finish
                         (--sessions then defaults to no limit)
Checks:
  --sha256 FILE          bulk: verify every message; lines "USER NUMBER SHA256HEX", the
                         digest of the BODY[] literal (= POP3 body un-stuffed, no final ".")
Bounds:
  --timeout S            fail a session whose reply takes longer (default 15)
  --duration S           stop the whole run after S seconds (default 300)
Measurement:
  --pid PID              read CPU time (/proc/PID/stat) and RSS/Pss (/proc/PID/smaps_rollup)
                         before and after; repeat to sum several processes
  --label TEXT           copied into the JSON line
  --json-only            print only the JSON line

Scenarios:
  login  connect, [TLS], login, SELECT INBOX (POP3: STAT), LOGOUT (QUIT), repeated
  bulk   login, FETCH 1:n BODY[] (POP3: RETR 1..n one after another), LOGOUT
  idle   hold --clients sessions logged in and in IDLE (POP3: after STAT), then release
  ping   login, --pings NOOP round trips one after another, LOGOUT
)";
}

absl::StatusOr<Options> ParseOptions(int argc, char** argv) {
  Options o;
  bool have_port = false;
  bool have_sessions = false;
  std::map<std::string, std::function<absl::Status(absl::string_view)>> with_value = {
      {"scenario",
       [&](absl::string_view v) {
         if (v == "login") {
           o.scenario = Scenario::kLogin;
         } else if (v == "bulk") {
           o.scenario = Scenario::kBulk;
         } else if (v == "idle") {
           o.scenario = Scenario::kIdle;
         } else if (v == "ping") {
           o.scenario = Scenario::kPing;
         } else {
           return Invalid("scenario", absl::StrCat("unknown scenario '", v, "'"));
         }
         return absl::OkStatus();
       }},
      {"proto",
       [&](absl::string_view v) {
         if (v == "imap") {
           o.proto = Proto::kImap;
         } else if (v == "pop3") {
           o.proto = Proto::kPop3;
         } else {
           return Invalid("proto", absl::StrCat("unknown protocol '", v, "'"));
         }
         return absl::OkStatus();
       }},
      {"host",
       [&](absl::string_view v) {
         o.host = std::string(v);
         return absl::OkStatus();
       }},
      {"port",
       [&](absl::string_view v) {
         have_port = true;
         return ParseInt<uint16_t>("port", v, 1, 65535, &o.port);
       }},
      {"sni",
       [&](absl::string_view v) {
         o.sni = std::string(v);
         return absl::OkStatus();
       }},
      {"user",
       [&](absl::string_view v) {
         if (v.empty() || v.find_first_of(" \"\\\r\n") != absl::string_view::npos) {
           return Invalid("user", "must be non-empty without spaces, quotes or backslashes");
         }
         o.user = std::string(v);
         return absl::OkStatus();
       }},
      {"users",
       [&](absl::string_view v) { return ParseInt<uint32_t>("users", v, 1, 1000000, &o.users); }},
      {"password",
       [&](absl::string_view v) {
         if (v.empty() || v.find_first_of(" \"\\\r\n") != absl::string_view::npos) {
           return Invalid("password", "must be non-empty without spaces, quotes or backslashes");
         }
         o.password = std::string(v);
         return absl::OkStatus();
       }},
      {"threads",
       [&](absl::string_view v) { return ParseInt<uint32_t>("threads", v, 1, 64, &o.threads); }},
      {"clients",
       [&](absl::string_view v) { return ParseInt<uint32_t>("clients", v, 1, 20000, &o.clients); }},
      {"sessions",
       [&](absl::string_view v) {
         have_sessions = true;
         return ParseInt<uint64_t>("sessions", v, 1, 10000000, &o.sessions);
       }},
      {"concurrency",
       [&](absl::string_view v) {
         return ParseInt<uint32_t>("concurrency", v, 1, 10000, &o.concurrency);
       }},
      {"pings",
       [&](absl::string_view v) { return ParseInt<uint64_t>("pings", v, 1, 10000000, &o.pings); }},
      {"messages",
       [&](absl::string_view v) {
         return ParseInt<uint64_t>("messages", v, 0, 10000000, &o.messages);
       }},
      {"hold", [&](absl::string_view v) { return ParseSeconds("hold", v, 0, 600, &o.hold_s); }},
      {"think", [&](absl::string_view v) { return ParseSeconds("think", v, 0, 600, &o.think_s); }},
      {"ramp", [&](absl::string_view v) { return ParseSeconds("ramp", v, 0, 600, &o.ramp_s); }},
      {"run-for",
       [&](absl::string_view v) { return ParseSeconds("run-for", v, 0.1, 3600, &o.run_for_s); }},
      {"sha256",
       [&](absl::string_view v) {
         o.digests_path = std::string(v);
         absl::StatusOr<DigestTable> t = DigestTable::Load(o.digests_path);
         if (!t.ok()) return Invalid("sha256", t.status().message());
         o.digests = std::make_shared<const DigestTable>(std::move(*t));
         return absl::OkStatus();
       }},
      {"source",
       [&](absl::string_view v) {
         in_addr a{};
         if (inet_pton(AF_INET, std::string(v).c_str(), &a) != 1 ||
             (ntohl(a.s_addr) >> 24) != 127) {
           return Invalid("source", absl::StrCat("'", v, "' is not an IPv4 loopback address"));
         }
         o.source = a;
         if (o.sources == 0) o.sources = 1;
         return absl::OkStatus();
       }},
      {"sources",
       [&](absl::string_view v) {
         return ParseInt<uint32_t>("sources", v, 1, 1 << 24, &o.sources);
       }},
      {"timeout",
       [&](absl::string_view v) { return ParseSeconds("timeout", v, 0.1, 600, &o.timeout_s); }},
      {"duration",
       [&](absl::string_view v) { return ParseSeconds("duration", v, 1, 3600, &o.duration_s); }},
      {"pid",
       [&](absl::string_view v) {
         int pid = 0;
         absl::Status s = ParseInt<int>("pid", v, 1, 1 << 30, &pid);
         if (s.ok()) o.pids.push_back(pid);
         return s;
       }},
      {"label",
       [&](absl::string_view v) {
         o.label = std::string(v);
         return absl::OkStatus();
       }},
  };
  std::map<std::string, bool*> switches = {
      {"tls", &o.tls}, {"resume", &o.resume}, {"json-only", &o.json_only}};

  for (int i = 1; i < argc; ++i) {
    absl::string_view arg = argv[i];
    if (arg == "-h" || arg == "--help") return absl::CancelledError(Usage());
    if (!absl::ConsumePrefix(&arg, "--")) {
      return absl::InvalidArgumentError(absl::StrCat("unexpected argument '", arg, "'"));
    }
    std::string name(arg);
    absl::string_view value;
    bool inline_value = false;
    if (size_t eq = name.find('='); eq != std::string::npos) {
      value = absl::string_view(argv[i]).substr(2 + eq + 1);
      name.resize(eq);
      inline_value = true;
    }
    if (auto s = switches.find(name); s != switches.end()) {
      if (inline_value) return Invalid(name, "takes no value");
      *s->second = true;
      continue;
    }
    auto f = with_value.find(name);
    if (f == with_value.end()) {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag --", name));
    }
    if (!inline_value) {
      if (i + 1 >= argc) return Invalid(name, "needs a value");
      value = argv[++i];
    }
    if (absl::Status s = f->second(value); !s.ok()) return s;
  }
  if (!have_port) return absl::InvalidArgumentError("--port is required");
  if (o.resume && !o.tls) return Invalid("resume", "needs --tls");
  if (absl::Status s = ResolveLoopback(o); !s.ok()) return s;
  if (o.sources > 0) {
    if (o.source.s_addr == 0) return Invalid("sources", "needs --source");
    if (o.address.ss_family != AF_INET) return Invalid("source", "needs an IPv4 --host");
    uint64_t last = uint64_t{ntohl(o.source.s_addr)} + o.sources - 1;
    if ((last >> 24) != 127) return Invalid("sources", "the range leaves 127.0.0.0/8");
  }
  if (o.digests && o.scenario != Scenario::kBulk)
    return Invalid("sha256", "is for --scenario bulk");
  if (o.scenario == Scenario::kIdle && (o.think_s > 0 || o.run_for_s > 0)) {
    return Invalid(o.think_s > 0 ? "think" : "run-for", "does not apply to --scenario idle");
  }
  if (o.scenario == Scenario::kIdle) {
    if (have_sessions && o.sessions != o.clients) {
      return Invalid("sessions", "idle holds exactly --clients sessions");
    }
    o.sessions = o.clients;
  } else if (!have_sessions) {
    o.sessions = o.run_for_s > 0                  ? uint64_t{10000000}
                 : o.scenario == Scenario::kLogin ? uint64_t{20} * o.clients
                                                  : o.clients;
  }
  if (o.threads > o.clients) o.threads = o.clients;
  return o;
}

}  // namespace postern::mailbench
