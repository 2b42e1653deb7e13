// The plaintext relay's byte moving, through real loopback TCP sockets:
// read(2) into a buffer and send it on (what the buffered relay does) against
// splice(2) socket -> pipe -> socket (what Session does when both sides are
// plaintext). Each iteration writes `chunk` bytes into the source
// connection, moves them across, and reads them out at the far end; the
// writing and reading are the same in both, so the difference is the relay.

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <string>
#include <vector>

#include "bench/micro/tcp_pair.h"
#include "benchmark/benchmark.h"
#include "proxy/pipe_pool.h"

namespace postern {
namespace {

using micro::ReadAll;
using micro::SpliceAll;
using micro::TcpPair;
using micro::WriteAll;

// TCP_NODELAY on both ends of a pair, as Postern's sockets have it.
void NoDelay(const TcpPair& p) {
  int one = 1;
  setsockopt(p.a, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  setsockopt(p.b, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

void BM_RelayReadWrite(benchmark::State& state) {
  const size_t chunk = static_cast<size_t>(state.range(0));
  TcpPair in, out;  // writer -> [in.b  relay  out.a] -> reader
  NoDelay(in);
  NoDelay(out);
  std::string data(chunk, 'x');
  std::vector<char> relay(64 * 1024), sink(chunk);
  for (auto _ : state) {
    WriteAll(in.a, data.data(), chunk);
    size_t moved = 0;
    while (moved < chunk) {
      ssize_t r = read(in.b, relay.data(), std::min(relay.size(), chunk - moved));
      if (r <= 0) std::abort();
      WriteAll(out.a, relay.data(), static_cast<size_t>(r));
      moved += static_cast<size_t>(r);
    }
    ReadAll(out.b, sink.data(), chunk);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * chunk));
}
BENCHMARK(BM_RelayReadWrite)->Arg(16 * 1024)->Arg(64 * 1024)->Arg(256 * 1024);

void BM_RelaySplice(benchmark::State& state) {
  const size_t chunk = static_cast<size_t>(state.range(0));
  TcpPair in, out;
  NoDelay(in);
  NoDelay(out);
  PipePool pipes;
  Pipe p;
  if (!pipes.Get(&p)) std::abort();
  // Blocking pipe ends here: the benchmark moves exact amounts.
  fcntl(p.r, F_SETFL, 0);
  fcntl(p.w, F_SETFL, 0);
  std::string data(chunk, 'x');
  std::vector<char> sink(chunk);
  for (auto _ : state) {
    WriteAll(in.a, data.data(), chunk);
    size_t moved = 0;
    while (moved < chunk) {
      ssize_t n =
          splice(in.b, nullptr, p.w, nullptr, std::min(p.capacity, chunk - moved), SPLICE_F_MOVE);
      if (n <= 0) std::abort();
      SpliceAll(p.r, out.a, static_cast<size_t>(n));
      moved += static_cast<size_t>(n);
    }
    ReadAll(out.b, sink.data(), chunk);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * chunk));
  PipePool::Discard(&p);
}
BENCHMARK(BM_RelaySplice)->Arg(16 * 1024)->Arg(64 * 1024)->Arg(256 * 1024);

}  // namespace
}  // namespace postern
