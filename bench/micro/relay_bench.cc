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

#include "benchmark/benchmark.h"
#include "proxy/pipe_pool.h"

namespace postern {
namespace {

// A connected loopback TCP pair: first writes, second reads.
struct TcpPair {
  int a = -1, b = -1;
  TcpPair() {
    int l = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    if (l < 0 || bind(l, reinterpret_cast<sockaddr*>(&addr), len) != 0 || listen(l, 1) != 0 ||
        getsockname(l, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      std::abort();
    }
    a = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(a, reinterpret_cast<sockaddr*>(&addr), len) != 0) std::abort();
    b = accept(l, nullptr, nullptr);
    close(l);
    int one = 1;
    setsockopt(a, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    setsockopt(b, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  }
  ~TcpPair() {
    close(a);
    close(b);
  }
};

void WriteAll(int fd, const char* p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w <= 0) std::abort();
    p += w;
    n -= static_cast<size_t>(w);
  }
}

void ReadAll(int fd, char* p, size_t n) {
  while (n > 0) {
    ssize_t r = read(fd, p, n);
    if (r <= 0) std::abort();
    p += r;
    n -= static_cast<size_t>(r);
  }
}

void BM_RelayReadWrite(benchmark::State& state) {
  const size_t chunk = static_cast<size_t>(state.range(0));
  TcpPair in, out;  // writer -> [in.b  relay  out.a] -> reader
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
      for (ssize_t left = n; left > 0;) {
        ssize_t m = splice(p.r, nullptr, out.a, nullptr, static_cast<size_t>(left), SPLICE_F_MOVE);
        if (m <= 0) std::abort();
        left -= m;
      }
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
