"""Issue 11, the observability and admin half, against the real binary, a
real Dovecot and real clients:

- a real Prometheus (Debian's) scrapes /metrics with the bearer token while
  imaplib/poplib sessions run, and the counters it stored moved by exactly
  what the sessions did (logins by result, sessions open, relayed bytes,
  TLS handshakes by version and resumption, refusals, reloads); a scrape
  with a wrong token or none fails; `promtool check metrics` accepts a scrape;
- the admin API: 401 without the token (and nothing done), /healthz and
  /readyz open, a node drain (readiness 503, listeners still serving);
  /admin/sessions (user, backend, stage, client; the id Dovecot logged;
  filters by user, backend and client address); kicks at command
  boundaries (never inside a FETCH literal or a RETR); the directory
  cache cleared for one user;
- the JSON log: every line one object; one session_end per session with
  the id Dovecot saw; auth_failed, backend_down/backend_up, reload; hostile
  user names cannot break or forge a line;
- log.trace_users: every byte of a traced session, pre-login secrets
  masked everywhere, nothing of an untraced one;
- user/group: the uid and gid of the process after start (also with a
  privileged port); an unknown user refused at load; limits.max_sessions
  beyond the open-files hard limit refused before anything listens.
"""

import base64
import hashlib
import imaplib
import os
import poplib
import re
import resource
import signal
import socket
import ssl
import subprocess
import time
import unittest

import harness
import opshelp
import routehelp
import testbed
from harness import crlf, dot_stuff, plain_ir
from opshelp import metric_sum, promql

HOST = harness.HOST


def imaps_login(bed, user, password="demo", then=None, tls_version=None):
    """imaplib over implicit TLS: LOGIN (raises on NO), then(M), LOGOUT."""
    host, port = bed.addr("imaps")
    ctx = harness.client_context(bed.cert)
    if tls_version is not None:
        ctx.minimum_version = ctx.maximum_version = tls_version
    m = imaplib.IMAP4_SSL(host, port, ssl_context=ctx, timeout=15)
    try:
        m.login(user, password)
        out = then(m) if then else None
        m.logout()
        return out
    finally:
        try:
            m.shutdown()
        except OSError:
            pass


def pop3s_login(bed, user, password="demo", listener="pop3s"):
    """poplib over implicit TLS; returns (ok, answer)."""
    host, port = bed.addr(listener)
    p = poplib.POP3_SSL(host, port, context=harness.client_context(bed.cert), timeout=15)
    try:
        p.user(user)
        try:
            resp = p.pass_(password)
        except poplib.error_proto as e:
            return False, e.args[0]
        p.quit()
        return True, resp
    finally:
        p.close()


# --- 1. a real Prometheus ----------------------------------------------------------

BIG_FETCH = 300_000


class MetricsTest(opshelp.AdminTestCase):
    """Prometheus 2 (Debian) scrapes postern (two workers: every counter is
    summed over them) every second with the bearer token from the token
    file; a second job uses a wrong token and a third none. Each test reads
    a baseline that Prometheus and a direct scrape agree on, acts, and waits
    until Prometheus holds exactly the baseline plus what the test did."""

    postern_overrides = {"workers": 2, "limits": {"max_connections_per_ip": 12}}
    dovecot_kwargs = {"users": ("alice", "bob", "carol", "dave"),
                      "extra_messages": {"dave": [BIG_FETCH]}}
    gateway_users = ("carol",)  # POP3 through the gateway

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.big = crlf(cls.bed.dovecot.messages("dave")[-1])
        wrong, _ = opshelp.write_token(cls.bed.tmp, "wrong.token")
        host, port = cls.admin.addr
        cls.prom = opshelp.Prometheus(os.path.join(cls.bed.tmp, "prometheus"), {
            "postern": (host, port, cls.token_file),
            "wrong_token": (host, port, wrong),
            "no_token": (host, port, None)})
        cls.addClassCleanup(cls.prom.stop)
        cls.prom.start()
        # Prometheus starts scraping a few seconds after it is ready.
        up = cls.prom.wait_value('sum(up{job="postern"})', 1.0, timeout=30)
        if up != 1.0:
            raise AssertionError("Prometheus never scraped postern (up=%r):\n%s\n%s"
                                 % (up, cls.prom.targets(), cls.prom.log()[-2000:]))

    def tearDown(self):
        opshelp.print_failure_logs(self, ("prometheus", self.prom.log()))
        super().tearDown()

    # --- helpers ---

    def settled(self, series, timeout=15.0):
        """{key: value} of series {key: (name, labels)} once Prometheus'
        latest samples equal a direct scrape's (nothing in flight)."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.admin.metrics()
            direct = {k: metric_sum(text, n, **l) or 0.0 for k, (n, l) in series.items()}
            stored = {k: self.prom.value(promql(n, **l)) or 0.0 for k, (n, l) in series.items()}
            if direct == stored:
                return direct
            if time.monotonic() > deadline:
                self.fail("Prometheus %r never caught up with postern %r" % (stored, direct))
            time.sleep(0.3)

    def assert_moved(self, series, action, timeout=15.0):
        """series {key: (name, labels, delta)}: runs action(); each series'
        value in Prometheus becomes its baseline + delta, and stays there
        (a direct scrape agrees)."""
        sel = {k: (n, l) for k, (n, l, _) in series.items()}
        before = self.settled(sel)
        action()
        want = {k: before[k] + d for k, (_, _, d) in series.items()}
        for k, (n, l, _) in series.items():
            got = self.prom.wait_value(promql(n, **l), want[k], timeout=timeout)
            self.assertEqual(got, want[k], "%s: %s %r went from %s to %s, not %s"
                             % (k, n, l, before[k], got, want[k]))
        self.assertEqual(self.settled(sel), want)
        return before

    # --- tests ---

    def test_logins_by_listener_and_result(self):
        """3 good IMAP logins and 2 wrong POP3 passwords (poplib), on two
        listeners: exactly +3 ok on imaps, +2 auth_failed on pop3s, and
        nothing on the other cells."""
        L = "postern_logins_total"

        def act():
            for _ in range(3):
                imaps_login(self.bed, "alice", then=lambda m: m.select("INBOX"))
            for _ in range(2):
                ok, answer = pop3s_login(self.bed, "bob", "wrong-password")
                self.assertFalse(ok, answer)
                self.assertIn(b"[AUTH]", answer)
        before = self.assert_moved({
            "imaps ok": (L, {"listener": "imaps", "result": "ok"}, 3),
            "imaps failed": (L, {"listener": "imaps", "result": "auth_failed"}, 0),
            "pop3s ok": (L, {"listener": "pop3s", "result": "ok"}, 0),
            "pop3s failed": (L, {"listener": "pop3s", "result": "auth_failed"}, 2),
            "relay sessions": ("postern_sessions_total",
                               {"listener": "imaps", "stage": "relay"}, 3),
            "backend logins": ("postern_backend_logins_total",
                               {"backend": "dovecot", "result": "ok"}, 3),
            "backend refusals": ("postern_backend_logins_total",
                                 {"backend": "dovecot", "result": "auth_failed"}, 2),
            "backend latency": ("postern_backend_login_seconds_count",
                                {"backend": "dovecot"}, 5),
        }, act)
        print("\n  logins before: %s" % before)

    def test_sessions_open_while_held(self):
        """4 IMAPS and 2 POP3S sessions held logged in, one POP3S session
        through the gateway and one IMAP session before login: the gauges
        say 4, 2, 1 and 1 while they are open and 0 once they are closed."""
        held = []
        for _ in range(4):
            c = self.connect("imaps")
            _, tagged = c.imap("a", "LOGIN alice demo")
            self.assertTrue(tagged.startswith(b"a OK"), tagged)
            held.append(c)
        for _ in range(2):
            c = self.connect("pop3s")
            self.assertTrue(c.pop3("USER bob").startswith(b"+OK"))
            self.assertTrue(c.pop3("PASS demo").startswith(b"+OK"))
            held.append(c)
        c = self.connect("pop3s")
        self.assertTrue(c.pop3("USER carol").startswith(b"+OK"))
        self.assertTrue(c.pop3("PASS demo").startswith(b"+OK"))
        held.append(c)
        held.append(self.connect("imap"))  # greeted, nothing else
        O = "postern_sessions_open"
        cells = {"imaps relay": ({"listener": "imaps", "stage": "relay"}, 4),
                 "pop3s relay": ({"listener": "pop3s", "stage": "relay"}, 2),
                 "pop3s gateway": ({"listener": "pop3s", "stage": "gateway"}, 1),
                 "imap prelogin": ({"listener": "imap", "stage": "prelogin"}, 1),
                 "imaps prelogin": ({"listener": "imaps", "stage": "prelogin"}, 0)}
        for key, (labels, n) in cells.items():
            got = self.prom.wait_value(promql(O, **labels), float(n))
            self.assertEqual(got, n, "%s while held" % key)
        for c in held:
            c.close()
        for key, (labels, n) in cells.items():
            got = self.prom.wait_value(promql(O, **labels), 0.0)
            self.assertEqual(got, 0.0, "%s after the close" % key)

    def test_relayed_bytes_cover_a_fetched_message(self):
        """A 300 kB message fetched by imaplib over IMAPS: relayed
        server_to_client bytes grow by at least its size (the counters are
        updated once a second by the workers), and by not much more."""
        series = ("postern_relayed_bytes_total",
                  {"listener": "imaps", "direction": "server_to_client"})
        up = ("postern_relayed_bytes_total",
              {"listener": "imaps", "direction": "client_to_server"})
        before = self.settled({"down": series, "up": up})
        got = []

        def fetch(m):
            typ, data = m.select("INBOX", readonly=True)
            typ, data = m.fetch(data[0].decode(), "(BODY.PEEK[])")
            got.append(data[0][1])
        imaps_login(self.bed, "dave", then=fetch)
        self.assertEqual(got[0], self.big)
        q = promql(series[0], **series[1])
        harness.wait_for(lambda: (self.prom.value(q) or 0) >= before["down"] + len(self.big),
                         timeout=15, interval=0.2)
        after = self.settled({"down": series, "up": up})
        down = after["down"] - before["down"]
        print("\n  relayed for a %d-byte FETCH: %d down, %d up"
              % (len(self.big), down, after["up"] - before["up"]))
        self.assertGreaterEqual(down, len(self.big))
        self.assertLess(down, len(self.big) + 16384, "more than the session sent")
        self.assertGreater(after["up"] - before["up"], len("a LOGIN dave demo\r\n"))

    def test_relayed_bytes_when_spliced(self):
        """The same over imap-plain, where the literal goes through
        splice(2) and never through postern's buffers: counted all the same."""
        series = ("postern_relayed_bytes_total",
                  {"listener": "imap-plain", "direction": "server_to_client"})
        before = self.settled({"down": series})
        mark = self.mark()  # the client port alone may be an earlier session's too
        c = self.connect("imap-plain")
        n = harness.start_fetch_last(self, c, "dave")
        untagged, tagged = c.imap_until_tagged("c", timeout=30)
        self.assertEqual(untagged[0], b"* %d FETCH (BODY[] {%d}\r\n" % (n, len(self.big))
                         + self.big + b")\r\n")
        c.imap("d", "LOGOUT")
        ends = opshelp.wait_events(lambda: self.since(mark), "session_end",
                                   client="127.0.0.1:%d" % opshelp.local_port(c))
        self.assertEqual(ends[0]["stage"], "splice")
        q = promql(series[0], **series[1])
        harness.wait_for(lambda: (self.prom.value(q) or 0) >= before["down"] + len(self.big),
                         timeout=15, interval=0.2)
        down = self.settled({"down": series})["down"] - before["down"]
        self.assertGreaterEqual(down, len(self.big))
        self.assertLess(down, len(self.big) + 16384)
        self.assertEqual(down, ends[0]["out"])

    def tls_connect(self, listener, version, session=None):
        # One context per version: a session resumes only from its own.
        if not hasattr(self, "_ctx"):
            self._ctx = {}
        ctx = self._ctx.get(version)
        if ctx is None:
            ctx = self._ctx[version] = harness.client_context(self.bed.cert)
            ctx.minimum_version = ctx.maximum_version = version
        raw = socket.create_connection(self.bed.addr(listener), timeout=10)
        s = ctx.wrap_socket(raw, server_hostname="localhost", session=session)
        greeting = s.recv(1024)  # TLS 1.3 tickets come with the first read
        self.assertTrue(greeting.startswith(b"+OK"), greeting)
        return s

    def test_tls_handshakes_by_version_and_resumption(self):
        """On pop3s: two fresh TLS 1.2 handshakes and one resumed, three
        fresh TLS 1.3 and one resumed (Python says it resumed), and one
        client that sends no ClientHello at all."""
        T = "postern_tls_handshakes_total"
        v12, v13 = ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3
        resumed = []

        def act():
            for version, fresh in ((v12, 2), (v13, 3)):
                first = None
                for _ in range(fresh):
                    s = self.tls_connect("pop3s", version)
                    self.assertFalse(s.session_reused)
                    first = first or s.session
                    s.close()
                s = self.tls_connect("pop3s", version, session=first)
                resumed.append(s.session_reused)
                s.close()
            # STLS on the pop3 listener: counted there.
            c = self.connect("pop3")
            self.assertTrue(c.pop3("STLS").startswith(b"+OK"))
            self.assertEqual(c.start_tls(), "TLSv1.3")
            self.assertTrue(c.pop3("CAPA").startswith(b"+OK"))
            c.close()
            with socket.create_connection(self.bed.addr("pop3s"), timeout=10) as s:
                s.sendall(b"GET / HTTP/1.0\r\n\r\n")
                try:
                    s.recv(100)
                except OSError:
                    pass
        self.assert_moved({
            "1.2 fresh": (T, {"listener": "pop3s", "version": "TLSv1.2", "resumed": "false"}, 2),
            "1.2 resumed": (T, {"listener": "pop3s", "version": "TLSv1.2", "resumed": "true"}, 1),
            "1.3 fresh": (T, {"listener": "pop3s", "version": "TLSv1.3", "resumed": "false"}, 3),
            "1.3 resumed": (T, {"listener": "pop3s", "version": "TLSv1.3", "resumed": "true"}, 1),
            "imaps": (T, {"listener": "imaps"}, 0),
            "stls": (T, {"listener": "pop3", "version": "TLSv1.3", "resumed": "false"}, 1),
            "failures": ("postern_tls_handshake_failures_total", {"listener": "pop3s"}, 1),
        }, act)
        self.assertEqual(resumed, [True, True], "the client did not resume")

    def test_refusals_by_cap(self):
        """limits.max_connections_per_ip 12: the 13th and 14th connections
        from 127.0.0.9 are refused, and counted as ip_cap."""
        held = []

        def act():
            for _ in range(12):
                c = opshelp.source_conn(self.bed.addr("imap"), "127.0.0.9")
                self.assertTrue(c.greeting.startswith(b"* OK"), c.greeting)
                held.append(c)
            for _ in range(2):
                c = opshelp.source_conn(self.bed.addr("imap"), "127.0.0.9")
                held.append(c)
                self.assertTrue(c.greeting.startswith(b"* BYE [UNAVAILABLE]"), c.greeting)
        try:
            self.assert_moved({
                "ip cap": ("postern_connections_refused_total", {"reason": "ip_cap"}, 2),
                "prelogin cap": ("postern_connections_refused_total",
                                 {"reason": "prelogin_cap"}, 0),
            }, act)
        finally:
            for c in held:
                c.close()

    def test_reloads_counted_by_result(self):
        """POST /admin/reload: +1 ok and the snapshot gauge is the serial the
        answer names; a broken config file: 422, +1 refused, the serial
        stays."""
        R = "postern_config_reloads_total"
        answers = []
        path = self.bed.postern.config_path
        with open(path) as f:
            good = f.read()

        def ok():
            r = self.admin.post("/admin/reload")
            self.assertEqual(r.status, 200, r)
            answers.append(r.json())
        self.assert_moved({"ok": (R, {"result": "ok"}, 1),
                           "refused": (R, {"result": "refused"}, 0)}, ok)
        serial = answers[0]["snapshot"]
        self.assertEqual(answers[0]["result"], "ok")
        self.assertEqual(self.prom.wait_value("sum(postern_config_snapshot)", float(serial)),
                         serial)

        def refused():
            with open(path, "w") as f:
                f.write(good.replace("hostname:", "hostnmae:", 1))
            try:
                r = self.admin.post("/admin/reload")
            finally:
                with open(path, "w") as f:
                    f.write(good)
            self.assertEqual(r.status, 422, r)
            self.assertIn("hostnmae", r.json().get("error", ""))
        self.assert_moved({"ok": (R, {"result": "ok"}, 0),
                           "refused": (R, {"result": "refused"}, 1)}, refused)
        self.assertEqual(self.prom.value("sum(postern_config_snapshot)"), serial)
        self.assert_serving()

    def test_scrapes_without_the_token_fail(self):
        """The jobs with a wrong token and with none are down (401), the
        one with the token up; build info is there."""
        targets = {t["labels"]["job"]: t for t in self.prom.targets()}
        self.assertEqual(targets["postern"]["health"], "up", targets["postern"])
        for job in ("wrong_token", "no_token"):
            self.assertEqual(self.prom.value('sum(up{job="%s"})' % job), 0.0, job)
            self.assertEqual(targets[job]["health"], "down", targets[job])
            self.assertIn("401", targets[job]["lastError"], targets[job])
        info = self.prom.query('postern_build_info{job="postern"}')
        self.assertEqual(len(info), 1, info)
        self.assertEqual(info[0][1], 1.0)
        self.assertTrue(info[0][0].get("version"), info)
        self.assertEqual(self.prom.query('postern_build_info{job!="postern"}'), [])

    def test_promtool_accepts_a_scrape(self):
        """`promtool check metrics` on a direct scrape taken after traffic
        (histograms filled): exit 0, nothing printed."""
        imaps_login(self.bed, "carol")
        pop3s_login(self.bed, "carol", "nope")
        text = self.admin.metrics()
        self.assertIn("postern_backend_login_seconds_bucket", text)
        self.assertGreater(metric_sum(text, "postern_buffer_pool_bytes"), 0)
        r = subprocess.run(["promtool", "check", "metrics"], input=text.encode(),
                           capture_output=True, timeout=30)
        self.assertEqual((r.returncode, r.stdout + r.stderr), (0, b""),
                         "promtool check metrics:\n%s" % (r.stdout + r.stderr).decode())



# --- 2. the admin API's token, health and node drain ---------------------------------

# Every route that needs the token, with parameters that would act.
GUARDED = [
    ("GET", "/metrics", None),
    ("GET", "/admin/sessions", None),
    ("GET", "/admin/sessions", {"user": "alice"}),
    ("POST", "/admin/kick", {"user": "alice"}),
    ("GET", "/admin/backends", None),
    ("POST", "/admin/backends/drain", {"backend": "dovecot", "spread": "1ms"}),
    ("POST", "/admin/backends/undrain", {"backend": "dovecot"}),
    ("POST", "/admin/reload", None),
    ("POST", "/admin/cache/clear", None),
    ("POST", "/admin/cache/clear", {"user": "alice"}),
    ("POST", "/admin/drain", None),
    ("POST", "/admin/undrain", None),
]


class AdminAuthTest(opshelp.AdminTestCase):
    """The bearer token: without it, with a wrong one (or a near miss), no
    route but /healthz and /readyz answers, and nothing is done: a held
    session is not kicked, the backend not drained, the node not drained,
    no reload or admin action is counted."""

    def hold_alice(self):
        c = self.connect("imaps")
        _, tagged = c.imap("a", "LOGIN alice demo")
        self.assertTrue(tagged.startswith(b"a OK"), tagged)
        return c

    def counted(self):
        text = self.admin.metrics()
        return (metric_sum(text, "postern_config_reloads_total"),
                metric_sum(text, "postern_admin_actions_total"))

    def assert_nothing_done(self, held, mark, before):
        _, tagged = held.imap("n", "NOOP")
        self.assertTrue(tagged.startswith(b"n OK"), tagged)
        self.assertEqual(self.anon.get("/readyz").status, 200)
        backends = self.admin.get("/admin/backends").json()["backends"]
        self.assertEqual([(b["name"], b["up"], b["drained"]) for b in backends],
                         [("dovecot", True, False)])
        self.assertEqual(self.counted(), before)
        for event in ("kick", "node_drain", "backend_drain", "reload"):
            self.assertEqual(opshelp.events(self.since(mark), event), [])

    def test_no_token_is_401_and_does_nothing(self):
        held = self.hold_alice()
        mark = self.mark()
        before = self.counted()
        for method, path, params in GUARDED:
            with self.subTest(method=method, path=path, params=params):
                r = self.anon.request(method, path, params)
                self.assertEqual(r.status, 401, r)
                self.assertEqual(r.headers.get("www-authenticate"), 'Bearer realm="postern"')
                self.assertNotIn("postern_", r.body)
                self.assertNotIn("alice", r.body)
        self.assert_nothing_done(held, mark, before)

    def test_wrong_tokens_are_401_and_do_nothing(self):
        held = self.hold_alice()
        mark = self.mark()
        before = self.counted()
        t = self.token
        wrong = {"other": "0123456789abcdef0123456789abcdef",
                 "prefix": t[:-1], "longer": t + "0", "case": t.upper(),
                 "empty": ""}
        for method, path, params in GUARDED:
            for why, tok in wrong.items():
                with self.subTest(method=method, path=path, token=why):
                    r = self.admin.request(method, path, params, token=tok)
                    self.assertEqual(r.status, 401, r)
                    self.assertNotIn("postern_", r.body)
            for why, header in {"basic": "Basic " + base64.b64encode(
                    b"admin:" + t.encode()).decode(), "bare": t,
                    "query": None}.items():
                with self.subTest(method=method, path=path, header=why):
                    if header is None:  # the token as a query parameter instead
                        r = self.anon.request(method, path, dict(params or {}, token=t,
                                                                 access_token=t))
                    else:
                        r = self.anon.request(method, path, params,
                                              headers={"Authorization": header})
                    self.assertEqual(r.status, 401, r)
        self.assert_nothing_done(held, mark, before)

    def test_scheme_is_case_insensitive(self):
        """RFC 9110 section 11.1: the auth scheme is case-insensitive."""
        r = self.anon.get("/admin/backends", headers={"Authorization": "bearer " + self.token})
        self.assertEqual(r.status, 200, r)

    def test_health_routes_are_open(self):
        for tok in (None, "wrong-token-wrong-token"):
            with self.subTest(token=tok):
                r = self.admin.get("/healthz", token=tok)
                self.assertEqual((r.status, r.body), (200, "ok\n"))
                r = self.admin.get("/readyz", token=tok)
                self.assertEqual((r.status, r.body), (200, "ready\n"))
        # An unknown path is 401 without the token (nothing about what exists)
        # and 404 with it.
        self.assertEqual(self.anon.get("/admin/nope").status, 401)
        self.assertEqual(self.admin.get("/admin/nope").status, 404)

    def test_node_drain_flips_readiness_and_keeps_serving(self):
        """POST /admin/drain: /readyz 503 "draining" while the listeners still
        accept and log in (IMAP and POP3) and a held session goes on;
        /admin/undrain: 200 again. Both logged as node_drain events."""
        held = self.hold_alice()
        mark = self.mark()
        r = self.admin.post("/admin/drain")
        self.addCleanup(self.admin.post, "/admin/undrain")
        self.assertEqual((r.status, r.json()), (200, {"ready": False}))
        r = self.anon.get("/readyz")
        self.assertEqual((r.status, r.body), (503, "draining\n"))
        self.assertEqual(self.anon.get("/healthz").status, 200)
        imaps_login(self.bed, "bob", then=lambda m: m.select("INBOX"))
        ok, answer = pop3s_login(self.bed, "carol")
        self.assertTrue(ok, answer)
        _, tagged = held.imap("n", "NOOP")
        self.assertTrue(tagged.startswith(b"n OK"), tagged)
        self.assertEqual(self.anon.get("/readyz").status, 503)
        r = self.admin.post("/admin/undrain")
        self.assertEqual((r.status, r.json()), (200, {"ready": True}))
        r = self.anon.get("/readyz")
        self.assertEqual((r.status, r.body), (200, "ready\n"))
        drains = [e["draining"] for e in opshelp.events(self.since(mark), "node_drain")]
        self.assertEqual(drains, [True, False])


# --- 3. /admin/sessions ---------------------------------------------------------------

class SessionsTest(opshelp.AdminTestCase):
    """Sessions held from different loopback addresses, listed by GET
    /admin/sessions with what postern knows of each; the id of a logged-in
    session is the one Dovecot logged for that login (postern sends it as
    IMAP ID x-session-id / POP3 XCLIENT SESSION=)."""

    gateway_users = ("carol",)

    def setUp(self):
        super().setUp()
        self.dovecot_mark = len(self.bed.dovecot.log())
        self.held = {}  # name -> (Conn, client "ip:port")

    def hold(self, name, listener, source_ip, login=None):
        tls = listener in ("imaps", "pop3s")
        c = opshelp.source_conn(self.bed.addr(listener), source_ip, tls=tls, cafile=self.bed.cert)
        self.addCleanup(c.close)
        if login == "imap":
            _, tagged = c.imap("a", "LOGIN %s demo" % name.split("-")[0])
            self.assertTrue(tagged.startswith(b"a OK"), tagged)
        elif login == "pop3":
            self.assertTrue(c.pop3("USER %s" % name.split("-")[0]).startswith(b"+OK"))
            self.assertTrue(c.pop3("PASS demo").startswith(b"+OK"))
        self.held[name] = (c, "%s:%d" % (source_ip, opshelp.local_port(c)))
        return c

    def by_client(self, sessions):
        return {s["client"]: s for s in sessions}

    def ids(self, sessions):
        return sorted(s["client"] for s in sessions)

    def clients(self, *names):
        return sorted(self.held[n][1] for n in names)

    def test_list_and_filters(self):
        t0 = time.monotonic()
        self.hold("alice", "imaps", "127.0.0.2", "imap")
        self.hold("bob", "pop3s", "127.0.0.3", "pop3")
        self.hold("carol", "pop3s", "127.0.0.4", "pop3")       # the gateway
        self.hold("alice-plain", "imap-plain", "127.0.0.3", "imap")
        self.hold("nobody", "imap", "127.0.0.5")              # greeted only
        all_ = self.admin.sessions()
        self.assertEqual(self.ids(all_), self.clients(*self.held), all_)
        s = self.by_client(all_)
        want = {
            "alice": ("alice", "imaps", "imap", "relay", "dovecot"),
            "bob": ("bob", "pop3s", "pop3", "relay", "dovecot"),
            "carol": ("carol", "pop3s", "pop3", "gateway", "gateway"),
            # Plaintext on both sides: the relay splices (and says so).
            "alice-plain": ("alice", "imap-plain", "imap", "splice", "dovecot"),
            "nobody": ("", "imap", "imap", "prelogin", ""),
        }
        for name, w in want.items():
            e = s[self.held[name][1]]
            with self.subTest(session=name):
                self.assertEqual((e["user"], e["listener"], e["protocol"], e["stage"],
                                  e["backend"]), w, e)
                self.assertRegex(e["id"], r"^[A-Za-z0-9+/]{16}$")
                self.assertGreater(e["bytes_out"], 0)
                self.assertLessEqual(e["age_ms"], (time.monotonic() - t0) * 1000 + 50)
                self.assertEqual(e["tls"], "none" if name in ("alice-plain", "nobody")
                                 else "TLSv1.3")
        self.assertEqual(len({e["id"] for e in all_}), len(all_), "ids not unique")

        # Each logged-in session's id is the session Dovecot logged for that
        # user, from that client address (Dovecot's rip: postern forwards it).
        logins = {}

        def dovecot_saw():
            for l in routehelp.dovecot_logins(self.bed.dovecot, self.dovecot_mark):
                logins[l["session"]] = l
            return all(s[self.held[n][1]]["id"] in logins for n in want if n != "nobody")
        harness.wait_for(dovecot_saw, timeout=10)
        for name, proto in (("alice", "imap"), ("bob", "pop3"), ("carol", "imap"),
                            ("alice-plain", "imap")):
            e = s[self.held[name][1]]
            with self.subTest(dovecot=name):
                self.assertIn(e["id"], logins, "Dovecot logged no session %s" % e["id"])
                l = logins[e["id"]]
                self.assertEqual((l["user"], l["protocol"], l["rip"]),
                                 (e["user"], proto, e["client"].split(":")[0]), l)

        # Filters.
        cases = [
            ({"user": "alice"}, ("alice", "alice-plain")),
            ({"user": "bob"}, ("bob",)),
            ({"user": "nosuchuser"}, ()),
            ({"backend": "dovecot"}, ("alice", "bob", "alice-plain")),
            ({"backend": "gateway"}, ("carol",)),
            ({"backend": "nosuchbackend"}, ()),
            ({"client_ip": "127.0.0.3"}, ("bob", "alice-plain")),
            ({"client_ip": "127.0.0.5"}, ("nobody",)),
            ({"client_ip": "127.0.0.2"}, ("alice",)),
            ({"client_ip": "127.0.0.99"}, ()),
            ({"user": "alice", "client_ip": "127.0.0.3"}, ("alice-plain",)),
            ({"user": "alice", "backend": "gateway"}, ()),
        ]
        for filters, names in cases:
            with self.subTest(filters=filters):
                self.assertEqual(self.ids(self.admin.sessions(**filters)), self.clients(*names))

        # /admin/backends counts the relayed sessions of each.
        backends = {b["name"]: b for b in self.admin.get("/admin/backends").json()["backends"]}
        self.assertEqual(backends["dovecot"]["sessions"], 3, backends)
        self.assertEqual(backends["gateway"]["sessions"], 1, backends)

    def test_bytes_and_end(self):
        """bytes_out grows by a FETCH's size; a closed session leaves the list."""
        c = self.hold("alice", "imaps", "127.0.0.6", "imap")
        client = self.held["alice"][1]
        before = self.admin.sessions(client_ip="127.0.0.6")[0]
        _, tagged = c.imap("b", "EXAMINE INBOX")
        untagged, tagged = c.imap("c", "FETCH 1 BODY.PEEK[]")
        self.assertTrue(tagged.startswith(b"c OK"), tagged)
        after = self.admin.sessions(client_ip="127.0.0.6")[0]
        self.assertEqual(after["id"], before["id"])
        self.assertGreaterEqual(after["bytes_out"] - before["bytes_out"],
                                len(crlf(self.messages("alice")[0])))
        self.assertGreater(after["bytes_in"], before["bytes_in"])
        c.close()
        self.assertTrue(harness.wait_for(
            lambda: client not in self.ids(self.admin.sessions()), timeout=5))


# --- 4. kicks --------------------------------------------------------------------

KICK_BIG = 3_000_000
KICKED_IMAP = b"* BYE [UNAVAILABLE] Disconnected by the administrator.\r\n"
KICKED_POP3 = b"-ERR [SYS/TEMP] Disconnected by the administrator.\r\n"


class KickTest(opshelp.AdminTestCase):
    """POST /admin/kick?user=U ends U's sessions at their next command
    boundary: a FETCH or a RETR that is streaming to a slow reader when the
    kick comes is delivered whole first, then IMAP `* BYE [UNAVAILABLE]` /
    POP3 `-ERR [SYS/TEMP]`. Other users' sessions go on."""

    dovecot_kwargs = {"users": ("alice", "bob", "carol", "dave", "erin"),
                      "extra_messages": {"dave": [KICK_BIG], "erin": [KICK_BIG],
                                         "carol": [KICK_BIG]}}
    gateway_users = ("carol",)

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.dave = crlf(cls.bed.dovecot.messages("dave")[-1])
        cls.erin = crlf(cls.bed.dovecot.messages("erin")[-1])
        cls.carol = crlf(cls.bed.dovecot.messages("carol")[-1])

    def kick(self, user, expect):
        r = self.admin.post("/admin/kick", {"user": user})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json(), {"kicked": expect})

    def held(self, listener, user):
        c = self.connect(listener)
        if listener.startswith("imap"):
            _, tagged = c.imap("a", "LOGIN %s demo" % user)
            self.assertTrue(tagged.startswith(b"a OK"), tagged)
        else:
            self.assertTrue(c.pop3("USER %s" % user).startswith(b"+OK"))
            self.assertTrue(c.pop3("PASS demo").startswith(b"+OK"))
        return c

    def kick_during_fetch(self, listener):
        c = self.connect(listener, rcvbuf=4096)
        n = harness.start_fetch_last(self, c, "dave")
        head = c.readline(timeout=20)
        m = re.match(rb"\* %d FETCH \(BODY\[\] \{(\d+)\}\r\n$" % n, head)
        self.assertIsNotNone(m, head)
        size = int(m.group(1))
        self.assertEqual(size, len(self.dave))
        first = c.read_exact(16384, timeout=20)
        self.kick("dave", 1)
        rest = c.read_exact(size - len(first), timeout=30)
        self.assertEqual(hashlib.sha256(first + rest).hexdigest(),
                         hashlib.sha256(self.dave).hexdigest(), "the literal was changed")
        tail = c.read_to_eof(timeout=10)
        # The FETCH response ends; its tagged OK may come or not; then BYE.
        self.assertTrue(tail.startswith(b")\r\n"), tail[:200])
        self.assertTrue(tail.endswith(KICKED_IMAP), tail[-300:])
        # (Dovecot's tagged OK may already have been relayed when the kick
        # came: the boundary is then after it.)
        self.assertRegex(tail[3:-len(KICKED_IMAP)], rb"^(c OK Fetch completed[^\r\n]*\r\n)?$")

    def test_kick_imap_mid_literal_tls(self):
        self.kick_during_fetch("imaps")

    def test_kick_imap_mid_literal_spliced(self):
        """imap-plain: both sides plaintext, the literal goes through splice(2)."""
        self.kick_during_fetch("imap-plain")

    def kick_during_retr(self, user, message):
        c = self.connect("pop3s", rcvbuf=4096)
        self.assertTrue(c.pop3("USER %s" % user).startswith(b"+OK"))
        self.assertTrue(c.pop3("PASS demo").startswith(b"+OK"))
        n = int(c.pop3("STAT").split()[1])
        c.send("RETR %d\r\n" % n)
        self.assertTrue(c.readline(timeout=20).startswith(b"+OK"))
        c.read_exact(16384, timeout=20)
        self.kick(user, 1)
        body = c.pop3_raw_body(timeout=30)
        want = dot_stuff(message) + b".\r\n"
        self.assertEqual(len(body) + 16384, len(want))
        self.assertEqual(hashlib.sha256(body).hexdigest(),
                         hashlib.sha256(want[16384:]).hexdigest())
        self.assertEqual(c.read_to_eof(timeout=10), KICKED_POP3)

    def test_kick_pop3_mid_retr(self):
        self.kick_during_retr("erin", self.erin)

    def test_kick_gateway_mid_retr(self):
        """carol's POP3 is served by the gateway (over Dovecot's IMAP)."""
        self.kick_during_retr("carol", self.carol)

    def test_kick_only_that_user(self):
        """carol's IMAPS, POP3S (gateway) and STARTTLS sessions are told at
        once and closed; alice's and bob's go on; the kick is logged and
        counted."""
        mark = self.mark()
        kicks_before = self.scrape("postern_admin_actions_total", action="kick")
        alice = self.held("imaps", "alice")
        bob = self.held("pop3s", "bob")
        carol = [self.held("imaps", "carol"), self.held("pop3s", "carol")]
        c3 = self.connect("imap")
        _, tagged = c3.imap("s", "STARTTLS")
        c3.start_tls()
        _, tagged = c3.imap("a", "LOGIN carol demo")
        self.assertTrue(tagged.startswith(b"a OK"), tagged)
        carol.append(c3)
        self.kick("carol", 3)
        self.assertEqual(carol[0].read_to_eof(timeout=10), KICKED_IMAP)
        self.assertEqual(carol[1].read_to_eof(timeout=10), KICKED_POP3)
        self.assertEqual(carol[2].read_to_eof(timeout=10), KICKED_IMAP)
        _, tagged = alice.imap("n", "NOOP")
        self.assertTrue(tagged.startswith(b"n OK"), tagged)
        self.assertTrue(bob.pop3("NOOP").startswith(b"+OK"))
        self.assertEqual(self.admin.sessions(user="carol"), [])
        self.assertEqual(len(self.admin.sessions(user="alice")), 1)
        self.kick("nosuchuser", 0)
        kicks = opshelp.events(self.since(mark), "kick")
        self.assertEqual([k["user"] for k in kicks], ["carol", "nosuchuser"])
        ends = [e for e in opshelp.events(self.since(mark), "session_end", user="carol")]
        self.assertEqual(len(ends), 3, ends)
        for e in ends:
            self.assertEqual(e["end"], "kicked by the administrator", e)
        self.assertEqual(self.scrape("postern_admin_actions_total", action="kick"),
                         kicks_before + 2)



# --- 5. the directory cache, cleared for one user ---------------------------------------

class CacheClearTest(opshelp.AdminTestCase):
    """`directory: users` (a passwd-file) on every listener, auth_cache 60 s
    both ways. Where an answer came from is read from postern itself: the
    cache's hit/miss counters and the directory's lookup histogram (a hit
    is not a lookup), and for refusals the auth_failed detail (`cached:`).
    The cache is keyed on the client's address: each test has its own."""

    dovecot_kwargs = {"users": ("alice", "bob", "cathy", "other")}

    @classmethod
    def prepare(cls):
        cls.passwd = os.path.join(cls.bed.tmp, "users.passwd")
        with open(cls.passwd, "w") as f:
            f.write("cathy:{PLAIN}cathy-pw::::::pass=demo\n"
                    "other:{PLAIN}other-pw::::::pass=demo\n")

    @classmethod
    def postern_config(cls):
        return {"directories": [{"name": "users", "type": "passwd-file", "path": cls.passwd}],
                "directory": "users",
                "auth_cache": {"ttl": "60s", "negative_ttl": "60s"}}

    def login(self, user, pw, ip):
        c = opshelp.source_conn(self.bed.addr("imaps"), ip, tls=True, cafile=self.bed.cert)
        try:
            _, tagged = c.imap("a", "LOGIN %s %s" % (user, pw))
            return tagged.startswith(b"a OK")
        finally:
            c.close()

    def counts(self):
        """(cache hits, cache misses, directory lookups) so far."""
        t = self.admin.metrics()
        return (metric_sum(t, "postern_directory_cache_total", result="hit") or 0,
                metric_sum(t, "postern_directory_cache_total", result="miss") or 0,
                metric_sum(t, "postern_directory_lookup_seconds_count", directory="users") or 0)

    def assert_step(self, user, pw, ip, ok, hit):
        """One login; it was answered from the cache (hit) or asked fresh."""
        h, m, lookups = self.counts()
        self.assertEqual(self.login(user, pw, ip), ok)
        want = (h + 1, m, lookups) if hit else (h, m + 1, lookups + 1)
        self.assertEqual(self.counts(), want, "%s from %s: %s" % (
            user, ip, "not from the cache" if hit else "not asked fresh"))

    def clear(self, user=None):
        r = self.admin.post("/admin/cache/clear", {"user": user} if user else None)
        self.assertEqual(r.status, 200, r)
        return r.json()["cleared"]

    def test_clear_one_user(self):
        ip = "127.0.0.41"
        self.assert_step("cathy", "cathy-pw", ip, True, hit=False)
        self.assert_step("cathy", "cathy-pw", ip, True, hit=True)
        self.assert_step("other", "other-pw", ip, True, hit=False)
        self.assertEqual(self.clear("nobody"), 0)
        self.assert_step("cathy", "cathy-pw", ip, True, hit=True)
        self.assertGreaterEqual(self.clear("cathy"), 1)
        self.assert_step("cathy", "cathy-pw", ip, True, hit=False)  # asked fresh
        self.assert_step("other", "other-pw", ip, True, hit=True)   # still cached
        self.assert_step("cathy", "cathy-pw", ip, True, hit=True)

    def test_clear_a_cached_refusal(self):
        ip = "127.0.0.42"
        mark = self.mark()
        self.assert_step("cathy", "wrong-1", ip, False, hit=False)
        self.assert_step("cathy", "wrong-1", ip, False, hit=True)
        self.assertGreaterEqual(self.clear("cathy"), 1)
        self.assert_step("cathy", "wrong-1", ip, False, hit=False)
        details = [e["detail"] for e in opshelp.wait_events(
            lambda: self.since(mark), "auth_failed", 3, user="cathy")]
        self.assertEqual(details, ["passwd-file:users: password mismatch",
                                   "passwd-file:users: cached: password mismatch",
                                   "passwd-file:users: password mismatch"])
        self.assertNotIn("wrong-1", self.log())

    def test_clear_all(self):
        ip = "127.0.0.43"
        self.assert_step("cathy", "cathy-pw", ip, True, hit=False)
        self.assert_step("other", "other-pw", ip, True, hit=False)
        self.assertGreaterEqual(self.clear(), 2)
        self.assert_step("cathy", "cathy-pw", ip, True, hit=False)
        self.assert_step("other", "other-pw", ip, True, hit=False)


# --- 6. the JSON log ---------------------------------------------------------------

_TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
# log.level's names ("warn", not spdlog's "warning").
LEVELS = {"trace", "debug", "info", "warn", "error", "critical"}


def json_escaped_text(raw):
    """What a JSON log field holds (decoded) for bytes a client chose:
    printable ASCII and control bytes as they are (JSON escapes them),
    well-formed UTF-8 as its characters, but C1 controls and U+2028/U+2029
    and every byte that is not UTF-8 as the text \\xHH (event_log.h)."""
    out = []
    i = 0
    while i < len(raw):
        c = raw[i]
        if c < 0x80:
            out.append(chr(c))
            i += 1
            continue
        for n in (2, 3, 4):
            try:
                ch = raw[i:i + n].decode("utf-8")
                break
            except UnicodeDecodeError:
                ch = None
        if ch is None or len(ch) != 1 or 0x80 <= ord(ch) <= 0x9f or ch in "\u2028\u2029":
            out.append("\\x%02x" % c)
            i += 1
        else:
            out.append(ch)
            i += len(ch.encode("utf-8"))
    return "".join(out)


class JsonLogTest(opshelp.AdminTestCase):
    """log.format left at its default: JSON, one object per line. A second
    Dovecot ("spare") serves erin, so that it can be stopped and started."""

    dovecot_kwargs = {"users": ("alice", "bob", "carol")}
    postern_overrides = {"health": {"failures": 2, "cooldown": "60s"}}

    @classmethod
    def prepare(cls):
        cls.spare = testbed.Dovecot(os.path.join(cls.bed.tmp, "spare"), users=("erin",))
        cls.addClassCleanup(cls.spare.stop)

    @classmethod
    def postern_config(cls):
        backends = cls.bed.config()["backends"] + [{
            "name": "spare", "address": HOST, "imap_port": cls.spare.imap_port,
            "pop3_port": cls.spare.pop3_port}]
        return {"backends": backends, "routing": {"users": {"erin": "spare"}}}

    def tearDown(self):
        try:
            self.assert_every_line_json()
        finally:
            super().tearDown()

    def assert_every_line_json(self):
        for obj in opshelp.json_lines(self.log()):
            self.assertRegex(obj.get("ts", ""), _TS, obj)
            self.assertIn(obj.get("level"), LEVELS, obj)
            self.assertEqual(("event" in obj) + ("msg" in obj), 1, obj)

    def session_end_of(self, port, mark=0):
        ends = opshelp.wait_events(lambda: self.since(mark), "session_end",
                                   client="127.0.0.1:%d" % port)
        self.assertEqual(len(ends), 1, "session ends of port %d: %r" % (port, ends))
        return ends[0]

    def test_start_lines(self):
        objs = opshelp.json_lines(self.log())
        msgs = [o.get("msg", "") for o in objs]
        self.assertTrue(any(m.startswith("listening name=admin ") for m in msgs), msgs)
        self.assertTrue(any(m.startswith("ready:") for m in msgs), msgs)

    def test_one_session_end_per_session(self):
        """imaplib (IMAPS), poplib (POP3S), a raw STARTTLS session, a POP3
        session without TLS and one that never logs in: one session_end
        each, with the session id of Dovecot's Login line."""
        mark = self.mark()
        dmark = len(self.bed.dovecot.log())
        ports = {}

        def then(m):
            ports["alice imaps"] = m.sock.getsockname()[1]
            m.select("INBOX", readonly=True)
            m.fetch("1", "(BODY.PEEK[])")
        imaps_login(self.bed, "alice", then=then)
        host, port = self.bed.addr("pop3s")
        p = poplib.POP3_SSL(host, port, context=harness.client_context(self.bed.cert))
        ports["bob pop3s"] = p.sock.getsockname()[1]
        p.user("bob")
        p.pass_("demo")
        p.retr(1)
        p.quit()
        c = self.connect("imap")
        ports["carol imap"] = opshelp.local_port(c)
        c.imap("s", "STARTTLS")
        c.start_tls()
        _, tagged = c.imap("a", "LOGIN carol demo")
        self.assertTrue(tagged.startswith(b"a OK"), tagged)
        c.imap("z", "LOGOUT")
        c.close()
        c = self.connect("pop3-plain")
        ports["alice pop3-plain"] = opshelp.local_port(c)
        c.pop3("USER alice")
        self.assertTrue(c.pop3("PASS demo").startswith(b"+OK"))
        c.pop3("QUIT")
        c.close()
        c = self.connect("imaps")
        ports["nobody imaps"] = opshelp.local_port(c)
        c.imap("z", "LOGOUT")
        c.close()
        want = {"alice imaps": ("alice", "imaps", "imap", "relay", "dovecot", "TLSv1.3"),
                "bob pop3s": ("bob", "pop3s", "pop3", "relay", "dovecot", "TLSv1.3"),
                "carol imap": ("carol", "imap", "imap", "relay", "dovecot", "TLSv1.3"),
                "alice pop3-plain": ("alice", "pop3-plain", "pop3", "relay", "dovecot", "none"),
                "nobody imaps": ("", "imaps", "imap", "prelogin", "-", "TLSv1.3")}
        ends = {k: self.session_end_of(port, mark) for k, port in ports.items()}
        logins = {}

        def dovecot_saw():
            for l in routehelp.dovecot_logins(self.bed.dovecot, dmark):
                logins[l["session"]] = l
            return all(ends[k]["session"] in logins for k in want if not k.startswith("nobody"))
        harness.wait_for(dovecot_saw, timeout=10)
        for k, w in want.items():
            e = ends[k]
            with self.subTest(session=k):
                self.assertEqual((e["user"], e["listener"], e["protocol"], e["stage"],
                                  e["backend"], e["tls"]), w, e)
                for f in ("in", "out", "duration_ms", "snapshot"):
                    self.assertIsInstance(e[f], int, (f, e))
                self.assertGreater(e["out"], 0)
                self.assertIsInstance(e["end"], str)
                if w[0]:
                    self.assertIn(e["session"], logins, e)
                    self.assertEqual(logins[e["session"]]["user"], w[0])
        self.assertGreater(ends["alice imaps"]["out"], len(crlf(self.messages("alice")[0])))
        self.assertEqual(len({e["session"] for e in ends.values()}), len(ends))

    def test_auth_failed_has_the_user(self):
        mark = self.mark()
        c = self.connect("imaps")
        port_i = opshelp.local_port(c)
        _, tagged = c.imap("a", "LOGIN bob Wr0ng-Secret-1")
        self.assertTrue(tagged.startswith(b"a NO [AUTHENTICATIONFAILED]"), tagged)
        c.close()
        ok, answer = pop3s_login(self.bed, "carol", "Wr0ng-Secret-2")
        self.assertFalse(ok)
        fails = opshelp.wait_events(lambda: self.since(mark), "auth_failed", 2)
        self.assertEqual([(e["user"], e["listener"], e["backend"]) for e in fails],
                         [("bob", "imaps", "dovecot"), ("carol", "pop3s", "dovecot")])
        self.assertEqual(fails[0]["client"], "127.0.0.1:%d" % port_i)
        self.assertIn("AUTHENTICATIONFAILED", fails[0]["detail"])
        self.assertEqual(self.session_end_of(port_i, mark)["session"], fails[0]["session"])
        for secret in ("Wr0ng-Secret-1", "Wr0ng-Secret-2"):
            self.assertNotIn(secret, self.log())

    def test_backend_down_and_up(self):
        """The spare Dovecot stopped: erin's logins fail (NO [UNAVAILABLE]),
        each logged as backend_unavailable; at the second failure
        (health.failures 2) one backend_down; started again, the next login
        works and one backend_up is logged. /admin/backends and
        postern_backend_state agree."""
        mark = self.mark()
        self.spare.stop()
        self.addCleanup(self.spare.start)
        for i in range(3):
            c = self.connect("imaps")
            _, tagged = c.imap("a", "LOGIN erin demo")
            self.assertTrue(tagged.startswith(b"a NO [UNAVAILABLE]"), tagged)
            c.close()
        downs = opshelp.wait_events(lambda: self.since(mark), "backend_down")
        self.assertEqual([(e["backend"], e["failures"], e["level"]) for e in downs],
                         [("spare", 2, "warn")], downs)
        unav = opshelp.wait_events(lambda: self.since(mark), "backend_unavailable", 3)
        self.assertEqual([(e["user"], e["backend"]) for e in unav], [("erin", "spare")] * 3)
        state = {b["name"]: b["up"] for b in self.admin.get("/admin/backends").json()["backends"]}
        self.assertEqual(state, {"dovecot": True, "spare": False})
        text = self.admin.metrics()
        self.assertEqual(metric_sum(text, "postern_backend_state", backend="spare", state="up"), 0)
        self.assertEqual(metric_sum(text, "postern_backend_logins_total", backend="spare",
                                    result="unavailable"), 3)
        self.assertEqual(metric_sum(text, "postern_logins_total", listener="imaps",
                                    result="unavailable"), 3)
        self.spare.start()
        imaps_login(self.bed, "erin")
        ups = opshelp.wait_events(lambda: self.since(mark), "backend_up")
        self.assertEqual([e["backend"] for e in ups], ["spare"])
        self.assertEqual(len(opshelp.events(self.since(mark), "backend_down")), 1)
        self.assertEqual(self.scrape("postern_backend_state", backend="spare", state="up"), 1)

    def test_reload_events(self):
        """POST /admin/reload and SIGHUP: reload events, result ok, kind
        config, the new snapshot's serial; a broken file: result refused at
        level error, its detail naming the file, line and key; the old
        config keeps serving."""
        path = self.bed.postern.config_path
        with open(path) as f:
            good = f.read()
        mark = self.mark()
        r = self.admin.post("/admin/reload")
        self.assertEqual(r.status, 200, r)
        serial = r.json()["snapshot"]
        self.bed.postern.send_signal(signal.SIGHUP)
        oks = opshelp.wait_events(lambda: self.since(mark), "reload", 2)
        self.assertEqual([(e["result"], e["kind"], e["snapshot"], e["source"], e["level"])
                          for e in oks],
                         [("ok", "config", serial, path, "info"),
                          ("ok", "config", serial + 1, path, "info")])
        lines = good.split("\n")
        i = next(n for n, l in enumerate(lines) if l.strip() == "tls: \"implicit\"")
        lines[i] = lines[i].replace('"implicit"', '"sometimes"')
        mark = self.mark()
        with open(path, "w") as f:
            f.write("\n".join(lines))
        try:
            r = self.admin.post("/admin/reload")
        finally:
            with open(path, "w") as f:
                f.write(good)
        self.assertEqual(r.status, 422, r)
        refused = opshelp.wait_events(lambda: self.since(mark), "reload")
        self.assertEqual(len(refused), 1, refused)
        e = refused[0]
        self.assertEqual((e["result"], e["kind"], e["level"], e["snapshot"]),
                         ("refused", "config", "error", serial + 1))
        self.assertRegex(e["detail"], r"^%s:%d: listeners\[0\]\.tls: .*sometimes"
                         % (re.escape(path), i + 1))
        self.assertEqual(r.json()["error"], e["detail"])
        self.assert_serving()

    def test_hostile_user_names(self):
        """User names sent as IMAP literals with quotes, backslashes, control
        bytes, CR LF and a JSON object, bytes that are not UTF-8, U+2028 and
        a C1 control: each auth_failed is still one line holding one JSON
        object with the usual fields, its user field the name (escaped as
        event_log.h says), and nothing is forged."""
        names = [b'ev"il\\name\\"', b"ctl\x01\x1b[31mred\x7f\tx",
                 b'nl\r\n{"ts":"2026-01-01T00:00:00.000Z","level":"error","event":"forged"}',
                 b"bad\xff\xfeutf8\xc3", b"sep\xe2\x80\xa8line\xc2\x85c1", b"ok\xc3\xa9"]
        mark = self.mark()
        c = self.connect("imaps")
        for i, name in enumerate(names):
            tag = "h%d" % i
            c.send("%s LOGIN {%d+}\r\n" % (tag, len(name)))
            c.send(name + b" x\r\n")
            _, tagged = c.imap_until_tagged(tag)
            self.assertTrue(tagged.startswith(tag.encode() + b" NO"), tagged)
            if (i + 1) % 2 == 0:  # limits.max_auth_attempts: 3
                c.close()
                c = self.connect("imaps")
        c.close()
        fails = opshelp.wait_events(lambda: self.since(mark), "auth_failed", len(names))
        self.assertEqual([e["user"] for e in fails], [json_escaped_text(n) for n in names])
        for e in fails:
            self.assertEqual(set(e), {"ts", "level", "event", "session", "client", "listener",
                                      "user", "backend", "detail"}, e)
            self.assertEqual(e["level"], "info")
        window = self.since(mark)
        self.assertEqual(opshelp.events(window, "forged"), [])
        self.assertNotIn("\u2028", window)
        self.assertNotIn("\x85", window)
        # Every line the window added is one of the events above, a session
        # end or a message: nothing split a line.
        objs = opshelp.json_lines(window)
        self.assertEqual(len(objs), window.count("\n"))
        for o in objs:
            self.assertIn(o.get("event", "msg"), ("auth_failed", "session_end", "msg"), o)


# --- 7. log.trace_users ------------------------------------------------------------

TRACE_PW = "Tr4ce-S3cret-pw"
ALICE_PW = "Al1ce-S3cret-pw"
WRONG_PW = "Wr0ng-Tr4ce-pw"


class RecConn(harness.Conn):
    """A harness.Conn that keeps every byte it sent and received."""

    def __init__(self, *a, **kw):
        self.sent = bytearray()
        self.got = bytearray()
        super().__init__(*a, **kw)

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sent += data
        super().send(data)

    def _fill(self, timeout=None):
        n = len(self.buf)
        more = super()._fill(timeout)
        self.got += self.buf[n:]
        return more


class TraceTest(opshelp.AdminTestCase):
    """log.trace_users: [tracy]. Every way to log in (IMAP LOGIN quoted,
    with synchronizing literals and with LITERAL+, after a wrong password,
    AUTHENTICATE PLAIN with and without SASL-IR; POP3 USER/PASS, AUTH PLAIN
    with and without an initial response) gives a trace whose server side
    is exactly what the client received and whose client side, after the
    login, exactly what it sent; before the login the client side is
    masked: no password nor SASL response anywhere in the log. alice is not
    traced: her sessions write no trace event."""

    dovecot_kwargs = {"users": ("alice", "tracy", "gwen"),
                      "passwords": {"tracy": TRACE_PW, "alice": ALICE_PW, "gwen": TRACE_PW},
                      "extra_messages": {"tracy": [100_000]}}
    # gwen's POP3 is served by the POP3-to-IMAP gateway.
    gateway_users = ("gwen",)
    postern_overrides = {"log": {"trace_users": ["tracy", "gwen"]}}

    SECRETS = [TRACE_PW, WRONG_PW, ALICE_PW, plain_ir("tracy", TRACE_PW),
               plain_ir("tracy", WRONG_PW), plain_ir("alice", ALICE_PW),
               harness.b64(TRACE_PW), harness.b64(ALICE_PW)]

    def tearDown(self):
        try:
            log = self.log()
            for secret in self.SECRETS:
                self.assertNotIn(secret, log)
        finally:
            super().tearDown()

    def open(self, listener):
        tls = listener in ("imaps", "pop3s")
        # c's session is found by its client port, among the events logged
        # after c connected: the kernel may give an earlier connection's port
        # to a later one, and this class's tests share one postern (in CI an
        # IMAPS session and a POP3S session 0.7 s apart had the same port).
        mark = self.mark()
        c = RecConn(self.bed.addr(listener), tls=tls, cafile=self.bed.cert)
        self.addCleanup(c.close)
        c.log_mark = mark
        c.greeting = c.readline()
        return c

    def trace_of(self, c, user="tracy"):
        """(client text, server text) of c's session's trace, once it ended."""
        c.read_to_eof(timeout=10)
        port = opshelp.local_port(c)
        end = opshelp.wait_events(lambda: self.since(c.log_mark), "session_end",
                                  client="127.0.0.1:%d" % port)
        self.assertEqual(len(end), 1, end)
        sid = end[0]["session"]
        starts = opshelp.events(self.log(), "trace_start", session=sid)
        self.assertEqual([s["user"] for s in starts], [user])
        evs = opshelp.events(self.log(), "trace", session=sid)
        self.assertEqual({e["user"] for e in evs}, {user})
        self.assertEqual(opshelp.events(self.log(), "trace_cut", session=sid), [])
        client = "".join(e["data"] for e in evs if e["dir"] == "client")
        server = "".join(e["data"] for e in evs if e["dir"] == "server")
        return client.encode("latin-1"), server.encode("latin-1")

    def check(self, c, after_login, masked_prefix):
        """c's trace: the server side is all c received; the client side is
        masked_prefix (the pre-login dialogue, masked) then exactly what c
        sent after the login (from `after_login`, an offset into c.sent)."""
        client, server = self.trace_of(c)
        self.assertEqual(server, bytes(c.got))
        self.assertEqual(client, masked_prefix + bytes(c.sent[after_login:]))

    def imap_session_body(self, c, n_tag="x"):
        """After login: EXAMINE, FETCH the first message, LOGOUT."""
        c.imap("b", "EXAMINE INBOX")
        untagged, tagged = c.imap("c", "FETCH 1 BODY[]")
        self.assertTrue(tagged.startswith(b"c OK"), tagged)
        self.assertIn(crlf(self.messages("tracy")[0]), b"".join(untagged))
        c.imap("d", "LOGOUT")

    def test_imap_login_quoted(self):
        c = self.open("imaps")
        _, tagged = c.imap("a", 'LOGIN tracy "%s"' % TRACE_PW)
        self.assertTrue(tagged.startswith(b"a OK"), tagged)
        at = len(c.sent)
        self.imap_session_body(c)
        self.check(c, at, b"a LOGIN ***\r\n")

    def test_imap_login_wrong_then_right(self):
        c = self.open("imaps")
        _, tagged = c.imap("a", "LOGIN tracy %s" % WRONG_PW)
        self.assertTrue(tagged.startswith(b"a NO"), tagged)
        _, tagged = c.imap("a2", "LOGIN tracy %s" % TRACE_PW)
        self.assertTrue(tagged.startswith(b"a2 OK"), tagged)
        at = len(c.sent)
        self.imap_session_body(c)
        self.check(c, at, b"a LOGIN ***\r\na2 LOGIN ***\r\n")

    def test_imap_login_synchronizing_literals(self):
        c = self.open("imaps")
        c.send("a LOGIN {5}\r\n")
        self.assertTrue(c.readline().startswith(b"+"))
        c.send("tracy {%d}\r\n" % len(TRACE_PW))
        self.assertTrue(c.readline().startswith(b"+"))
        c.send(TRACE_PW + "\r\n")
        _, tagged = c.imap_until_tagged("a")
        self.assertTrue(tagged.startswith(b"a OK"), tagged)
        at = len(c.sent)
        self.imap_session_body(c)
        client, server = self.trace_of(c)
        self.assertEqual(server, bytes(c.got))
        self.assertTrue(client.startswith(b"a LOGIN ***"), client[:200])
        self.assertTrue(client.endswith(bytes(c.sent[at:])))
        self.assertNotIn(b"tracy", client[:-len(c.sent[at:])])

    def test_imap_login_literal_plus(self):
        c = self.open("imaps")
        c.send("a LOGIN {5+}\r\ntracy {%d+}\r\n%s\r\n" % (len(TRACE_PW), TRACE_PW))
        _, tagged = c.imap_until_tagged("a")
        self.assertTrue(tagged.startswith(b"a OK"), tagged)
        at = len(c.sent)
        self.imap_session_body(c)
        client, server = self.trace_of(c)
        self.assertEqual(server, bytes(c.got))
        self.assertTrue(client.startswith(b"a LOGIN ***"), client[:200])
        self.assertTrue(client.endswith(bytes(c.sent[at:])))

    def test_imap_authenticate_plain_ir(self):
        c = self.open("imaps")
        _, tagged = c.imap("a", "AUTHENTICATE PLAIN " + plain_ir("tracy", TRACE_PW))
        self.assertTrue(tagged.startswith(b"a OK"), tagged)
        at = len(c.sent)
        self.imap_session_body(c)
        self.check(c, at, b"a AUTHENTICATE PLAIN ***\r\n")

    def test_imap_login_pipelined_with_commands(self):
        """LOGIN and the commands after it in one segment: each byte once."""
        c = self.open("imaps")
        c.send('a LOGIN tracy "%s"\r\nb EXAMINE INBOX\r\nc FETCH 1 BODY[]\r\n' % TRACE_PW)
        _, tagged = c.imap_until_tagged("c")
        self.assertTrue(tagged.startswith(b"c OK"), tagged)
        c.imap("d", "LOGOUT")
        self.check(c, len(c.sent.split(b"\r\n", 1)[0]) + 2, b"a LOGIN ***\r\n")

    def test_imap_authenticate_login(self):
        """SASL LOGIN: user name and password each on a continuation line."""
        c = self.open("imaps")
        c.send("a AUTHENTICATE LOGIN\r\n")
        self.assertTrue(c.readline().startswith(b"+"))
        c.send(harness.b64("tracy") + "\r\n")
        self.assertTrue(c.readline().startswith(b"+"))
        c.send(harness.b64(TRACE_PW) + "\r\n")
        _, tagged = c.imap_until_tagged("a")
        self.assertTrue(tagged.startswith(b"a OK"), tagged)
        at = len(c.sent)
        self.imap_session_body(c)
        self.check(c, at, b"a AUTHENTICATE LOGIN\r\n***\r\n***\r\n")

    def test_imap_authenticate_plain_continuation(self):
        c = self.open("imaps")
        c.send("a AUTHENTICATE PLAIN\r\n")
        self.assertTrue(c.readline().startswith(b"+"))
        c.send(plain_ir("tracy", TRACE_PW) + "\r\n")
        _, tagged = c.imap_until_tagged("a")
        self.assertTrue(tagged.startswith(b"a OK"), tagged)
        at = len(c.sent)
        self.imap_session_body(c)
        self.check(c, at, b"a AUTHENTICATE PLAIN\r\n***\r\n")

    def test_imap_plaintext_big_literal_is_traced_whole(self):
        """On a plaintext listener a relayed pair is spliced, which would
        keep a literal over 64 KiB out of user space: a traced session is
        not, and its 100 kB literal is in the trace."""
        c = self.open("imap-plain")
        _, tagged = c.imap("a", "LOGIN tracy %s" % TRACE_PW)
        self.assertTrue(tagged.startswith(b"a OK"), tagged)
        at = len(c.sent)
        untagged, _ = c.imap("b", "EXAMINE INBOX")
        n = int(re.search(rb"\* (\d+) EXISTS", b"".join(untagged)).group(1))
        untagged, tagged = c.imap("c", "FETCH %d BODY[]" % n)
        big = crlf(self.messages("tracy")[-1])
        self.assertGreater(len(big), 64 * 1024)
        self.assertIn(big, b"".join(untagged))
        c.imap("d", "LOGOUT")
        self.check(c, at, b"a LOGIN ***\r\n")
        sid = opshelp.events(self.since(c.log_mark), "session_end",
                             client="127.0.0.1:%d" % opshelp.local_port(c))[0]
        self.assertEqual(sid["stage"], "relay", "a traced session was spliced")

    def pop3_session_body(self, c):
        self.assertTrue(c.pop3("STAT").startswith(b"+OK"))
        self.assertTrue(c.pop3("RETR 1").startswith(b"+OK"))
        c.pop3_multiline()
        self.assertTrue(c.pop3("QUIT").startswith(b"+OK"))

    def test_pop3_user_pass(self):
        c = self.open("pop3s")
        self.assertTrue(c.pop3("USER tracy").startswith(b"+OK"))
        self.assertTrue(c.pop3("PASS " + TRACE_PW).startswith(b"+OK"))
        at = len(c.sent)
        self.pop3_session_body(c)
        self.check(c, at, b"USER tracy\r\nPASS ***\r\n")

    def test_pop3_auth_plain_initial_response(self):
        c = self.open("pop3s")
        self.assertTrue(c.pop3("AUTH PLAIN " + plain_ir("tracy", TRACE_PW)).startswith(b"+OK"))
        at = len(c.sent)
        self.pop3_session_body(c)
        self.check(c, at, b"AUTH PLAIN ***\r\n")

    def test_pop3_auth_plain_continuation(self):
        c = self.open("pop3")
        self.assertTrue(c.pop3("STLS").startswith(b"+OK"))
        c.start_tls()
        c.sent.clear()
        c.got.clear()
        self.assertTrue(c.pop3("AUTH PLAIN").startswith(b"+"))
        self.assertTrue(c.pop3(plain_ir("tracy", TRACE_PW)).startswith(b"+OK"))
        at = len(c.sent)
        self.pop3_session_body(c)
        # (STLS and its answer are in the trace too, before TLS.)
        client, server = self.trace_of(c)
        self.assertTrue(server.endswith(bytes(c.got)), server[:300])
        self.assertEqual(client, b"STLS\r\nAUTH PLAIN\r\n***\r\n" + bytes(c.sent[at:]))

    def test_pop3_auth_login(self):
        c = self.open("pop3s")
        self.assertTrue(c.pop3("AUTH LOGIN").startswith(b"+ "))
        self.assertTrue(c.pop3(harness.b64("tracy")).startswith(b"+ "))
        self.assertTrue(c.pop3(harness.b64(TRACE_PW)).startswith(b"+OK"))
        at = len(c.sent)
        self.pop3_session_body(c)
        self.check(c, at, b"AUTH LOGIN\r\n***\r\n***\r\n")

    def test_pop3_gateway(self):
        """gwen's POP3 goes through the gateway: the trace is the POP3
        dialogue the client had (not the IMAP behind it)."""
        c = self.open("pop3s")
        self.assertTrue(c.pop3("USER gwen").startswith(b"+OK"))
        self.assertTrue(c.pop3("PASS " + TRACE_PW).startswith(b"+OK"))
        at = len(c.sent)
        self.assertTrue(c.pop3("STAT").startswith(b"+OK"))
        self.assertTrue(c.pop3("RETR 1").startswith(b"+OK"))
        body = c.pop3_multiline()
        self.assertEqual(b"".join(l + b"\r\n" for l in body)[:40],
                         crlf(self.messages("gwen")[0])[:40])
        self.assertTrue(c.pop3("QUIT").startswith(b"+OK"))
        client, server = self.trace_of(c, "gwen")
        self.assertEqual(server, bytes(c.got))
        self.assertEqual(client, b"USER gwen\r\nPASS ***\r\n" + bytes(c.sent[at:]))
        end = opshelp.events(self.since(c.log_mark), "session_end",
                             client="127.0.0.1:%d" % opshelp.local_port(c))[0]
        self.assertEqual(end["stage"], "gateway")

    def test_untraced_user_leaves_no_trace(self):
        mark = self.mark()
        ports = []
        for listener in ("imaps", "imap-plain"):
            c = self.open(listener)
            _, tagged = c.imap("a", "LOGIN alice %s" % ALICE_PW)
            self.assertTrue(tagged.startswith(b"a OK"), tagged)
            c.imap("b", "EXAMINE INBOX")
            c.imap("c", "FETCH 1 BODY[]")
            c.imap("d", "LOGOUT")
            ports.append(opshelp.local_port(c))
        c = self.open("pop3s")
        c.pop3("USER alice")
        self.assertTrue(c.pop3("PASS " + ALICE_PW).startswith(b"+OK"))
        c.pop3("QUIT")
        ports.append(opshelp.local_port(c))
        for p in ports:
            opshelp.wait_events(lambda: self.since(mark), "session_end",
                                client="127.0.0.1:%d" % p)
        window = self.since(mark)
        for name in ("trace", "trace_start", "trace_cut"):
            self.assertEqual(opshelp.events(window, name), [], name)




class TraceCutTest(opshelp.AdminTestCase):
    """A traced session writes at most 8 MiB each way (SessionTrace::
    kMaxBytes), then one trace_cut event; the session itself is not cut."""

    dovecot_kwargs = {"users": ("tracy",), "passwords": {"tracy": TRACE_PW},
                      "extra_messages": {"tracy": [9 * 1024 * 1024]}}
    postern_overrides = {"log": {"trace_users": ["tracy"]}}

    def test_trace_is_cut_at_8_mib(self):
        big = crlf(self.bed.dovecot.messages("tracy")[-1])
        mark = self.mark()
        c = self.connect("imaps")
        port = opshelp.local_port(c)
        _, tagged = c.imap("a", "LOGIN tracy %s" % TRACE_PW)
        self.assertTrue(tagged.startswith(b"a OK"), tagged)
        untagged, _ = c.imap("b", "EXAMINE INBOX")
        n = int(re.search(rb"\* (\d+) EXISTS", b"".join(untagged)).group(1))
        untagged, tagged = c.imap("c", "FETCH %d BODY.PEEK[]" % n, timeout=60)
        self.assertTrue(tagged.startswith(b"c OK"), tagged)
        self.assertEqual(hashlib.sha256(untagged[0]).hexdigest(), hashlib.sha256(
            b"* %d FETCH (BODY[] {%d}\r\n" % (n, len(big)) + big + b")\r\n").hexdigest())
        c.imap("d", "LOGOUT")
        end = opshelp.wait_events(lambda: self.since(mark), "session_end",
                                  client="127.0.0.1:%d" % port, timeout=20)[0]
        sid = end["session"]
        evs = opshelp.events(self.log(), None, session=sid)
        cuts = [e for e in evs if e["event"] == "trace_cut"]
        self.assertEqual([(e["dir"], e["bytes"]) for e in cuts], [("server", 8 << 20)])
        server = sum(len(e["data"].encode("latin-1")) for e in evs
                     if e["event"] == "trace" and e["dir"] == "server")
        self.assertEqual(server, 8 << 20)
        # Nothing of the server side after the cut; the client side goes on.
        after = evs[evs.index(cuts[0]) + 1:]
        self.assertEqual([e for e in after if e.get("dir") == "server"], [])
        self.assertIn("d LOGOUT\r\n", "".join(e["data"] for e in after if e.get("dir") == "client"))
        self.assertNotIn(TRACE_PW, self.log())

# --- 8. privileges and the open-files limit -------------------------------------------

MAIL_UID = 8  # Debian's `mail` user and group


def proc_status(pid, task=None):
    path = "/proc/%d/status" % pid if task is None else "/proc/%d/task/%d/status" % (pid, task)
    with open(path) as f:
        return dict(l.rstrip("\n").split(":\t", 1) for l in f if ":\t" in l)


def free_privileged_port(lo=600, hi=700):
    for port in range(lo, hi):
        with socket.socket() as s:
            try:
                s.bind((HOST, port))
            except OSError:
                continue
            return port
    raise unittest.SkipTest("no free port in %d-%d" % (lo, hi))


def has_cap_sys_resource():
    """Whether this process may raise a hard rlimit (CAP_SYS_RESOURCE, 24)."""
    return bool(int(proc_status(os.getpid())["CapEff"], 16) & (1 << 24))


class PrivilegesTest(unittest.TestCase):
    """Each test starts its own postern (as root, as the tests run) from
    the bed's config plus user/group or limits."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        if harness.DIRECT:
            raise unittest.SkipTest("postern-only (POSTERN_TEST_DIRECT=1)")
        if os.geteuid() != 0:
            raise unittest.SkipTest("dropping privileges needs root")
        cls.bed = harness.Bed(cls.__name__, start_postern=False)
        cls.addClassCleanup(cls.bed.close)
        cls.token_file, cls.token = opshelp.write_token(cls.bed.tmp)

    def tearDown(self):
        outcome = getattr(self, "_outcome", None)
        result = getattr(outcome, "result", None)
        if result is not None and any(t is self for t, _ in result.failures + result.errors):
            print("\n" + self.bed.logs(), file=__import__("sys").stderr)
        super().tearDown()

    def config(self, extra):
        return self.bed.config(harness.deep_merge(
            {"admin": {"address": "%s:0" % HOST, "token_file": self.token_file}}, extra))

    def write(self, name, cfg):
        path = os.path.join(self.bed.tmp, name)
        with open(path, "w") as f:
            f.write(testbed.to_yaml(cfg))
        return path

    def assert_dropped(self, pid):
        tasks = [int(t) for t in os.listdir("/proc/%d/task" % pid)]
        self.assertGreater(len(tasks), 1)  # the workers are threads
        for t in tasks:
            st = proc_status(pid, t)
            with self.subTest(task=t, name=st.get("Name")):
                self.assertEqual(st["Uid"].split(), [str(MAIL_UID)] * 4)
                self.assertEqual(st["Gid"].split(), [str(MAIL_UID)] * 4)
                self.assertEqual(st["Groups"].split(), [str(MAIL_UID)])
                self.assertEqual(int(st["CapEff"], 16), 0)
                self.assertEqual(int(st["CapPrm"], 16), 0)

    def assert_serves(self, listener="imaps"):
        c = harness.Conn(self.bed.addr(listener), tls=listener == "imaps", cafile=self.bed.cert)
        try:
            self.assertTrue(c.readline().startswith(b"* OK"))
            _, tagged = c.imap("a", "LOGIN alice demo")
            self.assertTrue(tagged.startswith(b"a OK"), tagged)
            untagged, tagged = c.imap("b", "EXAMINE INBOX")
            self.assertTrue(tagged.startswith(b"b OK"), tagged)
        finally:
            c.close()
        admin = opshelp.Admin(self.bed.postern.address("admin"), self.token)
        self.assertEqual(admin.get("/readyz").status, 200)
        self.assertIn("postern_sessions_total", admin.metrics())

    def test_user_and_group_after_start(self):
        p = self.bed.start_postern(self.config({"user": "mail", "group": "mail"}))
        self.assertIn("running as uid=%d gid=%d" % (MAIL_UID, MAIL_UID), p.log())
        self.assert_dropped(p.pid)
        self.assert_serves()
        self.assert_dropped(p.pid)  # threads started since (thread pool) too

    def test_reload_after_the_drop(self):
        """Files a reload reads again must be readable by the user postern
        dropped to. With root-only ones the start warns, naming each, and
        POST /admin/reload is refused naming the first: the bed's key and
        token; then a mail-owned key with the root-only token; with every
        file owned by mail, no warning and the reload works."""
        d = os.path.join(self.bed.tmp, "mail-owned")
        os.makedirs(d, exist_ok=True)
        own = {}
        for name, src in (("cert.pem", self.bed.cert), ("key.pem", self.bed.key),
                          ("token", self.token_file)):
            own[name] = os.path.join(d, name)
            with open(src, "rb") as fi, open(own[name], "wb") as fo:
                fo.write(fi.read())
            os.chown(own[name], MAIL_UID, MAIL_UID)
            os.chmod(own[name], 0o600)
        mail_tls = {"tls": {"certificate": own["cert.pem"], "key": own["key.pem"]}}
        cases = [
            ({}, [self.bed.key, self.token_file]),
            (mail_tls, [self.token_file]),
            (harness.deep_merge(mail_tls, {"admin": {"token_file": own["token"]}}), []),
        ]
        for extra, unreadable in cases:
            with self.subTest(unreadable=unreadable):
                p = self.bed.start_postern(self.config(harness.deep_merge(
                    {"user": "mail", "group": "mail"}, extra)))
                warned = re.findall(r"(\S+) is not readable by uid %d: a reload will fail"
                                    % MAIL_UID, p.log())
                self.assertEqual(warned, unreadable)
                r = opshelp.Admin(p.address("admin"), self.token).post("/admin/reload")
                if unreadable:
                    self.assertEqual(r.status, 422, r)
                    self.assertRegex(r.json()["error"], r"cannot read '%s': Permission denied"
                                     % re.escape(unreadable[0]))
                else:
                    self.assertEqual(r.status, 200, r)
                self.assert_dropped(p.pid)
                self.assert_serves()

    def test_privileged_port_then_drop(self):
        port = free_privileged_port()
        cfg = self.config({"user": "mail", "group": "mail"})
        cfg["listeners"].append({"name": "imap-low", "protocol": "imap",
                                 "address": "%s:%d" % (HOST, port), "tls": "none",
                                 "allow_plaintext_auth": True})
        p = self.bed.start_postern(cfg)
        self.assertEqual(p.address("imap-low"), (HOST, port))
        self.assert_dropped(p.pid)
        self.assert_serves("imap-low")

    def refused_at_load(self, name, cfg, key, pattern):
        """The config is refused by --check-config and by --config (exit
        2) with file:line: key: ..., and nothing listens."""
        port = testbed.free_port()
        cfg["listeners"][0]["address"] = "%s:%d" % (HOST, port)
        path = self.write(name, cfg)
        with open(path) as f:
            line = next(i + 1 for i, l in enumerate(f) if l.startswith(key + ":"))
        want = r"%s:%d: %s: %s" % (re.escape(path), line, key, pattern)
        r = testbed.check_config(harness.postern_binary(), path)
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
        self.assertRegex(r.stderr, want)
        r = subprocess.run([harness.postern_binary(), "--config", path], capture_output=True,
                           text=True, timeout=20)
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
        self.assertRegex(r.stderr, want)
        self.assertNotIn("listening", r.stdout + r.stderr)
        with socket.socket() as s:
            self.assertNotEqual(s.connect_ex((HOST, port)), 0)

    def test_unknown_user_refused_at_load(self):
        self.refused_at_load("nouser.yaml", self.config({"user": "nosuchuser"}), "user",
                             r"no such user .*nosuchuser")

    def test_unknown_group_refused_at_load(self):
        self.refused_at_load("nogroup.yaml", self.config({"user": "mail",
                                                          "group": "nosuchgroup"}),
                             "group", r"no such group .*nosuchgroup")

    def test_max_sessions_beyond_the_hard_limit(self):
        """limits.max_sessions 50000 needs about 100,000 descriptors, over
        the hard limit (20000 here) that postern cannot raise without
        CAP_SYS_RESOURCE: the start is refused, naming the key, and nothing
        listens, not even for a moment."""
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        sessions = 50000
        if has_cap_sys_resource():
            # Root may raise the hard limit up to fs.nr_open: ask for more.
            with open("/proc/sys/fs/nr_open") as f:
                sessions = int(f.read()) // 2 + 1000
        elif 2 * sessions <= hard:
            self.skipTest("the hard limit %d fits 50000 sessions" % hard)
        port = testbed.free_port()
        cfg = self.config({"limits": {"max_sessions": sessions}})
        cfg["listeners"][0]["address"] = "%s:%d" % (HOST, port)
        path = self.write("many.yaml", cfg)
        proc = subprocess.Popen([harness.postern_binary(), "--config", path],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        seen_listening = False
        deadline = time.monotonic() + 15
        while proc.poll() is None and time.monotonic() < deadline:
            seen_listening = seen_listening or testbed._listening(port)
            time.sleep(0.005)
        if proc.poll() is None:
            proc.kill()
        out, err = proc.communicate()
        self.assertNotEqual(proc.returncode, 0, "postern ran with max_sessions %d:\n%s"
                            % (sessions, out))
        self.assertIn("limits.max_sessions: %d" % sessions, err)
        self.assertIn("RLIMIT_NOFILE", err)
        self.assertFalse(seen_listening, "a listener was bound before the refusal")
        self.assertNotIn("listening", out + err)
        with socket.socket() as s:
            self.assertNotEqual(s.connect_ex((HOST, port)), 0)

    def test_max_sessions_raises_the_soft_limit(self):
        """Started with a soft limit of 1024, limits.max_sessions 5000 (about
        10,500 descriptors) raises it."""
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard < 11000:
            self.skipTest("hard limit %d" % hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))
        try:
            p = self.bed.start_postern(self.config({"limits": {"max_sessions": 5000}}))
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        with open("/proc/%d/limits" % p.pid) as f:
            line = next(l for l in f if l.startswith("Max open files"))
        now = int(line.split()[3])
        self.assertGreaterEqual(now, 2 * 5000)
        self.assertRegex(p.log(), r"open files limit %d: at most 5000 sessions" % now)
        self.assert_serves()


if __name__ == "__main__":
    unittest.main()
