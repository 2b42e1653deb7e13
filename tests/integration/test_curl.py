"""curl, a real client, through postern: IMAPS, POP3S, IMAP STARTTLS and POP3
STLS (RFC 2595), and a refused login."""

import re
import unittest

import harness
from harness import crlf


class CurlTest(harness.BedTestCase):

    def curl(self, url, user, password="demo", *extra):
        cmd = ["curl", "-sS", "--max-time", "30", "--cacert", self.bed.cert,
               "-u", "%s:%s" % (user, password)] + list(extra) + [url]
        return harness.run(cmd, timeout=60)

    def url(self, scheme, listener, path=""):
        host, port = self.bed.addr(listener)
        return "%s://%s:%d/%s" % (scheme, host, port, path)

    def assert_ok(self, r):
        self.assertEqual(r.returncode, 0, "curl failed: %s" % r.stderr.decode(errors="replace"))

    # --- IMAP over implicit TLS ---

    def test_imaps_list_inbox(self):
        r = self.curl(self.url("imaps", "imaps", "INBOX"), "alice")
        self.assert_ok(r)
        self.assertRegex(r.stdout, rb"\* LIST \([^)]*\) \S+ \"?INBOX\"?")

    def test_imaps_examine_counts_messages(self):
        r = self.curl(self.url("imaps", "imaps"), "alice", "demo", "-X", "EXAMINE INBOX")
        self.assert_ok(r)
        m = re.search(rb"\* (\d+) EXISTS", r.stdout)
        self.assertIsNotNone(m, r.stdout)
        self.assertEqual(int(m.group(1)), len(self.messages("alice")))

    def test_imaps_fetch_by_uid_matches_maildir(self):
        msgs = self.messages("alice")
        for uid in (1, 3, len(msgs)):
            r = self.curl(self.url("imaps", "imaps", "INBOX;UID=%d" % uid), "alice")
            self.assert_ok(r)
            self.assertEqual(r.stdout, crlf(msgs[uid - 1]), "UID %d differs" % uid)

    # --- POP3 over implicit TLS ---

    def test_pop3s_list(self):
        msgs = self.messages("bob")
        r = self.curl(self.url("pop3s", "pop3s"), "bob")
        self.assert_ok(r)
        lines = r.stdout.decode().split("\r\n")
        self.assertEqual(lines[-1], "")
        listing = [tuple(map(int, l.split())) for l in lines[:-1]]
        self.assertEqual(listing, [(i + 1, len(crlf(m))) for i, m in enumerate(msgs)])

    def test_pop3s_retr(self):
        msgs = self.messages("bob")
        for n in (1, 3):  # message 3 holds lines that need dot-stuffing
            r = self.curl(self.url("pop3s", "pop3s", str(n)), "bob")
            self.assert_ok(r)
            self.assertEqual(r.stdout, crlf(msgs[n - 1]), "message %d differs" % n)

    # --- STARTTLS / STLS ---

    def test_imap_starttls(self):
        r = self.curl(self.url("imap", "imap", "INBOX"), "carol", "demo", "--ssl-reqd")
        self.assert_ok(r)
        self.assertIn(b"INBOX", r.stdout)

    def test_imap_starttls_fetch(self):
        msgs = self.messages("carol")
        r = self.curl(self.url("imap", "imap", "INBOX;UID=2"), "carol", "demo", "--ssl-reqd")
        self.assert_ok(r)
        self.assertEqual(r.stdout, crlf(msgs[1]))

    def test_pop3_stls(self):
        msgs = self.messages("alice")
        r = self.curl(self.url("pop3", "pop3"), "alice", "demo", "--ssl-reqd")
        self.assert_ok(r)
        self.assertEqual(len(r.stdout.decode().strip().split("\r\n")), len(msgs))
        r = self.curl(self.url("pop3", "pop3", "2"), "alice", "demo", "--ssl-reqd")
        self.assert_ok(r)
        self.assertEqual(r.stdout, crlf(msgs[1]))

    # --- refused logins ---

    def test_wrong_password_imaps(self):
        r = self.curl(self.url("imaps", "imaps", "INBOX"), "alice", "wrong")
        self.assertEqual(r.returncode, 67, r.stderr)  # CURLE_LOGIN_DENIED
        self.assertEqual(r.stdout, b"")

    def test_wrong_password_pop3s(self):
        r = self.curl(self.url("pop3s", "pop3s"), "bob", "wrong")
        self.assertEqual(r.returncode, 67, r.stderr)

    def test_unknown_user_imap_starttls(self):
        r = self.curl(self.url("imap", "imap", "INBOX"), "nosuchuser", "demo", "--ssl-reqd")
        self.assertEqual(r.returncode, 67, r.stderr)


if __name__ == "__main__":
    unittest.main()
