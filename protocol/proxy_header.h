#pragma once

// The PROXY protocol (HAProxy's spec, shared/specs/proxy-protocol.txt,
// "PP" below): the receiver side for versions 1 (text, PP 2.1) and 2
// (binary, PP 2.2), and a version 2 writer for the connections Postern opens
// to its backends.
//
// Receiving: a listener configured for the PROXY protocol (never
// auto-detected, PP 2 and 5) feeds every byte the client sends to a
// ProxyHeaderParser until it reports kDone or kError, and only then starts
// its own protocol (PP 2: nothing, not even an IMAP/POP3 greeting, before a
// complete and valid header). The parser never consumes a byte past the
// header: what follows it is the client's first IMAP/POP3 or TLS bytes and
// stays in the caller's buffer. Partial headers are waited for (PP 2
// recommends tolerance); the caller bounds the wait with a timeout of at
// least 3 s (PP 2). Anything else that does not match the spec exactly is
// kError: abort the connection (PP 2.1, 2.2; DIGEST e.18).
//
// Accepting the header only from trusted peers (DIGEST d.5) is the caller's
// business: the parser does not know who sent the bytes.

#include <sys/socket.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "protocol/buffer.h"

namespace postern {

// An IPv4 or IPv6 endpoint, compact (no sockaddr). IPv4 is kept mapped into
// IPv6 (::ffff:a.b.c.d) the way proxy/peer_address.h keeps it, so that `ip`
// is one 16-byte key for both families; `v4` tells which one it was.
struct ProxyAddress {
  std::array<uint8_t, 16> ip{};  // network order
  uint16_t port = 0;             // host order
  bool v4 = false;

  static ProxyAddress V4(const std::array<uint8_t, 4>& ip4, uint16_t port);
  static ProxyAddress V6(const std::array<uint8_t, 16>& ip6, uint16_t port);
  // A numeric IPv4 or IPv6 literal ("192.0.2.1", "2001:db8::1"), as
  // inet_pton reads it; INVALID_ARGUMENT for anything else.
  static absl::StatusOr<ProxyAddress> Parse(absl::string_view ip, uint16_t port);

  // The 4 IPv4 bytes (meaningful when v4).
  std::array<uint8_t, 4> ip4() const { return {ip[12], ip[13], ip[14], ip[15]}; }
  std::string IpText() const;  // "192.0.2.1", "2001:db8::1"
  std::string Text() const;    // "192.0.2.1:993", "[2001:db8::1]:993"
  // Fills a sockaddr_in (v4) or sockaddr_in6; returns its length.
  socklen_t ToSockaddr(sockaddr_storage* out) const;

  friend bool operator==(const ProxyAddress&, const ProxyAddress&) = default;
};

// What a header says about the connection.
enum class ProxyKind : uint8_t {
  // source/destination hold the client's TCP connection (v1 TCP4/TCP6, v2
  // PROXY over INET/INET6 STREAM): use them instead of the socket's.
  kProxy,
  // v2 LOCAL: the proxy's own connection (a health check); use the socket's
  // addresses. The address block and any TLVs are skipped unread (PP 2.2).
  kLocal,
  // v1 UNKNOWN: use the socket's addresses (PP 2.1).
  kUnknown,
  // v2 PROXY for a family or transport Postern does not take (UNSPEC, UNIX,
  // UDP): PP 2.2 says a receiver falls back to UNSPEC for such valid
  // combinations, i.e. uses the socket's addresses (or refuses: the caller
  // may). TLVs are still checked.
  kUnspec,
};

const char* ProxyKindName(ProxyKind kind);  // "proxy", "local", "unknown", "unspec"

// The PP2_TYPE_SSL TLV (PP 2.2.6).
struct ProxySsl {
  static constexpr uint8_t kClientSsl = 0x01;       // PP2_CLIENT_SSL
  static constexpr uint8_t kClientCertConn = 0x02;  // PP2_CLIENT_CERT_CONN
  static constexpr uint8_t kClientCertSess = 0x04;  // PP2_CLIENT_CERT_SESS

  bool present = false;
  uint8_t client = 0;   // the bit field above
  uint32_t verify = 0;  // 0: the client presented a certificate and it was verified
  // Sub-TLVs, as sent (US-ASCII, the CN UTF-8); empty when absent.
  std::string version;     // PP2_SUBTYPE_SSL_VERSION, "TLSv1.3"
  std::string cn;          // PP2_SUBTYPE_SSL_CN, the client certificate's CN
  std::string cipher;      // PP2_SUBTYPE_SSL_CIPHER, "TLS_AES_256_GCM_SHA384"
  std::string sig_alg;     // PP2_SUBTYPE_SSL_SIG_ALG, "RSA-SHA256"
  std::string key_alg;     // PP2_SUBTYPE_SSL_KEY_ALG, "RSA2048"
  std::string group;       // PP2_SUBTYPE_SSL_GROUP, "secp256r1"
  std::string sig_scheme;  // PP2_SUBTYPE_SSL_SIG_SCHEME, "rsa_pss_rsae_sha256"
  // PP2_SUBTYPE_SSL_CLIENT_CERT (DER) is skipped; only its presence is kept.
  bool client_cert = false;

  // True when the client spoke TLS to the proxy that sent the header.
  bool client_ssl() const { return present && (client & kClientSsl) != 0; }

  friend bool operator==(const ProxySsl&, const ProxySsl&) = default;
};

// A parsed header. Strings are the bytes as sent: escape them before logging.
struct ProxyHeader {
  int version = 0;  // 1 or 2
  ProxyKind kind = ProxyKind::kUnknown;
  ProxyAddress source;       // kProxy only: the client
  ProxyAddress destination;  // kProxy only: the address the client connected to
  // v2 TLVs (PP 2.2.1-2.2.7); empty when absent.
  std::string alpn;       // PP2_TYPE_ALPN
  std::string authority;  // PP2_TYPE_AUTHORITY: the TLS SNI host name, <= 255 bytes
  std::string unique_id;  // PP2_TYPE_UNIQUE_ID, <= 128 bytes
  std::string netns;      // PP2_TYPE_NETNS
  bool crc32c = false;    // a PP2_TYPE_CRC32C TLV was present (and matched)
  ProxySsl ssl;           // PP2_TYPE_SSL

  // True when the caller must use the socket's own addresses.
  bool use_socket_addresses() const { return kind != ProxyKind::kProxy; }

  friend bool operator==(const ProxyHeader&, const ProxyHeader&) = default;
};

struct ProxyHeaderOptions {
  bool accept_v1 = true;
  bool accept_v2 = true;
  // The largest v2 header accepted, its 16 fixed bytes included. PP 2.2
  // allows 16 + 65535; what HAProxy sends with every TLV it knows (SSL with
  // CN, cipher and algorithms, authority, unique id, CRC32C) is a few hundred
  // bytes, a client certificate in DER one or two KiB more. Bigger headers
  // are refused (RESOURCE_EXHAUSTED) before any byte of them is buffered.
  size_t max_v2_size = 4096;
};

class ProxyHeaderParser {
 public:
  // PP 2.1: the longest v1 line, CR LF included.
  static constexpr size_t kMaxV1Size = 107;
  // PP 2.2: the fixed part of a v2 header.
  static constexpr size_t kV2FixedSize = 16;
  // PP 2.2: the v2 signature (12 bytes; note the NUL).
  static constexpr absl::string_view kV2Signature{"\r\n\r\n\0\r\nQUIT\n", 12};

  enum class Status {
    kNeedMore,  // every byte fed so far belongs to an incomplete header
    kDone,      // header() is complete
    kError,     // error() says why: abort the connection
  };

  explicit ProxyHeaderParser(const ProxyHeaderOptions& options = {});

  // Feeds the next bytes received, in pieces of any size: the result does
  // not depend on how the stream was cut.
  //  kNeedMore: all of `input` was consumed (*consumed == input.size()).
  //  kDone: *consumed = the bytes of `input` that ended the header; the rest
  //    of `input` is the client's and was not looked at.
  //  kError: *consumed is unspecified; error() holds INVALID_ARGUMENT
  //    (malformed) or RESOURCE_EXHAUSTED (a v2 header over max_v2_size).
  // Errors are reported at the first byte that proves the header wrong
  // (PP 2.1: "abort the connection as soon as possible"), except those of
  // the address block and TLVs, which are parsed only once complete (PP 2.2).
  // After kDone or kError every call returns the same status and consumes
  // nothing.
  Status Feed(absl::string_view input, size_t* consumed);

  // Takes the header off the front of `buf`: feeds its slices and drains
  // exactly the header's bytes (everything, while kNeedMore; nothing after).
  Status Feed(Buffer& buf);

  Status status() const { return status_; }
  // After kDone.
  const ProxyHeader& header() const { return header_; }
  // The header's length in bytes (after kDone), or the bytes taken so far.
  size_t size() const { return seen_; }
  // After kError.
  const absl::Status& error() const { return error_; }

 private:
  enum class State : uint8_t {
    kStart,     // nothing seen
    kV1Prefix,  // inside "PROXY "
    kV1Line,    // after "PROXY ": up to CR LF
    kV1Cr,      // after a CR: LF must follow
    kV2Fixed,   // inside the 16 fixed bytes
    kV2Body,    // address block and TLVs: counting bytes
    kComplete,  // the whole header is in
  };

  Status Fail(absl::Status error);
  // Looks at one byte of the signatures or fixed part; false after Fail.
  bool StepPrefix(uint8_t c);
  Status Finish(absl::string_view header);

  ProxyHeaderOptions options_;
  State state_ = State::kStart;
  Status status_ = Status::kNeedMore;
  size_t seen_ = 0;      // header bytes consumed so far
  size_t v2_total_ = 0;  // kV2Body: 16 + len
  uint8_t fam_ = 0;
  uint8_t v2_len_hi_ = 0;
  // The header bytes of earlier Feed calls, when it arrived in pieces.
  std::string partial_;
  ProxyHeader header_;
  absl::Status error_;
};

// Parses a complete v1 line ("PROXY ... \r\n", CR LF included) or v2 header
// (exactly 16 + len bytes): what ProxyHeaderParser does once it has the
// whole header. For callers that framed the header themselves.
absl::StatusOr<ProxyHeader> ParseProxyV1(absl::string_view line);
absl::StatusOr<ProxyHeader> ParseProxyV2(absl::string_view header);

// What BuildProxyV2 puts after the addresses.
struct ProxyV2Tlvs {
  absl::string_view authority = {};  // PP2_TYPE_AUTHORITY (the client's SNI); left out when empty
  absl::string_view alpn = {};       // PP2_TYPE_ALPN; left out when empty
  absl::string_view unique_id = {};  // PP2_TYPE_UNIQUE_ID; left out when empty
  // PP2_TYPE_SSL with PP2_CLIENT_SSL set and verify = 1 (no client
  // certificate), with VERSION and CIPHER sub-TLVs when not empty: tells the
  // backend (Dovecot's haproxy support) that the client used TLS.
  bool ssl = false;
  absl::string_view ssl_version = {};
  absl::string_view ssl_cipher = {};
  // PP2_TYPE_CRC32C over the whole header (PP 2.2.3), last TLV.
  bool crc32c = true;
};

// A v2 PROXY header for TCP from `source` to `destination` (PP 2.2), to be
// sent in one write before anything else on the backend connection (PP 2).
// Both IPv4: family INET (0x11); otherwise INET6 (0x21), an IPv4 address
// sent mapped (::ffff:a.b.c.d), as HAProxy does for mixed families.
// INVALID_ARGUMENT: authority over 255 bytes, unique_id over 128 bytes
// (PP 2.2.5), or a header over 65535 + 16 bytes.
absl::StatusOr<std::string> BuildProxyV2(const ProxyAddress& source,
                                         const ProxyAddress& destination,
                                         const ProxyV2Tlvs& tlvs = {});
// A v2 LOCAL header with no address (family UNSPEC, len 0): for a backend
// health check (PP 2.2).
std::string BuildProxyV2Local();

}  // namespace postern
