#include "proxy/peer_address.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

#include "gtest/gtest.h"

namespace postern {
namespace {

PeerAddress V4(const char* ip, uint16_t port) {
  sockaddr_in in{};
  in.sin_family = AF_INET;
  in.sin_port = htons(port);
  EXPECT_EQ(inet_pton(AF_INET, ip, &in.sin_addr), 1);
  return PeerAddress::From(reinterpret_cast<sockaddr*>(&in));
}

PeerAddress V6(const char* ip, uint16_t port) {
  sockaddr_in6 in6{};
  in6.sin6_family = AF_INET6;
  in6.sin6_port = htons(port);
  EXPECT_EQ(inet_pton(AF_INET6, ip, &in6.sin6_addr), 1);
  return PeerAddress::From(reinterpret_cast<sockaddr*>(&in6));
}

TEST(PeerAddressTest, TextOfEachFamily) {
  const PeerAddress a = V4("192.0.2.1", 993);
  EXPECT_TRUE(a.known);
  EXPECT_TRUE(a.v4);
  EXPECT_EQ(a.IpText(), "192.0.2.1");
  EXPECT_EQ(a.Text(), "192.0.2.1:993");
  const PeerAddress b = V6("2001:db8::1", 143);
  EXPECT_FALSE(b.v4);
  EXPECT_EQ(b.IpText(), "2001:db8::1");
  EXPECT_EQ(b.Text(), "[2001:db8::1]:143");
  const PeerAddress unknown;
  EXPECT_EQ(unknown.IpText(), "");
  EXPECT_EQ(unknown.Text(), "-");
}

TEST(PeerAddressTest, AMappedAddressIsTheIpv4Address) {
  // What a dual-stack listener's accept() gives for an IPv4 client
  // (RFC 4291 section 2.5.5.2): the same address as the IPv4 socket's, in
  // text, in equality and as a per-IP key.
  const PeerAddress mapped = V6("::ffff:192.0.2.1", 993);
  const PeerAddress plain = V4("192.0.2.1", 993);
  EXPECT_TRUE(mapped.v4);
  EXPECT_EQ(mapped.IpText(), "192.0.2.1");
  EXPECT_EQ(mapped.Text(), "192.0.2.1:993");
  EXPECT_EQ(mapped, plain);
  EXPECT_EQ(KeyOf(mapped), KeyOf(plain));
  // Not every address with zeros in front is mapped.
  EXPECT_FALSE(V6("::192.0.2.1", 1).v4);
  EXPECT_FALSE(V6("::1", 1).v4);
}

TEST(PeerAddressTest, AnIpv4ClientOfADualStackSocket) {
  const int lfd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (lfd < 0) GTEST_SKIP() << "no IPv6 sockets here";
  const int off = 0;
  ASSERT_EQ(setsockopt(lfd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof(off)), 0);
  sockaddr_in6 any{};
  any.sin6_family = AF_INET6;
  any.sin6_addr = in6addr_any;
  if (bind(lfd, reinterpret_cast<sockaddr*>(&any), sizeof(any)) != 0) {
    close(lfd);
    GTEST_SKIP() << "cannot bind [::]";
  }
  ASSERT_EQ(listen(lfd, 1), 0);
  socklen_t len = sizeof(any);
  ASSERT_EQ(getsockname(lfd, reinterpret_cast<sockaddr*>(&any), &len), 0);

  const int cfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(cfd, 0);
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = any.sin6_port;
  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(connect(cfd, reinterpret_cast<sockaddr*>(&to), sizeof(to)), 0);
  sockaddr_storage peer{};
  len = sizeof(peer);
  const int afd = accept(lfd, reinterpret_cast<sockaddr*>(&peer), &len);
  ASSERT_GE(afd, 0);
  EXPECT_EQ(peer.ss_family, AF_INET6);  // the kernel's mapped form

  const PeerAddress client = PeerAddress::From(reinterpret_cast<sockaddr*>(&peer));
  EXPECT_TRUE(client.v4);
  EXPECT_EQ(client.IpText(), "127.0.0.1");
  const PeerAddress local = PeerAddress::Local(afd);
  EXPECT_TRUE(local.v4);
  EXPECT_EQ(local.Text(), "127.0.0.1:" + std::to_string(ntohs(any.sin6_port)));
  close(afd);
  close(cfd);
  close(lfd);
}

}  // namespace
}  // namespace postern
