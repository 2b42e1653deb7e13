// The PROXY protocol receiver and writer (protocol/proxy_header.h).
//
// The first input byte picks the mode.
//
// Even: the rest is a byte stream from a peer. The options come from the
// next two bytes (versions accepted, a v2 size limit). Checks:
//  - split invariance: the whole input, one byte at a time, random cuts and
//    Feed(Buffer&) over small slabs give the same status, the same number of
//    bytes consumed, and the same header or error;
//  - never past the header: after kDone the bytes consumed are exactly the
//    header (16 + len for v2, up to the first CR LF for v1), every shorter
//    prefix is still kNeedMore, and the Buffer keeps everything after it;
//  - the one-shot ParseProxyV1/V2 on the framed header agree;
//  - writer round trip: a parsed kProxy header re-encoded with BuildProxyV2
//    parses back to the same addresses and TLVs.
//
// Odd: the rest chooses the writer's fields (families, addresses, ports,
// TLV strings of any bytes and lengths). BuildProxyV2 either refuses for a
// documented limit or gives a header that parses back, whole and one byte
// at a time, to exactly those fields, consuming exactly its bytes.
//
// Run it with tests/fuzz/run.sh 300 proxy_header (tests/README.md).
// Seeds (corpus/proxy_header/): "\x00\x00" + a header and some client bytes
// for the parser (the HAProxy captures of tests/protocol/proxy_header_test.cc,
// PP 2.1's examples, a few malformed ones), "\x01" + writer choices.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "protocol/buffer.h"
#include "protocol/proxy_header.h"
#include "tests/fuzz/fuzz_util.h"

namespace postern {
namespace {

using Status = ProxyHeaderParser::Status;

using fuzz::FuzzInput;

struct Outcome {
  Status status = Status::kNeedMore;
  size_t consumed = 0;
  ProxyHeader header;
  std::string error;

  bool operator==(const Outcome& o) const {
    return status == o.status && consumed == o.consumed && header == o.header && error == o.error;
  }
};

Outcome Finish(const ProxyHeaderParser& parser, Status status, size_t consumed) {
  Outcome o;
  o.status = status;
  if (status == Status::kDone) {
    o.consumed = consumed;
    o.header = parser.header();
    POSTERN_FUZZ_CHECK(parser.size() == consumed);
  } else if (status == Status::kError) {
    o.error = std::string(parser.error().message());
    POSTERN_FUZZ_CHECK(absl::IsInvalidArgument(parser.error()) ||
                       absl::IsResourceExhausted(parser.error()));
  } else {
    o.consumed = consumed;
  }
  return o;
}

// Feeds the pieces in order until the parser finishes.
Outcome FeedPieces(const std::vector<absl::string_view>& pieces,
                   const ProxyHeaderOptions& options) {
  ProxyHeaderParser parser(options);
  Status status = Status::kNeedMore;
  size_t consumed = 0;
  for (absl::string_view piece : pieces) {
    size_t used = 0;
    status = parser.Feed(piece, &used);
    POSTERN_FUZZ_CHECK(used <= piece.size());
    if (status == Status::kNeedMore) POSTERN_FUZZ_CHECK(used == piece.size());
    consumed += used;
    if (status != Status::kNeedMore) break;
  }
  if (status != Status::kNeedMore) {
    size_t used = 1;
    POSTERN_FUZZ_CHECK(parser.Feed("x", &used) == status && used == 0);
  }
  return Finish(parser, status, consumed);
}

std::vector<absl::string_view> Cut(absl::string_view data, uint32_t seed, size_t max_piece) {
  std::vector<absl::string_view> out;
  uint32_t x = seed == 0 ? 0x9E3779B9u : seed;
  while (!data.empty()) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    const size_t n = std::min<size_t>(1 + x % max_piece, data.size());
    out.push_back(data.substr(0, n));
    data.remove_prefix(n);
  }
  return out;
}

// Feed(Buffer&) after each of the pieces is appended; checks what stays.
Outcome FeedBuffer(absl::string_view data, size_t slab, uint32_t seed,
                   const ProxyHeaderOptions& options) {
  BufferPool pool(slab);
  Buffer buf(pool);
  ProxyHeaderParser parser(options);
  Status status = Status::kNeedMore;
  size_t appended = 0;
  for (absl::string_view piece : Cut(data, seed, 13)) {
    buf.Append(piece);
    appended += piece.size();
    status = parser.Feed(buf);
    if (status != Status::kNeedMore) break;
    POSTERN_FUZZ_CHECK(buf.empty());
  }
  if (status == Status::kDone) {
    // Exactly the header was drained.
    POSTERN_FUZZ_CHECK(buf.size() == appended - parser.size());
    POSTERN_FUZZ_CHECK(buf.ToString() == data.substr(parser.size(), buf.size()));
  }
  return Finish(parser, status, status == Status::kDone ? parser.size() : appended);
}

void CheckRoundTrip(const ProxyHeader& h) {
  if (h.kind != ProxyKind::kProxy) return;
  ProxyV2Tlvs tlvs;
  tlvs.authority = h.authority;
  tlvs.alpn = h.alpn;
  tlvs.unique_id = h.unique_id;
  tlvs.ssl = h.ssl.client_ssl();
  tlvs.ssl_version = h.ssl.version;
  tlvs.ssl_cipher = h.ssl.cipher;
  const absl::StatusOr<std::string> bytes = BuildProxyV2(h.source, h.destination, tlvs);
  // Whatever a parser accepted fits the writer's limits, except an ALPN
  // string close to the 64 KiB len field (the parser's default limit is
  // 4 KiB, but options may raise it).
  if (!bytes.ok()) {
    POSTERN_FUZZ_CHECK(h.alpn.size() + h.ssl.version.size() + h.ssl.cipher.size() > 60000);
    return;
  }
  ProxyHeaderOptions big;
  big.max_v2_size = 16 + 65535;
  const Outcome o = FeedPieces({*bytes}, big);
  POSTERN_FUZZ_CHECK(o.status == Status::kDone);
  POSTERN_FUZZ_CHECK(o.consumed == bytes->size());
  // v4 pairs stay v4; a pair with v6 goes as v6 (v4 mapped).
  const bool v4 = h.source.v4 && h.destination.v4;
  POSTERN_FUZZ_CHECK(o.header.source.ip == h.source.ip && o.header.source.port == h.source.port);
  POSTERN_FUZZ_CHECK(o.header.destination.ip == h.destination.ip);
  POSTERN_FUZZ_CHECK(o.header.destination.port == h.destination.port);
  POSTERN_FUZZ_CHECK(o.header.source.v4 == v4 && o.header.destination.v4 == v4);
  POSTERN_FUZZ_CHECK(o.header.authority == h.authority && o.header.alpn == h.alpn);
  POSTERN_FUZZ_CHECK(o.header.unique_id == h.unique_id && o.header.crc32c);
  POSTERN_FUZZ_CHECK(o.header.ssl.client_ssl() == tlvs.ssl);
  // The writer describes a TLS client only (PP2_CLIENT_SSL set): a header
  // whose SSL TLV had that bit clear loses its version and cipher.
  POSTERN_FUZZ_CHECK(o.header.ssl.version == (tlvs.ssl ? h.ssl.version : ""));
  POSTERN_FUZZ_CHECK(o.header.ssl.cipher == (tlvs.ssl ? h.ssl.cipher : ""));
}

void FuzzParser(FuzzInput& in) {
  const uint8_t flags = in.Byte();
  ProxyHeaderOptions options;
  options.accept_v1 = (flags & 1) == 0;
  options.accept_v2 = (flags & 2) == 0;
  if ((flags & 4) != 0) options.max_v2_size = in.U16();
  const uint32_t seed = flags;
  const absl::string_view data = in.Rest();

  const Outcome whole = FeedPieces({data}, options);
  POSTERN_FUZZ_CHECK(FeedPieces(Cut(data, 1, 1), options) == whole);  // one byte at a time
  POSTERN_FUZZ_CHECK(FeedPieces(Cut(data, seed + 7, 5), options) == whole);
  POSTERN_FUZZ_CHECK(FeedPieces(Cut(data, seed + 11, 64), options) == whole);
  POSTERN_FUZZ_CHECK(FeedBuffer(data, 1 + flags % 17, seed, options) == whole);
  if (whole.status == Status::kNeedMore) {
    POSTERN_FUZZ_CHECK(whole.consumed == data.size());
    return;
  }
  if (whole.status != Status::kDone) return;

  // Never past the header.
  const absl::string_view header = data.substr(0, whole.consumed);
  POSTERN_FUZZ_CHECK(whole.consumed <= data.size());
  if (whole.header.version == 2) {
    POSTERN_FUZZ_CHECK(header.size() >= 16);
    const size_t len = static_cast<uint8_t>(header[14]) << 8 | static_cast<uint8_t>(header[15]);
    POSTERN_FUZZ_CHECK(header.size() == 16 + len);
    POSTERN_FUZZ_CHECK(header.size() <= options.max_v2_size);
  } else {
    POSTERN_FUZZ_CHECK(whole.header.version == 1);
    POSTERN_FUZZ_CHECK(header.find("\r\n") == header.size() - 2);
    POSTERN_FUZZ_CHECK(header.size() <= ProxyHeaderParser::kMaxV1Size);
  }
  POSTERN_FUZZ_CHECK(FeedPieces({header.substr(0, header.size() - 1)}, options).status ==
                     Status::kNeedMore);
  const absl::StatusOr<ProxyHeader> framed =
      whole.header.version == 2 ? ParseProxyV2(header) : ParseProxyV1(header);
  POSTERN_FUZZ_CHECK(framed.ok() && *framed == whole.header);
  CheckRoundTrip(whole.header);
}

ProxyAddress FuzzAddress(FuzzInput& in, bool v4) {
  std::array<uint8_t, 16> ip{};
  const absl::string_view bytes = in.Bytes(v4 ? 4 : 16);
  std::copy(bytes.begin(), bytes.end(), ip.begin());
  const uint16_t port = in.U16();
  if (v4) return ProxyAddress::V4({ip[0], ip[1], ip[2], ip[3]}, port);
  return ProxyAddress::V6(ip, port);
}

void FuzzWriter(FuzzInput& in) {
  const uint8_t flags = in.Byte();
  const ProxyAddress src = FuzzAddress(in, (flags & 1) != 0);
  const ProxyAddress dst = FuzzAddress(in, (flags & 2) != 0);
  ProxyV2Tlvs tlvs;
  tlvs.crc32c = (flags & 4) != 0;
  tlvs.ssl = (flags & 8) != 0;
  // Lengths: a byte, times 2 when flags say so (past the 255/128 limits).
  auto field = [&](int bit) { return in.Bytes(in.Byte() * ((flags >> bit & 1) != 0 ? 2u : 1u)); };
  tlvs.authority = field(4);
  tlvs.alpn = field(5);
  tlvs.unique_id = field(6);
  tlvs.ssl_version = field(7);
  tlvs.ssl_cipher = in.Rest();

  const absl::StatusOr<std::string> bytes = BuildProxyV2(src, dst, tlvs);
  if (!bytes.ok()) {
    POSTERN_FUZZ_CHECK(absl::IsInvalidArgument(bytes.status()));
    POSTERN_FUZZ_CHECK(tlvs.authority.size() > 255 || tlvs.unique_id.size() > 128 ||
                       tlvs.ssl_cipher.size() > 60000);
    return;
  }
  ProxyHeaderOptions big;
  big.max_v2_size = 16 + 65535;
  const std::string stream = *bytes + "a1 CAPABILITY\r\n";
  const Outcome whole = FeedPieces({stream}, big);
  POSTERN_FUZZ_CHECK(whole.status == Status::kDone);
  POSTERN_FUZZ_CHECK(whole.consumed == bytes->size());
  POSTERN_FUZZ_CHECK(FeedPieces(Cut(stream, flags, 1), big) == whole);
  const ProxyHeader& h = whole.header;
  const bool v4 = src.v4 && dst.v4;
  POSTERN_FUZZ_CHECK(h.version == 2 && h.kind == ProxyKind::kProxy);
  POSTERN_FUZZ_CHECK(h.source.ip == src.ip && h.source.port == src.port && h.source.v4 == v4);
  POSTERN_FUZZ_CHECK(h.destination.ip == dst.ip && h.destination.port == dst.port);
  POSTERN_FUZZ_CHECK(h.authority == tlvs.authority && h.alpn == tlvs.alpn);
  POSTERN_FUZZ_CHECK(h.unique_id == tlvs.unique_id && h.crc32c == tlvs.crc32c);
  POSTERN_FUZZ_CHECK(h.ssl.client_ssl() == tlvs.ssl);
  if (tlvs.ssl) {
    POSTERN_FUZZ_CHECK(h.ssl.version == tlvs.ssl_version && h.ssl.cipher == tlvs.ssl_cipher);
  }
}

}  // namespace
}  // namespace postern

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  postern::fuzz::FuzzInput in(data, size);
  if ((in.Byte() & 1) == 0) {
    postern::FuzzParser(in);
  } else {
    postern::FuzzWriter(in);
  }
  return 0;
}
