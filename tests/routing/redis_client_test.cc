#include "routing/redis_client.h"

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/routing/redis_test_util.h"

namespace postern {
namespace {

using namespace std::chrono_literals;
using testing_redis::LogCapture;
using testing_redis::TestLoop;
using testing_redis::TestRedisServer;
using Clock = std::chrono::steady_clock;

// The result of one command, filled by its callback.
struct Result {
  bool done = false;
  absl::StatusOr<RedisValue> value = absl::UnknownError("not yet");
  RedisClient::Callback Callback() {
    return [this](absl::StatusOr<RedisValue> v) {
      done = true;
      value = std::move(v);
    };
  }
};

TEST(RedisAddressTest, Parses) {
  struct Case {
    std::string in;
    bool ok;
    std::string host;
    int port;
  };
  const Case cases[] = {
      {"127.0.0.1:6379", true, "127.0.0.1", 6379},
      {"[::1]:7000", true, "::1", 7000},
      {"unix:/run/redis/redis.sock", true, "/run/redis/redis.sock", 0},
      {"/tmp/r.sock", true, "/tmp/r.sock", 0},
      {"localhost:6379", false, "", 0},  // names are not resolved
      {"::1:6379", false, "", 0},        // IPv6 needs brackets
      {"127.0.0.1", false, "", 0},
      {"127.0.0.1:0", false, "", 0},
      {"127.0.0.1:65536", false, "", 0},
      {"127.0.0.1:x", false, "", 0},
      {"[::1]6379", false, "", 0},
      {"unix:relative.sock", false, "", 0},
      {"unix:/" + std::string(200, 'a'), false, "", 0},
      {"", false, "", 0},
  };
  for (const Case& c : cases) {
    absl::StatusOr<RedisAddress> a = ParseRedisAddress(c.in);
    EXPECT_EQ(a.ok(), c.ok) << c.in;
    if (a.ok() && c.ok) {
      EXPECT_EQ(a->host, c.host) << c.in;
      EXPECT_EQ(a->port, c.port) << c.in;
    }
  }
}

TEST(RedisValueTest, AsIntegerAndDebugString) {
  EXPECT_EQ(RedisValue::Integer(7).AsInteger(), 7);
  EXPECT_EQ(RedisValue::String("-12").AsInteger(), -12);
  EXPECT_EQ(RedisValue::String("x").AsInteger(), std::nullopt);
  EXPECT_EQ(RedisValue::Nil().AsInteger(), std::nullopt);
  EXPECT_EQ(RedisValue::Array({RedisValue::String("a\n"), RedisValue::Nil(), RedisValue::Integer(3),
                               RedisValue::Error("ERR x")})
                .DebugString(),
            "[\"a\\n\", nil, 3, (error) ERR x]");
}

TEST(RedisClientOptionsTest, RefusesBadOptions) {
  TestLoop loop;
  RedisOptions o;
  o.address = "127.0.0.1:1";
  o.max_pending = 0;
  EXPECT_FALSE(RedisClient::Create(loop.get(), o).ok());
  o.max_pending = 10;
  o.backoff_max = 1ms;
  o.backoff_initial = 10ms;
  EXPECT_FALSE(RedisClient::Create(loop.get(), o).ok());
  o.backoff_max = 10ms;
  o.address = "redis.example:6379";
  EXPECT_FALSE(RedisClient::Create(loop.get(), o).ok());
  o.address = "127.0.0.1:1";
  EXPECT_FALSE(RedisSubscriber::Create(loop.get(), o, {}, {}, nullptr, nullptr).ok());
}

class RedisClientTest : public ::testing::Test {
 protected:
  void SetUp() override { StartServer(""); }

  void StartServer(const std::string& extra) {
    if (TestRedisServer::FindBinary().empty()) {
      GTEST_SKIP() << "redis-server is not installed (apt-get install redis-server; "
                      "deploy/install-deps.sh does): skipping the Redis tests";
    }
    server_ = std::make_unique<TestRedisServer>();
    std::string error;
    ASSERT_TRUE(server_->Start(&error, extra)) << error;
  }

  RedisOptions Options() const {
    RedisOptions o;
    o.address = server_->address();
    o.name = "test";
    o.connect_timeout = 500ms;
    o.command_timeout = 1000ms;
    o.backoff_initial = 50ms;
    o.backoff_max = 200ms;
    return o;
  }

  std::unique_ptr<RedisClient> Connect(const RedisOptions& o) {
    auto c = RedisClient::Create(loop_.get(), o);
    EXPECT_TRUE(c.ok()) << c.status();
    if (!c.ok()) return nullptr;
    std::unique_ptr<RedisClient> client = *std::move(c);
    EXPECT_TRUE(loop_.RunUntil([&] { return client->connected(); }));
    return client;
  }

  // Runs one command to its end.
  absl::StatusOr<RedisValue> Run(RedisClient& c, std::vector<std::string> argv) {
    std::vector<absl::string_view> v(argv.begin(), argv.end());
    Result r;
    auto p = c.Command(v, r.Callback());
    EXPECT_TRUE(loop_.RunUntil([&] { return r.done; }));
    return r.value;
  }

  void TearDown() override {
    // Clients must go before the loop (each test resets its own).
    EXPECT_TRUE(loop_.Close());
  }

  TestLoop loop_;
  std::unique_ptr<TestRedisServer> server_;
};

TEST_F(RedisClientTest, RoundTrips) {
  auto c = Connect(Options());
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(Run(*c, {"SET", "k", "v1"})->DebugString(), "\"OK\"");
  EXPECT_EQ(Run(*c, {"GET", "k"})->DebugString(), "\"v1\"");
  EXPECT_TRUE(Run(*c, {"GET", "missing"})->is_nil());
  EXPECT_EQ(Run(*c, {"INCR", "n"})->integer, 1);
  EXPECT_EQ(Run(*c, {"INCR", "n"})->integer, 2);
  EXPECT_EQ(Run(*c, {"GET", "n"})->AsInteger(), 2);
  EXPECT_EQ(Run(*c, {"EXPIRE", "n", "100"})->integer, 1);
  int64_t ttl = Run(*c, {"TTL", "n"})->integer;
  EXPECT_GT(ttl, 90);
  EXPECT_LE(ttl, 100);
  EXPECT_EQ(Run(*c, {"PEXPIRE", "n", "50"})->integer, 1);
  loop_.RunFor(120ms);
  EXPECT_TRUE(Run(*c, {"GET", "n"})->is_nil());
  // A Redis error is a value, not a failed command.
  absl::StatusOr<RedisValue> err = Run(*c, {"INCR", "k"});
  ASSERT_TRUE(err.ok()) << err.status();
  EXPECT_TRUE(err->is_error());
  EXPECT_NE(err->str.find("not an integer"), std::string::npos) << err->str;
  // Arrays.
  EXPECT_EQ(Run(*c, {"RPUSH", "l", "a", "b", ""})->integer, 3);
  EXPECT_EQ(Run(*c, {"LRANGE", "l", "0", "-1"})->DebugString(), "[\"a\", \"b\", \"\"]");
  EXPECT_EQ(Run(*c, {"MGET", "k", "missing"})->DebugString(), "[\"v1\", nil]");
  EXPECT_EQ(c->stats().error_replies, 1u);
  EXPECT_EQ(c->stats().failures(), 0u);
  EXPECT_EQ(c->stats().connects, 1u);
  c.reset();
}

TEST_F(RedisClientTest, BinarySafeArguments) {
  auto c = Connect(Options());
  ASSERT_NE(c, nullptr);
  // Bytes that would be protocol if they were formatted into a command.
  std::string key("a\0b\r\n*1\r\n$4\r\nPING %s %b", 24);
  std::string value;
  for (int i = 0; i < 256; ++i) value.push_back(static_cast<char>(i));
  value += std::string("\r\n$-1\r\n", 7);
  EXPECT_EQ(Run(*c, {"SET", key, value})->DebugString(), "\"OK\"");
  absl::StatusOr<RedisValue> got = Run(*c, {"GET", key});
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->str, value);
  // Exactly one key was made, with exactly these bytes.
  EXPECT_EQ(server_->Cli({"DBSIZE"}), "1");
  EXPECT_EQ(server_->Cli({"STRLEN", key}), absl::StrCat(value.size()));
  // A big value.
  std::string big(1 << 20, 'x');
  big[12345] = '\0';
  EXPECT_EQ(Run(*c, {"SET", "big", big})->str, "OK");
  EXPECT_EQ(Run(*c, {"GET", "big"})->str, big);
  c.reset();
}

TEST_F(RedisClientTest, CallbacksNeverRunInsideCommand) {
  auto c = Connect(Options());
  ASSERT_NE(c, nullptr);
  bool returned = false;
  bool inside = false;
  int answered = 0;
  auto check = [&](absl::StatusOr<RedisValue>) {
    if (!returned) inside = true;
    ++answered;
  };
  std::vector<std::unique_ptr<RedisClient::Pending>> keep;
  keep.push_back(c->Command({"PING"}, check));
  keep.push_back(c->Command({}, check));  // invalid: fails, but later
  returned = true;
  ASSERT_TRUE(loop_.RunUntil([&] { return answered == 2; }));
  EXPECT_FALSE(inside);
  c.reset();
  // The same when failing fast: nothing listens on port 1.
  RedisOptions o = Options();
  o.address = "127.0.0.1:1";
  auto dead = *RedisClient::Create(loop_.get(), o);
  ASSERT_TRUE(loop_.RunUntil([&] { return !dead->available(); }));
  returned = false;
  answered = 0;
  absl::Status status;
  keep.push_back(dead->Command({"PING"}, [&](absl::StatusOr<RedisValue> v) {
    if (!returned) inside = true;
    status = v.status();
    ++answered;
  }));
  returned = true;
  ASSERT_TRUE(loop_.RunUntil([&] { return answered == 1; }));
  EXPECT_FALSE(inside);
  EXPECT_TRUE(absl::IsUnavailable(status)) << status;
  keep.clear();
  dead.reset();
}

TEST_F(RedisClientTest, TimeoutAndLateReplyDropped) {
  RedisOptions o = Options();
  o.command_timeout = 100ms;
  o.unresponsive_after = 5s;
  auto c = Connect(o);
  ASSERT_NE(c, nullptr);
  // Redis answers nobody for 600 ms.
  ASSERT_EQ(server_->Cli({"CLIENT", "PAUSE", "600", "ALL"}), "OK");
  auto start = Clock::now();
  Result slow;
  auto p = c->Command({"SET", "late", "1"}, slow.Callback());
  ASSERT_TRUE(loop_.RunUntil([&] { return slow.done; }));
  auto waited = Clock::now() - start;
  EXPECT_TRUE(absl::IsDeadlineExceeded(slow.value.status())) << slow.value.status();
  EXPECT_GE(waited, 90ms);
  EXPECT_LT(waited, 400ms);
  // A longer timeout given to one command.
  Result patient;
  auto p2 = c->Command({"GET", "late"}, patient.Callback(), 2000ms);
  ASSERT_TRUE(loop_.RunUntil([&] { return patient.done; }, 3s));
  ASSERT_TRUE(patient.value.ok()) << patient.value.status();
  EXPECT_EQ(patient.value->str, "1");  // the timed-out SET did run
  EXPECT_EQ(c->stats().timeouts, 1u);
  EXPECT_EQ(c->stats().late_replies, 1u);
  EXPECT_EQ(c->stats().disconnects, 0u);
  EXPECT_EQ(Run(*c, {"PING"})->str, "PONG");
  p.reset();
  p2.reset();
  c.reset();
}

TEST_F(RedisClientTest, UnresponsiveConnectionIsReopened) {
  LogCapture log;
  RedisOptions o = Options();
  o.command_timeout = 100ms;
  o.unresponsive_after = 300ms;
  o.connect_timeout = 200ms;
  auto c = Connect(o);
  ASSERT_NE(c, nullptr);
  ASSERT_EQ(server_->Cli({"CLIENT", "PAUSE", "1500", "ALL"}), "OK");
  Result r;
  auto p = c->Command({"PING"}, r.Callback());
  ASSERT_TRUE(loop_.RunUntil([&] { return !c->available(); }, 2s));
  EXPECT_EQ(c->stats().disconnects, 1u);
  // Meanwhile commands fail at once.
  auto start = Clock::now();
  Result fast;
  auto p2 = c->Command({"PING"}, fast.Callback());
  ASSERT_TRUE(loop_.RunUntil([&] { return fast.done; }));
  EXPECT_LT(Clock::now() - start, 50ms);
  EXPECT_TRUE(absl::IsUnavailable(fast.value.status())) << fast.value.status();
  // Back once the pause is over.
  ASSERT_TRUE(loop_.RunUntil([&] { return c->connected(); }, 5s));
  EXPECT_EQ(Run(*c, {"PING"})->str, "PONG");
  EXPECT_EQ(log.Count("no reply at all for 300 ms"), 1) << log.text();
  EXPECT_EQ(log.Count("connected again"), 1) << log.text();
  p.reset();
  p2.reset();
  c.reset();
}

TEST_F(RedisClientTest, ServerStoppedAndBack) {
  LogCapture log;
  auto c = Connect(Options());
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(Run(*c, {"SET", "a", "1"})->str, "OK");
  // A command in flight when the server dies: it is told "lost".
  ASSERT_EQ(server_->Cli({"CLIENT", "PAUSE", "3000", "ALL"}), "OK");
  Result inflight;
  auto p = c->Command({"GET", "a"}, inflight.Callback());
  loop_.RunFor(50ms);
  server_->Kill();
  ASSERT_TRUE(loop_.RunUntil([&] { return inflight.done; }, 2s));
  EXPECT_TRUE(absl::IsUnavailable(inflight.value.status())) << inflight.value.status();
  EXPECT_EQ(c->stats().lost, 1u);
  EXPECT_FALSE(c->available());
  // Redis down: commands fail fast, many times over, while reconnecting.
  loop_.RunFor(600ms);  // several attempts (backoff 50 ms doubling to 200 ms)
  EXPECT_GE(c->stats().connect_failures, 2u);
  for (int i = 0; i < 20; ++i) {
    auto start = Clock::now();
    Result r;
    auto h = c->Command({"GET", "a"}, r.Callback());
    ASSERT_TRUE(loop_.RunUntil([&] { return r.done; }));
    EXPECT_LT(Clock::now() - start, 50ms);
    EXPECT_TRUE(absl::IsUnavailable(r.value.status())) << r.value.status();
  }
  EXPECT_GE(c->stats().unavailable, 20u);
  // One line for the change, not one per attempt.
  EXPECT_EQ(log.Count("unavailable ("), 1) << log.text();
  std::string error;
  ASSERT_TRUE(server_->Restart(&error)) << error;
  ASSERT_TRUE(loop_.RunUntil([&] { return c->connected(); }, 5s));
  EXPECT_EQ(Run(*c, {"SET", "b", "2"})->str, "OK");
  EXPECT_EQ(c->stats().reconnects, 1u);
  EXPECT_EQ(log.Count("connected again"), 1) << log.text();
  p.reset();
  c.reset();
}

TEST_F(RedisClientTest, NeverReachableFailsFast) {
  LogCapture log;
  RedisOptions o = Options();
  server_->Kill();  // its port is now closed
  auto c = *RedisClient::Create(loop_.get(), o);
  // Queued behind the first attempt, which fails: refused at once (not
  // after the connect timeout).
  auto start = Clock::now();
  Result first;
  auto p = c->Command({"PING"}, first.Callback());
  ASSERT_TRUE(loop_.RunUntil([&] { return first.done; }));
  EXPECT_LT(Clock::now() - start, 300ms);
  EXPECT_TRUE(absl::IsUnavailable(first.value.status())) << first.value.status();
  loop_.RunFor(1000ms);
  EXPECT_GE(c->stats().connect_failures, 4u);
  EXPECT_EQ(c->stats().connects, 0u);
  EXPECT_EQ(log.Count("unavailable ("), 1) << log.text();
  EXPECT_NE(log.text().find("Connection refused"), std::string::npos) << log.text();
  p.reset();
  c.reset();
}

TEST_F(RedisClientTest, MaxPending) {
  RedisOptions o = Options();
  o.max_pending = 4;
  o.command_timeout = 2000ms;
  o.unresponsive_after = 5s;
  auto c = Connect(o);
  ASSERT_NE(c, nullptr);
  ASSERT_EQ(server_->Cli({"CLIENT", "PAUSE", "300", "ALL"}), "OK");
  std::vector<Result> results(6);
  std::vector<std::unique_ptr<RedisClient::Pending>> handles;
  for (Result& r : results) handles.push_back(c->Command({"PING"}, r.Callback()));
  ASSERT_TRUE(loop_.RunUntil([&] { return results[4].done && results[5].done; }, 100ms));
  EXPECT_TRUE(absl::IsResourceExhausted(results[4].value.status()));
  EXPECT_TRUE(absl::IsResourceExhausted(results[5].value.status()));
  EXPECT_FALSE(results[0].done);
  ASSERT_TRUE(loop_.RunUntil([&] { return results[3].done; }));
  for (int i = 0; i < 4; ++i) EXPECT_EQ(results[i].value->str, "PONG");
  EXPECT_EQ(c->stats().overflows, 2u);
  handles.clear();
  c.reset();
}

TEST_F(RedisClientTest, Cancellation) {
  auto c = Connect(Options());
  ASSERT_NE(c, nullptr);
  int ran = 0;
  auto count = [&](absl::StatusOr<RedisValue>) { ++ran; };
  // Dropped at once.
  for (int i = 0; i < 100; ++i) c->Command({"INCR", "x"}, count);
  // Dropped after the reply arrived, before it was delivered.
  auto h = c->Command({"INCR", "x"}, count);
  uint64_t before = c->stats().replies;
  ASSERT_TRUE(loop_.RunUntil([&] { return c->stats().replies == before + 101; }));
  h.reset();
  // One callback destroys the handle of another whose reply is queued.
  std::unique_ptr<RedisClient::Pending> second;
  auto first = c->Command({"INCR", "x"}, [&](absl::StatusOr<RedisValue>) {
    ++ran;
    second.reset();
  });
  second = c->Command({"INCR", "x"}, count);
  // A callback destroying its own handle.
  std::unique_ptr<RedisClient::Pending> self;
  self = c->Command({"INCR", "x"}, [&](absl::StatusOr<RedisValue>) {
    ++ran;
    self.reset();
  });
  loop_.RunFor(200ms);
  EXPECT_EQ(ran, 2);
  EXPECT_EQ(server_->Cli({"GET", "x"}), "104");  // cancelled commands still ran
  // Failing fast, cancelled before delivery.
  server_->Kill();
  ASSERT_TRUE(loop_.RunUntil([&] { return !c->available(); }));
  c->Command({"GET", "x"}, count);
  loop_.RunFor(50ms);
  EXPECT_EQ(ran, 2);
  // The client destroyed with commands in flight and answers queued: no
  // callback, no leak (ASan).
  std::string error;
  ASSERT_TRUE(server_->Restart(&error)) << error;
  ASSERT_TRUE(loop_.RunUntil([&] { return c->connected(); }, 5s));
  std::vector<std::unique_ptr<RedisClient::Pending>> kept;
  for (int i = 0; i < 10; ++i) kept.push_back(c->Command({"INCR", "y"}, count));
  before = c->stats().replies;
  ASSERT_TRUE(loop_.RunUntil([&] { return c->stats().replies >= before + 5; }));
  for (int i = 0; i < 10; ++i) kept.push_back(c->Command({"INCR", "y"}, count));
  c.reset();
  loop_.RunFor(50ms);
  kept.clear();  // handles outliving their client
  EXPECT_EQ(ran, 2);
}

TEST_F(RedisClientTest, ClientDestroyedInsideCallback) {
  auto c = Connect(Options());
  ASSERT_NE(c, nullptr);
  int ran = 0;
  std::vector<std::unique_ptr<RedisClient::Pending>> kept;
  kept.push_back(c->Command({"PING"}, [&](absl::StatusOr<RedisValue>) {
    ++ran;
    c.reset();
  }));
  kept.push_back(c->Command({"PING"}, [&](absl::StatusOr<RedisValue>) { ++ran; }));
  ASSERT_TRUE(loop_.RunUntil([&] { return c == nullptr; }));
  loop_.RunFor(50ms);
  EXPECT_EQ(ran, 1);
  kept.clear();
}

TEST_F(RedisClientTest, UnixSocket) {
  RedisOptions o = Options();
  o.address = "unix:" + server_->unix_path();
  auto c = Connect(o);
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(Run(*c, {"SET", "u", "1"})->str, "OK");
  EXPECT_EQ(server_->Cli({"GET", "u"}), "1");
  c.reset();
}

class RedisAuthTest : public RedisClientTest {
 protected:
  void SetUp() override { StartServer("requirepass s3cret"); }
};

TEST_F(RedisAuthTest, AuthAndSelect) {
  RedisOptions o = Options();
  o.password = "s3cret";
  o.database = 3;
  auto c = Connect(o);
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(Run(*c, {"SET", "in3", "yes"})->str, "OK");
  EXPECT_EQ(server_->Cli({"GET", "in3"}, "s3cret"), "(nil)");  // not in database 0
  EXPECT_EQ(Run(*c, {"CLIENT", "INFO"})->str.find("db=3") != std::string::npos, true);
  c.reset();
}

TEST_F(RedisAuthTest, WrongPasswordNeverConnects) {
  LogCapture log;
  RedisOptions o = Options();
  o.password = "wrong";
  auto c = *RedisClient::Create(loop_.get(), o);
  loop_.RunFor(500ms);
  EXPECT_FALSE(c->connected());
  EXPECT_FALSE(c->available());
  EXPECT_GE(c->stats().connect_failures, 2u);
  EXPECT_EQ(log.Count("handshake refused"), 1) << log.text();
  EXPECT_EQ(log.text().find("wrong"), std::string::npos) << "the password was logged";
  c.reset();
}

// --- pub/sub ---------------------------------------------------------------

TEST_F(RedisClientTest, PubSubDeliveryAndResubscription) {
  LogCapture log;
  auto pub = Connect(Options());
  ASSERT_NE(pub, nullptr);
  std::vector<RedisMessage> got;
  std::vector<RedisSubscriber::Event> events;
  auto sub = *RedisSubscriber::Create(
      loop_.get(), Options(), {"postern:invalidate", std::string("bin\0ary", 7)}, {"user:*"},
      [&](const RedisMessage& m) { got.push_back(m); },
      [&](RedisSubscriber::Event e) { events.push_back(e); });
  ASSERT_TRUE(loop_.RunUntil([&] { return !events.empty(); }));
  EXPECT_TRUE(sub->subscribed());
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0], RedisSubscriber::Event::kSubscribed);

  std::string payload("alice\0\r\n", 8);
  EXPECT_EQ(Run(*pub, {"PUBLISH", "postern:invalidate", payload})->integer, 1);
  EXPECT_EQ(Run(*pub, {"PUBLISH", std::string("bin\0ary", 7), "x"})->integer, 1);
  EXPECT_EQ(Run(*pub, {"PUBLISH", "user:bob", "moved"})->integer, 1);
  EXPECT_EQ(Run(*pub, {"PUBLISH", "other", "ignored"})->integer, 0);
  ASSERT_TRUE(loop_.RunUntil([&] { return got.size() == 3; }));
  EXPECT_EQ(got[0].channel, "postern:invalidate");
  EXPECT_EQ(got[0].payload, payload);
  EXPECT_EQ(got[0].pattern, "");
  EXPECT_EQ(got[1].channel, std::string("bin\0ary", 7));
  EXPECT_EQ(got[2].channel, "user:bob");
  EXPECT_EQ(got[2].pattern, "user:*");
  EXPECT_EQ(got[2].payload, "moved");

  // Redis restarts: the subscriber reports the loss, then the
  // resubscription (messages published meanwhile are lost to it).
  server_->Stop();
  ASSERT_TRUE(loop_.RunUntil([&] { return events.size() == 2; }));
  EXPECT_EQ(events[1], RedisSubscriber::Event::kLost);
  EXPECT_FALSE(sub->subscribed());
  std::string error;
  ASSERT_TRUE(server_->Restart(&error)) << error;
  ASSERT_TRUE(loop_.RunUntil([&] { return events.size() == 3; }, 5s));
  EXPECT_EQ(events[2], RedisSubscriber::Event::kResubscribed);
  EXPECT_TRUE(sub->subscribed());
  ASSERT_TRUE(loop_.RunUntil([&] { return pub->connected(); }, 5s));
  EXPECT_EQ(Run(*pub, {"PUBLISH", "user:carol", "back"})->integer, 1);
  ASSERT_TRUE(loop_.RunUntil([&] { return got.size() == 4; }));
  EXPECT_EQ(got[3].channel, "user:carol");
  EXPECT_EQ(sub->stats().messages, 4u);
  EXPECT_EQ(sub->stats().reconnects, 1u);
  EXPECT_EQ(log.Count("resubscribed to 2 channel(s) and 1 pattern(s)"), 1) << log.text();
  sub.reset();
  pub.reset();
}

TEST_F(RedisClientTest, SubscriberDestroyedInsideMessageCallback) {
  auto pub = Connect(Options());
  ASSERT_NE(pub, nullptr);
  int messages = 0;
  std::unique_ptr<RedisSubscriber> sub = *RedisSubscriber::Create(
      loop_.get(), Options(), {"c"}, {},
      [&](const RedisMessage&) {
        ++messages;
        sub.reset();
      },
      nullptr);
  ASSERT_TRUE(loop_.RunUntil([&] { return sub->subscribed(); }));
  // The second message is never delivered.
  // Both published before the loop runs again.
  std::vector<std::unique_ptr<RedisClient::Pending>> kept;
  kept.push_back(pub->Command({"PUBLISH", "c", "1"}, nullptr));
  kept.push_back(pub->Command({"PUBLISH", "c", "2"}, nullptr));
  ASSERT_TRUE(loop_.RunUntil([&] { return sub == nullptr; }));
  loop_.RunFor(50ms);
  EXPECT_EQ(messages, 1);
  kept.clear();
  pub.reset();
}

}  // namespace
}  // namespace postern
