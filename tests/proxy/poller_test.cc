// Poller: the one uv_poll handle over the workers' epoll set. What happens
// when libuv reports a failed poll (status < 0): libuv has stopped the handle
// by then (src/unix/poll.c stops it before calling back with an error), so
// the Poller must log the failure at most once a minute, start watching
// again and still dispatch what is ready. libuv only reports such a failure
// for conditions a peer cannot cause on an epoll fd, so the test plays
// libuv's part through a test peer; the sockets, the epoll set and the loop
// are real.

#include "proxy/poller.h"

#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include <memory>
#include <string>

#include "gtest/gtest.h"
#include "tests/log_capture.h"

namespace postern {

class PollerTestPeer {
 public:
  // What libuv does on a failed poll: stop the handle, then call back.
  static void FailPoll(Poller& p, int status) {
    uv_poll_stop(p.handle_.get());
    Poller::OnPoll(p.handle_.get(), status, 0);
  }
  static bool HandleActive(Poller& p) { return uv_is_active(p.handle_.handle()) != 0; }
};

namespace {

struct Reader final : Poller::Watcher {
  void OnReady(uint32_t events) override {
    ++calls;
    last_events = events;
    char buf[256];
    ssize_t n;
    while ((n = read(fd, buf, sizeof(buf))) > 0) got.append(buf, static_cast<size_t>(n));
  }
  int fd = -1;
  int calls = 0;
  uint32_t last_events = 0;
  std::string got;
};

using test_util::LogCapture;

class PollerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    uv_loop_init(&loop_);
    poller_ = std::make_unique<Poller>(&loop_);
    ASSERT_EQ(0, socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds_));
    reader_.fd = fds_[0];
    ASSERT_EQ(0, poller_->Add(fds_[0], EPOLLIN | EPOLLRDHUP, &reader_));
  }
  void TearDown() override {
    poller_->Remove(fds_[0], &reader_);
    close(fds_[0]);
    close(fds_[1]);
    EXPECT_FALSE(PollerTestPeer::HandleActive(*poller_));  // nothing watched: idle
    poller_.reset();
    uv_run(&loop_, UV_RUN_DEFAULT);
    EXPECT_EQ(0, uv_loop_close(&loop_));
  }
  void Send(const std::string& s) {
    ASSERT_EQ(static_cast<ssize_t>(s.size()), write(fds_[1], s.data(), s.size()));
  }
  template <typename F>
  void RunUntil(F done) {
    for (int i = 0; i < 1000 && !done(); ++i) uv_run(&loop_, UV_RUN_NOWAIT);
    ASSERT_TRUE(done());
  }

  uv_loop_t loop_;
  std::unique_ptr<Poller> poller_;
  int fds_[2] = {-1, -1};
  Reader reader_;
};

TEST_F(PollerTest, ReadySocketsAreDispatchedThroughTheLoop) {
  Send("one");
  RunUntil([&] { return reader_.got == "one"; });
  EXPECT_TRUE(PollerTestPeer::HandleActive(*poller_));
}

TEST_F(PollerTest, AFailedPollIsLoggedWatchedAgainAndWhatIsReadyStillDispatched) {
  LogCapture log;
  Send("before");
  PollerTestPeer::FailPoll(*poller_, UV_EBADF);
  // The failed callback itself asked the epoll set: the ready socket was
  // served at once, not left for a poll that libuv had stopped.
  EXPECT_EQ("before", reader_.got);
  EXPECT_EQ(1, reader_.calls);
  EXPECT_TRUE(PollerTestPeer::HandleActive(*poller_));
  EXPECT_EQ(1, log.Count("[error] poller: uv_poll reported bad file descriptor")) << log.text();
  // The handle really polls again: later data arrives through the loop.
  Send("after");
  RunUntil([&] { return reader_.got == "beforeafter"; });
}

TEST_F(PollerTest, FailuresAreLoggedAtMostOnceAMinuteWithTheirCount) {
  LogCapture log;
  for (int i = 0; i < 5; ++i) PollerTestPeer::FailPoll(*poller_, UV_EIO);
  EXPECT_EQ(1, log.Count("poller: uv_poll reported")) << log.text();
  EXPECT_EQ(1, log.Count("(1 time(s) since the last report)")) << log.text();
  EXPECT_TRUE(PollerTestPeer::HandleActive(*poller_));
  Send("x");
  RunUntil([&] { return reader_.got == "x"; });
}

TEST_F(PollerTest, AFailureWithNothingWatchedLeavesTheHandleIdle) {
  poller_->Remove(fds_[0], &reader_);
  EXPECT_FALSE(PollerTestPeer::HandleActive(*poller_));
  PollerTestPeer::FailPoll(*poller_, UV_EBADF);
  // Not restarted: an idle poll handle would keep the worker's loop alive.
  EXPECT_FALSE(PollerTestPeer::HandleActive(*poller_));
  ASSERT_EQ(0, poller_->Add(fds_[0], EPOLLIN | EPOLLRDHUP, &reader_));
  EXPECT_TRUE(PollerTestPeer::HandleActive(*poller_));
}

TEST_F(PollerTest, AHangUpIsReportedAlsoWithNoEventsAsked) {
  ASSERT_EQ(0, poller_->Modify(fds_[0], 0, &reader_));
  close(fds_[1]);
  fds_[1] = -1;
  RunUntil([&] { return reader_.calls > 0; });
  EXPECT_NE(0u, reader_.last_events & EPOLLHUP);
}

}  // namespace
}  // namespace postern
