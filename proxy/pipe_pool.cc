#include "proxy/pipe_pool.h"

#include <fcntl.h>
#include <unistd.h>

namespace postern {

PipePool::~PipePool() {
  for (Pipe& p : free_) Discard(&p);
}

bool PipePool::Get(Pipe* p) {
  if (!free_.empty()) {
    *p = free_.back();
    free_.pop_back();
    return true;
  }
  int fds[2];
  if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) return false;
  p->r = fds[0];
  p->w = fds[1];
  int size = fcntl(p->w, F_SETPIPE_SZ, static_cast<int>(capacity_));
  if (size < 0) size = fcntl(p->w, F_GETPIPE_SZ);
  p->capacity = size > 0 ? static_cast<size_t>(size) : 64 * 1024;
  return true;
}

void PipePool::Put(Pipe* p) {
  if (!p->valid()) return;
  if (free_.size() < max_free_) {
    free_.push_back(*p);
    *p = Pipe();
  } else {
    Discard(p);
  }
}

void PipePool::Discard(Pipe* p) {
  if (!p->valid()) return;
  close(p->r);
  close(p->w);
  *p = Pipe();
}

}  // namespace postern
