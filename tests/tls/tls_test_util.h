#pragma once

// Shared helpers for the TLS tests: one self-signed certificate per test
// binary, and a client/server engine pair pumped against each other in
// memory.

#include <openssl/ssl.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "protocol/buffer.h"
#include "tls/tls_context.h"
#include "tls/tls_engine.h"

namespace postern {
namespace testing_tls {

struct TestCert {
  std::string cert_pem;
  std::string key_pem;
};

// A P-256 certificate for localhost and 127.0.0.1, made once.
inline const TestCert& Cert() {
  static const TestCert* cert = [] {
    auto* c = new TestCert;
    absl::Status s = MakeSelfSignedPem({"localhost", "127.0.0.1"}, &c->cert_pem, &c->key_pem);
    if (!s.ok()) ADD_FAILURE() << s;
    return c;
  }();
  return *cert;
}

// A fresh directory under the test temp dir, removed with its files.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = ::testing::TempDir() + "/postern_tls_XXXXXX";
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    if (mkdtemp(buf.data()) != nullptr) path_ = buf.data();
  }
  ~TempDir() {
    for (const std::string& f : files_) std::remove(f.c_str());
    if (!path_.empty()) rmdir(path_.c_str());
  }
  const std::string& path() const { return path_; }
  // (Re)writes `name` with `contents` and returns its path.
  std::string Write(const std::string& name, const std::string& contents) {
    std::string file = path_ + "/" + name;
    std::ofstream(file, std::ios::binary | std::ios::trunc) << contents;
    files_.push_back(file);
    return file;
  }

 private:
  std::string path_;
  std::vector<std::string> files_;
};

inline std::shared_ptr<const TlsContext> ServerContext(const TlsServerOptions& o = {}) {
  auto ctx = TlsContext::CreateServerFromPem(Cert().cert_pem, Cert().key_pem, o);
  EXPECT_TRUE(ctx.ok()) << ctx.status();
  return ctx.ok() ? *ctx : nullptr;
}

inline std::shared_ptr<const TlsContext> ClientContext(const TlsClientOptions& o = {}) {
  auto ctx = TlsContext::CreateClient(o);
  EXPECT_TRUE(ctx.ok()) << ctx.status();
  return ctx.ok() ? *ctx : nullptr;
}

// A client and a server engine over one pool, with a plaintext sink each.
class Pair {
 public:
  Pair(const TlsContext& server_ctx, const TlsContext& client_ctx, BufferPool& pool,
       const std::string& server_name = "localhost")
      : server(TlsEngine::CreateServer(server_ctx, pool)),
        client(TlsEngine::CreateClient(client_ctx, pool, server_name)),
        server_plain(pool),
        client_plain(pool) {}

  // Moves every ciphertext byte across, both ways, until neither side has
  // anything to send. Returns the last non-kOk result seen (kOk if none).
  TlsEngine::Result Pump() {
    TlsEngine::Result last = TlsEngine::Result::kOk;
    if (!started_) {
      started_ = true;
      last = client->Read(client_plain);  // sends the ClientHello
    }
    for (int round = 0; round < 64; ++round) {
      bool moved = false;
      if (!client->cipher_out().empty()) {
        moved = true;
        server->cipher_in().MoveFrom(client->cipher_out());
        TlsEngine::Result r = server->Read(server_plain);
        if (r != TlsEngine::Result::kOk) last = r;
        if (r == TlsEngine::Result::kError) return r;
      }
      if (!server->cipher_out().empty()) {
        moved = true;
        client->cipher_in().MoveFrom(server->cipher_out());
        TlsEngine::Result r = client->Read(client_plain);
        if (r != TlsEngine::Result::kOk) last = r;
        if (r == TlsEngine::Result::kError) return r;
      }
      if (!moved) break;
    }
    return last;
  }

  bool Handshake() {
    TlsEngine::Result r = Pump();
    return r == TlsEngine::Result::kOk && client->handshake_done() && server->handshake_done();
  }

  std::unique_ptr<TlsEngine> server;
  std::unique_ptr<TlsEngine> client;
  Buffer server_plain;
  Buffer client_plain;

 private:
  bool started_ = false;
};

}  // namespace testing_tls
}  // namespace postern
