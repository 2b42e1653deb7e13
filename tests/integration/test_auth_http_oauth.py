"""Issue 9, OAuth through the auth service end to end: XOAUTH2 and
OAUTHBEARER (RFC 7628) from clients on listeners whose directory is
auth-http. postern asks `auth_service.py` with Auth-Method xoauth2 /
oauthbearer and the bearer token as Auth-Pass; the service asks the token
introspection service (RFC 7662, oauth_introspect.py) whether the token is
active and whose it is, and answers. One real Dovecot 2.3 has a master
passdb and an oauth2 passdb pointed at the same introspection service, and
logs what its auth process is given (auth_debug_passwords).

- alice: the service answers Auth-Master: yes and Auth-Backend of a backend
  with master_user: postern logs in as the master acting as alice
  (AUTHENTICATE PLAIN / AUTH PLAIN); Dovecot says "Master user logging in
  as alice", its oauth2 passdb is never asked, and the token is nowhere in
  its log.
- bob: the service answers with a backend without a master user and no
  Auth-Pass: the token goes on with the client's mechanism, and Dovecot's
  oauth2 passdb asks the introspection service a second time. carol: the
  same through the POP3-to-IMAP gateway.
- dave: Auth-Master: yes for a backend without master_user: UNAVAILABLE,
  the token is not passed on instead.
- A bad token, or another user's: the service refuses; the client gets
  RFC 7628's error challenge, answers `AQ==`, then NO / -ERR; Dovecot hears
  nothing.
"""

import base64
import imaplib
import json
import os
import re
import unittest

import auth_service
import harness
from dirhelp import (DirTestCase, base_listeners, listener, oauthbearer_ir, xoauth2_ir)
from oauth_introspect import IntrospectionService

HOST = harness.HOST
MECHS = ["PLAIN", "LOGIN", "XOAUTH2", "OAUTHBEARER"]
MASTER = "postern-master"
MASTER_PW = "m4ster-Oauth-7"
INVALID = "Invalid login or password"  # auth_service.py's refusal text

# Tokens the introspection service knows; no user's password is one of them.
TOKENS = {
    "tok-alice-1": {"username": "alice", "scope": "mail"},
    "tok-bob-1": {"username": "bob"},
    "tok-carol-1": {"username": "carol"},
    "tok-dave-1": {"username": "dave"},
}


def token_forms(token, user):
    """The token as it could appear in a log: as it is, and inside the
    base64 of either mechanism's initial response."""
    return [token, xoauth2_ir(user, token), oauthbearer_ir(user, token)]


class AuthHttpOAuthTest(DirTestCase):
    """postern with listeners `imaps-oauth` / `pop3s-oauth` offering
    XOAUTH2 and OAUTHBEARER on the auth-http directory `accounts`, and three
    backends on the one Dovecot: `dovecot-master` (master_user), `dovecot`
    and `dovecot-gw` (POP3 gateway), neither with a master user."""

    @classmethod
    def dovecot_options(cls):
        cls.idp = IntrospectionService(TOKENS)
        cls.addClassCleanup(cls.idp.close)
        # Dovecot's own passwords for these users are ones nobody types.
        return dict(users=(), passwords={"alice": "dovecot-only-a", "bob": "dovecot-only-b",
                                         "carol": "dovecot-only-c", "dave": "dovecot-only-d"},
                    master_users={MASTER: MASTER_PW},
                    oauth2={"introspection_mode": "post",
                            "introspection_url": cls.idp.url,
                            "username_attribute": "username",
                            "active_attribute": "active",
                            "active_value": "true"},
                    extra_conf="auth_verbose = yes\nauth_debug = yes\n"
                               "auth_debug_passwords = yes\n")

    @classmethod
    def prepare(cls):
        d = cls.bed.dovecot
        cls.master_file = os.path.join(cls.bed.tmp, "master.pw")
        with open(cls.master_file, "w") as f:
            f.write(MASTER_PW + "\n")
        cls.service = auth_service.AuthService({
            "server": HOST,
            "ports": {"imap": d.imap_port, "pop3": d.pop3_port},
            "wait": 0,
            "refusal": INVALID,
            "introspection_url": cls.idp.url,
            "users": {
                "alice": {"password": "!", "oauth": {"headers": {
                    "Auth-Master": "yes", "Auth-Backend": "dovecot-master"}}},
                "bob": {"password": "!", "oauth": {"headers": {"Auth-Backend": "dovecot"}}},
                "carol": {"password": "!", "oauth": {"headers": {"Auth-Backend": "dovecot-gw"}}},
                "dave": {"password": "!", "oauth": {"headers": {
                    "Auth-Master": "yes", "Auth-Backend": "dovecot"}}},
            },
        }).start()
        cls.addClassCleanup(cls.service.stop)

    @classmethod
    def postern_config(cls):
        d = cls.bed.dovecot

        def backend(name, **kw):
            b = {"name": name, "address": HOST, "imap_port": d.imap_port,
                 "pop3_port": d.pop3_port}
            b.update(kw)
            return b

        return {
            "listeners": base_listeners(cls.bed) + [
                listener("imaps-oauth", "imap", "implicit", sasl_mechanisms=MECHS),
                listener("pop3s-oauth", "pop3", "implicit", sasl_mechanisms=MECHS),
            ],
            "backends": [backend("dovecot"),
                         backend("dovecot-master", master_user=MASTER,
                                 master_password_file=cls.master_file),
                         backend("dovecot-gw", pop3_mode="gateway")],
            "routing": {"default_backend": "dovecot", "users": {}},
            "directories": [{"name": "accounts", "type": "auth-http",
                             "servers": ["%s:%d" % (HOST, cls.service.port)],
                             "timeout": "5s"}],
            "directory": "accounts",
        }

    # --- helpers ---

    def conn(self, name):
        c = harness.Conn(self.bed.addr(name), tls=True, cafile=self.bed.cert)
        self.addCleanup(c.close)
        c.greeting = c.readline()
        return c

    def assert_error_challenge(self, line):
        """RFC 7628 section 3.2.2: `+ <base64 of a JSON object with status>`."""
        self.assertTrue(line.startswith(b"+ eyJ"), line)
        doc = json.loads(base64.b64decode(line[2:].strip()))
        self.assertEqual(doc.get("status"), "invalid_token", doc)

    def service_requests_since(self, before):
        return [{k.lower(): v for k, v in r["headers"]} for r in self.service.requests()[before:]]

    def assert_asked_service(self, before, mech, user, token, protocol):
        """One request to the service since `before`, for this OAuth login."""
        reqs = self.service_requests_since(before)
        self.assertEqual(len(reqs), 1, reqs)
        h = reqs[0]
        for k, v in {"auth-method": mech.lower(), "auth-user": user, "auth-pass": token,
                     "auth-protocol": protocol}.items():
            self.assertEqual(h.get(k), v, (k, h))

    def master_logins(self, window, user):
        return len(re.findall(r"auth: Info: Master user logging in as %s\n" % re.escape(user),
                              window.text()))

    def imap_sasl_ir(self, mech, user, token):
        """AUTHENTICATE with SASL-IR on a raw session: (conn, tagged line);
        a refusal's error challenge is answered with AQ==."""
        ir = (xoauth2_ir if mech == "XOAUTH2" else oauthbearer_ir)(user, token)
        c = self.conn("imaps-oauth")
        c.send("a AUTHENTICATE %s %s\r\n" % (mech, ir))
        line = c.readline()
        if line.startswith(b"+ "):
            self.assert_error_challenge(line)
            c.send("AQ==\r\n")
            _, line = c.imap_until_tagged("a")
        return c, line

    def pop3_auth(self, mech, user, token):
        """AUTH with an initial response: (conn, the final line)."""
        ir = (xoauth2_ir if mech == "XOAUTH2" else oauthbearer_ir)(user, token)
        c = self.conn("pop3s-oauth")
        line = c.pop3("AUTH %s %s" % (mech, ir))
        if line.startswith(b"+ "):
            self.assert_error_challenge(line)
            line = c.pop3("AQ==")
        return c, line

    # --- 1. the service checks the token, Dovecot takes a master login ---

    def test_master_login_dovecot_never_sees_the_token(self):
        """alice's token over IMAP (both mechanisms, SASL-IR) and POP3: the
        service is asked with the token and asks the introspection service
        once; Dovecot logs alice in by the master passdb with PLAIN, its
        oauth2 passdb is not asked, and the token is not in its log."""
        n = len(self.messages("alice"))
        for protocol, mech in (("imap", "XOAUTH2"), ("imap", "OAUTHBEARER"),
                               ("pop3", "XOAUTH2"), ("pop3", "OAUTHBEARER")):
            with self.subTest(protocol=protocol, mech=mech):
                dv = self.dovecot_window()
                before = len(self.service.requests())
                asked = self.idp.asked("tok-alice-1")
                if protocol == "imap":
                    c, tagged = self.imap_sasl_ir(mech, "alice", "tok-alice-1")
                    self.assertTrue(tagged.startswith(b"a OK"), tagged)
                    untagged, tagged = c.imap("b", "SELECT INBOX")
                    self.assertIn(b"* %d EXISTS\r\n" % n, untagged)
                    c.imap("c", "LOGOUT")
                else:
                    c, line = self.pop3_auth(mech, "alice", "tok-alice-1")
                    self.assertTrue(line.startswith(b"+OK"), line)
                    self.assertTrue(c.pop3("STAT").startswith(b"+OK %d " % n))
                    self.assertTrue(c.pop3("QUIT").startswith(b"+OK"))
                c.close()
                self.assert_asked_service(before, mech, "alice", "tok-alice-1", protocol)
                self.assertTrue(dv.wait(r"%s-login: Info: Login: user=<alice>, method=PLAIN"
                                        % protocol), dv.text())
                self.sync_dovecot_log()
                self.assertEqual(self.master_logins(dv, "alice"), 1, dv.text())
                # Only the service asked about the token, never Dovecot.
                self.assertEqual(self.idp.asked("tok-alice-1"), asked + 1)
                self.assertNotIn("oauth2(", dv.text())
                for form in token_forms("tok-alice-1", "alice"):
                    self.assertNotIn(form, dv.text())
        self.assert_postern_logged(r"session end: .* listener=imaps-oauth .*user=alice "
                                   r"backend=dovecot-master ")

    def test_master_login_with_imaplib(self):
        """imaplib's AUTHENTICATE (no SASL-IR: the token in answer to the
        empty continuation)."""
        host, port = self.bed.addr("imaps-oauth")
        dv = self.dovecot_window()
        m = imaplib.IMAP4_SSL(host, port, ssl_context=harness.client_context(self.bed.cert),
                              timeout=15)
        try:
            typ, _ = m.authenticate(
                "XOAUTH2", lambda challenge: b"user=alice\x01auth=Bearer tok-alice-1\x01\x01")
            self.assertEqual(typ, "OK")
            typ, data = m.select("INBOX", readonly=True)
            self.assertEqual(int(data[0]), len(self.messages("alice")))
            m.logout()
        finally:
            try:
                m.shutdown()
            except OSError:
                pass
        self.assertTrue(dv.wait(r"Master user logging in as alice\n"), dv.text())

    def test_dovecot_logs_what_its_auth_is_given(self):
        """The premise of the checks above: Dovecot's log shows what a login
        gave its auth process (auth_debug: the initial response of XOAUTH2,
        here a token sent straight to it; auth_debug_passwords: PLAIN's too,
        so a token sent as a password would show), so a token that reached
        it would be seen."""
        dv = self.dovecot_window()
        c = harness.Conn((HOST, self.bed.dovecot.imap_port))
        self.addCleanup(c.close)
        c.readline()
        _, tagged = c.imap("a", "AUTHENTICATE XOAUTH2 " + xoauth2_ir("bob", "tok-bob-1"))
        self.assertTrue(tagged.startswith(b"a OK"), tagged)
        self.sync_dovecot_log()
        self.assertTrue(any(form in dv.text() for form in token_forms("tok-bob-1", "bob")),
                        dv.text())

    # --- 2. the service checks the token, Dovecot checks it again ---

    def test_token_passed_on_to_dovecots_oauth2_passdb(self):
        """bob: the service accepts and names a backend without a master
        user: postern sends the token on with the client's mechanism, and
        Dovecot's oauth2 passdb introspects it (the second time)."""
        n = len(self.messages("bob"))
        for protocol, mech in (("imap", "XOAUTH2"), ("imap", "OAUTHBEARER"),
                               ("pop3", "XOAUTH2"), ("pop3", "OAUTHBEARER")):
            with self.subTest(protocol=protocol, mech=mech):
                dv = self.dovecot_window()
                before = len(self.service.requests())
                asked = self.idp.asked("tok-bob-1")
                if protocol == "imap":
                    c, tagged = self.imap_sasl_ir(mech, "bob", "tok-bob-1")
                    self.assertTrue(tagged.startswith(b"a OK"), tagged)
                    untagged, tagged = c.imap("b", "SELECT INBOX")
                    self.assertIn(b"* %d EXISTS\r\n" % n, untagged)
                else:
                    c, line = self.pop3_auth(mech, "bob", "tok-bob-1")
                    self.assertTrue(line.startswith(b"+OK"), line)
                    self.assertTrue(c.pop3("STAT").startswith(b"+OK %d " % n))
                c.close()
                self.assert_asked_service(before, mech, "bob", "tok-bob-1", protocol)
                self.assertTrue(dv.wait(r"%s-login: Info: Login: user=<bob>, method=%s"
                                        % (protocol, mech)), dv.text())
                self.assertEqual(self.idp.asked("tok-bob-1"), asked + 2)
                self.assertEqual(self.master_logins(dv, "bob"), 0, dv.text())

    def test_token_through_the_pop3_gateway(self):
        """carol on the gateway backend: POP3 AUTH XOAUTH2 becomes IMAP
        AUTHENTICATE XOAUTH2 toward Dovecot."""
        dv = self.dovecot_window()
        asked = self.idp.asked("tok-carol-1")
        c, line = self.pop3_auth("XOAUTH2", "carol", "tok-carol-1")
        self.assertTrue(line.startswith(b"+OK"), line)
        self.assertTrue(c.pop3("STAT").startswith(b"+OK %d " % len(self.messages("carol"))))
        self.assertTrue(c.pop3("QUIT").startswith(b"+OK"))
        self.assertTrue(dv.wait(r"imap-login: Info: Login: user=<carol>, method=XOAUTH2"),
                        dv.text())
        self.assertNotIn("pop3-login: Info: Login: user=<carol>", dv.text())
        self.assertEqual(self.idp.asked("tok-carol-1"), asked + 2)

    def test_master_asked_for_a_backend_without_master_user(self):
        """dave: Auth-Master: yes, but the named backend has no master user:
        UNAVAILABLE / SYS/TEMP (no error challenge: the token was not
        refused), and the token is not sent to Dovecot instead."""
        dv = self.dovecot_window()
        asked = self.idp.asked("tok-dave-1")
        c, tagged = self.imap_sasl_ir("XOAUTH2", "dave", "tok-dave-1")
        self.assertTrue(tagged.startswith(b"a NO [UNAVAILABLE]"), tagged)
        c, line = self.pop3_auth("OAUTHBEARER", "dave", "tok-dave-1")
        self.assertTrue(line.startswith(b"-ERR [SYS/TEMP]"), line)
        self.assert_backend_untouched(dv, "a master login for a backend without master_user")
        self.assertEqual(self.idp.asked("tok-dave-1"), asked + 2)  # the service, twice
        self.assert_postern_logged(r"accounts: a master login was asked for, backend dovecot "
                                   r"has no master_user")

    # --- 3. bad tokens ---

    def test_bad_token_error_challenge_then_refusal(self):
        """A token the introspection service does not know, and alice's
        token presented as bob's: the service refuses (it was asked with the
        token), the client gets the error challenge, then NO / -ERR with the
        service's text; Dovecot hears nothing. The session can log in
        afterwards."""
        dv = self.dovecot_window()
        for user, token in (("alice", "tok-wrong"), ("bob", "tok-alice-1")):
            for protocol, mech in (("imap", "XOAUTH2"), ("imap", "OAUTHBEARER"),
                                   ("pop3", "XOAUTH2"), ("pop3", "OAUTHBEARER")):
                with self.subTest(user=user, token=token, protocol=protocol, mech=mech):
                    before = len(self.service.requests())
                    asked = self.idp.asked(token)
                    if protocol == "imap":
                        c, tagged = self.imap_sasl_ir(mech, user, token)
                        self.assertEqual(tagged, ("a NO [AUTHENTICATIONFAILED] %s\r\n"
                                                  % INVALID).encode())
                    else:
                        c, line = self.pop3_auth(mech, user, token)
                        self.assertEqual(line, ("-ERR [AUTH] %s\r\n" % INVALID).encode())
                    self.assert_asked_service(before, mech, user, token, protocol)
                    self.assertEqual(self.idp.asked(token), asked + 1)
                    response = dict(self.service.requests()[-1]["response"]["headers"])
                    self.assertEqual(response.get("Auth-Status"), INVALID)
        self.assert_backend_untouched(dv, "a refused token")
        # Still a usable pre-login session, on both protocols.
        c, tagged = self.imap_sasl_ir("XOAUTH2", "alice", "tok-wrong")
        self.assertTrue(tagged.startswith(b"a NO"), tagged)
        _, tagged = c.imap("b", "AUTHENTICATE XOAUTH2 " + xoauth2_ir("alice", "tok-alice-1"))
        self.assertTrue(tagged.startswith(b"b OK"), tagged)
        c, line = self.pop3_auth("OAUTHBEARER", "bob", "tok-wrong")
        self.assertTrue(line.startswith(b"-ERR"), line)
        line = c.pop3("AUTH OAUTHBEARER " + oauthbearer_ir("bob", "tok-bob-1"))
        self.assertTrue(line.startswith(b"+OK"), line)

    def test_revoked_token(self):
        """A token the introspection service stops knowing is refused on
        the next login (the directory keeps no answer: no Auth-Cache-TTL)."""
        self.idp.tokens["tok-tmp"] = {"username": "alice"}
        try:
            c, tagged = self.imap_sasl_ir("XOAUTH2", "alice", "tok-tmp")
            self.assertTrue(tagged.startswith(b"a OK"), tagged)
            c.close()
            del self.idp.tokens["tok-tmp"]
            c, tagged = self.imap_sasl_ir("XOAUTH2", "alice", "tok-tmp")
            self.assertTrue(tagged.startswith(b"a NO [AUTHENTICATIONFAILED]"), tagged)
        finally:
            self.idp.tokens.pop("tok-tmp", None)


if __name__ == "__main__":
    unittest.main()
