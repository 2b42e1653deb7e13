"""Issue 10, TLS toward the backends, with real Dovecots.

Dovecot `tls` runs with the test certificate (self-signed, SAN localhost
and 127.0.0.1: it is its own CA): IMAPS and POP3S, STARTTLS and STLS.
Dovecot `plain` has `ssl = no` (and auth_verbose, so that any
authentication attempt would be logged). One postern routes each user to
a backend of its name, statically:

| user | backend | TLS |
| --- | --- | --- |
| imp | imp | implicit (IMAPS/POP3S ports), tls_ca_file the test cert |
| stt | stt | starttls (STARTTLS/STLS), tls_ca_file the test cert |
| nam | nam | implicit, tls_name localhost (the DNS name in the cert) |
| wca | wca | implicit, tls_ca_file another self-signed cert |
| wnm | wnm | implicit, tls_name wrong.example |
| nov | nov | implicit, tls_verify false, no CA |
| nst | nst | starttls toward Dovecot `plain`, which offers none |
| res | res | implicit toward a Python TLS server (resumption is visible there) |
"""

import os
import re
import ssl
import time
import unittest

import fakes
import harness
import routehelp
import testbed

USERS = ("imp", "stt", "nam", "wca", "wnm", "nov", "nst", "res")


def fake_tls_imap(ctx):
    """A fake IMAPS store: records the TLS version and whether the session
    was resumed (Python's SSLSocket.session_reused), then lets anyone in."""
    def handler(s):
        try:
            s.sock = ctx.wrap_socket(s.sock, server_side=True)
        except (ssl.SSLError, OSError) as e:
            s.tls_error = str(e)
            return
        s.resumed = s.sock.session_reused
        s.version = s.sock.version()
        caps = b"IMAP4rev1 ID LITERAL+ SASL-IR AUTH=PLAIN"
        s.send(b"* OK [CAPABILITY " + caps + b"] Fake TLS ready.\r\n")
        while True:
            cmd = s.imap_command(30)
            if cmd is None:
                return
            tag, name, _ = fakes.parse_imap_command(cmd)
            if name == b"ID":
                s.send(b"* ID NIL\r\n" + tag + b" OK Trusted ID completed.\r\n")
            elif name in (b"LOGIN", b"AUTHENTICATE"):
                s.send(tag + b" OK [CAPABILITY " + caps + b"] Logged in.\r\n")
            elif name == b"LOGOUT":
                s.send(b"* BYE Bye.\r\n" + tag + b" OK Done.\r\n")
                return
            else:
                s.send(tag + b" OK Fine.\r\n")
    return handler


class BackendTlsTest(routehelp.FleetTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.other_cert, _ = testbed.make_cert(os.path.join(cls.tmp, "other"), name="other")
        dv = cls.start_fleet({
            "tls": {"ssl_cert": cls.cert, "ssl_key": cls.key},
            "plain": {"extra_conf": "auth_verbose = yes\n"},
        }, users=USERS)
        t, p = dv["tls"], dv["plain"]
        server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server_ctx.load_cert_chain(cls.cert, cls.key)
        cls.fake = fakes.FakeBackend(fake_tls_imap(server_ctx))
        cls.addClassCleanup(cls.fake.close)

        def implicit(name, **kw):
            e = {"name": name, "address": "127.0.0.1", "imap_port": t.imaps_port,
                 "pop3_port": t.pop3s_port, "tls": "implicit", "tls_ca_file": cls.cert}
            e.update(kw)
            return e
        backends = [
            implicit("imp"),
            {"name": "stt", "address": "127.0.0.1", "imap_port": t.imap_port,
             "pop3_port": t.pop3_port, "tls": "starttls", "tls_ca_file": cls.cert},
            implicit("nam", tls_name="localhost"),
            implicit("wca", tls_ca_file=cls.other_cert),
            implicit("wnm", tls_name="wrong.example"),
            {"name": "nov", "address": "127.0.0.1", "imap_port": t.imaps_port,
             "pop3_port": t.pop3s_port, "tls": "implicit", "tls_verify": False},
            {"name": "nst", "address": "127.0.0.1", "imap_port": p.imap_port,
             "pop3_port": p.pop3_port, "tls": "starttls", "tls_ca_file": cls.cert},
            {"name": "res", "address": "127.0.0.1", "imap_port": cls.fake.port,
             "pop3_port": cls.fake.port, "tls": "implicit", "tls_ca_file": cls.cert},
        ]
        cfg = routehelp.base_config(cls.cert, cls.key, backends, workers=1,
                                    routing={"default_backend": "imp",
                                             "users": {u: u for u in USERS}})
        cls.start_postern("T", cfg)

    def login(self, proto, user):
        """(Login, session end fields) of one login through T."""
        post = self.posterns["T"]
        since = len(post.log())
        fn = routehelp.imap_login if proto == "imap" else routehelp.pop3_login
        login = fn(post.address(proto), user)
        end = routehelp.session_end_for_port(post, login.port, since)
        return login, end

    def dovecot_line(self, name, proto, user, session, timeout=10.0):
        d = self.dovecots[name]
        rx = re.compile(r"%s-login: Info: Login: user=<%s>.*session=<%s>" % (proto, user,
                                                                           re.escape(session)))
        m = harness.wait_for(lambda: rx.search(d.log()), timeout=timeout)
        self.assertTrue(m, "Dovecot %s logged no %s login of %s" % (name, proto, user))
        return m.group(0)

    def test_implicit_and_starttls_logins_work_inside_tls(self):
        for user in ("imp", "stt", "nam"):
            for proto in ("imap", "pop3"):
                login, end = self.login(proto, user)
                self.assertTrue(login.ok, (user, proto, login.answer))
                line = self.dovecot_line("tls", proto, user, end["session"])
                # Dovecot says how the connection to it was protected.
                self.assertIn(", TLS,", line)

    def assert_refused_for_tls(self, user, why):
        post = self.posterns["T"]
        since = len(post.log())
        mark = len(self.dovecots["tls"].log())
        login, _ = self.login("imap", user)
        self.assertTrue(re.match(rb"a NO \[UNAVAILABLE\]", login.answer), login.answer)
        login, _ = self.login("pop3", user)
        self.assertTrue(login.answer.startswith(b"-ERR [SYS/TEMP]"), login.answer)
        m = self.assert_logged(post, r"backend unavailable: .*user=%s backend=%s .*" % (user, user),
                               since)
        print("\n%s" % m.group(0))
        self.assertRegex(m.group(0), why)
        time.sleep(0.5)
        self.assertNotIn("user=<%s>" % user, self.dovecots["tls"].log()[mark:])

    def test_certificate_from_another_ca_refused(self):
        self.assert_refused_for_tls("wca", r"certificate")

    def test_certificate_name_mismatch_refused(self):
        self.assert_refused_for_tls("wnm", r"certificate|hostname|name")

    def test_tls_verify_false_works_and_was_warned_about(self):
        for proto in ("imap", "pop3"):
            login, end = self.login(proto, "nov")
            self.assertTrue(login.ok, login.answer)
            self.assertIn(", TLS,", self.dovecot_line("tls", proto, "nov", end["session"]))
        log = self.posterns["T"].log()
        ready = log.index("ready:")
        m = re.search(r"backend nov: TLS without certificate verification", log)
        self.assertTrue(m, "no warning about tls_verify: false")
        self.assertLess(m.start(), ready, "the warning comes at start")
        self.assertEqual(len(re.findall(r"without certificate verification", log)), 1)

    def test_starttls_backend_without_starttls_gets_no_credentials(self):
        post = self.posterns["T"]
        plain = self.dovecots["plain"]
        since = len(post.log())
        mark = len(plain.log())
        login, end = self.login("imap", "nst")
        self.assertTrue(re.match(rb"a NO \[UNAVAILABLE\]", login.answer), login.answer)
        self.assert_logged(post, r"backend=nst detail=\"backend does not offer STARTTLS: refusing "
                           r"to log in in the clear\"", since)
        login, end = self.login("pop3", "nst")
        self.assertTrue(login.answer.startswith(b"-ERR [SYS/TEMP]"), login.answer)
        self.assert_logged(post, r"backend=nst detail=\"backend refused STLS", since)
        # Dovecot saw two connections that never tried to authenticate;
        # with auth_verbose it would log any attempt, and nst appears nowhere.
        self.assertTrue(harness.wait_for(
            lambda: len(re.findall(r"Disconnected: .*no auth attempts", plain.log()[mark:])) >= 2,
            timeout=10), plain.log()[mark:])
        text = plain.log()[mark:]
        self.assertNotIn("nst", text)
        self.assertNotIn("auth", re.sub(r"no auth attempts", "", text))

    def test_second_login_resumes_the_tls_session(self):
        self.fake.reset(fake_tls_imap(self.fake_ctx()))
        for _ in range(3):
            login, _ = self.login("imap", "res")
            self.assertTrue(login.ok, login.answer)
        got = [(getattr(s, "version", None), getattr(s, "resumed", None),
                getattr(s, "tls_error", None)) for s in self.fake.sessions]
        print("\nfake TLS backend: %s" % got)
        self.assertEqual([r for _, r, _ in got], [False, True, True])

    def fake_ctx(self):
        if not hasattr(BackendTlsTest, "_fake_ctx"):
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(self.cert, self.key)
            BackendTlsTest._fake_ctx = ctx
        return BackendTlsTest._fake_ctx


if __name__ == "__main__":
    unittest.main()
