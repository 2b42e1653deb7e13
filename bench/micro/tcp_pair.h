#pragma once

// Loopback TCP helpers for the microbenchmarks that move bytes through real
// sockets (relay_bench, limits_bench): a connected pair, and loops that move
// exactly n bytes.

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstddef>
#include <cstdlib>

namespace postern::micro {

// A connected loopback TCP pair: `a` writes, `b` reads. Aborts on failure
// (a benchmark without its sockets measures nothing).
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
  }
  ~TcpPair() {
    close(a);
    close(b);
  }
  TcpPair(const TcpPair&) = delete;
  TcpPair& operator=(const TcpPair&) = delete;
};

inline void WriteAll(int fd, const char* p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w <= 0) std::abort();
    p += w;
    n -= static_cast<size_t>(w);
  }
}

inline void ReadAll(int fd, char* p, size_t n) {
  while (n > 0) {
    ssize_t r = read(fd, p, n);
    if (r <= 0) std::abort();
    p += r;
    n -= static_cast<size_t>(r);
  }
}

// Moves `n` bytes from a (blocking) pipe's read end into socket `to`.
inline void SpliceAll(int pipe_r, int to, size_t n) {
  while (n > 0) {
    ssize_t m = splice(pipe_r, nullptr, to, nullptr, n, SPLICE_F_MOVE);
    if (m <= 0) std::abort();
    n -= static_cast<size_t>(m);
  }
}

}  // namespace postern::micro
