#pragma once

// Redis for one worker loop (issue 9: fleet-wide abuse counters; issue 10:
// per-user routing overrides invalidated through pub/sub), through hiredis's
// asynchronous API on the worker's libuv loop.
//
// RedisClient: one connection for commands. RedisSubscriber: a second one
// for SUBSCRIBE/PSUBSCRIBE (a subscribed connection cannot send other
// commands). Both connect at once when created, and whenever their
// connection is lost or cannot be made they reconnect in the background,
// waiting `backoff_initial`, then twice as long each time up to
// `backoff_max` (each wait shortened by up to a quarter at random, so that
// a fleet does not reconnect in step). Every state change is logged once
// (spdlog): "unavailable (why)" when a working connection is lost or the
// first one fails, "connected again" when it is back.
//
// Threads: everything runs on the loop given to Create(); no method may be
// called from another thread. Callbacks run on that loop, never inside the
// call that started them (a dedicated uv_idle_t delivers them on the next
// iteration), and never after their handle or the client is destroyed.
// Destroying a client closes its connection; its libuv handles are freed in
// their close callbacks, so the loop must run once more before
// uv_loop_close.
//
// hiredis 0.14 (Debian 12). Its libuv adapter ignores a uv_poll error
// status, and libuv reports POLLERR (a refused connect, a reset) as
// exactly that: hiredis would never learn that the connection failed.
// redis_client.cc therefore carries the adapter with the fix hiredis 1.0
// made (on an error status, let hiredis read and write, and find the error
// itself). Names are resolved by hiredis with a blocking getaddrinfo, so
// only numeric addresses are accepted.

#include <uv.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace postern {

struct RedisOptions {
  // "127.0.0.1:6379", "[::1]:6379", or a unix socket: "unix:/run/redis.sock"
  // or any path starting with '/'. Numeric only (see the file comment).
  std::string address;
  // From the connect(2) to the answer of the handshake (AUTH, SELECT, PING).
  std::chrono::milliseconds connect_timeout{1000};
  // A command without a reply after this long fails with DEADLINE_EXCEEDED
  // (Command() may give another one); its reply, if it comes, is dropped.
  std::chrono::milliseconds command_timeout{200};
  // A connection that has had commands outstanding and no reply at all for
  // this long is taken for dead (a host gone without a reset, a frozen
  // server): it is closed and reopened, and commands fail fast meanwhile.
  std::chrono::milliseconds unresponsive_after{3000};
  std::chrono::milliseconds backoff_initial{100};
  std::chrono::milliseconds backoff_max{5000};
  // Commands sent and not yet answered (timed-out ones included: they still
  // hold their place in the pipeline). Past it a command fails at once with
  // RESOURCE_EXHAUSTED.
  size_t max_pending = 1024;
  // AUTH: `password` alone, or `username` and `password` (Redis 6 ACLs).
  // Empty password: no AUTH.
  std::string username;
  std::string password;
  int database = 0;            // SELECT when not 0
  std::string name = "redis";  // names the connection in log lines
};

// A reply. A status reply ("+OK") is a kString; a Redis error reply
// ("-WRONGTYPE ...") is a value of type kError, not a failed command.
struct RedisValue {
  enum class Type : uint8_t { kNil, kInteger, kString, kArray, kError };
  Type type = Type::kNil;
  int64_t integer = 0;
  std::string str;                   // kString, kError (the message)
  std::vector<RedisValue> elements;  // kArray

  static RedisValue Nil() { return RedisValue(); }
  static RedisValue Integer(int64_t v);
  static RedisValue String(std::string s);
  static RedisValue Error(std::string s);
  static RedisValue Array(std::vector<RedisValue> e);

  bool is_nil() const { return type == Type::kNil; }
  bool is_error() const { return type == Type::kError; }
  // An integer reply, or a string holding a decimal integer (GET of a
  // counter); nullopt otherwise.
  std::optional<int64_t> AsInteger() const;
  // For tests and logs: nil, 42, "text" (escaped), (error) ..., [a, b].
  std::string DebugString() const;
};

// Counters for the metrics (per connection, summed by the worker).
struct RedisStats {
  uint64_t commands = 0;       // handed to the connection
  uint64_t replies = 0;        // answered in time (error replies included)
  uint64_t error_replies = 0;  // ... of which Redis errors
  uint64_t timeouts = 0;       // no reply in time
  uint64_t unavailable = 0;    // failed at once: no usable connection
  uint64_t overflows = 0;      // failed at once: max_pending reached
  uint64_t lost = 0;           // in flight when the connection went down
  uint64_t late_replies = 0;   // arrived after their command timed out
  uint64_t connects = 0;       // connections established (handshake done)
  uint64_t reconnects = 0;     // ... of which after a loss or a failure
  uint64_t connect_failures = 0;
  uint64_t disconnects = 0;  // established connections lost
  uint64_t messages = 0;     // pub/sub messages delivered

  // Commands that failed without a reply.
  uint64_t failures() const { return timeouts + unavailable + overflows + lost; }
};

class RedisClient {
 public:
  // A command in progress. Destroying it cancels: the callback never runs
  // afterwards (the command itself may still reach Redis).
  class Pending {
   public:
    virtual ~Pending() = default;
  };
  using Callback = std::function<void(absl::StatusOr<RedisValue>)>;

  // INVALID_ARGUMENT for a bad address or option. Starts connecting.
  static absl::StatusOr<std::unique_ptr<RedisClient>> Create(uv_loop_t* loop, RedisOptions options);
  ~RedisClient();
  RedisClient(const RedisClient&) = delete;
  RedisClient& operator=(const RedisClient&) = delete;

  // Sends `argv` (argv[0] is the command; every argument is binary-safe and
  // copied before Command returns). `done` gets the reply, or:
  //   UNAVAILABLE        no connection (failing fast while Redis is down), or
  //                      the connection was lost with the command in flight
  //                      (it may have run);
  //   DEADLINE_EXCEEDED  no reply within `timeout` (0: command_timeout); it
  //                      may have run;
  //   RESOURCE_EXHAUSTED max_pending commands are outstanding;
  //   INVALID_ARGUMENT   empty argv.
  // While the first connection is being made, commands are queued behind
  // its handshake (bounded by their timeout); after a failure they fail fast
  // until a connection works again.
  std::unique_ptr<Pending> Command(absl::Span<const absl::string_view> argv, Callback done,
                                   std::chrono::milliseconds timeout = {});

  // Whether a command sent now goes to Redis (else it fails fast).
  bool available() const;
  // Whether the connection is established and past its handshake.
  bool connected() const;
  const RedisStats& stats() const;
  const RedisOptions& options() const;

 private:
  class Impl;
  explicit RedisClient(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

struct RedisMessage {
  std::string channel;
  std::string pattern;  // the PSUBSCRIBE pattern that matched, "" for SUBSCRIBE
  std::string payload;
};

class RedisSubscriber {
 public:
  enum class Event {
    kSubscribed,    // the first time every channel and pattern is subscribed
    kResubscribed,  // subscribed again after kLost: messages may have been
                    // missed meanwhile (flush what they would have invalidated)
    kLost,          // the connection went down: messages are being missed
  };
  using MessageCallback = std::function<void(const RedisMessage&)>;
  using EventCallback = std::function<void(Event)>;

  // Subscribes to `channels` (SUBSCRIBE) and `patterns` (PSUBSCRIBE), at
  // least one of them, on a connection of its own, and again after every
  // reconnection. Callbacks run on the loop (see the file comment).
  static absl::StatusOr<std::unique_ptr<RedisSubscriber>> Create(
      uv_loop_t* loop, RedisOptions options, std::vector<std::string> channels,
      std::vector<std::string> patterns, MessageCallback on_message, EventCallback on_event);
  ~RedisSubscriber();
  RedisSubscriber(const RedisSubscriber&) = delete;
  RedisSubscriber& operator=(const RedisSubscriber&) = delete;

  // Every channel and pattern is subscribed now.
  bool subscribed() const;
  const RedisStats& stats() const;

 private:
  class Impl;
  explicit RedisSubscriber(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Parses RedisOptions::address: a TCP host (numeric) and port, or a unix
// socket path (port 0). Exposed for tests.
struct RedisAddress {
  std::string host;  // numeric IPv4/IPv6, or the socket path
  int port = 0;      // 0: unix socket
};
absl::StatusOr<RedisAddress> ParseRedisAddress(absl::string_view address);

}  // namespace postern
