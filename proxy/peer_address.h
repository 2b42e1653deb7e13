#pragma once

// A client's address in 20 bytes (every session keeps one): the IP as 16
// bytes (IPv4 mapped into IPv6, ::ffff:a.b.c.d, so one key type serves both
// families) and the port. Text only when a log line or a backend needs it.

#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <string>

#include "absl/hash/hash.h"

namespace postern {

struct PeerAddress {
  std::array<uint8_t, 16> ip{};
  uint16_t port = 0;  // host order
  bool v4 = false;
  bool known = false;

  static PeerAddress From(const sockaddr* sa);
  // The local address of a connected socket (getsockname).
  static PeerAddress Local(int fd);

  std::string IpText() const;  // "192.0.2.1", "2001:db8::1" (no brackets); "" when unknown
  std::string Text() const;    // "192.0.2.1:993", "[2001:db8::1]:993"

  friend bool operator==(const PeerAddress& a, const PeerAddress& b) {
    return a.ip == b.ip && a.port == b.port && a.v4 == b.v4;
  }
};

// The IP alone, as a hash key (per-IP caps and counters).
struct IpKey {
  std::array<uint8_t, 16> ip{};
  friend bool operator==(const IpKey& a, const IpKey& b) { return a.ip == b.ip; }
  template <typename H>
  friend H AbslHashValue(H h, const IpKey& k) {
    return H::combine_contiguous(std::move(h), k.ip.data(), k.ip.size());
  }
};

inline IpKey KeyOf(const PeerAddress& a) { return IpKey{a.ip}; }

}  // namespace postern
