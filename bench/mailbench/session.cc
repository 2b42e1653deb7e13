#include "bench/mailbench/session.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "bench/mailbench/worker.h"

namespace postern::mailbench {
namespace {

// Bytes read from one socket per poll wake-up before yielding to the others.
constexpr size_t kReadBudget = 4 << 20;
// How long to wait for the server to close after LOGOUT/QUIT before closing ourselves.
constexpr double kAwaitEofSeconds = 2.0;

}  // namespace

Session::Session(Worker* worker, uint64_t index, double start_delay_s)
    : worker_(worker), index_(index), start_delay_s_(start_delay_s) {}

bool Session::imap() const { return worker_->options().proto == Proto::kImap; }

const char* Session::StepName(Step s) {
  switch (s) {
    case Step::kGreeting:
      return "greeting";
    case Step::kLogin:
      return "login";
    case Step::kUser:
      return "USER";
    case Step::kSelect:
      return "SELECT/STAT";
    case Step::kFetch:
      return "FETCH";
    case Step::kRetr:
      return "RETR";
    case Step::kNoop:
      return "NOOP";
    case Step::kIdle:
      return "IDLE";
    case Step::kIdleDone:
      return "IDLE DONE";
    case Step::kLogout:
      return "LOGOUT/QUIT";
  }
  return "?";
}

void Session::Start() {
  uv_timer_init(worker_->loop(), &timer_);
  timer_.data = this;
  ++open_handles_;
  reader_.set_hashing(worker_->options().digests != nullptr);
  if (start_delay_s_ > 0) {
    phase_ = Phase::kDelayed;
    uv_timer_start(&timer_, OnTimer, static_cast<uint64_t>(start_delay_s_ * 1000), 0);
    return;
  }
  Connect();
}

void Session::Connect() {
  const Options& o = worker_->options();
  t_start_ = uv_hrtime();
  t_progress_ = t_start_;
  WorkerStats& stats = worker_->stats();
  if (stats.first_start_ns == 0) stats.first_start_ns = t_start_;

  int fd = socket(o.address.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    Fail(absl::StrCat("socket: ", std::strerror(errno)));
    return;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  transport_ = std::make_unique<Transport>(fd, o.tls ? worker_->NewSsl() : nullptr);
  if (o.sources > 0) {
    // Spread over source addresses (a proxy's per-IP cap sees many clients);
    // the port is picked at connect time, per destination.
    setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
    sockaddr_in src{};
    src.sin_family = AF_INET;
    src.sin_addr.s_addr = htonl(ntohl(o.source.s_addr) + static_cast<uint32_t>(index_ % o.sources));
    if (bind(fd, reinterpret_cast<const sockaddr*>(&src), sizeof(src)) != 0) {
      Fail(absl::StrCat("bind: ", std::strerror(errno)));
      return;
    }
  }
  if (connect(fd, reinterpret_cast<const sockaddr*>(&o.address), o.address_length) != 0 &&
      errno != EINPROGRESS) {
    Fail(absl::StrCat("connect: ", std::strerror(errno)));
    return;
  }
  if (int r = uv_poll_init_socket(worker_->loop(), &poll_, fd); r != 0) {
    Fail(absl::StrCat("uv_poll_init_socket: ", uv_strerror(r)));
    return;
  }
  poll_.data = this;
  poll_open_ = true;
  ++open_handles_;
  phase_ = Phase::kConnecting;
  UpdatePoll();
  ArmTimer(o.timeout_s);
}

void Session::ArmTimer(double seconds) {
  timeout_ns_ = static_cast<uint64_t>(seconds * 1e9);
  t_progress_ = uv_hrtime();
  uv_timer_start(&timer_, OnTimer, std::max<uint64_t>(1, timeout_ns_ / 1000000), 0);
}

void Session::OnTimer(uv_timer_t* handle) {
  auto* s = static_cast<Session*>(handle->data);
  if (s->phase_ == Phase::kClosing || s->phase_ == Phase::kHeld) return;
  if (s->phase_ == Phase::kDelayed) {
    s->Connect();
    return;
  }
  if (s->phase_ == Phase::kThinking) {
    s->phase_ = Phase::kProtocol;
    s->ArmTimer(s->worker_->options().timeout_s);
    s->AfterThink();
    return;
  }
  uint64_t idle_ns = uv_hrtime() - s->t_progress_;
  if (idle_ns < s->timeout_ns_) {
    // Bytes arrived since the timer was set: wait out the rest of the timeout.
    uv_timer_start(&s->timer_, OnTimer, std::max<uint64_t>(1, (s->timeout_ns_ - idle_ns) / 1000000),
                   0);
    return;
  }
  if (s->phase_ == Phase::kAwaitEof) {
    s->Finish();
    return;
  }
  const char* what = s->phase_ == Phase::kConnecting  ? "connect"
                     : s->phase_ == Phase::kHandshake ? "TLS handshake"
                                                      : StepName(s->step_);
  s->Fail(absl::StrCat("timeout waiting for ", what));
}

void Session::UpdatePoll() {
  if (!poll_open_ || phase_ == Phase::kClosing) return;
  int events = 0;
  switch (phase_) {
    case Phase::kDelayed:
      return;
    case Phase::kConnecting:
      events = UV_WRITABLE;
      break;
    case Phase::kHandshake:
      events = handshake_wants_write_ ? UV_WRITABLE : UV_READABLE;
      break;
    default:
      events = UV_READABLE | (write_blocked_ || read_wants_write_ ? UV_WRITABLE : 0);
      break;
  }
  if (events != poll_events_) {
    uv_poll_start(&poll_, events, OnPoll);
    poll_events_ = events;
  }
}

void Session::OnPoll(uv_poll_t* handle, int status, int events) {
  auto* s = static_cast<Session*>(handle->data);
  if (s->phase_ == Phase::kClosing) return;
  if (status < 0) {
    // libuv reports EPOLLERR (a reset, a refused connect) as UV_EBADF and stops
    // polling: find the real cause from the socket before failing.
    if (s->phase_ == Phase::kConnecting) {
      if (s->transport_->FinishConnect() != Io::kOk) {
        s->Fail(s->transport_->error());
        return;
      }
    } else if (s->phase_ != Phase::kHandshake) {
      s->DoRead();
    }
    if (s->phase_ != Phase::kClosing) s->Fail(absl::StrCat("poll: ", uv_strerror(status)));
    return;
  }
  s->OnEvents(events);
}

void Session::OnEvents(int events) {
  if (phase_ == Phase::kConnecting) {
    if ((events & UV_WRITABLE) == 0) return;
    if (transport_->FinishConnect() != Io::kOk) {
      Fail(transport_->error());
      return;
    }
    if (transport_->tls()) {
      phase_ = Phase::kHandshake;
      DoHandshake();
      return;
    }
    phase_ = Phase::kProtocol;
    step_ = Step::kGreeting;
    reader_.Start(imap() ? Expect::kImapGreeting : Expect::kPop3Line);
    UpdatePoll();
    return;
  }
  if (phase_ == Phase::kHandshake) {
    DoHandshake();
    return;
  }
  if (out_off_ < out_.size()) {
    write_blocked_ = false;
    DoFlush();
    if (phase_ == Phase::kClosing) return;
  }
  if ((events & UV_READABLE) != 0 || (read_wants_write_ && (events & UV_WRITABLE) != 0)) {
    read_wants_write_ = false;
    DoRead();
    if (phase_ == Phase::kClosing) return;
  }
  UpdatePoll();
}

void Session::DoHandshake() {
  switch (transport_->Handshake()) {
    case Io::kOk:
      if (transport_->resumed()) ++worker_->stats().tls_resumed;
      phase_ = Phase::kProtocol;
      step_ = Step::kGreeting;
      t_progress_ = uv_hrtime();
      reader_.Start(imap() ? Expect::kImapGreeting : Expect::kPop3Line);
      // The greeting may have arrived with the last handshake flight.
      DoRead();
      if (phase_ == Phase::kClosing) return;
      UpdatePoll();
      return;
    case Io::kWantRead:
      handshake_wants_write_ = false;
      UpdatePoll();
      return;
    case Io::kWantWrite:
      handshake_wants_write_ = true;
      UpdatePoll();
      return;
    default:
      Fail(transport_->error());
      return;
  }
}

void Session::DoRead() {
  char* buf = worker_->read_buffer();
  WorkerStats& stats = worker_->stats();
  size_t total = 0;
  while (phase_ != Phase::kClosing && total < kReadBudget) {
    size_t n = 0;
    Io io = transport_->Read(buf, Worker::kReadBufferSize, &n);
    if (io == Io::kOk) {
      total += n;
      stats.bytes_in += n;
      t_progress_ = uv_hrtime();
      absl::string_view data(buf, n);
      while (!data.empty() && phase_ != Phase::kClosing) {
        size_t used = 0;
        ResponseReader::Result r = reader_.Feed(data, &used);
        data.remove_prefix(used);
        if (r == ResponseReader::Result::kError) {
          Fail(reader_.error());
          return;
        }
        if (r != ResponseReader::Result::kDone) break;
        Reply reply = reader_.reply();
        OnReply(reply);
      }
      continue;
    }
    if (io == Io::kWantRead) return;
    if (io == Io::kWantWrite) {
      read_wants_write_ = true;
      return;
    }
    if (io == Io::kEof) {
      if (phase_ == Phase::kAwaitEof) {
        Finish();
      } else {
        Fail(absl::StrCat("connection closed by the server during ", StepName(step_)));
      }
      return;
    }
    Fail(transport_->error());
    return;
  }
}

void Session::DoFlush() {
  WorkerStats& stats = worker_->stats();
  while (out_off_ < out_.size()) {
    size_t n = 0;
    Io io = transport_->Write(absl::string_view(out_).substr(out_off_), &n);
    if (io == Io::kOk) {
      out_off_ += n;
      stats.bytes_out += n;
      continue;
    }
    if (io == Io::kWantWrite) {
      write_blocked_ = true;
      return;
    }
    if (io == Io::kWantRead) return;  // TLS: retried on the next readable event
    Fail(transport_->error());
    return;
  }
  out_.clear();
  out_off_ = 0;
  write_blocked_ = false;
}

void Session::Send(absl::string_view command, Step step, Expect expect) {
  if (imap()) {
    tag_ = absl::StrCat("a", ++tag_seq_);
    absl::StrAppend(&out_, tag_, " ", command, "\r\n");
  } else {
    absl::StrAppend(&out_, command, "\r\n");
  }
  reader_.Start(expect, tag_);
  step_ = step;
  t_command_ = uv_hrtime();
  t_progress_ = t_command_;
  DoFlush();
  UpdatePoll();
}

void Session::OnReply(const Reply& reply) {
  if (!reply.ok) {
    Fail(absl::StrCat(StepName(step_), " failed: ", reply.text));
    return;
  }
  const Options& o = worker_->options();
  WorkerStats& stats = worker_->stats();
  uint64_t now = uv_hrtime();
  switch (step_) {
    case Step::kGreeting:
      stats.ready_ns.push_back(now - t_start_);
      if (imap()) {
        // RFC 3501 section 6.2.3; user and password are checked to need no quoting escapes.
        Send(absl::StrCat("LOGIN \"", worker_->UserFor(index_), "\" \"", o.password, "\""),
             Step::kLogin, Expect::kImapTagged);
      } else {
        Send(absl::StrCat("USER ", worker_->UserFor(index_)), Step::kUser, Expect::kPop3Line);
      }
      return;
    case Step::kUser:
      Send(absl::StrCat("PASS ", o.password), Step::kLogin, Expect::kPop3Line);
      return;
    case Step::kLogin:
      stats.login_ns.push_back(now - t_command_);
      stats.connect_login_ns.push_back(now - t_start_);
      if (imap()) {
        Send("SELECT INBOX", Step::kSelect, Expect::kImapTagged);
      } else {
        Send("STAT", Step::kSelect, Expect::kPop3Line);
      }
      return;
    case Step::kSelect: {
      uint64_t count = reader_.exists();
      if (!imap()) {
        // RFC 1939 section 5: "+OK nn mm" (messages, octets).
        std::vector<absl::string_view> f = absl::StrSplit(reply.text, ' ', absl::SkipEmpty());
        if (f.size() < 2 || !absl::SimpleAtoi(f[1], &count)) {
          Fail(absl::StrCat("unparsable STAT reply: ", reply.text));
          return;
        }
      }
      AfterSelect(count);
      return;
    }
    case Step::kFetch:
      if (!CheckDigests(0)) return;
      EndTransfer();
      Logout();
      return;
    case Step::kRetr:
      if (!CheckDigests(next_message_)) return;
      if (next_message_ < messages_wanted_) {
        ++next_message_;
        Send(absl::StrCat("RETR ", next_message_), Step::kRetr, Expect::kPop3Multi);
      } else {
        EndTransfer();
        Logout();
      }
      return;
    case Step::kNoop:
      stats.rtt_ns.push_back(now - t_command_);
      if (++pings_done_ < o.pings) {
        Send("NOOP", Step::kNoop, imap() ? Expect::kImapTagged : Expect::kPop3Line);
      } else {
        Logout();
      }
      return;
    case Step::kIdle:
      EnterHold();
      return;
    case Step::kIdleDone:
      Logout();
      return;
    case Step::kLogout:
      stats.session_ns.push_back(now - t_start_);
      ++stats.sessions_ok;
      stats.last_end_ns = std::max(stats.last_end_ns, now);
      outcome_recorded_ = true;
      phase_ = Phase::kAwaitEof;
      reader_.Start(Expect::kNothing);
      ArmTimer(std::min(kAwaitEofSeconds, o.timeout_s));
      return;
  }
}

void Session::AfterSelect(uint64_t count) {
  const Options& o = worker_->options();
  selected_count_ = count;
  if (o.think_s > 0 && o.scenario != Scenario::kIdle) {
    // Logged in and idle for a while, as a mail client between commands: 0.5..1.5
    // x --think, fixed per session index (splitmix64) so runs repeat.
    uint64_t z = index_ + 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    double factor = 0.5 + static_cast<double>(z >> 11) / static_cast<double>(1ULL << 53);
    phase_ = Phase::kThinking;
    // Whatever the server says meanwhile (an unsolicited EXISTS) is dropped;
    // a close is noticed and fails the session.
    reader_.Start(Expect::kNothing);
    uv_timer_start(&timer_, OnTimer, std::max<uint64_t>(1, o.think_s * factor * 1000), 0);
    UpdatePoll();
    return;
  }
  AfterThink();
}

bool Session::CheckDigests(uint64_t pop3_number) {
  const Options& o = worker_->options();
  if (o.digests == nullptr) return true;
  std::vector<MessageDigest> got = reader_.TakeDigests();
  const std::string user = worker_->UserFor(index_);
  WorkerStats& stats = worker_->stats();
  for (MessageDigest& d : got) {
    if (!imap()) d.number = pop3_number;
    const Sha256* want = o.digests->Find(user, d.number);
    if (want == nullptr) {
      Fail(absl::StrCat("sha256: no expected digest for ", user, " message ", d.number));
      return false;
    }
    if (*want != d.sha256) {
      ++stats.verify_mismatches;
      Fail(absl::StrCat("sha256 mismatch: ", user, " message ", d.number));
      return false;
    }
    ++stats.verified;
    ++digests_checked_;
  }
  // Every message asked for must have come (FETCH 1:n answers n times).
  uint64_t due = imap() ? messages_wanted_ : pop3_number;
  if (step_ == Step::kFetch || step_ == Step::kRetr) {
    if (digests_checked_ != due) {
      Fail(absl::StrCat("sha256: ", digests_checked_, " of ", due, " messages delivered"));
      return false;
    }
  }
  return true;
}

void Session::AfterThink() {
  const Options& o = worker_->options();
  const uint64_t count = selected_count_;
  switch (o.scenario) {
    case Scenario::kLogin:
      Logout();
      return;
    case Scenario::kBulk: {
      messages_wanted_ = o.messages != 0 ? std::min(count, o.messages) : count;
      if (messages_wanted_ == 0) {
        Fail("bulk: the mailbox is empty");
        return;
      }
      WorkerStats& stats = worker_->stats();
      t_transfer_ = uv_hrtime();
      if (stats.first_transfer_ns == 0 || t_transfer_ < stats.first_transfer_ns) {
        stats.first_transfer_ns = t_transfer_;
      }
      transfer_payload_start_ = reader_.payload_bytes();
      transfer_messages_start_ = reader_.messages();
      if (imap()) {
        // RFC 3501 section 6.4.5.
        Send(absl::StrCat("FETCH 1:", messages_wanted_, " BODY[]"), Step::kFetch,
             Expect::kImapTagged);
      } else {
        next_message_ = 1;
        Send("RETR 1", Step::kRetr, Expect::kPop3Multi);
      }
      return;
    }
    case Scenario::kPing:
      Send("NOOP", Step::kNoop, imap() ? Expect::kImapTagged : Expect::kPop3Line);
      return;
    case Scenario::kIdle:
      if (imap()) {
        // RFC 2177 section 3: the server answers IDLE with a continuation request.
        Send("IDLE", Step::kIdle, Expect::kImapContinuation);
      } else {
        EnterHold();  // POP3 has no IDLE: the session is held after STAT
      }
      return;
  }
}

void Session::EndTransfer() {
  WorkerStats& stats = worker_->stats();
  uint64_t now = uv_hrtime();
  stats.transfer_ns.push_back(now - t_transfer_);
  stats.transfer_bytes += reader_.payload_bytes() - transfer_payload_start_;
  stats.messages += reader_.messages() - transfer_messages_start_;
  stats.last_transfer_ns = std::max(stats.last_transfer_ns, now);
}

void Session::EnterHold() {
  phase_ = Phase::kHeld;
  uv_timer_stop(&timer_);
  // Keep reading: unsolicited untagged responses (EXISTS) are skipped, a close is noticed.
  if (imap()) {
    reader_.Start(Expect::kImapTagged, tag_);
  } else {
    reader_.Start(Expect::kNothing);
  }
  counted_active_ = false;
  was_held_ = true;
  UpdatePoll();
  worker_->OnHeld(this);
}

void Session::Release() {
  if (phase_ != Phase::kHeld) return;
  phase_ = Phase::kProtocol;
  ArmTimer(worker_->options().timeout_s);
  if (imap()) {
    // RFC 2177 section 3: "DONE" ends IDLE; the IDLE command's tagged OK follows.
    out_ += "DONE\r\n";
    step_ = Step::kIdleDone;
    t_command_ = uv_hrtime();
    DoFlush();
    UpdatePoll();
  } else {
    Logout();
  }
}

void Session::Logout() {
  if (imap()) {
    Send("LOGOUT", Step::kLogout, Expect::kImapTagged);
  } else {
    Send("QUIT", Step::kLogout, Expect::kPop3Line);
  }
}

void Session::Abort(absl::string_view why) { Fail(why); }

void Session::Fail(absl::string_view why) {
  if (phase_ == Phase::kClosing) return;
  if (!outcome_recorded_) {
    outcome_recorded_ = true;
    WorkerStats& stats = worker_->stats();
    ++stats.sessions_failed;
    stats.RecordError(why);
    if (!was_held_) worker_->OnFailedBeforeHold();
  }
  Finish();
}

void Session::Finish() {
  if (phase_ == Phase::kClosing) return;
  phase_ = Phase::kClosing;
  uv_timer_stop(&timer_);
  uv_close(reinterpret_cast<uv_handle_t*>(&timer_), OnClose);
  if (poll_open_) uv_close(reinterpret_cast<uv_handle_t*>(&poll_), OnClose);
}

void Session::OnClose(uv_handle_t* handle) {
  auto* s = static_cast<Session*>(handle->data);
  if (--s->open_handles_ > 0) return;
  s->transport_.reset();  // closes the socket now that libuv no longer polls it
  s->worker_->OnSessionClosed(s, s->was_held_, s->counted_active_);
}

}  // namespace postern::mailbench
