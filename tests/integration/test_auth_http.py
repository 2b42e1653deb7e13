"""Issue 9, the auth-http directory (nginx's mail auth_http protocol) end to
end: the real postern binary asks `auth_service.py` (in-process, on a
loopback port) about every login on its listeners, in front of two real
Dovecots, with imaplib and poplib as clients (raw sessions where the exact
line or its timing matters).

- Accepted users land on the Dovecot the service names by Auth-Server and
  Auth-Port (a marker message per user and Dovecot says which mailbox was
  opened); Auth-User/Auth-Pass make postern log in as another Dovecot user
  with a password the client never typed; a refusal's Auth-Status and
  Auth-Error-Code reach the client as `NO [code] text` / `-ERR [code]
  text`; Auth-Wait delays the refusal, and only while Auth-Login-Attempt is
  below the service's limit.
- Keep-alive: 20 logins reach the service over one or two TCP connections
  (its own count of accepted connections).
- A service that answers after the directory's timeout, one that never
  answers, and a closed port: `NO [UNAVAILABLE]` / `-ERR [SYS/TEMP]` within
  the timeout; the late answer is never given to a later login.
- nginx's mail proxy (Debian's nginx-light with libnginx-mod-mail, started as
  bench/compare and nginx_compat.py start it) beside postern, both asking the
  same service in front of the same Dovecots: for accepted, rewritten and
  refused users both open the same mailbox or refuse with the same text, and
  ask the service the same question; nginx opens a connection per login.
"""

import imaplib
import os
import poplib
import re
import shutil
import tempfile
import time
import unittest

import auth_service
import harness
import testbed
from dirhelp import DirTestCase, base_listeners, listener, second_dovecot

HOST = harness.HOST

# The slow and dead directories' `timeout` (seconds); the service's Auth-Wait
# on a wrong password; scheduling slack allowed on top of either.
TIMEOUT = 1.0
WAIT = 1
SLACK = 0.6

# carol's password on the second Dovecot: only the service knows it (it is
# sent as Auth-Pass for the client-side user `rewritten`).
CAROL_DV2_PW = "carol-on-dv2-7Xq"
MOVED = "Mailbox moved to imap.example.net"
SUSPENDED = "Account suspended, call the help desk"
INVALID = "Invalid login or password"  # auth_service.py's refusal text

NGINX_MAIL_MODULE = "/usr/lib/nginx/modules/ngx_mail_module.so"
HAVE_NGINX = shutil.which("nginx") is not None and os.path.exists(NGINX_MAIL_MODULE)


def marker(store, user):
    return "mailbox of %s on %s" % (user, store)


def marker_message(store, user):
    """The last message of `user`'s INBOX on `store`: its Subject says which
    mailbox a session opened."""
    return ("From: <postmaster@example.test>\n"
            "To: <%s@example.test>\n"
            "Subject: %s\n"
            "Message-ID: <marker.%s.%s@auth-http.test>\n"
            "\n"
            "Which mailbox this is.\n" % (user, marker(store, user), user, store)).encode()


def _subject(header):
    m = re.search(rb"^Subject: ([^\r\n]*)", header, re.M | re.I)
    return m.group(1).decode() if m else None


def _text(x):
    return x.decode("utf-8", "replace") if isinstance(x, bytes) else str(x)


def imap_session(addr, cafile, user, password):
    """imaplib over implicit TLS: LOGIN, then SELECT INBOX and the last
    message's Subject. (True, "", (EXISTS, subject)) or (False, the refusal's
    text after NO, None)."""
    m = imaplib.IMAP4_SSL(addr[0], addr[1], ssl_context=harness.client_context(cafile),
                          timeout=15)
    try:
        try:
            m.login(user, password)
        except imaplib.IMAP4.error as e:
            return False, _text(e.args[0] if e.args else e), None
        typ, data = m.select("INBOX", readonly=True)
        n = int(data[0])
        typ, data = m.fetch(str(n), "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        mailbox = (n, _subject(data[0][1]))
        try:
            m.logout()
        except (imaplib.IMAP4.abort, OSError):
            pass
        return True, "", mailbox
    finally:
        try:
            m.shutdown()
        except OSError:
            pass


def pop3_session(addr, cafile, user, password):
    """poplib over implicit TLS: USER/PASS, then STAT and TOP of the last
    message. (True, "", (count, subject)) or (False, the -ERR line, None)."""
    p = poplib.POP3_SSL(addr[0], addr[1], context=harness.client_context(cafile), timeout=15)
    try:
        try:
            p.user(user)
            p.pass_(password)
        except poplib.error_proto as e:
            return False, _text(e.args[0] if e.args else e), None
        n = p.stat()[0]
        _, lines, _ = p.top(n, 0)
        mailbox = (n, _subject(b"\r\n".join(lines)))
        try:
            p.quit()
        except (poplib.error_proto, OSError):
            pass
        return True, "", mailbox
    finally:
        try:
            p.close()
        except OSError:
            pass


SESSIONS = {"imap": imap_session, "pop3": pop3_session}


def refusal_text(protocol, text):
    """The text of a refusal without the -ERR and without a [CODE]."""
    if protocol == "pop3":
        text = re.sub(r"^-ERR ", "", text)
    return re.sub(r"^\[[^\]]*\] ", "", text)


def headers_of(request):
    return {k.lower(): v for k, v in request["headers"]}


def service_config(d1, d2, wait=WAIT):
    """auth_service.py's users: accepted on the first Dovecot (the default
    Auth-Server/Auth-Port), on the second, rewritten, and refused with
    texts."""
    dv2 = {"imap": d2.imap_port, "pop3": d2.pop3_port}
    return {
        "server": HOST,
        "ports": {"imap": d1.imap_port, "pop3": d1.pop3_port},
        "wait": wait,
        "max_attempts": 2,  # Auth-Wait on attempt 1 only
        "refusal": INVALID,
        "users": {
            "alice": {"password": "demo"},
            "bob": {"password": "demo", "ports": dv2},
            "rewritten": {"password": "typed-pw", "ports": dv2,
                          "headers": {"Auth-User": "carol", "Auth-Pass": CAROL_DV2_PW}},
            "moved": {"password": "pw", "answer": [["Auth-Status", MOVED],
                                                   ["Auth-Error-Code", "CONTACTADMIN"]]},
            "movedpop": {"password": "pw", "answer": [["Auth-Status", MOVED],
                                                      ["Auth-Error-Code", "SYS/PERM"]]},
            "suspended": {"password": "pw", "answer": [["Auth-Status", SUSPENDED]]},
        },
    }


class AuthHttpTest(DirTestCase):
    """postern with `directory: accounts` (auth-http, asking `service`) on
    the harness's listeners, and four more listeners on directories `slow`
    (another service, told to be slow or silent) and `dead` (a closed port),
    both with `timeout: 1s`. Dovecot 1 holds alice, bob and carol; Dovecot 2
    holds bob and carol (another password); every mailbox ends with a marker
    message naming user and Dovecot."""

    @classmethod
    def dovecot_options(cls):
        return dict(users=("alice", "bob", "carol"))

    @classmethod
    def prepare(cls):
        d1 = cls.bed.dovecot
        cls.dv2 = d2 = second_dovecot(cls, "dovecot2", users=("bob",),
                                      passwords={"carol": CAROL_DV2_PW})
        for store, dv in (("dv1", d1), ("dv2", d2)):
            for user in dv.users:
                dv.add_raw_message(user, marker_message(store, user))
        cls.service = auth_service.AuthService(service_config(d1, d2)).start()
        cls.addClassCleanup(cls.service.stop)
        cls.slow = auth_service.AuthService(service_config(d1, d2, wait=0)).start()
        cls.addClassCleanup(cls.slow.stop)
        cls.dead_port = testbed.free_port()
        cls.nginx_ports = None

    @classmethod
    def postern_config(cls):
        listeners = base_listeners(cls.bed) + [
            listener("imaps-slow", "imap", "implicit", directory="slow"),
            listener("pop3s-slow", "pop3", "implicit", directory="slow"),
            listener("imaps-dead", "imap", "implicit", directory="dead"),
            listener("pop3s-dead", "pop3", "implicit", directory="dead"),
            # Fixed ports: the local address comes from the listener's own
            # (no getsockname) unless it is a wildcard.
            listener("imaps-fixed", "imap", "implicit",
                     address="%s:%d" % (HOST, testbed.free_port())),
            listener("imaps-any", "imap", "implicit",
                     address="0.0.0.0:%d" % testbed.free_port()),
        ]
        timeout = "%dms" % (TIMEOUT * 1000)
        return {
            "listeners": listeners,
            "directories": [
                {"name": "accounts", "type": "auth-http",
                 "servers": ["%s:%d" % (HOST, cls.service.port)], "timeout": "5s"},
                {"name": "slow", "type": "auth-http",
                 "servers": ["%s:%d" % (HOST, cls.slow.port)], "timeout": timeout},
                {"name": "dead", "type": "auth-http",
                 "servers": ["%s:%d" % (HOST, cls.dead_port)], "timeout": timeout},
            ],
            "directory": "accounts",
        }

    def setUp(self):
        self.slow.control(delay=0, hang=False)

    # --- helpers ---

    def mailbox(self, store, user):
        """(messages, marker subject) of user's INBOX on store ("dv1", "dv2")."""
        dv = self.bed.dovecot if store == "dv1" else self.dv2
        return len(dv.messages(user)), marker(store, user)

    def session(self, protocol, listener_name, user, password):
        addr = self.bed.addr(listener_name)
        return SESSIONS[protocol](addr, self.bed.cert, user, password)

    def connect_tls(self, name):
        c = harness.Conn(self.bed.addr(name), tls=True, cafile=self.bed.cert)
        self.addCleanup(c.close)
        c.greeting = c.readline()
        return c

    def timed_imap(self, c, tag, command):
        t0 = time.monotonic()
        _, tagged = c.imap(tag, command)
        return time.monotonic() - t0, tagged

    def timed_pop3_login(self, c, user, password):
        """USER then PASS on a raw POP3 session: (seconds for PASS, its line)."""
        line = c.pop3("USER " + user)
        self.assertTrue(line.startswith(b"+OK"), line)
        t0 = time.monotonic()
        line = c.pop3("PASS " + password)
        return time.monotonic() - t0, line

    def login_lines(self, window, protocol, user):
        return len(re.findall(r"%s-login: Info: Login: user=<%s>" % (protocol, re.escape(user)),
                              window.text()))

    def wait_login_lines(self, window, protocol, user, n):
        harness.wait_for(lambda: self.login_lines(window, protocol, user) >= n, 10)
        self.assertEqual(self.login_lines(window, protocol, user), n,
                         "%s logins of %s:\n%s" % (protocol, user, window.text()[-3000:]))

    # --- 1. logins through the directory ---

    def test_accepted_users_reach_the_backend_the_service_names(self):
        """alice: the service's default Auth-Server/Auth-Port (Dovecot 1, a
        configured backend); bob: Auth-Port of Dovecot 2 (no backend of
        postern's config), which holds a bob of its own. Over IMAPS, POP3S,
        STARTTLS and STLS (the last two with imaplib/poplib's upgrade)."""
        dv1, dv2 = self.dovecot_window(), self.dovecot_window(self.dv2)
        for protocol, name in (("imap", "imaps"), ("pop3", "pop3s")):
            for user, store in (("alice", "dv1"), ("bob", "dv2")):
                with self.subTest(listener=name, user=user):
                    ok, text, got = self.session(protocol, name, user, "demo")
                    self.assertTrue(ok, text)
                    self.assertEqual(got, self.mailbox(store, user))
        for protocol in ("imap", "pop3"):
            self.wait_login_lines(dv1, protocol, "alice", 1)
            self.wait_login_lines(dv2, protocol, "bob", 1)
            self.assertEqual(self.login_lines(dv1, protocol, "bob"), 0, dv1.text())
        self.assert_postern_logged(r"session end: .* listener=imaps .*user=alice backend=dovecot ")
        for name, port in (("imaps", self.dv2.imap_port), ("pop3s", self.dv2.pop3_port)):
            self.assert_postern_logged(r"session end: .* listener=%s .*user=bob "
                                       r"backend=127\.0\.0\.1:%d " % (name, port))
        # STARTTLS and STLS listeners ask the same directory.
        host, port = self.bed.addr("imap")
        m = imaplib.IMAP4(host, port, timeout=15)
        m.starttls(ssl_context=harness.client_context(self.bed.cert))
        m.login("bob", "demo")
        typ, data = m.select("INBOX", readonly=True)
        self.assertEqual(int(data[0]), len(self.dv2.messages("bob")))
        m.logout()
        host, port = self.bed.addr("pop3")
        p = poplib.POP3(host, port, timeout=15)
        p.stls(context=harness.client_context(self.bed.cert))
        p.user("bob")
        p.pass_("demo")
        self.assertEqual(p.stat()[0], len(self.dv2.messages("bob")))
        p.quit()

    def test_request_as_nginx_sends_it(self):
        """What the service received for one IMAPS and one POP3S login:
        nginx's headers (Auth-Method, Auth-User, Auth-Pass, Auth-Protocol,
        Auth-Login-Attempt, Client-IP, Auth-SSL) and postern's Client-Port,
        Local-Port and session id (the one in postern's log line)."""
        for protocol, name in (("imap", "imaps"), ("pop3", "pop3s")):
            with self.subTest(listener=name):
                before = len(self.service.requests())
                c = self.connect_tls(name)
                if protocol == "imap":
                    _, line = c.imap("a", "LOGIN alice demo")
                    self.assertTrue(line.startswith(b"a OK"), line)
                    c.imap("b", "LOGOUT")
                else:
                    _, line = self.timed_pop3_login(c, "alice", "demo")
                    self.assertTrue(line.startswith(b"+OK"), line)
                    c.pop3("QUIT")
                client_port = c.sock.getsockname()[1]
                c.close()
                reqs = self.service.requests()[before:]
                self.assertEqual(len(reqs), 1, reqs)
                r = reqs[0]
                self.assertEqual((r["method"], r["path"], r["version"]),
                                 ("GET", "/auth", "HTTP/1.1"))
                h = headers_of(r)
                for k, v in {"auth-method": "plain", "auth-user": "alice", "auth-pass": "demo",
                             "auth-protocol": protocol, "auth-login-attempt": "1",
                             "client-ip": HOST, "auth-ssl": "on",
                             "client-port": str(client_port),
                             "local-port": str(self.bed.addr(name)[1])}.items():
                    self.assertEqual(h.get(k), v, (k, h))
                self.assertRegex(h.get("auth-ssl-protocol", ""), r"^TLSv1\.[23]$")
                self.assert_postern_logged(r"session end: session=%s .*user=alice "
                                           % re.escape(h["auth-session-id"]))

    def test_local_address_of_fixed_and_wildcard_listeners(self):
        """Local-IP and Local-Port name the address the client reached: on a
        listener with its own address and port (taken from the config), on a
        wildcard one (asked of the socket), and on a port-0 one."""
        for name in ("imaps-fixed", "imaps-any", "imaps"):
            with self.subTest(listener=name):
                before = len(self.service.requests())
                c = harness.Conn((HOST, self.bed.addr(name)[1]), tls=True,
                                 cafile=self.bed.cert)
                self.addCleanup(c.close)
                c.greeting = c.readline()
                _, line = c.imap("a", "LOGIN alice demo")
                self.assertTrue(line.startswith(b"a OK"), line)
                c.imap("b", "LOGOUT")
                c.close()
                reqs = self.service.requests()[before:]
                self.assertEqual(len(reqs), 1, reqs)
                h = headers_of(reqs[0])
                self.assertEqual(h.get("local-ip"), HOST, h)
                self.assertEqual(h.get("local-port"), str(self.bed.addr(name)[1]), h)

    def test_rewritten_user_and_password_reach_dovecot(self):
        """The client types `rewritten` / `typed-pw`; the service answers
        Auth-User: carol, Auth-Pass: <carol's password on Dovecot 2> and
        Dovecot 2's port: Dovecot 2 logs carol in, the session opens her
        mailbox there, and no Dovecot ever hears of `rewritten`."""
        dv1, dv2 = self.dovecot_window(), self.dovecot_window(self.dv2)
        for protocol, name in (("imap", "imaps"), ("pop3", "pop3s")):
            with self.subTest(listener=name):
                ok, text, got = self.session(protocol, name, "rewritten", "typed-pw")
                self.assertTrue(ok, text)
                self.assertEqual(got, self.mailbox("dv2", "carol"))
        for protocol in ("imap", "pop3"):
            self.wait_login_lines(dv2, protocol, "carol", 1)
        self.assertNotIn("rewritten", dv1.text() + dv2.text())
        self.assertNotIn("typed-pw", dv1.text() + dv2.text())
        # The service was asked about what the client typed.
        self.assertTrue(any(headers_of(r).get("auth-user") == "rewritten"
                            and headers_of(r).get("auth-pass") == "typed-pw"
                            for r in self.service.requests()))
        self.assert_postern_logged(r"session end: .* user=rewritten backend=127\.0\.0\.1:%d "
                                   % self.dv2.imap_port)

    def test_refusal_text_and_code_reach_the_client(self):
        """Auth-Status text with Auth-Error-Code: `a NO [CONTACTADMIN] <text>`
        over IMAP, `-ERR [SYS/PERM] <text>` over POP3, at once (no
        Auth-Wait), and Dovecot never hears of it."""
        dv = self.dovecot_window()
        c = self.connect_tls("imaps")
        dt, tagged = self.timed_imap(c, "a", "LOGIN moved pw")
        self.assertEqual(tagged, ("a NO [CONTACTADMIN] %s\r\n" % MOVED).encode())
        self.assertLess(dt, 0.5)
        c = self.connect_tls("pop3s")
        dt, line = self.timed_pop3_login(c, "movedpop", "pw")
        self.assertEqual(line, ("-ERR [SYS/PERM] %s\r\n" % MOVED).encode())
        self.assertLess(dt, 0.5)
        # imaplib and poplib see the same.
        ok, text, _ = self.session("imap", "imaps", "moved", "pw")
        self.assertFalse(ok)
        self.assertEqual(text, "[CONTACTADMIN] " + MOVED)
        ok, text, _ = self.session("pop3", "pop3s", "movedpop", "pw")
        self.assertFalse(ok)
        self.assertEqual(text, "-ERR [SYS/PERM] " + MOVED)
        self.assert_backend_untouched(dv, "a refused login")
        # The log escapes the text (spaces as %20).
        self.assert_postern_logged(r"auth failed: .* user=moved backend=- detail=\"auth-http:"
                                   r"accounts: auth http server refused: .*%s"
                                   % re.escape(MOVED.replace(" ", "%20")))

    def test_refusal_text_without_code_reaches_the_client(self):
        """Auth-Status text alone (what nginx services send): nginx gives the
        client `a NO <text>` / `-ERR <text>` (tests/routing/
        nginx_auth_http_fixtures.inc); postern gives the same text after its
        generic code, `[AUTHENTICATIONFAILED]` / `[AUTH]`."""
        c = self.connect_tls("imaps")
        _, tagged = c.imap("a", "LOGIN suspended pw")
        self.assertEqual(tagged, ("a NO [AUTHENTICATIONFAILED] %s\r\n" % SUSPENDED).encode())
        c = self.connect_tls("pop3s")
        _, line = self.timed_pop3_login(c, "suspended", "pw")
        self.assertEqual(line, ("-ERR [AUTH] %s\r\n" % SUSPENDED).encode())

    def test_auth_wait_delays_the_refusal(self):
        """A wrong password: the service answers Auth-Wait: 1 on attempt 1
        and none from attempt 2 on (max_attempts 2, as nginx's documentation
        asks). postern holds the first refusal a second, answers the second
        at once, and takes the right password on attempt 3; the service saw
        Auth-Login-Attempt 1, 2, 3 in that session."""
        for protocol, name in (("imap", "imaps"), ("pop3", "pop3s")):
            with self.subTest(listener=name):
                before = len(self.service.requests())
                c = self.connect_tls(name)
                times, lines = [], []
                for i, pw in enumerate(("wrong-1", "wrong-2", "demo")):
                    if protocol == "imap":
                        dt, line = self.timed_imap(c, "a%d" % i, "LOGIN alice " + pw)
                    else:
                        dt, line = self.timed_pop3_login(c, "alice", pw)
                    times.append(dt)
                    lines.append(line)
                fail = b"NO [AUTHENTICATIONFAILED]" if protocol == "imap" else b"-ERR [AUTH]"
                ok = b"a2 OK" if protocol == "imap" else b"+OK"
                self.assertIn(fail, lines[0])
                self.assertIn(fail, lines[1])
                self.assertTrue(lines[2].startswith(ok), lines[2])
                msg = "LOGIN times %s" % ["%.3f" % t for t in times]
                self.assertGreaterEqual(times[0], WAIT - 0.02, msg)
                self.assertLess(times[0], WAIT + SLACK, msg)
                self.assertLess(times[1], 0.5, msg)
                self.assertLess(times[2], 0.5, msg)
                reqs = self.service.requests()[before:]
                self.assertEqual([headers_of(r).get("auth-login-attempt") for r in reqs],
                                 ["1", "2", "3"])
                waits = [dict(r["response"]["headers"]).get("Auth-Wait") for r in reqs]
                self.assertEqual(waits, [str(WAIT), None, None])

    # --- 2. keep-alive ---

    def test_keep_alive_few_connections_for_many_logins(self):
        """20 logins one after the other (IMAPS and POP3S by turns, one
        worker): the service counts one or two TCP connections for them, not
        20 (nginx opens one per login: test_nginx_side_by_side)."""
        n = 20
        before = len(self.service.requests())
        accepted0 = self.service.stats()["connections"]
        for i in range(n):
            protocol, name = (("imap", "imaps"), ("pop3", "pop3s"))[i % 2]
            ok, text, got = self.session(protocol, name, "alice", "demo")
            self.assertTrue(ok, text)
        reqs = self.service.requests()[before:]
        accepted = self.service.stats()["connections"] - accepted0
        conns = sorted({r["connection"] for r in reqs})
        self.assertEqual(len(reqs), n)
        msg = "%d logins: %d new connections to the service, requests on %s" % (
            n, accepted, conns)
        print("\n  keep-alive: " + msg)
        self.assertLessEqual(len(conns), 2, msg)
        self.assertLessEqual(accepted, 2, msg)
        self.assertEqual({r["version"] for r in reqs}, {"HTTP/1.1"})

    # --- 3. slow and dead services ---

    def assert_unavailable_in_time(self, name, user, password, low):
        """A login on listener `name` answered `NO [UNAVAILABLE]` /
        `-ERR [SYS/TEMP]` after at least `low` and within TIMEOUT + SLACK
        seconds. Returns the time."""
        c = self.connect_tls(name)
        if name.startswith("imap"):
            dt, line = self.timed_imap(c, "a", "LOGIN %s %s" % (user, password))
            self.assertTrue(line.startswith(b"a NO [UNAVAILABLE]"), line)
        else:
            dt, line = self.timed_pop3_login(c, user, password)
            self.assertTrue(line.startswith(b"-ERR [SYS/TEMP]"), line)
        msg = "%s: answered after %.3f s (timeout %.1f s)" % (name, dt, TIMEOUT)
        self.assertGreaterEqual(dt, low, msg)
        self.assertLess(dt, TIMEOUT + SLACK, msg)
        return dt

    def test_slow_service_is_unavailable_within_the_timeout(self):
        """The service answers 3 s late, then not at all (holds the
        connection): both times the client hears UNAVAILABLE / SYS/TEMP
        after the 1 s timeout, Dovecot hears nothing. Once the service is
        quick again, a wrong password is refused (the late OK for an earlier
        login is never taken for it) and the right one logs in."""
        dv = self.dovecot_window()
        asked = self.slow.stats()["requests"]
        for mode in ({"delay": 3 * TIMEOUT}, {"hang": True}):
            self.slow.control(delay=0, hang=False)
            self.slow.control(**mode)
            for name in ("imaps-slow", "pop3s-slow"):
                with self.subTest(mode=mode, listener=name):
                    self.assert_unavailable_in_time(name, "alice", "demo", TIMEOUT - 0.05)
        self.assert_backend_untouched(dv, "a login the directory could not decide")
        self.assertEqual(self.slow.stats()["requests"] - asked, 4)
        self.assert_postern_logged(r"backend unavailable: .* user=alice .*"
                                   r"detail=\"auth-http:slow: auth http server did not answer "
                                   r"within %d ms\"" % (TIMEOUT * 1000))
        self.slow.control(delay=0, hang=False)
        c = self.connect_tls("imaps-slow")
        _, tagged = c.imap("a", "LOGIN alice wrong")
        self.assertTrue(tagged.startswith(b"a NO [AUTHENTICATIONFAILED]"), tagged)
        _, tagged = c.imap("b", "LOGIN alice demo")
        self.assertTrue(tagged.startswith(b"b OK"), tagged)
        ok, text, got = self.session("pop3", "pop3s-slow", "bob", "demo")
        self.assertTrue(ok, text)
        self.assertEqual(got, self.mailbox("dv2", "bob"))

    def test_dead_service_is_unavailable_within_the_timeout(self):
        """Nothing listens on the service's port: UNAVAILABLE / SYS/TEMP,
        well within the timeout (the connection is refused at once)."""
        dv = self.dovecot_window()
        for name in ("imaps-dead", "pop3s-dead", "imaps-dead"):
            with self.subTest(listener=name):
                self.assert_unavailable_in_time(name, "alice", "demo", 0)
        self.assert_backend_untouched(dv, "a login the directory could not decide")
        self.assert_postern_logged(r"backend unavailable: .* user=alice .*"
                                   r"detail=\"auth-http:dead: auth http server "
                                   r"127\.0\.0\.1:%d: " % self.dead_port)

    # --- 4. nginx beside postern ---

    @classmethod
    def start_nginx(cls):
        """nginx's mail proxy as bench/compare runs it (bench/nginx/
        nginx.conf.in: IMAPS, POP3S, plaintext IMAP), asking `service`,
        with the bed's certificate. Once per class."""
        if cls.nginx_ports is not None:
            return cls.nginx_ports
        import nginx_compat
        workdir = tempfile.mkdtemp(prefix="nginx-", dir=cls.bed.tmp)
        os.chmod(workdir, 0o755)
        # start_nginx makes (or reuses) <workdir>/cert.pem: reuse the bed's.
        shutil.copy(cls.bed.cert, os.path.join(workdir, "cert.pem"))
        shutil.copy(cls.bed.key, os.path.join(workdir, "cert-key.pem"))
        proc, ports = nginx_compat.start_nginx(workdir, cls.service.port)

        def stop():
            proc.terminate()
            try:
                proc.wait(10)
            except Exception:
                proc.kill()
                proc.wait()
        cls.addClassCleanup(stop)
        cls.nginx_ports = ports
        return ports

    # (user, password, where the mailbox is: (Dovecot, Dovecot user) or None
    # for a refusal, the refusal's text)
    SIDE_BY_SIDE = [
        ("alice", "demo", ("dv1", "alice"), None),
        ("bob", "demo", ("dv2", "bob"), None),
        ("rewritten", "typed-pw", ("dv2", "carol"), None),
        ("moved", "pw", None, MOVED),
        ("suspended", "pw", None, SUSPENDED),
        ("alice", "wrong", None, INVALID),
        ("nobody", "demo", None, INVALID),
    ]

    @unittest.skipUnless(HAVE_NGINX, "nginx's mail proxy is not installed (Debian packages "
                         "nginx-light and libnginx-mod-mail; %s)" % NGINX_MAIL_MODULE)
    def test_nginx_side_by_side(self):
        """The same users through nginx and through postern, both asking the
        same service in front of the same two Dovecots: the same outcome,
        the same mailbox (EXISTS and the marker's Subject), the same refusal
        text (postern adds its response code), the same Dovecot user logged
        in on the same Dovecot, and the same request to the service (nginx's
        headers, byte for byte). nginx makes one connection per login."""
        ngx = self.start_nginx()
        nginx_conns, postern_conns, nginx_logins = set(), set(), 0
        for protocol, name in (("imap", "imaps"), ("pop3", "pop3s")):
            for user, password, where, refusal in self.SIDE_BY_SIDE:
                with self.subTest(protocol=protocol, user=user, password=password):
                    windows = {"dv1": self.dovecot_window(),
                               "dv2": self.dovecot_window(self.dv2)}
                    before = len(self.service.requests())
                    got = {
                        "postern": self.session(protocol, name, user, password),
                        "nginx": SESSIONS[protocol]((HOST, ngx[name]), self.bed.cert,
                                                    user, password),
                    }
                    reqs = self.service.requests()[before:]
                    (p_ok, p_text, p_box), (n_ok, n_text, n_box) = got["postern"], got["nginx"]
                    self.assertEqual(p_ok, n_ok, got)
                    if where is None:
                        self.assertFalse(p_ok, got)
                        self.assertEqual(refusal_text(protocol, n_text), refusal, got)
                        self.assertEqual(refusal_text(protocol, p_text), refusal, got)
                        for store in windows:
                            self.assert_backend_untouched(
                                windows[store], "a refused login",
                                self.bed.dovecot if store == "dv1" else self.dv2)
                    else:
                        store, dv_user = where
                        self.assertTrue(p_ok, got)
                        self.assertEqual(p_box, self.mailbox(store, dv_user), got)
                        self.assertEqual(n_box, p_box, got)
                        # Each proxy logged the same Dovecot user in on that
                        # Dovecot, and nobody on the other.
                        self.wait_login_lines(windows[store], protocol, dv_user, 2)
                        other = "dv2" if store == "dv1" else "dv1"
                        self.assertEqual(self.login_lines(windows[other], protocol, dv_user), 0)
                    # The same question, and the same answer: nginx's headers
                    # are postern's too.
                    by = {"postern": [r for r in reqs if r["version"] == "HTTP/1.1"],
                          "nginx": [r for r in reqs if r["version"] == "HTTP/1.0"]}
                    self.assertEqual([len(by["postern"]), len(by["nginx"])], [1, 1], reqs)
                    nginx_logins += 1
                    nginx_conns.add(by["nginx"][0]["connection"])
                    postern_conns.add(by["postern"][0]["connection"])
                    hn, hp = headers_of(by["nginx"][0]), headers_of(by["postern"][0])
                    for k in ("auth-method", "auth-user", "auth-pass", "auth-protocol",
                              "auth-login-attempt", "client-ip", "auth-ssl",
                              "auth-ssl-protocol"):
                        self.assertEqual(hp.get(k), hn.get(k), k)
                    self.assertEqual(by["nginx"][0]["response"], by["postern"][0]["response"])
        msg = ("%d logins each: nginx used %d connections to the service, postern %d"
               % (nginx_logins, len(nginx_conns), len(postern_conns)))
        print("\n  side by side: " + msg)
        self.assertEqual(len(nginx_conns), nginx_logins, msg)
        self.assertLessEqual(len(postern_conns), 2, msg)


if __name__ == "__main__":
    unittest.main()
