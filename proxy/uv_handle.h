#pragma once

// proxy/'s timer on a libuv loop. The handle owner itself, UvOwner (freed
// in the close callback, handle->data cleared first), is routing/'s: proxy/
// builds on routing/, not the other way round. routing/ has its own
// UvTimer, which moves its function out before running it (the function may
// destroy the timer); this one keeps it, for Restart().

#include <uv.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <utility>

#include "routing/uv_owner.h"

namespace postern {

// A one-shot or repeating timer calling a std::function on its loop.
class Timer {
 public:
  Timer() = default;
  explicit Timer(uv_loop_t* loop) { Init(loop); }
  // The handle's data points at this object: it cannot move.
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;
  void Init(uv_loop_t* loop) {
    uv_timer_init(loop, h_.Allocate());
    h_.get()->data = this;
  }
  // (Re)arms the timer; `fn` runs once after `delay`.
  void Start(std::chrono::milliseconds delay, std::function<void()> fn) {
    fn_ = std::move(fn);
    uv_timer_start(h_.get(), &Timer::OnFire, static_cast<uint64_t>(delay.count()), 0);
  }
  // Re-arms with the same delay and callback (cheap: for idle timeouts).
  void Restart(std::chrono::milliseconds delay) {
    uv_timer_start(h_.get(), &Timer::OnFire, static_cast<uint64_t>(delay.count()), 0);
  }
  void Stop() {
    if (h_) uv_timer_stop(h_.get());
  }
  // Closes the handle (Init() may follow) and drops the function.
  void Reset() {
    h_.Reset();
    fn_ = nullptr;
  }
  bool initialized() const { return static_cast<bool>(h_); }

 private:
  static void OnFire(uv_timer_t* t) {
    auto* self = static_cast<Timer*>(t->data);
    if (self != nullptr && self->fn_) self->fn_();
  }
  UvOwner<uv_timer_t> h_;
  std::function<void()> fn_;
};

}  // namespace postern
