#pragma once

// One client session: connect, optional TLS, then a scripted IMAP or POP3
// conversation chosen by the scenario. Lives on its worker's loop; deleted by
// the worker once both of its libuv handles have closed.

#include <uv.h>

#include <cstdint>
#include <memory>
#include <string>

#include "bench/mailbench/response_reader.h"
#include "bench/mailbench/transport.h"

namespace postern::mailbench {

class Worker;

class Session {
 public:
  // `start_delay_s`: wait this long before connecting (--ramp).
  Session(Worker* worker, uint64_t index, double start_delay_s = 0);
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  void Start();
  // Leaves the hold: IMAP sends DONE then LOGOUT, POP3 sends QUIT.
  void Release();
  // Fails the session (unless it already logged out) and closes it.
  void Abort(absl::string_view why);
  bool held() const { return phase_ == Phase::kHeld; }

 private:
  enum class Phase {
    kDelayed,  // waiting for its start (--ramp)
    kConnecting,
    kHandshake,
    kProtocol,
    kThinking,  // logged in, pausing after SELECT/STAT (--think)
    kHeld,
    kAwaitEof,
    kClosing
  };
  enum class Step {
    kGreeting,
    kLogin,   // IMAP LOGIN, POP3 PASS
    kUser,    // POP3 USER
    kSelect,  // IMAP SELECT INBOX, POP3 STAT
    kFetch,   // IMAP FETCH 1:n BODY[]
    kRetr,    // POP3 RETR i
    kNoop,
    kIdle,      // IMAP IDLE, waiting for "+ idling"
    kIdleDone,  // IMAP DONE, waiting for the IDLE command's tagged OK
    kLogout,    // IMAP LOGOUT, POP3 QUIT
  };

  static void OnPoll(uv_poll_t* handle, int status, int events);
  static void OnTimer(uv_timer_t* handle);
  static void OnClose(uv_handle_t* handle);
  static const char* StepName(Step s);

  void Fail(absl::string_view why);
  void Finish();  // closes the session; the outcome is already recorded
  void Connect();
  // Runs the scenario's part after SELECT/STAT (after the think time, if any).
  void AfterThink();
  // --sha256: checks the digests of the messages just delivered. False: the
  // session failed.
  bool CheckDigests(uint64_t pop3_number);
  void OnEvents(int events);
  void DoHandshake();
  void DoRead();
  void DoFlush();
  void UpdatePoll();
  void Send(absl::string_view command, Step step, Expect expect);
  void OnReply(const Reply& reply);
  void AfterSelect(uint64_t count);
  void EnterHold();
  void Logout();
  void EndTransfer();
  void ArmTimer(double seconds);
  bool imap() const;

  Worker* worker_;
  const uint64_t index_;
  const double start_delay_s_;
  uv_poll_t poll_{};
  uv_timer_t timer_{};
  bool poll_open_ = false;
  int open_handles_ = 0;
  std::unique_ptr<Transport> transport_;
  ResponseReader reader_;

  Phase phase_ = Phase::kConnecting;
  Step step_ = Step::kGreeting;
  bool counted_active_ = true;  // counts against the worker's concurrency
  bool was_held_ = false;
  bool outcome_recorded_ = false;
  int poll_events_ = 0;
  bool handshake_wants_write_ = false;
  bool write_blocked_ = false;     // the socket would block a write: wait for writable
  bool read_wants_write_ = false;  // TLS read needs the socket writable

  std::string out_;
  size_t out_off_ = 0;
  uint32_t tag_seq_ = 0;
  std::string tag_;

  uint64_t t_start_ = 0;
  uint64_t t_command_ = 0;
  uint64_t t_progress_ = 0;
  uint64_t timeout_ns_ = 0;
  uint64_t t_transfer_ = 0;
  uint64_t transfer_payload_start_ = 0;
  uint64_t transfer_messages_start_ = 0;
  uint64_t selected_count_ = 0;  // messages in the mailbox (SELECT/STAT)
  uint64_t digests_checked_ = 0;
  uint64_t messages_wanted_ = 0;
  uint64_t next_message_ = 0;
  uint64_t pings_done_ = 0;
};

}  // namespace postern::mailbench
