// PasswdFileDirectory and PassthroughDirectory on a real libuv loop (slow
// hashes go through the thread pool), and the answer cache.

#include "routing/passwd_file_directory.h"

#include <unistd.h>
#include <uv.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "routing/directory_cache.h"

namespace postern {
namespace {

// "s3cret" as Dovecot 2.3.19's `doveadm pw -s SHA512-CRYPT` wrote it
// (tests/routing/testdata/dovecot_password_vectors.tsv).
constexpr char kSha512[] =
    "{SHA512-CRYPT}$6$J7AiiXH1plUqVWtY$uKh.01OGMMeUXtLOQzzLfCjsC5R1lv././"
    "VZQlHaYgcq0d6MA.sMv6vGR0J//mKYJaDZF72EtqytqZwewFq.6.";

class Loop {
 public:
  Loop() {
    uv_loop_init(&loop_);
    uv_idle_init(&loop_, &idle_);
    idle_.data = this;
  }
  ~Loop() {
    uv_close(reinterpret_cast<uv_handle_t*>(&idle_), nullptr);
    uv_run(&loop_, UV_RUN_DEFAULT);
    uv_loop_close(&loop_);
  }
  uv_loop_t* loop() { return &loop_; }
  // A Poster that runs work on the next turn (as the worker's Defer).
  Poster poster() {
    return [this](std::function<void()> fn) {
      posted_.push_back(std::move(fn));
      uv_idle_start(&idle_, [](uv_idle_t* h) {
        auto* self = static_cast<Loop*>(h->data);
        std::vector<std::function<void()>> fns;
        fns.swap(self->posted_);
        for (auto& f : fns) f();
        if (self->posted_.empty()) uv_idle_stop(h);
      });
    };
  }
  void Run() { uv_run(&loop_, UV_RUN_DEFAULT); }

 private:
  uv_loop_t loop_;
  uv_idle_t idle_;
  std::vector<std::function<void()>> posted_;
};

class PasswdFileDirectoryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/postern-pwd-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/users.passwd";
    Write(std::string("alice:") + kSha512 + "::::::host=10.0.0.5 port=10143 destuser=alice2\n" +
          "bob:{PLAIN}pw::::::pass=backendpw master\n" +
          "carol:{PLAIN}pw::::::nologin reason=Moved\n");
    auto s = PasswdFileSource::Open("users", path_, {});
    ASSERT_TRUE(s.ok()) << s.status();
    source_ = *s;
  }
  void TearDown() override {
    std::remove(path_.c_str());
    rmdir(dir_.c_str());
  }
  void Write(const std::string& text) { std::ofstream(path_, std::ios::trunc) << text; }
  DirectoryAnswer Ask(const std::string& user, const std::string& password,
                      DirectoryRequest::Mechanism m = DirectoryRequest::Mechanism::kPlain,
                      const std::string& protocol = "imap") {
    PasswdFileDirectory d(source_, loop_.loop(), loop_.poster());
    DirectoryRequest r;
    r.protocol = protocol;
    r.user = user;
    r.secret = password;
    r.mechanism = m;
    std::optional<DirectoryAnswer> got;
    auto lookup = d.Start(r, [&](DirectoryAnswer a) { got = std::move(a); });
    EXPECT_FALSE(got.has_value()) << "answered inside Start";
    loop_.Run();
    EXPECT_TRUE(got.has_value());
    return got.value_or(DirectoryAnswer());
  }

  Loop loop_;
  std::string dir_, path_;
  std::shared_ptr<PasswdFileSource> source_;
};

TEST_F(PasswdFileDirectoryTest, SlowHashOnTheThreadPool) {
  DirectoryAnswer a = Ask("alice", "s3cret");
  EXPECT_EQ(a.verdict, DirectoryAnswer::Verdict::kAccept);
  EXPECT_TRUE(a.checked);
  EXPECT_EQ(a.host, "10.0.0.5");
  EXPECT_EQ(a.port, 10143);
  EXPECT_EQ(a.backend_user, "alice2");
  EXPECT_EQ(Ask("alice", "wrong").verdict, DirectoryAnswer::Verdict::kRefuse);
}

TEST_F(PasswdFileDirectoryTest, ExtraFieldsNologinUnknownAndTokens) {
  DirectoryAnswer b = Ask("bob", "pw");
  EXPECT_EQ(b.verdict, DirectoryAnswer::Verdict::kAccept);
  EXPECT_EQ(b.backend_password, "backendpw");
  EXPECT_TRUE(b.master);
  DirectoryAnswer c = Ask("carol", "pw");
  EXPECT_EQ(c.verdict, DirectoryAnswer::Verdict::kRefuse);
  EXPECT_EQ(c.text, "Moved");
  // Dovecot's codes for a nologin reason: the fronts show the text only
  // with a code of its own.
  EXPECT_EQ(c.code, "CONTACTADMIN");
  DirectoryAnswer c3 = Ask("carol", "pw", DirectoryRequest::Mechanism::kPlain, "pop3");
  EXPECT_EQ(c3.code, "AUTH");
  EXPECT_EQ(c3.text, "Moved");
  DirectoryAnswer c2 = Ask("carol", "wrong");
  EXPECT_EQ(c2.verdict, DirectoryAnswer::Verdict::kRefuse);
  EXPECT_EQ(c2.text, "");  // a wrong password never learns the reason
  EXPECT_EQ(Ask("nobody", "pw").verdict, DirectoryAnswer::Verdict::kRefuse);
  EXPECT_EQ(Ask("bob", "pw", DirectoryRequest::Mechanism::kXoauth2).verdict,
            DirectoryAnswer::Verdict::kRefuse);
}

TEST_F(PasswdFileDirectoryTest, ASlowHashWaitingForABusyPoolTimesOut) {
  // Every thread of the pool busy for 400 ms (libuv's default: 4; more
  // when UV_THREADPOOL_SIZE says so), then a lookup with a 50 ms bound.
  const char* env = getenv("UV_THREADPOOL_SIZE");
  const int threads = env != nullptr ? std::max(1, atoi(env)) : 4;
  std::vector<uv_work_t> busy(static_cast<size_t>(threads));
  for (uv_work_t& w : busy) {
    uv_queue_work(
        loop_.loop(), &w, [](uv_work_t*) { usleep(400'000); }, [](uv_work_t*, int) {});
  }
  PasswdFileDirectory d(source_, loop_.loop(), loop_.poster(), std::chrono::milliseconds(50));
  DirectoryRequest r;
  r.user = "alice";  // SHA512-CRYPT: the thread pool
  r.secret = "s3cret";
  std::optional<DirectoryAnswer> got;
  std::chrono::steady_clock::duration took{};
  const auto t0 = std::chrono::steady_clock::now();
  auto lookup = d.Start(r, [&](DirectoryAnswer a) {
    took = std::chrono::steady_clock::now() - t0;
    got = std::move(a);
  });
  loop_.Run();
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->verdict, DirectoryAnswer::Verdict::kUnavailable);
  EXPECT_EQ(got->detail, "password check timed out");
  EXPECT_LT(took, std::chrono::milliseconds(300));
  // With the pool free again the same lookup answers.
  EXPECT_EQ(Ask("alice", "s3cret").verdict, DirectoryAnswer::Verdict::kAccept);
}

TEST_F(PasswdFileDirectoryTest, CanceledLookupsNeverAnswer) {
  PasswdFileDirectory d(source_, loop_.loop(), loop_.poster());
  int answers = 0;
  for (const char* user : {"alice", "bob", "nobody"}) {
    DirectoryRequest r;
    r.user = user;
    r.secret = "s3cret";
    auto lookup = d.Start(r, [&](DirectoryAnswer) { ++answers; });
    lookup.reset();  // the session ended before the answer
  }
  loop_.Run();  // the thread pool's work still completes, silently
  EXPECT_EQ(answers, 0);
}

TEST_F(PasswdFileDirectoryTest, ReloadOnChangeKeepsTheOldFileWhenBroken) {
  const uint64_t g = source_->generation();
  EXPECT_FALSE(source_->Changed());
  sleep(1);  // a new mtime
  Write("dave:{PLAIN}x\n");
  EXPECT_TRUE(source_->Changed());
  ASSERT_TRUE(source_->Reload().ok());
  EXPECT_GT(source_->generation(), g);
  EXPECT_EQ(Ask("dave", "x").verdict, DirectoryAnswer::Verdict::kAccept);
  EXPECT_EQ(Ask("bob", "pw").verdict, DirectoryAnswer::Verdict::kRefuse);
  sleep(1);
  Write("dave:{PLAIN}x\neve:{NOSUCHSCHEME}x\n");
  absl::Status st = source_->Reload();
  ASSERT_FALSE(st.ok());
  EXPECT_NE(std::string(st.message()).find("users.passwd:2:"), std::string::npos) << st;
  EXPECT_EQ(Ask("dave", "x").verdict, DirectoryAnswer::Verdict::kAccept);  // still the old one
  EXPECT_FALSE(source_->Changed());  // not retried until it changes again
}

TEST(PassthroughDirectoryTest, AcceptsUncheckedLater) {
  Loop loop;
  PassthroughDirectory d(loop.poster());
  std::optional<DirectoryAnswer> got;
  auto lookup = d.Start(DirectoryRequest(), [&](DirectoryAnswer a) { got = std::move(a); });
  EXPECT_FALSE(got.has_value());
  loop.Run();
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->verdict, DirectoryAnswer::Verdict::kAccept);
  EXPECT_FALSE(got->checked);
  EXPECT_FALSE(got->cacheable);
}

TEST(DirectoryCacheTest, KeyedOnTheSecretAndExpiring) {
  DirectoryCacheOptions o;
  o.ttl = std::chrono::milliseconds(1000);
  o.negative_ttl = std::chrono::milliseconds(100);
  DirectoryCache cache(o);
  DirectoryRequest r;
  r.user = "alice";
  r.secret = "old";
  DirectoryAnswer ok;
  ok.verdict = DirectoryAnswer::Verdict::kAccept;
  const auto k_old = DirectoryCache::MakeKey("users", 1, r);
  cache.Store(k_old, "alice", ok, 0);
  EXPECT_TRUE(cache.Find(k_old, 10).has_value());
  r.secret = "new";  // a changed password has no entry
  EXPECT_FALSE(cache.Find(DirectoryCache::MakeKey("users", 1, r), 10).has_value());
  r.secret = "old";  // nor does the same password after a reload
  EXPECT_FALSE(cache.Find(DirectoryCache::MakeKey("users", 2, r), 10).has_value());
  EXPECT_FALSE(cache.Find(k_old, 1000).has_value());  // expired
  DirectoryAnswer no;
  no.verdict = DirectoryAnswer::Verdict::kRefuse;
  cache.Store(k_old, "alice", no, 0);
  EXPECT_TRUE(cache.Find(k_old, 99).has_value());
  EXPECT_FALSE(cache.Find(k_old, 100).has_value());
  DirectoryAnswer down;
  down.verdict = DirectoryAnswer::Verdict::kUnavailable;
  cache.Store(k_old, "alice", down, 0);
  EXPECT_FALSE(cache.Find(k_old, 1).has_value());  // never cached
  cache.Store(k_old, "alice", ok, 0);
  EXPECT_EQ(cache.ClearUser("alice"), 1u);
  EXPECT_EQ(cache.size(), 0u);
}

TEST(DirectoryCacheTest, Bounded) {
  DirectoryCacheOptions o;
  o.max_entries = 160;
  DirectoryCache cache(o);
  DirectoryAnswer ok;
  ok.verdict = DirectoryAnswer::Verdict::kAccept;
  for (int i = 0; i < 10000; ++i) {
    DirectoryRequest r;
    r.user = "u" + std::to_string(i);
    cache.Store(DirectoryCache::MakeKey("d", 0, r), r.user, ok, 0);
  }
  EXPECT_LE(cache.size(), 160u);
}

}  // namespace
}  // namespace postern
