// AuthHttpDirectory against a small HTTP server on a real loopback socket,
// driven by the same libuv loop: keep-alive reuse, the connection and queue
// bounds, timeouts, failover between addresses, stale keep-alive
// connections, cancellation, and a clean loop at the end of every test (the
// fixture checks that uv_loop_close succeeds: no handle left behind).

#include "routing/auth_http_directory.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include <chrono>
#include <functional>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "routing/uv_owner.h"

namespace postern {
namespace {

using Verdict = DirectoryAnswer::Verdict;
using std::chrono::milliseconds;

constexpr char kOk[] =
    "HTTP/1.1 200 OK\r\nAuth-Status: OK\r\nAuth-Server: 127.0.0.1\r\nAuth-Port: 143\r\n"
    "Content-Length: 0\r\n\r\n";

// A tiny HTTP/1.1 server on 127.0.0.1:0: reads request heads (no bodies:
// GET only), answers each with what `reply` says, counts accepts.
class TestServer {
 public:
  struct Reply {
    std::string bytes = kOk;
    milliseconds delay{0};
    bool hang = false;         // never answer (the connection stays open)
    bool close_after = false;  // close once the answer is written
    bool close_now = false;    // close without answering
  };
  using ReplyFn = std::function<Reply(const std::string& head, int conn_no, int request_no)>;

  explicit TestServer(uv_loop_t* loop) : loop_(loop) {
    uv_tcp_init(loop, listener_.Allocate());
    listener_.get()->data = this;
    sockaddr_in addr;
    uv_ip4_addr("127.0.0.1", 0, &addr);
    EXPECT_EQ(uv_tcp_bind(listener_.get(), reinterpret_cast<sockaddr*>(&addr), 0), 0);
    EXPECT_EQ(uv_listen(reinterpret_cast<uv_stream_t*>(listener_.get()), 128, &OnConnection), 0);
    sockaddr_storage bound;
    int len = sizeof(bound);
    uv_tcp_getsockname(listener_.get(), reinterpret_cast<sockaddr*>(&bound), &len);
    port_ = ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  }

  uint16_t port() const { return port_; }
  std::string address() const { return absl::StrCat("127.0.0.1:", port_); }
  int accepts() const { return accepts_; }
  int requests() const { return static_cast<int>(heads_.size()); }
  const std::vector<std::string>& heads() const { return heads_; }
  size_t open_clients() const { return clients_.size(); }
  void set_reply(ReplyFn fn) { reply_ = std::move(fn); }
  // Closes every accepted connection (a restart of the service).
  void CloseClients() { clients_.clear(); }

 private:
  struct Client {
    TestServer* server;
    int number;
    int requests = 0;
    bool hung = false;
    UvOwner<uv_tcp_t> tcp;
    std::list<UvTimer> timers;
    std::string in;
    std::list<std::unique_ptr<Client>>::iterator self;
  };
  struct Write {
    uv_write_t req;
    std::string data;
    bool close_after;
  };

  static void OnConnection(uv_stream_t* s, int status) {
    auto* self = static_cast<TestServer*>(s->data);
    if (self == nullptr || status != 0) return;
    auto c = std::make_unique<Client>();
    c->server = self;
    c->number = ++self->accepts_;
    uv_tcp_init(self->loop_, c->tcp.Allocate());
    c->tcp.get()->data = c.get();
    if (uv_accept(s, reinterpret_cast<uv_stream_t*>(c->tcp.get())) != 0) return;
    uv_read_start(
        reinterpret_cast<uv_stream_t*>(c->tcp.get()),
        [](uv_handle_t*, size_t, uv_buf_t* b) {
          static char buf[65536];
          *b = uv_buf_init(buf, sizeof(buf));
        },
        &OnRead);
    self->clients_.push_back(std::move(c));
    self->clients_.back()->self = std::prev(self->clients_.end());
  }

  static void OnRead(uv_stream_t* s, ssize_t n, const uv_buf_t* b) {
    auto* c = static_cast<Client*>(s->data);
    if (c == nullptr) return;
    TestServer* self = c->server;
    if (n < 0) {
      self->clients_.erase(c->self);
      return;
    }
    c->in.append(b->base, static_cast<size_t>(n));
    size_t end;
    while (!c->hung && (end = c->in.find("\r\n\r\n")) != std::string::npos) {
      std::string head = c->in.substr(0, end + 4);
      c->in.erase(0, end + 4);
      self->heads_.push_back(head);
      const Reply r = self->reply_ ? self->reply_(head, c->number, ++c->requests) : Reply();
      if (r.close_now) {
        self->clients_.erase(c->self);
        return;
      }
      if (r.hang) {
        c->hung = true;
        return;
      }
      if (r.delay.count() > 0) {
        c->timers.emplace_back(self->loop_);
        c->timers.back().Start(r.delay, [c, r] { Send(c, r); });
      } else {
        Send(c, r);
      }
    }
  }

  static void Send(Client* c, const Reply& r) {
    auto* w = new Write{uv_write_t(), r.bytes, r.close_after};
    w->req.data = w;
    uv_buf_t buf = uv_buf_init(w->data.data(), static_cast<unsigned int>(w->data.size()));
    uv_write(&w->req, reinterpret_cast<uv_stream_t*>(c->tcp.get()), &buf, 1,
             [](uv_write_t* req, int) {
               auto* w = static_cast<Write*>(req->data);
               auto* c = static_cast<Client*>(req->handle->data);
               const bool close = w->close_after;
               delete w;
               if (c != nullptr && close) c->server->clients_.erase(c->self);
             });
  }

  uv_loop_t* loop_;
  UvOwner<uv_tcp_t> listener_;
  uint16_t port_ = 0;
  int accepts_ = 0;
  std::vector<std::string> heads_;
  std::list<std::unique_ptr<Client>> clients_;
  ReplyFn reply_;
};

// A port nobody listens on (connections are refused).
uint16_t RefusedPort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  socklen_t len = sizeof(a);
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  close(fd);
  return ntohs(a.sin_port);
}

// A socket that listens but never accepts: connects complete in the
// kernel, requests get no answer (a hung service).
class Blackhole {
 public:
  Blackhole() {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a));
    listen(fd_, 16);
    socklen_t len = sizeof(a);
    getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
  }
  ~Blackhole() { close(fd_); }
  std::string address() const { return absl::StrCat("127.0.0.1:", port_); }

 private:
  int fd_;
  uint16_t port_;
};

DirectoryRequest Login(std::string user = "alice") {
  DirectoryRequest r;
  r.user = std::move(user);
  r.secret = "demo";
  r.protocol = "imap";
  r.client_ip = "127.0.0.1";
  return r;
}

class AuthHttpDirectoryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(uv_loop_init(&loop_), 0);
    server_ = std::make_unique<TestServer>(&loop_);
  }

  void TearDown() override {
    dir_.reset();
    server_.reset();
    // Every handle closes; nothing is left on the loop.
    uv_run(&loop_, UV_RUN_DEFAULT);
    EXPECT_EQ(uv_loop_close(&loop_), 0) << "handles left on the loop";
  }

  AuthHttpOptions Options() {
    AuthHttpOptions o;
    o.name = "test";
    o.servers = {server_->address()};
    o.timeout = milliseconds(3000);
    return o;
  }

  void Make(AuthHttpOptions o) {
    absl::StatusOr<std::unique_ptr<AuthHttpDirectory>> d = AuthHttpDirectory::Create(&loop_, o);
    ASSERT_TRUE(d.ok()) << d.status();
    dir_ = *std::move(d);
  }

  // Runs the loop until `done` or `limit` has passed; true if done.
  bool RunUntil(const std::function<bool()>& done, milliseconds limit = milliseconds(5000)) {
    bool timed_out = false;
    UvTimer guard(&loop_);
    guard.Start(limit, [&] { timed_out = true; });
    while (!done() && !timed_out) uv_run(&loop_, UV_RUN_ONCE);
    return done();
  }
  // Runs the loop for `d` (everything due in that time happens).
  void RunFor(milliseconds d) {
    bool over = false;
    UvTimer t(&loop_);
    t.Start(d, [&] { over = true; });
    while (!over) uv_run(&loop_, UV_RUN_ONCE);
  }

  // Starts a lookup whose answer lands in `out`.
  std::unique_ptr<Directory::Lookup> Ask(std::optional<DirectoryAnswer>* out,
                                         DirectoryRequest r = Login()) {
    return dir_->Start(r, [out](DirectoryAnswer a) {
      EXPECT_FALSE(out->has_value()) << "answered twice";
      *out = std::move(a);
    });
  }

  uint64_t NowMs() { return uv_now(&loop_); }

  uv_loop_t loop_;
  std::unique_ptr<TestServer> server_;
  std::unique_ptr<AuthHttpDirectory> dir_;
};

TEST_F(AuthHttpDirectoryTest, AnswersAndSendsTheRequest) {
  AuthHttpOptions o = Options();
  o.headers = {{"X-Auth-Key", "s3cret"}};
  Make(o);
  std::optional<DirectoryAnswer> a;
  auto lookup = Ask(&a);
  EXPECT_FALSE(a.has_value());  // never from inside Start()
  ASSERT_TRUE(RunUntil([&] { return a.has_value(); }));
  EXPECT_EQ(a->verdict, Verdict::kAccept);
  EXPECT_EQ(a->host, "127.0.0.1");
  EXPECT_EQ(a->port, 143);
  ASSERT_EQ(server_->requests(), 1);
  const std::string& head = server_->heads()[0];
  EXPECT_TRUE(absl::StartsWith(head, "GET /auth HTTP/1.1\r\nHost: 127.0.0.1\r\n")) << head;
  EXPECT_TRUE(absl::StrContains(head, "\r\nAuth-User: alice\r\nAuth-Pass: demo\r\n")) << head;
  EXPECT_TRUE(absl::EndsWith(head, "\r\nX-Auth-Key: s3cret\r\n\r\n")) << head;
  EXPECT_EQ(dir_->Name(), "auth-http:test");
  EXPECT_TRUE(dir_->ChecksSecrets());
}

TEST_F(AuthHttpDirectoryTest, KeepAliveOneConnectionForSequentialLookups) {
  Make(Options());
  constexpr int kLookups = 25;
  int answered = 0;
  std::unique_ptr<Directory::Lookup> lookup;
  std::function<void()> next = [&] {
    lookup = dir_->Start(Login(absl::StrCat("user", answered)), [&](DirectoryAnswer a) {
      EXPECT_EQ(a.verdict, Verdict::kAccept) << a.detail;
      if (++answered < kLookups) next();  // the next login starts from this answer
    });
  };
  next();
  ASSERT_TRUE(RunUntil([&] { return answered == kLookups; }));
  EXPECT_EQ(server_->accepts(), 1);
  EXPECT_EQ(server_->requests(), kLookups);
  const AuthHttpDirectory::Stats s = dir_->stats();
  EXPECT_EQ(s.connects, 1u);
  EXPECT_EQ(s.requests, static_cast<uint64_t>(kLookups));
  EXPECT_EQ(s.reused, static_cast<uint64_t>(kLookups - 1));
  EXPECT_EQ(s.answers, static_cast<uint64_t>(kLookups));
  EXPECT_EQ(s.idle_connections, 1u);
}

TEST_F(AuthHttpDirectoryTest, ConcurrentLookupsShareAtMostMaxConnections) {
  server_->set_reply([](const std::string&, int, int) {
    TestServer::Reply r;
    r.delay = milliseconds(20);
    return r;
  });
  AuthHttpOptions o = Options();
  o.max_connections = 3;
  Make(o);
  constexpr int kLookups = 30;
  std::vector<std::optional<DirectoryAnswer>> answers(kLookups);
  std::vector<std::unique_ptr<Directory::Lookup>> lookups;
  for (int i = 0; i < kLookups; ++i) lookups.push_back(Ask(&answers[i]));
  EXPECT_EQ(dir_->stats().queued, static_cast<size_t>(kLookups - 3));
  ASSERT_TRUE(RunUntil([&] {
    for (auto& a : answers) {
      if (!a) return false;
    }
    return true;
  }));
  for (auto& a : answers) EXPECT_EQ(a->verdict, Verdict::kAccept) << a->detail;
  EXPECT_EQ(server_->accepts(), 3);
  EXPECT_EQ(server_->requests(), kLookups);
  EXPECT_EQ(dir_->stats().connects, 3u);
}

TEST_F(AuthHttpDirectoryTest, QueueBound) {
  server_->set_reply([](const std::string&, int, int) {
    TestServer::Reply r;
    r.delay = milliseconds(50);
    return r;
  });
  AuthHttpOptions o = Options();
  o.max_connections = 1;
  o.max_queue = 2;
  Make(o);
  std::optional<DirectoryAnswer> a[5];
  std::vector<std::unique_ptr<Directory::Lookup>> lookups;
  for (auto& x : a) lookups.push_back(Ask(&x));
  // One on the connection, two queued, two over the bound.
  EXPECT_EQ(dir_->stats().queued, 2u);
  EXPECT_FALSE(a[3].has_value());  // not from inside Start(): at the next loop turn
  ASSERT_TRUE(RunUntil([&] { return a[3] && a[4]; }));
  EXPECT_EQ(a[3]->verdict, Verdict::kUnavailable);
  EXPECT_EQ(a[4]->verdict, Verdict::kUnavailable);
  EXPECT_TRUE(absl::StrContains(a[3]->detail, "wait for a connection")) << a[3]->detail;
  EXPECT_FALSE(a[0] || a[1] || a[2]);  // refused at once, before the others were answered
  ASSERT_TRUE(RunUntil([&] { return a[0] && a[1] && a[2]; }));
  for (int i = 0; i < 3; ++i) EXPECT_EQ(a[i]->verdict, Verdict::kAccept);
  EXPECT_EQ(dir_->stats().queue_full, 2u);
  EXPECT_EQ(server_->accepts(), 1);
}

TEST_F(AuthHttpDirectoryTest, TimeoutWhenTheServiceHangs) {
  server_->set_reply([](const std::string&, int, int) {
    TestServer::Reply r;
    r.hang = true;
    return r;
  });
  AuthHttpOptions o = Options();
  o.timeout = milliseconds(300);
  Make(o);
  std::optional<DirectoryAnswer> a;
  const uint64_t start = NowMs();
  auto lookup = Ask(&a);
  ASSERT_TRUE(RunUntil([&] { return a.has_value(); }));
  const uint64_t took = NowMs() - start;
  EXPECT_EQ(a->verdict, Verdict::kUnavailable);
  EXPECT_GE(took, 290u);
  EXPECT_LT(took, 1500u);
  EXPECT_GE(dir_->stats().timeouts + dir_->stats().attempt_timeouts, 1u);
}

TEST_F(AuthHttpDirectoryTest, FailoverWhenTheFirstAddressRefuses) {
  AuthHttpOptions o = Options();
  o.servers = {absl::StrCat("127.0.0.1:", RefusedPort()), server_->address()};
  Make(o);
  std::optional<DirectoryAnswer> a;
  auto lookup = Ask(&a);
  ASSERT_TRUE(RunUntil([&] { return a.has_value(); }));
  EXPECT_EQ(a->verdict, Verdict::kAccept) << a->detail;
  EXPECT_EQ(dir_->stats().failovers, 1u);
  EXPECT_EQ(dir_->stats().connect_failures, 1u);
  // The refusing address cools down: the next lookup goes straight to the
  // second one (and reuses its connection).
  std::optional<DirectoryAnswer> b;
  lookup = Ask(&b);
  ASSERT_TRUE(RunUntil([&] { return b.has_value(); }));
  EXPECT_EQ(b->verdict, Verdict::kAccept);
  EXPECT_EQ(dir_->stats().failovers, 1u);
  EXPECT_EQ(dir_->stats().connect_failures, 1u);
  EXPECT_EQ(server_->accepts(), 1);
}

TEST_F(AuthHttpDirectoryTest, FailoverWhenTheFirstAddressHangs) {
  Blackhole hole;
  AuthHttpOptions o = Options();
  o.servers = {hole.address(), server_->address()};
  o.timeout = milliseconds(3000);
  o.attempt_timeout = milliseconds(200);
  Make(o);
  std::optional<DirectoryAnswer> a;
  const uint64_t start = NowMs();
  auto lookup = Ask(&a);
  ASSERT_TRUE(RunUntil([&] { return a.has_value(); }));
  EXPECT_EQ(a->verdict, Verdict::kAccept) << a->detail;
  EXPECT_GE(NowMs() - start, 190u);
  EXPECT_LT(NowMs() - start, 2000u);
  EXPECT_EQ(dir_->stats().attempt_timeouts, 1u);
  EXPECT_EQ(dir_->stats().failovers, 1u);
}

TEST_F(AuthHttpDirectoryTest, FailoverWhenTheFirstServiceAcceptsButNeverAnswers) {
  TestServer silent(&loop_);
  silent.set_reply([](const std::string&, int, int) {
    TestServer::Reply r;
    r.hang = true;
    return r;
  });
  AuthHttpOptions o = Options();
  o.servers = {silent.address(), server_->address()};
  o.timeout = milliseconds(2000);  // 1000 per address
  Make(o);
  std::optional<DirectoryAnswer> a;
  auto lookup = Ask(&a);
  ASSERT_TRUE(RunUntil([&] { return a.has_value(); }));
  EXPECT_EQ(a->verdict, Verdict::kAccept) << a->detail;
  EXPECT_EQ(silent.requests(), 1);
  EXPECT_EQ(server_->requests(), 1);
  dir_.reset();  // before `silent` goes
  uv_run(&loop_, UV_RUN_NOWAIT);
}

TEST_F(AuthHttpDirectoryTest, EveryAddressDown) {
  AuthHttpOptions o = Options();
  o.servers = {absl::StrCat("127.0.0.1:", RefusedPort()),
               absl::StrCat("127.0.0.1:", RefusedPort())};
  Make(o);
  std::optional<DirectoryAnswer> a;
  const uint64_t start = NowMs();
  auto lookup = Ask(&a);
  ASSERT_TRUE(RunUntil([&] { return a.has_value(); }));
  EXPECT_EQ(a->verdict, Verdict::kUnavailable);
  EXPECT_TRUE(absl::StrContains(a->detail, "connect")) << a->detail;
  EXPECT_LT(NowMs() - start, 1000u);  // no waiting for the timeout
  // Both cool down; the next lookup still tries them (nothing better).
  std::optional<DirectoryAnswer> b;
  lookup = Ask(&b);
  ASSERT_TRUE(RunUntil([&] { return b.has_value(); }));
  EXPECT_EQ(b->verdict, Verdict::kUnavailable);
  EXPECT_EQ(dir_->stats().connect_failures, 4u);
}

TEST_F(AuthHttpDirectoryTest, CancelledBeforeTheAnswer) {
  server_->set_reply([](const std::string&, int, int) {
    TestServer::Reply r;
    r.delay = milliseconds(100);
    return r;
  });
  Make(Options());
  bool called = false;
  auto lookup = dir_->Start(Login(), [&](DirectoryAnswer) { called = true; });
  ASSERT_TRUE(RunUntil([&] { return server_->requests() == 1; }));
  lookup.reset();  // the client hung up
  RunFor(milliseconds(300));
  EXPECT_FALSE(called);
  EXPECT_EQ(dir_->stats().cancelled, 1u);
  EXPECT_EQ(dir_->stats().discarded, 1u);  // the answer came and was dropped
  EXPECT_EQ(dir_->stats().idle_connections, 1u);
  // ... and the connection serves the next lookup.
  std::optional<DirectoryAnswer> a;
  lookup = Ask(&a);
  ASSERT_TRUE(RunUntil([&] { return a.has_value(); }));
  EXPECT_EQ(a->verdict, Verdict::kAccept);
  EXPECT_EQ(server_->accepts(), 1);
}

TEST_F(AuthHttpDirectoryTest, CancelledWhileConnectingQueuedOrRightAway) {
  AuthHttpOptions o = Options();
  o.max_connections = 1;
  Make(o);
  int called = 0;
  auto first = dir_->Start(Login(), [&](DirectoryAnswer) { ++called; });   // connecting
  auto second = dir_->Start(Login(), [&](DirectoryAnswer) { ++called; });  // queued
  EXPECT_EQ(dir_->stats().queued, 1u);
  first.reset();
  second.reset();
  EXPECT_EQ(dir_->stats().queued, 0u);
  RunFor(milliseconds(200));
  EXPECT_EQ(called, 0);
  EXPECT_EQ(server_->requests(), 0);  // connected, then idle: nothing to ask
  EXPECT_EQ(dir_->stats().idle_connections, 1u);
}

TEST_F(AuthHttpDirectoryTest, CancelledAfterTheAnswerWasDue) {
  // Over the queue bound: the answer waits for the next loop turn; dropping
  // the handle before it must still drop it.
  AuthHttpOptions o = Options();
  o.max_connections = 1;
  o.max_queue = 0;
  Make(o);
  int called = 0;
  auto first = dir_->Start(Login(), [&](DirectoryAnswer) { ++called; });
  auto second = dir_->Start(Login(), [&](DirectoryAnswer) { ++called; });
  second.reset();
  ASSERT_TRUE(RunUntil([&] { return called == 1; }));
  RunFor(milliseconds(50));
  EXPECT_EQ(called, 1);
}

TEST_F(AuthHttpDirectoryTest, HandleDroppedInsideItsOwnAnswerAndNewLookupStarted) {
  Make(Options());
  std::unique_ptr<Directory::Lookup> lookup;
  std::optional<DirectoryAnswer> second;
  lookup = dir_->Start(Login(), [&](DirectoryAnswer) {
    lookup.reset();         // the session drops its handle in the callback
    lookup = Ask(&second);  // and starts another login
  });
  ASSERT_TRUE(RunUntil([&] { return second.has_value(); }));
  EXPECT_EQ(second->verdict, Verdict::kAccept);
}

TEST_F(AuthHttpDirectoryTest, DirectoryDestroyedWithLookupsInFlight) {
  server_->set_reply([](const std::string&, int, int) {
    TestServer::Reply r;
    r.delay = milliseconds(100);
    return r;
  });
  AuthHttpOptions o = Options();
  o.max_connections = 1;
  Make(o);
  int called = 0;
  auto a = dir_->Start(Login(), [&](DirectoryAnswer) { ++called; });
  auto b = dir_->Start(Login(), [&](DirectoryAnswer) { ++called; });
  ASSERT_TRUE(RunUntil([&] { return server_->requests() == 1; }));
  dir_.reset();
  a.reset();  // handles outliving the directory are harmless
  RunFor(milliseconds(200));
  b.reset();
  EXPECT_EQ(called, 0);
}

TEST_F(AuthHttpDirectoryTest, DirectoryDestroyedInsideAnAnswer) {
  Make(Options());
  std::unique_ptr<Directory::Lookup> lookup;
  bool called = false;
  lookup = dir_->Start(Login(), [&](DirectoryAnswer) {
    called = true;
    dir_.reset();
  });
  ASSERT_TRUE(RunUntil([&] { return called; }));
  lookup.reset();
}

TEST_F(AuthHttpDirectoryTest, ConnectionCloseIsHonoured) {
  server_->set_reply([](const std::string&, int, int) {
    TestServer::Reply r;
    r.bytes =
        "HTTP/1.1 200 OK\r\nConnection: close\r\nAuth-Status: OK\r\nAuth-Server: 127.0.0.1\r\n"
        "Auth-Port: 110\r\nContent-Length: 0\r\n\r\n";
    r.close_after = true;
    return r;
  });
  Make(Options());
  for (int i = 0; i < 3; ++i) {
    std::optional<DirectoryAnswer> a;
    auto lookup = Ask(&a);
    ASSERT_TRUE(RunUntil([&] { return a.has_value(); }));
    EXPECT_EQ(a->verdict, Verdict::kAccept) << a->detail;
  }
  EXPECT_EQ(server_->accepts(), 3);
  EXPECT_EQ(dir_->stats().reused, 0u);
}

TEST_F(AuthHttpDirectoryTest, ChunkedAndHttp10Answers) {
  server_->set_reply([](const std::string&, int, int n) {
    TestServer::Reply r;
    if (n == 1) {
      r.bytes =
          "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nAuth-Status: OK\r\n"
          "Auth-Backend: store1\r\n\r\n4\r\nbody\r\n0\r\n\r\n";
    } else {
      // HTTP/1.0, no length: the answer ends with the connection.
      r.bytes = "HTTP/1.0 200 OK\r\nAuth-Status: OK\r\nAuth-Shard: s1\r\n\r\nbody to the end";
      r.close_after = true;
    }
    return r;
  });
  Make(Options());
  std::optional<DirectoryAnswer> a, b, c;
  auto l1 = Ask(&a);
  ASSERT_TRUE(RunUntil([&] { return a.has_value(); }));
  EXPECT_EQ(a->backend, "store1");
  auto l2 = Ask(&b);
  ASSERT_TRUE(RunUntil([&] { return b.has_value(); }));
  EXPECT_EQ(b->shard, "s1");
  EXPECT_EQ(server_->accepts(), 1);  // the chunked answer kept the connection
  auto l3 = Ask(&c);
  ASSERT_TRUE(RunUntil([&] { return c.has_value(); }));
  EXPECT_EQ(server_->accepts(), 2);  // the HTTP/1.0 one did not
}

TEST_F(AuthHttpDirectoryTest, StaleKeepAliveConnectionIsRetried) {
  // The service closes a kept-alive connection just as our next request
  // arrives: no answer byte came, so the request goes again on a new one.
  server_->set_reply([](const std::string&, int conn, int n) {
    TestServer::Reply r;
    if (conn == 1 && n == 2) r.close_now = true;
    return r;
  });
  Make(Options());
  std::optional<DirectoryAnswer> a, b;
  auto l1 = Ask(&a);
  ASSERT_TRUE(RunUntil([&] { return a.has_value(); }));
  auto l2 = Ask(&b);
  ASSERT_TRUE(RunUntil([&] { return b.has_value(); }));
  EXPECT_EQ(b->verdict, Verdict::kAccept) << b->detail;
  EXPECT_EQ(dir_->stats().stale_retries, 1u);
  EXPECT_EQ(dir_->stats().failovers, 0u);
  EXPECT_EQ(server_->accepts(), 2);
}

TEST_F(AuthHttpDirectoryTest, IdleConnectionClosedByTheServiceIsNoticed) {
  Make(Options());
  std::optional<DirectoryAnswer> a, b;
  auto l1 = Ask(&a);
  ASSERT_TRUE(RunUntil([&] { return a.has_value(); }));
  server_->CloseClients();  // the service restarts
  ASSERT_TRUE(RunUntil([&] { return dir_->stats().open_connections == 0; }));
  auto l2 = Ask(&b);
  ASSERT_TRUE(RunUntil([&] { return b.has_value(); }));
  EXPECT_EQ(b->verdict, Verdict::kAccept);
  EXPECT_EQ(dir_->stats().stale_retries, 0u);
  EXPECT_EQ(server_->accepts(), 2);
}

TEST_F(AuthHttpDirectoryTest, IdleTimeoutClosesConnections) {
  AuthHttpOptions o = Options();
  o.idle_timeout = milliseconds(50);
  Make(o);
  std::optional<DirectoryAnswer> a;
  auto l = Ask(&a);
  ASSERT_TRUE(RunUntil([&] { return a.has_value(); }));
  EXPECT_EQ(dir_->stats().open_connections, 1u);
  ASSERT_TRUE(RunUntil([&] { return dir_->stats().open_connections == 0; }));
}

TEST_F(AuthHttpDirectoryTest, BadAnswersAreUnavailableAndCloseTheConnection) {
  const std::string replies[] = {
      "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n", "not http at all\r\n\r\n",
      "HTTP/1.1 200 OK\r\nAuth-Status: OK\r\nContent-Length: 0\r\n\r\n",  // no server
      "HTTP/1.1 200 OK\r\nAuth-Status: OK\r\nAuth-Server: 127.0.0.1\r\nAuth-Port: 1\r\n"
      "Content-Length: 2\r\n\r\nabEXTRA",  // bytes after the answer
  };
  int which = 0;
  server_->set_reply([&](const std::string&, int, int) {
    TestServer::Reply r;
    r.bytes = replies[which];
    return r;
  });
  Make(Options());
  for (which = 0; which < 4; ++which) {
    std::optional<DirectoryAnswer> a;
    auto l = Ask(&a);
    ASSERT_TRUE(RunUntil([&] { return a.has_value(); }));
    if (which < 3) {
      EXPECT_EQ(a->verdict, Verdict::kUnavailable) << replies[which];
      EXPECT_FALSE(a->detail.empty());
    } else {
      EXPECT_EQ(a->verdict, Verdict::kAccept);
    }
  }
  // 500 and garbage closed their connections, the third one is kept, the
  // extra bytes after the fourth close it.
  EXPECT_EQ(server_->accepts(), 2);
  EXPECT_EQ(dir_->stats().open_connections, 0u);
  EXPECT_EQ(dir_->stats().failovers, 0u);  // an answer, however bad, is not a dead server
}

TEST_F(AuthHttpDirectoryTest, RefusalWithWait) {
  server_->set_reply([](const std::string&, int, int) {
    TestServer::Reply r;
    r.bytes =
        "HTTP/1.1 200 OK\r\nAuth-Status: Invalid login or password\r\nAuth-Wait: 3\r\n"
        "Content-Length: 0\r\n\r\n";
    return r;
  });
  Make(Options());
  std::optional<DirectoryAnswer> a;
  auto l = Ask(&a);
  ASSERT_TRUE(RunUntil([&] { return a.has_value(); }));
  EXPECT_EQ(a->verdict, Verdict::kRefuse);
  EXPECT_EQ(a->text, "Invalid login or password");
  EXPECT_EQ(a->wait, std::chrono::seconds(3));  // the session waits, not the directory
}

TEST_F(AuthHttpDirectoryTest, AuthStatusWaitAsksAgain) {
  server_->set_reply([](const std::string&, int, int n) {
    TestServer::Reply r;
    if (n <= 2) r.bytes = "HTTP/1.1 200 OK\r\nAuth-Status: WAIT\r\nContent-Length: 0\r\n\r\n";
    return r;
  });
  Make(Options());
  std::optional<DirectoryAnswer> a;
  auto l = Ask(&a);
  ASSERT_TRUE(RunUntil([&] { return a.has_value(); }));
  EXPECT_EQ(a->verdict, Verdict::kAccept);
  EXPECT_EQ(server_->requests(), 3);
}

TEST_F(AuthHttpDirectoryTest, AuthStatusWaitIsBounded) {
  server_->set_reply([](const std::string&, int, int) {
    TestServer::Reply r;
    r.bytes = "HTTP/1.1 200 OK\r\nAuth-Status: WAIT\r\nContent-Length: 0\r\n\r\n";
    return r;
  });
  AuthHttpOptions o = Options();
  o.max_wait_rounds = 2;
  Make(o);
  std::optional<DirectoryAnswer> a;
  auto l = Ask(&a);
  ASSERT_TRUE(RunUntil([&] { return a.has_value(); }));
  EXPECT_EQ(a->verdict, Verdict::kUnavailable);
  EXPECT_EQ(server_->requests(), 3);
}

TEST_F(AuthHttpDirectoryTest, CreateRefusesBadOptions) {
  auto bad = [&](const std::function<void(AuthHttpOptions&)>& change) {
    AuthHttpOptions o = Options();
    change(o);
    return !AuthHttpDirectory::Create(&loop_, o).ok();
  };
  EXPECT_TRUE(bad([](AuthHttpOptions& o) { o.servers.clear(); }));
  EXPECT_TRUE(bad([](AuthHttpOptions& o) { o.servers = {"localhost:80"}; }));
  EXPECT_TRUE(bad([](AuthHttpOptions& o) { o.servers = {"127.0.0.1"}; }));
  EXPECT_TRUE(bad([](AuthHttpOptions& o) { o.servers = {"127.0.0.1:0"}; }));
  EXPECT_TRUE(bad([](AuthHttpOptions& o) { o.servers = {"127.0.0.1:65536"}; }));
  EXPECT_TRUE(bad([](AuthHttpOptions& o) { o.servers = {"127.0.0.1:+80"}; }));
  EXPECT_TRUE(bad([](AuthHttpOptions& o) { o.servers = {"::1:80"}; }));
  EXPECT_TRUE(
      bad([](AuthHttpOptions& o) { o.servers = std::vector<std::string>(65, "127.0.0.1:1"); }));
  EXPECT_TRUE(bad([](AuthHttpOptions& o) { o.uri = "auth"; }));
  EXPECT_TRUE(bad([](AuthHttpOptions& o) { o.uri = "/a b"; }));
  EXPECT_TRUE(bad([](AuthHttpOptions& o) { o.uri = "/a\r\nX: y"; }));
  EXPECT_TRUE(bad([](AuthHttpOptions& o) { o.host = "a\r\nb"; }));
  EXPECT_TRUE(bad([](AuthHttpOptions& o) { o.timeout = milliseconds(0); }));
  EXPECT_TRUE(bad([](AuthHttpOptions& o) { o.max_connections = 0; }));
  EXPECT_TRUE(bad([](AuthHttpOptions& o) { o.headers = {{"Bad Name", "x"}}; }));
  EXPECT_TRUE(bad([](AuthHttpOptions& o) { o.headers = {{"X-Key", "a\nb"}}; }));
  EXPECT_FALSE(bad([](AuthHttpOptions& o) { o.servers = {"[::1]:9000", "127.0.0.1:9000"}; }));
}

TEST_F(AuthHttpDirectoryTest, HostHeaderDefaultsToTheFirstAddress) {
  AuthHttpOptions o = Options();
  o.servers = {server_->address(), "[::1]:9"};
  Make(o);
  std::optional<DirectoryAnswer> a;
  auto l = Ask(&a);
  ASSERT_TRUE(RunUntil([&] { return a.has_value(); }));
  ASSERT_EQ(server_->requests(), 1);
  EXPECT_TRUE(absl::StrContains(server_->heads()[0], "\r\nHost: 127.0.0.1\r\n"));
}

}  // namespace
}  // namespace postern
