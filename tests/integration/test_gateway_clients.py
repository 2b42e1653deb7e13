"""Real POP3 clients download whole mailboxes through the POP3-to-IMAP
gateway (issue 8, "How it is shown", 4), over POP3S and POP3+STLS: fetchmail,
mpop, getmail6, curl and python's poplib. The store behind is an IMAP-only
Dovecot (protocols = imap: it has no POP3 server at all), so every byte comes
through the gateway. What each client delivers equals the Maildir's files
(line ends made CRLF, compared by sha256).

getmail6 6.18 (Debian 12) has no STLS for POP3: it runs over POP3S only."""

import hashlib
import os
import poplib
import re
import shutil
import socket
import subprocess
import unittest

import harness
import test_fetchmail
import test_poplib
import testbed
from harness import DIRECT, crlf

USERS = ("alice", "bob", "carol")


def eight_bit(user):
    return ("From: <ana@example.org>\nTo: %s <%s@example.test>\nSubject: 8-bit\n"
            "Message-ID: <%s.8bit@gateway.example>\nContent-Type: text/plain; charset=utf-8\n"
            "Content-Transfer-Encoding: 8bit\n\n" % (user, user, user)).encode() + \
        "Grüße aus Köln, ½ € and .a dot line\n.\n..\nend\n".encode("utf-8")


def hashes(messages):
    return sorted(hashlib.sha256(crlf(m)).hexdigest() for m in messages)


@unittest.skipIf(DIRECT, "the gateway is postern's")
class GatewayClientsTest(harness.BedTestCase):
    dovecot_kwargs = {"protocols": ("imap",),
                      "extra_messages": {"alice": [70000, 300000], "bob": [1 << 20]}}
    gateway_users = USERS

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        for u in USERS:
            cls.bed.dovecot.add_raw_message(u, eight_bit(u))

    def assert_mailbox(self, user, got, what, normalize=lambda m: m):
        want = self.messages(user)
        self.assertEqual(len(got), len(want), what)
        self.assertEqual(hashes(map(normalize, got)), hashes(map(normalize, want)), what)

    def assert_through_gateway(self, user, since):
        """The sessions since log offset `since` went through the gateway."""
        def ends():
            log = self.bed.postern.log()[since:]
            return [l for l in log.splitlines() if "session end" in l and "user=%s " % user in l]
        self.assertTrue(harness.wait_for(ends, timeout=5), self.bed.postern.log()[-2000:])
        ends = ends()
        for l in ends:
            self.assertIn("stage=gateway", l)

    def test_store_has_no_pop3(self):
        with self.assertRaises(OSError):
            socket.create_connection((harness.HOST, self.bed.dovecot.pop3_port), timeout=2).close()

    # --- fetchmail (tests/integration/test_fetchmail.py drives it) ---

    @unittest.skipUnless(shutil.which("fetchmail"), "fetchmail not installed")
    def test_fetchmail_pop3s(self):
        since = len(self.bed.postern.log())
        got, log = test_fetchmail.FetchmailTest.fetch(self, "pop3s", "POP3", "pop3s", "alice",
                                                      "ssl sslcertck")
        self.assert_mailbox("alice", got, log[-2000:])
        self.assert_through_gateway("alice", since)

    @unittest.skipUnless(shutil.which("fetchmail"), "fetchmail not installed")
    def test_fetchmail_stls(self):
        since = len(self.bed.postern.log())
        got, log = test_fetchmail.FetchmailTest.fetch(self, "stls", "POP3", "pop3", "bob",
                                                      'sslproto "tls1.2+" sslcertck')
        self.assertIn("STLS", log)
        self.assert_mailbox("bob", got, log[-2000:])
        self.assert_through_gateway("bob", since)

    # --- mpop (test_poplib.py drives it) ---

    @unittest.skipUnless(shutil.which("mpop"), "mpop not installed")
    def test_mpop_pop3s(self):
        since = len(self.bed.postern.log())
        got = test_poplib.PoplibTest.mpop(self, "pop3s", ["--tls=on", "--tls-starttls=off"],
                                          user="carol")
        self.assert_mailbox("carol", got, "mpop pop3s")
        self.assert_through_gateway("carol", since)

    @unittest.skipUnless(shutil.which("mpop"), "mpop not installed")
    def test_mpop_stls(self):
        since = len(self.bed.postern.log())
        got = test_poplib.PoplibTest.mpop(self, "pop3", ["--tls=on", "--tls-starttls=on"],
                                          user="alice")
        self.assert_mailbox("alice", got, "mpop stls")
        self.assert_through_gateway("alice", since)

    # --- getmail6 ---

    @unittest.skipUnless(shutil.which("getmail"), "getmail6 not installed")
    def test_getmail6_pop3s(self):
        home = os.path.join(self.bed.tmp, "getmail")
        md = os.path.join(home, "Maildir")
        for sub in ("cur", "new", "tmp"):
            os.makedirs(os.path.join(md, sub))
        # getmail6 refuses to deliver as root unless the destination names a
        # user (TESTBED.md); it then writes as that user.
        uid, gid = testbed._mail_ids()
        for root, dirs, _ in os.walk(home):
            for d in [root] + [os.path.join(root, x) for x in dirs]:
                os.chown(d, uid, gid)
        host, port = self.bed.addr("pop3s")
        rc = os.path.join(home, "getmailrc")
        with open(rc, "w") as f:
            f.write("[retriever]\n"
                    "type = SimplePOP3SSLRetriever\n"
                    "server = %s\nport = %d\nusername = bob\npassword = demo\n"
                    "ca_certs = %s\nssl_cert_hostname = localhost\n"
                    "[destination]\ntype = Maildir\npath = %s/\nuser = %s\n"
                    "[options]\nread_all = true\ndelete = false\nreceived = false\n"
                    "delivered_to = false\nmessage_log_syslog = false\nverbose = 2\n"
                    % (host, port, self.bed.cert, md, testbed.MAIL_USER))
        since = len(self.bed.postern.log())
        r = subprocess.run(["getmail", "--getmaildir", home, "--rcfile", rc], capture_output=True,
                           timeout=120, stdin=subprocess.DEVNULL, env=dict(os.environ, HOME=home))
        out = (r.stdout + r.stderr).decode(errors="replace")
        self.assertEqual(r.returncode, 0, out[-3000:])
        got = []
        for sub in ("new", "cur"):
            for name in sorted(os.listdir(os.path.join(md, sub))):
                with open(os.path.join(md, sub, name), "rb") as f:
                    got.append(f.read())
        self.assert_mailbox("bob", got, out[-2000:], normalize=without_return_path)
        self.assert_through_gateway("bob", since)

    # --- curl ---

    def curl(self, listener, scheme, user, path, *extra):
        host, port = self.bed.addr(listener)
        r = harness.run(["curl", "-sS", "--max-time", "60", "--cacert", self.bed.cert,
                         "-u", "%s:demo" % user] + list(extra)
                        + ["%s://%s:%d/%s" % (scheme, host, port, path)], timeout=90)
        self.assertEqual(r.returncode, 0, r.stderr.decode(errors="replace"))
        return r.stdout

    def curl_mailbox(self, listener, scheme, user, *extra):
        listing = self.curl(listener, scheme, user, "", *extra).decode().split("\r\n")
        numbers = [int(l.split()[0]) for l in listing if l]
        return [self.curl(listener, scheme, user, str(n), *extra) for n in numbers]

    def test_curl_pop3s(self):
        since = len(self.bed.postern.log())
        self.assert_mailbox("carol", self.curl_mailbox("pop3s", "pop3s", "carol"), "curl pop3s")
        self.assert_through_gateway("carol", since)

    def test_curl_stls(self):
        since = len(self.bed.postern.log())
        got = self.curl_mailbox("pop3", "pop3", "bob", "--ssl-reqd")
        self.assert_mailbox("bob", got, "curl stls")
        self.assert_through_gateway("bob", since)

    # --- python's poplib ---

    def poplib_mailbox(self, p, user):
        try:
            self.assertTrue(p.user(user).startswith(b"+OK"))
            self.assertTrue(p.pass_("demo").startswith(b"+OK"))
            count, size = p.stat()
            want = self.messages(user)
            self.assertEqual((count, size), (len(want), sum(len(crlf(m)) for m in want)))
            self.assertEqual(len(p.uidl()[1]), count)
            got = []
            for n in range(1, count + 1):
                resp, lines, octets = p.retr(n)
                self.assertTrue(resp.startswith(b"+OK %d octets" % len(crlf(want[n - 1]))), resp)
                got.append(b"\r\n".join(lines) + b"\r\n")
            return got
        finally:
            p.quit()

    def test_poplib_pop3s(self):
        host, port = self.bed.addr("pop3s")
        p = poplib.POP3_SSL(host, port, context=harness.client_context(self.bed.cert), timeout=30)
        since = len(self.bed.postern.log())
        self.assert_mailbox("alice", self.poplib_mailbox(p, "alice"), "poplib pop3s")
        self.assert_through_gateway("alice", since)

    def test_capa_after_login_is_the_gateways(self):
        # RFC 2449 section 5: CAPA after login lists what the gateway does
        # itself (TOP, UIDL, PIPELINING...), SASL as the listener offered it
        # before login (RFC 5034 section 3), and no STLS.
        host, port = self.bed.addr("pop3s")
        p = poplib.POP3_SSL(host, port, context=harness.client_context(self.bed.cert), timeout=30)
        before = p.capa()
        p.user("carol")
        p.pass_("demo")
        after = p.capa()
        for cap in ("TOP", "UIDL", "USER", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", "SASL"):
            self.assertIn(cap, after, after)
        self.assertEqual(after["SASL"], before["SASL"])
        self.assertNotIn("STLS", after)
        self.assertTrue(p.stat()[0] > 0)
        p.quit()

    def test_poplib_stls(self):
        host, port = self.bed.addr("pop3")
        p = poplib.POP3(host, port, timeout=30)
        self.assertIn("STLS", p.capa())
        p.stls(context=harness.client_context(self.bed.cert))
        caps = p.capa()  # after login too (RFC 2449): the gateway's own CAPA
        self.assertIn("USER", caps)
        since = len(self.bed.postern.log())
        self.assert_mailbox("carol", self.poplib_mailbox(p, "carol"), "poplib stls")
        self.assert_through_gateway("carol", since)


def without_return_path(data):
    """The message without Return-Path: header lines. getmail6 delivers a
    message with its own first line "Return-Path: <sender>" (the message's
    Return-Path, else "unknown") in place of the message's own; everything
    else is as retrieved."""
    data = crlf(data)
    end = data.find(b"\r\n\r\n")
    end = len(data) if end < 0 else end + 2
    head = re.sub(rb"(?m)^Return-Path: [^\r\n]*\r\n", b"", data[:end])
    return head + data[end:]


if __name__ == "__main__":
    unittest.main()
