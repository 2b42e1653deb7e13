// Connection over real loopback sockets on one libuv loop and its Poller:
// bulk transfer, watermarks, lingering close, hang-ups while paused, and every
// buffer back in the pool.

#include "proxy/connection.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include <string>

#include "gtest/gtest.h"
#include "proxy/uv_handle.h"

namespace postern {
namespace {

class Recorder : public ConnectionHandler {
 public:
  void OnData(Connection& c) override {
    received += c.input().ToString();
    c.input().Clear();
    if (pause_after > 0 && received.size() >= pause_after) {
      c.StopReading();
      pause_after = 0;
    }
  }
  void OnDrained(Connection&) override { ++drained; }
  void OnEnd(Connection&, absl::string_view r) override {
    ended = true;
    reason = std::string(r);
  }
  void OnConnected(Connection&, int status) override {
    connected = true;
    connect_status = status;
  }
  std::string received;
  size_t pause_after = 0;
  int drained = 0;
  bool ended = false;
  std::string reason;
  bool connected = false;
  int connect_status = -1;
};

class ConnectionTest : public ::testing::Test {
 protected:
  // The listening socket, watched through the same poller.
  struct Acceptor final : Poller::Watcher {
    void OnReady(uint32_t) override {
      int fd = accept4(listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      ASSERT_GE(fd, 0);
      self->accepted_ = Connection::Create(*self->poller_, self->pool_, &self->server_side_);
      self->accepted_->Adopt(fd);
      self->accepted_->SetSocketOptions();
      self->accepted_->StartReading();
    }
    ConnectionTest* self = nullptr;
    int listen_fd = -1;
  };

  void SetUp() override {
    uv_loop_init(&loop_);
    poller_ = std::make_unique<Poller>(&loop_);
    acceptor_.self = this;
    acceptor_.listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    ASSERT_GE(acceptor_.listen_fd, 0);
    sockaddr_in addr;
    uv_ip4_addr("127.0.0.1", 0, &addr);
    ASSERT_EQ(0, bind(acceptor_.listen_fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)));
    ASSERT_EQ(0, listen(acceptor_.listen_fd, 8));
    socklen_t len = sizeof(bound_);
    getsockname(acceptor_.listen_fd, reinterpret_cast<sockaddr*>(&bound_), &len);
    ASSERT_EQ(0, poller_->Add(acceptor_.listen_fd, EPOLLIN, &acceptor_));
    client_ = Connection::Create(*poller_, pool_, &client_side_);
    ASSERT_EQ(0, client_->Connect(reinterpret_cast<sockaddr*>(&bound_)));
    RunUntil([&] { return client_side_.connected && accepted_ != nullptr; });
    ASSERT_EQ(0, client_side_.connect_status);
    client_->SetSocketOptions();
    client_->StartReading();
  }

  void TearDown() override {
    client_.reset();
    accepted_.reset();
    poller_->Remove(acceptor_.listen_fd, &acceptor_);
    close(acceptor_.listen_fd);
    // Lingering closes finish when both ends are closed.
    uv_run(&loop_, UV_RUN_DEFAULT);
    EXPECT_EQ(0u, poller_->watched());
    poller_.reset();
    uv_run(&loop_, UV_RUN_DEFAULT);
    EXPECT_EQ(0, uv_loop_close(&loop_));
    EXPECT_EQ(0u, pool_.in_use());
  }

  template <typename F>
  void RunUntil(F done) {
    for (int i = 0; i < 100000 && !done(); ++i) uv_run(&loop_, UV_RUN_ONCE);
    ASSERT_TRUE(done());
  }

  uv_loop_t loop_;
  std::unique_ptr<Poller> poller_;
  Acceptor acceptor_;
  BufferPool pool_{4096};
  sockaddr_in bound_;
  Recorder client_side_, server_side_;
  ConnectionPtr client_, accepted_;
};

TEST_F(ConnectionTest, BulkTransferArrivesIntact) {
  std::string data;
  for (int i = 0; data.size() < 4 * 1024 * 1024; ++i) data += "line " + std::to_string(i) + "\r\n";
  Buffer b(pool_);
  b.Append(data);
  client_->Write(b);
  EXPECT_TRUE(b.empty());
  RunUntil([&] { return server_side_.received.size() == data.size(); });
  EXPECT_EQ(data, server_side_.received);
  EXPECT_EQ(data.size(), client_->bytes_out());
  EXPECT_EQ(data.size(), accepted_->bytes_in());
  RunUntil([&] { return client_->pending() == 0; });
}

TEST_F(ConnectionTest, WatermarksReportDrained) {
  client_->SetWatermarks(64 * 1024, 16 * 1024);
  server_side_.pause_after = 1;  // the peer stops reading: the kernel fills up
  std::string chunk(1024 * 1024, 'x');
  Buffer b(pool_);
  for (int i = 0; i < 16; ++i) {
    b.Append(chunk);
    client_->Write(b);
  }
  RunUntil([&] { return !server_side_.received.empty() && !accepted_->reading(); });
  RunUntil([&] { return client_->above_high_watermark(); });
  EXPECT_EQ(0, client_side_.drained);
  accepted_->StartReading();
  RunUntil([&] { return client_side_.drained > 0; });
  RunUntil([&] { return server_side_.received.size() == 16 * chunk.size(); });
}

TEST_F(ConnectionTest, PeerCloseEndsAndLastBytesArrive) {
  accepted_->Write("* BYE last words\r\n");
  accepted_.reset();  // flushes, half-closes, lingers
  RunUntil([&] { return client_side_.ended; });
  EXPECT_EQ("* BYE last words\r\n", client_side_.received);
  EXPECT_EQ("peer closed", client_side_.reason);
}

TEST_F(ConnectionTest, CloseWithUnreadInputStillDeliversLastLine) {
  // The client has sent bytes the server never reads; closing must not RST
  // away the server's final line.
  client_->Write(std::string(100000, 'p'));
  RunUntil([&] { return !server_side_.received.empty(); });
  accepted_->StopReading();
  client_->Write(std::string(100000, 'q'));
  accepted_->Write("-ERR bye\r\n");
  accepted_.reset();
  RunUntil([&] { return client_side_.ended; });
  EXPECT_EQ("-ERR bye\r\n", client_side_.received);
}

// What a closed connection still owes a peer that keeps reading is
// delivered, however long it takes: the linger starts over after each
// period in which the peer took some of it (a slow reader of the literal
// before a BYE). Without that, the kernel reset it at the first linger.
TEST_F(ConnectionTest, LingerWaitsForAPeerThatKeepsReading) {
  const std::string data(4 * 1024 * 1024, 'l');
  client_->StopReading();
  accepted_->Write(data);
  accepted_->Write("* BYE last words\r\n");
  accepted_->set_linger(100);
  accepted_.reset();
  // Bursts of 512 KiB, 60 ms apart: never a whole linger without progress,
  // and well over one linger in all.
  while (!client_side_.ended) {
    client_side_.pause_after = client_side_.received.size() + 512 * 1024;
    client_->StartReading();
    RunUntil([&] { return !client_->reading() || client_side_.ended; });
    usleep(60 * 1000);
  }
  EXPECT_EQ(data.size() + 18, client_side_.received.size());
  EXPECT_EQ("peer closed", client_side_.reason);
  EXPECT_TRUE(client_side_.received.ends_with("* BYE last words\r\n"));
}

// A peer that took nothing for a whole linger is given up on: reset.
TEST_F(ConnectionTest, LingerResetsAPeerThatStopsReading) {
  client_->StopReading();
  accepted_->Write(std::string(4 * 1024 * 1024, 's'));
  accepted_->set_linger(100);
  accepted_.reset();
  for (int i = 0; i < 6; ++i) {
    usleep(50 * 1000);
    uv_run(&loop_, UV_RUN_NOWAIT);
  }
  client_->StartReading();
  RunUntil([&] { return client_side_.ended; });
  EXPECT_LT(client_side_.received.size(), 4u * 1024 * 1024);
  EXPECT_NE("peer closed", client_side_.reason);
}

TEST_F(ConnectionTest, ConnectRefusedIsReported) {
  Recorder r;
  // A port nobody listens on: bind and close a socket to find one.
  int probe = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr;
  uv_ip4_addr("127.0.0.1", 0, &addr);
  ASSERT_EQ(0, bind(probe, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)));
  sockaddr_in dead;
  socklen_t len = sizeof(dead);
  getsockname(probe, reinterpret_cast<sockaddr*>(&dead), &len);
  close(probe);
  ConnectionPtr c = Connection::Create(*poller_, pool_, &r);
  ASSERT_EQ(0, c->Connect(reinterpret_cast<sockaddr*>(&dead)));
  RunUntil([&] { return r.connected; });
  EXPECT_EQ(UV_ECONNREFUSED, r.connect_status);
}

TEST_F(ConnectionTest, PeerHangsUpWhilePausedIsSeenOnResume) {
  // A paused socket is not watched at all (a hang-up would otherwise wake
  // the loop on every turn); reading again must still see the peer's end.
  client_->StopReading();
  accepted_->Write("last\r\n");
  accepted_.reset();
  for (int i = 0; i < 50; ++i) uv_run(&loop_, UV_RUN_NOWAIT);
  EXPECT_FALSE(client_side_.ended);
  client_->StartReading();
  RunUntil([&] { return client_side_.ended; });
  EXPECT_EQ("last\r\n", client_side_.received);
}

TEST_F(ConnectionTest, WriteToResetPeerFailsFromTheLoop) {
  // The peer resets (SO_LINGER 0 then close); our writes then fail, and the
  // failure is reported through OnEnd on a later turn, never from inside
  // Write().
  linger lg{1, 0};
  ASSERT_EQ(0, setsockopt(accepted_->fd(), SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)));
  accepted_->Close(/*abort=*/true);
  accepted_.reset();
  client_->StopReading();  // only the write side can notice
  for (int i = 0; i < 200 && !client_side_.ended; ++i) {
    client_->Write(std::string(64 * 1024, 'a'));
    EXPECT_FALSE(client_side_.ended);
    uv_run(&loop_, UV_RUN_NOWAIT);
  }
  RunUntil([&] { return client_side_.ended; });
  EXPECT_EQ(0u, client_side_.reason.find("write error: ")) << client_side_.reason;
  EXPECT_EQ(0u, client_->pending());
}

TEST_F(ConnectionTest, AnFdCopyOutlivingTheConnectionGetsItNoEvents) {
  // Each socket leaves the epoll set before its fd is closed. A copy of the
  // fd (dup'd, or inherited by a child) keeps the open file alive, and an
  // epoll registration belongs to the open file, not to the fd: were it left
  // to close(2), the poller would go on reporting the socket to a Connection
  // that is gone (a use after free; the ASan+UBSan build reports it).
  const int copy = dup(client_->fd());
  ASSERT_GE(copy, 0);
  const size_t before = poller_->watched();
  client_->Close(/*abort=*/true);
  client_.reset();
  for (int i = 0; i < 20; ++i) uv_run(&loop_, UV_RUN_NOWAIT);
  EXPECT_EQ(before - 1, poller_->watched());
  accepted_->Write(std::string(1000, 'x'));  // readable again, through the copy
  for (int i = 0; i < 50; ++i) uv_run(&loop_, UV_RUN_NOWAIT);
  EXPECT_EQ("", client_side_.received);  // nothing reached the closed connection
  char buf[2048];
  ssize_t got = 0;
  for (int i = 0; i < 100 && got < 1000; ++i) {
    ssize_t n = recv(copy, buf, sizeof(buf), MSG_DONTWAIT);
    if (n > 0) got += n;
    if (n <= 0) usleep(1000);
  }
  EXPECT_EQ(1000, got);  // the bytes were there for the copy all along
  close(copy);
}

// Worker::Listen sets TCP_NODELAY and keepalive on the listening socket only,
// relying on Linux copying them into every accepted socket.
TEST(ListenerOptionsTest, AcceptedSocketsInheritNoDelayAndKeepalive) {
  int l = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1, idle = 300;
  ASSERT_EQ(0, setsockopt(l, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)));
  ASSERT_EQ(0, setsockopt(l, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one)));
  ASSERT_EQ(0, setsockopt(l, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle)));
  sockaddr_in addr;
  uv_ip4_addr("127.0.0.1", 0, &addr);
  socklen_t len = sizeof(addr);
  ASSERT_EQ(0, bind(l, reinterpret_cast<sockaddr*>(&addr), len));
  ASSERT_EQ(0, listen(l, 1));
  ASSERT_EQ(0, getsockname(l, reinterpret_cast<sockaddr*>(&addr), &len));
  int c = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_EQ(0, connect(c, reinterpret_cast<sockaddr*>(&addr), len));
  int a = accept(l, nullptr, nullptr);
  ASSERT_GE(a, 0);
  int v = 0;
  socklen_t vl = sizeof(v);
  ASSERT_EQ(0, getsockopt(a, IPPROTO_TCP, TCP_NODELAY, &v, &vl));
  EXPECT_NE(0, v);
  ASSERT_EQ(0, getsockopt(a, SOL_SOCKET, SO_KEEPALIVE, &v, &vl));
  EXPECT_NE(0, v);
  ASSERT_EQ(0, getsockopt(a, IPPROTO_TCP, TCP_KEEPIDLE, &v, &vl));
  EXPECT_EQ(300, v);
  close(a);
  close(c);
  close(l);
}

}  // namespace
}  // namespace postern
