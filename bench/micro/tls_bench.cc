// TLS through the memory BIOs of TlsEngine (tls/tls_engine.cc): records
// sealed by one engine and opened by the other, full handshakes (one
// certificate, or one chosen by SNI), and resumed handshakes.

#include <openssl/ssl.h>

#include <memory>
#include <string>
#include <vector>

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

// The same with a server of three ECDSA certificates chosen by SNI
// (tls_context.cc SelectCertificate): Arg(0) picks the default, which the
// SSL_CTX already holds; Arg(1) a wildcard one, put on the SSL with
// SSL_set_chain_and_key. Compare with BM_TlsFullHandshake.
void BM_TlsFullHandshakeSni(benchmark::State& state) {
  static const std::shared_ptr<const TlsContext>* const server_ctx = [] {
    std::vector<TlsCertificatePem> certs(3);
    const std::vector<std::string> names[3] = {
        {"localhost"}, {"mail.example.com"}, {"*.example.org"}};
    for (int i = 0; i < 3; ++i) {
      if (!MakeSelfSignedPem(names[i], &certs[i].chain_pem, &certs[i].key_pem).ok()) {
        return new std::shared_ptr<const TlsContext>();
      }
    }
    auto ctx = TlsContext::CreateServerFromPem(certs);
    return new std::shared_ptr<const TlsContext>(ctx.ok() ? *ctx : nullptr);
  }();
  const Contexts& c = GetContexts();
  if (*server_ctx == nullptr || c.client == nullptr) {
    state.SkipWithError("no TLS context");
    return;
  }
  const std::string name = state.range(0) == 0 ? "localhost" : "imap.example.org";
  BufferPool pool;
  Buffer client_plain(pool), server_plain(pool);
  for (auto _ : state) {
    auto server = TlsEngine::CreateServer(**server_ctx, pool);
    auto client = TlsEngine::CreateClient(*c.client, pool, name);
    client->Read(client_plain);
    if (!Pump(*client, *server, client_plain, server_plain) || !server->handshake_done() ||
        server->certificate() == nullptr || server->certificate()->index != 2 * state.range(0)) {
      state.SkipWithError("handshake failed");
      return;
    }
    client_plain.Clear();
    server_plain.Clear();
  }
}
BENCHMARK(BM_TlsFullHandshakeSni)->Arg(0)->Arg(1);

// A resumed TLS 1.3 handshake (PSK with X25519, the ticket opened and a new
// one sealed): Arg(0) with BoringSSL's own ticket keys, Arg(1) with
// TlsTicketKeys (tls_ticket_keys.cc HandleTicket).
void BM_TlsResumedHandshake(benchmark::State& state) {
  const Contexts& c = GetContexts();
  std::string cert, key;
  if (c.client == nullptr || !MakeSelfSignedPem({"localhost"}, &cert, &key).ok()) {
    state.SkipWithError("no TLS context");
    return;
  }
  TlsServerOptions o;
  if (state.range(0) == 1) o.ticket_keys = TlsTicketKeys::Ephemeral();
  auto server_ctx = TlsContext::CreateServerFromPem(cert, key, o);
  if (!server_ctx.ok()) {
    state.SkipWithError("no TLS context");
    return;
  }
  BufferPool pool;
  Buffer client_plain(pool), server_plain(pool);
  TlsSession session;
  {
    auto server = TlsEngine::CreateServer(**server_ctx, pool);
    auto client = TlsEngine::CreateClient(*c.client, pool, "localhost");
    client->Read(client_plain);
    Pump(*client, *server, client_plain, server_plain);
    server->Write("* OK\r\n");  // the TLS 1.3 ticket comes with the first data
    Pump(*client, *server, client_plain, server_plain);
    session = client->TakeSession();
  }
  if (session == nullptr) {
    state.SkipWithError("no session");
    return;
  }
  for (auto _ : state) {
    auto server = TlsEngine::CreateServer(**server_ctx, pool);
    auto client = TlsEngine::CreateClient(*c.client, pool, "localhost");
    client->OfferSession(session.get());
    client->Read(client_plain);
    if (!Pump(*client, *server, client_plain, server_plain) || !server->resumed()) {
      state.SkipWithError("not resumed");
      return;
    }
    client_plain.Clear();
    server_plain.Clear();
  }
}
BENCHMARK(BM_TlsResumedHandshake)->Arg(0)->Arg(1);

}  // namespace
}  // namespace postern
