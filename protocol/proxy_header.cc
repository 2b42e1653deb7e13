#include "protocol/proxy_header.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "protocol/crc32c.h"

namespace postern {
namespace {

// PP 2.2: ver_cmd and fam values.
constexpr uint8_t kCmdLocal = 0x0;
constexpr uint8_t kCmdProxy = 0x1;
constexpr uint8_t kFamUnspec = 0x00;
constexpr uint8_t kFamTcp4 = 0x11;
constexpr uint8_t kFamUdp4 = 0x12;
constexpr uint8_t kFamTcp6 = 0x21;
constexpr uint8_t kFamUdp6 = 0x22;
constexpr uint8_t kFamUnixStream = 0x31;
constexpr uint8_t kFamUnixDgram = 0x32;
constexpr size_t kAddrLenInet = 12;   // 2*4 + 2*2
constexpr size_t kAddrLenInet6 = 36;  // 2*16 + 2*2
constexpr size_t kAddrLenUnix = 216;  // 2*108

// PP 2.2: TLV types.
constexpr uint8_t kTypeAlpn = 0x01;
constexpr uint8_t kTypeAuthority = 0x02;
constexpr uint8_t kTypeCrc32c = 0x03;
constexpr uint8_t kTypeNoop = 0x04;
constexpr uint8_t kTypeUniqueId = 0x05;
constexpr uint8_t kTypeSsl = 0x20;
constexpr uint8_t kSubtypeSslVersion = 0x21;
constexpr uint8_t kSubtypeSslCn = 0x22;
constexpr uint8_t kSubtypeSslCipher = 0x23;
constexpr uint8_t kSubtypeSslSigAlg = 0x24;
constexpr uint8_t kSubtypeSslKeyAlg = 0x25;
constexpr uint8_t kSubtypeSslGroup = 0x26;
constexpr uint8_t kSubtypeSslSigScheme = 0x27;
constexpr uint8_t kSubtypeSslClientCert = 0x28;
constexpr uint8_t kTypeNetns = 0x30;

constexpr size_t kTlvHeader = 3;       // type, length_hi, length_lo
constexpr size_t kMaxAuthority = 255;  // a DNS name (RFC 6066 section 3); HAProxy's limit too
constexpr size_t kMaxUniqueId = 128;   // PP 2.2.5
constexpr size_t kSslFixed = 5;        // client (1) + verify (4), PP 2.2.6
constexpr size_t kMaxV2Len = 0xFFFF;   // the 16-bit len field
constexpr absl::string_view kV1Prefix = "PROXY ";

uint16_t Be16(absl::string_view s, size_t at) {
  return static_cast<uint16_t>(static_cast<uint8_t>(s[at]) << 8 | static_cast<uint8_t>(s[at + 1]));
}

uint32_t Be32(absl::string_view s, size_t at) {
  return static_cast<uint32_t>(Be16(s, at)) << 16 | Be16(s, at + 2);
}

void PutBe16(std::string& out, size_t v) {
  out.push_back(static_cast<char>((v >> 8) & 0xFF));
  out.push_back(static_cast<char>(v & 0xFF));
}

void PutBe32(std::string& out, uint32_t v) {
  PutBe16(out, v >> 16);
  PutBe16(out, v & 0xFFFF);
}

// The address block length a PROXY command needs for family byte `fam`, or
// -1 for a combination PP 2.2 does not list.
int AddressLength(uint8_t fam) {
  switch (fam) {
    case kFamUnspec:
      return 0;
    case kFamTcp4:
    case kFamUdp4:
      return kAddrLenInet;
    case kFamTcp6:
    case kFamUdp6:
      return kAddrLenInet6;
    case kFamUnixStream:
    case kFamUnixDgram:
      return kAddrLenUnix;
    default:
      return -1;
  }
}

absl::Status V1Error(absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("PROXY v1: ", what));
}

absl::Status V2Error(absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("PROXY v2: ", what));
}

// --- v1 fields (PP 2.1) ------------------------------------------------------

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// A decimal number of 1..max_digits digits without a heading zero (a lone
// "0" is fine), at most `max`.
bool ParseDecimal(absl::string_view s, size_t max_digits, uint32_t max, uint32_t* out) {
  if (s.empty() || s.size() > max_digits) return false;
  if (s.size() > 1 && s[0] == '0') return false;
  uint32_t v = 0;
  for (const char c : s) {
    if (!IsDigit(c)) return false;
    v = v * 10 + static_cast<uint32_t>(c - '0');
  }
  if (v > max) return false;
  *out = v;
  return true;
}

// "a.b.c.d": exactly 4 numbers 0..255, no heading zeroes, one dot between.
bool ParseIpv4(absl::string_view s, std::array<uint8_t, 4>* out) {
  for (size_t i = 0; i < 4; ++i) {
    const size_t dot = i < 3 ? s.find('.') : s.size();
    if (dot == absl::string_view::npos) return false;
    uint32_t v = 0;
    if (!ParseDecimal(s.substr(0, dot), 3, 255, &v)) return false;
    (*out)[i] = static_cast<uint8_t>(v);
    s.remove_prefix(i < 3 ? dot + 1 : dot);
  }
  return s.empty();
}

// An IPv6 literal as inet_pton(AF_INET6) reads it: hex groups, one "::",
// an embedded dotted quad at the end.
bool ParseIpv6(absl::string_view s, std::array<uint8_t, 16>* out) {
  char text[INET6_ADDRSTRLEN];  // 46: the longest form plus its NUL
  if (s.empty() || s.size() >= sizeof(text)) return false;
  for (const char c : s) {
    const bool ok =
        IsDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || c == ':' || c == '.';
    if (!ok) return false;
  }
  std::memcpy(text, s.data(), s.size());
  text[s.size()] = '\0';
  return inet_pton(AF_INET6, text, out->data()) == 1;
}

bool ParsePort(absl::string_view s, uint16_t* out) {
  uint32_t v = 0;
  if (!ParseDecimal(s, 5, 65535, &v)) return false;
  *out = static_cast<uint16_t>(v);
  return true;
}

// --- v2 TLVs (PP 2.2) --------------------------------------------------------

// Walks the TLVs of `block` (PP 2.2: type, 16-bit length, value), calling
// f(type, value, offset of the value in `block`) for each; every length is
// checked against the end of the block, and the block must end exactly at a
// TLV boundary.
template <typename F>
absl::Status ForEachTlv(absl::string_view block, absl::string_view where, F&& f) {
  size_t off = 0;
  while (off < block.size()) {
    if (block.size() - off < kTlvHeader) {
      return V2Error(
          absl::StrFormat("%d stray bytes after the last %s", block.size() - off, where));
    }
    const uint8_t type = static_cast<uint8_t>(block[off]);
    const size_t len = Be16(block, off + 1);
    off += kTlvHeader;
    if (len > block.size() - off) {
      return V2Error(absl::StrFormat("%s 0x%02x of %d bytes overruns its block (%d left)", where,
                                     type, len, block.size() - off));
    }
    absl::Status s = f(type, block.substr(off, len), off);
    if (!s.ok()) return s;
    off += len;
  }
  return absl::OkStatus();
}

// Stores a string TLV that may appear once.
absl::Status SetOnce(std::string* field, bool* seen, absl::string_view value,
                     absl::string_view name, size_t max) {
  if (*seen) return V2Error(absl::StrCat("duplicate ", name));
  if (value.size() > max) {
    return V2Error(absl::StrFormat("%s of %d bytes (at most %d)", name, value.size(), max));
  }
  *seen = true;
  field->assign(value.data(), value.size());
  return absl::OkStatus();
}

absl::Status ParseSsl(absl::string_view value, ProxySsl* ssl) {
  if (value.size() < kSslFixed) {
    return V2Error(absl::StrFormat("SSL TLV of %d bytes (at least %d)", value.size(), kSslFixed));
  }
  ssl->present = true;
  ssl->client = static_cast<uint8_t>(value[0]);
  ssl->verify = Be32(value, 1);
  uint32_t seen = 0;  // bit (type - 0x21) for each sub-TLV met
  return ForEachTlv(value.substr(kSslFixed), "SSL sub-TLV",
                    [&](uint8_t type, absl::string_view v, size_t) -> absl::Status {
                      std::string* field = nullptr;
                      switch (type) {
                        case kSubtypeSslVersion:
                          field = &ssl->version;
                          break;
                        case kSubtypeSslCn:
                          field = &ssl->cn;
                          break;
                        case kSubtypeSslCipher:
                          field = &ssl->cipher;
                          break;
                        case kSubtypeSslSigAlg:
                          field = &ssl->sig_alg;
                          break;
                        case kSubtypeSslKeyAlg:
                          field = &ssl->key_alg;
                          break;
                        case kSubtypeSslGroup:
                          field = &ssl->group;
                          break;
                        case kSubtypeSslSigScheme:
                          field = &ssl->sig_scheme;
                          break;
                        case kSubtypeSslClientCert:
                          break;
                        default:
                          return absl::OkStatus();  // unknown sub-TLVs are skipped
                      }
                      const uint32_t bit = 1u << (type - kSubtypeSslVersion);
                      if ((seen & bit) != 0) {
                        return V2Error(absl::StrFormat("duplicate SSL sub-TLV 0x%02x", type));
                      }
                      seen |= bit;
                      if (field != nullptr) {
                        field->assign(v.data(), v.size());
                      } else {
                        ssl->client_cert = true;
                      }
                      return absl::OkStatus();
                    });
}

// The TLVs from `offset` to the end of `header` (the whole v2 header).
absl::Status ParseTlvs(absl::string_view header, size_t offset, ProxyHeader* out) {
  bool have_alpn = false, have_authority = false, have_unique_id = false, have_netns = false;
  size_t crc_at = 0;  // offset of the CRC32C value in `header`, 0: none
  absl::Status s = ForEachTlv(
      header.substr(offset), "TLV",
      [&](uint8_t type, absl::string_view value, size_t value_off) -> absl::Status {
        switch (type) {
          case kTypeAlpn:
            return SetOnce(&out->alpn, &have_alpn, value, "ALPN TLV", kMaxV2Len);
          case kTypeAuthority:
            return SetOnce(&out->authority, &have_authority, value, "AUTHORITY TLV", kMaxAuthority);
          case kTypeCrc32c:
            if (crc_at != 0) return V2Error("duplicate CRC32C TLV");
            if (value.size() != 4) {
              return V2Error(absl::StrFormat("CRC32C TLV of %d bytes (must be 4)", value.size()));
            }
            crc_at = offset + value_off;
            return absl::OkStatus();
          case kTypeUniqueId:
            return SetOnce(&out->unique_id, &have_unique_id, value, "UNIQUE_ID TLV", kMaxUniqueId);
          case kTypeSsl:
            if (out->ssl.present) return V2Error("duplicate SSL TLV");
            return ParseSsl(value, &out->ssl);
          case kTypeNetns:
            return SetOnce(&out->netns, &have_netns, value, "NETNS TLV", kMaxV2Len);
          case kTypeNoop:
          default:
            // NOOP (PP 2.2.4), the custom, experimental and reserved ranges
            // (PP 2.2.8) and types we do not know are skipped.
            return absl::OkStatus();
        }
      });
  if (!s.ok()) return s;
  if (crc_at != 0) {
    // PP 2.2.3: the CRC32C of the whole header with the checksum field zeroed.
    static constexpr char kZeros[4] = {0, 0, 0, 0};
    uint32_t crc = Crc32cUpdate(kCrc32cInit, header.substr(0, crc_at));
    crc = Crc32cUpdate(crc, absl::string_view(kZeros, 4));
    crc = Crc32cFinish(Crc32cUpdate(crc, header.substr(crc_at + 4)));
    const uint32_t sent = Be32(header, crc_at);
    if (crc != sent) {
      return V2Error(absl::StrFormat("CRC32C mismatch (sent %08x, computed %08x)", sent, crc));
    }
    out->crc32c = true;
  }
  return absl::OkStatus();
}

void AppendTlv(std::string& out, uint8_t type, absl::string_view value) {
  out.push_back(static_cast<char>(type));
  PutBe16(out, value.size());
  out.append(value.data(), value.size());
}

}  // namespace

// --- ProxyAddress -------------------------------------------------------------

ProxyAddress ProxyAddress::V4(const std::array<uint8_t, 4>& ip4, uint16_t port) {
  ProxyAddress a;
  a.ip[10] = 0xFF;
  a.ip[11] = 0xFF;
  std::memcpy(a.ip.data() + 12, ip4.data(), 4);
  a.port = port;
  a.v4 = true;
  return a;
}

ProxyAddress ProxyAddress::V6(const std::array<uint8_t, 16>& ip6, uint16_t port) {
  ProxyAddress a;
  a.ip = ip6;
  a.port = port;
  return a;
}

absl::StatusOr<ProxyAddress> ProxyAddress::Parse(absl::string_view ip, uint16_t port) {
  std::array<uint8_t, 4> ip4{};
  if (ParseIpv4(ip, &ip4)) return V4(ip4, port);
  std::array<uint8_t, 16> ip6{};
  if (ParseIpv6(ip, &ip6)) return V6(ip6, port);
  return absl::InvalidArgumentError(absl::StrCat("not a numeric IP address: '", ip, "'"));
}

std::string ProxyAddress::IpText() const {
  char text[INET6_ADDRSTRLEN];
  if (v4) {
    return absl::StrFormat("%d.%d.%d.%d", ip[12], ip[13], ip[14], ip[15]);
  }
  if (inet_ntop(AF_INET6, ip.data(), text, sizeof(text)) == nullptr) return "";
  return text;
}

std::string ProxyAddress::Text() const {
  return v4 ? absl::StrCat(IpText(), ":", port) : absl::StrCat("[", IpText(), "]:", port);
}

socklen_t ProxyAddress::ToSockaddr(sockaddr_storage* out) const {
  std::memset(out, 0, sizeof(*out));
  if (v4) {
    auto* sin = reinterpret_cast<sockaddr_in*>(out);
    sin->sin_family = AF_INET;
    sin->sin_port = htons(port);
    std::memcpy(&sin->sin_addr, ip.data() + 12, 4);
    return sizeof(sockaddr_in);
  }
  auto* sin6 = reinterpret_cast<sockaddr_in6*>(out);
  sin6->sin6_family = AF_INET6;
  sin6->sin6_port = htons(port);
  std::memcpy(&sin6->sin6_addr, ip.data(), 16);
  return sizeof(sockaddr_in6);
}

const char* ProxyKindName(ProxyKind kind) {
  switch (kind) {
    case ProxyKind::kProxy:
      return "proxy";
    case ProxyKind::kLocal:
      return "local";
    case ProxyKind::kUnknown:
      return "unknown";
    case ProxyKind::kUnspec:
      return "unspec";
  }
  return "?";
}

// --- Whole headers ------------------------------------------------------------

absl::StatusOr<ProxyHeader> ParseProxyV1(absl::string_view line) {
  // PP 2.1: "PROXY" SP (TCP4|TCP6) SP src SP dst SP sport SP dport CRLF, or
  // "PROXY" SP "UNKNOWN" [anything] CRLF; at most 107 octets.
  if (line.size() > ProxyHeaderParser::kMaxV1Size) return V1Error("line longer than 107 octets");
  if (line.substr(0, kV1Prefix.size()) != kV1Prefix)
    return V1Error("line must start with 'PROXY '");
  if (line.size() < kV1Prefix.size() + 2 || line.substr(line.size() - 2) != "\r\n") {
    return V1Error("line must end with CR LF");
  }
  absl::string_view body = line.substr(kV1Prefix.size(), line.size() - kV1Prefix.size() - 2);
  if (body.find_first_of("\r\n") != absl::string_view::npos) {
    return V1Error("CR or LF inside the line");
  }
  ProxyHeader h;
  h.version = 1;
  if (body.substr(0, 7) == "UNKNOWN") {
    // "the receiver must ignore anything presented before the CRLF"; the
    // keyword itself must still end there or at a space.
    if (body.size() > 7 && body[7] != ' ') return V1Error("bad protocol after 'PROXY '");
    h.kind = ProxyKind::kUnknown;
    return h;
  }
  bool v6 = false;
  if (body.substr(0, 5) == "TCP4 ") {
    v6 = false;
  } else if (body.substr(0, 5) == "TCP6 ") {
    v6 = true;
  } else {
    return V1Error("protocol must be TCP4, TCP6 or UNKNOWN");
  }
  body.remove_prefix(5);
  absl::string_view fields[4];
  for (int i = 0; i < 4; ++i) {
    const size_t sp = i < 3 ? body.find(' ') : body.size();
    if (sp == absl::string_view::npos) return V1Error("expected 4 fields after the protocol");
    fields[i] = body.substr(0, sp);
    body.remove_prefix(i < 3 ? sp + 1 : sp);
  }
  if (fields[3].find(' ') != absl::string_view::npos) {
    return V1Error("expected 4 fields after the protocol");
  }
  uint16_t ports[2] = {0, 0};
  for (int i = 0; i < 2; ++i) {
    if (!ParsePort(fields[2 + i], &ports[i])) {
      return V1Error(absl::StrCat(i == 0 ? "source" : "destination",
                                  " port must be 0..65535 without heading zeroes"));
    }
  }
  ProxyAddress* addrs[2] = {&h.source, &h.destination};
  for (int i = 0; i < 2; ++i) {
    const char* which = i == 0 ? "source" : "destination";
    if (v6) {
      std::array<uint8_t, 16> ip{};
      if (!ParseIpv6(fields[i], &ip)) return V1Error(absl::StrCat("bad IPv6 ", which, " address"));
      *addrs[i] = ProxyAddress::V6(ip, ports[i]);
    } else {
      std::array<uint8_t, 4> ip{};
      if (!ParseIpv4(fields[i], &ip)) {
        return V1Error(
            absl::StrCat("bad IPv4 ", which, " address (dotted quad, no heading zeroes)"));
      }
      *addrs[i] = ProxyAddress::V4(ip, ports[i]);
    }
  }
  h.kind = ProxyKind::kProxy;
  return h;
}

absl::StatusOr<ProxyHeader> ParseProxyV2(absl::string_view header) {
  if (header.size() < ProxyHeaderParser::kV2FixedSize) return V2Error("shorter than 16 bytes");
  if (header.substr(0, 12) != ProxyHeaderParser::kV2Signature) return V2Error("bad signature");
  const uint8_t ver_cmd = static_cast<uint8_t>(header[12]);
  const uint8_t fam = static_cast<uint8_t>(header[13]);
  const size_t len = Be16(header, 14);
  if ((ver_cmd >> 4) != 2) return V2Error(absl::StrFormat("version %d (must be 2)", ver_cmd >> 4));
  const uint8_t cmd = ver_cmd & 0x0F;
  if (cmd != kCmdLocal && cmd != kCmdProxy) {
    return V2Error(absl::StrFormat("unknown command 0x%x", cmd));
  }
  if (header.size() != ProxyHeaderParser::kV2FixedSize + len) {
    return V2Error(absl::StrFormat("%d bytes for a header of 16 + %d", header.size(), len));
  }
  ProxyHeader h;
  h.version = 2;
  if (cmd == kCmdLocal) {
    // PP 2.2: "use the real connection endpoints and discard the protocol
    // block including the family which is ignored".
    h.kind = ProxyKind::kLocal;
    return h;
  }
  const int addr_len = AddressLength(fam);
  if (addr_len < 0) return V2Error(absl::StrFormat("unsupported address family 0x%02x", fam));
  if (len < static_cast<size_t>(addr_len)) {
    return V2Error(absl::StrFormat("len %d shorter than the address block (%d)", len, addr_len));
  }
  const absl::string_view addr = header.substr(ProxyHeaderParser::kV2FixedSize, addr_len);
  if (fam == kFamTcp4) {
    h.kind = ProxyKind::kProxy;
    std::array<uint8_t, 4> src{}, dst{};
    std::memcpy(src.data(), addr.data(), 4);
    std::memcpy(dst.data(), addr.data() + 4, 4);
    h.source = ProxyAddress::V4(src, Be16(addr, 8));
    h.destination = ProxyAddress::V4(dst, Be16(addr, 10));
  } else if (fam == kFamTcp6) {
    h.kind = ProxyKind::kProxy;
    std::array<uint8_t, 16> src{}, dst{};
    std::memcpy(src.data(), addr.data(), 16);
    std::memcpy(dst.data(), addr.data() + 16, 16);
    h.source = ProxyAddress::V6(src, Be16(addr, 32));
    h.destination = ProxyAddress::V6(dst, Be16(addr, 34));
  } else {
    // UNSPEC, UDP, UNIX: PP 2.2 lets a receiver fall back to UNSPEC.
    h.kind = ProxyKind::kUnspec;
  }
  absl::Status s = ParseTlvs(header, ProxyHeaderParser::kV2FixedSize + addr_len, &h);
  if (!s.ok()) return s;
  return h;
}

// --- ProxyHeaderParser ----------------------------------------------------------

ProxyHeaderParser::ProxyHeaderParser(const ProxyHeaderOptions& options) : options_(options) {
  options_.max_v2_size = std::min(options_.max_v2_size, kV2FixedSize + kMaxV2Len);
}

ProxyHeaderParser::Status ProxyHeaderParser::Fail(absl::Status error) {
  error_ = std::move(error);
  status_ = Status::kError;
  std::string().swap(partial_);
  return status_;
}

bool ProxyHeaderParser::StepPrefix(uint8_t c) {
  switch (state_) {
    case State::kStart:
      // PP 2.2, version detection: the v2 signature starts with CR, v1 with
      // "PROXY"; anything else "is not covered by this specification and the
      // connection must be dropped".
      if (c == static_cast<uint8_t>(kV2Signature[0]) && options_.accept_v2) {
        state_ = State::kV2Fixed;
      } else if (c == 'P' && options_.accept_v1) {
        state_ = State::kV1Prefix;
        header_.version = 1;
      } else {
        Fail(absl::InvalidArgumentError(options_.accept_v1 && options_.accept_v2
                                            ? "not a PROXY protocol header"
                                        : options_.accept_v2 ? "not a PROXY protocol v2 header"
                                        : options_.accept_v1 ? "not a PROXY protocol v1 header"
                                                             : "PROXY protocol header refused"));
        return false;
      }
      break;
    case State::kV1Prefix:
      if (c != static_cast<uint8_t>(kV1Prefix[seen_])) {
        Fail(V1Error("line must start with 'PROXY '"));
        return false;
      }
      if (seen_ + 1 == kV1Prefix.size()) state_ = State::kV1Line;
      break;
    case State::kV2Fixed:
      if (seen_ < kV2Signature.size()) {
        if (c != static_cast<uint8_t>(kV2Signature[seen_])) {
          Fail(V2Error("bad signature"));
          return false;
        }
      } else if (seen_ == 12) {
        // PP 2.2: version must be 2; command LOCAL or PROXY, "receivers must
        // drop connections presenting unexpected values here".
        if ((c >> 4) != 2) {
          Fail(V2Error(absl::StrFormat("version %d (must be 2)", c >> 4)));
          return false;
        }
        if ((c & 0x0F) != kCmdLocal && (c & 0x0F) != kCmdProxy) {
          Fail(V2Error(absl::StrFormat("unknown command 0x%x", c & 0x0F)));
          return false;
        }
        header_.version = 2;
        header_.kind = (c & 0x0F) == kCmdLocal ? ProxyKind::kLocal : ProxyKind::kProxy;
      } else if (seen_ == 13) {
        // PP 2.2: other families and transports "must be rejected as
        // invalid by receivers"; LOCAL ignores the family.
        if (header_.kind == ProxyKind::kProxy && AddressLength(c) < 0) {
          Fail(V2Error(absl::StrFormat("unsupported address family 0x%02x", c)));
          return false;
        }
        fam_ = c;
      } else if (seen_ == 14) {
        v2_len_hi_ = c;
      } else {
        const size_t len = static_cast<size_t>(v2_len_hi_) << 8 | c;
        v2_total_ = kV2FixedSize + len;
        if (v2_total_ > options_.max_v2_size) {
          Fail(absl::ResourceExhaustedError(absl::StrFormat(
              "PROXY v2: header of %d bytes (at most %d)", v2_total_, options_.max_v2_size)));
          return false;
        }
        if (header_.kind == ProxyKind::kProxy && len < static_cast<size_t>(AddressLength(fam_))) {
          Fail(V2Error(absl::StrFormat("len %d shorter than the address block (%d)", len,
                                       AddressLength(fam_))));
          return false;
        }
        state_ = len == 0 ? State::kComplete : State::kV2Body;
      }
      break;
    default:
      break;
  }
  ++seen_;
  return true;
}

ProxyHeaderParser::Status ProxyHeaderParser::Feed(absl::string_view input, size_t* consumed) {
  *consumed = 0;
  if (status_ != Status::kNeedMore) return status_;
  size_t i = 0;
  while (i < input.size() && state_ != State::kComplete) {
    switch (state_) {
      case State::kStart:
      case State::kV1Prefix:
      case State::kV2Fixed:
        if (!StepPrefix(static_cast<uint8_t>(input[i]))) {
          *consumed = i;
          return status_;
        }
        ++i;
        break;
      case State::kV1Line:
        // PP 2.1: up to CR LF within 107 octets; a lone CR or LF is no end.
        for (; i < input.size(); ++i) {
          const char c = input[i];
          ++seen_;
          if (c == '\r') {
            state_ = State::kV1Cr;
            ++i;
            break;
          }
          if (c == '\n') {
            *consumed = i;
            return Fail(V1Error("LF without CR"));
          }
          if (seen_ + 2 > kMaxV1Size) {
            *consumed = i;
            return Fail(V1Error("no CR LF within 107 octets"));
          }
        }
        break;
      case State::kV1Cr:
        ++seen_;
        if (input[i] != '\n') {
          *consumed = i;
          return Fail(V1Error("CR without LF"));
        }
        ++i;
        state_ = State::kComplete;
        break;
      case State::kV2Body: {
        const size_t take = std::min(input.size() - i, v2_total_ - seen_);
        i += take;
        seen_ += take;
        if (seen_ == v2_total_) state_ = State::kComplete;
        break;
      }
      case State::kComplete:
        break;
    }
  }
  *consumed = i;
  if (state_ != State::kComplete) {
    partial_.append(input.data(), input.size());
    return Status::kNeedMore;
  }
  if (partial_.empty()) return Finish(input.substr(0, i));
  partial_.append(input.data(), i);
  std::string whole = std::move(partial_);
  std::string().swap(partial_);
  return Finish(whole);
}

ProxyHeaderParser::Status ProxyHeaderParser::Feed(Buffer& buf) {
  while (status_ == Status::kNeedMore && !buf.empty()) {
    size_t used = 0;
    Feed(buf.Front(), &used);
    if (status_ == Status::kError) break;
    buf.Drain(used);
  }
  return status_;
}

ProxyHeaderParser::Status ProxyHeaderParser::Finish(absl::string_view header) {
  absl::StatusOr<ProxyHeader> parsed =
      header_.version == 2 ? ParseProxyV2(header) : ParseProxyV1(header);
  if (!parsed.ok()) return Fail(parsed.status());
  header_ = *std::move(parsed);
  status_ = Status::kDone;
  return status_;
}

// --- Writer -------------------------------------------------------------------

absl::StatusOr<std::string> BuildProxyV2(const ProxyAddress& source,
                                         const ProxyAddress& destination, const ProxyV2Tlvs& tlvs) {
  if (tlvs.authority.size() > kMaxAuthority) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "PROXY v2: authority of %d bytes (at most %d)", tlvs.authority.size(), kMaxAuthority));
  }
  if (tlvs.unique_id.size() > kMaxUniqueId) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "PROXY v2: unique id of %d bytes (at most %d)", tlvs.unique_id.size(), kMaxUniqueId));
  }
  const bool v4 = source.v4 && destination.v4;
  std::string out;
  out.reserve(ProxyHeaderParser::kV2FixedSize + kAddrLenInet6 + 4 * kTlvHeader +
              tlvs.authority.size() + tlvs.alpn.size() + tlvs.unique_id.size() + kSslFixed +
              2 * kTlvHeader + tlvs.ssl_version.size() + tlvs.ssl_cipher.size() + 4);
  out.append(ProxyHeaderParser::kV2Signature.data(), ProxyHeaderParser::kV2Signature.size());
  out.push_back(static_cast<char>(0x20 | kCmdProxy));
  out.push_back(static_cast<char>(v4 ? kFamTcp4 : kFamTcp6));
  PutBe16(out, 0);  // len, filled in below
  if (v4) {
    out.append(reinterpret_cast<const char*>(source.ip.data()) + 12, 4);
    out.append(reinterpret_cast<const char*>(destination.ip.data()) + 12, 4);
  } else {
    // An IPv4 address among IPv6 ones goes mapped: ProxyAddress keeps it so.
    out.append(reinterpret_cast<const char*>(source.ip.data()), 16);
    out.append(reinterpret_cast<const char*>(destination.ip.data()), 16);
  }
  PutBe16(out, source.port);
  PutBe16(out, destination.port);
  if (!tlvs.alpn.empty()) AppendTlv(out, kTypeAlpn, tlvs.alpn);
  if (!tlvs.authority.empty()) AppendTlv(out, kTypeAuthority, tlvs.authority);
  if (!tlvs.unique_id.empty()) AppendTlv(out, kTypeUniqueId, tlvs.unique_id);
  if (tlvs.ssl) {
    std::string ssl;
    ssl.push_back(static_cast<char>(ProxySsl::kClientSsl));
    PutBe32(ssl, 1);  // PP 2.2.6: non-zero, no client certificate was verified
    if (!tlvs.ssl_version.empty()) AppendTlv(ssl, kSubtypeSslVersion, tlvs.ssl_version);
    if (!tlvs.ssl_cipher.empty()) AppendTlv(ssl, kSubtypeSslCipher, tlvs.ssl_cipher);
    if (ssl.size() > kMaxV2Len) return absl::InvalidArgumentError("PROXY v2: SSL TLV too long");
    AppendTlv(out, kTypeSsl, ssl);
  }
  size_t crc_at = 0;
  if (tlvs.crc32c) {
    AppendTlv(out, kTypeCrc32c, absl::string_view("\0\0\0\0", 4));
    crc_at = out.size() - 4;
  }
  const size_t len = out.size() - ProxyHeaderParser::kV2FixedSize;
  if (len > kMaxV2Len) {
    return absl::InvalidArgumentError(absl::StrFormat("PROXY v2: header of %d bytes", out.size()));
  }
  out[14] = static_cast<char>(len >> 8);
  out[15] = static_cast<char>(len & 0xFF);
  if (crc_at != 0) {
    // PP 2.2.3: computed with the field zeroed, then written in.
    const uint32_t crc = Crc32c(out);
    for (int k = 0; k < 4; ++k) out[crc_at + k] = static_cast<char>(crc >> (24 - 8 * k));
  }
  return out;
}

std::string BuildProxyV2Local() {
  std::string out(ProxyHeaderParser::kV2Signature);
  out.push_back(static_cast<char>(0x20 | kCmdLocal));
  out.push_back(static_cast<char>(kFamUnspec));
  PutBe16(out, 0);
  return out;
}

}  // namespace postern
