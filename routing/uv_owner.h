#pragma once

// RAII for libuv handles, routing/'s and proxy/'s (proxy/ builds on
// routing/): a handle must not move and must stay allocated until its close
// callback has run, so the owner allocates it on the heap and, when
// destroyed, calls uv_close with a callback that frees it (the shape of
// CMake's cmUVHandlePtr).
// The owner clears handle->data first: a callback that fires while the
// handle closes (a connect or write request cancelled by the close) finds
// no owner and must return.

#include <uv.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <utility>

namespace postern {

template <typename T>
class UvOwner {
 public:
  UvOwner() = default;
  ~UvOwner() { Reset(); }
  UvOwner(const UvOwner&) = delete;
  UvOwner& operator=(const UvOwner&) = delete;

  // Allocates the handle; the caller then runs uv_<type>_init on it.
  T* Allocate() {
    Reset();
    h_ = new T();
    return h_;
  }
  T* get() const { return h_; }
  uv_handle_t* handle() const { return reinterpret_cast<uv_handle_t*>(h_); }
  explicit operator bool() const { return h_ != nullptr; }

  // Closes (if initialized) and frees the handle in its close callback.
  void Reset() {
    if (h_ == nullptr) return;
    uv_handle_t* h = handle();
    h->data = nullptr;
    if (h->loop != nullptr) {
      if (!uv_is_closing(h)) uv_close(h, [](uv_handle_t* c) { delete reinterpret_cast<T*>(c); });
    } else {
      delete h_;  // never initialized
    }
    h_ = nullptr;
  }

 private:
  T* h_ = nullptr;
};

// A one-shot timer calling a std::function on its loop. The function is
// moved out before it runs, so it may destroy the timer (and its owner).
class UvTimer {
 public:
  UvTimer() = default;
  explicit UvTimer(uv_loop_t* loop) { Init(loop); }
  void Init(uv_loop_t* loop) {
    uv_timer_init(loop, h_.Allocate());
    h_.get()->data = this;
  }
  // (Re)arms the timer: `fn` runs once after `delay`, replacing any earlier one.
  void Start(std::chrono::milliseconds delay, std::function<void()> fn) {
    fn_ = std::move(fn);
    uv_timer_start(h_.get(), &UvTimer::OnFire,
                   static_cast<uint64_t>(std::max<int64_t>(0, delay.count())), 0);
  }
  void Stop() {
    if (h_) uv_timer_stop(h_.get());
    fn_ = nullptr;
  }

 private:
  static void OnFire(uv_timer_t* t) {
    auto* self = static_cast<UvTimer*>(t->data);
    if (self == nullptr || !self->fn_) return;
    std::function<void()> fn = std::move(self->fn_);
    self->fn_ = nullptr;
    fn();  // may destroy *self
  }
  UvOwner<uv_timer_t> h_;
  std::function<void()> fn_;
};

}  // namespace postern
