#pragma once

// Postern's configuration: parsed from YAML once, validated whole, then held
// as an immutable snapshot (std::shared_ptr<const Config>) that every session
// keeps for its lifetime. A bad file yields an error naming the key and the
// line; nothing is started.

#include <netinet/in.h>
#include <sys/socket.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "protocol/front.h"
#include "protocol/pop3_gateway.h"
#include "routing/abuse.h"
#include "routing/shard_ring.h"

namespace postern {

enum class Protocol { kImap, kPop3 };
enum class TlsMode { kImplicit, kStartTls, kNone };

const char* ProtocolName(Protocol p);  // "imap" / "pop3"
const char* TlsModeName(TlsMode m);    // "implicit" / "starttls" / "none"

// A resolved socket address (IPv4 or IPv6 literal plus port).
struct SocketAddress {
  sockaddr_storage storage{};
  socklen_t length = 0;
  std::string text;  // as written, "127.0.0.1:9993" / "[::1]:9993"
};

// An address block ("10.0.0.0/8", "2001:db8::/32", or one address).
struct Cidr {
  std::array<uint8_t, 16> ip{};  // IPv4 mapped into IPv6
  int bits = 128;                // of the mapped form
  bool Contains(const std::array<uint8_t, 16>& addr) const;
};
absl::StatusOr<Cidr> ParseCidr(absl::string_view text);

// Parses "host:port" or "[v6]:port" with a numeric host (no DNS at startup).
absl::StatusOr<SocketAddress> ParseSocketAddress(const std::string& host, uint16_t port);
// The port of an IPv4 or IPv6 address, host order.
uint16_t PortOf(const SocketAddress& a);

struct ListenerConfig {
  std::string name;  // listeners[i].name, for logs; defaults to "<protocol>-<port>"
  Protocol protocol = Protocol::kImap;
  TlsMode tls = TlsMode::kImplicit;
  SocketAddress address;  // listeners[i].address: "127.0.0.1:9993"
  // listeners[i].allow_plaintext_auth: accept LOGIN/USER/AUTH before TLS on a
  // listener with tls: none or starttls. Default false (RFC 8314 section 4.1).
  bool allow_plaintext_auth = false;
  int backlog = 511;
  // listeners[i].directory: the name of the directory that checks logins
  // here; "" for the top-level `directory` (passthrough when none).
  std::string directory;
  // listeners[i].proxy_protocol: behind a load balancer: every connection
  // starts with a PROXY protocol v1 or v2 header (never guessed), accepted
  // only from trusted_networks; the address in it is the client's.
  bool proxy_protocol = false;
  // listeners[i].trusted_networks: peers whose PROXY header (and whose IMAP
  // ID x-originating-*/x-proxy-ttl fields, for a proxy in front) are
  // believed. CIDR blocks.
  std::vector<Cidr> trusted_networks;
  // listeners[i].sasl_mechanisms: offered in AUTHENTICATE / AUTH, in order.
  std::vector<Credentials::Mechanism> sasl = {Credentials::Mechanism::kPlain,
                                              Credentials::Mechanism::kSaslLogin};
};

enum class ImapBackendLogin { kLogin, kPlain };  // LOGIN command / AUTHENTICATE PLAIN
// TLS toward a backend.
enum class BackendTls { kNone, kImplicit, kStartTls };
enum class Pop3BackendLogin { kUser, kPlain };  // USER+PASS / AUTH PLAIN
// How POP3 clients are served by a backend: relayed to its POP3 server, or
// translated onto its IMAP server by the gateway.
enum class Pop3Mode { kRelay, kGateway };

struct BackendConfig {
  std::string name;  // backends[i].name (unique)
  std::string host;  // backends[i].address: numeric IPv4/IPv6
  uint16_t imap_port = 143;
  uint16_t pop3_port = 110;
  SocketAddress imap;                                      // host:imap_port
  SocketAddress pop3;                                      // host:pop3_port
  ImapBackendLogin imap_login = ImapBackendLogin::kLogin;  // backends[i].imap_login: login | plain
  Pop3BackendLogin pop3_login = Pop3BackendLogin::kUser;   // backends[i].pop3_login: user | plain
  // backends[i].pop3_mode: relay | gateway. A gateway backend is logged in to
  // over IMAP (imap_port, imap_login) for POP3 clients too; pop3_port unused.
  Pop3Mode pop3_mode = Pop3Mode::kRelay;
  // backends[i].master_user / master_password_file: after a directory
  // checked the login, Postern logs in here with AUTHENTICATE PLAIN as this
  // master user acting as the user (Dovecot master users), so the backend
  // never needs the user's secret. Empty: the user's own credentials.
  std::string master_user;
  std::string master_password;  // read from the file at load
  std::string master_password_file;
  // backends[i].tls: none | implicit | starttls (STARTTLS / STLS before the
  // login: credentials never cross in the clear).
  BackendTls tls = BackendTls::kNone;
  std::string tls_ca_file;  // backends[i].tls_ca_file: PEM CAs to verify it with
  std::string tls_name;     // backends[i].tls_name: the name it must carry (default: address)
  bool tls_verify = true;   // backends[i].tls_verify: false is an explicit, logged opt-out
  // backends[i].send_proxy: none | v2: a PROXY protocol v2 header with the
  // client's address before anything else.
  bool send_proxy_v2 = false;
  // backends[i].source_addresses: local addresses to connect from, in
  // turn (more than ~64k sessions to one backend address and port).
  std::vector<SocketAddress> source_addresses;
};

// tls.certificates[i]: one certificate of several (SNI).
struct TlsCertificateConfig {
  std::string certificate;  // PEM chain, leaf first
  std::string key;          // PEM private key
};

struct TlsConfig {
  std::string certificate;  // tls.certificate: PEM chain, leaf first
  std::string key;          // tls.key: PEM private key
  // tls.certificates: instead of certificate/key, several certificates
  // chosen by the client's server name (SNI; the first is the default), an
  // ECDSA and an RSA one side by side for a name (tls/README.md).
  std::vector<TlsCertificateConfig> certificates;
  // tls.ticket_key_file: session ticket keys shared by a fleet (newest
  // first; tls/tls_ticket_keys.h), re-read when it changes. Empty: keys
  // made in memory, rotated every 12 hours, kept across reloads.
  std::string ticket_key_file;
  std::string min_version = "1.2";  // tls.min_version: "1.2" | "1.3"
  bool session_tickets = true;      // tls.session_tickets
};

struct LimitsConfig {
  // limits.max_line: bytes in one command line before login. A maximal
  // RFC 2971 ID command (30 pairs, 1024-octet values, quoted with escapes)
  // is about 62 KB; memory for a long line is held only while it is read.
  size_t max_line = 64 * 1024;
  size_t max_prelogin_literal = 65536;  // limits.max_prelogin_literal
  uint32_t error_budget = 10;  // limits.error_budget: bad commands before the session is closed
  size_t relay_high_watermark =
      256 * 1024;  // limits.relay_high_watermark: bytes queued toward one side
  size_t relay_low_watermark = 64 * 1024;  // limits.relay_low_watermark
  uint32_t max_auth_attempts = 3;  // limits.max_auth_attempts: failed logins before disconnect
  // limits.max_pending_replies: replies queued toward a client before login
  // past which its commands are not parsed nor its socket read until they
  // drain (Dovecot's pre-login output limit is 4 KiB).
  size_t max_pending_replies = 4096;
  // limits.max_connections_per_ip: concurrent connections from one client
  // IP (all workers together); 0: no cap.
  uint32_t max_connections_per_ip = 256;
  // limits.max_prelogin_sessions: concurrent sessions before login, per
  // worker; 0: no cap.
  uint32_t max_prelogin_sessions = 5000;
  // limits.max_sessions: concurrent sessions of this instance (all workers,
  // before and after login). Each holds two descriptors: at start the open
  // files limit is raised to what this needs, or Postern refuses to start.
  // 0: as many as the open files limit allows (raised to its hard limit).
  uint32_t max_sessions = 0;
};

struct TimeoutsConfig {
  using Ms = std::chrono::milliseconds;
  Ms login{60'000};  // timeouts.login: a client silent this long before login is closed
  // timeouts.login_deadline: the whole pre-login phase, however active the
  // client is (Dovecot: 3 minutes).
  Ms login_deadline{180'000};
  Ms backend_connect{5'000};  // timeouts.backend_connect: TCP connect
  Ms backend_login{15'000};   // timeouts.backend_login: greeting + login answer
  Ms imap_idle{
      31 * 60'000};  // timeouts.imap_idle: no bytes either way after login (IDLE needs >= 30 min)
  Ms pop3_idle{10 * 60'000};  // timeouts.pop3_idle: RFC 1939 section 3 (at least 10 minutes)
  // timeouts.shutdown_grace: after SIGTERM, how long sessions may go on
  // before each is told to end at its next safe point.
  Ms shutdown_grace{10'000};
  // timeouts.shutdown_deadline: after SIGTERM, when the sessions still open
  // are cut and the process exits (0) whatever they were doing.
  Ms shutdown_deadline{30'000};
};

// directories[i]: who checks a login before a backend sees it
// (routing/directory.h).
struct DirectoryConfig {
  enum class Type { kPassthrough, kPasswdFile, kAuthHttp };
  std::string name;  // directories[i].name (unique)
  Type type = Type::kPassthrough;
  // passwd-file
  std::string path;               // directories[i].path
  bool case_insensitive = false;  // directories[i].case_insensitive: user names
  // auth-http (nginx's auth_http protocol)
  std::vector<SocketAddress> servers;  // directories[i].servers: tried in turn
  std::string uri = "/auth";           // directories[i].uri
  std::chrono::milliseconds timeout{5'000};
  uint32_t max_connections = 8;  // keep-alive connections per worker
  uint32_t max_queue = 256;      // lookups waiting for a connection, per worker
  std::vector<std::pair<std::string, std::string>> headers;  // extra request headers
};

// shards[i]: a set of replicas serving the same mailboxes, on the ring.
struct ShardConfig {
  std::string name;              // shards[i].name
  uint32_t weight = 1;           // shards[i].weight
  std::vector<size_t> backends;  // shards[i].backends: replicas, indexes into Config::backends
  int fallback = -1;             // shards[i].fallback: a shard index, -1 for none
};

// health: when a backend counts as down.
struct HealthConfig {
  uint32_t failures = 3;  // health.failures: consecutive connect/greeting failures
  std::chrono::milliseconds cooldown{10'000};       // health.cooldown: down this long
  std::chrono::milliseconds check_interval{5'000};  // health.check_interval: 0 = no active checks
  std::chrono::milliseconds check_timeout{2'000};   // health.check_timeout
  // health.disconnect_spread: a backend that dies takes its clients with
  // it over this long (randomly), so their reconnects do not stampede.
  std::chrono::milliseconds disconnect_spread{0};
  uint32_t max_attempts = 3;  // health.max_attempts: backends tried per login
};

// redis: shared state of a fleet (abuse counters, routing overrides).
struct RedisConfig {
  bool enabled = false;
  SocketAddress address;                   // redis.address
  std::chrono::milliseconds timeout{200};  // redis.timeout: per command
  std::string prefix = "postern:";         // redis.prefix: for every key
};

// auth_cache: directory answers kept for a while (routing/directory_cache.h).
struct AuthCacheConfig {
  std::chrono::milliseconds ttl{60'000};  // auth_cache.ttl (max_entries: 0 turns the cache off)
  std::chrono::milliseconds negative_ttl{10'000};  // auth_cache.negative_ttl
  size_t max_entries = 100'000;                    // auth_cache.max_entries
};

// The POP3-to-IMAP gateway (backends with pop3_mode: gateway).
struct GatewayConfig {
  // gateway.uidl_format: Dovecot's pop3_uidl_format variables (%u uid,
  // %v uidvalidity; protocol/pop3_gateway.h UidlFormat), so users moved
  // from Dovecot's POP3 server keep their UIDLs.
  std::string uidl_format = "%08Xu%08Xv";
  // gateway.seen: deferred (Dovecot: RETR marks \Seen, stored at the end) |
  // immediate | never.
  Pop3GatewayOptions::Seen seen = Pop3GatewayOptions::Seen::kDeferred;
};

struct LogConfig {
  std::string level = "info";  // log.level: trace|debug|info|warn|error
  // log.format: json (one JSON object per line, to stdout) | text.
  bool json = true;
  // log.trace_users: users whose sessions are traced byte for byte (both
  // directions; pre-login secrets masked), for debugging a client.
  std::vector<std::string> trace_users;
};

// admin: the HTTP admin endpoint (proxy/admin.h). Off without the section.
struct AdminConfig {
  bool enabled = false;
  SocketAddress address;  // admin.address, default 127.0.0.1:9199
  // admin.token_file (required): the bearer token every route but
  // /healthz and /readyz needs; read at load (`token`) and by the endpoint.
  std::string token_file;
  std::string token;
  // admin.drain_spread: a drained backend's sessions are closed over this
  // long (randomly), so their clients do not reconnect all at once.
  std::chrono::milliseconds drain_spread{10'000};
};

struct Config {
  int workers = 0;  // workers: 0 means one per core
  std::vector<ListenerConfig> listeners;
  TlsConfig tls;  // required when any listener uses TLS
  bool tls_needed = false;
  std::vector<BackendConfig> backends;
  // routing.default_backend and routing.users: user -> backend index.
  size_t default_backend = 0;
  absl::flat_hash_map<std::string, size_t> user_backends;
  LimitsConfig limits;
  TimeoutsConfig timeouts;
  GatewayConfig gateway;
  std::vector<ShardConfig> shards;
  std::shared_ptr<const ShardRing> ring;  // over `shards`, null without shards
  bool ring_domain_only = false;          // routing.ring_key: user | domain
  bool redis_overrides = false;           // routing.redis_overrides: per-user keys in Redis
  std::chrono::milliseconds override_cache_ttl{1'000};  // routing.override_cache_ttl
  HealthConfig health;
  RedisConfig redis;
  uint32_t proxy_ttl = 5;  // proxy_ttl: hops a login may take through proxies
  // abuse: failed logins per client IP and per user (routing/abuse.h):
  // progressive delays, then temporary blocks; fleet-wide through Redis.
  AbusePolicy abuse;
  std::vector<DirectoryConfig> directories;
  std::string directory;  // the default directory's name; "": passthrough
  AuthCacheConfig auth_cache;
  LogConfig log;
  AdminConfig admin;
  // user / group: after binding the listeners (privileged ports), the
  // process drops to them. Empty: stays who it is.
  std::string user;
  std::string group;
  uid_t uid = 0;                     // of `user` (resolved at load)
  gid_t gid = 0;                     // of `group`, else of `user`'s primary group
  std::string hostname = "postern";  // greeting name (hostname:)
  std::string source;                // the file it came from
  // The line of each key in that file, by path ("listeners[0].address"),
  // for errors found after loading (a reload's CheckReloadable).
  absl::flat_hash_map<std::string, int> lines;
};

// Loads and validates; on error the message names the file, the key and the
// line ("postern.yaml:12: listeners[1].tls: expected implicit, starttls or none").
// Relative paths in the file (tls.certificate, tls.key) resolve against the
// directory of `path` (for ParseConfig: of `source_name`), made absolute.
absl::StatusOr<std::shared_ptr<const Config>> LoadConfigFile(const std::string& path);
absl::StatusOr<std::shared_ptr<const Config>> ParseConfig(const std::string& yaml,
                                                          const std::string& source_name);

}  // namespace postern
