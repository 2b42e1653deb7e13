// The admin HTTP server (proxy/admin_http.h) over real loopback sockets on
// one libuv loop and its Poller, driven by a plain-socket client in the
// test: routing, 404/405, auth, keep-alive and pipelining, asynchronous
// answers (and clients that leave before them), limits, timeouts, the
// connection cap, malformed requests. Then the request parser on every
// split of its input, and the JSON writer.

#include "proxy/admin_http.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include <chrono>
#include <cstdlib>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "proxy/poller.h"
#include "proxy/utf8.h"

namespace postern {
namespace {

using namespace std::chrono_literals;
using namespace std::string_literals;

constexpr char kToken[] = "s3cr3t-T0ken_with.chars~+/=";

struct Response {
  int status = 0;
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased
  std::string body;
  std::string Header(absl::string_view name) const {
    for (const auto& [n, v] : headers) {
      if (n == name) return v;
    }
    return "";
  }
  bool HasHeader(absl::string_view name) const {
    for (const auto& [n, v] : headers) {
      if (n == name) return true;
    }
    return false;
  }
};

// A client on a plain non-blocking socket; the test pumps it between loop
// turns.
class Client {
 public:
  Client(uint16_t port, bool v6 = false) {
    fd_ = socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int r;
    if (v6) {
      sockaddr_in6 a{};
      a.sin6_family = AF_INET6;
      a.sin6_port = htons(port);
      a.sin6_addr = in6addr_loopback;
      r = connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a));
    } else {
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_port = htons(port);
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      r = connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a));
    }
    connected_ = r == 0;
    fcntl(fd_, F_SETFL, fcntl(fd_, F_GETFL) | O_NONBLOCK);
  }
  ~Client() {
    if (fd_ >= 0) close(fd_);
  }
  bool connected() const { return connected_; }

  void Send(absl::string_view bytes) {
    out_.append(bytes.data(), bytes.size());
    Pump();
  }
  // Writes what the kernel takes, reads what is there.
  void Pump() {
    while (!out_.empty()) {
      const ssize_t n = send(fd_, out_.data(), out_.size(), MSG_NOSIGNAL);
      if (n <= 0) break;
      out_.erase(0, static_cast<size_t>(n));
    }
    char buf[65536];
    for (;;) {
      const ssize_t n = recv(fd_, buf, sizeof(buf), 0);
      if (n > 0) {
        in_.append(buf, static_cast<size_t>(n));
        continue;
      }
      if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) eof_ = true;
      break;
    }
  }
  // One complete response from what was read (`head`: it has no content).
  std::optional<Response> Take(bool head = false) {
    const size_t end = in_.find("\r\n\r\n");
    if (end == std::string::npos) return std::nullopt;
    Response r;
    std::vector<std::string> lines = absl::StrSplit(in_.substr(0, end), "\r\n");
    std::vector<std::string> status = absl::StrSplit(lines[0], absl::MaxSplits(' ', 2));
    if (status.size() < 2 || !absl::SimpleAtoi(status[1], &r.status)) return std::nullopt;
    size_t length = 0;
    for (size_t i = 1; i < lines.size(); ++i) {
      const size_t colon = lines[i].find(':');
      std::string name = absl::AsciiStrToLower(lines[i].substr(0, colon));
      std::string value(absl::StripAsciiWhitespace(lines[i].substr(colon + 1)));
      if (name == "content-length" && !absl::SimpleAtoi(value, &length)) return std::nullopt;
      r.headers.emplace_back(std::move(name), std::move(value));
    }
    if (head || r.status == 100 || r.status == 204) length = 0;
    if (in_.size() < end + 4 + length) return std::nullopt;
    r.body = in_.substr(end + 4, length);
    in_.erase(0, end + 4 + length);
    return r;
  }
  bool eof() const { return eof_; }
  const std::string& unread() const { return in_; }
  void ShutdownWrite() { shutdown(fd_, SHUT_WR); }
  // Closes at once; `reset`: with a RST instead of a FIN.
  void Close(bool reset = false) {
    if (reset) {
      linger lg{1, 0};
      setsockopt(fd_, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    }
    close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
  bool connected_ = false;
  bool eof_ = false;
  std::string out_;
  std::string in_;
};

std::string Get(absl::string_view path, absl::string_view extra = "") {
  return absl::StrCat("GET ", path, " HTTP/1.1\r\nHost: localhost\r\n", extra, "\r\n");
}

std::string Authz() { return absl::StrCat("Authorization: Bearer ", kToken, "\r\n"); }

class AdminHttpTest : public ::testing::Test {
 protected:
  void SetUp() override {
    uv_loop_init(&loop_);
    poller_ = std::make_unique<Poller>(&loop_);
    char dir[] = "/tmp/postern-admin-XXXXXX";
    ASSERT_NE(nullptr, mkdtemp(dir));
    dir_ = dir;
    token_file_ = dir_ + "/token";
    WriteFile(token_file_, absl::StrCat(kToken, "\n"));
  }

  void TearDown() override {
    server_.reset();
    clients_.clear();
    // Lingering closes finish once both ends are closed.
    for (int i = 0; i < 200 && uv_run(&loop_, UV_RUN_NOWAIT) != 0; ++i) {
      std::this_thread::sleep_for(1ms);
    }
    EXPECT_EQ(0u, poller_->watched());
    poller_.reset();
    uv_run(&loop_, UV_RUN_DEFAULT);
    EXPECT_EQ(0, uv_loop_close(&loop_));
    EXPECT_EQ(0u, pool_.in_use());
    std::system(absl::StrCat("rm -rf ", dir_).c_str());
  }

  static void WriteFile(const std::string& path, absl::string_view text) {
    FILE* f = fopen(path.c_str(), "w");
    ASSERT_NE(nullptr, f);
    fwrite(text.data(), 1, text.size(), f);
    fclose(f);
  }

  AdminServerOptions Options() {
    AdminServerOptions o;
    o.address = "127.0.0.1:0";
    o.token_file = token_file_;
    return o;
  }

  void Start(AdminServerOptions o) {
    auto s = AdminServer::Create(*poller_, pool_, std::move(o));
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = std::move(*s);
    ASSERT_TRUE(server_
                    ->Handle("GET", "/hello",
                             [](const AdminRequest& r, AdminResponder resp) {
                               std::string body = "hello";
                               if (const std::string* who = r.Param("who"))
                                 absl::StrAppend(&body, " ", *who);
                               resp.Respond(AdminResponse::Text(200, body));
                             })
                    .ok());
    ASSERT_TRUE(server_
                    ->Handle("GET", "/healthz",
                             [](const AdminRequest&, AdminResponder resp) {
                               resp.Respond(AdminResponse::Text(200, "ok\n"));
                             })
                    .ok());
    ASSERT_TRUE(server_
                    ->Handle("POST", "/echo",
                             [](const AdminRequest& r, AdminResponder resp) {
                               resp.Respond(AdminResponse::Json(200, r.body));
                             })
                    .ok());
    ASSERT_TRUE(server_
                    ->Handle("DELETE", "/echo",
                             [](const AdminRequest&, AdminResponder resp) {
                               resp.Respond(AdminResponse::Text(204, ""));
                             })
                    .ok());
    ASSERT_TRUE(server_
                    ->Handle("GET", "/later",
                             [this](const AdminRequest& r, AdminResponder resp) {
                               later_.push_back(std::move(resp));
                               later_targets_.push_back(r.target);
                             })
                    .ok());
    ASSERT_TRUE(server_->Handle("GET", "/drop", [](const AdminRequest&, AdminResponder) {}).ok());
  }

  Client& Connect() {
    clients_.push_back(std::make_unique<Client>(server_->port()));
    EXPECT_TRUE(clients_.back()->connected());
    return *clients_.back();
  }

  // Turns the loop (without blocking) and pumps every client until `done`.
  template <typename F>
  bool RunUntil(F done, std::chrono::milliseconds limit = 5000ms) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (!done()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      uv_run(&loop_, UV_RUN_NOWAIT);
      for (auto& c : clients_) c->Pump();
      std::this_thread::sleep_for(200us);
    }
    return true;
  }

  Response Roundtrip(Client& c, absl::string_view request, bool head = false) {
    c.Send(request);
    std::optional<Response> r;
    EXPECT_TRUE(RunUntil([&] { return (r = c.Take(head)).has_value(); })) << c.unread();
    return r.value_or(Response());
  }

  uv_loop_t loop_;
  std::unique_ptr<Poller> poller_;
  BufferPool pool_{4096};
  std::string dir_;
  std::string token_file_;
  std::unique_ptr<AdminServer> server_;
  std::vector<std::unique_ptr<Client>> clients_;
  std::vector<AdminResponder> later_;
  std::vector<std::string> later_targets_;
};

TEST_F(AdminHttpTest, RoutesAndAnswers) {
  Start(Options());
  Client& c = Connect();
  Response r = Roundtrip(c, Get("/hello?who=a%40b+c", Authz()));
  EXPECT_EQ(200, r.status);
  EXPECT_EQ("hello a@b c", r.body);
  EXPECT_EQ("text/plain; charset=utf-8", r.Header("content-type"));
  EXPECT_EQ("11", r.Header("content-length"));
  EXPECT_EQ("no-store", r.Header("cache-control"));
  EXPECT_TRUE(absl::EndsWith(r.Header("date"), " GMT")) << r.Header("date");
  EXPECT_FALSE(r.HasHeader("connection"));

  r = Roundtrip(c, Get("/nothing-here", Authz()));
  EXPECT_EQ(404, r.status);
  EXPECT_EQ("application/json", r.Header("content-type"));
  EXPECT_EQ("{\"error\":\"no such path\"}\n", r.body);

  r = Roundtrip(c, "PUT /echo HTTP/1.1\r\nHost: x\r\n" + Authz() + "Content-Length: 0\r\n\r\n");
  EXPECT_EQ(405, r.status);
  EXPECT_EQ("DELETE, POST", r.Header("allow"));
  r = Roundtrip(c, "POST /hello HTTP/1.1\r\nHost: x\r\n" + Authz() + "Content-Length: 0\r\n\r\n");
  EXPECT_EQ(405, r.status);
  EXPECT_EQ("GET, HEAD", r.Header("allow"));

  // HEAD on a GET route: the fields, no content.
  r = Roundtrip(c, "HEAD /hello HTTP/1.1\r\nHost: x\r\n" + Authz() + "\r\n", /*head=*/true);
  EXPECT_EQ(200, r.status);
  EXPECT_EQ("5", r.Header("content-length"));
  // 204: neither content nor Content-Length.
  r = Roundtrip(c, "DELETE /echo HTTP/1.1\r\nHost: x\r\n" + Authz() + "\r\n");
  EXPECT_EQ(204, r.status);
  EXPECT_FALSE(r.HasHeader("content-length"));

  // The path is compared as sent: no decoding, no dot segments.
  EXPECT_EQ(404, Roundtrip(c, Get("/hello/", Authz())).status);
  EXPECT_EQ(404, Roundtrip(c, Get("/%68ello", Authz())).status);
  EXPECT_EQ(404, Roundtrip(c, Get("/x/../hello", Authz())).status);
  // Absolute-form (RFC 9112 section 3.2.2).
  r = Roundtrip(c, Get("http://localhost:9199/hello?who=abs", Authz()));
  EXPECT_EQ(200, r.status);
  EXPECT_EQ("hello abs", r.body);
  EXPECT_EQ(0u, c.unread().size());
  EXPECT_FALSE(c.eof());
}

TEST_F(AdminHttpTest, PostBodies) {
  Start(Options());
  Client& c = Connect();
  Response r = Roundtrip(c, "POST /echo HTTP/1.1\r\nHost: x\r\n" + Authz() +
                                "Content-Length: 13\r\n\r\n{\"kick\":\"a\"}\n");
  EXPECT_EQ(200, r.status);
  EXPECT_EQ("{\"kick\":\"a\"}\n", r.body);
  r = Roundtrip(c,
                "POST /echo HTTP/1.1\r\nHost: x\r\n" + Authz() +
                    "Transfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n3;ext=1\r\nefg\r\n0\r\n\r\n");
  EXPECT_EQ(200, r.status);
  EXPECT_EQ("abcdefg", r.body);
  // Expect: 100-continue (RFC 9110 section 10.1.1): the interim answer
  // comes before the content is sent.
  c.Send("POST /echo HTTP/1.1\r\nHost: x\r\n" + Authz() +
         "Expect: 100-continue\r\nContent-Length: 2\r\n\r\n");
  std::optional<Response> interim;
  ASSERT_TRUE(RunUntil([&] { return (interim = c.Take()).has_value(); }));
  EXPECT_EQ(100, interim->status);
  r = Roundtrip(c, "ok");
  EXPECT_EQ(200, r.status);
  EXPECT_EQ("ok", r.body);
}

TEST_F(AdminHttpTest, BearerToken) {
  Start(Options());
  EXPECT_TRUE(server_->requires_token());
  Client& c = Connect();
  Response r = Roundtrip(c, Get("/hello"));
  EXPECT_EQ(401, r.status);
  EXPECT_EQ("Bearer realm=\"postern\"", r.Header("www-authenticate"));
  r = Roundtrip(c, Get("/hello", "Authorization: Bearer wrong\r\n"));
  EXPECT_EQ(401, r.status);
  EXPECT_EQ("Bearer realm=\"postern\", error=\"invalid_token\"", r.Header("www-authenticate"));
  // A prefix of the token, the token with more after it, another scheme.
  EXPECT_EQ(401, Roundtrip(c, Get("/hello", "Authorization: Bearer s3cr3t\r\n")).status);
  EXPECT_EQ(
      401,
      Roundtrip(c, Get("/hello", absl::StrCat("Authorization: Bearer ", kToken, "x\r\n"))).status);
  EXPECT_EQ(
      401,
      Roundtrip(c, Get("/hello", absl::StrCat("Authorization: Basic ", kToken, "\r\n"))).status);
  EXPECT_EQ(
      401,
      Roundtrip(c, Get("/hello", absl::StrCat("Authorization: Bearer", kToken, "\r\n"))).status);
  // Two Authorization fields: neither counts.
  EXPECT_EQ(401, Roundtrip(c, Get("/hello", Authz() + Authz())).status);
  // Unknown paths need the token too: no probing of what exists.
  EXPECT_EQ(401, Roundtrip(c, Get("/no-such-path")).status);
  // Right token: the scheme is case-insensitive, spaces around are fine.
  EXPECT_EQ(200, Roundtrip(c, Get("/hello", Authz())).status);
  EXPECT_EQ(200,
            Roundtrip(c, Get("/hello", absl::StrCat("authorization: bEaReR   ", kToken, "  \r\n")))
                .status);
  // Health paths are open (and only when routed do they answer 200).
  EXPECT_EQ(200, Roundtrip(c, Get("/healthz")).status);
  EXPECT_EQ(404, Roundtrip(c, Get("/readyz")).status);
  // The connection survived every refusal.
  EXPECT_FALSE(c.eof());
}

TEST_F(AdminHttpTest, KeepAliveAndPipelining) {
  Start(Options());
  Client& c = Connect();
  for (int i = 0; i < 3; ++i) {
    Response r = Roundtrip(c, Get(absl::StrCat("/hello?who=", i), Authz()));
    EXPECT_EQ(absl::StrCat("hello ", i), r.body);
  }
  // Five requests in one write, one of them asynchronous: answered in order.
  c.Send(Get("/hello?who=p1", Authz()) + Get("/later?n=1", Authz()) +
         Get("/hello?who=p3", Authz()) + "POST /echo HTTP/1.1\r\nHost: x\r\n" + Authz() +
         "Content-Length: 2\r\n\r\np4" + Get("/hello?who=p5", Authz()));
  std::optional<Response> r;
  ASSERT_TRUE(RunUntil([&] { return (r = c.Take()).has_value(); }));
  EXPECT_EQ("hello p1", r->body);
  ASSERT_TRUE(RunUntil([&] { return later_.size() == 1; }));
  // Nothing behind the asynchronous one is answered before it.
  for (int i = 0; i < 20; ++i) uv_run(&loop_, UV_RUN_NOWAIT);
  c.Pump();
  EXPECT_FALSE(c.Take().has_value());
  EXPECT_TRUE(later_[0].waiting());
  EXPECT_TRUE(later_[0].Respond(AdminResponse::Text(200, "later 1")));
  EXPECT_FALSE(later_[0].waiting());
  EXPECT_FALSE(later_[0].Respond(AdminResponse::Text(200, "twice")));
  for (const char* want : {"later 1", "hello p3", "p4", "hello p5"}) {
    ASSERT_TRUE(RunUntil([&] { return (r = c.Take()).has_value(); })) << want;
    EXPECT_EQ(want, r->body);
  }
  EXPECT_FALSE(c.eof());
}

TEST_F(AdminHttpTest, ConnectionCloseAndHttp10) {
  Start(Options());
  Client& a = Connect();
  Response r = Roundtrip(a, Get("/hello", Authz() + "Connection: close\r\n"));
  EXPECT_EQ(200, r.status);
  EXPECT_EQ("close", r.Header("connection"));
  EXPECT_TRUE(RunUntil([&] { return a.eof(); }));

  Client& b = Connect();
  r = Roundtrip(b, "GET /hello HTTP/1.0\r\n" + Authz() + "Connection: keep-alive\r\n\r\n");
  EXPECT_EQ(200, r.status);
  EXPECT_EQ("keep-alive", r.Header("connection"));
  r = Roundtrip(b, "GET /hello HTTP/1.0\r\n" + Authz() + "\r\n");  // no Host needed in 1.0
  EXPECT_EQ(200, r.status);
  EXPECT_EQ("close", r.Header("connection"));
  EXPECT_TRUE(RunUntil([&] { return b.eof(); }));
  EXPECT_TRUE(RunUntil([&] { return server_->connection_count() == 0; }));
}

TEST_F(AdminHttpTest, AsynchronousAnswerOnALaterTurn) {
  Start(Options());
  Client& c = Connect();
  c.Send(Get("/later", Authz()));
  ASSERT_TRUE(RunUntil([&] { return later_.size() == 1; }));
  // A few turns later, from a timer on the same loop (as an answer gathered
  // from the workers comes back).
  Timer t(&loop_);
  t.Start(20ms, [&] { later_[0].Respond(AdminResponse::Json(200, "{\"sessions\":[]}")); });
  std::optional<Response> r;
  ASSERT_TRUE(RunUntil([&] { return (r = c.Take()).has_value(); }));
  EXPECT_EQ(200, r->status);
  EXPECT_EQ("{\"sessions\":[]}", r->body);
  EXPECT_EQ("application/json", r->Header("content-type"));
  // The connection goes on.
  EXPECT_EQ(200, Roundtrip(c, Get("/hello", Authz())).status);
}

TEST_F(AdminHttpTest, ClientGoneBeforeTheAnswer) {
  Start(Options());
  for (bool reset : {false, true}) {
    later_.clear();
    Client& c = Connect();
    c.Send(Get("/later", Authz()));
    ASSERT_TRUE(RunUntil([&] { return later_.size() == 1; }));
    ASSERT_EQ(1u, server_->connection_count());
    c.Close(reset);
    ASSERT_TRUE(RunUntil([&] { return server_->connection_count() == 0; }));
    // Let the connection be freed, then answer: nobody is there.
    for (int i = 0; i < 5; ++i) uv_run(&loop_, UV_RUN_NOWAIT);
    EXPECT_FALSE(later_[0].waiting());
    EXPECT_FALSE(later_[0].Respond(AdminResponse::Text(200, "too late")));
  }
  // A Responder dropped after its connection is gone: nothing happens.
  Client& c = Connect();
  c.Send(Get("/later", Authz()));
  ASSERT_TRUE(RunUntil([&] { return later_.size() == 1; }));
  c.Close();
  ASSERT_TRUE(RunUntil([&] { return server_->connection_count() == 0; }));
  later_.clear();
}

TEST_F(AdminHttpTest, ServerDestroyedBeforeTheAnswer) {
  Start(Options());
  Client& c = Connect();
  c.Send(Get("/later", Authz()));
  ASSERT_TRUE(RunUntil([&] { return later_.size() == 1; }));
  server_.reset();
  EXPECT_FALSE(later_[0].waiting());
  EXPECT_FALSE(later_[0].Respond(AdminResponse::Text(200, "too late")));
  EXPECT_TRUE(RunUntil([&] { return c.eof(); }));
}

TEST_F(AdminHttpTest, DroppedResponderIs500) {
  Start(Options());
  Client& c = Connect();
  Response r = Roundtrip(c, Get("/drop", Authz()));
  EXPECT_EQ(500, r.status);
  // Destroyed later, unanswered: also 500, and the connection goes on.
  c.Send(Get("/later", Authz()));
  ASSERT_TRUE(RunUntil([&] { return later_.size() == 1; }));
  later_.clear();
  std::optional<Response> late;
  ASSERT_TRUE(RunUntil([&] { return (late = c.Take()).has_value(); }));
  EXPECT_EQ(500, late->status);
  EXPECT_EQ(200, Roundtrip(c, Get("/hello", Authz())).status);
}

TEST_F(AdminHttpTest, HandlerTimeout) {
  AdminServerOptions o = Options();
  o.handler_timeout = 50ms;
  Start(o);
  Client& c = Connect();
  Response r = Roundtrip(c, Get("/later", Authz()));
  EXPECT_EQ(503, r.status);
  EXPECT_EQ("close", r.Header("connection"));
  ASSERT_EQ(1u, later_.size());
  EXPECT_FALSE(later_[0].waiting());
  EXPECT_FALSE(later_[0].Respond(AdminResponse::Text(200, "too late")));
  EXPECT_TRUE(RunUntil([&] { return c.eof(); }));
}

TEST_F(AdminHttpTest, Limits) {
  Start(Options());
  {
    Client& c = Connect();  // fields over 16 KiB
    Response r =
        Roundtrip(c, Get("/hello", Authz() + "X-Big: " + std::string(17000, 'a') + "\r\n"));
    EXPECT_EQ(431, r.status);
    EXPECT_EQ("close", r.Header("connection"));
    EXPECT_TRUE(RunUntil([&] { return c.eof(); }));
  }
  {
    Client& c = Connect();  // too many fields
    std::string many;
    for (int i = 0; i < 70; ++i) absl::StrAppend(&many, "X-F", i, ": v\r\n");
    EXPECT_EQ(431, Roundtrip(c, Get("/hello", Authz() + many)).status);
  }
  {
    Client& c = Connect();  // a target over 4 KiB
    EXPECT_EQ(414, Roundtrip(c, Get("/hello?x=" + std::string(5000, 'a'), Authz())).status);
  }
  {
    // Content-Length over 64 KiB: refused from the fields alone, before
    // any content (and no "100 Continue").
    Client& c = Connect();
    Response r = Roundtrip(c, "POST /echo HTTP/1.1\r\nHost: x\r\n" + Authz() +
                                  "Expect: 100-continue\r\nContent-Length: 65537\r\n\r\n");
    EXPECT_EQ(413, r.status);
    EXPECT_TRUE(RunUntil([&] { return c.eof(); }));
  }
  {
    // A chunked body that grows past 64 KiB; the client is still sending
    // when the answer comes, and gets it whole (the lingering close).
    Client& c = Connect();
    std::string req =
        "POST /echo HTTP/1.1\r\nHost: x\r\n" + Authz() + "Transfer-Encoding: chunked\r\n\r\n";
    for (int i = 0; i < 80; ++i) req += "400\r\n" + std::string(1024, 'z') + "\r\n";
    EXPECT_EQ(413, Roundtrip(c, req).status);
    EXPECT_TRUE(RunUntil([&] { return c.eof(); }));
  }
  {
    // Exactly 64 KiB is fine.
    Client& c = Connect();
    Response r = Roundtrip(c, "POST /echo HTTP/1.1\r\nHost: x\r\n" + Authz() +
                                  "Content-Length: 65536\r\n\r\n" + std::string(65536, 'q'));
    EXPECT_EQ(200, r.status);
    EXPECT_EQ(65536u, r.body.size());
  }
}

TEST_F(AdminHttpTest, MalformedRequests) {
  Start(Options());
  struct Case {
    std::string request;
    int status;
  };
  const std::vector<Case> cases = {
      {"GARBAGE\r\n\r\n", 400},
      {"GET /hello HTTP/1.1\r\n\r\n", 400},                        // no Host
      {"GET /hello HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},  // two
      {"GET /hello HTTP/2.0\r\nHost: a\r\n\r\n", 505},             //
      {"GET /hello?x=%zz HTTP/1.1\r\nHost: a\r\n\r\n", 400},       // bad escape
      {"GET /hello?x=%4 HTTP/1.1\r\nHost: a\r\n\r\n", 400},        //
      {"GET /hello HTTP/1.1\r\nHost: a\r\nExpect: magic\r\n\r\n", 417},
      {"GET /hello HTTP/1.1\r\nHost: a\r\nBad Name: v\r\n\r\n", 400},  //
      {"GET /hello HTTP/1.1\r\nHost: a\r\nX: a\x01\r\n\r\n", 400},
      {"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nab", 400},
      {"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n",
       400},
      {"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 501},
      {"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400},  // a TLS ClientHello
  };
  for (const Case& k : cases) {
    Client& c = Connect();
    Response r = Roundtrip(c, k.request);
    EXPECT_EQ(k.status, r.status) << absl::CEscape(k.request);
    EXPECT_EQ("close", r.Header("connection"));
    EXPECT_EQ("application/json", r.Header("content-type"));
    EXPECT_TRUE(RunUntil([&] { return c.eof(); }));
  }
  // A request without a token that is also malformed: 400 first (nothing
  // was routed).
  EXPECT_TRUE(RunUntil([&] { return server_->connection_count() == 0; }));
}

TEST_F(AdminHttpTest, ConnectionCap) {
  AdminServerOptions o = Options();
  o.max_connections = 2;
  Start(o);
  Client& a = Connect();
  Client& b = Connect();
  ASSERT_TRUE(RunUntil([&] { return server_->connection_count() == 2; }));
  Client& c = Connect();
  std::optional<Response> r;
  ASSERT_TRUE(RunUntil([&] { return (r = c.Take()).has_value(); }));
  EXPECT_EQ(503, r->status);
  EXPECT_TRUE(RunUntil([&] { return c.eof(); }));
  EXPECT_EQ(1u, server_->refused_count());
  // The two admitted ones still work; once one leaves, a new one is taken.
  EXPECT_EQ(200, Roundtrip(a, Get("/hello", Authz())).status);
  EXPECT_EQ(200, Roundtrip(b, Get("/hello", Authz())).status);
  a.Close();
  ASSERT_TRUE(RunUntil([&] { return server_->connection_count() == 1; }));
  Client& d = Connect();
  EXPECT_EQ(200, Roundtrip(d, Get("/hello", Authz())).status);
}

TEST_F(AdminHttpTest, IdleAndRequestTimeouts) {
  AdminServerOptions o = Options();
  o.idle_timeout = 100ms;
  o.request_timeout = 150ms;
  Start(o);
  Client& idle = Connect();
  // t0 before the request: the idle timer starts after the server has read
  // it, in loop time, which libuv takes after epoll_wait returns, so it
  // cannot fire before t0 + 100 ms, less the loop clock's coarseness (a
  // CLOCK_MONOTONIC_COARSE tick and a millisecond's truncation). Taken after
  // the answer, the wait measured was once 87 ms.
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(200, Roundtrip(idle, Get("/hello", Authz())).status);
  ASSERT_TRUE(RunUntil([&] { return idle.eof(); }));
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 90ms);
  EXPECT_TRUE(idle.unread().empty());  // closed quietly

  // A slow client: a byte every 50 ms never ends its request, and the
  // request deadline does not move with each byte.
  Client& slow = Connect();
  const std::string req = Get("/hello", Authz());
  size_t sent = 0;
  Timer drip(&loop_);
  std::function<void()> step = [&] {
    if (sent < req.size() - 1) slow.Send(req.substr(sent++, 1));
    drip.Start(50ms, step);
  };
  step();
  std::optional<Response> r;
  ASSERT_TRUE(RunUntil([&] { return (r = slow.Take()).has_value(); }));
  EXPECT_EQ(408, r->status);
  EXPECT_LT(sent, 10u);
  EXPECT_TRUE(RunUntil([&] { return slow.eof(); }));
  drip.Stop();
}

TEST_F(AdminHttpTest, HalfCloseAfterARequestStillGetsTheAnswer) {
  Start(Options());
  Client& c = Connect();
  c.Send(Get("/hello", Authz()));
  c.ShutdownWrite();
  std::optional<Response> r;
  ASSERT_TRUE(RunUntil([&] { return (r = c.Take()).has_value(); }));
  EXPECT_EQ(200, r->status);
  EXPECT_TRUE(RunUntil([&] { return c.eof(); }));
}

TEST_F(AdminHttpTest, HandlerFieldsWithLineBreaksAreLeftOut) {
  Start(Options());
  ASSERT_TRUE(server_
                  ->Handle("GET", "/fields",
                           [](const AdminRequest&, AdminResponder resp) {
                             AdminResponse r = AdminResponse::Text(200, "x");
                             r.headers.emplace_back("X-Good", "yes");
                             r.headers.emplace_back("X-Bad", "a\r\nSet-Cookie: evil=1");
                             r.headers.emplace_back("Bad Name", "v");
                             resp.Respond(std::move(r));
                           })
                  .ok());
  Client& c = Connect();
  Response r = Roundtrip(c, Get("/fields", Authz()));
  EXPECT_EQ("yes", r.Header("x-good"));
  EXPECT_FALSE(r.HasHeader("x-bad"));
  EXPECT_FALSE(r.HasHeader("set-cookie"));
}

TEST_F(AdminHttpTest, HandleRejectsBadRoutes) {
  Start(Options());
  auto h = [](const AdminRequest&, AdminResponder) {};
  EXPECT_EQ(absl::StatusCode::kAlreadyExists, server_->Handle("GET", "/hello", h).code());
  EXPECT_EQ(absl::StatusCode::kInvalidArgument, server_->Handle("", "/x", h).code());
  EXPECT_EQ(absl::StatusCode::kInvalidArgument, server_->Handle("GET", "x", h).code());
  EXPECT_EQ(absl::StatusCode::kInvalidArgument, server_->Handle("G T", "/x", h).code());
  EXPECT_EQ(absl::StatusCode::kInvalidArgument, server_->Handle("GET", "/x", nullptr).code());
}

TEST_F(AdminHttpTest, CreateChecksTokenAndAddress) {
  auto make = [&](AdminServerOptions o) { return AdminServer::Create(*poller_, pool_, o); };
  AdminServerOptions o = Options();
  o.token_file = dir_ + "/missing";
  EXPECT_EQ(absl::StatusCode::kFailedPrecondition, make(o).status().code());
  WriteFile(dir_ + "/empty", "\r\n");
  o.token_file = dir_ + "/empty";
  EXPECT_EQ(absl::StatusCode::kFailedPrecondition, make(o).status().code());
  WriteFile(dir_ + "/spaces", "two words\n");
  o.token_file = dir_ + "/spaces";
  EXPECT_EQ(absl::StatusCode::kFailedPrecondition, make(o).status().code());
  WriteFile(dir_ + "/lines", "one\ntwo\n");
  o.token_file = dir_ + "/lines";
  EXPECT_EQ(absl::StatusCode::kFailedPrecondition, make(o).status().code());
  // No token: loopback only.
  o.token_file.clear();
  o.address = "0.0.0.0:0";
  EXPECT_EQ(absl::StatusCode::kFailedPrecondition, make(o).status().code());
  o.address = "[::]:0";
  EXPECT_EQ(absl::StatusCode::kFailedPrecondition, make(o).status().code());
  o.address = "10.1.2.3:0";
  EXPECT_EQ(absl::StatusCode::kFailedPrecondition, make(o).status().code());
  for (const char* bad : {"localhost:9199", "127.0.0.1", "127.0.0.1:99999", "127.0.0.1:x", "[::1]",
                          "::1:80", "[::1:80", ""}) {
    o.address = bad;
    EXPECT_EQ(absl::StatusCode::kInvalidArgument, make(o).status().code()) << bad;
  }
  // With a token any address may be used.
  o = Options();
  o.address = "0.0.0.0:0";
  EXPECT_TRUE(make(o).ok());
  // Two on one port: the second cannot bind.
  o = Options();
  auto first = make(o);
  ASSERT_TRUE(first.ok());
  o.address = absl::StrCat("127.0.0.1:", (*first)->port());
  EXPECT_EQ(absl::StatusCode::kUnavailable, make(o).status().code());
}

TEST_F(AdminHttpTest, NoTokenOnLoopbackAndIpv6) {
  AdminServerOptions o = Options();
  o.token_file.clear();
  o.address = "[::1]:0";
  auto s = AdminServer::Create(*poller_, pool_, o);
  if (!s.ok()) GTEST_SKIP() << "no IPv6 loopback here: " << s.status();
  server_ = std::move(*s);
  EXPECT_FALSE(server_->requires_token());
  ASSERT_TRUE(server_
                  ->Handle("GET", "/hello",
                           [](const AdminRequest& r, AdminResponder resp) {
                             resp.Respond(AdminResponse::Text(200, r.peer));
                           })
                  .ok());
  clients_.push_back(std::make_unique<Client>(server_->port(), /*v6=*/true));
  ASSERT_TRUE(clients_.back()->connected());
  Response r = Roundtrip(*clients_.back(), Get("/hello"));
  EXPECT_EQ(200, r.status);
  EXPECT_TRUE(absl::StartsWith(r.body, "[::1]:")) << r.body;
}

// --- the parser alone ---------------------------------------------------------------

AdminRequestParser::Result ParseInPieces(absl::string_view in, size_t piece, AdminRequestParser& p,
                                         size_t* used) {
  AdminRequestParser::Result r = AdminRequestParser::Result::kNeedMore;
  size_t pos = 0;
  while (pos < in.size()) {
    const size_t n = std::min(piece, in.size() - pos);
    size_t consumed = 0;
    r = p.Feed(in.substr(pos, n), &consumed);
    pos += consumed;
    if (r != AdminRequestParser::Result::kNeedMore) break;
  }
  *used = pos;
  return r;
}

TEST(AdminRequestParserTest, EverySplitGivesTheSameRequest) {
  const std::string req =
      "POST /api/v1/kick?user=alice%40example.org&dry+run=1&flag HTTP/1.1\r\n"
      "Host: 127.0.0.1:9199\r\n"
      "Authorization:   Bearer abc  \r\n"
      "X-Empty:\r\n"
      "Transfer-Encoding: chunked\r\n"
      "\r\n"
      "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
      "GET /next HTTP/1.1\r\n";
  for (size_t piece = 1; piece <= req.size(); ++piece) {
    AdminRequestParser p;
    size_t used = 0;
    ASSERT_EQ(AdminRequestParser::Result::kDone, ParseInPieces(req, piece, p, &used)) << piece;
    EXPECT_EQ(req.find("GET /next"), used) << piece;
    const AdminRequest& r = p.request();
    EXPECT_EQ("POST", r.method);
    EXPECT_EQ("/api/v1/kick", r.path);
    EXPECT_EQ("user=alice%40example.org&dry+run=1&flag", r.query);
    ASSERT_EQ(3u, r.params.size());
    EXPECT_EQ("alice@example.org", *r.Param("user"));
    EXPECT_EQ("1", *r.Param("dry run"));
    EXPECT_EQ("", *r.Param("flag"));
    EXPECT_EQ(nullptr, r.Param("nope"));
    EXPECT_EQ("Bearer abc", *r.Header("authorization"));
    EXPECT_EQ("", *r.Header("x-empty"));
    EXPECT_EQ("hello world", r.body);
    EXPECT_TRUE(r.keep_alive);
    EXPECT_EQ(1, r.version_minor);
    // Done repeats without consuming; Reset takes the next request.
    size_t consumed = 9;
    EXPECT_EQ(AdminRequestParser::Result::kDone, p.Feed("x", &consumed));
    EXPECT_EQ(0u, consumed);
    p.Reset();
    EXPECT_EQ(AdminRequestParser::Result::kNeedMore,
              ParseInPieces(absl::string_view(req).substr(used), piece, p, &consumed));
    EXPECT_TRUE(p.started());
    EXPECT_FALSE(p.headers_complete());
  }
}

TEST(AdminRequestParserTest, EmptyLinesBeforeARequestAreSkipped) {
  AdminRequestParser p;
  size_t used = 0;
  EXPECT_EQ(AdminRequestParser::Result::kNeedMore, ParseInPieces("\r\n\r\n", 1, p, &used));
  EXPECT_FALSE(p.started());
  EXPECT_EQ(AdminRequestParser::Result::kDone,
            ParseInPieces("GET / HTTP/1.1\r\nHost: x\r\n\r\n", 64, p, &used));
}

TEST(AdminRequestParserTest, ErrorStatuses) {
  struct Case {
    std::string in;
    int status;
  };
  AdminHttpLimits small;
  small.max_target = 16;
  small.max_header_bytes = 200;
  small.max_headers = 3;
  small.max_body = 10;
  const std::vector<Case> cases = {
      {"GET /aaaaaaaaaaaaaaaaaaaa HTTP/1.1\r\n", 414},
      {"GET / HTTP/1.1\r\nX: " + std::string(300, 'v'), 431},
      {"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n", 431},
      {"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n", 413},
      {"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nb\r\n", 413},
      {"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nHost: x\r\nX : a\r\n\r\n", 400},  // RFC 9112 section 5.1
      {"GET / HTTP/1.1\r\nHost: x\r\nX: a\0b\r\n\r\n"s, 400},
      {"GET / HTTP/3.1\r\nHost: x\r\n\r\n", 505},
      {"GET / HTTP/1.2\r\nHost: x\r\n\r\n", 505},
      {"GET / FTP/1.1\r\n", 400},
  };
  for (const Case& k : cases) {
    for (size_t piece : {size_t{1}, size_t{7}, k.in.size()}) {
      AdminRequestParser p(small);
      size_t used = 0;
      EXPECT_EQ(AdminRequestParser::Result::kError, ParseInPieces(k.in, piece, p, &used))
          << absl::CEscape(k.in) << " piece " << piece;
      EXPECT_EQ(k.status, p.error_status()) << absl::CEscape(k.in) << ": " << p.error();
      EXPECT_FALSE(p.error().empty());
    }
  }
}

// RFC 9112 section 5.2: an obs-fold may be replaced with spaces; no CR or
// LF reaches a value.
TEST(AdminRequestParserTest, ObsFoldBecomesSpace) {
  AdminRequestParser p;
  size_t used = 0;
  ASSERT_EQ(AdminRequestParser::Result::kDone,
            ParseInPieces("GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n", 64, p, &used));
  const std::string* v = p.request().Header("x");
  ASSERT_NE(nullptr, v);
  EXPECT_EQ(std::string::npos, v->find_first_of("\r\n")) << absl::CEscape(*v);
  EXPECT_TRUE(absl::StartsWith(*v, "a") && absl::EndsWith(*v, "b")) << absl::CEscape(*v);
}

// Trailer fields after a chunked body are read (and bounded) but dropped:
// a trailer cannot add a second Host, or an Authorization.
TEST(AdminRequestParserTest, TrailersAreDropped) {
  const std::string req =
      "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
      "3\r\nabc\r\n0\r\nHost: evil\r\nAuthorization: Bearer x\r\n\r\n";
  for (size_t piece : {size_t{1}, size_t{5}, req.size()}) {
    AdminRequestParser p;
    size_t used = 0;
    ASSERT_EQ(AdminRequestParser::Result::kDone, ParseInPieces(req, piece, p, &used));
    EXPECT_EQ(req.size(), used);
    ASSERT_EQ(2u, p.request().headers.size());
    EXPECT_EQ("a", *p.request().Header("host"));
    EXPECT_EQ(nullptr, p.request().Header("authorization"));
    EXPECT_EQ("abc", p.request().body);
  }
  AdminHttpLimits small;
  small.max_headers = 3;
  AdminRequestParser p(small);
  size_t used = 0;
  EXPECT_EQ(AdminRequestParser::Result::kError, ParseInPieces(req, req.size(), p, &used));
  EXPECT_EQ(431, p.error_status());  // two fields and two trailer fields
}

TEST(AdminRequestParserTest, QueryDecoding) {
  std::vector<std::pair<std::string, std::string>> q;
  ASSERT_TRUE(ParseAdminQuery("a=1&b=%2B%20x+y&&c&=v&d=%00%ff", &q));
  ASSERT_EQ(5u, q.size());
  EXPECT_EQ(std::make_pair(std::string("a"), std::string("1")), q[0]);
  EXPECT_EQ("+ x y", q[1].second);
  EXPECT_EQ(std::make_pair(std::string("c"), std::string()), q[2]);
  EXPECT_EQ(std::make_pair(std::string(), std::string("v")), q[3]);
  EXPECT_EQ(std::string("\0\xff", 2), q[4].second);
  EXPECT_FALSE(ParseAdminQuery("a=%", &q));
  EXPECT_FALSE(ParseAdminQuery("a=%2", &q));
  EXPECT_FALSE(ParseAdminQuery("a=%g0", &q));
  EXPECT_TRUE(ParseAdminQuery("", &q));
  EXPECT_TRUE(q.empty());
}

// --- JSON ---------------------------------------------------------------------------

std::string JsonString(absl::string_view s) {
  std::string out;
  AppendJsonString(&out, s);
  return out;
}

TEST(JsonTest, Escaping) {
  EXPECT_EQ("\"plain\"", JsonString("plain"));
  EXPECT_EQ(R"("q\"b\\s/")", JsonString("q\"b\\s/"));
  EXPECT_EQ(R"("\n\r\t\u0000\u0001\u001f\u007f ")", JsonString("\n\r\t\0\x01\x1f\x7f "s));
  EXPECT_EQ("\"caf\xc3\xa9 \xf0\x9f\x98\x80\"", JsonString("caf\xc3\xa9 \xf0\x9f\x98\x80"));
  // Invalid UTF-8: one U+FFFD per maximal subpart.
  EXPECT_EQ("\"a\xef\xbf\xbd!\"", JsonString("a\xff!"));
  EXPECT_EQ("\"\xef\xbf\xbd\xef\xbf\xbd\"", JsonString("\xc0\xaf"));
  EXPECT_EQ("\"\xef\xbf\xbd\"", JsonString("\xe2\x82"));
  EXPECT_EQ(R"("\u2028\u2029")", JsonString("\xe2\x80\xa8\xe2\x80\xa9"));
  // Every byte value, alone: valid JSON text (checked by hand: quotes
  // balanced, no raw control byte, valid UTF-8).
  for (int b = 0; b < 256; ++b) {
    const std::string s = JsonString(std::string(1, static_cast<char>(b)));
    for (char c : s) EXPECT_FALSE(static_cast<unsigned char>(c) < 0x20) << b;
    EXPECT_TRUE(IsValidUtf8(s)) << b;
  }
}

TEST(JsonTest, Writer) {
  JsonWriter j;
  j.BeginObject()
      .Key("sessions")
      .BeginArray()
      .BeginObject()
      .Key("id")
      .String("0xAb")
      .Key("user")
      .String("al\"ice")
      .Key("bytes")
      .Uint(18446744073709551615ull)
      .Key("delta")
      .Int(-5)
      .Key("tls")
      .Bool(true)
      .Key("backend")
      .Null()
      .EndObject()
      .BeginObject()
      .EndObject()
      .EndArray()
      .Key("empty")
      .BeginArray()
      .EndArray()
      .Key("ratio")
      .Double(0.5)
      .Key("inf")
      .Double(1.0 / 0.0)
      .Key("nums")
      .BeginArray()
      .Int(1)
      .Int(2)
      .Int(3)
      .EndArray()
      .EndObject();
  EXPECT_EQ(R"({"sessions":[{"id":"0xAb","user":"al\"ice","bytes":18446744073709551615,"delta":-5,)"
            R"("tls":true,"backend":null},{}],"empty":[],"ratio":0.5,"inf":null,"nums":[1,2,3]})",
            j.str());
  const std::string copy = j.str();
  EXPECT_EQ(copy, std::move(j).Take());
  JsonWriter top;
  top.String("just a string");
  EXPECT_EQ("\"just a string\"", top.str());
  EXPECT_EQ("{\"error\":\"no \\\"such\\\" path\"}\n",
            AdminResponse::Error(404, "no \"such\" path").body);
}

}  // namespace
}  // namespace postern
