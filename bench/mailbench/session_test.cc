// Runs mailbench's workers and sessions end to end against a scripted fake
// IMAP/POP3 server on 127.0.0.1 (plaintext; TLS is exercised by bench/compare
// against Dovecot, nginx and Postern).

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/sha.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "bench/mailbench/options.h"
#include "bench/mailbench/worker.h"
#include "gtest/gtest.h"

namespace postern::mailbench {
namespace {

enum class Behavior { kNormal, kRejectLogin, kSilent };

// One thread per connection, blocking sockets: enough for a handful of clients.
class FakeServer {
 public:
  FakeServer(Proto proto, std::vector<std::string> messages, Behavior behavior = Behavior::kNormal)
      : proto_(proto), messages_(std::move(messages)), behavior_(behavior) {
    listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a));
    listen(listen_fd_, 64);
    socklen_t len = sizeof(a);
    getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    acceptor_ = std::thread([this] { AcceptLoop(); });
  }

  ~FakeServer() {
    stopping_ = true;
    shutdown(listen_fd_, SHUT_RDWR);
    acceptor_.join();
    close(listen_fd_);
    std::lock_guard<std::mutex> lock(mu_);
    for (std::thread& t : conns_) t.join();
  }

  uint16_t port() const { return port_; }
  int connections() const { return connections_.load(); }
  // The clients' source addresses seen so far.
  std::set<std::string> peers() {
    std::lock_guard<std::mutex> lock(mu_);
    return peers_;
  }

 private:
  void AcceptLoop() {
    for (;;) {
      sockaddr_in peer{};
      socklen_t peer_len = sizeof(peer);
      int fd = accept(listen_fd_, reinterpret_cast<sockaddr*>(&peer), &peer_len);
      if (fd < 0) return;
      if (stopping_) {
        close(fd);
        return;
      }
      ++connections_;
      std::lock_guard<std::mutex> lock(mu_);
      char ip[INET_ADDRSTRLEN] = {0};
      inet_ntop(AF_INET, &peer.sin_addr, ip, sizeof(ip));
      peers_.insert(ip);
      conns_.emplace_back([this, fd] {
        Serve(fd);
        close(fd);
      });
    }
  }

  static bool Send(int fd, const std::string& s) {
    size_t off = 0;
    while (off < s.size()) {
      ssize_t n = send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL);
      if (n <= 0) return false;
      off += static_cast<size_t>(n);
    }
    return true;
  }

  static bool ReadLine(int fd, std::string* buf, std::string* line) {
    for (;;) {
      size_t nl = buf->find("\r\n");
      if (nl != std::string::npos) {
        *line = buf->substr(0, nl);
        buf->erase(0, nl + 2);
        return true;
      }
      char tmp[4096];
      ssize_t n = recv(fd, tmp, sizeof(tmp), 0);
      if (n <= 0) return false;
      buf->append(tmp, static_cast<size_t>(n));
    }
  }

  void Serve(int fd) {
    std::string buf;
    std::string line;
    if (behavior_ == Behavior::kSilent) {
      while (ReadLine(fd, &buf, &line)) {
      }
      return;
    }
    if (proto_ == Proto::kImap) {
      ServeImap(fd, &buf);
    } else {
      ServePop3(fd, &buf);
    }
  }

  void ServeImap(int fd, std::string* buf) {
    std::string line;
    if (!Send(fd, "* OK [CAPABILITY IMAP4rev1 IDLE] fake ready\r\n")) return;
    while (ReadLine(fd, buf, &line)) {
      std::vector<std::string> w = absl::StrSplit(line, ' ');
      if (w.size() < 2) return;
      const std::string& tag = w[0];
      const std::string& cmd = w[1];
      std::string out;
      if (cmd == "LOGIN") {
        out = behavior_ == Behavior::kRejectLogin
                  ? tag + " NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"
                  : tag + " OK Logged in\r\n";
      } else if (cmd == "SELECT") {
        out = absl::StrCat("* FLAGS (\\Seen)\r\n* ", messages_.size(), " EXISTS\r\n* 0 RECENT\r\n",
                           tag, " OK [READ-WRITE] Select done\r\n");
      } else if (cmd == "FETCH") {
        // "FETCH 1:n BODY[]": answer messages 1..n.
        size_t n = messages_.size();
        if (w.size() > 2 && absl::StartsWith(w[2], "1:")) {
          size_t asked = 0;
          if (absl::SimpleAtoi(w[2].substr(2), &asked)) n = std::min(n, asked);
        }
        for (size_t i = 0; i < n; ++i) {
          absl::StrAppend(&out, "* ", i + 1, " FETCH (BODY[] {", messages_[i].size(), "}\r\n",
                          messages_[i], " FLAGS (\\Seen))\r\n");
        }
        absl::StrAppend(&out, tag, " OK Fetch completed.\r\n");
      } else if (cmd == "NOOP") {
        out = tag + " OK NOOP completed.\r\n";
      } else if (cmd == "IDLE") {
        if (!Send(fd, "+ idling\r\n* 1 RECENT\r\n")) return;
        std::string done;
        if (!ReadLine(fd, buf, &done) || done != "DONE") return;
        out = tag + " OK Idle completed.\r\n";
      } else if (cmd == "LOGOUT") {
        Send(fd, "* BYE Logging out\r\n" + tag + " OK Logout completed.\r\n");
        return;
      } else {
        out = tag + " BAD unknown\r\n";
      }
      if (!Send(fd, out)) return;
    }
  }

  void ServePop3(int fd, std::string* buf) {
    std::string line;
    if (!Send(fd, "+OK fake ready.\r\n")) return;
    while (ReadLine(fd, buf, &line)) {
      std::string out;
      if (absl::StartsWith(line, "USER ")) {
        out = "+OK\r\n";
      } else if (absl::StartsWith(line, "PASS ")) {
        out = behavior_ == Behavior::kRejectLogin ? "-ERR [AUTH] Authentication failed.\r\n"
                                                  : "+OK Logged in.\r\n";
      } else if (line == "STAT") {
        size_t total = 0;
        for (const std::string& m : messages_) total += m.size();
        out = absl::StrCat("+OK ", messages_.size(), " ", total, "\r\n");
      } else if (absl::StartsWith(line, "RETR ")) {
        size_t i = 0;
        if (!absl::SimpleAtoi(line.substr(5), &i) || i < 1 || i > messages_.size()) {
          out = "-ERR no such message\r\n";
        } else {
          out = absl::StrCat("+OK ", messages_[i - 1].size(), " octets\r\n",
                             DotStuff(messages_[i - 1]), ".\r\n");
        }
      } else if (line == "NOOP") {
        out = "+OK\r\n";
      } else if (line == "QUIT") {
        Send(fd, "+OK Logging out.\r\n");
        return;
      } else {
        out = "-ERR unknown\r\n";
      }
      if (!Send(fd, out)) return;
    }
  }

 public:
  // RFC 1939 section 3: lines starting with "." get one more "."; bodies end in CRLF.
  static std::string DotStuff(const std::string& body) {
    std::string out;
    bool line_start = true;
    for (char c : body) {
      if (line_start && c == '.') out += '.';
      out += c;
      line_start = c == '\n';
    }
    return out;
  }

 private:
  Proto proto_;
  std::vector<std::string> messages_;
  Behavior behavior_;
  int listen_fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<int> connections_{0};
  std::thread acceptor_;
  std::mutex mu_;
  std::vector<std::thread> conns_;
  std::set<std::string> peers_;
};

const std::vector<std::string>& Messages() {
  static const std::vector<std::string> kMessages = {
      "Subject: one\r\n\r\nhello\r\n",
      // Looks like a tagged reply and a literal inside the literal; has dot lines.
      "Subject: two\r\n\r\na3 OK not really\r\n.\r\n.leading dot\r\n{12}\r\n",
      std::string(100000, 'x') + "\r\n",
  };
  return kMessages;
}

uint64_t TotalSize() {
  uint64_t n = 0;
  for (const std::string& m : Messages()) n += m.size();
  return n;
}

Options MakeOptions(std::vector<std::string> args) {
  std::vector<char*> argv;
  static char name[] = "mailbench";
  argv.push_back(name);
  for (std::string& a : args) argv.push_back(a.data());
  absl::StatusOr<Options> o = ParseOptions(static_cast<int>(argv.size()), argv.data());
  EXPECT_TRUE(o.ok()) << o.status();
  return *o;
}

// Runs one worker to completion; for idle, releases the held sessions once all are held.
WorkerStats RunWorker(const Options& o) {
  SharedCounters shared;
  absl::StatusOr<std::unique_ptr<Worker>> w = Worker::Create(
      o, 0, o.sessions, o.scenario == Scenario::kIdle ? o.concurrency : o.clients, &shared);
  EXPECT_TRUE(w.ok());
  std::thread t([&] { (*w)->Run(); });
  if (o.scenario == Scenario::kIdle) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (shared.settled.load() < o.sessions && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    EXPECT_EQ(shared.held.load(), o.sessions);
    (*w)->Release();
  }
  t.join();
  return std::move((*w)->stats());
}

std::string ErrorsOf(const WorkerStats& s) {
  std::string out;
  for (const auto& [k, v] : s.errors) absl::StrAppend(&out, k, " x", v, "; ");
  return out;
}

TEST(SessionTest, ImapLoginStorm) {
  FakeServer server(Proto::kImap, Messages());
  Options o = MakeOptions({"--scenario", "login", "--proto", "imap", "--port",
                           std::to_string(server.port()), "--clients", "3", "--sessions", "12"});
  WorkerStats s = RunWorker(o);
  EXPECT_EQ(s.sessions_ok, 12u) << ErrorsOf(s);
  EXPECT_EQ(s.sessions_failed, 0u);
  EXPECT_EQ(s.session_ns.size(), 12u);
  EXPECT_EQ(s.ready_ns.size(), 12u);
  EXPECT_EQ(s.login_ns.size(), 12u);
  EXPECT_EQ(server.connections(), 12);
}

TEST(SessionTest, ImapBulkCountsLiteralBytes) {
  FakeServer server(Proto::kImap, Messages());
  Options o = MakeOptions({"--scenario", "bulk", "--proto", "imap", "--port",
                           std::to_string(server.port()), "--sessions", "2"});
  WorkerStats s = RunWorker(o);
  EXPECT_EQ(s.sessions_ok, 2u) << ErrorsOf(s);
  EXPECT_EQ(s.messages, 6u);
  EXPECT_EQ(s.transfer_bytes, 2 * TotalSize());
  EXPECT_EQ(s.transfer_ns.size(), 2u);
}

TEST(SessionTest, ImapBulkMessageLimit) {
  FakeServer server(Proto::kImap, Messages());
  Options o = MakeOptions({"--scenario", "bulk", "--proto", "imap", "--port",
                           std::to_string(server.port()), "--messages", "2"});
  WorkerStats s = RunWorker(o);
  EXPECT_EQ(s.sessions_ok, 1u) << ErrorsOf(s);
  EXPECT_EQ(s.messages, 2u);
  EXPECT_EQ(s.transfer_bytes, Messages()[0].size() + Messages()[1].size());
}

TEST(SessionTest, ImapPing) {
  FakeServer server(Proto::kImap, Messages());
  Options o = MakeOptions({"--scenario", "ping", "--proto", "imap", "--port",
                           std::to_string(server.port()), "--clients", "2", "--pings", "25"});
  WorkerStats s = RunWorker(o);
  EXPECT_EQ(s.sessions_ok, 2u) << ErrorsOf(s);
  EXPECT_EQ(s.rtt_ns.size(), 50u);
}

TEST(SessionTest, ImapIdleHoldAndRelease) {
  FakeServer server(Proto::kImap, Messages());
  Options o = MakeOptions({"--scenario", "idle", "--proto", "imap", "--port",
                           std::to_string(server.port()), "--clients", "6", "--concurrency", "2"});
  WorkerStats s = RunWorker(o);
  EXPECT_EQ(s.sessions_ok, 6u) << ErrorsOf(s);
  EXPECT_EQ(s.held_max, 6u);
}

TEST(SessionTest, Pop3BulkUnstuffsNothingButFindsTheEnd) {
  FakeServer server(Proto::kPop3, Messages());
  Options o = MakeOptions(
      {"--scenario", "bulk", "--proto", "pop3", "--port", std::to_string(server.port())});
  WorkerStats s = RunWorker(o);
  EXPECT_EQ(s.sessions_ok, 1u) << ErrorsOf(s);
  EXPECT_EQ(s.messages, 3u);
  uint64_t wire = 0;
  for (const std::string& m : Messages()) wire += FakeServer::DotStuff(m).size() + 3;
  EXPECT_EQ(s.transfer_bytes, wire);
}

TEST(SessionTest, Pop3LoginIdleAndPing) {
  FakeServer server(Proto::kPop3, Messages());
  std::string port = std::to_string(server.port());
  WorkerStats login = RunWorker(MakeOptions({"--scenario", "login", "--proto", "pop3", "--port",
                                             port, "--clients", "2", "--sessions", "6"}));
  EXPECT_EQ(login.sessions_ok, 6u) << ErrorsOf(login);
  WorkerStats idle = RunWorker(
      MakeOptions({"--scenario", "idle", "--proto", "pop3", "--port", port, "--clients", "4"}));
  EXPECT_EQ(idle.sessions_ok, 4u) << ErrorsOf(idle);
  WorkerStats ping = RunWorker(
      MakeOptions({"--scenario", "ping", "--proto", "pop3", "--port", port, "--pings", "10"}));
  EXPECT_EQ(ping.rtt_ns.size(), 10u) << ErrorsOf(ping);
}

TEST(SessionTest, RejectedLoginIsAFailure) {
  for (Proto p : {Proto::kImap, Proto::kPop3}) {
    FakeServer server(p, Messages(), Behavior::kRejectLogin);
    WorkerStats s = RunWorker(MakeOptions({"--scenario", "login", "--proto", ProtoName(p), "--port",
                                           std::to_string(server.port()), "--sessions", "3"}));
    EXPECT_EQ(s.sessions_ok, 0u);
    EXPECT_EQ(s.sessions_failed, 3u);
    ASSERT_EQ(s.errors.size(), 1u);
    EXPECT_TRUE(absl::StartsWith(s.errors.begin()->first, "login failed: ")) << ErrorsOf(s);
  }
}

TEST(SessionTest, SilentServerTimesOut) {
  FakeServer server(Proto::kImap, Messages(), Behavior::kSilent);
  WorkerStats s = RunWorker(MakeOptions({"--scenario", "login", "--proto", "imap", "--port",
                                         std::to_string(server.port()), "--sessions", "2",
                                         "--clients", "2", "--timeout", "0.2"}));
  EXPECT_EQ(s.sessions_failed, 2u);
  EXPECT_EQ(s.errors.count("timeout waiting for greeting"), 1u) << ErrorsOf(s);
}

TEST(SessionTest, RefusedConnection) {
  uint16_t port;
  {
    FakeServer server(Proto::kImap, Messages());
    port = server.port();
  }  // closed: nothing listens there now
  WorkerStats s = RunWorker(MakeOptions({"--scenario", "login", "--proto", "imap", "--port",
                                         std::to_string(port), "--sessions", "2"}));
  EXPECT_EQ(s.sessions_failed, 2u);
  EXPECT_EQ(s.errors.count("connect: Connection refused"), 1u) << ErrorsOf(s);
}

// A --sha256 file for user1 over Messages(), with message `bad` (1-based, 0:
// none) given a wrong digest. Returns its path.
std::string WriteDigests(size_t bad) {
  static int n = 0;
  std::string path = absl::StrCat("/tmp/mailbench_digests_", getpid(), "_", ++n);
  std::string text;
  for (size_t i = 0; i < Messages().size(); ++i) {
    std::string m = Messages()[i];
    if (i + 1 == bad) m += "x";
    uint8_t d[SHA256_DIGEST_LENGTH];
    SHA256(reinterpret_cast<const uint8_t*>(m.data()), m.size(), d);
    Sha256 a;
    std::copy(d, d + 32, a.begin());
    absl::StrAppend(&text, "user1 ", i + 1, " ", HexOf(a), "\n");
  }
  FILE* f = std::fopen(path.c_str(), "w");
  std::fwrite(text.data(), 1, text.size(), f);
  std::fclose(f);
  return path;
}

TEST(SessionTest, BulkVerifiesEveryMessage) {
  for (Proto p : {Proto::kImap, Proto::kPop3}) {
    FakeServer server(p, Messages());
    std::string good = WriteDigests(0);
    WorkerStats s = RunWorker(
        MakeOptions({"--scenario", "bulk", "--proto", ProtoName(p), "--port",
                     std::to_string(server.port()), "--sessions", "3", "--sha256", good}));
    EXPECT_EQ(s.sessions_ok, 3u) << ErrorsOf(s);
    EXPECT_EQ(s.verified, 9u);
    EXPECT_EQ(s.verify_mismatches, 0u);
    std::string bad = WriteDigests(2);
    s = RunWorker(MakeOptions({"--scenario", "bulk", "--proto", ProtoName(p), "--port",
                               std::to_string(server.port()), "--sessions", "2", "--sha256", bad}));
    EXPECT_EQ(s.sessions_failed, 2u);
    EXPECT_EQ(s.verify_mismatches, 2u);
    EXPECT_EQ(s.errors.count("sha256 mismatch: user1 message 2"), 1u) << ErrorsOf(s);
    // A user without digests fails rather than passing unchecked.
    s = RunWorker(
        MakeOptions({"--scenario", "bulk", "--proto", ProtoName(p), "--port",
                     std::to_string(server.port()), "--user", "user9", "--sha256", good}));
    EXPECT_EQ(s.sessions_failed, 1u) << ErrorsOf(s);
    std::remove(good.c_str());
    std::remove(bad.c_str());
  }
}

TEST(SessionTest, ThinkRampAndRunFor) {
  FakeServer server(Proto::kImap, Messages());
  auto start = std::chrono::steady_clock::now();
  // 4 clients, each session pauses 0.1..0.3 s after SELECT; nothing starts after 0.5 s.
  WorkerStats s = RunWorker(MakeOptions({"--scenario", "login", "--proto", "imap", "--port",
                                         std::to_string(server.port()), "--clients", "4", "--think",
                                         "0.2", "--ramp", "0.2", "--run-for", "0.5"}));
  auto took = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(s.sessions_failed, 0u) << ErrorsOf(s);
  // At least one round each, at most 0.5 s / 0.1 s + 1 rounds each.
  EXPECT_GE(s.sessions_ok, 4u);
  EXPECT_LE(s.sessions_ok, 24u);
  EXPECT_EQ(s.connect_login_ns.size(), s.sessions_ok);
  EXPECT_GE(took, std::chrono::milliseconds(500));
  EXPECT_LT(took, std::chrono::seconds(3));
}

TEST(SessionTest, SourceAddresses) {
  FakeServer server(Proto::kPop3, Messages());
  WorkerStats s = RunWorker(MakeOptions({"--scenario", "login", "--proto", "pop3", "--port",
                                         std::to_string(server.port()), "--sessions", "6",
                                         "--source", "127.0.3.1", "--sources", "3"}));
  EXPECT_EQ(s.sessions_ok, 6u) << ErrorsOf(s);
  EXPECT_EQ(server.peers(), (std::set<std::string>{"127.0.3.1", "127.0.3.2", "127.0.3.3"}));
}

TEST(SessionTest, DeadlineStopsTheRun) {
  FakeServer server(Proto::kImap, Messages());
  auto start = std::chrono::steady_clock::now();
  WorkerStats s = RunWorker(
      MakeOptions({"--scenario", "ping", "--proto", "imap", "--port", std::to_string(server.port()),
                   "--pings", "10000000", "--duration", "1"}));
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
  EXPECT_TRUE(s.deadline_hit);
  EXPECT_EQ(s.sessions_failed, 1u);
  EXPECT_GT(s.rtt_ns.size(), 0u);
}

}  // namespace
}  // namespace postern::mailbench
