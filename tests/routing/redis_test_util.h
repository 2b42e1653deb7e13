#pragma once

// Test helpers for code on a libuv loop talking to Redis: a redis-server of
// the test's own (own config and directory, a free loopback port, stopped
// by its PID; never the system one), a loop to run until something
// happens, a poster, and a capture of spdlog's lines.

#include <arpa/inet.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "spdlog/spdlog.h"
#include "tests/log_capture.h"

extern char** environ;

namespace postern {
namespace testing_redis {

// A redis-server started and stopped by the test.
class TestRedisServer {
 public:
  TestRedisServer() = default;
  ~TestRedisServer() {
    Kill();
    if (!dir_.empty()) {
      std::error_code ec;
      std::filesystem::remove_all(dir_, ec);
    }
  }
  TestRedisServer(const TestRedisServer&) = delete;
  TestRedisServer& operator=(const TestRedisServer&) = delete;

  // redis-server's path, "" when it is not installed.
  static std::string FindBinary() {
    for (const char* p : {"/usr/bin/redis-server", "/usr/local/bin/redis-server"}) {
      if (access(p, X_OK) == 0) return p;
    }
    return "";
  }

  // Starts on a free loopback port, with `extra_config` lines appended to
  // its configuration. False (and *error) when it did not come up.
  bool Start(std::string* error, const std::string& extra_config = "") {
    binary_ = FindBinary();
    if (binary_.empty()) {
      *error = "redis-server is not installed";
      return false;
    }
    char tmpl[] = "/tmp/postern-redis-XXXXXX";
    if (mkdtemp(tmpl) == nullptr) {
      *error = "mkdtemp failed";
      return false;
    }
    dir_ = tmpl;
    extra_config_ = extra_config;
    // A port free a moment ago may be taken by the time the server binds:
    // try a few.
    for (int attempt = 0; attempt < 5; ++attempt) {
      port_ = FreePort();
      if (port_ != 0 && Launch(error)) return true;
    }
    return false;
  }

  // Starts again on the same port and directory, after Stop() or Kill().
  bool Restart(std::string* error) {
    for (int attempt = 0; attempt < 50; ++attempt) {
      if (Launch(error)) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return false;
  }

  // SIGTERM, and waits for the process to end.
  void Stop() { Signal(SIGTERM); }
  // SIGKILL: no goodbye to the clients.
  void Kill() { Signal(SIGKILL); }

  int port() const { return port_; }
  pid_t pid() const { return pid_; }
  std::string address() const { return absl::StrCat("127.0.0.1:", port_); }
  std::string unix_path() const { return dir_ + "/redis.sock"; }
  std::string log() const {
    std::ifstream in(dir_ + "/redis.log");
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

  // A command through a blocking connection (test setup and checks). The
  // reply as text: the string, the integer, "(nil)", "(error) ...",
  // "(down)" when the server cannot be reached.
  std::string Cli(const std::vector<std::string>& argv, const std::string& password = "") const {
    timeval tv{1, 0};
    redisContext* c = redisConnectWithTimeout("127.0.0.1", port_, tv);
    if (c == nullptr || c->err != 0) {
      if (c != nullptr) redisFree(c);
      return "(down)";
    }
    redisSetTimeout(c, timeval{5, 0});
    std::string out;
    if (!password.empty()) {
      auto* r = static_cast<redisReply*>(redisCommand(c, "AUTH %s", password.c_str()));
      if (r != nullptr) freeReplyObject(r);
    }
    std::vector<const char*> p;
    std::vector<size_t> l;
    for (const std::string& a : argv) {
      p.push_back(a.data());
      l.push_back(a.size());
    }
    auto* r = static_cast<redisReply*>(
        redisCommandArgv(c, static_cast<int>(argv.size()), p.data(), l.data()));
    if (r == nullptr) {
      out = "(down)";
    } else {
      switch (r->type) {
        case REDIS_REPLY_STRING:
        case REDIS_REPLY_STATUS:
          out.assign(r->str, r->len);
          break;
        case REDIS_REPLY_INTEGER:
          out = absl::StrCat(r->integer);
          break;
        case REDIS_REPLY_NIL:
          out = "(nil)";
          break;
        case REDIS_REPLY_ERROR:
          out = absl::StrCat("(error) ", absl::string_view(r->str, r->len));
          break;
        default:
          out = "(array)";
      }
      freeReplyObject(r);
    }
    redisFree(c);
    return out;
  }

 private:
  static int FreePort() {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return 0;
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    socklen_t len = sizeof(a);
    int port = 0;
    if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0 &&
        getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0) {
      port = ntohs(a.sin_port);
    }
    close(fd);
    return port;
  }

  bool Launch(std::string* error) {
    std::string conf = dir_ + "/redis.conf";
    {
      std::ofstream out(conf, std::ios::trunc);
      out << "bind 127.0.0.1\n"
          << "port " << port_ << "\n"
          << "unixsocket " << unix_path() << "\n"
          << "unixsocketperm 700\n"
          << "dir " << dir_ << "\n"
          << "logfile " << dir_ << "/redis.log\n"
          << "pidfile " << dir_ << "/redis.pid\n"
          << "daemonize no\n"
          << "save \"\"\n"
          << "appendonly no\n"
          << "databases 16\n"
          << extra_config_ << "\n";
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    std::string bin = binary_;
    char* argv[] = {bin.data(), conf.data(), nullptr};
    pid_t pid = 0;
    int rc = posix_spawn(&pid, binary_.c_str(), &fa, nullptr, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) {
      *error = absl::StrCat("posix_spawn: ", strerror(rc));
      return false;
    }
    pid_ = pid;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < deadline) {
      int status;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = 0;
        *error = absl::StrCat("redis-server exited at start:\n", log());
        return false;
      }
      std::string pw = PasswordFromConfig();
      std::string pong = Cli({"PING"}, pw);
      if (pong == "PONG") return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    Kill();
    *error = "redis-server did not answer PING within 10 s";
    return false;
  }

  std::string PasswordFromConfig() const {
    std::istringstream in(extra_config_);
    std::string line;
    while (std::getline(in, line)) {
      if (line.rfind("requirepass ", 0) == 0) return line.substr(12);
    }
    return "";
  }

  void Signal(int sig) {
    if (pid_ <= 0) return;
    kill(pid_, sig);
    int status;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (waitpid(pid_, &status, WNOHANG) != pid_) {
      if (std::chrono::steady_clock::now() > deadline) {
        kill(pid_, SIGKILL);
        waitpid(pid_, &status, 0);
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    pid_ = 0;
  }

  std::string binary_;
  std::string dir_;
  std::string extra_config_;
  int port_ = 0;
  pid_t pid_ = 0;
};

// A libuv loop for one test. Close() (or the destructor) runs it until
// every handle is closed, then closes it: objects on it must be destroyed
// first.
class TestLoop {
 public:
  TestLoop() {
    uv_loop_init(&loop_);
    uv_timer_init(&loop_, &tick_);
    uv_idle_init(&loop_, &idle_);
    idle_.data = this;
  }
  ~TestLoop() { Close(); }
  TestLoop(const TestLoop&) = delete;
  TestLoop& operator=(const TestLoop&) = delete;

  uv_loop_t* get() { return &loop_; }

  // Runs the loop until `pred` holds or `timeout` passes; returns pred().
  bool RunUntil(const std::function<bool()>& pred,
                std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    // A short repeating timer so that UV_RUN_ONCE returns regularly.
    uv_timer_start(
        &tick_, [](uv_timer_t*) {}, 2, 2);
    while (!pred() && std::chrono::steady_clock::now() < deadline) uv_run(&loop_, UV_RUN_ONCE);
    uv_timer_stop(&tick_);
    return pred();
  }
  void RunFor(std::chrono::milliseconds d) {
    RunUntil([] { return false; }, d);
  }

  // Runs `fn` on a later iteration (routing/router.h's Poster).
  std::function<void(std::function<void()>)> poster() {
    return [this](std::function<void()> fn) {
      posted_.push_back(std::move(fn));
      uv_idle_start(&idle_, [](uv_idle_t* i) { static_cast<TestLoop*>(i->data)->RunPosted(); });
    };
  }

  // Closes the loop; false (with the open handles on stderr) if some are
  // still open after a few passes.
  bool Close() {
    if (closed_) return true;
    posted_.clear();
    uv_close(reinterpret_cast<uv_handle_t*>(&tick_), nullptr);
    uv_close(reinterpret_cast<uv_handle_t*>(&idle_), nullptr);
    for (int i = 0; i < 100; ++i) {
      uv_run(&loop_, UV_RUN_NOWAIT);
      if (uv_loop_close(&loop_) == 0) {
        closed_ = true;
        return true;
      }
    }
    uv_print_all_handles(&loop_, stderr);
    return false;
  }

 private:
  void RunPosted() {
    std::deque<std::function<void()>> batch;
    batch.swap(posted_);
    for (auto& fn : batch) fn();
    if (posted_.empty()) uv_idle_stop(&idle_);
  }

  uv_loop_t loop_;
  uv_timer_t tick_;
  uv_idle_t idle_;
  std::deque<std::function<void()>> posted_;
  bool closed_ = false;
};

using LogCapture = ::postern::test_util::LogCapture;  // tests/log_capture.h

}  // namespace testing_redis
}  // namespace postern
