"""Issue 9, OAuth end to end: XOAUTH2 and OAUTHBEARER (RFC 7628) passed
through postern to a real Dovecot 2.3 whose oauth2 passdb asks a token
introspection service (RFC 7662; oauth_introspect.py, tokens in a dict).

Listeners `*-oauth` offer PLAIN, LOGIN, XOAUTH2, OAUTHBEARER with the
passthrough directory (Dovecot decides, the token goes to it with the
client's mechanism); `*-file` offer the same with a passwd-file directory,
which cannot check tokens and refuses them without asking anyone. A refused
token gets RFC 7628's error challenge (`+ eyJ...`), the client answers
`AQ==`, then NO / -ERR."""

import base64
import imaplib
import json
import os
import re
import unittest

import harness
from dirhelp import (DirTestCase, base_listeners, imap_count, listener, oauthbearer_ir,
                     xoauth2_ir)
from oauth_introspect import IntrospectionService

MECHS = ["PLAIN", "LOGIN", "XOAUTH2", "OAUTHBEARER"]
TOKENS = {
    "tok-alice-1": {"username": "alice", "scope": "mail"},
    "tok-bob-1": {"username": "bob"},
    "tok-carol-1": {"username": "carol"},
}


class OAuthTest(DirTestCase):

    @classmethod
    def dovecot_options(cls):
        cls.svc = IntrospectionService(TOKENS)
        cls.addClassCleanup(cls.svc.close)
        return dict(oauth2={
            "introspection_mode": "post",
            "introspection_url": cls.svc.url,
            "username_attribute": "username",
            "active_attribute": "active",
            "active_value": "true",
        }, extra_conf="auth_verbose = yes\n")

    @classmethod
    def prepare(cls):
        cls.passwd = os.path.join(cls.bed.tmp, "users.passwd")
        with open(cls.passwd, "w") as f:
            f.write("alice:{PLAIN}demo::::::\n")

    @classmethod
    def postern_config(cls):
        d = cls.bed.dovecot
        return {
            "listeners": base_listeners(cls.bed) + [
                listener("imaps-oauth", "imap", "implicit", sasl_mechanisms=MECHS,
                         directory="passthrough"),
                listener("pop3s-oauth", "pop3", "implicit", sasl_mechanisms=MECHS,
                         directory="passthrough"),
                listener("imaps-file", "imap", "implicit", sasl_mechanisms=MECHS,
                         directory="users"),
                listener("pop3s-file", "pop3", "implicit", sasl_mechanisms=MECHS,
                         directory="users"),
            ],
            "backends": [
                {"name": "dovecot", "address": "127.0.0.1", "imap_port": d.imap_port,
                 "pop3_port": d.pop3_port},
                {"name": "dovecot-gw", "address": "127.0.0.1", "imap_port": d.imap_port,
                 "pop3_port": d.pop3_port, "pop3_mode": "gateway"},
            ],
            "routing": {"default_backend": "dovecot", "users": {"carol": "dovecot-gw"}},
            "directories": [{"name": "users", "type": "passwd-file", "path": cls.passwd}],
        }

    def conn(self, name):
        c = harness.Conn(self.bed.addr(name), tls=True, cafile=self.bed.cert)
        self.addCleanup(c.close)
        c.greeting = c.readline()
        return c

    def assert_error_challenge(self, line):
        """RFC 7628 section 3.2.2: `+ <base64 of a JSON object with status>`."""
        self.assertTrue(line.startswith(b"+ eyJ"), line)
        doc = json.loads(base64.b64decode(line[2:].strip()))
        self.assertIn("status", doc)
        return doc

    # --- what is offered ---

    def test_mechanisms_are_offered(self):
        c = self.conn("imaps-oauth")
        untagged, tagged = c.imap("c", "CAPABILITY")
        caps = b" ".join(untagged).split()
        for m in MECHS:
            self.assertIn(b"AUTH=" + m.encode(), caps, untagged)
        c = self.conn("pop3s-oauth")
        self.assertTrue(c.pop3("CAPA").startswith(b"+OK"))
        sasl = [l for l in c.pop3_multiline() if l.upper().startswith(b"SASL")]
        self.assertEqual(sasl, [b"SASL " + " ".join(MECHS).encode()])
        # The default listeners keep the default list.
        c = self.conn("imaps")
        untagged, _ = c.imap("c", "CAPABILITY")
        self.assertNotIn(b"AUTH=XOAUTH2", b" ".join(untagged))

    # --- pass-through: Dovecot's oauth2 passdb decides ---

    def test_imap_xoauth2_and_oauthbearer_with_imaplib(self):
        host, port = self.bed.addr("imaps-oauth")
        for mech, raw in (("XOAUTH2", b"user=alice\x01auth=Bearer tok-alice-1\x01\x01"),
                          ("OAUTHBEARER", b"n,a=alice,\x01auth=Bearer tok-alice-1\x01\x01")):
            with self.subTest(mech=mech):
                dv = self.dovecot_window()
                asked = self.svc.asked("tok-alice-1")
                m = imaplib.IMAP4_SSL(host, port, ssl_context=harness.client_context(self.bed.cert),
                                      timeout=15)
                try:
                    typ, _ = m.authenticate(mech, lambda challenge: raw)
                    self.assertEqual(typ, "OK")
                    self.assertEqual(imap_count(m), len(self.messages("alice")))
                    m.logout()
                finally:
                    try:
                        m.shutdown()
                    except OSError:
                        pass  # logout closed it
                self.assertTrue(dv.wait(r"imap-login: Info: Login: user=<alice>, method=%s" % mech),
                                dv.text())
                self.assertEqual(self.svc.asked("tok-alice-1"), asked + 1)

    def test_imap_sasl_ir_and_bad_token(self):
        c = self.conn("imaps-oauth")
        _, tagged = c.imap("a", "AUTHENTICATE OAUTHBEARER " + oauthbearer_ir("bob", "tok-bob-1"))
        self.assertTrue(tagged.startswith(b"a OK"), tagged)
        untagged, tagged = c.imap("b", "SELECT INBOX")
        self.assertIn(b"* %d EXISTS\r\n" % len(self.messages("bob")), untagged)
        c.close()
        for mech, ir in (("XOAUTH2", xoauth2_ir("alice", "tok-wrong")),
                         ("OAUTHBEARER", oauthbearer_ir("alice", "tok-wrong"))):
            with self.subTest(mech=mech):
                dv = self.dovecot_window()
                c = self.conn("imaps-oauth")
                c.send("a AUTHENTICATE %s %s\r\n" % (mech, ir))
                self.assert_error_challenge(c.readline())
                c.send("AQ==\r\n")
                _, tagged = c.imap_until_tagged("a")
                self.assertTrue(tagged.startswith(b"a NO"), tagged)
                # Still a usable pre-login session.
                good = xoauth2_ir("alice", "tok-alice-1")
                _, tagged = c.imap("b", "AUTHENTICATE XOAUTH2 " + good)
                self.assertTrue(tagged.startswith(b"b OK"), tagged)
                self.assertTrue(dv.wait(r"oauth2\(alice,[^)]*\): oauth2 failed: Introspection "
                                        r"failed: Provided token is not valid"), dv.text())

    def test_pop3_xoauth2_and_oauthbearer(self):
        n = len(self.messages("alice"))
        for mech, ir in (("XOAUTH2", xoauth2_ir("alice", "tok-alice-1")),
                         ("OAUTHBEARER", oauthbearer_ir("alice", "tok-alice-1"))):
            with self.subTest(mech=mech, how="initial response"):
                c = self.conn("pop3s-oauth")
                line = c.pop3("AUTH %s %s" % (mech, ir))
                self.assertTrue(line.startswith(b"+OK"), line)
                self.assertTrue(c.pop3("STAT").startswith(b"+OK %d " % n))
                self.assertTrue(c.pop3("QUIT").startswith(b"+OK"))
            with self.subTest(mech=mech, how="continuation"):
                c = self.conn("pop3s-oauth")
                line = c.pop3("AUTH %s" % mech)
                self.assertTrue(line.startswith(b"+"), line)
                line = c.pop3(ir)
                self.assertTrue(line.startswith(b"+OK"), line)
                self.assertTrue(c.pop3("QUIT").startswith(b"+OK"))
        dv = self.dovecot_window()
        for mech, ir in (("XOAUTH2", xoauth2_ir("alice", "tok-wrong")),
                         ("OAUTHBEARER", oauthbearer_ir("alice", "tok-wrong"))):
            with self.subTest(mech=mech, how="bad token"):
                c = self.conn("pop3s-oauth")
                self.assert_error_challenge(c.pop3("AUTH %s %s" % (mech, ir)))
                line = c.pop3("AQ==")
                self.assertTrue(line.startswith(b"-ERR"), line)
                line = c.pop3("AUTH XOAUTH2 " + xoauth2_ir("alice", "tok-alice-1"))
                self.assertTrue(line.startswith(b"+OK"), line)
        self.assertEqual(len(re.findall(r"oauth2 failed: Introspection failed", dv.text())), 2,
                         dv.text())

    def test_pop3_gateway_with_a_token(self):
        """carol is routed to a gateway backend: POP3 XOAUTH2 becomes IMAP
        AUTHENTICATE XOAUTH2 toward Dovecot."""
        dv = self.dovecot_window()
        c = self.conn("pop3s-oauth")
        line = c.pop3("AUTH XOAUTH2 " + xoauth2_ir("carol", "tok-carol-1"))
        self.assertTrue(line.startswith(b"+OK"), line)
        self.assertTrue(c.pop3("STAT").startswith(b"+OK %d " % len(self.messages("carol"))))
        self.assertTrue(c.pop3("QUIT").startswith(b"+OK"))
        self.assertTrue(dv.wait(r"imap-login: Info: Login: user=<carol>, method=XOAUTH2"),
                        dv.text())
        # A bad token: Dovecot's IMAP refusal becomes POP3's, after the
        # error challenge.
        for mech, ir in (("XOAUTH2", xoauth2_ir("carol", "tok-wrong")),
                         ("OAUTHBEARER", oauthbearer_ir("carol", "tok-wrong"))):
            c = self.conn("pop3s-oauth")
            self.assert_error_challenge(c.pop3("AUTH %s %s" % (mech, ir)))
            line = c.pop3("AQ==")
            self.assertTrue(line.startswith(b"-ERR [AUTH]"), line)
            self.assertTrue(c.pop3("QUIT").startswith(b"+OK"))

    def test_token_of_another_user_and_revoked_token(self):
        # alice's token does not open bob's mailbox (Dovecot: username mismatch).
        c = self.conn("imaps-oauth")
        c.send("a AUTHENTICATE XOAUTH2 %s\r\n" % xoauth2_ir("bob", "tok-alice-1"))
        self.assert_error_challenge(c.readline())
        c.send("AQ==\r\n")
        _, tagged = c.imap_until_tagged("a")
        self.assertTrue(tagged.startswith(b"a NO"), tagged)
        # Revoked: the next login is refused (pass-through keeps no answers).
        self.svc.tokens["tok-tmp"] = {"username": "alice"}
        try:
            _, tagged = c.imap("b", "AUTHENTICATE XOAUTH2 " + xoauth2_ir("alice", "tok-tmp"))
            self.assertTrue(tagged.startswith(b"b OK"), tagged)
            c.close()
            del self.svc.tokens["tok-tmp"]
            c = self.conn("imaps-oauth")
            c.send("c AUTHENTICATE XOAUTH2 %s\r\n" % xoauth2_ir("alice", "tok-tmp"))
            self.assert_error_challenge(c.readline())
            c.send("AQ==\r\n")
            _, tagged = c.imap_until_tagged("c")
            self.assertTrue(tagged.startswith(b"c NO"), tagged)
        finally:
            self.svc.tokens.pop("tok-tmp", None)

    # --- a directory that checks passwords cannot check tokens ---

    def test_passwd_file_refuses_tokens(self):
        dv = self.dovecot_window()
        asked = len(self.svc.requests)
        for mech, ir in (("XOAUTH2", xoauth2_ir("alice", "tok-alice-1")),
                         ("OAUTHBEARER", oauthbearer_ir("alice", "tok-alice-1"))):
            with self.subTest(mech=mech):
                c = self.conn("imaps-file")
                c.send("a AUTHENTICATE %s %s\r\n" % (mech, ir))
                self.assert_error_challenge(c.readline())
                c.send("AQ==\r\n")
                _, tagged = c.imap_until_tagged("a")
                self.assertTrue(tagged.startswith(b"a NO [AUTHENTICATIONFAILED]"), tagged)
                c = self.conn("pop3s-file")
                self.assert_error_challenge(c.pop3("AUTH %s %s" % (mech, ir)))
                line = c.pop3("AQ==")
                self.assertTrue(line.startswith(b"-ERR [AUTH]"), line)
        self.assert_backend_untouched(dv, "a token on a passwd-file listener")
        self.assertEqual(len(self.svc.requests), asked, "the token was introspected")
        self.assertIn("passwd-file checks passwords, not OAuth tokens", self.bed.postern.log())
        # The same listener takes the file's passwords.
        c = self.conn("imaps-file")
        _, tagged = c.imap("p", "AUTHENTICATE PLAIN " + harness.plain_ir("alice", "demo"))
        self.assertTrue(tagged.startswith(b"p OK"), tagged)

    # --- hostile bits ---

    def test_crlf_in_a_token_never_reaches_dovecot(self):
        dv = self.dovecot_window()
        asked = len(self.svc.requests)
        c = self.conn("imaps-oauth")
        for i, ir in enumerate([xoauth2_ir("alice", "tok-alice-1\r\nx LOGOUT"),
                                oauthbearer_ir("alice\r\nx", "tok-alice-1")]):
            tag = "h%d" % i
            c.send("%s AUTHENTICATE %s %s\r\n" % (tag, "XOAUTH2" if i == 0 else "OAUTHBEARER",
                                                  ir))
            line = c.readline()
            if line.startswith(b"+ "):
                self.assert_error_challenge(line)
                c.send("AQ==\r\n")
                _, line = c.imap_until_tagged(tag)
            self.assertTrue(line.startswith(tag.encode() + b" NO")
                            or line.startswith(tag.encode() + b" BAD"), line)
        c = self.conn("pop3s-oauth")
        line = c.pop3("AUTH XOAUTH2 " + xoauth2_ir("alice", "tok-alice-1\nSTAT"))
        if line.startswith(b"+ "):
            self.assert_error_challenge(line)
            line = c.pop3("AQ==")
        self.assertTrue(line.startswith(b"-ERR"), line)
        self.assert_backend_untouched(dv, "a token with CR/LF")
        self.assertEqual(len(self.svc.requests), asked)


if __name__ == "__main__":
    unittest.main()
