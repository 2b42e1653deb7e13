"""IMAP through postern: python's imaplib and scripted sessions (RFC 3501,
RFC 9051, LITERAL+ RFC 7888, SASL-IR RFC 4959, STARTTLS RFC 2595, ID RFC 2971,
IDLE RFC 2177)."""

import base64
import imaplib
import re
import time
import unittest

import harness
from harness import DIRECT, b64, crlf, plain_ir, proxy_only

# A password that imaplib must quote (space, quote, backslash).
ODD_PASSWORD = 'p w"d\\x'


def capabilities(line):
    """Capability names from a "* CAPABILITY ..." line or a [CAPABILITY ...] code."""
    m = re.search(rb"\[CAPABILITY ([^\]]*)\]", line)
    text = m.group(1) if m else line.split(b"CAPABILITY", 1)[1]
    return set(text.decode().upper().split())


class ImaplibTest(harness.BedTestCase):
    dovecot_kwargs = {"passwords": {"dave": ODD_PASSWORD}}

    def ctx(self):
        return harness.client_context(self.bed.cert)

    def login(self, listener="imaps", user="alice", password="demo"):
        c = self.connect(listener)
        _, tagged = c.imap("L", "LOGIN %s %s" % (user, password))
        self.assertTrue(tagged.startswith(b"L OK"), tagged)
        return c

    # --- imaplib ---

    def test_imaplib_ssl_session(self):
        host, port = self.bed.addr("imaps")
        msgs = self.messages("alice")
        m = imaplib.IMAP4_SSL(host, port, ssl_context=self.ctx(), timeout=15)
        try:
            self.assertIn("AUTH=PLAIN", m.capabilities)
            typ, _ = m.login("alice", "demo")
            self.assertEqual(typ, "OK")
            typ, data = m.select("INBOX", readonly=True)
            self.assertEqual(typ, "OK")
            self.assertEqual(int(data[0]), len(msgs))
            typ, data = m.fetch("1", "(BODY.PEEK[])")
            self.assertEqual(typ, "OK")
            self.assertEqual(data[0][1], crlf(msgs[0]))
            typ, data = m.uid("FETCH", "1:*", "(RFC822.SIZE)")
            sizes = [int(re.search(rb"RFC822.SIZE (\d+)", d).group(1)) for d in data]
            self.assertEqual(sizes, [len(crlf(x)) for x in msgs])
            typ, _ = m.close()
            self.assertEqual(typ, "OK")
        finally:
            typ, _ = m.logout()
        self.assertEqual(typ, "BYE")

    def test_imaplib_quoted_password(self):
        host, port = self.bed.addr("imaps")
        m = imaplib.IMAP4_SSL(host, port, ssl_context=self.ctx(), timeout=15)
        try:
            typ, _ = m.login("dave", ODD_PASSWORD)  # imaplib sends a quoted string
            self.assertEqual(typ, "OK")
            typ, data = m.select("INBOX")
            self.assertEqual(typ, "OK")
        finally:
            m.logout()

    def test_imaplib_starttls(self):
        host, port = self.bed.addr("imap")
        m = imaplib.IMAP4(host, port, timeout=15)
        try:
            self.assertIn("STARTTLS", m.capabilities)
            typ, _ = m.starttls(ssl_context=self.ctx())
            self.assertEqual(typ, "OK")
            self.assertNotIn("STARTTLS", m.capabilities)
            self.assertIn("AUTH=PLAIN", m.capabilities)
            typ, _ = m.login("bob", "demo")
            self.assertEqual(typ, "OK")
            typ, data = m.select("INBOX", readonly=True)
            self.assertEqual(int(data[0]), len(self.messages("bob")))
        finally:
            m.logout()

    def test_imaplib_wrong_password(self):
        host, port = self.bed.addr("imaps")
        m = imaplib.IMAP4_SSL(host, port, ssl_context=self.ctx(), timeout=15)
        try:
            with self.assertRaisesRegex(imaplib.IMAP4.error, r"AUTHENTICATIONFAILED"):
                m.login("alice", "not-the-password")
        finally:
            m.shutdown()

    # --- LOGIN arguments ---

    def test_login_synchronizing_literals(self):
        c = self.connect("imaps")
        c.send("a LOGIN {4}\r\n")
        self.assertTrue(c.readline().startswith(b"+"))
        c.send("dave {%d}\r\n" % len(ODD_PASSWORD.encode()))
        self.assertTrue(c.readline().startswith(b"+"))
        c.send(ODD_PASSWORD.encode() + b"\r\n")
        _, tagged = c.imap_until_tagged("a")
        self.assertTrue(tagged.startswith(b"a OK"), tagged)
        _, tagged = c.imap("b", "SELECT INBOX")
        self.assertTrue(tagged.startswith(b"b OK"), tagged)

    def test_login_nonsynchronizing_literals(self):
        # RFC 7888: {n+} literals need no continuation; all in one write.
        c = self.connect("imaps")
        pw = ODD_PASSWORD.encode()
        c.send(b"a LOGIN {4+}\r\ndave {%d+}\r\n%s\r\nb NOOP\r\n" % (len(pw), pw))
        others, tagged = c.imap_until_tagged("a")
        self.assertFalse([o for o in others if o.startswith(b"+")], others)
        self.assertTrue(tagged.startswith(b"a OK"), tagged)
        _, tagged = c.imap_until_tagged("b")
        self.assertTrue(tagged.startswith(b"b OK"), tagged)

    def test_login_quoted_strings(self):
        c = self.connect("imaps")
        _, tagged = c.imap("a", 'LOGIN "dave" "p w\\"d\\\\x"')
        self.assertTrue(tagged.startswith(b"a OK"), tagged)

    def test_pipelined_session(self):
        msgs = self.messages("alice")
        c = self.connect("imaps")
        c.send(b"a1 LOGIN alice demo\r\na2 SELECT INBOX\r\na3 FETCH 1 BODY[]\r\n"
               b"a4 LOGOUT\r\n")
        _, t1 = c.imap_until_tagged("a1")
        self.assertTrue(t1.startswith(b"a1 OK"), t1)
        untagged, t2 = c.imap_until_tagged("a2")
        self.assertTrue(t2.startswith(b"a2 OK"), t2)
        self.assertIn(b"* %d EXISTS\r\n" % len(msgs), untagged)
        untagged, t3 = c.imap_until_tagged("a3")
        self.assertTrue(t3.startswith(b"a3 OK"), t3)
        body = crlf(msgs[0])
        fetched = [u for u in untagged if u.startswith(b"* 1 FETCH (")]
        self.assertEqual(len(fetched), 1, untagged)
        m = re.search(rb"BODY\[\] \{(\d+)\}\r\n", fetched[0])
        self.assertIsNotNone(m, fetched[0][:200])
        self.assertEqual(fetched[0][m.end():m.end() + int(m.group(1))], body)
        untagged, t4 = c.imap_until_tagged("a4")
        self.assertTrue(t4.startswith(b"a4 OK"), t4)
        self.assertTrue(any(u.startswith(b"* BYE") for u in untagged), untagged)
        self.assertTrue(c.closed_within(5))

    # --- AUTHENTICATE (RFC 3501 section 6.2.2, RFC 4959, RFC 4616) ---

    def test_authenticate_plain_initial_response(self):
        c = self.connect("imaps")
        _, tagged = c.imap("a", "AUTHENTICATE PLAIN " + plain_ir("alice", "demo"))
        self.assertTrue(tagged.startswith(b"a OK"), tagged)
        _, tagged = c.imap("b", "EXAMINE INBOX")
        self.assertTrue(tagged.startswith(b"b OK"), tagged)

    def test_authenticate_plain_continuation(self):
        c = self.connect("imaps")
        c.send("a AUTHENTICATE PLAIN\r\n")
        cont = c.readline()
        self.assertTrue(cont.startswith(b"+"), cont)
        c.send(plain_ir("bob", "demo") + "\r\n")
        _, tagged = c.imap_until_tagged("a")
        self.assertTrue(tagged.startswith(b"a OK"), tagged)
        _, tagged = c.imap("b", "EXAMINE INBOX")
        self.assertTrue(tagged.startswith(b"b OK"), tagged)

    def test_authenticate_plain_empty_initial_response(self):
        # RFC 4959 section 3: "=" is an empty initial response, which is not a
        # valid PLAIN message (RFC 4616 section 2): the exchange fails.
        c = self.connect("imaps")
        _, tagged = c.imap("a", "AUTHENTICATE PLAIN =")
        self.assertTrue(tagged.startswith(b"a BAD") or tagged.startswith(b"a NO"), tagged)
        _, tagged = c.imap("b", "LOGIN alice demo")
        self.assertTrue(tagged.startswith(b"b OK"), tagged)

    def test_authenticate_login(self):
        c = self.connect("imaps")
        c.send("a AUTHENTICATE LOGIN\r\n")
        p1 = c.readline()
        self.assertTrue(p1.startswith(b"+"), p1)
        self.assertEqual(base64.b64decode(p1[1:].strip()).lower(), b"username:")
        c.send(b64("carol") + "\r\n")
        p2 = c.readline()
        self.assertTrue(p2.startswith(b"+"), p2)
        self.assertEqual(base64.b64decode(p2[1:].strip()).lower(), b"password:")
        c.send(b64("demo") + "\r\n")
        _, tagged = c.imap_until_tagged("a")
        self.assertTrue(tagged.startswith(b"a OK"), tagged)
        _, tagged = c.imap("b", "EXAMINE INBOX")
        self.assertTrue(tagged.startswith(b"b OK"), tagged)

    def test_authenticate_cancel(self):
        c = self.connect("imaps")
        c.send("a AUTHENTICATE PLAIN\r\n")
        self.assertTrue(c.readline().startswith(b"+"))
        c.send("*\r\n")
        _, tagged = c.imap_until_tagged("a")
        self.assertTrue(tagged.startswith(b"a BAD"), tagged)
        # The session is still usable.
        _, tagged = c.imap("b", "LOGIN alice demo")
        self.assertTrue(tagged.startswith(b"b OK"), tagged)

    def test_authenticate_wrong_password(self):
        c = self.connect("imaps")
        _, tagged = c.imap("a", "AUTHENTICATE PLAIN " + plain_ir("alice", "wrong"))
        self.assertTrue(tagged.startswith(b"a NO [AUTHENTICATIONFAILED]"), tagged)

    def test_authenticate_bad_base64(self):
        c = self.connect("imaps")
        _, tagged = c.imap("a", "AUTHENTICATE PLAIN !!!notbase64!!!")
        self.assertTrue(tagged.startswith(b"a BAD") or tagged.startswith(b"a NO"), tagged)
        _, tagged = c.imap("b", "LOGIN alice demo")
        self.assertTrue(tagged.startswith(b"b OK"), tagged)

    def test_login_wrong_password(self):
        c = self.connect("imaps")
        _, tagged = c.imap("a", "LOGIN alice wrong")
        self.assertTrue(tagged.startswith(b"a NO [AUTHENTICATIONFAILED]"), tagged)
        _, tagged = c.imap("b", "LOGIN nosuchuser demo")
        self.assertTrue(tagged.startswith(b"b NO [AUTHENTICATIONFAILED]"), tagged)
        # A later correct login on the same connection works.
        _, tagged = c.imap("c", "LOGIN alice demo")
        self.assertTrue(tagged.startswith(b"c OK"), tagged)

    # --- CAPABILITY, greeting, ID ---

    def test_greeting(self):
        c = self.connect("imaps")
        self.assertRegex(c.greeting, rb"^\* OK \[CAPABILITY IMAP4rev1 [^\]]*\] .*\r\n$")
        self.assertIn("AUTH=PLAIN", capabilities(c.greeting))

    def test_capability_before_login_tls(self):
        c = self.connect("imaps")
        untagged, tagged = c.imap("a", "CAPABILITY")
        self.assertTrue(tagged.startswith(b"a OK"), tagged)
        caps = capabilities([u for u in untagged if u.startswith(b"* CAPABILITY")][0])
        for cap in ("IMAP4REV1", "AUTH=PLAIN", "AUTH=LOGIN", "SASL-IR", "LITERAL+", "ID",
                    "IDLE"):
            self.assertIn(cap, caps)
        self.assertNotIn("STARTTLS", caps)
        self.assertNotIn("LOGINDISABLED", caps)

    def test_capability_before_starttls(self):
        c = self.connect("imap")
        untagged, tagged = c.imap("a", "CAPABILITY")
        self.assertTrue(tagged.startswith(b"a OK"), tagged)
        caps = capabilities([u for u in untagged if u.startswith(b"* CAPABILITY")][0])
        self.assertIn("STARTTLS", caps)
        if not DIRECT:  # Dovecot treats loopback clients as secure
            self.assertIn("LOGINDISABLED", caps)
            self.assertNotIn("AUTH=PLAIN", caps)
        _, tagged = c.imap("b", "STARTTLS")
        self.assertTrue(tagged.startswith(b"b OK"), tagged)
        c.start_tls()
        untagged, tagged = c.imap("c", "CAPABILITY")
        caps = capabilities([u for u in untagged if u.startswith(b"* CAPABILITY")][0])
        self.assertNotIn("STARTTLS", caps)
        self.assertNotIn("LOGINDISABLED", caps)
        self.assertIn("AUTH=PLAIN", caps)
        _, tagged = c.imap("d", "LOGIN carol demo")
        self.assertTrue(tagged.startswith(b"d OK"), tagged)

    @proxy_only
    def test_login_refused_before_starttls(self):
        # RFC 3501 section 6.2.3 / RFC 8314: no cleartext password without TLS.
        c = self.connect("imap")
        _, tagged = c.imap("a", "LOGIN alice demo")
        self.assertTrue(tagged.startswith(b"a NO") or tagged.startswith(b"a BAD"), tagged)
        _, tagged = c.imap("b", "AUTHENTICATE PLAIN " + plain_ir("alice", "demo"))
        self.assertTrue(tagged.startswith(b"b NO") or tagged.startswith(b"b BAD"), tagged)

    def test_plaintext_listener_allows_login(self):
        c = self.connect("imap-plain")
        _, tagged = c.imap("a", "LOGIN alice demo")
        self.assertTrue(tagged.startswith(b"a OK"), tagged)
        _, tagged = c.imap("b", "EXAMINE INBOX")
        self.assertTrue(tagged.startswith(b"b OK"), tagged)

    def test_capability_after_login_is_the_backends(self):
        c = self.connect("imaps")
        pre = capabilities(c.greeting)
        _, tagged = c.imap("a", "LOGIN alice demo")
        self.assertTrue(tagged.startswith(b"a OK [CAPABILITY "), tagged)
        post = capabilities(tagged)
        self.assertIn("IDLE", post)
        # Dovecot's post-login list has extensions a login proxy never offers.
        for cap in ("SORT", "THREAD=REFERENCES", "UIDPLUS", "NAMESPACE"):
            self.assertIn(cap, post)
            self.assertNotIn(cap, pre)
        self.assertNotIn("AUTH=PLAIN", post)
        untagged, tagged = c.imap("b", "CAPABILITY")
        self.assertEqual(capabilities([u for u in untagged if u.startswith(b"* CAPABILITY")][0]),
                         post)

    def test_id_before_login(self):
        c = self.connect("imaps")
        untagged, tagged = c.imap("a", 'ID ("name" "integration-test" "version" "1")')
        self.assertTrue(tagged.startswith(b"a OK"), tagged)
        self.assertTrue(any(re.match(rb"\* ID (\(.*\)|NIL)\r\n", u) for u in untagged), untagged)
        untagged, tagged = c.imap("b", "ID NIL")
        self.assertTrue(tagged.startswith(b"b OK"), tagged)
        self.assertTrue(any(u.startswith(b"* ID ") for u in untagged), untagged)
        _, tagged = c.imap("c", "LOGIN alice demo")
        self.assertTrue(tagged.startswith(b"c OK"), tagged)

    def test_noop_and_unknown_before_login(self):
        c = self.connect("imaps")
        _, tagged = c.imap("a", "NOOP")
        self.assertTrue(tagged.startswith(b"a OK"), tagged)
        _, tagged = c.imap("b", "SELECT INBOX")  # not allowed before login
        self.assertTrue(tagged.startswith(b"b BAD") or tagged.startswith(b"b NO"), tagged)
        _, tagged = c.imap("c", "FROBNICATE")
        self.assertTrue(tagged.startswith(b"c BAD"), tagged)

    # --- IDLE ---

    def test_idle_sees_new_message(self):
        idler = self.login(user="carol")
        untagged, tagged = idler.imap("s", "SELECT INBOX")
        self.assertTrue(tagged.startswith(b"s OK"), tagged)
        exists = int(re.search(rb"\* (\d+) EXISTS", b"".join(untagged)).group(1))
        idler.send("i IDLE\r\n")
        cont = idler.readline()
        self.assertTrue(cont.startswith(b"+"), cont)

        msg = (b"From: <poster@example.org>\r\nTo: <carol@example.test>\r\n"
               b"Subject: appended while idling\r\n\r\nhello\r\n")
        writer = self.login(user="carol")
        writer.send(b"w APPEND INBOX {%d+}\r\n%s\r\n" % (len(msg), msg))
        _, tagged = writer.imap_until_tagged("w")
        self.assertTrue(tagged.startswith(b"w OK"), tagged)

        deadline = time.monotonic() + 15
        seen = []
        while time.monotonic() < deadline:
            line = idler.readline(timeout=max(0.1, deadline - time.monotonic()))
            seen.append(line)
            if line == b"* %d EXISTS\r\n" % (exists + 1):
                break
        else:
            self.fail("no EXISTS while idling: %r" % seen)
        idler.send("DONE\r\n")
        _, tagged = idler.imap_until_tagged("i")
        self.assertTrue(tagged.startswith(b"i OK"), tagged)
        _, tagged = idler.imap("f", "FETCH %d BODY.PEEK[]" % (exists + 1))
        self.assertTrue(tagged.startswith(b"f OK"), tagged)

    # --- LOGOUT ---

    def test_logout_after_login(self):
        c = self.login()
        untagged, tagged = c.imap("z", "LOGOUT")
        self.assertTrue(tagged.startswith(b"z OK"), tagged)
        self.assertTrue(any(u.startswith(b"* BYE") for u in untagged), untagged)
        self.assertTrue(c.closed_within(5))

    def test_logout_before_login(self):
        c = self.connect("imaps")
        untagged, tagged = c.imap("z", "LOGOUT")
        self.assertTrue(tagged.startswith(b"z OK"), tagged)
        self.assertTrue(any(u.startswith(b"* BYE") for u in untagged), untagged)
        self.assertTrue(c.closed_within(5))

    def test_many_sessions_at_once(self):
        conns = [self.login(user=u) for u in ("alice", "bob", "carol") * 4]
        for i, c in enumerate(conns):
            _, tagged = c.imap("n%d" % i, "NOOP")
            self.assertTrue(tagged.startswith(b"n%d OK" % i), tagged)
        for c in conns:
            c.close()


if __name__ == "__main__":
    unittest.main()
