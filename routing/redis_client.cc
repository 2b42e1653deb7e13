#include "routing/redis_client.h"

#include <arpa/inet.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <algorithm>
#include <deque>
#include <limits>
#include <random>
#include <set>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/container/inlined_vector.h"
#include "absl/functional/any_invocable.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "spdlog/spdlog.h"

namespace postern {
namespace {

// --- libuv glue ---------------------------------------------------------

// hiredis's libuv adapter (hiredis/adapters/libuv.h), written out here for
// one fix (redis_client.h): libuv turns POLLERR into status UV_EBADF and
// stops the handle, which the 0.14 adapter ignores, so a refused connect or
// a reset went unnoticed. On an error status hiredis is let read and write
// as it asked, and meets the socket's error itself (hiredis 1.0 does this).
struct UvEvents {
  redisAsyncContext* context = nullptr;
  uv_poll_t handle;
  int events = 0;
};

void UvPoll(uv_poll_t* handle, int status, int events) {
  auto* p = static_cast<UvEvents*>(handle->data);
  int ev = status != 0 ? p->events : events;
  // hiredis may free the context in either call; its cleanup hook then
  // clears p->context (p itself lives until the close callback).
  if (p->context != nullptr && (ev & UV_READABLE)) redisAsyncHandleRead(p->context);
  if (p->context != nullptr && (ev & UV_WRITABLE)) redisAsyncHandleWrite(p->context);
}

void UvUpdate(UvEvents* p) {
  if (p->events != 0) {
    uv_poll_start(&p->handle, p->events, UvPoll);
  } else {
    uv_poll_stop(&p->handle);
  }
}

void UvAddRead(void* data) {
  auto* p = static_cast<UvEvents*>(data);
  p->events |= UV_READABLE;
  UvUpdate(p);
}

void UvDelRead(void* data) {
  auto* p = static_cast<UvEvents*>(data);
  p->events &= ~UV_READABLE;
  UvUpdate(p);
}

void UvAddWrite(void* data) {
  auto* p = static_cast<UvEvents*>(data);
  p->events |= UV_WRITABLE;
  UvUpdate(p);
}

void UvDelWrite(void* data) {
  auto* p = static_cast<UvEvents*>(data);
  p->events &= ~UV_WRITABLE;
  UvUpdate(p);
}

void UvCleanup(void* data) {
  auto* p = static_cast<UvEvents*>(data);
  p->context = nullptr;
  uv_close(reinterpret_cast<uv_handle_t*>(&p->handle),
           [](uv_handle_t* h) { delete static_cast<UvEvents*>(h->data); });
}

bool UvAttach(redisAsyncContext* ac, uv_loop_t* loop) {
  if (ac->ev.data != nullptr) return false;
  auto* p = new UvEvents();
  if (uv_poll_init(loop, &p->handle, ac->c.fd) != 0) {
    delete p;
    return false;
  }
  p->handle.data = p;
  p->context = ac;
  ac->ev.data = p;
  ac->ev.addRead = UvAddRead;
  ac->ev.delRead = UvDelRead;
  ac->ev.addWrite = UvAddWrite;
  ac->ev.delWrite = UvDelWrite;
  ac->ev.cleanup = UvCleanup;
  return true;
}

// A timer calling one function, freed in its close callback.
class UvTimer {
 public:
  UvTimer(uv_loop_t* loop, std::function<void()> fn) : h_(new uv_timer_t), fn_(std::move(fn)) {
    uv_timer_init(loop, h_);
    h_->data = this;
  }
  ~UvTimer() {
    h_->data = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(h_),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
  }
  UvTimer(const UvTimer&) = delete;
  UvTimer& operator=(const UvTimer&) = delete;

  void Start(int64_t delay_ms) {
    uv_timer_start(
        h_,
        [](uv_timer_t* t) {
          if (t->data != nullptr) static_cast<UvTimer*>(t->data)->fn_();
        },
        static_cast<uint64_t>(std::max<int64_t>(delay_ms, 0)), 0);
  }
  void Stop() { uv_timer_stop(h_); }

 private:
  uv_timer_t* h_;
  std::function<void()> fn_;
};

// An idle handle, active only while there is something to deliver.
class UvIdle {
 public:
  UvIdle(uv_loop_t* loop, std::function<void()> fn) : h_(new uv_idle_t), fn_(std::move(fn)) {
    uv_idle_init(loop, h_);
    h_->data = this;
  }
  ~UvIdle() {
    h_->data = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(h_),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_idle_t*>(h); });
  }
  UvIdle(const UvIdle&) = delete;
  UvIdle& operator=(const UvIdle&) = delete;

  void Start() {
    uv_idle_start(h_, [](uv_idle_t* i) {
      if (i->data != nullptr) static_cast<UvIdle*>(i->data)->fn_();
    });
  }
  void Stop() { uv_idle_stop(h_); }

 private:
  uv_idle_t* h_;
  std::function<void()> fn_;
};

int64_t Ms(std::chrono::milliseconds d) { return static_cast<int64_t>(d.count()); }

RedisValue FromReply(const redisReply* r) {
  switch (r->type) {
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
      return RedisValue::String(std::string(r->str, r->len));
    case REDIS_REPLY_ERROR:
      return RedisValue::Error(std::string(r->str, r->len));
    case REDIS_REPLY_INTEGER:
      return RedisValue::Integer(r->integer);
    case REDIS_REPLY_ARRAY: {
      std::vector<RedisValue> e;
      e.reserve(r->elements);
      for (size_t i = 0; i < r->elements; ++i) e.push_back(FromReply(r->element[i]));
      return RedisValue::Array(std::move(e));
    }
    default:
      return RedisValue::Nil();
  }
}

// hiredis's description of the context's error, or `otherwise`.
std::string ErrorText(const redisAsyncContext* ac, const char* otherwise) {
  if (ac->errstr == nullptr || ac->errstr[0] == '\0') return otherwise;
  return ac->errstr;
}

absl::Status ValidateOptions(const RedisOptions& o) {
  if (o.connect_timeout.count() <= 0 || o.command_timeout.count() <= 0 ||
      o.unresponsive_after.count() <= 0) {
    return absl::InvalidArgumentError("redis: timeouts must be positive");
  }
  if (o.backoff_initial.count() <= 0 || o.backoff_max < o.backoff_initial) {
    return absl::InvalidArgumentError("redis: backoff must be positive, max >= initial");
  }
  if (o.max_pending == 0) return absl::InvalidArgumentError("redis: max_pending must be > 0");
  if (o.database < 0) return absl::InvalidArgumentError("redis: database must be >= 0");
  if (!o.username.empty() && o.password.empty()) {
    return absl::InvalidArgumentError("redis: a username needs a password");
  }
  return absl::OkStatus();
}

}  // namespace

// --- one connection ------------------------------------------------------

namespace redis_internal {

// The connection, its handshake, reconnection with backoff, and the queue
// through which every callback reaches the caller. RedisClient::Impl adds
// commands, RedisSubscriber::Impl the subscriptions.
//
// hiredis calls back in three ways, all routed through ac->data: the
// connect callback, reply callbacks (with a null reply for each command
// still pending when the context is freed, before the disconnect callback),
// and the disconnect callback. The first sign that the connection is gone
// (a failed connect, a null reply, the disconnect) runs LinkGone, which
// clears ac->data: whatever hiredis calls afterwards for that context finds
// no owner. hiredis frees the context itself after an error; when we close
// it (timeouts, a refused handshake, the destructor) we clear ac->data and
// call redisAsyncFree, which hiredis defers until a reply callback returns.
class Link {
 public:
  Link(uv_loop_t* loop, RedisOptions options, RedisAddress address, const char* role)
      : loop_(loop),
        options_(std::move(options)),
        address_(std::move(address)),
        label_(absl::StrCat("redis ", options_.name, " (", options_.address, ", ", role, ")")),
        alive_(std::make_shared<bool>(true)),
        connect_timer_(loop, [this] { OnConnectTimer(); }),
        idle_(loop, [this] { Drain(); }),
        backoff_(options_.backoff_initial),
        rng_(std::random_device{}()) {}

  virtual ~Link() {
    *alive_ = false;
    if (ac_ != nullptr) {
      redisAsyncContext* ac = ac_;
      ac_ = nullptr;
      ac->data = nullptr;
      redisAsyncFree(ac);
    }
  }
  Link(const Link&) = delete;
  Link& operator=(const Link&) = delete;

  void Start() { Connect(); }
  const RedisStats& stats() const { return stats_; }
  const RedisOptions& options() const { return options_; }
  bool ready() const { return state_ == State::kReady; }

 protected:
  enum class State { kWaiting, kConnecting, kReady };
  struct Slot {
    uint64_t id;  // 0: a handshake command
    int64_t sent_ms;
  };

  static void OnReplyCb(redisAsyncContext* ac, void* reply, void* /*privdata*/) {
    auto* self = static_cast<Link*>(ac->data);
    if (self == nullptr) return;
    if (reply == nullptr) {
      self->LinkGone(ac, ErrorText(ac, "connection lost"));
      return;
    }
    self->HandleReply(static_cast<redisReply*>(reply));
  }

  static void OnSubscribeCb(redisAsyncContext* ac, void* reply, void* /*privdata*/) {
    auto* self = static_cast<Link*>(ac->data);
    if (self == nullptr) return;
    if (reply == nullptr) {
      self->LinkGone(ac, ErrorText(ac, "connection lost"));
      return;
    }
    self->OnSubscription(static_cast<redisReply*>(reply));
  }

  int64_t Now() const { return static_cast<int64_t>(uv_now(loop_)); }

  // Appends a command to the connection (hiredis copies it); false when
  // hiredis refuses (no connection, or it is closing).
  bool Send(absl::Span<const absl::string_view> argv, redisCallbackFn* fn) {
    if (ac_ == nullptr) return false;
    absl::InlinedVector<const char*, 8> ptrs;
    absl::InlinedVector<size_t, 8> lens;
    for (absl::string_view a : argv) {
      ptrs.push_back(a.data());
      lens.push_back(a.size());
    }
    return redisAsyncCommandArgv(ac_, fn, nullptr, static_cast<int>(argv.size()), ptrs.data(),
                                 lens.data()) == REDIS_OK;
  }

  // Sends a command whose reply comes in order (through OnReplyCb).
  bool SendInOrder(absl::Span<const absl::string_view> argv, uint64_t id) {
    if (!Send(argv, &Link::OnReplyCb)) return false;
    slots_.push_back(Slot{id, Now()});
    return true;
  }

  // The connection is usable: logs the change and resets the backoff.
  void MarkReady() {
    connect_timer_.Stop();
    state_ = State::kReady;
    ++stats_.connects;
    if (!ever_ready_) {
      spdlog::info("{}: connected", label_);
    } else {
      ++stats_.reconnects;
      spdlog::info("{}: connected again after {} failed attempt(s), {} ms without Redis", label_,
                   failed_attempts_, Now() - down_since_ms_);
    }
    ever_ready_ = true;
    failed_attempts_ = 0;
    backoff_ = options_.backoff_initial;
    available_ = true;
  }

  // Closes the connection from our side and fails what was in flight.
  void Drop(const std::string& why) {
    redisAsyncContext* ac = ac_;
    if (ac == nullptr) return;
    LinkGone(ac, why);
    redisAsyncFree(ac);  // deferred by hiredis when inside its callback
  }

  // Runs `fn` on a later loop iteration (every callback to the caller).
  void Post(absl::AnyInvocable<void()> fn) {
    ready_.push_back(std::move(fn));
    idle_.Start();
  }

  virtual void OnHandshakeDone() = 0;
  // The reply to command `id`, or null when the connection went down first.
  virtual void OnCommandReply(uint64_t /*id*/, const redisReply* /*reply*/) {}
  virtual void OnSubscription(const redisReply* /*reply*/) {}
  // The connection is gone; every command in flight has been failed.
  virtual void OnLinkDown() {}

  uv_loop_t* loop_;
  RedisOptions options_;
  RedisAddress address_;
  std::string label_;
  std::shared_ptr<bool> alive_;
  redisAsyncContext* ac_ = nullptr;
  State state_ = State::kWaiting;
  // Commands may be handed to the connection: before the first attempt has
  // failed, and whenever a connection works.
  bool available_ = true;
  std::deque<Slot> slots_;  // commands on the wire, in order
  int64_t last_reply_ms_ = 0;
  RedisStats stats_;

 private:
  static void OnConnectCb(const redisAsyncContext* ac, int status) {
    auto* self = static_cast<Link*>(ac->data);
    if (self == nullptr) return;
    if (status != REDIS_OK) {
      self->LinkGone(ac, absl::StrCat("connect: ", ErrorText(ac, "error")));
      return;
    }
    if (self->address_.port != 0) {
      // Notices a peer that vanished while nothing is in flight (the
      // subscriber's connection is idle most of the time).
      int fd = ac->c.fd;
      int on = 1, idle = 30, intvl = 10, cnt = 3;
      setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(on));
      setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
      setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
      setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
    }
  }

  static void OnDisconnectCb(const redisAsyncContext* ac, int status) {
    auto* self = static_cast<Link*>(ac->data);
    if (self == nullptr) return;
    self->LinkGone(ac, status == REDIS_OK ? std::string("closed") : ErrorText(ac, "closed"));
  }

  void Connect() {
    state_ = State::kConnecting;
    redisAsyncContext* ac = address_.port == 0
                                ? redisAsyncConnectUnix(address_.host.c_str())
                                : redisAsyncConnect(address_.host.c_str(), address_.port);
    if (ac == nullptr) {
      LinkGone(nullptr, "out of memory");
      return;
    }
    if (ac->err != 0) {
      std::string why = absl::StrCat("connect: ", ac->errstr);
      redisAsyncFree(ac);
      LinkGone(nullptr, why);
      return;
    }
    if (!UvAttach(ac, loop_)) {
      redisAsyncFree(ac);
      LinkGone(nullptr, "uv_poll_init failed");
      return;
    }
    ac->data = this;
    redisAsyncSetConnectCallback(ac, &Link::OnConnectCb);
    redisAsyncSetDisconnectCallback(ac, &Link::OnDisconnectCb);
    ac_ = ac;
    connect_timer_.Start(Ms(options_.connect_timeout));
    // The handshake goes out as soon as the socket connects; commands sent
    // meanwhile queue behind it.
    handshake_left_ = 0;
    bool ok = true;
    if (!options_.password.empty()) {
      if (options_.username.empty()) {
        ok = ok && SendInOrder({"AUTH", options_.password}, 0);
      } else {
        ok = ok && SendInOrder({"AUTH", options_.username, options_.password}, 0);
      }
      ++handshake_left_;
    }
    if (options_.database != 0) {
      std::string db = absl::StrCat(options_.database);
      ok = ok && SendInOrder({"SELECT", db}, 0);
      ++handshake_left_;
    }
    ok = ok && SendInOrder({"PING"}, 0);
    ++handshake_left_;
    if (!ok) Drop("could not queue the handshake");
  }

  void OnConnectTimer() {
    if (state_ == State::kWaiting) {
      Connect();
    } else if (state_ == State::kConnecting) {
      Drop(absl::StrCat("no connection within ", options_.connect_timeout.count(), " ms"));
    }
  }

  void HandleReply(const redisReply* reply) {
    last_reply_ms_ = Now();
    if (slots_.empty()) return;  // hiredis keeps replies in order: cannot happen
    Slot slot = slots_.front();
    slots_.pop_front();
    if (slot.id != 0) {
      OnCommandReply(slot.id, reply);
      return;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
      // AUTH refused, no such database, still LOADING: try again later.
      Drop(absl::StrCat("handshake refused: ",
                        absl::CHexEscape(absl::string_view(reply->str, reply->len))));
      return;
    }
    if (handshake_left_ > 0 && --handshake_left_ == 0) OnHandshakeDone();
  }

  // The connection is gone (or could not be made). `ac` may be null.
  void LinkGone(const redisAsyncContext* ac, const std::string& why) {
    if (ac != nullptr) const_cast<redisAsyncContext*>(ac)->data = nullptr;
    ac_ = nullptr;
    bool was_ready = state_ == State::kReady;
    state_ = State::kWaiting;
    connect_timer_.Stop();
    handshake_left_ = 0;
    std::deque<Slot> slots;
    slots.swap(slots_);
    for (const Slot& s : slots) {
      if (s.id != 0) OnCommandReply(s.id, nullptr);
    }
    if (was_ready) {
      ++stats_.disconnects;
    } else {
      ++stats_.connect_failures;
    }
    ++failed_attempts_;
    if (available_) {
      available_ = false;
      down_since_ms_ = Now();
      spdlog::warn("{}: unavailable ({}); commands fail until it is back, reconnecting", label_,
                   why);
    } else {
      spdlog::debug("{}: attempt {} failed ({})", label_, failed_attempts_, why);
    }
    OnLinkDown();
    // The next attempt, after the backoff (shortened by up to a quarter).
    std::uniform_real_distribution<double> jitter(0.75, 1.0);
    int64_t wait = static_cast<int64_t>(static_cast<double>(Ms(backoff_)) * jitter(rng_));
    backoff_ = std::min(backoff_ * 2, options_.backoff_max);
    connect_timer_.Start(std::max<int64_t>(wait, 1));
  }

  void Drain() {
    std::shared_ptr<bool> alive = alive_;
    // What was queued before this pass; callbacks that post more run on the
    // next iteration.
    size_t n = ready_.size();
    while (n-- > 0 && !ready_.empty()) {
      absl::AnyInvocable<void()> fn = std::move(ready_.front());
      ready_.pop_front();
      fn();
      if (!*alive) return;  // a callback destroyed the client
    }
    if (ready_.empty()) idle_.Stop();
  }

  UvTimer connect_timer_;  // the connect timeout, or the wait before the next attempt
  UvIdle idle_;
  std::deque<absl::AnyInvocable<void()>> ready_;
  std::chrono::milliseconds backoff_;
  uint32_t failed_attempts_ = 0;  // since the last working connection
  int64_t down_since_ms_ = 0;
  bool ever_ready_ = false;
  size_t handshake_left_ = 0;
  std::minstd_rand rng_;
};

}  // namespace redis_internal

using redis_internal::Link;

// --- RedisValue ----------------------------------------------------------

RedisValue RedisValue::Integer(int64_t v) {
  RedisValue r;
  r.type = Type::kInteger;
  r.integer = v;
  return r;
}

RedisValue RedisValue::String(std::string s) {
  RedisValue r;
  r.type = Type::kString;
  r.str = std::move(s);
  return r;
}

RedisValue RedisValue::Error(std::string s) {
  RedisValue r;
  r.type = Type::kError;
  r.str = std::move(s);
  return r;
}

RedisValue RedisValue::Array(std::vector<RedisValue> e) {
  RedisValue r;
  r.type = Type::kArray;
  r.elements = std::move(e);
  return r;
}

std::optional<int64_t> RedisValue::AsInteger() const {
  if (type == Type::kInteger) return integer;
  int64_t v;
  if (type == Type::kString && absl::SimpleAtoi(str, &v)) return v;
  return std::nullopt;
}

std::string RedisValue::DebugString() const {
  switch (type) {
    case Type::kNil:
      return "nil";
    case Type::kInteger:
      return absl::StrCat(integer);
    case Type::kString:
      return absl::StrCat("\"", absl::CHexEscape(str), "\"");
    case Type::kError:
      return absl::StrCat("(error) ", absl::CHexEscape(str));
    case Type::kArray:
      return absl::StrCat("[",
                          absl::StrJoin(elements, ", ",
                                        [](std::string* out, const RedisValue& v) {
                                          out->append(v.DebugString());
                                        }),
                          "]");
  }
  return "?";
}

// --- addresses -----------------------------------------------------------

absl::StatusOr<RedisAddress> ParseRedisAddress(absl::string_view address) {
  RedisAddress a;
  if (absl::ConsumePrefix(&address, "unix:") || absl::StartsWith(address, "/")) {
    if (address.empty() || address[0] != '/') {
      return absl::InvalidArgumentError("redis address: a unix socket needs an absolute path");
    }
    if (address.size() >= sizeof(sockaddr_un::sun_path)) {
      return absl::InvalidArgumentError("redis address: unix socket path too long");
    }
    a.host = std::string(address);
    return a;
  }
  absl::string_view host, port;
  if (absl::StartsWith(address, "[")) {
    size_t close = address.find("]:");
    if (close == absl::string_view::npos) {
      return absl::InvalidArgumentError("redis address: expected [ipv6]:port");
    }
    host = address.substr(1, close - 1);
    port = address.substr(close + 2);
    in6_addr v6;
    if (!inet_pton(AF_INET6, std::string(host).c_str(), &v6)) {
      return absl::InvalidArgumentError(
          absl::StrCat("redis address: not a numeric IPv6 address: ", absl::CHexEscape(host)));
    }
  } else {
    size_t colon = address.rfind(':');
    if (colon == absl::string_view::npos) {
      return absl::InvalidArgumentError("redis address: expected host:port or a unix socket path");
    }
    host = address.substr(0, colon);
    port = address.substr(colon + 1);
    if (absl::StrContains(host, ':')) {
      return absl::InvalidArgumentError("redis address: write an IPv6 address as [addr]:port");
    }
    in_addr v4;
    if (!inet_pton(AF_INET, std::string(host).c_str(), &v4)) {
      return absl::InvalidArgumentError(
          absl::StrCat("redis address: not a numeric IPv4 address (names are not resolved): ",
                       absl::CHexEscape(host)));
    }
  }
  int p = 0;
  if (!absl::SimpleAtoi(port, &p) || p < 1 || p > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("redis address: bad port: ", absl::CHexEscape(port)));
  }
  a.host = std::string(host);
  a.port = p;
  return a;
}

// --- RedisClient ---------------------------------------------------------

class RedisClient::Impl final : public Link {
 public:
  Impl(uv_loop_t* loop, RedisOptions options, RedisAddress address)
      : Link(loop, std::move(options), std::move(address), "commands"),
        deadline_timer_(loop, [this] { OnDeadline(); }) {}

  std::unique_ptr<Pending> Command(absl::Span<const absl::string_view> argv, Callback done,
                                   std::chrono::milliseconds timeout) {
    auto call = std::make_unique<Call>();
    call->done = std::move(done);
    auto handle = std::make_unique<Handle>(call.get());
    if (argv.empty()) {
      Complete(std::move(call), absl::InvalidArgumentError("redis: empty command"));
    } else if (ac_ == nullptr || !available_) {
      ++stats_.unavailable;
      Complete(std::move(call), absl::UnavailableError(absl::StrCat(label_, ": not connected")));
    } else if (slots_.size() >= options_.max_pending) {
      ++stats_.overflows;
      Complete(std::move(call), absl::ResourceExhaustedError(absl::StrCat(
                                    label_, ": ", slots_.size(), " commands pending")));
    } else if (!SendInOrder(argv, next_id_)) {
      ++stats_.unavailable;
      Complete(std::move(call), absl::UnavailableError(absl::StrCat(label_, ": closing")));
    } else {
      ++stats_.commands;
      call->id = next_id_++;
      call->deadline = Now() + Ms(timeout.count() > 0 ? timeout : options_.command_timeout);
      deadlines_.emplace(call->deadline, call->id);
      calls_.emplace(call->id, std::move(call));
      ArmTimer();
    }
    return handle;
  }

  bool available() const { return ac_ != nullptr && available_; }

 private:
  class Handle;
  struct Call {
    ~Call();
    void Detach();
    uint64_t id = 0;
    int64_t deadline = 0;
    Callback done;  // empty once cancelled
    Handle* handle = nullptr;
  };
  class Handle final : public Pending {
   public:
    explicit Handle(Call* call) : call_(call) { call->handle = this; }
    ~Handle() override {
      if (call_ != nullptr) {
        call_->done = nullptr;
        call_->handle = nullptr;
      }
    }
    Call* call_;
  };

  // Link
  void OnHandshakeDone() override {
    MarkReady();
    ArmTimer();
  }

  void OnCommandReply(uint64_t id, const redisReply* reply) override {
    auto it = calls_.find(id);
    if (it == calls_.end()) {
      if (reply != nullptr) ++stats_.late_replies;  // its caller has heard "timed out"
      return;
    }
    std::unique_ptr<Call> call = std::move(it->second);
    calls_.erase(it);
    deadlines_.erase({call->deadline, id});
    if (reply == nullptr) {
      ++stats_.lost;
      Complete(std::move(call),
               absl::UnavailableError(absl::StrCat(label_, ": connection lost before the reply")));
    } else {
      ++stats_.replies;
      if (reply->type == REDIS_REPLY_ERROR) ++stats_.error_replies;
      Complete(std::move(call), FromReply(reply));
    }
    if (state_ == State::kReady) ArmTimer();
  }

  void OnLinkDown() override { deadline_timer_.Stop(); }

  // Queues the callback; a cancelled call is dropped.
  void Complete(std::unique_ptr<Call> call, absl::StatusOr<RedisValue> result) {
    if (!call->done) return;
    Post([call = std::move(call), result = std::move(result)]() mutable {
      if (!call->done) return;
      Callback done = std::move(call->done);
      call->Detach();  // the callback may destroy the handle
      done(std::move(result));
    });
  }

  void OnDeadline() {
    int64_t now = Now();
    while (!deadlines_.empty() && deadlines_.begin()->first <= now) {
      uint64_t id = deadlines_.begin()->second;
      deadlines_.erase(deadlines_.begin());
      auto it = calls_.find(id);
      if (it == calls_.end()) continue;
      std::unique_ptr<Call> call = std::move(it->second);
      calls_.erase(it);
      // Its slot stays: the reply, if it comes, is counted late and dropped.
      if (!call->done) continue;
      ++stats_.timeouts;
      Complete(std::move(call),
               absl::DeadlineExceededError(absl::StrCat(label_, ": no reply within ",
                                                        options_.command_timeout.count(), " ms")));
    }
    if (state_ == State::kReady && !slots_.empty() &&
        now - std::max(slots_.front().sent_ms, last_reply_ms_) >= Ms(options_.unresponsive_after)) {
      Drop(absl::StrCat("no reply at all for ", options_.unresponsive_after.count(), " ms"));
      return;
    }
    ArmTimer();
  }

  // At the next deadline, or when the connection would count as unresponsive.
  void ArmTimer() {
    int64_t next = std::numeric_limits<int64_t>::max();
    if (!deadlines_.empty()) next = deadlines_.begin()->first;
    if (state_ == State::kReady && !slots_.empty()) {
      next = std::min(
          next, std::max(slots_.front().sent_ms, last_reply_ms_) + Ms(options_.unresponsive_after));
    }
    if (next == std::numeric_limits<int64_t>::max()) {
      deadline_timer_.Stop();
    } else {
      deadline_timer_.Start(next - Now());
    }
  }

  absl::flat_hash_map<uint64_t, std::unique_ptr<Call>> calls_;  // waiting for a reply
  std::set<std::pair<int64_t, uint64_t>> deadlines_;
  uint64_t next_id_ = 1;
  UvTimer deadline_timer_;
};

RedisClient::Impl::Call::~Call() {
  if (handle != nullptr) handle->call_ = nullptr;
}

void RedisClient::Impl::Call::Detach() {
  if (handle != nullptr) handle->call_ = nullptr;
  handle = nullptr;
}

absl::StatusOr<std::unique_ptr<RedisClient>> RedisClient::Create(uv_loop_t* loop,
                                                                 RedisOptions options) {
  absl::StatusOr<RedisAddress> address = ParseRedisAddress(options.address);
  if (!address.ok()) return address.status();
  if (absl::Status s = ValidateOptions(options); !s.ok()) return s;
  auto impl = std::make_unique<Impl>(loop, std::move(options), *std::move(address));
  impl->Start();
  return std::unique_ptr<RedisClient>(new RedisClient(std::move(impl)));
}

RedisClient::RedisClient(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
RedisClient::~RedisClient() = default;

std::unique_ptr<RedisClient::Pending> RedisClient::Command(absl::Span<const absl::string_view> argv,
                                                           Callback done,
                                                           std::chrono::milliseconds timeout) {
  return impl_->Command(argv, std::move(done), timeout);
}

bool RedisClient::available() const { return impl_->available(); }
bool RedisClient::connected() const { return impl_->ready(); }
const RedisStats& RedisClient::stats() const { return impl_->stats(); }
const RedisOptions& RedisClient::options() const { return impl_->options(); }

// --- RedisSubscriber -----------------------------------------------------

class RedisSubscriber::Impl final : public Link {
 public:
  Impl(uv_loop_t* loop, RedisOptions options, RedisAddress address,
       std::vector<std::string> channels, std::vector<std::string> patterns,
       MessageCallback on_message, EventCallback on_event)
      : Link(loop, std::move(options), std::move(address), "pub/sub"),
        channels_(std::move(channels)),
        patterns_(std::move(patterns)),
        on_message_(std::make_shared<MessageCallback>(std::move(on_message))),
        on_event_(std::make_shared<EventCallback>(std::move(on_event))) {}

  bool subscribed() const { return subscribed_; }

 private:
  // Link
  void OnHandshakeDone() override {
    // Ready once every SUBSCRIBE/PSUBSCRIBE is confirmed; the connect
    // timeout still runs until then.
    confirmations_left_ = channels_.size() + patterns_.size();
    bool ok = true;
    if (!channels_.empty()) ok = ok && SendSubscribe("SUBSCRIBE", channels_);
    if (!patterns_.empty()) ok = ok && SendSubscribe("PSUBSCRIBE", patterns_);
    if (!ok) Drop("could not queue SUBSCRIBE");
  }

  void OnSubscription(const redisReply* r) override {
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 3) return;
    auto str = [r](size_t i) {
      const redisReply* e = r->element[i];
      return e->type == REDIS_REPLY_STRING ? absl::string_view(e->str, e->len)
                                           : absl::string_view();
    };
    absl::string_view kind = str(0);
    if (kind == "subscribe" || kind == "psubscribe") {
      if (confirmations_left_ > 0 && --confirmations_left_ == 0) {
        bool again = ever_subscribed_;
        MarkReady();
        subscribed_ = true;
        ever_subscribed_ = true;
        if (again) {
          spdlog::info("{}: resubscribed to {} channel(s) and {} pattern(s)", label_,
                       channels_.size(), patterns_.size());
        }
        PostEvent(again ? Event::kResubscribed : Event::kSubscribed);
      }
    } else if (kind == "message") {
      Deliver(RedisMessage{std::string(str(1)), std::string(), std::string(str(2))});
    } else if (kind == "pmessage" && r->elements >= 4) {
      Deliver(RedisMessage{std::string(str(2)), std::string(str(1)), std::string(str(3))});
    }
  }

  void OnLinkDown() override {
    confirmations_left_ = 0;
    if (subscribed_) {
      subscribed_ = false;
      PostEvent(Event::kLost);
    }
  }

  bool SendSubscribe(absl::string_view command, const std::vector<std::string>& names) {
    std::vector<absl::string_view> argv;
    argv.reserve(names.size() + 1);
    argv.push_back(command);
    for (const std::string& n : names) argv.push_back(n);
    return Send(argv, &Link::OnSubscribeCb);
  }

  void Deliver(RedisMessage m) {
    ++stats_.messages;
    // The callback is held by a shared_ptr so that a callback that destroys
    // the subscriber does not destroy the function it is running in.
    Post([cb = on_message_, m = std::move(m)] {
      if (*cb) (*cb)(m);
    });
  }

  void PostEvent(Event e) {
    Post([cb = on_event_, e] {
      if (*cb) (*cb)(e);
    });
  }

  std::vector<std::string> channels_;
  std::vector<std::string> patterns_;
  std::shared_ptr<MessageCallback> on_message_;
  std::shared_ptr<EventCallback> on_event_;
  size_t confirmations_left_ = 0;
  bool subscribed_ = false;
  bool ever_subscribed_ = false;
};

absl::StatusOr<std::unique_ptr<RedisSubscriber>> RedisSubscriber::Create(
    uv_loop_t* loop, RedisOptions options, std::vector<std::string> channels,
    std::vector<std::string> patterns, MessageCallback on_message, EventCallback on_event) {
  absl::StatusOr<RedisAddress> address = ParseRedisAddress(options.address);
  if (!address.ok()) return address.status();
  if (absl::Status s = ValidateOptions(options); !s.ok()) return s;
  if (channels.empty() && patterns.empty()) {
    return absl::InvalidArgumentError("redis subscriber: no channel and no pattern");
  }
  auto impl =
      std::make_unique<Impl>(loop, std::move(options), *std::move(address), std::move(channels),
                             std::move(patterns), std::move(on_message), std::move(on_event));
  impl->Start();
  return std::unique_ptr<RedisSubscriber>(new RedisSubscriber(std::move(impl)));
}

RedisSubscriber::RedisSubscriber(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
RedisSubscriber::~RedisSubscriber() = default;
bool RedisSubscriber::subscribed() const { return impl_->subscribed(); }
const RedisStats& RedisSubscriber::stats() const { return impl_->stats(); }

}  // namespace postern
