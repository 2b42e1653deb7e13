// What issue 7's limits and event-loop rules add to each session, one piece
// at a time, so their sum can be set against a login's CPU (bench/README,
// "Issue 7 on the hot path"): the per-IP count taken at accept and given
// back at the end (ConnectionLimiter), lifting TCP_NOTSENT_LOWAT when the
// relay starts, the SIOCOUTQ a closing connection asks, and removing a
// socket from the epoll set before close(2) rather than leaving it to the
// close. And the plaintext relay's response tracking (what lets a drain or
// SIGTERM stop between two responses): a FETCH stream of 64 KiB messages
// moved blindly in pipe-sized splices (the tree before issue 7) against
// peeking at each response's lines and splicing up to each literal's end.

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <linux/sockios.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "bench/micro/tcp_pair.h"
#include "benchmark/benchmark.h"
#include "protocol/stream_tracker.h"
#include "proxy/connection_limiter.h"
#include "proxy/pipe_pool.h"

namespace postern {
namespace {

using micro::ReadAll;
using micro::SpliceAll;
using micro::TcpPair;
using micro::WriteAll;

void BM_PerIpAcquireRelease(benchmark::State& state) {
  // One client address (the bench's 127.0.0.1) or many: the table's size
  // is the number of addresses with open connections.
  const int spread = static_cast<int>(state.range(0));
  ConnectionLimiter limiter(256);
  std::vector<IpKey> keys(static_cast<size_t>(spread));
  for (int i = 0; i < spread; ++i) {
    // ::ffff:10.x.y.z, as PeerAddress keys an IPv4 client.
    std::array<uint8_t, 16>& ip = keys[static_cast<size_t>(i)].ip;
    ip[10] = ip[11] = 0xff;
    ip[12] = 10;
    ip[13] = static_cast<uint8_t>(i >> 16);
    ip[14] = static_cast<uint8_t>(i >> 8);
    ip[15] = static_cast<uint8_t>(i);
    limiter.Acquire(keys[static_cast<size_t>(i)]);  // held open, as by other sessions
  }
  size_t i = 0;
  for (auto _ : state) {
    const IpKey& k = keys[i++ % keys.size()];
    benchmark::DoNotOptimize(limiter.Acquire(k));
    limiter.Release(k);
  }
}
BENCHMARK(BM_PerIpAcquireRelease)->Arg(1)->Arg(10000);

void BM_NotSentLowatLift(benchmark::State& state) {
  TcpPair p;
  for (auto _ : state) {
    int v = 0;
    benchmark::DoNotOptimize(setsockopt(p.b, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &v, sizeof(v)));
  }
}
BENCHMARK(BM_NotSentLowatLift);

void BM_Siocoutq(benchmark::State& state) {
  TcpPair p;
  for (auto _ : state) {
    int q = 0;
    benchmark::DoNotOptimize(ioctl(p.b, SIOCOUTQ, &q));
  }
}
BENCHMARK(BM_Siocoutq);

// An fd registered, then closed: with range(0) set, removed from the epoll
// set first (Poller::Remove). The difference between the two is the cost of
// the explicit EPOLL_CTL_DEL.
void BM_EpollRegisterClose(benchmark::State& state) {
  const bool del_first = state.range(0) != 0;
  int ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) std::abort();
  for (auto _ : state) {
    int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLRDHUP;
    ev.data.fd = fd;
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) std::abort();
    if (del_first) epoll_ctl(ep, EPOLL_CTL_DEL, fd, nullptr);
    close(fd);
  }
  close(ep);
  state.SetLabel(del_first ? "EPOLL_CTL_DEL, then close" : "close only");
}
BENCHMARK(BM_EpollRegisterClose)->Arg(0)->Arg(1);

// The bench's FETCH: responses of 64 KiB bodies, `kBatch` of them written
// into the backend side per iteration, moved through a pipe to the client
// side and read there.
constexpr size_t kBody = 64 * 1024;
constexpr int kBatch = 4;

std::string FetchStream(int first) {
  std::string body(kBody, 'x');
  for (size_t i = 76; i < body.size(); i += 78) body.replace(i, 2, "\r\n");
  std::string s;
  for (int i = first; i < first + kBatch; ++i) {
    absl::StrAppend(&s, "* ", i, " FETCH (UID ", i, " BODY[] {", kBody, "}\r\n", body, ")\r\n");
  }
  return s;
}

void Out(Pipe& p, int to, size_t* pending) {
  SpliceAll(p.r, to, *pending);
  *pending = 0;
}

// range(0): 0 moves the stream blindly in pipe-sized splices; 1 peeks at
// the lines before each literal (4 KiB, MSG_PEEK), feeds them to a copy of
// the tracker, and splices lines and literal together up to the literal's
// end, as Relay::SpliceDown does.
void BM_RelayFetchStream(benchmark::State& state) {
  const bool tracked = state.range(0) != 0;
  TcpPair in, out;  // Dovecot writes in.a; the relay reads in.b, writes out.a
  PipePool pipes;
  Pipe p;
  if (!pipes.Get(&p)) std::abort();
  fcntl(p.r, F_SETFL, 0);
  fcntl(p.w, F_SETFL, 0);
  const std::string stream = FetchStream(1);
  std::vector<char> sink(stream.size());
  char peek[4096];
  ImapResponseTracker tracker;
  uint64_t syscalls = 0;
  for (auto _ : state) {
    WriteAll(in.a, stream.data(), stream.size());
    size_t moved = 0;
    size_t pending = 0;
    while (moved < stream.size()) {
      size_t want = std::min(p.capacity - pending, stream.size() - moved);
      size_t peeked = 0;
      ImapResponseTracker ahead;
      if (tracked) {
        uint64_t limit = tracker.literal_remaining();
        if (limit == 0) {
          ssize_t n = recv(in.b, peek, sizeof(peek), MSG_PEEK);
          ++syscalls;
          if (n <= 0) std::abort();
          ahead = tracker;
          ahead.Feed(absl::string_view(peek, static_cast<size_t>(n)));
          // No literal ahead (the batch's last ")" line): the peeked lines
          // alone.
          peeked = static_cast<size_t>(n);
          limit = peeked + ahead.literal_remaining();  // 64 KiB literals: no overflow
        }
        if (p.capacity - pending < std::min<uint64_t>(limit, sizeof(peek))) {
          Out(p, out.a, &pending);
          ++syscalls;
        }
        want = static_cast<size_t>(std::min<uint64_t>(p.capacity - pending, limit));
      } else if (want == 0) {
        Out(p, out.a, &pending);
        ++syscalls;
        continue;
      }
      ssize_t n = splice(in.b, nullptr, p.w, nullptr, want, SPLICE_F_MOVE);
      ++syscalls;
      if (n <= 0) std::abort();
      if (tracked)
        tracker.Spliced(static_cast<uint64_t>(n), absl::string_view(peek, peeked), ahead);
      pending += static_cast<size_t>(n);
      moved += static_cast<size_t>(n);
    }
    Out(p, out.a, &pending);
    ++syscalls;
    ReadAll(out.b, sink.data(), sink.size());
  }
  if (tracked && !tracker.at_boundary()) std::abort();
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * stream.size()));
  state.counters["relay_syscalls_per_msg"] =
      static_cast<double>(syscalls) / static_cast<double>(state.iterations() * kBatch);
  state.SetLabel(tracked ? "peek + splice to each literal's end" : "blind pipe-sized splices");
  PipePool::Discard(&p);
}
BENCHMARK(BM_RelayFetchStream)->Arg(0)->Arg(1);

}  // namespace
}  // namespace postern
