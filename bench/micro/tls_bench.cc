// TLS through the memory BIOs of TlsEngine (tls/tls_engine.cc): records
// sealed by one engine and opened by the other, and full handshakes.

#include <memory>
#include <string>

#include "benchmark/benchmark.h"
#include "protocol/buffer.h"
#include "tls/tls_context.h"
#include "tls/tls_engine.h"

namespace postern {
namespace {

struct Contexts {
  std::shared_ptr<const TlsContext> server;
  std::shared_ptr<const TlsContext> client;
};

// One ECDSA P-256 certificate and both contexts, made once.
const Contexts& GetContexts() {
  static const Contexts* contexts = [] {
    auto* c = new Contexts;
    std::string cert, key;
    if (!MakeSelfSignedPem({"localhost"}, &cert, &key).ok()) return c;
    auto server = TlsContext::CreateServerFromPem(cert, key);
    auto client = TlsContext::CreateClient({});
    if (server.ok()) c->server = *server;
    if (client.ok()) c->client = *client;
    return c;
  }();
  return *contexts;
}

// Moves ciphertext both ways until both engines are quiet.
bool Pump(TlsEngine& client, TlsEngine& server, Buffer& client_plain, Buffer& server_plain) {
  for (int round = 0; round < 16; ++round) {
    bool moved = false;
    if (!client.cipher_out().empty()) {
      moved = true;
      server.cipher_in().MoveFrom(client.cipher_out());
      if (server.Read(server_plain) == TlsEngine::Result::kError) return false;
    }
    if (!server.cipher_out().empty()) {
      moved = true;
      client.cipher_in().MoveFrom(server.cipher_out());
      if (client.Read(client_plain) == TlsEngine::Result::kError) return false;
    }
    if (!moved) return true;
  }
  return true;
}

// TlsEngine::Write -> SSL_write -> BIO write into cipher_out, then
// TlsEngine::Read -> BIO read from cipher_in -> SSL_read into a pool Buffer
// (TLS 1.3, AES-128-GCM with hardware AES, else ChaCha20-Poly1305).
void BM_TlsRecordRoundTrip(benchmark::State& state) {
  const Contexts& c = GetContexts();
  if (c.server == nullptr || c.client == nullptr) {
    state.SkipWithError("no TLS context");
    return;
  }
  BufferPool pool;
  auto server = TlsEngine::CreateServer(*c.server, pool);
  auto client = TlsEngine::CreateClient(*c.client, pool, "localhost");
  Buffer client_plain(pool), server_plain(pool), out(pool);
  client->Read(client_plain);
  if (!Pump(*client, *server, client_plain, server_plain) || !client->handshake_done()) {
    state.SkipWithError("handshake failed");
    return;
  }
  const std::string payload(static_cast<size_t>(state.range(0)), 'x');
  for (auto _ : state) {
    out.Append(payload);
    client->Write(out);
    server->cipher_in().MoveFrom(client->cipher_out());
    server->Read(server_plain);
    benchmark::DoNotOptimize(server_plain.size());
    server_plain.Clear();
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * state.range(0));
}
BENCHMARK(BM_TlsRecordRoundTrip)->Arg(64)->Arg(4096)->Arg(65536);

// A full TLS 1.3 handshake (ECDSA P-256 signature, X25519 key share) between
// a fresh client and server engine: SSL_new, both flights through the BIOs,
// SSL_free.
void BM_TlsFullHandshake(benchmark::State& state) {
  const Contexts& c = GetContexts();
  if (c.server == nullptr || c.client == nullptr) {
    state.SkipWithError("no TLS context");
    return;
  }
  BufferPool pool;
  Buffer client_plain(pool), server_plain(pool);
  for (auto _ : state) {
    auto server = TlsEngine::CreateServer(*c.server, pool);
    auto client = TlsEngine::CreateClient(*c.client, pool, "localhost");
    client->Read(client_plain);
    if (!Pump(*client, *server, client_plain, server_plain) || !server->handshake_done()) {
      state.SkipWithError("handshake failed");
      return;
    }
    client_plain.Clear();
    server_plain.Clear();
  }
}
BENCHMARK(BM_TlsFullHandshake);

}  // namespace
}  // namespace postern
