// Microbenchmarks of protocol/proxy_header.h: what a PROXY-protocol listener
// runs once per accepted connection, and what a backend connection sends.

#include <benchmark/benchmark.h>

#include <string>

#include "protocol/crc32c.h"
#include "protocol/proxy_header.h"

namespace postern {
namespace {

ProxyAddress Addr(absl::string_view ip, uint16_t port) { return *ProxyAddress::Parse(ip, port); }

// A header like HAProxy's send-proxy-v2-ssl-cn with authority, unique-id and
// crc32c (tests/protocol/proxy_header_test.cc has a captured one): about 150
// bytes, eight TLVs and sub-TLVs, a CRC32C to verify.
std::string SslHeader() {
  ProxyV2Tlvs tlvs;
  tlvs.authority = "mail.example.com";
  tlvs.alpn = "imap";
  tlvs.unique_id = "7F000001:881C_7F000001:46B9_6B0EDE09_0004:0857";
  tlvs.ssl = true;
  tlvs.ssl_version = "TLSv1.3";
  tlvs.ssl_cipher = "TLS_AES_256_GCM_SHA384";
  return *BuildProxyV2(Addr("203.0.113.7", 51234), Addr("192.0.2.10", 993), tlvs);
}

// ProxyHeaderParser::Feed on a whole header followed by the client's first
// bytes, a fresh parser per connection.
void ParseWhole(benchmark::State& state, const std::string& header) {
  const std::string input = header + "a1 CAPABILITY\r\n";
  for (auto _ : state) {
    ProxyHeaderParser parser;
    size_t used = 0;
    benchmark::DoNotOptimize(parser.Feed(input, &used));
    benchmark::DoNotOptimize(parser.header().source.port);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) *
                          static_cast<int64_t>(header.size()));
}

// v2 with TLVs (SSL, authority, ALPN, unique id) and CRC32C verification.
void BM_ProxyV2ParseTlvs(benchmark::State& state) { ParseWhole(state, SslHeader()); }
BENCHMARK(BM_ProxyV2ParseTlvs);

// v2, TCP over IPv4, no TLV (send-proxy-v2).
void BM_ProxyV2ParseTcp4(benchmark::State& state) {
  ParseWhole(state, *BuildProxyV2(Addr("203.0.113.7", 51234), Addr("192.0.2.10", 993),
                                  ProxyV2Tlvs{.crc32c = false}));
}
BENCHMARK(BM_ProxyV2ParseTcp4);

// v1 TCP4 (send-proxy).
void BM_ProxyV1ParseTcp4(benchmark::State& state) {
  ParseWhole(state, "PROXY TCP4 203.0.113.7 192.0.2.10 51234 993\r\n");
}
BENCHMARK(BM_ProxyV1ParseTcp4);

// v1 TCP6, the addresses through inet_pton.
void BM_ProxyV1ParseTcp6(benchmark::State& state) {
  ParseWhole(state, "PROXY TCP6 2001:db8:85a3::8a2e:370:7334 2001:db8::10 51234 993\r\n");
}
BENCHMARK(BM_ProxyV1ParseTcp6);

// The v2 header with TLVs arriving one byte per read (worst-case
// segmentation: the bytes are gathered, then parsed once).
void BM_ProxyV2ParseTlvsByteAtATime(benchmark::State& state) {
  const std::string header = SslHeader();
  for (auto _ : state) {
    ProxyHeaderParser parser;
    for (size_t i = 0; i < header.size(); ++i) {
      size_t used = 0;
      benchmark::DoNotOptimize(parser.Feed(absl::string_view(header).substr(i, 1), &used));
    }
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) *
                          static_cast<int64_t>(header.size()));
}
BENCHMARK(BM_ProxyV2ParseTlvsByteAtATime);

// BuildProxyV2 for a backend connection: addresses, authority, SSL, CRC32C.
void BM_BuildProxyV2(benchmark::State& state) {
  const ProxyAddress src = Addr("203.0.113.7", 51234), dst = Addr("192.0.2.10", 143);
  ProxyV2Tlvs tlvs;
  tlvs.authority = "mail.example.com";
  tlvs.ssl = true;
  tlvs.ssl_version = "TLSv1.3";
  tlvs.ssl_cipher = "TLS_AES_256_GCM_SHA384";
  for (auto _ : state) {
    absl::StatusOr<std::string> out = BuildProxyV2(src, dst, tlvs);
    benchmark::DoNotOptimize(out->data());
  }
}
BENCHMARK(BM_BuildProxyV2);

// Crc32c over Arg bytes (table-driven, a byte per step).
void BM_Crc32c(benchmark::State& state) {
  const std::string data(static_cast<size_t>(state.range(0)), 'x');
  for (auto _ : state) benchmark::DoNotOptimize(Crc32c(data));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) *
                          static_cast<int64_t>(data.size()));
}
BENCHMARK(BM_Crc32c)->Arg(64)->Arg(256)->Arg(4096);

}  // namespace
}  // namespace postern
