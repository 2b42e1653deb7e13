#pragma once

// A connection on a listener behind a load balancer (listeners[].
// proxy_protocol): before anything else it must send a PROXY protocol v1 or
// v2 header (never guessed), and only from the listener's trusted_networks
// (the worker checks the socket's peer before this starts). The header is
// read here, bounded in size (protocol/proxy_header.h) and in time
// (kHeaderTimeout, "at least 3 s" per proxy-protocol.txt section 2); then the
// worker admits the connection with the client's address from the header,
// and whatever followed the header stays in the connection's input for the
// session (a TLS ClientHello, or nothing).

#include <chrono>
#include <functional>

#include "protocol/proxy_header.h"
#include "proxy/config.h"
#include "proxy/connection.h"
#include "proxy/peer_address.h"

namespace postern {

class ProxyAcceptor final : public ConnectionHandler {
 public:
  static constexpr std::chrono::milliseconds kHeaderTimeout{5'000};

  // `done` gets the connection and the client's address (from the header,
  // or the socket's for a LOCAL / UNKNOWN header), or a null connection
  // (already closed) and a reason.
  using Done = std::function<void(ConnectionPtr conn, const PeerAddress& client,
                                  const ProxyHeader* header, absl::string_view error)>;

  ProxyAcceptor(ConnectionPtr conn, const PeerAddress& socket_peer, uint64_t deadline_ms,
                Done done);
  void Start();
  // Past its deadline: gives up (the worker's sweep calls it).
  bool Expired(uint64_t now_ms);
  bool finished() const { return finished_; }

  // ConnectionHandler
  void OnData(Connection& c) override;
  void OnDrained(Connection&) override {}
  void OnEnd(Connection& c, absl::string_view reason) override;

 private:
  void Fail(absl::string_view why);

  ConnectionPtr conn_;
  PeerAddress socket_peer_;
  uint64_t deadline_ms_;
  Done done_;
  ProxyHeaderParser parser_;
  bool finished_ = false;
};

}  // namespace postern
