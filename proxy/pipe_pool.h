#pragma once

// Pipes for splice(2) relaying, lent per transfer and cached per worker.
//
// A plaintext relay moves bytes socket -> pipe -> socket inside the kernel
// (no copy through our buffers). A pipe is two file descriptors, so a
// session holds one only while bytes are in it: borrowed when a socket is
// readable, given back as soon as it is empty again. An idle session holds
// none, and 9,000 idle sessions stay within the fd limit.

#include <cstddef>
#include <vector>

namespace postern {

struct Pipe {
  int r = -1;
  int w = -1;
  size_t capacity = 0;  // what it holds at most (F_GETPIPE_SZ)
  bool valid() const { return r >= 0; }
};

class PipePool {
 public:
  // `capacity`: asked of each new pipe (F_SETPIPE_SZ); the kernel's default
  // (64 KiB) stays when it refuses.
  explicit PipePool(size_t capacity = 256 * 1024, size_t max_free = 16)
      : capacity_(capacity), max_free_(max_free) {}
  ~PipePool();
  PipePool(const PipePool&) = delete;
  PipePool& operator=(const PipePool&) = delete;

  // A cached pipe or a new one (non-blocking, close-on-exec); false when the
  // process is out of fds: the caller then relays through buffers.
  bool Get(Pipe* p);
  // An empty pipe back to the cache (closed when the cache is full).
  void Put(Pipe* p);
  // A pipe that may still hold bytes: closed.
  static void Discard(Pipe* p);
  size_t free_count() const { return free_.size(); }

 private:
  size_t capacity_;
  size_t max_free_;
  std::vector<Pipe> free_;
};

}  // namespace postern
