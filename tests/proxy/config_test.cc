#include "proxy/config.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstddef>
#include <cstring>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "proxy/snapshot.h"

namespace postern {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

// Raw strings start with a newline so that the YAML lines up in the source;
// drop it so that line 1 is the first line of YAML.
std::string Yaml(const char* text) {
  std::string s(text);
  if (!s.empty() && s.front() == '\n') s.erase(0, 1);
  return s;
}

absl::StatusOr<std::shared_ptr<const Config>> Parse(const std::string& yaml) {
  return ParseConfig(yaml, "postern.yaml");
}

std::string HostOf(const SocketAddress& a) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (a.storage.ss_family == AF_INET) {
    sockaddr_in sin;
    std::memcpy(&sin, &a.storage, sizeof(sin));
    inet_ntop(AF_INET, &sin.sin_addr, buf, sizeof(buf));
  } else {
    sockaddr_in6 sin6;
    std::memcpy(&sin6, &a.storage, sizeof(sin6));
    inet_ntop(AF_INET6, &sin6.sin6_addr, buf, sizeof(buf));
  }
  return buf;
}

void WriteFile(const std::string& path, const std::string& contents) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << contents;
  ASSERT_TRUE(out.good()) << path;
}

// A scratch directory holding a dummy certificate and key (their contents
// are TlsContext's business, the loader only checks they can be opened).
class ConfigTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    std::string tmpl = ::testing::TempDir() + "postern_config_test.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = new std::string(tmpl);
    WriteFile(*dir_ + "/cert.pem", "not really a certificate\n");
    WriteFile(*dir_ + "/key.pem", "not really a key\n");
    ASSERT_EQ(mkdir((*dir_ + "/conf").c_str(), 0700), 0);
    WriteFile(*dir_ + "/conf/cert.pem", "x\n");
  }
  static void TearDownTestSuite() {
    for (const char* f :
         {"/cert.pem", "/key.pem", "/conf/cert.pem", "/conf/postern.yaml", "/postern.yaml"}) {
      unlink((*dir_ + f).c_str());
    }
    rmdir((*dir_ + "/conf").c_str());
    rmdir(dir_->c_str());
    delete dir_;
    dir_ = nullptr;
  }
  static const std::string& dir() { return *dir_; }

  // Replaces $DIR in a YAML text with the scratch directory.
  static std::string WithDir(const std::string& yaml) {
    return absl::StrReplaceAll(yaml, {{"$DIR", *dir_}});
  }

 private:
  static std::string* dir_;
};

std::string* ConfigTest::dir_ = nullptr;

constexpr char kMinimal[] = R"(
listeners:
  - protocol: imap
    address: 127.0.0.1:143
    tls: none
backends:
  - name: store1
    address: 127.0.0.1
)";

TEST_F(ConfigTest, FullConfigRoundTrips) {
  const std::string yaml = WithDir(Yaml(R"(
workers: 2
hostname: mail.example.com
listeners:
  - name: imaps
    protocol: imap
    address: 127.0.0.1:9993
    tls: implicit
    allow_plaintext_auth: false
    backlog: 128
  - { protocol: pop3, address: "127.0.0.1:9110", tls: starttls, allow_plaintext_auth: true }
  - name: imap-v6
    protocol: imap
    address: "[::1]:9143"
    tls: none
tls:
  certificate: $DIR/cert.pem
  key: $DIR/key.pem
  min_version: "1.3"
  session_tickets: false
backends:
  - name: store1
    address: 127.0.0.1
    imap_port: 10143
    pop3_port: 10110
    imap_login: login
    pop3_login: user
  - name: store2
    address: "::1"
    imap_login: plain
    pop3_login: plain
routing:
  default_backend: store2
  users:
    alice: store1
    bob: store2
    Alice: store2
limits:
  max_line: 4096
  max_prelogin_literal: 32k
  error_budget: 5
  relay_high_watermark: 1m
  relay_low_watermark: 128k
  max_auth_attempts: 2
timeouts:
  login: 45s
  backend_connect: 1500ms
  backend_login: 20
  imap_idle: 40m
  pop3_idle: 1h
  shutdown_grace: 3s
log:
  level: debug
)"));
  auto parsed = Parse(yaml);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  const Config& c = **parsed;
  EXPECT_EQ(c.source, "postern.yaml");
  EXPECT_EQ(c.workers, 2);
  EXPECT_EQ(c.hostname, "mail.example.com");

  ASSERT_EQ(c.listeners.size(), 3u);
  EXPECT_EQ(c.listeners[0].name, "imaps");
  EXPECT_EQ(c.listeners[0].protocol, Protocol::kImap);
  EXPECT_EQ(c.listeners[0].tls, TlsMode::kImplicit);
  EXPECT_EQ(c.listeners[0].address.text, "127.0.0.1:9993");
  EXPECT_EQ(c.listeners[0].address.storage.ss_family, AF_INET);
  EXPECT_EQ(c.listeners[0].address.length, sizeof(sockaddr_in));
  EXPECT_EQ(HostOf(c.listeners[0].address), "127.0.0.1");
  EXPECT_EQ(PortOf(c.listeners[0].address), 9993);
  EXPECT_FALSE(c.listeners[0].allow_plaintext_auth);
  EXPECT_EQ(c.listeners[0].backlog, 128);
  EXPECT_EQ(c.listeners[1].name, "pop3-9110");
  EXPECT_EQ(c.listeners[1].protocol, Protocol::kPop3);
  EXPECT_EQ(c.listeners[1].tls, TlsMode::kStartTls);
  EXPECT_TRUE(c.listeners[1].allow_plaintext_auth);
  EXPECT_EQ(c.listeners[1].backlog, 511);
  EXPECT_EQ(c.listeners[2].name, "imap-v6");
  EXPECT_EQ(c.listeners[2].tls, TlsMode::kNone);
  EXPECT_EQ(c.listeners[2].address.storage.ss_family, AF_INET6);
  EXPECT_EQ(c.listeners[2].address.text, "[::1]:9143");

  EXPECT_TRUE(c.tls_needed);
  EXPECT_EQ(c.tls.certificate, dir() + "/cert.pem");
  EXPECT_EQ(c.tls.key, dir() + "/key.pem");
  EXPECT_EQ(c.tls.min_version, "1.3");
  EXPECT_FALSE(c.tls.session_tickets);

  ASSERT_EQ(c.backends.size(), 2u);
  EXPECT_EQ(c.backends[0].name, "store1");
  EXPECT_EQ(c.backends[0].host, "127.0.0.1");
  EXPECT_EQ(c.backends[0].imap_port, 10143);
  EXPECT_EQ(c.backends[0].pop3_port, 10110);
  EXPECT_EQ(c.backends[0].imap.text, "127.0.0.1:10143");
  EXPECT_EQ(c.backends[0].pop3.text, "127.0.0.1:10110");
  EXPECT_EQ(PortOf(c.backends[0].imap), 10143);
  EXPECT_EQ(PortOf(c.backends[0].pop3), 10110);
  EXPECT_EQ(c.backends[0].imap_login, ImapBackendLogin::kLogin);
  EXPECT_EQ(c.backends[0].pop3_login, Pop3BackendLogin::kUser);
  EXPECT_EQ(c.backends[1].name, "store2");
  EXPECT_EQ(c.backends[1].host, "::1");
  EXPECT_EQ(c.backends[1].imap_port, 143);
  EXPECT_EQ(c.backends[1].pop3_port, 110);
  EXPECT_EQ(c.backends[1].imap.text, "[::1]:143");
  EXPECT_EQ(c.backends[1].imap.storage.ss_family, AF_INET6);
  EXPECT_EQ(c.backends[1].imap_login, ImapBackendLogin::kPlain);
  EXPECT_EQ(c.backends[1].pop3_login, Pop3BackendLogin::kPlain);

  EXPECT_EQ(c.default_backend, 1u);
  ASSERT_EQ(c.user_backends.size(), 3u);
  EXPECT_EQ(c.user_backends.at("alice"), 0u);
  EXPECT_EQ(c.user_backends.at("bob"), 1u);
  EXPECT_EQ(c.user_backends.at("Alice"), 1u);  // case-sensitive

  EXPECT_EQ(c.limits.max_line, 4096u);
  EXPECT_EQ(c.limits.max_prelogin_literal, 32u * 1024);
  EXPECT_EQ(c.limits.error_budget, 5u);
  EXPECT_EQ(c.limits.relay_high_watermark, 1024u * 1024);
  EXPECT_EQ(c.limits.relay_low_watermark, 128u * 1024);
  EXPECT_EQ(c.limits.max_auth_attempts, 2u);

  using std::chrono::milliseconds;
  EXPECT_EQ(c.timeouts.login, milliseconds(45'000));
  EXPECT_EQ(c.timeouts.backend_connect, milliseconds(1'500));
  EXPECT_EQ(c.timeouts.backend_login, milliseconds(20'000));
  EXPECT_EQ(c.timeouts.imap_idle, milliseconds(40 * 60'000));
  EXPECT_EQ(c.timeouts.pop3_idle, milliseconds(3'600'000));
  EXPECT_EQ(c.timeouts.shutdown_grace, milliseconds(3'000));
  EXPECT_EQ(c.log.level, "debug");
}

TEST_F(ConfigTest, Defaults) {
  auto parsed = Parse(Yaml(kMinimal));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  const Config& c = **parsed;
  const Config d;  // the struct's own defaults
  EXPECT_EQ(c.workers, 0);
  EXPECT_EQ(c.hostname, "postern");
  ASSERT_EQ(c.listeners.size(), 1u);
  EXPECT_EQ(c.listeners[0].name, "imap-143");
  EXPECT_FALSE(c.listeners[0].allow_plaintext_auth);
  EXPECT_EQ(c.listeners[0].backlog, 511);
  EXPECT_FALSE(c.tls_needed);
  EXPECT_EQ(c.tls.min_version, "1.2");
  EXPECT_TRUE(c.tls.session_tickets);
  ASSERT_EQ(c.backends.size(), 1u);
  EXPECT_EQ(c.backends[0].imap_port, 143);
  EXPECT_EQ(c.backends[0].pop3_port, 110);
  EXPECT_EQ(c.backends[0].imap.text, "127.0.0.1:143");
  EXPECT_EQ(c.backends[0].pop3.text, "127.0.0.1:110");
  EXPECT_EQ(c.backends[0].imap_login, ImapBackendLogin::kLogin);
  EXPECT_EQ(c.backends[0].pop3_login, Pop3BackendLogin::kUser);
  EXPECT_EQ(c.default_backend, 0u);
  EXPECT_TRUE(c.user_backends.empty());
  EXPECT_EQ(c.limits.max_line, 65536u);
  EXPECT_EQ(c.limits.max_prelogin_literal, 65536u);
  EXPECT_EQ(c.limits.max_pending_replies, 4096u);
  EXPECT_EQ(c.limits.max_connections_per_ip, 256u);
  EXPECT_EQ(c.limits.max_prelogin_sessions, 5000u);
  EXPECT_EQ(c.limits.error_budget, 10u);
  EXPECT_EQ(c.limits.relay_high_watermark, 256u * 1024);
  EXPECT_EQ(c.limits.relay_low_watermark, 64u * 1024);
  EXPECT_EQ(c.limits.max_auth_attempts, 3u);
  EXPECT_EQ(c.timeouts.login, std::chrono::seconds(60));
  EXPECT_EQ(c.timeouts.login_deadline, std::chrono::minutes(3));
  EXPECT_EQ(c.timeouts.backend_connect, std::chrono::seconds(5));
  EXPECT_EQ(c.timeouts.backend_login, std::chrono::seconds(15));
  EXPECT_EQ(c.timeouts.imap_idle, std::chrono::minutes(31));
  EXPECT_EQ(c.timeouts.pop3_idle, std::chrono::minutes(10));
  EXPECT_EQ(c.timeouts.shutdown_grace, std::chrono::seconds(10));
  EXPECT_EQ(c.timeouts.imap_idle, d.timeouts.imap_idle);
  EXPECT_EQ(c.log.level, "info");
}

TEST_F(ConfigTest, ListenerTlsDefaultsToImplicitAndThenNeedsTheTlsSection) {
  const std::string yaml = Yaml(R"(
listeners:
  - protocol: pop3
    address: 127.0.0.1:995
backends:
  - name: b
    address: 10.0.0.1
)");
  auto parsed = Parse(yaml);
  ASSERT_FALSE(parsed.ok());
  EXPECT_EQ(std::string(parsed.status().message()),
            "postern.yaml:1: tls: required because listeners[0] uses tls: implicit");

  auto with_tls = Parse(WithDir(yaml + "tls: {certificate: $DIR/cert.pem, key: $DIR/key.pem}\n"));
  ASSERT_TRUE(with_tls.ok()) << with_tls.status();
  EXPECT_EQ((*with_tls)->listeners[0].tls, TlsMode::kImplicit);
  EXPECT_EQ((*with_tls)->listeners[0].name, "pop3-995");
  EXPECT_TRUE((*with_tls)->tls_needed);
}

TEST_F(ConfigTest, EmptySectionsAreEmptyMappings) {
  auto parsed = Parse(Yaml(kMinimal) + "routing:\n  users:\nlimits:\ntimeouts:\nlog:\n");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_TRUE((*parsed)->user_backends.empty());
  EXPECT_EQ((*parsed)->limits.max_line, 65536u);
}

TEST_F(ConfigTest, TlsSectionWithoutTlsListenersIsCheckedForFormOnly) {
  auto parsed = Parse(Yaml(kMinimal) + "tls:\n  certificate: /nonexistent/cert.pem\n");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_FALSE((*parsed)->tls_needed);
  EXPECT_EQ((*parsed)->tls.certificate, "/nonexistent/cert.pem");

  auto bad = Parse(Yaml(kMinimal) + "tls:\n  min_version: 1.1\n");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(std::string(bad.status().message()),
            "postern.yaml:9: tls.min_version: expected 1.2 or 1.3, got '1.1'");
}

TEST_F(ConfigTest, LargeUserMap) {
  std::string yaml = Yaml(kMinimal) + "routing:\n  users:\n";
  for (int i = 0; i < 5000; ++i) absl::StrAppend(&yaml, "    user", i, "@example.com: store1\n");
  auto parsed = Parse(yaml);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ((*parsed)->user_backends.size(), 5000u);
  EXPECT_EQ((*parsed)->user_backends.at("user4999@example.com"), 0u);
}

TEST_F(ConfigTest, PortZeroListenersMayRepeat) {
  auto parsed = Parse(Yaml(R"(
listeners:
  - {protocol: imap, address: "127.0.0.1:0", tls: none}
  - {protocol: pop3, address: "127.0.0.1:0", tls: none}
backends: [{name: b, address: 127.0.0.1}]
)"));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ((*parsed)->listeners[0].name, "imap-0");
  EXPECT_EQ((*parsed)->listeners[1].name, "pop3-0");
}

struct ErrorCase {
  const char* name;
  const char* yaml;
  const char* message;  // the whole status message
};

class ConfigErrorTest : public ConfigTest, public ::testing::WithParamInterface<ErrorCase> {};

TEST_P(ConfigErrorTest, FailsWithKeyAndLine) {
  const ErrorCase& c = GetParam();
  auto parsed = Parse(WithDir(Yaml(c.yaml)));
  ASSERT_FALSE(parsed.ok()) << c.yaml;
  EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(std::string(parsed.status().message()), WithDir(c.message));
}

const ErrorCase kErrorCases[] = {
    {"BadTlsMode", R"(
listeners:
  - protocol: imap
    address: 127.0.0.1:143
    tls: none
  - name: pop3
    protocol: pop3
    tls: ssl
    address: 127.0.0.1:110
backends: [{name: b, address: 127.0.0.1}]
)",
     "postern.yaml:7: listeners[1].tls: expected implicit, starttls or none, got 'ssl'"},
    {"UnknownTopLevelKey", R"(
listeners:
  - {protocol: imap, address: "127.0.0.1:143", tls: none}
backends: [{name: b, address: 127.0.0.1}]
worker: 4
)",
     "postern.yaml:4: worker: unknown key (expected one of: workers, hostname, listeners, tls, "
     "backends, routing, limits, timeouts, gateway, directories, directory, auth_cache, shards, "
     "health, redis, proxy_ttl, abuse, log, admin, user, group)"},
    {"BadPop3Mode", R"(
listeners: [{protocol: pop3, address: "127.0.0.1:110", tls: none}]
backends: [{name: b, address: 127.0.0.1, pop3_mode: translate}]
)",
     "postern.yaml:2: backends[0].pop3_mode: expected relay or gateway, got 'translate'"},
    {"BadUidlFormat", R"(
listeners: [{protocol: pop3, address: "127.0.0.1:110", tls: none}]
backends: [{name: b, address: 127.0.0.1}]
gateway:
  uidl_format: "%08Xv"
)",
     "postern.yaml:4: gateway.uidl_format: pop3 uidl_format '%08Xv': the format must contain the "
     "uid (%u), or UIDLs repeat at offset 5"},
    {"UnknownDirectory", R"(
listeners: [{protocol: imap, address: "127.0.0.1:143", tls: none, directory: nope}]
backends: [{name: b, address: 127.0.0.1}]
)",
     "postern.yaml:1: listeners[0].directory: no directory named 'nope'"},
    {"UnknownDefaultDirectory", R"(
listeners: [{protocol: imap, address: "127.0.0.1:143", tls: none}]
backends: [{name: b, address: 127.0.0.1}]
directory: nope
)",
     "postern.yaml:3: directory: no directory named 'nope'"},
    {"PasswdFileWithoutPath", R"(
listeners: [{protocol: imap, address: "127.0.0.1:143", tls: none}]
backends: [{name: b, address: 127.0.0.1}]
directories:
  - {name: users, type: passwd-file}
)",
     "postern.yaml:4: directories[0].path: required key missing"},
    {"AuthHttpKeyOnPasswdFile", R"(
listeners: [{protocol: imap, address: "127.0.0.1:143", tls: none}]
backends: [{name: b, address: 127.0.0.1}]
directories:
  - {name: users, type: passwd-file, path: $DIR/cert.pem, uri: /x}
)",
     "postern.yaml:4: directories[0].uri: only for type auth-http"},
    {"AuthHttpBadServer", R"(
listeners: [{protocol: imap, address: "127.0.0.1:143", tls: none}]
backends: [{name: b, address: 127.0.0.1}]
directories:
  - name: svc
    type: auth-http
    servers: ["auth.example.com:80"]
)",
     "postern.yaml:6: directories[0].servers[0]: 'auth.example.com' is not a numeric IPv4 or IPv6 "
     "address (host names are not resolved)"},
    {"AuthHttpHeaderInjection", R"(
listeners: [{protocol: imap, address: "127.0.0.1:143", tls: none}]
backends: [{name: b, address: 127.0.0.1}]
directories:
  - name: svc
    type: auth-http
    servers: ["127.0.0.1:80"]
    headers: {"X-A: b\r\nX-B": c}
)",
     "postern.yaml:7: directories[0].headers[\"X-A: b\\r\\nX-B\"]: a header name is letters, "
     "digits and '-'"},
    {"BadSaslMechanism", R"(
listeners: [{protocol: imap, address: "127.0.0.1:143", tls: none, sasl_mechanisms: [PLAIN, CRAM-MD5]}]
backends: [{name: b, address: 127.0.0.1}]
)",
     "postern.yaml:1: listeners[0].sasl_mechanisms[1]: expected PLAIN, LOGIN, XOAUTH2 or "
     "OAUTHBEARER, "
     "got 'CRAM-MD5'"},
    {"MasterUserWithoutPassword", R"(
listeners: [{protocol: imap, address: "127.0.0.1:143", tls: none}]
backends: [{name: b, address: 127.0.0.1, master_user: m}]
)",
     "postern.yaml:2: backends[0].master_password_file: required key missing"},
    {"UnknownListenerKey", R"(
listeners:
  - protocol: imap
    adress: 127.0.0.1:143
backends: [{name: b, address: 127.0.0.1}]
)",
     "postern.yaml:3: listeners[0].adress: unknown key (expected one of: name, protocol, "
     "address, tls, allow_plaintext_auth, backlog, directory, sasl_mechanisms, proxy_protocol, "
     "trusted_networks)"},
    {"UnknownLimitsKey", R"(
listeners: [{protocol: imap, address: "127.0.0.1:143", tls: none}]
backends: [{name: b, address: 127.0.0.1}]
limits:
  max_lines: 1000
)",
     "postern.yaml:4: limits.max_lines: unknown key (expected one of: max_line, "
     "max_prelogin_literal, error_budget, relay_high_watermark, relay_low_watermark, "
     "max_auth_attempts, max_pending_replies, max_connections_per_ip, max_prelogin_sessions, "
     "max_sessions)"},
    {"DuplicateKey", R"(
listeners: [{protocol: imap, address: "127.0.0.1:143", tls: none}]
backends: [{name: b, address: 127.0.0.1}]
workers: 1
workers: 2
)",
     "postern.yaml:4: workers: duplicate key (first at line 3)"},
    {"DuplicateUser", R"(
listeners: [{protocol: imap, address: "127.0.0.1:143", tls: none}]
backends: [{name: b, address: 127.0.0.1}]
routing:
  users:
    alice: b
    alice: b
)",
     "postern.yaml:6: routing.users.alice: duplicate key (first at line 5)"},
    {"ListWhereMapExpected", R"(
listeners: [{protocol: imap, address: "127.0.0.1:143", tls: none}]
backends: [{name: b, address: 127.0.0.1}]
limits:
  - max_line: 1000
)",
     "postern.yaml:4: limits: expected a mapping (key: value), got a list"},
    {"ScalarWhereMapExpected", R"(
listeners: [{protocol: imap, address: "127.0.0.1:143", tls: none}]
backends: [{name: b, address: 127.0.0.1}]
timeouts: 30s
)",
     "postern.yaml:3: timeouts: expected a mapping (key: value), got a single value"},
    {"MapWhereListExpected", R"(
listeners:
  protocol: imap
backends: [{name: b, address: 127.0.0.1}]
)",
     "postern.yaml:2: listeners: expected a list, got a mapping"},
    {"ListItemNotAMapping", R"(
listeners:
  - imap
backends: [{name: b, address: 127.0.0.1}]
)",
     "postern.yaml:2: listeners[0]: expected a mapping (key: value), got a single value"},
    {"ListWhereScalarExpected", R"(
listeners: [{protocol: [imap], address: "127.0.0.1:143", tls: none}]
backends: [{name: b, address: 127.0.0.1}]
)",
     "postern.yaml:1: listeners[0].protocol: expected imap or pop3, got a list"},
    {"TopLevelList", R"(
- listeners
)",
     "postern.yaml:1: expected a mapping (key: value), got a list"},
    {"NonScalarKey", R"(
listeners: [{protocol: imap, address: "127.0.0.1:143", tls: none}]
backends: [{name: b, address: 127.0.0.1}]
? [a, b]
: 1
)",
     "postern.yaml:3: keys must be plain strings, got a list, mapping or empty key"},
    {"PortNotANumber", R"(
listeners: [{protocol: imap, address: "127.0.0.1:143", tls: none}]
backends:
  - name: b
    address: 127.0.0.1
    imap_port: abc
)",
     "postern.yaml:5: backends[0].imap_port: expected an integer from 1 to 65535, got 'abc'"},
    {"PortTooLarge", R"(
listeners: [{protocol: imap, address: "127.0.0.1:143", tls: none}]
backends:
  - name: b
    address: 127.0.0.1
    pop3_port: 65536
)",
     "postern.yaml:5: backends[0].pop3_port: expected an integer from 1 to 65535, got '65536'"},
    {"BackendPortZero", R"(
listeners: [{protocol: imap, address: "127.0.0.1:143", tls: none}]
backends:
  - name: b
    address: 127.0.0.1
    imap_port: 0
)",
     "postern.yaml:5: backends[0].imap_port: expected an integer from 1 to 65535, got '0'"},
    {"ListenerPortTooLarge", R"(
listeners: [{protocol: imap, address: "127.0.0.1:99999", tls: none}]
backends: [{name: b, address: 127.0.0.1}]
)",
     "postern.yaml:1: listeners[0].address: expected a port from 0 to 65535 after the ':', got "
     "'127.0.0.1:99999'"},
    {"ListenerWithoutPort", R"(
listeners: [{protocol: imap, address: "127.0.0.1", tls: none}]
backends: [{name: b, address: 127.0.0.1}]
)",
     "postern.yaml:1: listeners[0].address: expected a numeric address with a port, like "
     "127.0.0.1:993 or [::1]:993, got '127.0.0.1'"},
    {"ListenerHostName", R"(
listeners: [{protocol: imap, address: "localhost:143", tls: none}]
backends: [{name: b, address: 127.0.0.1}]
)",
     "postern.yaml:1: listeners[0].address: 'localhost' is not a numeric IPv4 or IPv6 address "
     "(host names are not resolved)"},
    {"ListenerIpv6WithoutBrackets", R"(
listeners: [{protocol: imap, address: "::1:143", tls: none}]
backends: [{name: b, address: 127.0.0.1}]
)",
     "postern.yaml:1: listeners[0].address: an IPv6 address needs brackets, like [::1]:993, got "
     "'::1:143'"},
    {"ListenerIpv6UnclosedBracket", R"(
listeners: [{protocol: imap, address: "[::1:143", tls: none}]
backends: [{name: b, address: 127.0.0.1}]
)",
     "postern.yaml:1: listeners[0].address: expected a numeric address with a port, like "
     "127.0.0.1:993 or [::1]:993, got '[::1:143'"},
    {"BackendHostName", R"(
listeners: [{protocol: imap, address: "127.0.0.1:143", tls: none}]
backends:
  - name: b
    address: mail.example.com
)",
     "postern.yaml:4: backends[0].address: 'mail.example.com' is not a numeric IPv4 or IPv6 "
     "address (host names are not resolved)"},
    {"NegativeWorkers", R"(
workers: -1
listeners: [{protocol: imap, address: "127.0.0.1:143", tls: none}]
backends: [{name: b, address: 127.0.0.1}]
)",
     "postern.yaml:1: workers: expected an integer from 0 to 256, got '-1'"},
    {"TooManyWorkers", R"(
workers: 257
listeners: [{protocol: imap, address: "127.0.0.1:143", tls: none}]
backends: [{name: b, address: 127.0.0.1}]
)",
     "postern.yaml:1: workers: expected an integer from 0 to 256, got '257'"},
    {"EmptyValue", R"(
workers:
listeners: [{protocol: imap, address: "127.0.0.1:143", tls: none}]
backends: [{name: b, address: 127.0.0.1}]
)",
     "postern.yaml:1: workers: expected an integer from 0 to 256, got nothing"},
    {"NegativeBacklog", R"(
listeners:
  - protocol: imap
    address: 127.0.0.1:143
    tls: none
    backlog: -5
backends: [{name: b, address: 127.0.0.1}]
)",
     "postern.yaml:5: listeners[0].backlog: expected an integer from 1 to 65535, got '-5'"},
    {"BadBool", R"(
listeners:
  - protocol: imap
    address: 127.0.0.1:143
    tls: none
    allow_plaintext_auth: maybe
backends: [{name: b, address: 127.0.0.1}]
)",
     "postern.yaml:5: listeners[0].allow_plaintext_auth: expected true or false, got 'maybe'"},
    {"BadHostname", R"(
hostname: "mail example"
listeners: [{protocol: imap, address: "127.0.0.1:143", tls: none}]
backends: [{name: b, address: 127.0.0.1}]
)",
     "postern.yaml:1: hostname: expected a name (printable characters, no spaces), got "
     "'mail example'"},
    {"MissingListenerAddress", R"(
listeners:
  - protocol: imap
    tls: none
  - protocol: pop3
    tls: none
backends: [{name: b, address: 127.0.0.1}]
)",
     "postern.yaml:2: listeners[0].address: required key missing"},
    {"MissingListenerProtocolInFlowMapping", R"(
listeners:
  - {protocol: imap, address: "127.0.0.1:143", tls: none}
  - {address: "127.0.0.1:110", tls: none}
backends: [{name: b, address: 127.0.0.1}]
)",
     "postern.yaml:3: listeners[1].protocol: required key missing"},
    {"MissingListeners", R"(
# no listeners
backends: [{name: b, address: 127.0.0.1}]
)",
     "postern.yaml:2: listeners: required key missing"},
    {"EmptyDocument", R"(
# nothing but a comment
)",
     "postern.yaml:1: listeners: required key missing"},
    {"EmptyListenerList", R"(
listeners: []
backends: [{name: b, address: 127.0.0.1}]
)",
     "postern.yaml:1: listeners: at least one listener is required"},
    {"NullListenerList", R"(
listeners:
backends: [{name: b, address: 127.0.0.1}]
)",
     "postern.yaml:1: listeners: at least one listener is required"},
    {"MissingBackends", R"(
listeners: [{protocol: imap, address: "127.0.0.1:143", tls: none}]
)",
     "postern.yaml:1: backends: required key missing"},
    {"EmptyBackendList", R"(
listeners: [{protocol: imap, address: "127.0.0.1:143", tls: none}]
backends: []
)",
     "postern.yaml:2: backends: at least one backend is required"},
    {"MissingBackendName", R"(
listeners: [{protocol: imap, address: "127.0.0.1:143", tls: none}]
backends:
  - address: 127.0.0.1
)",
     "postern.yaml:3: backends[0].name: required key missing"},
    {"EmptyBackendName", R"(
listeners: [{protocol: imap, address: "127.0.0.1:143", tls: none}]
backends:
  - name: ""
    address: 127.0.0.1
)",
     "postern.yaml:3: backends[0].name: expected a name (printable characters, no spaces), got "
     "''"},
    {"DuplicateBackendName", R"(
listeners: [{protocol: imap, address: "127.0.0.1:143", tls: none}]
backends:
  - name: store1
    address: 127.0.0.1
  - address: 127.0.0.2
    name: store1
)",
     "postern.yaml:6: backends[1].name: duplicate backend name 'store1' (also backends[0])"},
    {"DuplicateListenerAddress", R"(
listeners:
  - {protocol: imap, address: "127.0.0.1:143", tls: none}
  - protocol: pop3
    tls: none
    address: 127.0.0.1:143
backends: [{name: b, address: 127.0.0.1}]
)",
     "postern.yaml:5: listeners[1].address: '127.0.0.1:143' is already used by listeners[0]"},
    {"DuplicateListenerAddressIpv6Spelling", R"(
listeners:
  - {protocol: imap, address: "[::1]:143", tls: none}
  - {protocol: imap, address: "[0:0::1]:143", tls: none}
backends: [{name: b, address: 127.0.0.1}]
)",
     "postern.yaml:3: listeners[1].address: '[0:0::1]:143' is already used by listeners[0]"},
    {"UnknownDefaultBackend", R"(
listeners: [{protocol: imap, address: "127.0.0.1:143", tls: none}]
backends: [{name: b, address: 127.0.0.1}]
routing:
  default_backend: store9
)",
     "postern.yaml:4: routing.default_backend: no backend named 'store9'"},
    {"UnknownUserBackend", R"(
listeners: [{protocol: imap, address: "127.0.0.1:143", tls: none}]
backends: [{name: b, address: 127.0.0.1}]
routing:
  users:
    alice: b
    "bob@example.com": c
)",
     "postern.yaml:6: routing.users.bob@example.com: no backend named 'c'"},
    {"UsersNotAMapping", R"(
listeners: [{protocol: imap, address: "127.0.0.1:143", tls: none}]
backends: [{name: b, address: 127.0.0.1}]
routing:
  users: [alice]
)",
     "postern.yaml:4: routing.users: expected a mapping (key: value), got a list"},
    {"LowWatermarkNotBelowHigh", R"(
listeners: [{protocol: imap, address: "127.0.0.1:143", tls: none}]
backends: [{name: b, address: 127.0.0.1}]
limits:
  relay_high_watermark: 64k
  relay_low_watermark: 64k
)",
     "postern.yaml:5: limits.relay_low_watermark: must be less than relay_high_watermark (65536), "
     "got 65536"},
    {"HighWatermarkBelowDefaultLow", R"(
listeners: [{protocol: imap, address: "127.0.0.1:143", tls: none}]
backends: [{name: b, address: 127.0.0.1}]
limits:
  relay_high_watermark: 32k
)",
     "postern.yaml:4: limits.relay_high_watermark: must be greater than relay_low_watermark "
     "(65536), got 32768"},
    {"MaxLineTooSmall", R"(
listeners: [{protocol: imap, address: "127.0.0.1:143", tls: none}]
backends: [{name: b, address: 127.0.0.1}]
limits:
  max_line: 511
)",
     "postern.yaml:4: limits.max_line: must be at least 512, got '511'"},
    {"ErrorBudgetZero", R"(
listeners: [{protocol: imap, address: "127.0.0.1:143", tls: none}]
backends: [{name: b, address: 127.0.0.1}]
limits:
  error_budget: 0
)",
     "postern.yaml:4: limits.error_budget: expected an integer from 1 to 4294967295, got '0'"},
    {"BadSizeSuffix", R"(
listeners: [{protocol: imap, address: "127.0.0.1:143", tls: none}]
backends: [{name: b, address: 127.0.0.1}]
limits:
  max_prelogin_literal: 64kb
)",
     "postern.yaml:4: limits.max_prelogin_literal: expected a size in bytes like 65536, 64k or 1m, "
     "got '64kb'"},
    {"SizeTooLarge", R"(
listeners: [{protocol: imap, address: "127.0.0.1:143", tls: none}]
backends: [{name: b, address: 127.0.0.1}]
limits:
  max_prelogin_literal: 2048m
)",
     "postern.yaml:4: limits.max_prelogin_literal: must be at most 1024m, got '2048m'"},
    {"SizeOverflow", R"(
listeners: [{protocol: imap, address: "127.0.0.1:143", tls: none}]
backends: [{name: b, address: 127.0.0.1}]
limits:
  max_line: 99999999999999999999999
)",
     "postern.yaml:4: limits.max_line: expected a size in bytes like 65536, 64k or 1m, got "
     "'99999999999999999999999'"},
    {"ZeroTimeout", R"(
listeners: [{protocol: imap, address: "127.0.0.1:143", tls: none}]
backends: [{name: b, address: 127.0.0.1}]
timeouts:
  login: 60s
  backend_connect: 0s
)",
     "postern.yaml:5: timeouts.backend_connect: must be greater than 0, got '0s'"},
    {"BadDuration", R"(
listeners: [{protocol: imap, address: "127.0.0.1:143", tls: none}]
backends: [{name: b, address: 127.0.0.1}]
timeouts:
  imap_idle: 30 minutes
)",
     "postern.yaml:4: timeouts.imap_idle: expected a duration like 500ms, 30s, 10m or 1h, got "
     "'30 minutes'"},
    {"NegativeDuration", R"(
listeners: [{protocol: imap, address: "127.0.0.1:143", tls: none}]
backends: [{name: b, address: 127.0.0.1}]
timeouts:
  login: -5s
)",
     "postern.yaml:4: timeouts.login: expected a duration like 500ms, 30s, 10m or 1h, got '-5s'"},
    {"DurationTooLarge", R"(
listeners: [{protocol: imap, address: "127.0.0.1:143", tls: none}]
backends: [{name: b, address: 127.0.0.1}]
timeouts:
  login: 9999999999999999h
)",
     "postern.yaml:4: timeouts.login: is too large: '9999999999999999h'"},
    {"BadLogLevel", R"(
listeners: [{protocol: imap, address: "127.0.0.1:143", tls: none}]
backends: [{name: b, address: 127.0.0.1}]
log: {level: verbose}
)",
     "postern.yaml:3: log.level: expected trace, debug, info, warn or error, got 'verbose'"},
    {"TlsRequiredForStartTls", R"(
listeners:
  - {protocol: imap, address: "127.0.0.1:143", tls: none}
  - {protocol: imap, address: "127.0.0.1:144", tls: starttls}
backends: [{name: b, address: 127.0.0.1}]
)",
     "postern.yaml:1: tls: required because listeners[1] uses tls: starttls"},
    {"TlsCertificateMissing", R"(
listeners: [{protocol: imap, address: "127.0.0.1:993"}]
backends: [{name: b, address: 127.0.0.1}]
tls:
  key: $DIR/key.pem
)",
     "postern.yaml:4: tls.certificate: required key missing"},
    {"TlsKeyMissing", R"(
listeners: [{protocol: imap, address: "127.0.0.1:993"}]
backends: [{name: b, address: 127.0.0.1}]
tls:
  certificate: $DIR/cert.pem
)",
     "postern.yaml:4: tls.key: required key missing"},
    {"TlsCertificateDoesNotExist", R"(
listeners: [{protocol: imap, address: "127.0.0.1:993"}]
backends: [{name: b, address: 127.0.0.1}]
tls:
  certificate: $DIR/missing.pem
  key: $DIR/key.pem
)",
     "postern.yaml:4: tls.certificate: cannot read '$DIR/missing.pem': No such file or directory"},
    {"TlsKeyIsADirectory", R"(
listeners: [{protocol: imap, address: "127.0.0.1:993"}]
backends: [{name: b, address: 127.0.0.1}]
tls:
  certificate: $DIR/cert.pem
  key: $DIR/conf
)",
     "postern.yaml:5: tls.key: '$DIR/conf' is not a regular file"},
    {"TlsEmptyCertificate", R"(
listeners: [{protocol: imap, address: "127.0.0.1:993"}]
backends: [{name: b, address: 127.0.0.1}]
tls:
  certificate: ""
  key: $DIR/key.pem
)",
     "postern.yaml:4: tls.certificate: expected a file path, got ''"},
    {"TlsBadMinVersion", R"(
listeners: [{protocol: imap, address: "127.0.0.1:993"}]
backends: [{name: b, address: 127.0.0.1}]
tls:
  certificate: $DIR/cert.pem
  key: $DIR/key.pem
  min_version: "1.0"
)",
     "postern.yaml:6: tls.min_version: expected 1.2 or 1.3, got '1.0'"},
    {"YamlSyntaxError", R"(
listeners: [{protocol: imap, address: "127.0.0.1:143", tls: none}
backends: [{name: b, address: 127.0.0.1}]
)",
     "postern.yaml:2: YAML syntax error: end of sequence flow not found"},
    {"YamlBadIndentation", R"(
listeners:
  - protocol: imap
   address: 127.0.0.1:143
)",
     "postern.yaml:3: YAML syntax error: end of sequence not found"},
};

INSTANTIATE_TEST_SUITE_P(Errors, ConfigErrorTest, ::testing::ValuesIn(kErrorCases),
                         [](const ::testing::TestParamInfo<ErrorCase>& info) {
                           return std::string(info.param.name);
                         });

struct ValueCase {
  const char* text;
  uint64_t expected;
};

TEST_F(ConfigTest, DurationSuffixes) {
  const ValueCase cases[] = {
      {"500ms", 500}, {"30s", 30'000},     {"10m", 600'000}, {"1h", 3'600'000},   {"45", 45'000},
      {"1ms", 1},     {"\"2m\"", 120'000}, {"0001s", 1'000}, {"24h", 86'400'000},
  };
  for (const ValueCase& c : cases) {
    auto parsed = Parse(Yaml(kMinimal) + "timeouts:\n  login: " + c.text + "\n");
    ASSERT_TRUE(parsed.ok()) << c.text << ": " << parsed.status();
    EXPECT_EQ((*parsed)->timeouts.login.count(), static_cast<int64_t>(c.expected)) << c.text;
  }
  for (const char* bad :
       {"1.5s", "1d", "s", "ms", "1 s", "1S", "0", "0ms", "+5s", "5sec", "\"\""}) {
    auto parsed = Parse(Yaml(kMinimal) + "timeouts:\n  login: " + bad + "\n");
    ASSERT_FALSE(parsed.ok()) << bad;
    EXPECT_THAT(std::string(parsed.status().message()),
                StartsWith("postern.yaml:9: timeouts.login: "))
        << bad;
  }
}

TEST_F(ConfigTest, SizeSuffixes) {
  const ValueCase cases[] = {
      {"0", 0},
      {"100", 100},
      {"64k", 65536},
      {"64K", 65536},
      {"1m", 1048576},
      {"2M", 2097152},
      {"1024m", 1u << 30},
      {"\"16k\"", 16384},
      {"1073741824", 1u << 30},
  };
  for (const ValueCase& c : cases) {
    auto parsed = Parse(Yaml(kMinimal) + "limits:\n  max_prelogin_literal: " + c.text + "\n");
    ASSERT_TRUE(parsed.ok()) << c.text << ": " << parsed.status();
    EXPECT_EQ((*parsed)->limits.max_prelogin_literal, c.expected) << c.text;
  }
  for (const char* bad : {"k", "1g", "1.5k", "-1", "1 k", "1kk", "1073741825", "1048577k", "abc"}) {
    auto parsed = Parse(Yaml(kMinimal) + "limits:\n  max_prelogin_literal: " + bad + "\n");
    ASSERT_FALSE(parsed.ok()) << bad;
    EXPECT_THAT(std::string(parsed.status().message()),
                StartsWith("postern.yaml:9: limits.max_prelogin_literal: "))
        << bad;
  }
}

TEST_F(ConfigTest, BoolSpellings) {
  for (const char* yes : {"true", "True", "TRUE", "yes", "on"}) {
    auto parsed = Parse(Yaml(kMinimal) + "tls: {session_tickets: " + yes + "}\n");
    ASSERT_TRUE(parsed.ok()) << yes << ": " << parsed.status();
    EXPECT_TRUE((*parsed)->tls.session_tickets);
  }
  for (const char* no : {"false", "False", "no", "off"}) {
    auto parsed = Parse(Yaml(kMinimal) + "tls: {session_tickets: " + no + "}\n");
    ASSERT_TRUE(parsed.ok()) << no << ": " << parsed.status();
    EXPECT_FALSE((*parsed)->tls.session_tickets);
  }
}

TEST_F(ConfigTest, Ipv6Addresses) {
  auto parsed = Parse(Yaml(R"(
listeners:
  - {protocol: imap, address: "[::]:143", tls: none}
  - {protocol: pop3, address: "[2001:db8::7]:110", tls: none}
  - {protocol: imap, address: "[::ffff:127.0.0.1]:144", tls: none}
  - {protocol: imap, address: "0.0.0.0:145", tls: none}
backends:
  - {name: a, address: "::1", imap_port: 1143}
  - {name: b, address: "[2001:db8::1]", pop3_port: 1110}
  - {name: c, address: "fe80::1"}
)"));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  const Config& c = **parsed;
  EXPECT_EQ(c.listeners[0].address.storage.ss_family, AF_INET6);
  EXPECT_EQ(c.listeners[0].address.length, sizeof(sockaddr_in6));
  EXPECT_EQ(c.listeners[0].address.text, "[::]:143");
  EXPECT_EQ(HostOf(c.listeners[0].address), "::");
  EXPECT_EQ(PortOf(c.listeners[0].address), 143);
  EXPECT_EQ(c.listeners[1].address.text, "[2001:db8::7]:110");
  EXPECT_EQ(HostOf(c.listeners[1].address), "2001:db8::7");
  EXPECT_EQ(c.listeners[1].name, "pop3-110");
  EXPECT_EQ(c.listeners[2].address.storage.ss_family, AF_INET6);
  EXPECT_EQ(c.listeners[3].address.storage.ss_family, AF_INET);
  EXPECT_EQ(c.backends[0].host, "::1");
  EXPECT_EQ(c.backends[0].imap.text, "[::1]:1143");
  EXPECT_EQ(PortOf(c.backends[0].imap), 1143);
  EXPECT_EQ(c.backends[0].pop3.text, "[::1]:110");
  EXPECT_EQ(c.backends[1].host, "2001:db8::1");
  EXPECT_EQ(c.backends[1].pop3.text, "[2001:db8::1]:1110");
  EXPECT_EQ(HostOf(c.backends[2].imap), "fe80::1");
}

TEST(ParseSocketAddressTest, AcceptsNumericHostsOnly) {
  auto v4 = ParseSocketAddress("10.1.2.3", 993);
  ASSERT_TRUE(v4.ok()) << v4.status();
  EXPECT_EQ(v4->text, "10.1.2.3:993");
  EXPECT_EQ(v4->length, sizeof(sockaddr_in));
  EXPECT_EQ(PortOf(*v4), 993);

  auto v6 = ParseSocketAddress("::1", 0);
  ASSERT_TRUE(v6.ok()) << v6.status();
  EXPECT_EQ(v6->text, "[::1]:0");
  EXPECT_EQ(v6->length, sizeof(sockaddr_in6));

  auto bracketed = ParseSocketAddress("[::1]", 143);
  ASSERT_TRUE(bracketed.ok()) << bracketed.status();
  EXPECT_EQ(bracketed->text, "[::1]:143");

  for (const char* bad : {"", "localhost", "1.2.3", "1.2.3.256", "01.2.3.4", "::1%lo", "[::1",
                          "1.2.3.4:5", "[1.2.3.4]", "::g"}) {
    auto r = ParseSocketAddress(bad, 1);
    EXPECT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  }
  auto nul = ParseSocketAddress(std::string("1.2.3.4\0x", 9), 1);
  EXPECT_FALSE(nul.ok());
}

TEST(NamesTest, ProtocolAndTlsModeNames) {
  EXPECT_STREQ(ProtocolName(Protocol::kImap), "imap");
  EXPECT_STREQ(ProtocolName(Protocol::kPop3), "pop3");
  EXPECT_STREQ(TlsModeName(TlsMode::kImplicit), "implicit");
  EXPECT_STREQ(TlsModeName(TlsMode::kStartTls), "starttls");
  EXPECT_STREQ(TlsModeName(TlsMode::kNone), "none");
}

TEST_F(ConfigTest, RelativePathsResolveAgainstTheConfigFileDirectory) {
  const std::string path = dir() + "/conf/postern.yaml";
  WriteFile(path, Yaml(R"(
listeners: [{protocol: imap, address: "127.0.0.1:993"}]
backends: [{name: b, address: 127.0.0.1}]
tls:
  certificate: cert.pem
  key: ../key.pem
)"));
  auto loaded = LoadConfigFile(path);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ((*loaded)->source, path);
  EXPECT_EQ((*loaded)->tls.certificate, dir() + "/conf/cert.pem");
  EXPECT_EQ((*loaded)->tls.key, dir() + "/conf/../key.pem");

  // The same text next to the other files: conf/cert.pem is not there.
  const std::string top = dir() + "/postern.yaml";
  WriteFile(top, Yaml(R"(
listeners: [{protocol: imap, address: "127.0.0.1:993"}]
backends: [{name: b, address: 127.0.0.1}]
tls:
  certificate: conf/cert.pem
  key: key.pem
)"));
  auto top_loaded = LoadConfigFile(top);
  ASSERT_TRUE(top_loaded.ok()) << top_loaded.status();
  EXPECT_EQ((*top_loaded)->tls.certificate, dir() + "/conf/cert.pem");
  EXPECT_EQ((*top_loaded)->tls.key, dir() + "/key.pem");

  // A missing relative file is reported with the resolved path.
  WriteFile(path, Yaml(R"(
listeners: [{protocol: imap, address: "127.0.0.1:993"}]
backends: [{name: b, address: 127.0.0.1}]
tls:
  certificate: cert.pem
  key: key.pem
)"));
  auto missing = LoadConfigFile(path);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(std::string(missing.status().message()),
            absl::StrCat(path, ":5: tls.key: cannot read '", dir(),
                         "/conf/key.pem': No such file or directory"));
}

TEST_F(ConfigTest, RelativeSourceNameResolvesAgainstTheWorkingDirectory) {
  char cwd[4096];
  ASSERT_NE(getcwd(cwd, sizeof(cwd)), nullptr);
  auto parsed =
      ParseConfig(Yaml(kMinimal) + "tls: {certificate: c.pem, key: sub/k.pem}\n", "postern.yaml");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ((*parsed)->tls.certificate, absl::StrCat(cwd, "/c.pem"));
  auto in_subdir = ParseConfig(Yaml(kMinimal) + "tls: {certificate: c.pem}\n", "etc/postern.yaml");
  ASSERT_TRUE(in_subdir.ok()) << in_subdir.status();
  EXPECT_EQ((*in_subdir)->tls.certificate, absl::StrCat(cwd, "/etc/c.pem"));
  auto absolute = ParseConfig(Yaml(kMinimal) + "tls: {certificate: /a/c.pem}\n", "/etc/p.yaml");
  ASSERT_TRUE(absolute.ok()) << absolute.status();
  EXPECT_EQ((*absolute)->tls.certificate, "/a/c.pem");
}

TEST_F(ConfigTest, LoadConfigFileErrorsNameThePath) {
  const std::string missing = dir() + "/nope.yaml";
  auto r = LoadConfigFile(missing);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(std::string(r.status().message()),
            missing + ": cannot open: No such file or directory");

  auto d = LoadConfigFile(dir());
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(std::string(d.status().message()), dir() + ": not a regular file");

  const std::string path = dir() + "/postern.yaml";
  WriteFile(path, Yaml(kMinimal) + "workers: many\n");
  auto bad = LoadConfigFile(path);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(std::string(bad.status().message()),
            path + ":8: workers: expected an integer from 0 to 256, got 'many'");
}

// deploy/postern.example.yaml documents every key with its default: it must
// load, and the values it calls defaults must be the struct's defaults.
TEST_F(ConfigTest, ExampleFileLoadsAndStatesTheDefaults) {
  std::ifstream in(std::string(POSTERN_SOURCE_DIR) + "/deploy/postern.example.yaml");
  ASSERT_TRUE(in.good());
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // Next to the scratch cert.pem and key.pem, which it names relatively.
  const std::string path = dir() + "/postern.yaml";
  WriteFile(path, text);
  auto loaded = LoadConfigFile(path);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  const Config& c = **loaded;
  const Config d;
  EXPECT_EQ(c.workers, d.workers);
  ASSERT_EQ(c.listeners.size(), 4u);
  EXPECT_EQ(c.listeners[0].tls, ListenerConfig().tls);
  EXPECT_EQ(c.listeners[0].allow_plaintext_auth, ListenerConfig().allow_plaintext_auth);
  EXPECT_EQ(c.listeners[0].backlog, ListenerConfig().backlog);
  EXPECT_EQ(c.listeners[1].address.storage.ss_family, AF_INET6);
  EXPECT_EQ(c.listeners[3].protocol, Protocol::kPop3);
  EXPECT_EQ(c.listeners[3].tls, TlsMode::kStartTls);
  EXPECT_TRUE(c.tls_needed);
  EXPECT_EQ(c.tls.certificate, dir() + "/cert.pem");
  EXPECT_EQ(c.tls.key, dir() + "/key.pem");
  EXPECT_EQ(c.tls.min_version, d.tls.min_version);
  EXPECT_EQ(c.tls.session_tickets, d.tls.session_tickets);
  ASSERT_EQ(c.backends.size(), 2u);
  EXPECT_EQ(c.backends[0].imap_port, BackendConfig().imap_port);
  EXPECT_EQ(c.backends[0].pop3_port, BackendConfig().pop3_port);
  EXPECT_EQ(c.backends[0].imap_login, BackendConfig().imap_login);
  EXPECT_EQ(c.backends[0].pop3_login, BackendConfig().pop3_login);
  EXPECT_EQ(c.default_backend, d.default_backend);
  EXPECT_EQ(c.user_backends.at("bob@example.com"), 1u);
  EXPECT_EQ(c.limits.max_line, d.limits.max_line);
  EXPECT_EQ(c.limits.max_prelogin_literal, d.limits.max_prelogin_literal);
  EXPECT_EQ(c.limits.error_budget, d.limits.error_budget);
  EXPECT_EQ(c.limits.relay_high_watermark, d.limits.relay_high_watermark);
  EXPECT_EQ(c.limits.relay_low_watermark, d.limits.relay_low_watermark);
  EXPECT_EQ(c.limits.max_auth_attempts, d.limits.max_auth_attempts);
  EXPECT_EQ(c.limits.max_pending_replies, d.limits.max_pending_replies);
  EXPECT_EQ(c.limits.max_connections_per_ip, d.limits.max_connections_per_ip);
  EXPECT_EQ(c.limits.max_prelogin_sessions, d.limits.max_prelogin_sessions);
  EXPECT_EQ(c.timeouts.login, d.timeouts.login);
  EXPECT_EQ(c.timeouts.login_deadline, d.timeouts.login_deadline);
  EXPECT_EQ(c.timeouts.backend_connect, d.timeouts.backend_connect);
  EXPECT_EQ(c.timeouts.backend_login, d.timeouts.backend_login);
  EXPECT_EQ(c.timeouts.imap_idle, d.timeouts.imap_idle);
  EXPECT_EQ(c.timeouts.pop3_idle, d.timeouts.pop3_idle);
  EXPECT_EQ(c.timeouts.shutdown_grace, d.timeouts.shutdown_grace);
  EXPECT_EQ(c.log.level, d.log.level);
}

// Random edits of a valid file: whatever comes out, the loader returns a
// status (never throws, never crashes), and every error names the source.
TEST_F(ConfigTest, RandomMutationsNeverCrash) {
  const std::string base = WithDir(Yaml(R"(
workers: 2
hostname: mail.example.com
listeners:
  - name: imaps
    protocol: imap
    address: 127.0.0.1:9993
    tls: implicit
    allow_plaintext_auth: false
    backlog: 511
  - { protocol: pop3, address: "[::1]:9110", tls: starttls }
tls:
  certificate: $DIR/cert.pem
  key: $DIR/key.pem
  min_version: "1.2"
  session_tickets: true
backends:
  - name: store1
    address: 127.0.0.1
    imap_port: 10143
    pop3_port: 10110
    imap_login: login
    pop3_login: user
routing:
  default_backend: store1
  users:
    alice: store1
limits:
  max_line: 8192
  max_prelogin_literal: 64k
  error_budget: 10
  relay_high_watermark: 256k
  relay_low_watermark: 64k
  max_auth_attempts: 3
timeouts:
  login: 60s
  backend_connect: 5s
  backend_login: 15s
  imap_idle: 31m
  pop3_idle: 10m
  shutdown_grace: 10s
log:
  level: info
)"));
  ASSERT_TRUE(ParseConfig(base, "fuzz.yaml").ok());
  const std::string alphabet = ":-[]{},\"'#&*!|>%@`? \n\t\\0123456789abcxyzk.~\xff";
  std::mt19937 rng(20240611);
  int ok = 0;
  for (int round = 0; round < 400; ++round) {
    std::string text = base;
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits; ++e) {
      const size_t pos = rng() % (text.size() + 1);
      switch (rng() % 6) {
        case 0:  // delete a short run
          text.erase(pos, 1 + rng() % 8);
          break;
        case 1:  // insert a byte
          text.insert(pos, 1, alphabet[rng() % alphabet.size()]);
          break;
        case 2:  // overwrite a byte
          if (pos < text.size()) text[pos] = alphabet[rng() % alphabet.size()];
          break;
        case 3: {  // duplicate a line
          std::vector<std::string> lines = absl::StrSplit(text, '\n');
          const size_t i = rng() % lines.size();
          lines.insert(lines.begin() + static_cast<std::ptrdiff_t>(i), lines[i]);
          text = absl::StrJoin(lines, "\n");
          break;
        }
        case 4: {  // swap two lines
          std::vector<std::string> lines = absl::StrSplit(text, '\n');
          std::swap(lines[rng() % lines.size()], lines[rng() % lines.size()]);
          text = absl::StrJoin(lines, "\n");
          break;
        }
        case 5:  // cut the file short
          text.resize(pos);
          break;
      }
    }
    auto parsed = ParseConfig(text, "fuzz.yaml");
    if (parsed.ok()) {
      ++ok;
      EXPECT_FALSE((*parsed)->listeners.empty());
      EXPECT_FALSE((*parsed)->backends.empty());
      EXPECT_LT((*parsed)->default_backend, (*parsed)->backends.size());
    } else {
      EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument) << text;
      EXPECT_THAT(std::string(parsed.status().message()), StartsWith("fuzz.yaml")) << text;
    }
  }
  // The mutations are small: some must still load, most must not.
  EXPECT_GT(ok, 0);
  EXPECT_LT(ok, 400);
}

TEST_F(ConfigTest, KeysKeepTheirLines) {
  auto parsed = Parse(Yaml(R"(
workers: 1
listeners:
  - name: imap
    protocol: imap
    address: 127.0.0.1:143
    tls: none
backends:
  - name: store1
    address: 127.0.0.1
)"));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  const Config& c = **parsed;
  EXPECT_EQ(c.lines.at("workers"), 1);
  EXPECT_EQ(c.lines.at("listeners"), 2);
  EXPECT_EQ(c.lines.at("listeners[0].address"), 5);
  EXPECT_EQ(c.lines.at("backends[0].address"), 9);
  EXPECT_FALSE(c.lines.contains("hostname"));
}

TEST_F(ConfigTest, ReloadRefusalsNameFileLineAndKey) {
  const std::string base = Yaml(R"(
workers: 1
listeners:
  - name: imap
    protocol: imap
    address: 127.0.0.1:143
    tls: none
  - {protocol: pop3, address: "127.0.0.1:110", tls: none}
backends:
  - name: store1
    address: 127.0.0.1
)");
  auto running = Parse(base);
  ASSERT_TRUE(running.ok()) << running.status();
  const struct {
    std::string from, to, want;
  } cases[] = {
      {"127.0.0.1:143", "127.0.0.1:144", "postern.yaml:5: listeners[0].address cannot change"},
      {"workers: 1", "workers: 2", "postern.yaml:1: workers cannot change"},
      {"name: imap\n", "name: imap4\n", "postern.yaml:3: listeners[0].name cannot change"},
      // A default name changes with the port: the line of the address.
      {"127.0.0.1:110", "127.0.0.1:111", "postern.yaml:7: listeners[1].address cannot change"},
  };
  for (const auto& c : cases) {
    const std::string next_yaml = absl::StrReplaceAll(base, {{c.from, c.to}});
    auto next = Parse(next_yaml);
    ASSERT_TRUE(next.ok()) << next.status();
    absl::Status st = CheckReloadable(**running, **next);
    EXPECT_THAT(std::string(st.message()), StartsWith(c.want)) << c.to;
  }
  auto same = Parse(base);
  ASSERT_TRUE(same.ok());
  EXPECT_TRUE(CheckReloadable(**running, **same).ok());
}

TEST_F(ConfigTest, DeepNestingIsAnErrorNotACrash) {
  const std::string deep = "workers: " + std::string(20000, '[') + "\n";
  auto parsed = ParseConfig(deep, "deep.yaml");
  ASSERT_FALSE(parsed.ok());
  EXPECT_THAT(std::string(parsed.status().message()), StartsWith("deep.yaml"));
}

}  // namespace
}  // namespace postern
