#include "proxy/peer_address.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstring>

#include "absl/strings/str_cat.h"

namespace postern {

PeerAddress PeerAddress::From(const sockaddr* sa) {
  PeerAddress a;
  if (sa->sa_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(sa);
    a.ip[10] = 0xff;
    a.ip[11] = 0xff;
    std::memcpy(&a.ip[12], &in->sin_addr, 4);
    a.port = ntohs(in->sin_port);
    a.v4 = true;
    a.known = true;
  } else if (sa->sa_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(sa);
    std::memcpy(a.ip.data(), &in6->sin6_addr, 16);
    // An IPv4 client of a dual-stack ("[::]") listener arrives as
    // ::ffff:a.b.c.d (RFC 4291 section 2.5.5.2): it is that IPv4 address,
    // for logs, backends, auth services and PROXY headers alike (the bytes
    // are already the mapped form every PeerAddress keeps).
    a.v4 = IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr);
    a.port = ntohs(in6->sin6_port);
    a.known = true;
  }
  return a;
}

PeerAddress PeerAddress::Local(int fd) {
  sockaddr_storage ss;
  socklen_t len = sizeof(ss);
  if (fd < 0 || getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return PeerAddress();
  return From(reinterpret_cast<sockaddr*>(&ss));
}

std::string PeerAddress::IpText() const {
  if (!known) return "";
  char buf[INET6_ADDRSTRLEN] = {0};
  if (v4) {
    inet_ntop(AF_INET, &ip[12], buf, sizeof(buf));
  } else {
    inet_ntop(AF_INET6, ip.data(), buf, sizeof(buf));
  }
  return buf;
}

std::string PeerAddress::Text() const {
  if (!known) return "-";
  if (v4) return absl::StrCat(IpText(), ":", port);
  return absl::StrCat("[", IpText(), "]:", port);
}

}  // namespace postern
