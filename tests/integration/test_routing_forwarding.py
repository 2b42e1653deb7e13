"""Issue 10, what the backend is told about the client, and proxies in a row.

Real parts: Dovecot t trusts loopback (login_trusted_networks 127.0.0.0/8,
the testbed's default); Dovecot u trusts nobody's forwarding
(login_trusted_networks 192.0.2.0/24) but has `haproxy = yes` listeners
(haproxy_trusted_networks 127.0.0.0/8): what u logs as rip came from a
PROXY header or is the TCP peer itself. HAProxy 2.6 sends PROXY v2
(`send-proxy-v2`) to a postern listener with proxy_protocol. Postern F
(the front, one worker) routes users statically; postern I sits behind F
(its listener trusts F's address); postern L is its own backend; postern S
routes by shards (a passwd-file `shard=` picks the shard). Fake backends
(fakes.FakeBackend) record the IMAP ID they are sent and the address
connections come from.

Clients connect from 127.0.0.5 (to postern) and 127.0.0.7 (to HAProxy).
"""

import os
import re
import shutil
import socket
import struct
import time
import unittest

import fakes
import harness
import routehelp
import testbed

USERS = ("alice", "bob", "carol", "dave", "erin", "frank", "gina", "hank")
CLIENT = "127.0.0.5"
VIA_HAPROXY = "127.0.0.7"
UNTRUSTED = "127.0.0.9"
SOURCES = ["127.0.0.2", "127.0.0.3"]


def fake_imap_ok(s):
    """A fake IMAP store that lets anyone in and records what it is sent."""
    caps = b"IMAP4rev1 ID LITERAL+ SASL-IR AUTH=PLAIN"
    s.peer = s.sock.getpeername()[0]
    s.send(b"* OK [CAPABILITY " + caps + b"] Fake ready.\r\n")
    while True:
        cmd = s.imap_command(60)
        if cmd is None:
            return
        tag, name, _ = fakes.parse_imap_command(cmd)
        if name == b"CAPABILITY":
            s.send(b"* CAPABILITY " + caps + b"\r\n" + tag + b" OK Done.\r\n")
        elif name == b"ID":
            s.send(b"* ID NIL\r\n" + tag + b" OK Trusted ID completed.\r\n")
        elif name in (b"LOGIN", b"AUTHENTICATE"):
            s.send(tag + b" OK [CAPABILITY " + caps + b"] Logged in.\r\n")
        elif name == b"LOGOUT":
            s.send(b"* BYE Bye.\r\n" + tag + b" OK Done.\r\n")
            return
        else:
            s.send(tag + b" OK Fine.\r\n")


def id_field(session, key):
    """The value of an ID field the fake was sent, or None."""
    for cmd in session.commands:
        _, name, rest = fakes.parse_imap_command(cmd)
        if name == b"ID":
            m = re.search(rb'"%s" "([^"]*)"' % key.encode(), rest, re.I)
            if m:
                return m.group(1).decode()
    return None


def proxy_v2(src, dst, sport, dport):
    """A PROXY protocol v2 header, TCP over IPv4 (PP 2.2)."""
    body = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport)
    return (b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x11]) + struct.pack("!H", len(body))
            + body)


class ForwardingTest(routehelp.FleetTestCase):

    @classmethod
    def setUpClass(cls):
        if shutil.which('haproxy') is None:
            raise unittest.SkipTest("haproxy is not installed (deploy/install-deps.sh)")
        super().setUpClass()
        hp_imap, hp_pop3 = testbed.free_port(), testbed.free_port()
        cls.start_fleet({
            "t": {},
            "u": {"extra_conf": "login_trusted_networks = 192.0.2.0/24\n"
                  + routehelp.haproxy_listeners_conf(hp_imap, hp_pop3)},
        }, users=USERS)
        t, u = cls.dovecots["t"], cls.dovecots["u"]
        cls.fake = fakes.FakeBackend(fake_imap_ok)
        cls.addClassCleanup(cls.fake.close)
        cls.fake_inner = fakes.FakeBackend(fake_imap_ok)
        cls.addClassCleanup(cls.fake_inner.close)
        fake_entry = {"name": "fake", "address": "127.0.0.1", "imap_port": cls.fake.port,
                      "pop3_port": cls.fake.port}

        # I: behind F. Its "imap" listener trusts F's address, "imap-untrusted" does not.
        inner = routehelp.base_config(
            cls.cert, cls.key,
            [routehelp.backend_entry("t", t),
             {"name": "fake-inner", "address": "127.0.0.1", "imap_port": cls.fake_inner.port,
              "pop3_port": cls.fake_inner.port}],
            workers=1,
            routing={"default_backend": "t",
                     "users": {"erin": "fake-inner", "gina": "fake-inner", "frank": "t"}})
        inner["listeners"][0]["trusted_networks"] = ["127.0.0.0/8"]
        inner["listeners"].append({"name": "imap-untrusted", "protocol": "imap",
                                   "address": "127.0.0.1:0", "tls": "none",
                                   "allow_plaintext_auth": True})
        i = cls.start_postern("I", inner)

        # F: the front.
        front = routehelp.base_config(
            cls.cert, cls.key,
            [routehelp.backend_entry("t", t),
             {"name": "u-pp", "address": "127.0.0.1", "imap_port": hp_imap,
              "pop3_port": hp_pop3, "send_proxy": "v2"},
             routehelp.backend_entry("u", u, source_addresses=SOURCES),
             dict(fake_entry, source_addresses=SOURCES),
             {"name": "inner", "address": "127.0.0.1", "imap_port": i.port("imap"),
              "pop3_port": i.port("pop3")},
             {"name": "inner-untrusted", "address": "127.0.0.1",
              "imap_port": i.port("imap-untrusted"), "pop3_port": i.port("pop3")}],
            workers=1,
            routing={"default_backend": "t", "users": {
                "alice": "t", "bob": "u-pp", "carol": "u", "dave": "fake", "erin": "inner",
                "frank": "inner", "gina": "inner-untrusted"}})
        for proto in ("imap", "pop3"):
            front["listeners"].append({"name": proto + "-pp", "protocol": proto,
                                       "address": "127.0.0.1:0", "tls": "none",
                                       "allow_plaintext_auth": True, "proxy_protocol": True,
                                       "trusted_networks": ["127.0.0.1/32"]})
        f = cls.start_postern("F", front)
        cls.haproxy = testbed.HAProxy(os.path.join(cls.tmp, "haproxy"), {
            "imap": ("127.0.0.1", f.port("imap-pp")), "pop3": ("127.0.0.1", f.port("pop3-pp"))})
        cls.addClassCleanup(cls.haproxy.stop)

        # S: routes by shards (a passwd-file names the shard).
        passwd = os.path.join(cls.tmp, "shards.passwd")
        with open(passwd, "w") as fh:
            fh.write("dave:{PLAIN}demo::::::shard=src\nbob:{PLAIN}demo::::::shard=pp\n")
        cls.fake_s = fakes.FakeBackend(fake_imap_ok)
        cls.addClassCleanup(cls.fake_s.close)
        shards = routehelp.base_config(
            cls.cert, cls.key,
            [{"name": "fake-s", "address": "127.0.0.1", "imap_port": cls.fake_s.port,
              "pop3_port": cls.fake_s.port, "source_addresses": SOURCES},
             {"name": "u-pp", "address": "127.0.0.1", "imap_port": hp_imap,
              "pop3_port": hp_pop3, "send_proxy": "v2"}],
            workers=1,
            shards=[{"name": "src", "backends": ["fake-s"]}, {"name": "pp", "backends": ["u-pp"]}],
            health={"check_interval": "300ms", "check_timeout": "500ms", "failures": 2},
            directories=[{"name": "pw", "type": "passwd-file", "path": passwd}],
            directory="pw")
        cls.start_postern("S", shards)

    # --- helpers ---

    def login_via(self, p, proto, user, source_ip=CLIENT, listener=None, addr=None):
        """A login through postern p (or addr); returns (Login, session end fields)."""
        post = self.posterns[p]
        since = len(post.log())
        addr = addr or post.address(listener or proto)
        fn = routehelp.imap_login if proto == "imap" else routehelp.pop3_login
        login = fn(addr, user, source_ip=source_ip)
        self.assertTrue(login.ok, (p, proto, user, login.answer))
        end = harness.wait_for(
            lambda: [f for f in routehelp.session_ends(post, since) if f.get("user") == user],
            timeout=10)
        self.assertTrue(end, "no session end for %s on %s" % (user, p))
        return login, end[-1]

    def dovecot_login(self, name, proto, user, since, session=None, timeout=10.0):
        """The Login line Dovecot `name` logged for user (the session given,
        or the last one after offset since)."""
        d = self.dovecots[name]

        def find():
            ls = [l for l in routehelp.dovecot_logins(d, since)
                  if l["user"] == user and l["protocol"] == proto
                  and (session is None or l["session"] == session)]
            return ls[-1] if ls else None
        line = harness.wait_for(find, timeout=timeout)
        self.assertIsNotNone(line, "Dovecot %s logged no %s login of %s:\n%s"
                             % (name, proto, user, d.log()[since:][-2000:]))
        return line

    # --- 7: the real client told to the backend ---

    def test_imap_id_gives_dovecot_the_client_address(self):
        since = len(self.dovecots["t"].log())
        _, end = self.login_via("F", "imap", "alice")
        line = self.dovecot_login("t", "imap", "alice", since, end["session"])
        self.assertEqual(line["rip"], CLIENT, line)

    def test_pop3_xclient_gives_dovecot_the_client_address(self):
        since = len(self.dovecots["t"].log())
        _, end = self.login_via("F", "pop3", "alice")
        line = self.dovecot_login("t", "pop3", "alice", since, end["session"])
        self.assertEqual(line["rip"], CLIENT, line)

    def test_proxy_v2_to_backend_gives_dovecot_the_client_address(self):
        # u ignores IMAP ID and XCLIENT from postern (not in its
        # login_trusted_networks): the address can only come from the header.
        for proto in ("imap", "pop3"):
            since = len(self.dovecots["u"].log())
            self.login_via("F", proto, "bob")
            line = self.dovecot_login("u", proto, "bob", since)
            self.assertEqual(line["rip"], CLIENT, (proto, line))
        # The control: without the header u logs postern's own address.
        since = len(self.dovecots["u"].log())
        self.login_via("F", "imap", "carol")
        line = self.dovecot_login("u", "imap", "carol", since)
        self.assertIn(line["rip"], SOURCES, line)
        self.assert_logged(self.posterns["F"],
                           r"backend u did not confirm that it trusts Postern's IMAP ID")
        # Once per backend, however many logins went there.
        self.login_via("F", "imap", "carol")
        self.assertEqual(self.posterns["F"].log().count("backend u did not confirm"), 1)

    def test_haproxy_in_front_client_address_reaches_dovecot(self):
        f = self.posterns["F"]
        for proto in ("imap", "pop3"):
            since = len(self.dovecots["t"].log())
            addr = ("127.0.0.1", self.haproxy.port(proto))
            _, end = self.login_via("F", proto, "alice", source_ip=VIA_HAPROXY, addr=addr)
            self.assertTrue(end["client"].startswith(VIA_HAPROXY + ":"), end)
            line = self.dovecot_login("t", proto, "alice", since, end["session"])
            self.assertEqual(line["rip"], VIA_HAPROXY, (proto, line))
        # A v1 header from a trusted peer works too.
        c = socket.create_connection(f.address("imap-pp"), timeout=10)
        try:
            c.sendall(b"PROXY TCP4 127.0.0.8 127.0.0.1 5555 143\r\n")
            self.assertTrue(c.recv(4096).startswith(b"* OK"))
        finally:
            c.close()
        self.assert_logged(f, r"session end: .* client=127\.0\.0\.8:5555 ")

    def test_proxy_header_from_untrusted_address_refused(self):
        f = self.posterns["F"]
        since = len(f.log())
        c = socket.socket()
        c.bind((UNTRUSTED, 0))
        c.settimeout(5)
        c.connect(f.address("imap-pp"))
        try:
            c.sendall(proxy_v2("127.0.0.66", "127.0.0.1", 4444, 143))
            try:
                data = c.recv(4096)
            except ConnectionResetError:
                data = b""
            self.assertEqual(data, b"", "an untrusted PROXY sender got an answer")
        finally:
            c.close()
        self.assert_logged(f, r"the latest: a PROXY listener's peer is not trusted", since)
        self.assertNotIn("127.0.0.66", f.log()[since:])

    def test_proxy_listener_without_header_closed_after_timeout(self):
        f = self.posterns["F"]
        since = len(f.log())
        c = socket.create_connection(f.address("imap-pp"), timeout=15)
        t0 = time.monotonic()
        try:
            try:
                data = c.recv(4096)
            except ConnectionResetError:
                data = b""
            dt = time.monotonic() - t0
        finally:
            c.close()
        print("\nno PROXY header: closed after %.1f s" % dt)
        self.assertEqual(data, b"", "a greeting before the PROXY header")
        self.assertGreater(dt, 4.0)
        self.assertLess(dt, 8.0)
        self.assert_logged(f, r"PROXY header refused: listener=imap-pp .*no PROXY header in time",
                           since)

    def test_malformed_proxy_header_refused(self):
        f = self.posterns["F"]
        for bad in (b"PROXY TCP4 1.2.3.4 nonsense\r\n",
                    b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x05abcde",
                    b"GET / HTTP/1.0\r\n\r\n"):
            since = len(f.log())
            c = socket.create_connection(f.address("imap-pp"), timeout=5)
            t0 = time.monotonic()
            try:
                c.sendall(bad)
                try:
                    data = c.recv(4096)
                except ConnectionResetError:
                    data = b""
            finally:
                c.close()
            self.assertEqual(data, b"", bad)
            self.assertLess(time.monotonic() - t0, 2.0, bad)
            self.assert_logged(f, r"PROXY header refused: .*bad PROXY header", since)

    # --- 6: postern behind postern, and a loop ---

    def test_postern_behind_postern_ttl_and_client_address(self):
        # erin: F -> I -> fake-inner. F sends x-proxy-ttl 4 (proxy_ttl 5);
        # I takes it and sends 3, with the client's address kept.
        self.fake_inner.reset(fake_imap_ok)
        self.login_via("F", "imap", "erin")
        s = self.fake_inner.sessions[-1]
        self.assertEqual(id_field(s, "x-proxy-ttl"), "3")
        self.assertEqual(id_field(s, "x-originating-ip"), CLIENT)
        # gina reaches I on a listener that does not trust F: I starts over.
        self.fake_inner.reset(fake_imap_ok)
        self.login_via("F", "imap", "gina")
        s = self.fake_inner.sessions[-1]
        self.assertEqual(id_field(s, "x-proxy-ttl"), "4")
        self.assertEqual(id_field(s, "x-originating-ip"), "127.0.0.1")
        # frank: F -> I -> Dovecot t, which logs the client two hops away.
        since = len(self.dovecots["t"].log())
        self.login_via("F", "imap", "frank")
        line = self.dovecot_login("t", "imap", "frank", since)
        self.assertEqual(line["rip"], CLIENT, line)

    def test_trusting_backends_are_not_reported_as_distrustful(self):
        # F cannot tell from the ID answer whether a backend trusts it:
        # Dovecot 2.3.19 (Debian 12) answers "ID completed." either way,
        # later ones "Trusted ID completed." when they do; postern I says
        # "ID completed." too. Dovecot t and postern I trust F here.
        f = self.posterns["F"]
        since = len(f.log())
        self.login_via("F", "imap", "alice")
        self.login_via("F", "imap", "erin")
        time.sleep(0.2)
        # At most the info-level hint, never a warning.
        self.assertNotRegex(f.log()[since:], r"(?i)\[warn[a-z]*\][^\n]*trust")

    def loop_postern(self, proto):
        port = testbed.free_port()
        cfg = routehelp.base_config(
            self.cert, self.key,
            [{"name": "self", "address": "127.0.0.1", "imap_port": port, "pop3_port": port}],
            workers=1, proxy_ttl=3, timeouts={"backend_login": "5s"},
            limits={"max_connections_per_ip": None})  # the default, 256
        cfg["listeners"] = [{"name": "loop", "protocol": proto, "address": "127.0.0.1:%d" % port,
                             "tls": "none", "allow_plaintext_auth": True,
                             "trusted_networks": ["127.0.0.0/8"]}]
        return self.start_postern("L-" + proto, cfg)

    def test_imap_loop_ends_with_unavailable(self):
        p = self.loop_postern("imap")
        t0 = time.monotonic()
        login = routehelp.imap_login(p.address("loop"), "alice", source_ip=CLIENT)
        dt = time.monotonic() - t0
        self.assertTrue(re.match(rb"a NO \[UNAVAILABLE\]", login.answer), login.answer)
        self.assertLess(dt, 3.0)
        self.assert_logged(p, r"proxy loop: x-proxy-ttl reached 0")
        time.sleep(0.5)
        hops = len(routehelp.session_ends(p))
        print("\nIMAP loop: NO [UNAVAILABLE] after %.2f s, %d sessions" % (dt, hops))
        self.assertLessEqual(hops, 5)

    def test_pop3_loop_ends_with_unavailable(self):
        # POP3 carries the hop count in XCLIENT TTL=: postern offers
        # [XCLIENT] to trusted_networks peers and takes ADDR/PORT/TTL.
        p = self.loop_postern("pop3")
        t0 = time.monotonic()
        login = routehelp.pop3_login(p.address("loop"), "alice", source_ip=CLIENT, timeout=30)
        dt = time.monotonic() - t0
        time.sleep(0.5)
        hops = len(routehelp.session_ends(p))
        print("\nPOP3 loop: %r after %.2f s, %d sessions" % (login.answer, dt, hops))
        self.assertTrue(login.answer.startswith(b"-ERR [SYS/TEMP]"), login.answer)
        self.assertLessEqual(hops, 5, "the POP3 loop took %d hops" % hops)

    # --- 9: source addresses rotate ---

    def test_source_addresses_alternate(self):
        self.fake.reset(fake_imap_ok)
        for _ in range(6):
            self.login_via("F", "imap", "dave")
        peers = [s.peer for s in self.fake.sessions]
        print("\nfake backend saw connections from %s" % peers)
        self.assertEqual(peers, [SOURCES[i % 2] for i in range(6)]
                         if peers[0] == SOURCES[0] else [SOURCES[(i + 1) % 2] for i in range(6)])
        # Dovecot u does not trust postern's forwarding: it logs the TCP peer.
        since = len(self.dovecots["u"].log())
        for _ in range(4):
            self.login_via("F", "imap", "carol")
        time.sleep(0.3)
        harness.wait_for(lambda: len([l for l in routehelp.dovecot_logins(self.dovecots["u"], since)
                                      if l["user"] == "carol"]) >= 4, timeout=10)
        rips = [l["rip"] for l in routehelp.dovecot_logins(self.dovecots["u"], since)
                if l["user"] == "carol"]
        print("Dovecot u logged rip=%s" % rips)
        self.assertEqual(len(rips), 4)
        self.assertEqual(sorted(set(rips)), SOURCES)
        self.assertTrue(all(rips[i] != rips[i + 1] for i in range(3)), rips)

    def test_source_addresses_alternate_for_a_shard_replica(self):
        self.fake_s.reset(fake_imap_ok)
        for _ in range(6):
            self.login_via("S", "imap", "dave")
        peers = [s.peer for s in self.fake_s.sessions
                 if any(b"LOGIN" in c for c in s.commands)]
        print("\nfake shard replica saw logins from %s" % peers)
        self.assertEqual(len(peers), 6)
        self.assertTrue(all(peers[i] != peers[i + 1] for i in range(5)), peers)

    def test_health_checks_of_a_send_proxy_backend(self):
        # S checks u-pp (send_proxy: v2) every 300 ms: a check must speak
        # PROXY too, or Dovecot's haproxy listener never greets it.
        s = self.posterns["S"]
        since = len(s.log())
        time.sleep(2.0)
        self.assertNotRegex(s.log()[since:], r"backend down: backend=u-pp")
        login, _ = self.login_via("S", "imap", "bob")
        self.assertTrue(login.ok)


if __name__ == "__main__":
    unittest.main()
