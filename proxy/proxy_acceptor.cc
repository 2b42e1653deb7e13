#include "proxy/proxy_acceptor.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace postern {

ProxyAcceptor::ProxyAcceptor(ConnectionPtr conn, const PeerAddress& socket_peer,
                             uint64_t deadline_ms, Done done)
    : conn_(std::move(conn)),
      socket_peer_(socket_peer),
      deadline_ms_(deadline_ms),
      done_(std::move(done)) {}

void ProxyAcceptor::Start() {
  conn_->set_handler(this);
  conn_->StartReading();
}

bool ProxyAcceptor::Expired(uint64_t now_ms) {
  if (finished_ || now_ms < deadline_ms_) return false;
  Fail("no PROXY header in time");
  return true;
}

void ProxyAcceptor::OnData(Connection& c) {
  if (finished_) return;
  switch (parser_.Feed(c.input())) {
    case ProxyHeaderParser::Status::kNeedMore:
      return;
    case ProxyHeaderParser::Status::kError:
      Fail(absl::StrCat("bad PROXY header: ", parser_.error().message()));
      return;
    case ProxyHeaderParser::Status::kDone:
      break;
  }
  finished_ = true;
  const ProxyHeader& h = parser_.header();
  PeerAddress client = socket_peer_;
  if (!h.use_socket_addresses()) {
    client.ip = h.source.ip;
    client.port = h.source.port;
    client.v4 = h.source.v4;
    client.known = true;
  }
  c.StopReading();
  c.set_handler(nullptr);
  Done done = std::move(done_);
  done(std::move(conn_), client, &h, "");
}

void ProxyAcceptor::OnEnd(Connection&, absl::string_view reason) {
  Fail(absl::StrCat("closed before the PROXY header: ", reason));
}

void ProxyAcceptor::Fail(absl::string_view why) {
  if (finished_) return;
  finished_ = true;
  conn_->Close(/*abort=*/true);
  conn_.release();  // Close() made it own itself
  Done done = std::move(done_);
  done(ConnectionPtr(), socket_peer_, nullptr, why);
}

}  // namespace postern
