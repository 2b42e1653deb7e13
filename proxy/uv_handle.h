#pragma once

// RAII owners for libuv handles. A libuv handle must not move and must stay
// allocated until its close callback has run, so the owner allocates it on
// the heap and, when destroyed, calls uv_close with a callback that frees it
// (the same shape as CMake's cmUVHandlePtr). The owner clears handle->data
// first, so a callback that fires during closing finds no owner.

#include <uv.h>

#include <chrono>
#include <functional>
#include <utility>

namespace postern {

template <typename T>
class UvHandle {
 public:
  UvHandle() = default;
  ~UvHandle() { Reset(); }
  UvHandle(UvHandle&& o) noexcept : h_(std::exchange(o.h_, nullptr)) {}
  UvHandle& operator=(UvHandle&& o) noexcept {
    if (this != &o) {
      Reset();
      h_ = std::exchange(o.h_, nullptr);
    }
    return *this;
  }
  UvHandle(const UvHandle&) = delete;
  UvHandle& operator=(const UvHandle&) = delete;

  // Allocates the handle; the caller then runs uv_<type>_init on get().
  T* Allocate() {
    Reset();
    h_ = new T();
    return h_;
  }
  // Takes a handle that was allocated with new and initialized.
  void Adopt(T* h) {
    Reset();
    h_ = h;
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

// A one-shot or repeating timer calling a std::function on its loop.
class Timer {
 public:
  Timer() = default;
  explicit Timer(uv_loop_t* loop) { Init(loop); }
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
  bool initialized() const { return static_cast<bool>(h_); }

 private:
  static void OnFire(uv_timer_t* t) {
    auto* self = static_cast<Timer*>(t->data);
    if (self != nullptr && self->fn_) self->fn_();
  }
  UvHandle<uv_timer_t> h_;
  std::function<void()> fn_;
};

}  // namespace postern
