#include "proxy/poller.h"

#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "spdlog/spdlog.h"

namespace postern {
namespace {

// Events taken per epoll_wait: a full batch is followed by another at once.
constexpr int kBatch = 128;
// Batches per libuv turn before timers and deferred work get their turn.
constexpr int kMaxBatches = 4;

}  // namespace

Poller::Poller(uv_loop_t* loop) : loop_(loop), events_(kBatch) {
  epfd_ = epoll_create1(EPOLL_CLOEXEC);
  if (epfd_ < 0) {
    spdlog::critical("epoll_create1: {}", std::strerror(errno));
    std::abort();  // no fds at all at startup: nothing can run
  }
  uv_poll_init(loop_, handle_.Allocate(), epfd_);
  handle_.get()->data = this;
}

Poller::~Poller() {
  handle_.Reset();
  close(epfd_);
}

int Poller::Ctl(int op, int fd, uint32_t events, Watcher* w) {
  epoll_event ev{};
  ev.events = events;
  ev.data.ptr = w;
  return epoll_ctl(epfd_, op, fd, &ev) == 0 ? 0 : -errno;
}

int Poller::Add(int fd, uint32_t events, Watcher* w) {
  int r = Ctl(EPOLL_CTL_ADD, fd, events, w);
  if (r != 0) return r;
  ++watched_;
  UpdateHandle();
  return 0;
}

int Poller::Modify(int fd, uint32_t events, Watcher* w) {
  return Ctl(EPOLL_CTL_MOD, fd, events, w);
}

void Poller::Remove(int fd, Watcher* w) {
  // Our books follow even when the kernel had no registration left (ENOENT
  // or EBADF): the watcher is not called again either way.
  if (epoll_ctl(epfd_, EPOLL_CTL_DEL, fd, nullptr) != 0) {
    spdlog::debug("epoll_ctl DEL fd {}: {}", fd, std::strerror(errno));
  }
  Forget(w);
}

void Poller::Forget(Watcher* w) {
  --watched_;
  if (dispatching_) {
    // Drop what this batch still holds for the watcher: it may be freed
    // before the batch is done.
    for (epoll_event& ev : events_) {
      if (ev.data.ptr == w) ev.data.ptr = nullptr;
    }
  }
  UpdateHandle();
}

void Poller::UpdateHandle() {
  // An idle poll handle must not keep the loop alive: the worker's loop ends
  // when its last socket and handle are gone.
  if (!handle_) return;
  bool active = uv_is_active(handle_.handle()) != 0;
  if (watched_ > 0 && !active) {
    uv_poll_start(handle_.get(), UV_READABLE, &Poller::OnPoll);
  } else if (watched_ == 0 && active) {
    uv_poll_stop(handle_.get());
  }
}

void Poller::OnPoll(uv_poll_t* h, int status, int) {
  auto* self = static_cast<Poller*>(h->data);
  if (self == nullptr) return;
  if (status < 0) {
    // libuv could not poll the epoll fd (it reports the error of its own
    // epoll_ctl or of the poll). The epoll set itself is still ours: log
    // (at most once a minute) and ask it directly, so no ready socket is
    // left waiting.
    ++self->poll_errors_;
    uint64_t now = uv_now(self->loop_);
    if (self->last_error_log_ms_ == 0 || now - self->last_error_log_ms_ >= 60'000) {
      spdlog::error("poller: uv_poll reported {} ({} time(s) since the last report)",
                    uv_strerror(status), self->poll_errors_);
      self->poll_errors_ = 0;
      self->last_error_log_ms_ = now;
    }
    // libuv stops a poll handle that reported an error: watch again.
    if (self->watched_ > 0) uv_poll_start(h, UV_READABLE, &Poller::OnPoll);
  }
  self->Dispatch();
}

void Poller::Dispatch() {
  for (int round = 0; round < kMaxBatches; ++round) {
    int n = epoll_wait(epfd_, events_.data(), kBatch, 0);
    if (n <= 0) return;  // EINTR too: the outer poll calls again
    dispatching_ = true;
    for (int i = 0; i < n; ++i) {
      auto* w = static_cast<Watcher*>(events_[i].data.ptr);
      if (w != nullptr) w->OnReady(events_[i].events);
    }
    dispatching_ = false;
    if (n < kBatch) return;
  }
}

}  // namespace postern
