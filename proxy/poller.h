#pragma once

// Socket readiness for many connections through one libuv handle.
//
// Every proxied session holds two sockets. Giving each a uv_tcp_t costs
// 248 bytes per socket (libuv's stream state: write queues, connect and
// shutdown request pointers, its own watcher), about an eighth of an idle
// IMAPS session, and issue 3 budgets 4 KiB for all of it. The Poller keeps
// one epoll set per worker, watched by a single uv_poll_t on the worker's
// libuv loop; a socket is then a file descriptor and a pointer to its
// Watcher (the epoll registration carries the pointer, so no table indexed
// by fd either). Timers, signals, async wake-ups and deferred work stay on
// libuv. Level-triggered: a watcher that stops early (backpressure) is
// called again on the next turn while the socket is still ready.
//
// Lifetime: a Watcher must Remove() its fd before the fd is closed and
// before the watcher is freed (an epoll registration belongs to the open
// file, not the fd number: one that outlived a close(2) through a shared
// file would report events for freed memory), and must not be freed inside
// its own OnReady (Connection frees itself from a libuv close callback,
// which runs after the dispatch). Events still pending in the current batch
// for a removed fd are dropped.

#include <sys/epoll.h>
#include <uv.h>

#include <cstdint>
#include <vector>

#include "routing/uv_owner.h"

namespace postern {

class Poller {
 public:
  class Watcher {
   public:
    // `events`: EPOLLIN, EPOLLOUT, EPOLLERR, EPOLLHUP, EPOLLRDHUP as epoll
    // reported them.
    virtual void OnReady(uint32_t events) = 0;

   protected:
    ~Watcher() = default;
  };

  explicit Poller(uv_loop_t* loop);
  ~Poller();
  Poller(const Poller&) = delete;
  Poller& operator=(const Poller&) = delete;

  uv_loop_t* loop() const { return loop_; }

  // 0 or -errno. `events` is a mask of EPOLLIN / EPOLLOUT / EPOLLRDHUP, or 0
  // (EPOLLERR and EPOLLHUP are always reported, also with no events asked).
  int Add(int fd, uint32_t events, Watcher* w);
  int Modify(int fd, uint32_t events, Watcher* w);
  void Remove(int fd, Watcher* w);
  size_t watched() const { return watched_; }

 private:
  friend class PollerTestPeer;  // tests/proxy/poller_test.cc: a failed poll callback

  // Our books and this batch's pending events, after a removal.
  void Forget(Watcher* w);
  int Ctl(int op, int fd, uint32_t events, Watcher* w);
  static void OnPoll(uv_poll_t* h, int status, int events);
  void Dispatch();
  void UpdateHandle();

  uv_loop_t* loop_;
  int epfd_ = -1;
  size_t watched_ = 0;
  bool dispatching_ = false;
  uint64_t poll_errors_ = 0;  // failed uv_poll callbacks (logged once a minute)
  uint64_t last_error_log_ms_ = 0;
  UvOwner<uv_poll_t> handle_;
  std::vector<epoll_event> events_;
};

}  // namespace postern
