#include "protocol/proxy_header.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "protocol/buffer.h"
#include "protocol/crc32c.h"
#include "tests/protocol/split_feeder.h"

namespace postern {
namespace {

using ::postern::testing::AllCuttings;
using ::postern::testing::Chunks;
using ::postern::testing::Describe;
using ::testing::HasSubstr;
using Status = ProxyHeaderParser::Status;

// --- Test vectors captured from HAProxy 2.6.12 (Debian 12) ---------------------
// tests/protocol/capture_proxy_headers.py starts haproxy toward a recording
// listener on loopback and prints these. Each is the header followed by the
// client's first bytes, "HELLO\n", as the backend received them.

// server ... send-proxy (client 127.0.0.1:35694 -> frontend 127.0.0.1:18101)
const std::string kHaproxyV1Tcp4 = "PROXY TCP4 127.0.0.1 127.0.0.1 35694 18101\r\nHELLO\n";
// server ... send-proxy, frontend bound on [::1]
const std::string kHaproxyV1Tcp6 = "PROXY TCP6 ::1 ::1 48894 18102\r\nHELLO\n";
// server ... send-proxy-v2
const std::string kHaproxyV2Tcp4(
    "\x0d\x0a\x0d\x0a\x00\x0d\x0a\x51\x55\x49\x54\x0a\x21\x11\x00\x0c\x7f\x00\x00\x01\x7f\x00\x00"
    "\x01\x8c\x7a\x46\xb7\x48\x45\x4c\x4c\x4f\x0a",
    34);
// server ... send-proxy-v2 proxy-v2-options crc32c, frontend on [::1]
const std::string kHaproxyV2Tcp6Crc(
    "\x0d\x0a\x0d\x0a\x00\x0d\x0a\x51\x55\x49\x54\x0a\x21\x21\x00\x2b\x00\x00\x00\x00\x00\x00\x00"
    "\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
    "\x00\x01\xe4\x8a\x46\xb8\x03\x00\x04\x34\x6f\xf1\xb6\x48\x45\x4c\x4c\x4f\x0a",
    65);
// server ... send-proxy-v2-ssl-cn proxy-v2-options
// ssl,cert-cn,ssl-cipher,cert-sig,cert-key,authority,crc32c,unique-id; the
// frontend is "bind ... ssl crt ... verify optional alpn imap"; the client
// sent SNI mail.example.com, ALPN imap and a certificate with
// CN=alice@example.com, over TLS 1.3.
const std::string kHaproxyV2SslCn(
    "\x0d\x0a\x0d\x0a\x00\x0d\x0a\x51\x55\x49\x54\x0a\x21\x11\x00\xb4\x7f\x00\x00\x01\x7f\x00\x00"
    "\x01\x88\x1c\x46\xb9\x03\x00\x04\x59\x07\xbe\x3c\x01\x00\x04\x69\x6d\x61\x70\x02\x00\x10\x6d"
    "\x61\x69\x6c\x2e\x65\x78\x61\x6d\x70\x6c\x65\x2e\x63\x6f\x6d\x05\x00\x2e\x37\x46\x30\x30\x30"
    "\x30\x30\x31\x3a\x38\x38\x31\x43\x5f\x37\x46\x30\x30\x30\x30\x30\x31\x3a\x34\x36\x42\x39\x5f"
    "\x36\x42\x30\x45\x44\x45\x30\x39\x5f\x30\x30\x30\x34\x3a\x30\x38\x35\x37\x20\x00\x53\x07\x00"
    "\x00\x00\x00\x21\x00\x07\x54\x4c\x53\x76\x31\x2e\x33\x22\x00\x11\x61\x6c\x69\x63\x65\x40\x65"
    "\x78\x61\x6d\x70\x6c\x65\x2e\x63\x6f\x6d\x25\x00\x07\x52\x53\x41\x32\x30\x34\x38\x24\x00\x0a"
    "\x52\x53\x41\x2d\x53\x48\x41\x32\x35\x36\x23\x00\x16\x54\x4c\x53\x5f\x41\x45\x53\x5f\x32\x35"
    "\x36\x5f\x47\x43\x4d\x5f\x53\x48\x41\x33\x38\x34\x48\x45\x4c\x4c\x4f\x0a",
    202);
// The same server, a TLS 1.2 client with SNI imap.example.org, no ALPN and
// no certificate (HAProxy still sends verify = 0).
const std::string kHaproxyV2SslNoCert(
    "\x0d\x0a\x0d\x0a\x00\x0d\x0a\x51\x55\x49\x54\x0a\x21\x11\x00\x9e\x7f\x00\x00\x01\x7f\x00\x00"
    "\x01\x88\x24\x46\xb9\x03\x00\x04\xc4\x6f\x6d\xed\x02\x00\x10\x69\x6d\x61\x70\x2e\x65\x78\x61"
    "\x6d\x70\x6c\x65\x2e\x6f\x72\x67\x05\x00\x2e\x37\x46\x30\x30\x30\x30\x30\x31\x3a\x38\x38\x32"
    "\x34\x5f\x37\x46\x30\x30\x30\x30\x30\x31\x3a\x34\x36\x42\x39\x5f\x36\x42\x30\x45\x44\x45\x30"
    "\x39\x5f\x30\x30\x30\x35\x3a\x30\x38\x35\x37\x20\x00\x44\x01\x00\x00\x00\x00\x21\x00\x07\x54"
    "\x4c\x53\x76\x31\x2e\x32\x25\x00\x07\x52\x53\x41\x32\x30\x34\x38\x24\x00\x0a\x52\x53\x41\x2d"
    "\x53\x48\x41\x32\x35\x36\x23\x00\x1b\x45\x43\x44\x48\x45\x2d\x52\x53\x41\x2d\x41\x45\x53\x32"
    "\x35\x36\x2d\x47\x43\x4d\x2d\x53\x48\x41\x33\x38\x34\x48\x45\x4c\x4c\x4f\x0a",
    180);
// server ... send-proxy-v2 check check-send-proxy: the health check (LOCAL).
const std::string kHaproxyV2Local(
    "\x0d\x0a\x0d\x0a\x00\x0d\x0a\x51\x55\x49\x54\x0a\x20\x00\x00\x00", 16);

// --- Builders for synthetic headers --------------------------------------------

const std::string kSig(ProxyHeaderParser::kV2Signature);

std::string Be16(size_t v) {
  return std::string{static_cast<char>((v >> 8) & 0xFF), static_cast<char>(v & 0xFF)};
}

// A v2 header: signature, ver_cmd, fam, len (body's size unless given), body.
std::string V2(uint8_t ver_cmd, uint8_t fam, const std::string& body, int len = -1) {
  return kSig + static_cast<char>(ver_cmd) + static_cast<char>(fam) +
         Be16(len < 0 ? body.size() : static_cast<size_t>(len)) + body;
}

std::string Tlv(uint8_t type, const std::string& value) {
  return static_cast<char>(type) + Be16(value.size()) + value;
}

// 192.0.2.1:56324 -> 198.51.100.2:993
const std::string kAddr4("\xc0\x00\x02\x01\xc6\x33\x64\x02\xdc\x04\x03\xe1", 12);
// [2001:db8::1]:56324 -> [2001:db8::2]:993
const std::string kAddr6 = std::string("\x20\x01\x0d\xb8", 4) + std::string(11, '\0') + "\x01" +
                           std::string("\x20\x01\x0d\xb8", 4) + std::string(11, '\0') + "\x02" +
                           std::string("\xdc\x04\x03\xe1", 4);

// Fills in the value of the CRC32C TLV that `header` (a whole v2 header)
// ends with (PP 2.2.3).
std::string FixCrc(std::string header) {
  const size_t at = header.size() - 4;
  for (size_t k = 0; k < 4; ++k) header[at + k] = '\0';
  const uint32_t crc = Crc32c(header);
  for (size_t k = 0; k < 4; ++k) header[at + k] = static_cast<char>(crc >> (24 - 8 * k));
  return header;
}

// --- Running the parser ---------------------------------------------------------

std::string Describe(const ProxyHeader& h) {
  std::string s = absl::StrCat("v", h.version, " ", ProxyKindName(h.kind));
  if (h.kind == ProxyKind::kProxy) {
    absl::StrAppend(&s, " ", h.source.Text(), " ", h.destination.Text());
  }
  if (!h.alpn.empty()) absl::StrAppend(&s, " alpn=", h.alpn);
  if (!h.authority.empty()) absl::StrAppend(&s, " authority=", h.authority);
  if (!h.unique_id.empty()) absl::StrAppend(&s, " unique_id=", h.unique_id);
  if (!h.netns.empty()) absl::StrAppend(&s, " netns=", h.netns);
  if (h.crc32c) absl::StrAppend(&s, " crc32c");
  if (h.ssl.present) {
    absl::StrAppend(&s, absl::StrFormat(" ssl=%02x/%d", h.ssl.client, h.ssl.verify));
    const std::pair<const char*, const std::string*> fields[] = {
        {"version", &h.ssl.version},      {"cn", &h.ssl.cn},           {"cipher", &h.ssl.cipher},
        {"sig_alg", &h.ssl.sig_alg},      {"key_alg", &h.ssl.key_alg}, {"group", &h.ssl.group},
        {"sig_scheme", &h.ssl.sig_scheme}};
    for (const auto& [name, value] : fields) {
      if (!value->empty()) absl::StrAppend(&s, ",", name, "=", *value);
    }
    if (h.ssl.client_cert) absl::StrAppend(&s, ",client_cert");
  }
  return s;
}

struct Outcome {
  Status status = Status::kNeedMore;
  size_t consumed = 0;  // bytes the parser took, all chunks together
  std::string text;     // Describe(header) after kDone, "CODE: message" after kError

  friend bool operator==(const Outcome&, const Outcome&) = default;
};

std::ostream& operator<<(std::ostream& os, const Outcome& o) {
  const char* s = o.status == Status::kDone    ? "done"
                  : o.status == Status::kError ? "error"
                                               : "more";
  return os << s << " consumed=" << o.consumed << " " << o.text;
}

// Feeds the chunks in order, as reads arrive, until the parser is done or
// fails; checks that kNeedMore takes every byte and that nothing is taken
// once the header is complete.
Outcome FeedChunks(const Chunks& chunks, const ProxyHeaderOptions& options = {}) {
  ProxyHeaderParser parser(options);
  Outcome o;
  for (absl::string_view chunk : chunks) {
    size_t used = 0;
    o.status = parser.Feed(chunk, &used);
    EXPECT_LE(used, chunk.size());
    if (o.status == Status::kNeedMore) {
      EXPECT_EQ(used, chunk.size());
    }
    if (o.status != Status::kError) o.consumed += used;
    if (o.status != Status::kNeedMore) break;
  }
  if (o.status == Status::kDone) {
    o.text = Describe(parser.header());
    EXPECT_EQ(parser.size(), o.consumed);
  } else if (o.status == Status::kError) {
    o.text = absl::StrCat(absl::StatusCodeToString(parser.error().code()), ": ",
                          parser.error().message());
    o.consumed = 0;
  }
  // Once finished, the parser takes nothing more.
  size_t used = 1;
  if (o.status != Status::kNeedMore) {
    EXPECT_EQ(parser.Feed("more", &used), o.status);
    EXPECT_EQ(used, 0u);
  }
  return o;
}

Outcome RunWhole(absl::string_view input, const ProxyHeaderOptions& options = {}) {
  return FeedChunks(Chunks{input}, options);
}

// --- Table: every input, whole, at every split point, one byte at a time ------

struct Case {
  std::string name;
  std::string input;
  Status status;
  size_t consumed;     // for kDone: the header's length
  std::string expect;  // kDone: Describe() exactly; kError: a substring of the error
  ProxyHeaderOptions options = {};
};

std::ostream& operator<<(std::ostream& os, const Case& c) { return os << c.name; }

// `header` followed by `trailing` (the client's first bytes): done after
// exactly the header.
Case Done(std::string name, const std::string& header, std::string expect,
          const std::string& trailing = "") {
  return Case{std::move(name), header + trailing, Status::kDone, header.size(), std::move(expect)};
}

// A capture without the "HELLO\n" the client sent after it.
std::string Header(const std::string& capture) { return capture.substr(0, capture.size() - 6); }

Case Error(std::string name, std::string input, std::string expect) {
  return Case{std::move(name), std::move(input), Status::kError, 0, std::move(expect)};
}

Case More(std::string name, std::string input) {
  return Case{std::move(name), input, Status::kNeedMore, input.size(), ""};
}

std::vector<Case> ValidCases() {
  const std::string ipv6_max = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
  const std::string v6_line = "PROXY TCP6 " + ipv6_max + " " + ipv6_max + " 65535 65535\r\n";
  const std::string unknown_max = "PROXY UNKNOWN " + ipv6_max + " " + ipv6_max + " 65535 65535\r\n";
  const std::string ssl_fixed("\x07\x00\x00\x00\x00", 5);  // client 0x07, verify 0
  const std::string kProxy4 = "v2 proxy 192.0.2.1:56324 198.51.100.2:993";
  std::vector<Case> c = {
      // PP 2.1's example, followed by the client's own bytes.
      Done("v1_spec_example", "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n",
           "v1 proxy 192.168.0.1:56324 192.168.0.11:443",
           "GET / HTTP/1.1\r\nHost: 192.168.0.11\r\n\r\n"),
      // PP 2.1's longest TCP4 line, 56 octets.
      Done("v1_tcp4_max", "PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n",
           "v1 proxy 255.255.255.255:65535 255.255.255.255:65535"),
      Done("v1_zeros", "PROXY TCP4 0.0.0.0 10.0.0.0 0 0\r\n", "v1 proxy 0.0.0.0:0 10.0.0.0:0", "A"),
      // PP 2.1's longest TCP6 line, 104 octets.
      Done("v1_tcp6_max", v6_line,
           "v1 proxy [ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535 "
           "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535",
           "x"),
      Done("v1_tcp6_compressed_upper", "PROXY TCP6 2001:DB8::1 ::ffff:192.0.2.1 1 2\r\n",
           "v1 proxy [2001:db8::1]:1 [::ffff:192.0.2.1]:2"),
      Done("v1_unknown_short", "PROXY UNKNOWN\r\n", "v1 unknown", "* OK"),
      // PP 2.1's worst case: exactly 107 octets.
      Done("v1_unknown_107", unknown_max, "v1 unknown", "a1 NOOP\r\n"),
      // "the receiver must ignore anything presented before the CRLF".
      Done("v1_unknown_anything", std::string("PROXY UNKNOWN \x01\xfe junk  \r\n"), "v1 unknown"),
      Done("v1_unknown_nul", std::string("PROXY UNKNOWN \0\r\n", 17), "v1 unknown"),
      Done("haproxy_v1_tcp4", Header(kHaproxyV1Tcp4), "v1 proxy 127.0.0.1:35694 127.0.0.1:18101",
           "HELLO\n"),
      Done("haproxy_v1_tcp6", Header(kHaproxyV1Tcp6), "v1 proxy [::1]:48894 [::1]:18102",
           "HELLO\n"),
      Done("haproxy_v2_tcp4", Header(kHaproxyV2Tcp4), "v2 proxy 127.0.0.1:35962 127.0.0.1:18103",
           "HELLO\n"),
      Done("haproxy_v2_tcp6_crc32c", Header(kHaproxyV2Tcp6Crc),
           "v2 proxy [::1]:58506 [::1]:18104 crc32c", "HELLO\n"),
      Done("haproxy_v2_ssl_cn", Header(kHaproxyV2SslCn),
           "v2 proxy 127.0.0.1:34844 127.0.0.1:18105 alpn=imap authority=mail.example.com "
           "unique_id=7F000001:881C_7F000001:46B9_6B0EDE09_0004:0857 crc32c "
           "ssl=07/0,version=TLSv1.3,cn=alice@example.com,cipher=TLS_AES_256_GCM_SHA384,"
           "sig_alg=RSA-SHA256,key_alg=RSA2048",
           "HELLO\n"),
      Done("haproxy_v2_ssl_no_cert", Header(kHaproxyV2SslNoCert),
           "v2 proxy 127.0.0.1:34852 127.0.0.1:18105 authority=imap.example.org "
           "unique_id=7F000001:8824_7F000001:46B9_6B0EDE09_0005:0857 crc32c "
           "ssl=01/0,version=TLSv1.2,cipher=ECDHE-RSA-AES256-GCM-SHA384,sig_alg=RSA-SHA256,"
           "key_alg=RSA2048",
           "HELLO\n"),
      Done("haproxy_v2_local", kHaproxyV2Local, "v2 local", "a1 CAPABILITY\r\n"),
      Done("v2_tcp4", V2(0x21, 0x11, kAddr4), kProxy4, "a1"),
      Done("v2_tcp6", V2(0x21, 0x21, kAddr6), "v2 proxy [2001:db8::1]:56324 [2001:db8::2]:993"),
      // LOCAL: the block is skipped unread, whatever the family says (PP 2.2).
      Done("v2_local_with_junk", V2(0x20, 0xFF, "junk!"), "v2 local", "rest"),
      Done("v2_local_with_tcp4", V2(0x20, 0x11, kAddr4 + "\x01"), "v2 local"),
      // Valid combinations Postern does not take fall back to UNSPEC (PP 2.2).
      Done("v2_proxy_unspec", V2(0x21, 0x00, ""), "v2 unspec"),
      Done("v2_proxy_unspec_tlv", V2(0x21, 0x00, Tlv(0x02, "imap.example.com")),
           "v2 unspec authority=imap.example.com"),
      Done("v2_udp4", V2(0x21, 0x12, kAddr4), "v2 unspec"),
      Done("v2_udp6", V2(0x21, 0x22, kAddr6 + Tlv(0x04, "")), "v2 unspec"),
      Done("v2_unix_stream", V2(0x21, 0x31, std::string(216, 'u')), "v2 unspec"),
      Done("v2_unix_dgram", V2(0x21, 0x32, std::string(216, 'u') + Tlv(0x05, "id")),
           "v2 unspec unique_id=id"),
      // TLVs: NOOP, the custom/experimental/reserved ranges and unknown types
      // are skipped (PP 2.2.4, 2.2.8); NETNS kept; SSL with every sub-TLV.
      Done("v2_tlvs_skipped",
           V2(0x21, 0x11,
              kAddr4 + Tlv(0x04, "") + Tlv(0x04, std::string(3, '\0')) + Tlv(0xE0, "custom") +
                  Tlv(0xF0, "exp") + Tlv(0xFF, "future") + Tlv(0x06, "?") + Tlv(0x21, "x") +
                  Tlv(0x30, "blue")),
           kProxy4 + " netns=blue"),
      Done("v2_ssl_all_subtypes",
           V2(0x21, 0x11,
              kAddr4 + Tlv(0x20, ssl_fixed + Tlv(0x21, "TLSv1.3") + Tlv(0x22, "bob") +
                                     Tlv(0x23, "TLS_AES_128_GCM_SHA256") +
                                     Tlv(0x24, "ECDSA-SHA256") + Tlv(0x25, "EC256") +
                                     Tlv(0x26, "X25519") + Tlv(0x27, "ecdsa_secp256r1_sha256") +
                                     Tlv(0x28, std::string("\x30\x82\x01\x00", 4)) +
                                     Tlv(0x29, "unknown") + Tlv(0x20, "y"))),
           kProxy4 + " ssl=07/0,version=TLSv1.3,cn=bob,cipher=TLS_AES_128_GCM_SHA256,"
                     "sig_alg=ECDSA-SHA256,key_alg=EC256,group=X25519,"
                     "sig_scheme=ecdsa_secp256r1_sha256,client_cert"),
      Done("v2_ssl_bare", V2(0x21, 0x11, kAddr4 + Tlv(0x20, std::string("\0\0\0\0\x01", 5))),
           kProxy4 + " ssl=00/1"),
      Done("v2_unique_id_128", V2(0x21, 0x11, kAddr4 + Tlv(0x05, std::string(128, 'u'))),
           kProxy4 + " unique_id=" + std::string(128, 'u')),
      Done("v2_authority_255", V2(0x21, 0x11, kAddr4 + Tlv(0x02, std::string(255, 'a'))),
           kProxy4 + " authority=" + std::string(255, 'a')),
      Done("v2_crc32c_only", FixCrc(V2(0x21, 0x11, kAddr4 + Tlv(0x03, std::string(4, '\0')))),
           kProxy4 + " crc32c"),
      // The default limit, 4096 bytes, exactly.
      Done("v2_at_limit", V2(0x21, 0x11, kAddr4 + Tlv(0x04, std::string(4096 - 16 - 12 - 3, 'n'))),
           kProxy4),
  };
  // A CRC32C TLV that is not the last one.
  std::string h = V2(0x21, 0x11, kAddr4 + Tlv(0x03, std::string(4, '\0')) + Tlv(0x02, "x.org"));
  const uint32_t crc = Crc32c(h);
  for (size_t k = 0; k < 4; ++k) h[16 + 12 + 3 + k] = static_cast<char>(crc >> (24 - 8 * k));
  c.push_back(Done("v2_crc32c_middle", h, kProxy4 + " authority=x.org crc32c"));
  return c;
}

std::vector<Case> ErrorCases() {
  const std::string v1_109 = "PROXY UNKNOWN " + std::string(93, 'f') + "\r\n";  // 109
  std::vector<Case> c = {
      // Neither signature: dropped at the first byte (PP 2.2, version detection).
      Error("not_proxy_http", "GET / HTTP/1.1\r\n", "not a PROXY protocol header"),
      Error("not_proxy_imap", "a1 LOGIN alice secret\r\n", "not a PROXY protocol header"),
      Error("not_proxy_tls", std::string("\x16\x03\x01\x02\x00\x01", 6),
            "not a PROXY protocol header"),
      Error("not_proxy_lowercase", "proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n", "not a PROXY"),
      // v1 (PP 2.1).
      Error("v1_no_space", "PROXY\r\n", "must start with 'PROXY '"),
      Error("v1_prefix_typo", "PROXZ TCP4", "must start with 'PROXY '"),
      Error("v1_bare_lf", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", "LF without CR"),
      Error("v1_bare_lf_unknown", "PROXY UNKNOWN\n\r\n", "LF without CR"),
      Error("v1_lone_cr", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX\r\n", "CR without LF"),
      Error("v1_cr_cr_lf", "PROXY UNKNOWN\r\r\n", "CR without LF"),
      Error("v1_too_long", v1_109, "no CR LF within 107 octets"),
      Error("v1_no_end_108", "PROXY UNKNOWN " + std::string(200, 'f'), "no CR LF within 107"),
      Error("v1_108_with_crlf", "PROXY UNKNOWN " + std::string(92, 'f') + "\r\n",
            "no CR LF within 107"),
      Error("v1_leading_zero_ip", "PROXY TCP4 192.168.0.01 192.168.0.11 56324 443\r\n",
            "bad IPv4 source address"),
      Error("v1_leading_zero_ip_dst", "PROXY TCP4 192.168.0.1 010.1.1.1 56324 443\r\n",
            "bad IPv4 destination address"),
      Error("v1_leading_zero_port", "PROXY TCP4 192.168.0.1 192.168.0.11 056324 443\r\n",
            "source port"),
      Error("v1_leading_zero_dport", "PROXY TCP4 192.168.0.1 192.168.0.11 56324 0443\r\n",
            "destination port"),
      Error("v1_port_too_big", "PROXY TCP4 1.2.3.4 5.6.7.8 65536 1\r\n", "source port"),
      Error("v1_port_sign", "PROXY TCP4 1.2.3.4 5.6.7.8 +1 1\r\n", "source port"),
      Error("v1_port_empty", "PROXY TCP4 1.2.3.4 5.6.7.8  1\r\n", "source port"),
      Error("v1_octet_256", "PROXY TCP4 1.2.3.256 5.6.7.8 1 1\r\n", "bad IPv4 source"),
      Error("v1_three_octets", "PROXY TCP4 1.2.3 5.6.7.8 1 1\r\n", "bad IPv4 source"),
      Error("v1_five_octets", "PROXY TCP4 1.2.3.4.5 5.6.7.8 1 1\r\n", "bad IPv4 source"),
      Error("v1_empty_octet", "PROXY TCP4 1..3.4 5.6.7.8 1 1\r\n", "bad IPv4 source"),
      Error("v1_hex_octet", "PROXY TCP4 0x1.2.3.4 5.6.7.8 1 1\r\n", "bad IPv4 source"),
      Error("v1_ipv6_in_tcp4", "PROXY TCP4 ::1 ::1 1 1\r\n", "bad IPv4 source"),
      Error("v1_ipv4_in_tcp6", "PROXY TCP6 1.2.3.4 5.6.7.8 1 1\r\n", "bad IPv6 source"),
      Error("v1_two_double_colons", "PROXY TCP6 1::2::3 ::1 1 1\r\n", "bad IPv6 source"),
      Error("v1_long_group", "PROXY TCP6 12345::1 ::1 1 1\r\n", "bad IPv6 source"),
      Error("v1_nine_groups", "PROXY TCP6 1:2:3:4:5:6:7:8:9 ::1 1 1\r\n", "bad IPv6 source"),
      Error("v1_scope_id", "PROXY TCP6 fe80::1%eth0 ::1 1 1\r\n", "bad IPv6 source"),
      Error("v1_bad_ipv6_dst", "PROXY TCP6 ::1 ::g 1 1\r\n", "bad IPv6 destination"),
      Error("v1_double_space", "PROXY  TCP4 1.2.3.4 5.6.7.8 1 1\r\n", "TCP4, TCP6 or UNKNOWN"),
      Error("v1_lowercase_proto", "PROXY tcp4 1.2.3.4 5.6.7.8 1 1\r\n", "TCP4, TCP6 or UNKNOWN"),
      Error("v1_tcp5", "PROXY TCP5 1.2.3.4 5.6.7.8 1 1\r\n", "TCP4, TCP6 or UNKNOWN"),
      Error("v1_unknownx", "PROXY UNKNOWNX\r\n", "bad protocol"),
      Error("v1_empty", "PROXY \r\n", "TCP4, TCP6 or UNKNOWN"),
      Error("v1_missing_field", "PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", "expected 4 fields"),
      Error("v1_extra_field", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", "expected 4 fields"),
      Error("v1_trailing_space", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", "expected 4 fields"),
      Error("v1_tab", "PROXY TCP4\t1.2.3.4 5.6.7.8 1 2\r\n", "TCP4, TCP6 or UNKNOWN"),
      Error("v1_nul", std::string("PROXY TCP4 1.2.3.4\0 5.6.7.8 1 2\r\n", 33), "bad IPv4"),
      // v2 (PP 2.2).
      Error("v2_bad_signature",
            "\r\n\r\n" + std::string("\0\r\nQUIX\n\x21\x11\x00\x0c", 12) + kAddr4, "bad signature"),
      Error("v2_signature_then_v1", "\r\nPROXY TCP4", "bad signature"),
      Error("v2_version_1", V2(0x11, 0x11, kAddr4), "version 1 (must be 2)"),
      Error("v2_version_3", V2(0x31, 0x11, kAddr4), "version 3 (must be 2)"),
      Error("v2_version_0", V2(0x01, 0x11, kAddr4), "version 0 (must be 2)"),
      Error("v2_command_2", V2(0x22, 0x11, kAddr4), "unknown command 0x2"),
      Error("v2_command_f", V2(0x2F, 0x11, kAddr4), "unknown command 0xf"),
      Error("v2_family_4", V2(0x21, 0x41, kAddr4), "unsupported address family 0x41"),
      Error("v2_family_f", V2(0x21, 0xF1, kAddr4), "unsupported address family 0xf1"),
      Error("v2_transport_3", V2(0x21, 0x13, kAddr4), "unsupported address family 0x13"),
      Error("v2_inet_unspec_transport", V2(0x21, 0x10, kAddr4), "unsupported address family 0x10"),
      Error("v2_unspec_stream", V2(0x21, 0x01, ""), "unsupported address family 0x01"),
      Error("v2_len_short_inet", V2(0x21, 0x11, kAddr4.substr(0, 11)), "len 11 shorter"),
      Error("v2_len_short_inet6", V2(0x21, 0x21, kAddr6.substr(0, 35)), "len 35 shorter"),
      Error("v2_len_short_unix", V2(0x21, 0x31, std::string(215, 'u')), "len 215 shorter"),
      Error("v2_len_zero_inet", V2(0x21, 0x11, ""), "len 0 shorter"),
      Error("v2_over_limit",
            V2(0x21, 0x11, kAddr4 + Tlv(0x04, std::string(4096 - 16 - 12 - 2, 'n'))),
            "RESOURCE_EXHAUSTED: PROXY v2: header of 4097 bytes (at most 4096)"),
      Error("v2_len_ffff", V2(0x21, 0x11, kAddr4, 0xFFFF), "header of 65551 bytes"),
      // TLVs checked against 16 + len (DIGEST e.18).
      Error("v2_tlv_overrun", V2(0x21, 0x11, kAddr4 + std::string("\x02\x00\x10", 3) + "short"),
            "overruns"),
      Error("v2_tlv_stray_1", V2(0x21, 0x11, kAddr4 + "\x04"), "1 stray bytes"),
      Error("v2_tlv_stray_2", V2(0x21, 0x11, kAddr4 + Tlv(0x04, "") + std::string("\x04\x00", 2)),
            "2 stray bytes"),
      Error("v2_tlv_overrun_by_one", V2(0x21, 0x11, kAddr4 + std::string("\x05\x00\x03", 3) + "ab"),
            "overruns"),
      Error("v2_ssl_short", V2(0x21, 0x11, kAddr4 + Tlv(0x20, std::string("\x01\0\0\0", 4))),
            "SSL TLV of 4 bytes"),
      Error("v2_ssl_sub_overrun",
            V2(0x21, 0x11,
               kAddr4 + Tlv(0x20, std::string("\x01\0\0\0\0", 5) + std::string("\x21\x00\x09", 3) +
                                      "TLSv1.3")),
            "SSL sub-TLV 0x21 of 9 bytes overruns"),
      Error("v2_ssl_sub_stray",
            V2(0x21, 0x11, kAddr4 + Tlv(0x20, std::string("\x01\0\0\0\0", 5) + "\x21")),
            "stray bytes after the last SSL sub-TLV"),
      Error("v2_ssl_duplicate_version",
            V2(0x21, 0x11,
               kAddr4 + Tlv(0x20, std::string("\x01\0\0\0\0", 5) + Tlv(0x21, "TLSv1.3") +
                                      Tlv(0x21, "TLSv1.2"))),
            "duplicate SSL sub-TLV 0x21"),
      Error("v2_ssl_duplicate",
            V2(0x21, 0x11,
               kAddr4 + Tlv(0x20, std::string("\x01\0\0\0\0", 5)) +
                   Tlv(0x20, std::string("\x01\0\0\0\0", 5))),
            "duplicate SSL TLV"),
      Error("v2_duplicate_authority",
            V2(0x21, 0x11, kAddr4 + Tlv(0x02, "a.example") + Tlv(0x02, "b.example")),
            "duplicate AUTHORITY TLV"),
      Error("v2_authority_256", V2(0x21, 0x11, kAddr4 + Tlv(0x02, std::string(256, 'a'))),
            "AUTHORITY TLV of 256 bytes (at most 255)"),
      Error("v2_unique_id_129", V2(0x21, 0x11, kAddr4 + Tlv(0x05, std::string(129, 'u'))),
            "UNIQUE_ID TLV of 129 bytes (at most 128)"),
      Error("v2_crc32c_short", V2(0x21, 0x11, kAddr4 + Tlv(0x03, "abc")),
            "CRC32C TLV of 3 bytes (must be 4)"),
      Error("v2_crc32c_long", V2(0x21, 0x11, kAddr4 + Tlv(0x03, "abcde")), "CRC32C TLV of 5"),
      Error("v2_crc32c_wrong", V2(0x21, 0x11, kAddr4 + Tlv(0x03, "abcd")), "CRC32C mismatch"),
      Error("v2_crc32c_duplicate",
            FixCrc(V2(0x21, 0x11, kAddr4 + Tlv(0x03, "abcd") + Tlv(0x03, std::string(4, '\0')))),
            "duplicate CRC32C TLV"),
      Error("v2_unspec_tlv_overrun", V2(0x21, 0x00, std::string("\x02\x00\x05", 3) + "ab"),
            "overruns"),
      Error("v2_unix_tlv_overrun",
            V2(0x21, 0x31, std::string(216, 'u') + std::string("\x30\x00\x01", 3)), "overruns"),
  };
  // The captured HAProxy headers with one byte of their TLVs changed: the
  // CRC32C no longer matches.
  std::string tampered = kHaproxyV2SslCn;
  tampered[45] = 'M';  // mail.example.com -> Mail.example.com
  c.push_back(Error("haproxy_v2_tampered_authority", tampered, "CRC32C mismatch (sent 5907be3c"));
  tampered = kHaproxyV2Tcp6Crc;
  tampered[31] = '\x02';  // source ::1 -> ::2
  c.push_back(Error("haproxy_v2_tampered_address", tampered, "CRC32C mismatch"));
  // Versions a listener does not take.
  Case v1_refused = Error("v1_refused", kHaproxyV1Tcp4, "not a PROXY protocol v2 header");
  v1_refused.options.accept_v1 = false;
  c.push_back(v1_refused);
  Case v2_refused = Error("v2_refused", kHaproxyV2Tcp4, "not a PROXY protocol v1 header");
  v2_refused.options.accept_v2 = false;
  c.push_back(v2_refused);
  Case small_limit = Error("v2_small_limit", kHaproxyV2SslCn, "header of 196 bytes (at most 128)");
  small_limit.options.max_v2_size = 128;
  c.push_back(small_limit);
  return c;
}

std::vector<Case> IncompleteCases() {
  return {
      More("empty", ""),
      More("v1_prefix", "PROX"),
      More("v1_no_crlf_yet", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2"),
      More("v1_cr_only", "PROXY UNKNOWN\r"),
      // 105 octets and a CR: the LF would be octet 107, still allowed.
      More("v1_105_then_cr", "PROXY UNKNOWN " + std::string(91, 'f') + "\r"),
      More("v2_signature_only", kSig),
      More("v2_fixed_only", kSig + "\x21\x11\x00\x0c"),
      // "len past buffer" in a stream is a header still arriving: the caller's
      // timeout (at least 3 s, PP 2) ends the wait, and nothing past what
      // arrived is read (ParseProxyV2 on a framed buffer says error; see below).
      More("v2_len_past_data", V2(0x21, 0x11, kAddr4, 100)),
      More("v2_local_len_past_data", V2(0x20, 0x00, "abc", 4)),
  };
}

class ProxyHeaderTable : public ::testing::TestWithParam<Case> {};

TEST_P(ProxyHeaderTable, SameOutcomeForEveryCutting) {
  const Case& c = GetParam();
  const Outcome want{c.status, c.status == Status::kError ? 0 : c.consumed, ""};
  const Outcome whole = RunWhole(c.input, c.options);
  EXPECT_EQ(whole.status, want.status) << whole;
  EXPECT_EQ(whole.consumed, want.consumed) << whole;
  if (c.status == Status::kDone) {
    EXPECT_EQ(whole.text, c.expect);
  } else if (c.status == Status::kError) {
    EXPECT_THAT(whole.text, HasSubstr(c.expect));
  }
  for (const Chunks& chunks : AllCuttings(c.input)) {
    EXPECT_EQ(FeedChunks(chunks, c.options), whole) << Describe(chunks);
  }
}

std::string CaseName(const ::testing::TestParamInfo<Case>& info) { return info.param.name; }

INSTANTIATE_TEST_SUITE_P(Valid, ProxyHeaderTable, ::testing::ValuesIn(ValidCases()), CaseName);
INSTANTIATE_TEST_SUITE_P(Malformed, ProxyHeaderTable, ::testing::ValuesIn(ErrorCases()), CaseName);
INSTANTIATE_TEST_SUITE_P(Incomplete, ProxyHeaderTable, ::testing::ValuesIn(IncompleteCases()),
                         CaseName);

// Every valid header: every proper prefix of it is incomplete (the parser
// never reports done before the last header byte), and the one-shot parsers
// agree with the incremental one on the framed header.
TEST(ProxyHeader, PrefixesOfValidHeadersAreIncomplete) {
  for (const Case& c : ValidCases()) {
    const absl::string_view header = absl::string_view(c.input).substr(0, c.consumed);
    for (size_t k = 0; k < header.size(); ++k) {
      const Outcome o = RunWhole(header.substr(0, k));
      EXPECT_EQ(o.status, Status::kNeedMore) << c.name << " prefix " << k << ": " << o;
    }
    const absl::StatusOr<ProxyHeader> framed =
        header[0] == 'P' ? ParseProxyV1(header) : ParseProxyV2(header);
    ASSERT_TRUE(framed.ok()) << c.name << ": " << framed.status();
    EXPECT_EQ(Describe(*framed), c.expect) << c.name;
  }
}

TEST(ProxyHeader, FramedV2ShorterOrLongerThanLenIsAnError) {
  const std::string h = V2(0x21, 0x11, kAddr4);
  EXPECT_THAT(ParseProxyV2(h.substr(0, 27)).status().message(),
              HasSubstr("27 bytes for a header of 16 + 12"));
  EXPECT_THAT(ParseProxyV2(h + "x").status().message(), HasSubstr("29 bytes for a header"));
  EXPECT_THAT(ParseProxyV2(h.substr(0, 10)).status().message(), HasSubstr("shorter than 16"));
  EXPECT_THAT(ParseProxyV1("PROXY UNKNOWN").status().message(), HasSubstr("must end with CR LF"));
  EXPECT_THAT(ParseProxyV1("PROXY UNKNOWN\r\nPROXY UNKNOWN\r\n").status().message(),
              HasSubstr("CR or LF inside"));
}

TEST(ProxyHeader, CapturedHeadersGiveTheFullStruct) {
  ProxyHeaderParser parser;
  size_t used = 0;
  ASSERT_EQ(parser.Feed(kHaproxyV2SslCn, &used), Status::kDone);
  const ProxyHeader& h = parser.header();
  EXPECT_EQ(h.version, 2);
  EXPECT_EQ(h.kind, ProxyKind::kProxy);
  EXPECT_FALSE(h.use_socket_addresses());
  EXPECT_TRUE(h.source.v4);
  EXPECT_EQ(h.source.IpText(), "127.0.0.1");
  EXPECT_EQ(h.source.port, 34844);
  EXPECT_EQ(h.destination.port, 18105);
  EXPECT_TRUE(h.ssl.client_ssl());
  EXPECT_EQ(h.ssl.client,
            ProxySsl::kClientSsl | ProxySsl::kClientCertConn | ProxySsl::kClientCertSess);
  EXPECT_EQ(h.ssl.cn, "alice@example.com");
  sockaddr_storage ss;
  ASSERT_EQ(h.source.ToSockaddr(&ss), sizeof(sockaddr_in));
  const auto* sin = reinterpret_cast<const sockaddr_in*>(&ss);
  EXPECT_EQ(sin->sin_family, AF_INET);
  EXPECT_EQ(ntohs(sin->sin_port), 34844);
  EXPECT_EQ(ntohl(sin->sin_addr.s_addr), 0x7F000001u);

  ProxyHeaderParser v6;
  ASSERT_EQ(v6.Feed(kHaproxyV2Tcp6Crc, &used), Status::kDone);
  EXPECT_FALSE(v6.header().source.v4);
  ASSERT_EQ(v6.header().source.ToSockaddr(&ss), sizeof(sockaddr_in6));
  EXPECT_EQ(reinterpret_cast<const sockaddr_in6*>(&ss)->sin6_family, AF_INET6);

  ProxyHeaderParser local;
  ASSERT_EQ(local.Feed(kHaproxyV2Local, &used), Status::kDone);
  EXPECT_TRUE(local.header().use_socket_addresses());
}

// Feed(Buffer&) drains the header and nothing else, whatever the slab size.
TEST(ProxyHeader, BufferKeepsTheClientBytes) {
  for (const std::string& input : {kHaproxyV1Tcp4, kHaproxyV2SslCn, kHaproxyV2Tcp6Crc}) {
    for (size_t slab : {1, 3, 16, 100, 4096}) {
      BufferPool pool(slab);
      Buffer buf(pool);
      ProxyHeaderParser parser;
      // Arrives in 7-byte reads; the parser runs after each.
      Status s = Status::kNeedMore;
      size_t at = 0;
      while (s == Status::kNeedMore && at < input.size()) {
        const size_t n = std::min<size_t>(7, input.size() - at);
        buf.Append(absl::string_view(input).substr(at, n));
        at += n;
        s = parser.Feed(buf);
      }
      ASSERT_EQ(s, Status::kDone) << "slab " << slab;
      EXPECT_EQ(parser.size(), input.size() - 6);
      buf.Append(absl::string_view(input).substr(at));
      EXPECT_EQ(buf.ToString(), "HELLO\n") << "slab " << slab;
    }
  }
}

TEST(ProxyHeader, BufferWithAnError) {
  BufferPool pool(16);
  Buffer buf(pool);
  buf.Append("a1 LOGIN x y\r\n");
  ProxyHeaderParser parser;
  EXPECT_EQ(parser.Feed(buf), Status::kError);
  EXPECT_TRUE(absl::IsInvalidArgument(parser.error()));
}

// --- Writer ------------------------------------------------------------------------

ProxyAddress Addr(absl::string_view ip, uint16_t port) {
  absl::StatusOr<ProxyAddress> a = ProxyAddress::Parse(ip, port);
  EXPECT_TRUE(a.ok()) << ip;
  return a.ok() ? *a : ProxyAddress{};
}

ProxyHeader ParseAll(const std::string& bytes, size_t* consumed) {
  ProxyHeaderParser parser;
  const Status s = parser.Feed(bytes, consumed);
  EXPECT_EQ(s, Status::kDone) << parser.error();
  return parser.header();
}

TEST(ProxyHeaderWriter, RoundTrip) {
  struct {
    const char* src;
    uint16_t sport;
    const char* dst;
    uint16_t dport;
  } const pairs[] = {{"192.0.2.1", 56324, "198.51.100.2", 993},
                     {"0.0.0.0", 0, "255.255.255.255", 65535},
                     {"2001:db8::1", 1, "2001:db8::ff", 143},
                     {"::", 0, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535}};
  for (const auto& p : pairs) {
    for (int variant = 0; variant < 4; ++variant) {
      ProxyV2Tlvs tlvs;
      tlvs.crc32c = (variant & 1) != 0;
      if ((variant & 2) != 0) {
        tlvs.authority = "imap.example.com";
        tlvs.alpn = "imap";
        tlvs.unique_id = "postern-7f3a";
        tlvs.ssl = true;
        tlvs.ssl_version = "TLSv1.3";
        tlvs.ssl_cipher = "TLS_AES_128_GCM_SHA256";
      }
      const ProxyAddress src = Addr(p.src, p.sport), dst = Addr(p.dst, p.dport);
      absl::StatusOr<std::string> bytes = BuildProxyV2(src, dst, tlvs);
      ASSERT_TRUE(bytes.ok()) << bytes.status();
      EXPECT_EQ(bytes->substr(0, 12), kSig);
      EXPECT_EQ((*bytes)[13], src.v4 ? '\x11' : '\x21');
      size_t consumed = 0;
      const ProxyHeader h = ParseAll(*bytes + "a1 NOOP\r\n", &consumed);
      EXPECT_EQ(consumed, bytes->size());
      EXPECT_EQ(h.kind, ProxyKind::kProxy);
      EXPECT_EQ(h.source, src);
      EXPECT_EQ(h.destination, dst);
      EXPECT_EQ(h.crc32c, tlvs.crc32c);
      EXPECT_EQ(h.authority, tlvs.authority);
      EXPECT_EQ(h.alpn, tlvs.alpn);
      EXPECT_EQ(h.unique_id, tlvs.unique_id);
      EXPECT_EQ(h.ssl.client_ssl(), tlvs.ssl);
      EXPECT_EQ(h.ssl.version, tlvs.ssl_version);
      EXPECT_EQ(h.ssl.cipher, tlvs.ssl_cipher);
      if (tlvs.ssl) {
        EXPECT_NE(h.ssl.verify, 0u);  // no client certificate was verified
      }
    }
  }
}

TEST(ProxyHeaderWriter, MixedFamiliesGoAsIpv6) {
  const ProxyAddress src = Addr("192.0.2.1", 5), dst = Addr("2001:db8::2", 993);
  absl::StatusOr<std::string> bytes = BuildProxyV2(src, dst);
  ASSERT_TRUE(bytes.ok());
  size_t consumed = 0;
  const ProxyHeader h = ParseAll(*bytes, &consumed);
  EXPECT_EQ(h.source.IpText(), "::ffff:192.0.2.1");
  EXPECT_EQ(h.source.ip, src.ip);
  EXPECT_FALSE(h.source.v4);
  EXPECT_EQ(h.destination, dst);
}

TEST(ProxyHeaderWriter, ExactBytes) {
  // 192.0.2.1:56324 -> 198.51.100.2:993, no TLV: the spec's layout (PP 2.2).
  absl::StatusOr<std::string> bytes = BuildProxyV2(
      Addr("192.0.2.1", 56324), Addr("198.51.100.2", 993), ProxyV2Tlvs{.crc32c = false});
  ASSERT_TRUE(bytes.ok());
  EXPECT_EQ(*bytes, V2(0x21, 0x11, kAddr4));
  EXPECT_EQ(BuildProxyV2Local(), kHaproxyV2Local);
  // With CRC32C: the same as HAProxy's header for the same connection.
  absl::StatusOr<std::string> with_crc = BuildProxyV2(Addr("::1", 58506), Addr("::1", 18104));
  ASSERT_TRUE(with_crc.ok());
  EXPECT_EQ(*with_crc, kHaproxyV2Tcp6Crc.substr(0, 59));
}

TEST(ProxyHeaderWriter, Limits) {
  const ProxyAddress a = Addr("192.0.2.1", 1);
  const std::string a255(255, 'a'), a256(256, 'a'), u128(128, 'u'), u129(129, 'u');
  EXPECT_TRUE(BuildProxyV2(a, a, {.authority = a255}).ok());
  EXPECT_TRUE(absl::IsInvalidArgument(BuildProxyV2(a, a, {.authority = a256}).status()));
  EXPECT_TRUE(BuildProxyV2(a, a, {.unique_id = u128}).ok());
  EXPECT_TRUE(absl::IsInvalidArgument(BuildProxyV2(a, a, {.unique_id = u129}).status()));
  const std::string huge(70000, 'h');
  EXPECT_TRUE(absl::IsInvalidArgument(BuildProxyV2(a, a, {.alpn = huge}).status()));
}

// Every single-bit change of a CRC32C-protected header is caught (CRC32C
// detects every single-bit error; a changed len never gives a header either),
// with two exceptions the spec cannot cover: the command (PROXY becomes
// LOCAL, whose block a receiver skips unread, PP 2.2) and the CRC32C TLV's
// own type byte (another type is skipped, and the header then simply has no
// checksum, PP 2.2.3). Neither lets a sender pick a client address.
TEST(ProxyHeaderWriter, CrcCatchesEverySingleBitFlip) {
  ProxyV2Tlvs tlvs;
  tlvs.authority = "imap.example.com";
  tlvs.ssl = true;
  tlvs.ssl_version = "TLSv1.3";
  absl::StatusOr<std::string> bytes = BuildProxyV2(Addr("2001:db8::1", 1), Addr("::1", 993), tlvs);
  ASSERT_TRUE(bytes.ok());
  const size_t crc_type = bytes->size() - 7;
  ASSERT_EQ((*bytes)[crc_type], '\x03');
  for (size_t i = 13; i < bytes->size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      if (i == crc_type) continue;
      std::string flipped = *bytes;
      flipped[i] = static_cast<char>(flipped[i] ^ (1 << bit));
      const Outcome o = RunWhole(flipped);
      EXPECT_NE(o.status, Status::kDone) << "byte " << i << " bit " << bit << ": " << o;
    }
  }
}

TEST(ProxyAddress, ParseAndText) {
  EXPECT_EQ(Addr("192.0.2.1", 993).Text(), "192.0.2.1:993");
  EXPECT_EQ(Addr("2001:DB8::1", 993).Text(), "[2001:db8::1]:993");
  EXPECT_TRUE(Addr("10.1.2.3", 0).v4);
  EXPECT_EQ(Addr("10.1.2.3", 0).ip4(), (std::array<uint8_t, 4>{10, 1, 2, 3}));
  EXPECT_FALSE(ProxyAddress::Parse("010.1.2.3", 1).ok());
  EXPECT_FALSE(ProxyAddress::Parse("example.com", 1).ok());
  EXPECT_FALSE(ProxyAddress::Parse("", 1).ok());
}

}  // namespace
}  // namespace postern
