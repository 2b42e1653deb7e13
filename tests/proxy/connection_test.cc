// Connection over real loopback sockets on one libuv loop: bulk transfer,
// watermarks, lingering close, and every buffer back in the pool.

#include "proxy/connection.h"

#include <netinet/in.h>
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
  void SetUp() override {
    uv_loop_init(&loop_);
    uv_tcp_init(&loop_, server_.Allocate());
    server_.get()->data = this;
    sockaddr_in addr;
    uv_ip4_addr("127.0.0.1", 0, &addr);
    ASSERT_EQ(0, uv_tcp_bind(server_.get(), reinterpret_cast<sockaddr*>(&addr), 0));
    ASSERT_EQ(
        0,
        uv_listen(reinterpret_cast<uv_stream_t*>(server_.get()), 8, [](uv_stream_t* s, int status) {
          auto* self = static_cast<ConnectionTest*>(s->data);
          ASSERT_EQ(0, status);
          self->accepted_ = Connection::Create(&self->loop_, self->pool_, &self->server_side_);
          ASSERT_EQ(0, uv_accept(s, reinterpret_cast<uv_stream_t*>(self->accepted_->tcp())));
          self->accepted_->SetSocketOptions();
          self->accepted_->StartReading();
        }));
    int len = sizeof(bound_);
    uv_tcp_getsockname(server_.get(), reinterpret_cast<sockaddr*>(&bound_), &len);
    client_ = Connection::Create(&loop_, pool_, &client_side_);
    ASSERT_EQ(0, client_->Connect(reinterpret_cast<sockaddr*>(&bound_)));
    RunUntil([&] { return client_side_.connected && accepted_ != nullptr; });
    ASSERT_EQ(0, client_side_.connect_status);
    client_->SetSocketOptions();
    client_->StartReading();
  }

  void TearDown() override {
    client_.reset();
    accepted_.reset();
    server_.Reset();
    // Lingering closes finish when both ends are closed.
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
  BufferPool pool_{4096};
  UvHandle<uv_tcp_t> server_;
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

TEST_F(ConnectionTest, ConnectRefusedIsReported) {
  Recorder r;
  // A port nobody listens on: bind and close a socket to find one.
  uv_tcp_t probe;
  uv_tcp_init(&loop_, &probe);
  sockaddr_in addr;
  uv_ip4_addr("127.0.0.1", 0, &addr);
  uv_tcp_bind(&probe, reinterpret_cast<sockaddr*>(&addr), 0);
  sockaddr_in dead;
  int len = sizeof(dead);
  uv_tcp_getsockname(&probe, reinterpret_cast<sockaddr*>(&dead), &len);
  uv_close(reinterpret_cast<uv_handle_t*>(&probe), nullptr);
  uv_run(&loop_, UV_RUN_NOWAIT);
  ConnectionPtr c = Connection::Create(&loop_, pool_, &r);
  ASSERT_EQ(0, c->Connect(reinterpret_cast<sockaddr*>(&dead)));
  RunUntil([&] { return r.connected; });
  EXPECT_NE(0, r.connect_status);
}

}  // namespace
}  // namespace postern
