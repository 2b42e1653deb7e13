"""POP3 through postern: python's poplib, mpop and scripted sessions (RFC 1939,
CAPA RFC 2449, AUTH RFC 5034, STLS RFC 2595, SASL PLAIN RFC 4616)."""

import base64
import os
import poplib
import shutil
import subprocess
import unittest

import harness
from harness import DIRECT, b64, crlf, dot_stuff, plain_ir, proxy_only


def capa_lines(conn):
    """Sends CAPA on a Conn and returns its capability lines."""
    first = conn.pop3("CAPA")
    assert first.startswith(b"+OK"), first
    return [l.decode().upper() for l in conn.pop3_multiline()]


def capa_names(lines):
    return {l.split()[0] for l in lines if l}


def sasl_mechs(lines):
    for l in lines:
        parts = l.split()
        if parts and parts[0] == "SASL":
            return set(parts[1:])
    return set()


class PoplibTest(harness.BedTestCase):

    def ctx(self):
        return harness.client_context(self.bed.cert)

    def pop3s(self):
        host, port = self.bed.addr("pop3s")
        return poplib.POP3_SSL(host, port, context=self.ctx(), timeout=15)

    def login(self, listener="pop3s", user="alice", password="demo"):
        c = self.connect(listener)
        self.assertTrue(c.greeting.startswith(b"+OK"), c.greeting)
        r = c.pop3("USER " + user)
        self.assertTrue(r.startswith(b"+OK"), r)
        r = c.pop3("PASS " + password)
        self.assertTrue(r.startswith(b"+OK"), r)
        return c

    # --- poplib ---

    def test_poplib_ssl_session(self):
        msgs = self.messages("alice")
        p = self.pop3s()
        try:
            self.assertTrue(p.getwelcome().startswith(b"+OK"))
            self.assertTrue(p.user("alice").startswith(b"+OK"))
            self.assertTrue(p.pass_("demo").startswith(b"+OK"))
            count, size = p.stat()
            self.assertEqual(count, len(msgs))
            self.assertEqual(size, sum(len(crlf(m)) for m in msgs))
            resp, listing, _ = p.list()
            self.assertTrue(resp.startswith(b"+OK"))
            self.assertEqual([tuple(map(int, l.split())) for l in listing],
                             [(i + 1, len(crlf(m))) for i, m in enumerate(msgs)])
            for n in range(1, len(msgs) + 1):
                resp, lines, octets = p.retr(n)
                self.assertTrue(resp.startswith(b"+OK"))
                self.assertEqual(b"\r\n".join(lines) + b"\r\n", crlf(msgs[n - 1]), "msg %d" % n)
            resp, lines, _ = p.top(1, 0)
            self.assertIn(b"Subject: Quarterly report", lines)
            resp, uids, _ = p.uidl()
            self.assertEqual(len(uids), len(msgs))
        finally:
            self.assertTrue(p.quit().startswith(b"+OK"))

    def test_poplib_stls(self):
        host, port = self.bed.addr("pop3")
        p = poplib.POP3(host, port, timeout=15)
        try:
            self.assertIn("STLS", p.capa())
            self.assertTrue(p.stls(context=self.ctx()).startswith(b"+OK"))
            caps = p.capa()
            self.assertNotIn("STLS", caps)
            self.assertIn("USER", caps)
            p.user("bob")
            p.pass_("demo")
            self.assertEqual(p.stat()[0], len(self.messages("bob")))
        finally:
            p.quit()

    def test_poplib_wrong_password(self):
        p = self.pop3s()
        try:
            p.user("alice")
            with self.assertRaises(poplib.error_proto) as cm:
                p.pass_("wrong")
            self.assertTrue(cm.exception.args[0].startswith(b"-ERR [AUTH]"), cm.exception.args)
        finally:
            p.close()

    def test_poplib_apop_refused(self):
        # No APOP: postern needs the password itself to log in at the backend.
        p = self.pop3s()
        try:
            with self.assertRaises(poplib.error_proto):
                p._shortcmd("APOP alice 0123456789abcdef0123456789abcdef")
        finally:
            p.close()

    # --- CAPA (RFC 2449) ---

    def test_capa_tls(self):
        c = self.connect("pop3s")
        lines = capa_lines(c)
        names = capa_names(lines)
        for cap in ("TOP", "UIDL", "RESP-CODES", "PIPELINING", "AUTH-RESP-CODE", "USER", "SASL"):
            self.assertIn(cap, names)
        self.assertNotIn("STLS", names)
        self.assertTrue({"PLAIN", "LOGIN"} <= sasl_mechs(lines), lines)

    def test_capa_before_and_after_stls(self):
        c = self.connect("pop3")
        lines = capa_lines(c)
        self.assertIn("STLS", capa_names(lines))
        if not DIRECT:  # Dovecot treats loopback clients as secure
            self.assertNotIn("USER", capa_names(lines))
            self.assertNotIn("SASL", capa_names(lines))
        r = c.pop3("STLS")
        self.assertTrue(r.startswith(b"+OK"), r)
        c.start_tls()
        lines = capa_lines(c)
        names = capa_names(lines)
        self.assertNotIn("STLS", names)
        self.assertIn("USER", names)
        self.assertTrue({"PLAIN", "LOGIN"} <= sasl_mechs(lines), lines)
        self.assertTrue(c.pop3("USER carol").startswith(b"+OK"))
        self.assertTrue(c.pop3("PASS demo").startswith(b"+OK"))
        self.assertTrue(c.pop3("STAT").startswith(b"+OK %d " % len(self.messages("carol"))))

    @proxy_only
    def test_user_refused_before_stls(self):
        c = self.connect("pop3")
        r = c.pop3("USER alice")
        if r.startswith(b"+OK"):  # refusing at PASS is fine too
            r = c.pop3("PASS demo")
        self.assertTrue(r.startswith(b"-ERR"), r)
        r = c.pop3("AUTH PLAIN " + plain_ir("alice", "demo"))
        self.assertTrue(r.startswith(b"-ERR"), r)

    def test_plaintext_listener_allows_login(self):
        c = self.login("pop3-plain", "bob")
        self.assertTrue(c.pop3("STAT").startswith(b"+OK"))

    # --- AUTH (RFC 5034) ---

    def test_auth_plain_initial_response(self):
        c = self.connect("pop3s")
        r = c.pop3("AUTH PLAIN " + plain_ir("alice", "demo"))
        self.assertTrue(r.startswith(b"+OK"), r)
        self.assertTrue(c.pop3("STAT").startswith(b"+OK %d " % len(self.messages("alice"))))

    def test_auth_plain_continuation(self):
        c = self.connect("pop3s")
        r = c.pop3("AUTH PLAIN")
        self.assertTrue(r.startswith(b"+ ") or r == b"+\r\n", r)
        r = c.pop3(plain_ir("bob", "demo"))
        self.assertTrue(r.startswith(b"+OK"), r)
        self.assertTrue(c.pop3("STAT").startswith(b"+OK"))

    def test_auth_login(self):
        c = self.connect("pop3s")
        r = c.pop3("AUTH LOGIN")
        self.assertTrue(r.startswith(b"+ "), r)
        self.assertEqual(base64.b64decode(r[2:].strip()).lower(), b"username:")
        r = c.pop3(b64("carol"))
        self.assertTrue(r.startswith(b"+ "), r)
        self.assertEqual(base64.b64decode(r[2:].strip()).lower(), b"password:")
        r = c.pop3(b64("demo"))
        self.assertTrue(r.startswith(b"+OK"), r)
        self.assertTrue(c.pop3("STAT").startswith(b"+OK"))

    def test_auth_cancel(self):
        c = self.connect("pop3s")
        r = c.pop3("AUTH PLAIN")
        self.assertTrue(r.startswith(b"+"), r)
        r = c.pop3("*")
        self.assertTrue(r.startswith(b"-ERR"), r)
        # Still usable.
        self.assertTrue(c.pop3("USER alice").startswith(b"+OK"))
        self.assertTrue(c.pop3("PASS demo").startswith(b"+OK"))

    def test_auth_wrong_password(self):
        c = self.connect("pop3s")
        r = c.pop3("AUTH PLAIN " + plain_ir("alice", "wrong"))
        self.assertTrue(r.startswith(b"-ERR [AUTH]"), r)
        r = c.pop3("USER alice")
        self.assertTrue(r.startswith(b"+OK"), r)
        r = c.pop3("PASS wrong")
        self.assertTrue(r.startswith(b"-ERR [AUTH]"), r)

    def test_auth_without_mechanism_lists_them(self):
        # RFC 5034 section 4 (and common practice): "AUTH" alone lists mechanisms.
        c = self.connect("pop3s")
        r = c.pop3("AUTH")
        if r.startswith(b"+OK"):
            mechs = {l.decode().upper() for l in c.pop3_multiline()}
            self.assertTrue({"PLAIN", "LOGIN"} <= mechs, mechs)
        else:
            self.assertTrue(r.startswith(b"-ERR"), r)
        self.assertTrue(c.pop3("USER alice").startswith(b"+OK"))

    # --- transactions through the relay ---

    def test_retr_is_dot_stuffed(self):
        msgs = self.messages("bob")
        c = self.login(user="bob")
        r = c.pop3("RETR 3")  # sample 3 has lines starting with "."
        self.assertTrue(r.startswith(b"+OK"), r)
        raw = c.read_until(b"\r\n.\r\n")
        self.assertIn(b"\r\n..leading dot line", raw)
        self.assertEqual(raw, dot_stuff(crlf(msgs[2])) + b".\r\n")

    def test_pipelined_commands(self):
        # RFC 2449 PIPELINING: several commands in one write.
        msgs = self.messages("carol")
        c = self.connect("pop3s")
        c.send(b"USER carol\r\nPASS demo\r\nSTAT\r\nLIST 1\r\nQUIT\r\n")
        self.assertTrue(c.readline().startswith(b"+OK"))
        self.assertTrue(c.readline().startswith(b"+OK"))
        self.assertEqual(c.readline(), b"+OK %d %d\r\n" % (len(msgs),
                                                          sum(len(crlf(m)) for m in msgs)))
        self.assertEqual(c.readline(), b"+OK 1 %d\r\n" % len(crlf(msgs[0])))
        self.assertTrue(c.readline().startswith(b"+OK"))
        self.assertTrue(c.closed_within(5))

    def test_quit_before_login(self):
        c = self.connect("pop3s")
        self.assertTrue(c.pop3("QUIT").startswith(b"+OK"))
        self.assertTrue(c.closed_within(5))

    # --- mpop, a real client ---

    def mpop(self, listener, tls_args, user="alice"):
        out = os.path.join(self.bed.tmp, "mpop-%s-%s" % (listener, user))
        for sub in ("cur", "new", "tmp"):
            os.makedirs(os.path.join(out, sub), exist_ok=True)
        host, port = self.bed.addr(listener)
        pwfile = os.path.join(self.bed.tmp, "mpop-pw")
        with open(pwfile, "w") as f:
            f.write("demo\n")
        cmd = ["mpop", "--host=" + host, "--port=%d" % port, "--user=" + user,
               "--passwordeval=cat " + pwfile, "--auth=user", "--keep=on",
               "--received-header=off", "--only-new=off", "--uidls-file=" + out + ".uidls",
               "--deliver=maildir," + out, "--tls-trust-file=" + self.bed.cert,
               "--timeout=20"] + tls_args
        r = subprocess.run(cmd, capture_output=True, timeout=60,
                           env=dict(os.environ, HOME=self.bed.tmp), stdin=subprocess.DEVNULL)
        self.assertEqual(r.returncode, 0, r.stderr.decode(errors="replace"))
        got = []
        for sub in ("new", "cur"):
            for name in sorted(os.listdir(os.path.join(out, sub))):
                with open(os.path.join(out, sub, name), "rb") as f:
                    got.append(f.read())
        return got

    @unittest.skipUnless(shutil.which("mpop"), "mpop not installed")
    def test_mpop_pop3s(self):
        got = self.mpop("pop3s", ["--tls=on", "--tls-starttls=off"])
        self.assertEqual(sorted(got), sorted(self.messages("alice")))

    @unittest.skipUnless(shutil.which("mpop"), "mpop not installed")
    def test_mpop_stls(self):
        got = self.mpop("pop3", ["--tls=on", "--tls-starttls=on"], user="bob")
        self.assertEqual(sorted(got), sorted(self.messages("bob")))


if __name__ == "__main__":
    unittest.main()
