// AuthHttpDirectory against the real auth service of the test tree
// (tests/integration/auth_service.py, run with python3): the service decodes
// what Postern escapes the way it decodes nginx's requests, so users whose
// names and passwords hold spaces, "%", "+", ":", a tab, DEL or UTF-8 log in;
// N lookups travel on one kept-alive connection (the service counts the
// connections it accepted); refusals carry Auth-Wait; a hanging service
// ends in the timeout. Skipped when python3 is missing.

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "routing/auth_http_directory.h"
#include "routing/uv_owner.h"

extern char** environ;

namespace postern {
namespace {

using Verdict = DirectoryAnswer::Verdict;
using std::chrono::milliseconds;

// A blocking GET to the service's own paths (/stats, /control...); the body.
std::string Get(uint16_t port, const std::string& path) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    close(fd);
    return "";
  }
  const std::string req = absl::StrCat("GET ", path, " HTTP/1.0\r\nHost: x\r\n\r\n");
  if (write(fd, req.data(), req.size()) != static_cast<ssize_t>(req.size())) {
    close(fd);
    return "";
  }
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = read(fd, buf, sizeof(buf))) > 0) out.append(buf, static_cast<size_t>(n));
  close(fd);
  const size_t body = out.find("\r\n\r\n");
  return body == std::string::npos ? "" : out.substr(body + 4);
}

// A number from the service's /stats JSON ({"connections": 3, ...}).
int Stat(uint16_t port, const std::string& name) {
  const std::string json = Get(port, "/stats");
  const size_t at = json.find("\"" + name + "\": ");
  int v = -1;
  if (at == std::string::npos) return v;
  const size_t start = at + name.size() + 4;
  const size_t end = json.find_first_of(",}", start);
  (void)absl::SimpleAtoi(json.substr(start, end - start), &v);
  return v;
}

class AuthServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (access("/usr/bin/python3", X_OK) != 0) GTEST_SKIP() << "no python3";
    char dir[] = "/tmp/auth-service-test-XXXXXX";
    ASSERT_NE(mkdtemp(dir), nullptr);
    dir_ = dir;
    const std::string users = dir_ + "/users.json";
    std::ofstream(users) << R"({
      "server": "127.0.0.1", "ports": {"imap": 10143, "pop3": 10110}, "wait": 1,
      "users": {
        "alice": {"password": "demo"},
        "sp ace": {"password": "pa ss"},
        "per%cent": {"password": "100%"},
        "plus+sign": {"password": "a+b=c:d"},
        "j\u00fcrgen": {"password": "p\u00e4ss\tw\u007fd"},
        "bob": {"password": "x", "ports": {"imap": 20143},
                "headers": {"Auth-User": "bob@store", "Auth-Backend": "store2"}}
      }})";
    const std::string ready = dir_ + "/port";
    const std::string script =
        std::string(POSTERN_SOURCE_DIR) + "/tests/integration/auth_service.py";
    std::vector<std::string> args = {"/usr/bin/python3", script, "--users", users,
                                     "--ready-file",     ready};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t quiet;  // its "listening on" line: not in the test log
    posix_spawn_file_actions_init(&quiet);
    posix_spawn_file_actions_addopen(&quiet, 1, "/dev/null", O_WRONLY, 0);
    const int rc = posix_spawn(&pid_, argv[0], &quiet, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&quiet);
    ASSERT_EQ(rc, 0);
    for (int i = 0; i < 200 && port_ == 0; ++i) {
      std::this_thread::sleep_for(milliseconds(50));
      std::ifstream f(ready);
      int p = 0;
      if (f >> p) port_ = static_cast<uint16_t>(p);
    }
    ASSERT_NE(port_, 0) << "auth_service.py did not start";
    ASSERT_EQ(uv_loop_init(&loop_), 0);
    loop_ready_ = true;
  }

  void TearDown() override {
    dir_obj_.reset();
    if (loop_ready_) {
      uv_run(&loop_, UV_RUN_DEFAULT);
      EXPECT_EQ(uv_loop_close(&loop_), 0);
    }
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      int status;
      waitpid(pid_, &status, 0);
    }
    if (!dir_.empty()) {
      unlink((dir_ + "/users.json").c_str());
      unlink((dir_ + "/port").c_str());
      rmdir(dir_.c_str());
    }
  }

  void Make(milliseconds timeout = milliseconds(3000)) {
    AuthHttpOptions o;
    o.servers = {absl::StrCat("127.0.0.1:", port_)};
    o.timeout = timeout;
    auto d = AuthHttpDirectory::Create(&loop_, o);
    ASSERT_TRUE(d.ok()) << d.status();
    dir_obj_ = *std::move(d);
  }

  DirectoryAnswer Ask(const std::string& user, const std::string& pass,
                      const std::string& protocol = "imap") {
    DirectoryRequest r;
    r.user = user;
    r.secret = pass;
    r.protocol = protocol;
    r.client_ip = "127.0.0.1";
    std::optional<DirectoryAnswer> out;
    auto lookup = dir_obj_->Start(r, [&](DirectoryAnswer a) { out = std::move(a); });
    bool over = false;
    UvTimer guard(&loop_);
    guard.Start(milliseconds(10000), [&] { over = true; });
    while (!out && !over) uv_run(&loop_, UV_RUN_ONCE);
    EXPECT_TRUE(out.has_value());
    return out.value_or(DirectoryAnswer());
  }

  std::string dir_;
  pid_t pid_ = 0;
  uint16_t port_ = 0;
  uv_loop_t loop_;
  bool loop_ready_ = false;
  std::unique_ptr<AuthHttpDirectory> dir_obj_;
};

TEST_F(AuthServiceTest, SpecialCharactersLogInOnOneConnection) {
  Make();
  const std::pair<std::string, std::string> users[] = {
      {"alice", "demo"},
      {"sp ace", "pa ss"},
      {"per%cent", "100%"},
      {"plus+sign", "a+b=c:d"},
      {"j\xc3\xbcrgen",
       "p\xc3\xa4ss\tw\x7f"
       "d"},
  };
  int n = 0;
  for (int round = 0; round < 4; ++round) {
    for (const auto& [user, pass] : users) {
      const DirectoryAnswer a = Ask(user, pass, round % 2 ? "pop3" : "imap");
      EXPECT_EQ(a.verdict, Verdict::kAccept) << user << ": " << a.detail;
      EXPECT_EQ(a.host, "127.0.0.1");
      EXPECT_EQ(a.port, round % 2 ? 10110 : 10143);
      ++n;
    }
  }
  EXPECT_EQ(Stat(port_, "requests"), n);
  EXPECT_EQ(Stat(port_, "auth_connections"), 1);
  EXPECT_EQ(dir_obj_->stats().connects, 1u);
}

TEST_F(AuthServiceTest, RewritesAndExtensions) {
  Make();
  const DirectoryAnswer a = Ask("bob", "x");
  EXPECT_EQ(a.verdict, Verdict::kAccept);
  EXPECT_EQ(a.port, 20143);
  EXPECT_EQ(a.backend_user, "bob@store");
  EXPECT_EQ(a.backend, "store2");
}

TEST_F(AuthServiceTest, RefusalWithAuthWait) {
  Make();
  DirectoryAnswer a = Ask("alice", "wrong");
  EXPECT_EQ(a.verdict, Verdict::kRefuse);
  EXPECT_EQ(a.text, "Invalid login or password");
  EXPECT_EQ(a.wait, std::chrono::seconds(1));
  a = Ask("nobody", "demo");
  EXPECT_EQ(a.verdict, Verdict::kRefuse);
}

TEST_F(AuthServiceTest, HangingServiceTimesOut) {
  Make(milliseconds(400));
  EXPECT_EQ(Ask("alice", "demo").verdict, Verdict::kAccept);
  Get(port_, "/control?hang=1");
  const uint64_t start = uv_now(&loop_);
  const DirectoryAnswer a = Ask("alice", "demo");
  EXPECT_EQ(a.verdict, Verdict::kUnavailable);
  EXPECT_GE(uv_now(&loop_) - start, 390u);
  Get(port_, "/control?hang=0");
  EXPECT_EQ(Ask("alice", "demo").verdict, Verdict::kAccept);
}

TEST_F(AuthServiceTest, SlowServiceWithinTheTimeout) {
  Make(milliseconds(3000));
  Get(port_, "/control?delay=0.3");
  EXPECT_EQ(Ask("alice", "demo").verdict, Verdict::kAccept);
}

TEST_F(AuthServiceTest, ConnectionCloseFromTheService) {
  Make();
  Get(port_, "/control?close=1");
  for (int i = 0; i < 3; ++i) EXPECT_EQ(Ask("alice", "demo").verdict, Verdict::kAccept);
  EXPECT_EQ(Stat(port_, "auth_connections"), 3);
}

}  // namespace
}  // namespace postern
