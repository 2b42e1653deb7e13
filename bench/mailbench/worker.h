#pragma once

// One client thread: a libuv loop running up to `concurrency` sessions at a
// time until its share of the sessions is done or the run's deadline passes.

#include <openssl/ssl.h>
#include <uv.h>

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_set>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "bench/mailbench/options.h"

namespace postern::mailbench {

class Session;

// What one worker measured. Times are uv_hrtime() nanoseconds.
struct WorkerStats {
  uint64_t sessions_ok = 0;      // reached LOGOUT/QUIT OK
  uint64_t sessions_failed = 0;  // connect, TLS, protocol error, timeout or deadline
  uint64_t tls_resumed = 0;
  std::vector<uint64_t> session_ns;        // connect start to LOGOUT/QUIT reply
  std::vector<uint64_t> ready_ns;          // connect start to greeting (TCP + TLS + greeting)
  std::vector<uint64_t> login_ns;          // LOGIN (PASS) sent to its OK
  std::vector<uint64_t> connect_login_ns;  // connect start to the LOGIN (PASS) OK
  std::vector<uint64_t> rtt_ns;            // NOOP sent to its OK
  std::vector<uint64_t> transfer_ns;  // first FETCH/RETR sent to the last byte of the last message
  uint64_t transfer_bytes = 0;        // message bytes inside those transfers
  uint64_t messages = 0;              // messages fetched
  uint64_t verified = 0;              // --sha256: messages whose digest matched
  uint64_t verify_mismatches = 0;     // --sha256: messages whose digest did not
  uint64_t bytes_in = 0;              // plaintext bytes read (all sessions)
  uint64_t bytes_out = 0;             // plaintext bytes written
  uint64_t first_start_ns = 0;
  uint64_t last_end_ns = 0;
  uint64_t first_transfer_ns = 0;
  uint64_t last_transfer_ns = 0;
  uint64_t held_max = 0;                   // most sessions held at once (idle)
  std::map<std::string, uint64_t> errors;  // error text -> count (at most kMaxErrorKinds kinds)
  bool deadline_hit = false;

  static constexpr size_t kMaxErrorKinds = 16;
  void RecordError(absl::string_view why);
  void Merge(WorkerStats&& other);
};

// Counters the main thread watches while sessions are held (idle scenario).
struct SharedCounters {
  std::atomic<uint64_t> held{0};     // sessions currently held
  std::atomic<uint64_t> settled{0};  // sessions that reached the hold or failed before it
};

class Worker {
 public:
  static absl::StatusOr<std::unique_ptr<Worker>> Create(const Options& options, uint32_t index,
                                                        uint64_t quota, uint32_t concurrency,
                                                        SharedCounters* shared);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // The thread body: returns when every session has closed.
  void Run();
  // Thread-safe: ends the hold of every held session (idle scenario).
  void Release();
  // Thread-safe: aborts every session and stops starting new ones.
  void Stop();

  WorkerStats& stats() { return stats_; }

  // For sessions, on the worker's thread.
  uv_loop_t* loop() { return &loop_; }
  const Options& options() const { return options_; }
  char* read_buffer() { return read_buffer_.get(); }
  static constexpr size_t kReadBufferSize = 256 * 1024;
  // A new client SSL (with the cached session when --resume), or nullptr for plaintext.
  SSL* NewSsl();
  std::string UserFor(uint64_t session_index) const;
  void OnHeld(Session* s);
  void OnFailedBeforeHold();
  void OnSessionClosed(Session* s, bool was_held, bool counted_active);

 private:
  Worker(const Options& options, uint32_t index, uint64_t quota, uint32_t concurrency,
         SharedCounters* shared);
  static int OnNewTlsSession(SSL* ssl, SSL_SESSION* session);
  static void OnAsync(uv_async_t* handle);
  static void OnDeadline(uv_timer_t* handle);
  static void OnRunFor(uv_timer_t* handle);
  void StartMore();
  void MaybeFinish();
  void StopHere(absl::string_view why);

  const Options& options_;
  const uint32_t index_;
  const uint64_t quota_;
  const uint32_t concurrency_;
  SharedCounters* shared_;
  SSL_CTX* ssl_ctx_ = nullptr;
  SSL_SESSION* resume_session_ = nullptr;
  std::unique_ptr<char[]> read_buffer_;

  uv_loop_t loop_{};
  uv_async_t async_{};
  uv_timer_t deadline_{};
  uv_timer_t run_for_{};  // --run-for: when no more sessions start
  bool finishing_ = false;
  std::mutex async_mu_;
  bool async_open_ = false;  // guarded by async_mu_: async_ may be signalled
  std::atomic<bool> release_requested_{false};
  std::atomic<bool> stop_requested_{false};
  bool stopping_ = false;
  bool no_more_ = false;  // --run-for has passed
  bool releasing_ = false;

  uint64_t started_ = 0;
  uint32_t active_ = 0;  // sessions started and not held
  uint64_t held_ = 0;
  std::unordered_set<Session*> sessions_;
  WorkerStats stats_;
};

}  // namespace postern::mailbench
