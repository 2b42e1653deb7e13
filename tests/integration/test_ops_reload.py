"""Issue 11, change without dropping a session, drain and stop, with real
Dovecots and real clients.

- ReloadTest: two independent Dovecots, a and b (their messages differ:
  each Message-ID carries the store's port, so a fetched message says which
  store served it). A session held over a reload (SIGHUP, POST
  /admin/reload) that changes the certificate and the route keeps its
  certificate's TLS session and its store; a new session gets the new
  certificate (compared byte for byte) and the new store. Certificate
  files replaced on disk (renamed over, and a Kubernetes Secret's symlink
  swap) are picked up without a signal. Bad reloads are refused whole with
  file, line and key, and the old config keeps serving.
- DrainTest: a shard of two replicas (Dovecots a and b on one Maildir
  root). `POST /admin/backends/drain?backend=a&spread=3s`: every session on
  a ends at a response boundary (a 10 MiB literal to a slow reader arrives
  whole first, IDLE is told, a POP3 RETR completes first) with `* BYE
  [UNAVAILABLE]` / `-ERR [SYS/TEMP]`, the ends spread over the window; b's
  sessions are untouched; new logins go to b; undrained, a gets logins again.
- ShutdownUnderLoadTest: SIGTERM with 38 sessions fetching and retrieving
  messages of 64 KiB to 4 MiB (seven slow readers, ten quiet or in IDLE):
  /readyz turns 503 at once, the listeners close, every stream ends with
  complete answers then the notice (the slow readers' last answers arrive
  whole seconds after their sessions ended), postern exits 0 before
  shutdown_deadline; a client that reads nothing is cut at the deadline,
  without a notice inside its literal.
- SniTest: three certificates (ECDSA and RSA for mail.example.test, ECDSA
  for *.other.test) through the IMAPS and POP3S listeners: Python's ssl,
  openssl s_client (TLS 1.3 with RSA-PSS only) and curl.
- TicketKeyTest: two posterns with one ticket-key file resume each other's
  TLS 1.2 and 1.3 sessions; rotation through the file watch; a third
  postern with only the new key; the old key removed; without a key file
  a reload keeps resumption.
"""

import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
import unittest

import harness
import reloadhelp as rh
import routehelp
import testbed
from harness import crlf, dot_stuff

HOST = harness.HOST


def imaps_login(test, addr, ctx, user="alice", select=True):
    """An IMAPS session logged in (INBOX selected); closed at cleanup."""
    c = rh.conn(addr, ctx)
    test.addCleanup(c.close)
    _, tagged = c.imap("a", "LOGIN %s demo" % user)
    test.assertTrue(tagged.startswith(b"a OK"), tagged)
    if select:
        _, tagged = c.imap("s", "SELECT INBOX")
        test.assertTrue(tagged.startswith(b"s OK"), tagged)
    return c


def dovecot_logged_out(d, session):
    """Dovecot's `Logged out` line of the mail process with this session id."""
    m = re.search(r"(imap|pop3)\([^)]*\)<\d+><%s>: Info: (?:Logged out|Disconnected)[^\n]*"
                  % re.escape(session), d.log())
    return m.group(0) if m else None


# --- reloads ---------------------------------------------------------------------------

class ReloadTest(routehelp.FleetTestCase):
    """Two independent stores; a postern per test, started on certificate
    C1 with every user routed to store a."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.start_fleet({"a": {}, "b": {}}, users=("alice", "bob", "carol"))
        t = os.path.join(cls.tmp, "certs")
        cls.c1 = rh.make_cert(t, "c1", "postern reload one")
        cls.c2 = rh.make_cert(t, "c2", "postern reload two")
        cls.c3 = rh.make_cert(t, "c3", "postern reload three")
        cls.ca = rh.bundle(os.path.join(t, "ca.pem"), [cls.c1[0], cls.c2[0], cls.c3[0]])
        cls.token = rh.write_token(os.path.join(cls.tmp, "admin.token"))
        ids = {rh.message_id(d.messages("alice")[0]) for d in cls.dovecots.values()}
        assert len(ids) == 2, "test bug: both stores hold the same messages"

    def config(self, cert, backend="a", **extra):
        dv = self.dovecots
        cfg = {
            "workers": 2,
            "hostname": "postern.test",
            "listeners": [
                {"name": "imaps", "protocol": "imap", "address": "%s:0" % HOST,
                 "tls": "implicit"},
                {"name": "pop3s", "protocol": "pop3", "address": "%s:0" % HOST,
                 "tls": "implicit"},
            ],
            "tls": {"certificate": cert[0], "key": cert[1]},
            "backends": [routehelp.backend_entry(n, dv[n]) for n in ("a", "b")],
            "routing": {"default_backend": backend},
            "abuse": {"enabled": False},
            "admin": {"address": "%s:0" % HOST, "token_file": self.token},
            "log": {"level": "info", "format": "text"},
        }
        return harness.deep_merge(cfg, extra)

    def setUp(self):
        super().setUp()
        self.p = self.start_postern("P", self.config(self.c1))
        self.ctx = rh.client_context(self.ca)

    # --- helpers ---

    def store_of(self, c, user="alice"):
        """The store ("a" or "b") whose message 1 of `user` a selected
        session fetches (by its Message-ID)."""
        mid = rh.message_id(rh.fetch_first(c))
        for n, d in self.dovecots.items():
            if mid == rh.message_id(d.messages(user)[0]):
                return n
        self.fail("message 1 with Message-ID %r is from no store" % mid)

    def session_of(self, user, snapshot=None):
        """The admin API's entries for `user` (optionally of one snapshot)."""
        return [s for s in rh.sessions(self.p, user=user)
                if snapshot is None or s["snapshot"] == snapshot]

    def new_session_lands(self, cert, store):
        """A new IMAPS session gets `cert` and store `store` (by its message,
        the admin API, and that store's log of the session id)."""
        c = imaps_login(self, self.p.address("imaps"), self.ctx, user="bob")
        self.assertEqual(c.der, rh.der_of(cert[0]), "a new session got another certificate")
        self.assertEqual(self.store_of(c, "bob"), store)
        listed = self.session_of("bob")
        self.assertEqual(len(listed), 1, listed)
        self.assertEqual(listed[0]["backend"], store)
        where = routehelp.Placement(self.dovecots)
        where.marks = {n: 0 for n in self.dovecots}
        self.assertEqual(where.dovecot_of([listed[0]["id"]]), {listed[0]["id"]: store})
        c.imap("z", "LOGOUT")
        c.close()
        harness.wait_for(lambda: not self.session_of("bob"), timeout=5)
        return listed[0]

    def hold_sessions(self):
        """alice over IMAPS (selected), alice in IDLE, alice over POP3S,
        and alice just logged in over IMAPS (selects only after the
        reload); all on store a, certificate C1, snapshot 1."""
        addr = self.p.address("imaps")
        sel = imaps_login(self, addr, self.ctx)
        self.assertEqual(sel.der, rh.der_of(self.c1[0]))
        self.assertEqual(self.store_of(sel), "a")
        self.fresh = imaps_login(self, addr, self.ctx, select=False)
        idle = imaps_login(self, addr, self.ctx)
        idle.send("i IDLE\r\n")
        self.assertTrue(idle.readline().startswith(b"+ "), "IDLE not accepted")
        pop = rh.conn(self.p.address("pop3s"), self.ctx)
        self.addCleanup(pop.close)
        self.assertEqual(pop.der, rh.der_of(self.c1[0]))
        self.assertTrue(pop.pop3("USER alice").startswith(b"+OK"))
        self.assertTrue(pop.pop3("PASS demo").startswith(b"+OK"))
        held = self.session_of("alice")
        self.assertEqual(len(held), 4, held)
        self.assertEqual({(s["backend"], s["snapshot"]) for s in held}, {("a", 1)}, held)
        return sel, idle, pop, held

    def assert_held_sessions_work(self, sel, idle, pop, store="a"):
        """The held sessions answer, from store `store`."""
        _, tagged = sel.imap("n", "NOOP")
        self.assertTrue(tagged.startswith(b"n OK"), tagged)
        self.assertEqual(self.store_of(sel), store)
        idle.send("DONE\r\n")
        _, tagged = idle.imap_until_tagged("i")
        self.assertTrue(tagged.startswith(b"i OK"), tagged)
        self.assertEqual(self.store_of(idle), store)
        idle.send("i IDLE\r\n")
        self.assertTrue(idle.readline().startswith(b"+ "))
        self.assertTrue(pop.pop3("RETR 1").startswith(b"+OK"))
        body = b"\r\n".join(pop.pop3_multiline()) + b"\r\n"
        self.assertEqual(rh.message_id(body),
                         rh.message_id(self.dovecots[store].messages("alice")[0]))
        _, tagged = self.fresh.imap("s", "SELECT INBOX")
        self.assertTrue(tagged.startswith(b"s OK"), tagged)
        self.assertEqual(self.store_of(self.fresh), store)

    def end_held_sessions(self, sel, idle, pop, held):
        """Logs the held sessions out; Dovecot a (not b) logs each one's end."""
        sel.imap("z", "LOGOUT")
        self.fresh.imap("z", "LOGOUT")
        idle.send("DONE\r\n")
        idle.imap_until_tagged("i")
        idle.imap("z", "LOGOUT")
        pop.pop3("QUIT")
        for s in held:
            line = harness.wait_for(lambda: dovecot_logged_out(self.dovecots["a"], s["id"]),
                                    timeout=10)
            self.assertTrue(line, "Dovecot a never logged the end of session %s" % s["id"])
            self.assertNotIn(s["id"], self.dovecots["b"].log())

    def check_reload_mid_session(self, via):
        sel, idle, pop, held = self.hold_sessions()
        # C2 under new file names and routing to b: nothing for the file
        # watch to see, only the reload can bring it.
        rh.write_config(self.p, self.config(self.c2, backend="b"))
        if via == "sighup":
            event = rh.sighup(self.p)
        else:
            status, body, event = rh.admin_reload(self.p)
            self.assertEqual((status, body), (200, {"result": "ok", "snapshot": 2}))
        self.assertEqual(event, ("ok", "config", 2, None))
        # The old sessions go on with their snapshot: store a, their TLS.
        self.assert_held_sessions_work(sel, idle, pop, "a")
        self.assertEqual({(s["backend"], s["snapshot"]) for s in self.session_of("alice")},
                         {("a", 1)})
        # New ones: C2, store b, snapshot 2 (also for alice).
        listed = self.new_session_lands(self.c2, "b")
        self.assertEqual(listed["snapshot"], 2)
        c = imaps_login(self, self.p.address("imaps"), self.ctx)
        self.assertEqual(c.der, rh.der_of(self.c2[0]))
        self.assertEqual(self.store_of(c), "b")
        pop2 = rh.conn(self.p.address("pop3s"), self.ctx)
        self.addCleanup(pop2.close)
        self.assertEqual(pop2.der, rh.der_of(self.c2[0]))
        self.assert_held_sessions_work(sel, idle, pop, "a")
        self.end_held_sessions(sel, idle, pop, held)

    # --- tests ---

    def test_sighup_reloads_certificate_and_route_mid_session(self):
        self.check_reload_mid_session("sighup")

    def test_admin_reload_reloads_certificate_and_route_mid_session(self):
        self.check_reload_mid_session("admin")

    def test_certificate_files_replaced_on_disk(self):
        # The config names files whose content changes under it: first
        # renamed over (what an operator does), then a Kubernetes Secret's
        # update (the ..data symlink swapped to a new directory).
        live = os.path.join(self.tmp, "live-%s" % self.id().rsplit(".", 1)[1])
        os.makedirs(live)
        first = os.path.join(live, "..2026_01")
        os.makedirs(first)
        for src, name in ((self.c1[0], "tls.crt"), (self.c1[1], "tls.key")):
            shutil.copy(src, os.path.join(first, name))
        os.symlink("..2026_01", os.path.join(live, "..data"))
        for name in ("tls.crt", "tls.key"):
            os.symlink(os.path.join("..data", name), os.path.join(live, name))
        crt, key = os.path.join(live, "tls.crt"), os.path.join(live, "tls.key")
        self.p = self.start_postern("P", self.config((crt, key)))
        sel = imaps_login(self, self.p.address("imaps"), self.ctx)
        self.assertEqual(sel.der, rh.der_of(self.c1[0]))

        def cert_now():
            return rh.Probe(self.p.address("imaps"), self.ctx).der

        # 1. Renamed over, key first, no signal.
        second = os.path.join(live, "..2026_02")
        os.makedirs(second)
        mark = len(self.p.log())
        for src, name in ((self.c2[1], "tls.key"), (self.c2[0], "tls.crt")):
            shutil.copy(src, os.path.join(second, name + ".new"))
            os.rename(os.path.join(second, name + ".new"), os.path.join(first, name))
        got, took = rh.wait_until(lambda: cert_now() == rh.der_of(self.c2[0]), timeout=5,
                                  interval=0.1)
        self.assertTrue(got, "the new certificate was not served 5 s after the files changed")
        print("\nfiles renamed over: new certificate served after %.1f s" % took)
        events = rh.reload_events(self.p, mark, "files")
        self.assertIn("ok", [e[0] for e in events], events)
        # 2. The Secret's atomic update: ..data points at another directory.
        for src, name in ((self.c3[0], "tls.crt"), (self.c3[1], "tls.key")):
            shutil.copy(src, os.path.join(second, name))
        os.symlink("..2026_02", os.path.join(live, "..data_tmp"))
        os.rename(os.path.join(live, "..data_tmp"), os.path.join(live, "..data"))
        got, took = rh.wait_until(lambda: cert_now() == rh.der_of(self.c3[0]), timeout=5,
                                  interval=0.1)
        self.assertTrue(got, "the swapped Secret was not served 5 s after the swap")
        print("Secret's ..data swapped: new certificate served after %.1f s" % took)
        # The session from before both changes goes on.
        _, tagged = sel.imap("n", "NOOP")
        self.assertTrue(tagged.startswith(b"n OK"), tagged)
        self.assertEqual(self.store_of(sel), "a")
        refused = [e for e in rh.reload_events(self.p, mark) if e[0] != "ok"]
        if refused:
            print("refused on the way (a key and its certificate seen apart): %s" % refused)

    # --- bad reloads ---

    def bad_cases(self):
        """(name, config text, (file, line, key) the detail must name).
        Each bad config also routes to b: if it were taken, new sessions
        would land there."""
        base = testbed.to_yaml(self.config(self.c1, backend="b"))
        path = self.p.config_path

        def with_line(text, after, line_text):
            lines = text.splitlines()
            i = [n for n, l in enumerate(lines) if l.startswith(after)][0]
            lines.insert(i, line_text)
            return "\n".join(lines) + "\n"

        cases = []
        text = with_line(base, "listeners:", "hostname: mail: example")
        cases.append(("yaml syntax", text, (path, rh.line_of(text, "mail: example"),
                                            "YAML syntax error")))
        text = base + "limits:\n  max_line: 8192\n  max_lines: 9999\n"
        cases.append(("unknown key", text, (path, rh.line_of(text, "max_lines"),
                                            "limits.max_lines")))
        missing = os.path.join(self.tmp, "no-such-cert.pem")
        text = base.replace(self.c1[0], missing)
        cases.append(("missing certificate", text, (path, rh.line_of(text, missing),
                                                    "tls.certificate")))
        other = "%s:%d" % (HOST, testbed.free_port())
        text = base.replace('"%s:0"' % HOST, '"%s"' % other, 1)
        cases.append(("listener address", text, (path, rh.line_of(text, other),
                                                  "listeners[0].address")))
        pw = os.path.join(self.tmp, "broken.passwd")
        with open(pw, "w") as f:
            f.write("alice:{PLAIN}demo::::::\nbob:{PLAIN}demo::::::port=99999\n")
        text = base + ("directories:\n  - name: users\n    type: passwd-file\n    path: %s\n"
                       "directory: users\n" % pw)
        cases.append(("broken passwd-file", text, (pw, 2, "port=")))
        return cases

    def test_bad_reloads_are_refused_and_service_continues(self):
        sel, idle, pop, held = self.hold_sessions()
        good = rh.read(self.p.config_path).decode()
        printed = False
        for name, text, (where, line, key) in self.bad_cases():
            for via in ("sighup", "admin"):
                with self.subTest(case=name, via=via):
                    rh.write_config(self.p, text)
                    if via == "sighup":
                        event = rh.sighup(self.p)
                    else:
                        status, body, event = rh.admin_reload(self.p)
                        self.assertEqual(status, 422, body)
                        self.assertEqual(body.get("error"), event[3] if event else None)
                    self.assertIsNotNone(event, "no reload event")
                    result, kind, snapshot, detail = event
                    self.assertEqual((result, kind, snapshot), ("refused", "config", 1))
                    # File, line and key.
                    self.assertRegex(detail, r"^%s:%d: " % (re.escape(where), line))
                    self.assertIn(key, detail)
                    if via == "sighup":
                        print("%s%s: %s" % ("" if printed else "\n", name, detail))
                        printed = True
                    # The old config goes on: held sessions, and new ones
                    # (certificate C1, store a, snapshot 1).
                    self.assert_held_sessions_work(sel, idle, pop, "a")
                    listed = self.new_session_lands(self.c1, "a")
                    self.assertEqual(listed["snapshot"], 1)
                    rh.write_config(self.p, good)
        # And a good reload after all that is taken.
        rh.write_config(self.p, self.config(self.c2, backend="b"))
        self.assertEqual(rh.sighup(self.p), ("ok", "config", 2, None))
        self.new_session_lands(self.c2, "b")
        self.assert_held_sessions_work(sel, idle, pop, "a")
        self.end_held_sessions(sel, idle, pop, held)



# --- drain -----------------------------------------------------------------------------

BIG = 10 * 1024 * 1024
DRAIN_NOTICE_IMAP = b"* BYE [UNAVAILABLE] Mail server under maintenance, please reconnect.\r\n"
DRAIN_NOTICE_POP3 = b"-ERR [SYS/TEMP] Mail server under maintenance, please reconnect.\r\n"
DRAIN_USERS = ("alice", "bob", "carol", "dave", "bigi", "bigp")


class Stream(threading.Thread):
    """Reads a connection to its end in the background, keeping every byte
    and when it came: (seconds since `t0`, bytes so far) per read. A
    stalling reader reads `stall_after` bytes, then nothing until `resume`
    is set (its socket's small receive buffer keeps postern from sending
    far ahead: postern's read position stays within a few MB of ours)."""

    def __init__(self, c, t0, stall_after=None, resume=None):
        super().__init__(daemon=True)
        self.c = c
        self.t0 = t0
        self.stall_after = stall_after
        self.resume = resume
        self.data = bytearray(c.buf)
        c.buf.clear()
        self.marks = []
        self.eof_at = None
        self.error = None
        self.reached = threading.Event()  # stall_after bytes are in

    def run(self):
        sock = self.c.sock
        sock.settimeout(30)
        try:
            while True:
                if self.stall_after is not None and len(self.data) >= self.stall_after:
                    self.reached.set()
                    if not self.resume.wait(30):
                        raise TimeoutError("never resumed")
                    self.stall_after = None
                try:
                    chunk = sock.recv(65536)
                except (ConnectionResetError, ssl.SSLEOFError):
                    chunk = b""
                if not chunk:
                    self.eof_at = time.monotonic() - self.t0
                    break
                self.data += chunk
                self.marks.append((time.monotonic() - self.t0, len(self.data)))
        except Exception as e:  # noqa: BLE001 (the test reports it)
            self.error = "%s: %r" % (type(e).__name__, e)
        finally:
            self.reached.set()

    def time_at(self, offset):
        """When the first `offset` bytes were in."""
        for t, n in self.marks:
            if n >= offset:
                return t
        return None


class DrainTest(routehelp.FleetTestCase):
    """Shard s1 = replicas a and b (one Maildir root), least loaded; P
    routes by the ring (every user to s1). S has one backend, `solo`
    (Dovecot a), and no shards."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        dv = cls.start_fleet({"a": {"extra_messages": {"bigi": [BIG], "bigp": [BIG]}},
                              "b": {"replica_of": "a"}}, users=DRAIN_USERS)
        cls.big = {u: dv["a"].messages(u)[-1] for u in ("bigi", "bigp")}
        cls.token = rh.write_token(os.path.join(cls.tmp, "admin.token"))
        admin = {"admin": {"address": "%s:0" % HOST, "token_file": cls.token},
                 "log": {"format": "text"}}
        backends = [routehelp.backend_entry(n, dv[n]) for n in ("a", "b")]
        cls.start_postern("P", routehelp.base_config(
            cls.cert, cls.key, backends, shards=[{"name": "s1", "backends": ["a", "b"]}],
            **admin))
        cls.start_postern("S", routehelp.base_config(
            cls.cert, cls.key, [routehelp.backend_entry("solo", dv["a"])], **admin))

    # --- helpers ---

    def open(self, proto, user, listener=None, rcvbuf=None, p="P"):
        """A logged-in session (IMAP: INBOX examined) through postern p;
        .backend says where the admin API lists it."""
        listener = listener or proto
        c = harness.Conn(self.posterns[p].address(listener), tls=listener == "imaps",
                         cafile=self.cert, rcvbuf=rcvbuf)
        self.addCleanup(c.close)
        c.greeting = c.readline()
        if proto == "imap":
            _, tagged = c.imap("a", "LOGIN %s demo" % user)
            self.assertTrue(tagged.startswith(b"a OK"), tagged)
            untagged, tagged = c.imap("b", "EXAMINE INBOX")
            self.assertTrue(tagged.startswith(b"b OK"), tagged)
            c.exists = int(re.search(rb"\* (\d+) EXISTS", b"".join(untagged)).group(1))
        else:
            self.assertTrue(c.pop3("USER %s" % user).startswith(b"+OK"))
            self.assertTrue(c.pop3("PASS demo").startswith(b"+OK"))
        port = ":%d" % c.sock.getsockname()[1]
        listed = [s for s in rh.sessions(self.posterns[p]) if s["client"].endswith(port)]
        self.assertEqual(len(listed), 1, listed)
        c.backend, c.session = listed[0]["backend"], listed[0]["id"]
        c.proto, c.user = proto, user
        return c

    def open_on(self, backend, spares, *args, **kw):
        """Opens sessions until one lands on `backend` (least loaded: within
        two); the others go to `spares`."""
        for _ in range(4):
            c = self.open(*args, **kw)
            if c.backend == backend:
                return c
            spares.append(c)
        self.fail("four sessions in a row avoided backend %s" % backend)

    def landed(self, proto, user, p="P"):
        """Where one fresh login goes (by postern's session end line), or
        its refusal."""
        post = self.posterns[p]
        since = len(post.log())
        login = (routehelp.imap_login if proto == "imap" else routehelp.pop3_login)(
            post.address(proto), user)
        if not login.ok:
            return login.answer
        return routehelp.session_end_for_port(post, login.port, since)["backend"]

    def backends(self, p="P"):
        status, body = rh.admin(self.posterns[p], "GET", "/admin/backends")
        self.assertEqual(status, 200, body)
        return {b["name"]: b for b in body["backends"]}

    # --- tests ---

    def test_drained_replica_sessions_end_at_boundaries_new_logins_go_to_the_other(self):
        P = self.posterns["P"]
        on_b = []
        # Sessions on a: two 10 MiB FETCHes (plain, whose literals postern
        # splices, and IMAPS) and a 10 MiB RETR to readers that stall;
        # IDLE; a POP3 session between commands; ten selected IMAP sessions.
        fetch_plain = self.open_on("a", on_b, "imap", "bigi", rcvbuf=131072)
        fetch_tls = self.open_on("a", on_b, "imap", "bigi", listener="imaps", rcvbuf=131072)
        retr = self.open_on("a", on_b, "pop3", "bigp", rcvbuf=131072)
        idle = self.open_on("a", on_b, "imap", "alice")
        pop_idle = self.open_on("a", on_b, "pop3", "bob")
        plain = [self.open_on("a", on_b, "imap", DRAIN_USERS[i % 4]) for i in range(10)]
        # And on b: at least four IMAP and two POP3 sessions.
        while sum(1 for c in on_b if c.proto == "imap") < 4:
            c = self.open("imap", "carol")
            (on_b if c.backend == "b" else plain).append(c)
        while sum(1 for c in on_b if c.proto == "pop3") < 2:
            c = self.open("pop3", "dave")
            if c.backend == "b":
                on_b.append(c)
            else:
                pop_idle_more = c
                self.assertTrue(pop_idle_more.pop3("STAT").startswith(b"+OK"))
                plain.append(c)
        self.assertEqual({c.backend for c in on_b}, {"b"})
        on_a = [fetch_plain, fetch_tls, retr, idle, pop_idle] + plain
        self.assertEqual({c.backend for c in on_a}, {"a"})
        listed = {s["id"]: s["backend"] for s in rh.sessions(P)}
        self.assertEqual(sorted(listed.values()).count("a"), len(on_a), listed)

        idle.send("i IDLE\r\n")
        self.assertTrue(idle.readline().startswith(b"+ "))
        resume = threading.Event()
        t0 = time.monotonic()
        streams = {}
        for c in (fetch_plain, fetch_tls):
            c.send("f FETCH %d BODY.PEEK[]\r\n" % c.exists)
            streams[id(c)] = Stream(c, t0, stall_after=1 << 20, resume=resume)
        retr.send("RETR %d\r\n" % len(self.dovecots["a"].messages("bigp")))
        streams[id(retr)] = Stream(retr, t0, stall_after=1 << 20, resume=resume)
        for c in [idle, pop_idle] + plain:
            streams[id(c)] = Stream(c, t0)
        for st in streams.values():
            st.start()
        for c in (fetch_plain, fetch_tls, retr):
            self.assertTrue(streams[id(c)].reached.wait(20), "the big answer never started")

        # Drain a over 3 s.
        t_drain = time.monotonic() - t0
        status, body = rh.admin(P, "POST", "/admin/backends/drain?backend=a&spread=3s")
        self.assertEqual((status, body), (200, {"draining": len(on_a)}))
        state = self.backends()
        self.assertEqual((state["a"]["drained"], state["b"]["drained"]), (True, False), state)
        # While drained every new login goes to b.
        for i in range(6):
            self.assertEqual(self.landed("imap", DRAIN_USERS[i % 4]), "b")
        for u in ("alice", "bob"):
            self.assertEqual(self.landed("pop3", u), "b")
        # Every moment of the spread is past (the sweep runs once a second).
        time.sleep(max(0.0, t_drain + 3 + 1.5 - (time.monotonic() - t0)))
        resume.set()
        for st in streams.values():
            st.join(20)
        self.assertFalse([st for st in streams.values() if st.is_alive()],
                         "sessions on a still open")
        errors = [st.error for st in streams.values() if st.error]
        self.assertFalse(errors, errors)

        # Sessions between commands, and IDLE: the notice alone, then the end.
        ends = []
        for c in [idle, pop_idle] + plain:
            st = streams[id(c)]
            want = DRAIN_NOTICE_IMAP if c.proto == "imap" else DRAIN_NOTICE_POP3
            got = bytes(st.data)
            if c.proto == "imap":
                # Whole untagged responses Dovecot sent meanwhile (an IDLE
                # session's "* OK Still here") come first, as they should.
                got = re.sub(rb"^(\* OK [^\r\n]*\r\n)*", b"", got)
            self.assertEqual(got, want, (c.user, c.proto, bytes(st.data)))
            ends.append(st.eof_at - t_drain)
        ends.sort()
        print("\ndrain spread 3 s: %d sessions between commands ended %s s after the request"
              % (len(ends), ["%.2f" % t for t in ends]))
        self.assertLess(ends[-1], 3 + 1.5, "a session outlived the spread")
        self.assertGreater(ends[-1] - ends[0], 1.0, "the ends were not spread")
        self.assertLess(sum(1 for t in ends if t < 1.0), len(ends) - 2, "most ended at once")

        # The big answers: whole, then the notice, then the end.
        for c in (fetch_plain, fetch_tls):
            st = streams[id(c)]
            data = bytes(st.data)
            m = re.match(rb"\* \d+ FETCH \(BODY\[\] \{(\d+)\}\r\n", data)
            self.assertTrue(m, data[:200])
            start, n = m.end(), int(m.group(1))
            self.assertEqual(data[start:start + n], crlf(self.big["bigi"]), "literal differs")
            rest = data[start + n:]
            self.assertTrue(rest.startswith(b")\r\n"), rest[:100])
            rest = rest[3:]
            if rest.startswith(b"f OK"):
                rest = rest[rest.index(b"\r\n") + 2:]
            self.assertEqual(rest, DRAIN_NOTICE_IMAP)
            # The drain was asked for while the literal was still coming.
            self.assertLess(t_drain, st.time_at(start + n))
        st = streams[id(retr)]
        data = bytes(st.data)
        self.assertTrue(data.startswith(b"+OK"), data[:100])
        body_start = data.index(b"\r\n") + 2
        want = dot_stuff(crlf(self.big["bigp"]))
        want = want + (b"" if want.endswith(b"\r\n") else b"\r\n") + b".\r\n"
        self.assertEqual(data[body_start:body_start + len(want)], want, "RETR body differs")
        self.assertEqual(data[body_start + len(want):], DRAIN_NOTICE_POP3)
        self.assertLess(t_drain, st.time_at(body_start + len(want)))

        # b's sessions saw nothing and still answer.
        for c in on_b:
            c.sock.settimeout(0.01)
            try:
                got = c.sock.recv(100)
            except (socket.timeout, ssl.SSLWantReadError, BlockingIOError):
                got = None
            self.assertIsNone(got, "a session on b got %r" % got)
            c.sock.settimeout(10)
            if c.proto == "imap":
                _, tagged = c.imap("n", "NOOP")
                self.assertTrue(tagged.startswith(b"n OK"), tagged)
            else:
                self.assertTrue(c.pop3("STAT").startswith(b"+OK"))
        drained_ends = [f for f in routehelp.session_ends(P) if f.get("end") == "backend drained"]
        self.assertEqual(sorted(f["session"] for f in drained_ends),
                         sorted(c.session for c in on_a))

        # Undrained: a gets new logins again (b holds every open session).
        status, body = rh.admin(P, "POST", "/admin/backends/undrain?backend=a")
        self.assertEqual(status, 200, body)
        self.assertFalse(self.backends()["a"]["drained"])
        self.assertEqual([self.landed("imap", u) for u in ("alice", "bob", "carol")], ["a"] * 3)
        self.assertEqual(self.landed("pop3", "dave"), "a")

    def test_drained_lone_backend_is_unavailable(self):
        S = self.posterns["S"]
        held = self.open("imap", "alice", p="S")
        status, body = rh.admin(S, "POST", "/admin/backends/drain?backend=solo&spread=1s")
        self.assertEqual((status, body), (200, {"draining": 1}))
        self.assertTrue(self.backends("S")["solo"]["drained"])
        self.assertEqual(held.readline(timeout=5), DRAIN_NOTICE_IMAP)
        self.assertTrue(held.closed_within(5))
        answer = self.landed("imap", "alice", p="S")
        self.assertTrue(answer.startswith(b"a NO [UNAVAILABLE]"), answer)
        answer = self.landed("pop3", "alice", p="S")
        self.assertTrue(answer.startswith(b"-ERR [SYS/TEMP]"), answer)
        status, body = rh.admin(S, "POST", "/admin/backends/undrain?backend=solo")
        self.assertEqual(status, 200, body)
        self.assertEqual(self.landed("imap", "alice", p="S"), "solo")
        status, body = rh.admin(S, "POST", "/admin/backends/drain?backend=nowhere")
        self.assertEqual(status, 404, body)



# --- SIGTERM under load -------------------------------------------------------------------

LOAD_USERS = tuple("u%02d" % i for i in range(8))
LOAD_SIZES = (64 * 1024, 256 * 1024, 1024 * 1024, 4 * 1024 * 1024)
SLOW_RATE = 2 * 1024 * 1024  # bytes a second
STALL_SIZE = 12 * 1024 * 1024
SHUTDOWN_NOTICE_IMAP = b"* BYE Server shutting down.\r\n"
SHUTDOWN_NOTICE_POP3 = b"-ERR Server shutting down.\r\n"


class PacedConn(harness.Conn):
    """A harness.Conn that reads at most `rate` bytes a second (None: as
    fast as it can)."""

    rate = None

    def _fill(self, timeout=None):
        before = len(self.buf)
        ok = super()._fill(timeout)
        if ok and self.rate:
            time.sleep((len(self.buf) - before) / self.rate)
        return ok


class Outcome:
    def __init__(self, name):
        self.name = name
        self.rounds = 0
        self.ended = None    # the notice, once the stream ended after it
        self.ended_at = None  # when the notice came (monotonic)
        self.problem = None
        self.ready = threading.Event()


class ShutdownUnderLoadTest(routehelp.FleetTestCase):
    """One Dovecot whose users hold messages of 64 KiB to 4 MiB; a postern
    per test with shutdown_grace 1 s."""

    IMAP_FETCHERS = 16  # 4 of them slow
    POP3_FETCHERS = 12  # 3 of them slow
    IMAP_IDLE = 6       # 2 in IDLE
    POP3_IDLE = 4

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        # u07 also holds a message bigger than what postern and the
        # kernel buffer toward a client that reads nothing.
        extra = {u: list(LOAD_SIZES) + ([STALL_SIZE] if u == "u07" else []) for u in LOAD_USERS}
        dv = cls.start_fleet({"a": {"extra_messages": extra}}, users=LOAD_USERS)
        cls.token = rh.write_token(os.path.join(cls.tmp, "admin.token"))
        # (user, size) -> (sequence number, message as delivered: CRLF)
        cls.want = {}
        for u in LOAD_USERS:
            for i, m in enumerate(dv["a"].messages(u)):
                cls.want[u, len(m)] = (i + 1, crlf(m))

    def start(self, deadline):
        cfg = routehelp.base_config(
            self.cert, self.key, [routehelp.backend_entry("a", self.dovecots["a"])],
            admin={"address": "%s:0" % HOST, "token_file": self.token},
            timeouts={"shutdown_grace": "1s", "shutdown_deadline": deadline},
            log={"format": "text"})
        cfg["listeners"].append({"name": "pop3s", "protocol": "pop3",
                                 "address": "%s:0" % HOST, "tls": "implicit"})
        return self.start_postern("P", cfg)

    def readyz(self, p):
        try:
            status, _ = rh.admin(p, "GET", "/readyz", timeout=2)
            return status
        except OSError:
            return None  # gone (the process exited)

    # --- clients ---

    def imap_client(self, out, p, user, sizes, rate, fetch, use_idle=False):
        c = PacedConn(p.address("imaps"), tls=True, cafile=self.cert, timeout=20)
        c.rate = rate
        try:
            c.readline()
            _, tagged = c.imap("a", "LOGIN %s demo" % user)
            if not tagged.startswith(b"a OK"):
                out.problem = "login: %r" % tagged
                return
            c.imap("b", "EXAMINE INBOX")
            if use_idle:
                c.send("i IDLE\r\n")
                if not c.readline().startswith(b"+ "):
                    out.problem = "IDLE refused"
                    return
            out.ready.set()
            while True:
                tag = None
                if fetch:
                    size = sizes[out.rounds % len(sizes)]
                    n, want = self.want[user, size]
                    tag = b"f%d" % out.rounds
                    c.send(b"%s FETCH %d BODY.PEEK[]\r\n" % (tag, n))
                while True:
                    try:
                        r = c.imap_response(timeout=20)
                    except harness.Closed as e:
                        out.problem = "closed without a notice (%s)%s" % (e, notice_in(c.buf))
                        return
                    if r.startswith(b"* BYE"):
                        if r != SHUTDOWN_NOTICE_IMAP:
                            out.problem = "BYE: %r" % r
                        elif not c.closed_within(5):
                            out.problem = "still open after the notice"
                        else:
                            out.ended, out.ended_at = r, time.monotonic()
                        return
                    m = re.match(rb"\* \d+ FETCH \(BODY\[\] \{(\d+)\}\r\n", r)
                    if m:
                        body = r[m.end():m.end() + int(m.group(1))]
                        if body != want:
                            out.problem = "literal of %d bytes differs from the %d sent" % (
                                len(body), len(want))
                            return
                        if not r.endswith(b")\r\n"):
                            out.problem = "FETCH response ends with %r" % r[-20:]
                            return
                    elif tag is not None and r.startswith(tag + b" "):
                        if not r.startswith(tag + b" OK"):
                            out.problem = "FETCH: %r" % r
                            return
                        out.rounds += 1
                        break
                    elif not fetch and not r.startswith(b"* "):
                        out.problem = "unexpected %r" % r[:100]
                        return
        except Exception as e:  # noqa: BLE001 (the test reports it)
            out.problem = "%s: %r" % (type(e).__name__, e)
        finally:
            out.ready.set()
            c.close()

    def pop3_client(self, out, p, user, sizes, rate, fetch):
        c = PacedConn(p.address("pop3s"), tls=True, cafile=self.cert, timeout=20)
        c.rate = rate
        try:
            c.readline()
            c.pop3("USER %s" % user)
            r = c.pop3("PASS demo")
            if not r.startswith(b"+OK"):
                out.problem = "login: %r" % r
                return
            if not fetch:
                c.pop3("STAT")
            out.ready.set()
            while True:
                if fetch:
                    size = sizes[out.rounds % len(sizes)]
                    n, want = self.want[user, size]
                    want = dot_stuff(want)
                    want = want + (b"" if want.endswith(b"\r\n") else b"\r\n") + b".\r\n"
                    c.send("RETR %d\r\n" % n)
                try:
                    status = c.readline(timeout=20)
                except harness.Closed as e:
                    out.problem = "closed without a notice (%s)" % e
                    return
                if status.startswith(b"-ERR"):
                    if status != SHUTDOWN_NOTICE_POP3:
                        out.problem = "-ERR: %r" % status
                    elif not c.closed_within(5):
                        out.problem = "still open after the notice"
                    else:
                        out.ended, out.ended_at = status, time.monotonic()
                    return
                if not fetch or not status.startswith(b"+OK"):
                    out.problem = "unexpected %r" % status[:100]
                    return
                try:
                    body = c.pop3_raw_body(timeout=20)
                except harness.Closed as e:
                    out.problem = "RETR body cut (%s)%s" % (e, notice_in(c.buf))
                    return
                if body != want:
                    out.problem = "RETR body of %d bytes differs from the %d sent%s" % (
                        len(body), len(want), notice_in(body))
                    return
                out.rounds += 1
        except Exception as e:  # noqa: BLE001 (the test reports it)
            out.problem = "%s: %r" % (type(e).__name__, e)
        finally:
            out.ready.set()
            c.close()

    # --- tests ---

    def test_sigterm_under_load(self):
        p = self.start("8s")
        outcomes, threads = [], []

        def start(name, target, *args):
            o = Outcome(name)
            t = threading.Thread(target=target, args=(o, p) + args, daemon=True)
            outcomes.append(o)
            threads.append(t)
            t.start()

        # Slow readers fetch the biggest message only: at 2 MB/s each answer
        # takes two seconds, so the grace period ends inside one, with
        # megabytes still on their way to the client.
        for i in range(self.IMAP_FETCHERS):
            slow = i % 4 == 0
            sizes = LOAD_SIZES[-1:] if slow else LOAD_SIZES[i % 4:] + LOAD_SIZES[:i % 4]
            start("imap-fetch-%d%s" % (i, "-slow" if slow else ""), self.imap_client,
                  LOAD_USERS[i % len(LOAD_USERS)], sizes, SLOW_RATE if slow else None, True)
        for i in range(self.POP3_FETCHERS):
            slow = i % 4 == 0
            sizes = LOAD_SIZES[-1:] if slow else LOAD_SIZES[(i + 1) % 4:] + LOAD_SIZES[:(i + 1) % 4]
            start("pop3-retr-%d%s" % (i, "-slow" if slow else ""), self.pop3_client,
                  LOAD_USERS[(i + 3) % len(LOAD_USERS)], sizes, SLOW_RATE if slow else None,
                  True)
        for i in range(self.IMAP_IDLE):
            start("imap-%s-%d" % ("idle" if i < 2 else "quiet", i), self.imap_client,
                  LOAD_USERS[i], (), None, False, i < 2)
        for i in range(self.POP3_IDLE):
            start("pop3-quiet-%d" % i, self.pop3_client, LOAD_USERS[i + 2], (), None, False)
        for o in outcomes:
            o.ready.wait(30)
        early = ["%s: %s" % (o.name, o.problem) for o in outcomes if o.problem]
        self.assertFalse(early, "clients failed before the signal")
        self.assertEqual(self.readyz(p), 200)
        time.sleep(1.5)  # transfers under way everywhere

        rounds_before = sum(o.rounds for o in outcomes)
        t0 = time.monotonic()
        p.send_signal(signal.SIGTERM)
        # Readiness goes at once.
        first_503 = None
        while time.monotonic() - t0 < 2:
            status = self.readyz(p)
            if status == 503:
                first_503 = time.monotonic() - t0
                break
            self.assertEqual(status, 200)
        self.assertIsNotNone(first_503, "/readyz still 200 two seconds after SIGTERM")
        later = [self.readyz(p) for _ in range(5)]
        self.assertTrue(all(s in (503, None) for s in later), later)
        # The listeners are closed: nobody new gets in.
        with self.assertRaises(ConnectionRefusedError):
            socket.create_connection(p.address("imaps"), timeout=2).close()
        code = p.wait(15)
        exited = time.monotonic() - t0
        for t in threads:
            t.join(max(0.1, t0 + 20 - time.monotonic()))
        self.assertFalse([o.name for o, t in zip(outcomes, threads) if t.is_alive()],
                         "clients whose stream did not end")
        slow_told = sorted(o.ended_at - t0 for o in outcomes if o.ended_at and "slow" in o.name)
        print("\nSIGTERM with %d sessions: /readyz 503 after %.0f ms, exit %s after %.2f s; "
              "%d answers complete before the signal, %d in all; slow readers told after %s s"
              % (len(outcomes), first_503 * 1000, code, exited, rounds_before,
                 sum(o.rounds for o in outcomes), ["%.1f" % t for t in slow_told]))
        bad = ["%s: %s" % (o.name, o.problem) for o in outcomes if o.problem]
        self.assertFalse(bad, "%d of %d streams ended badly" % (len(bad), len(outcomes)))
        self.assertTrue(all(o.ended for o in outcomes))
        self.assertEqual(code, 0, p.log()[-2000:])
        self.assertLess(first_503, 1.0)
        self.assertLess(exited, 8.0, "not out before shutdown_deadline")
        self.assertGreater(exited, 0.9, "out before shutdown_grace")
        self.assertIn("shutdown: signal=15 grace_ms=1000 deadline_ms=8000", p.log())
        # The slow readers were still reading well after their sessions
        # ended (at the grace period's end): what was owed them was not cut.
        self.assertGreater(slow_told[-1], 1.8, "no slow reader was mid-answer at the end")

    def test_deadline_cuts_a_client_that_reads_nothing(self):
        p = self.start("3s")
        stalled = harness.Conn(p.address("imaps"), tls=True, cafile=self.cert, rcvbuf=65536)
        self.addCleanup(stalled.close)
        stalled.readline()
        n, want = self.want["u07", STALL_SIZE]
        self.assertEqual(harness.start_fetch_last(self, stalled, "u07"), n)
        # The response starts; then the client reads nothing more.
        head = stalled.readline()
        m = re.match(rb"\* \d+ FETCH \(BODY\[\] \{(\d+)\}\r\n", head)
        self.assertTrue(m, head)
        self.assertEqual(int(m.group(1)), len(want))
        got = stalled.read_exact(65536)
        quiet = harness.Conn(p.address("imaps"), tls=True, cafile=self.cert)
        self.addCleanup(quiet.close)
        quiet.readline()
        _, tagged = quiet.imap("a", "LOGIN u02 demo")
        self.assertTrue(tagged.startswith(b"a OK"), tagged)
        time.sleep(0.5)  # the stalled session's buffers fill up
        t0 = time.monotonic()
        p.send_signal(signal.SIGTERM)
        self.assertEqual(quiet.readline(timeout=5), SHUTDOWN_NOTICE_IMAP)
        told = time.monotonic() - t0
        code = p.wait(10)
        exited = time.monotonic() - t0
        print("\nshutdown_deadline 3 s: the quiet session told after %.2f s, exit %s after "
              "%.2f s" % (told, code, exited))
        self.assertEqual(code, 0)
        self.assertGreater(told, 0.9)
        self.assertGreater(exited, 2.8, "exited before the deadline with a session open")
        self.assertLess(exited, 3 + 1.5, "not out soon after shutdown_deadline")
        # The stalled client's stream is a cut literal with nothing after it:
        # no notice was put inside it.
        got += stalled.read_to_eof(10)
        print("the stalled client got %d of the literal's %d bytes" % (len(got), len(want)))
        self.assertLess(len(got), len(want), "the whole literal arrived")
        self.assertEqual(got, want[:len(got)],
                         "bytes other than the literal's%s" % notice_in(got))


def notice_in(data):
    """Says so if a shutdown notice sits in the last bytes of a cut answer."""
    tail = bytes(data[-300:])
    for notice in (b"* BYE", b"-ERR"):
        i = tail.rfind(notice)
        if i >= 0:
            return ", ending with %r" % tail[i:i + 60]
    return ""


# --- SNI -----------------------------------------------------------------------------------

RSA_ONLY = dict(max_version=ssl.TLSVersion.TLSv1_2, ciphers="ECDHE-RSA-AES128-GCM-SHA256")


class SniTest(routehelp.FleetTestCase):
    """tls.certificates: ECDSA mail.example.test (first: the default), RSA
    mail.example.test, ECDSA *.other.test."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        dv = cls.start_fleet({"a": {}}, users=("alice",))
        t = os.path.join(cls.tmp, "sni")
        cls.certs = {
            "ecdsa": rh.make_cert(t, "ecdsa", "mail ecdsa", dns=("mail.example.test",), ips=()),
            "rsa": rh.make_cert(t, "rsa", "mail rsa", dns=("mail.example.test",), ips=(),
                                key_type="rsa"),
            "wildcard": rh.make_cert(t, "wildcard", "other wildcard", dns=("*.other.test",),
                                     ips=()),
        }
        cls.ca = rh.bundle(os.path.join(t, "ca.pem"), [c for c, _ in cls.certs.values()])
        cls.names = {rh.der_of(c): n for n, (c, _) in cls.certs.items()}
        cfg = routehelp.base_config(cls.cert, cls.key,
                                    [routehelp.backend_entry("a", dv["a"])],
                                    log={"format": "text"})
        cfg["tls"] = {"certificates": [{"certificate": cls.certs[n][0], "key": cls.certs[n][1]}
                                       for n in ("ecdsa", "rsa", "wildcard")]}
        cfg["listeners"].append({"name": "pop3s", "protocol": "pop3",
                                 "address": "%s:0" % HOST, "tls": "implicit"})
        cls.start_postern("P", cfg)

    CASES = [
        # (server name or None, client limits, certificate)
        ("mail.example.test", {}, "ecdsa"),
        ("MAIL.Example.Test", {}, "ecdsa"),
        ("mail.example.test", RSA_ONLY, "rsa"),
        ("x.other.test", {}, "wildcard"),
        ("unknown.example.test", {}, "ecdsa"),
        (None, {}, "ecdsa"),
        (None, RSA_ONLY, "rsa"),  # the RSA one also lists the default's name
        ("a.b.other.test", {}, "ecdsa"),  # a wildcard covers one label
    ]

    def test_python_clients_get_the_certificate_for_their_name(self):
        p = self.posterns["P"]
        for listener in ("imaps", "pop3s"):
            for name, limits, want in self.CASES:
                with self.subTest(listener=listener, name=name, limits=bool(limits)):
                    # Names the served certificate carries are verified too.
                    verify_name = name is not None and (
                        name.lower() == "mail.example.test" or want == "wildcard")
                    ctx = rh.client_context(self.ca, check_hostname=verify_name, **limits)
                    probe = rh.Probe(p.address(listener), ctx, server_hostname=name)
                    self.assertEqual(self.names.get(probe.der), want)
                    self.assertTrue(probe.greeting.startswith(
                        b"* OK" if listener == "imaps" else b"+OK"), probe.greeting)
                    if limits:
                        self.assertEqual(probe.version, "TLSv1.2")
        # A login over the RSA certificate works end to end.
        ctx = rh.client_context(self.ca, **RSA_ONLY)
        c = rh.conn(p.address("imaps"), ctx, server_hostname="mail.example.test")
        self.addCleanup(c.close)
        self.assertEqual(self.names.get(c.der), "rsa")
        _, tagged = c.imap("a", "LOGIN alice demo")
        self.assertTrue(tagged.startswith(b"a OK"), tagged)

    def s_client(self, addr, name, *args):
        r = subprocess.run(["openssl", "s_client", "-connect", "%s:%d" % addr,
                            "-servername", name, "-CAfile", self.ca, "-verify_return_error",
                            "-verify_hostname", name] + list(args),
                           input=b"", capture_output=True, timeout=20)
        out = r.stdout.decode(errors="replace")
        m = re.search(r"^subject=CN ?= ?(.+)$", out, re.M)
        proto = re.search(r"^New, (TLSv[\d.]+),", out, re.M)
        return (m.group(1).strip() if m else None), (proto.group(1) if proto else None), \
            r.returncode, out + r.stderr.decode(errors="replace")

    def test_openssl_s_client_tls13_by_signature_algorithms(self):
        p = self.posterns["P"]
        for listener in ("imaps", "pop3s"):
            for sigalgs, want in (("rsa_pss_rsae_sha256", "mail rsa"),
                                  ("ecdsa_secp256r1_sha256", "mail ecdsa"),
                                  ("ecdsa_secp256r1_sha256:rsa_pss_rsae_sha256", "mail ecdsa")):
                with self.subTest(listener=listener, sigalgs=sigalgs):
                    subject, proto, code, out = self.s_client(
                        p.address(listener), "mail.example.test", "-tls1_3", "-sigalgs", sigalgs)
                    self.assertEqual((subject, proto, code), (want, "TLSv1.3", 0), out[-1500:])

    def curl(self, listener, name, *args):
        host, port = self.posterns["P"].address(listener)
        scheme = "imaps" if listener == "imaps" else "pop3s"
        r = subprocess.run(["curl", "-sS", "-v", "--max-time", "15", "--cacert", self.ca,
                            "--resolve", "%s:%d:%s" % (name, port, host), "-u", "alice:demo"]
                           + list(args) + ["%s://%s:%d/%s" % (scheme, name, port,
                                                              "INBOX" if scheme == "imaps"
                                                              else "")],
                           capture_output=True, timeout=30)
        err = r.stderr.decode(errors="replace")
        m = re.search(r"subject: CN ?= ?(.+)$", err, re.M)
        return (m.group(1).strip() if m else None), r.returncode, r.stdout, err

    def test_curl_verifies_the_certificate_for_its_name(self):
        for listener in ("imaps", "pop3s"):
            for name, args, want in (
                    ("mail.example.test", (), "mail ecdsa"),
                    ("mail.example.test", ("--tls-max", "1.2", "--ciphers",
                                           "ECDHE-RSA-AES128-GCM-SHA256"), "mail rsa"),
                    ("x.other.test", (), "other wildcard")):
                with self.subTest(listener=listener, name=name, args=args):
                    subject, code, out, err = self.curl(listener, name, *args)
                    self.assertEqual((subject, code), (want, 0), err[-1500:])
                    self.assertTrue(out, "curl listed nothing")
            # A name the served (default) certificate does not carry: curl
            # refuses it (exit 60), which shows the default was served.
            with self.subTest(listener=listener, name="unknown"):
                subject, code, _, err = self.curl(listener, "unknown.example.test")
                self.assertEqual((subject, code), ("mail ecdsa", 60), err[-1500:])


# --- ticket keys ----------------------------------------------------------------------------

TLS12 = ssl.TLSVersion.TLSv1_2
TLS13 = ssl.TLSVersion.TLSv1_3


class TicketKeyTest(routehelp.FleetTestCase):
    """P1 and P2 read the same ticket-key file (K1); P3 has only K2 (the
    key the rotation brings); P4 has no key file. All in front of one
    Dovecot."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        dv = cls.start_fleet({"a": {}}, users=("alice",))
        cls.k1, cls.k2 = rh.ticket_key(), rh.ticket_key()
        cls.shared = rh.write_ticket_keys(os.path.join(cls.tmp, "shared.keys"), [cls.k1])
        only_new = rh.write_ticket_keys(os.path.join(cls.tmp, "new.keys"), [cls.k2])
        backends = [routehelp.backend_entry("a", dv["a"])]

        def cfg(keys):
            c = routehelp.base_config(cls.cert, cls.key, backends, log={"format": "text"})
            if keys:
                c["tls"]["ticket_key_file"] = keys
            return c
        for name, keys in (("P1", cls.shared), ("P2", cls.shared), ("P3", only_new), ("P4", None)):
            cls.start_postern(name, cfg(keys))

    def ctx(self, version):
        c = rh.client_context(self.cert, max_version=version)
        c.minimum_version = version
        return c

    def full(self, p, ctx):
        """A full handshake with postern p: the probe (its session holds
        the ticket)."""
        probe = rh.Probe(self.posterns[p].address("imaps"), ctx)
        self.assertFalse(probe.reused)
        self.assertIsNotNone(probe.session)
        self.assertTrue(probe.session.has_ticket, "no ticket from %s" % p)
        return probe

    def resumes(self, p, ctx, session):
        """Whether a connection to p offering `session` resumed it; the
        handshake must succeed and the greeting come either way."""
        probe = rh.Probe(self.posterns[p].address("imaps"), ctx, session=session)
        self.assertTrue(probe.greeting.startswith(b"* OK"), probe.greeting)
        return probe.reused

    def test_instances_sharing_a_key_file_resume_each_others_sessions(self):
        for version in (TLS12, TLS13):
            with self.subTest(version=version.name):
                ctx = self.ctx(version)
                first = self.full("P1", ctx)
                self.assertEqual(first.version, {TLS12: "TLSv1.2", TLS13: "TLSv1.3"}[version])
                self.assertTrue(self.resumes("P2", ctx, first.session))
                self.assertTrue(self.resumes("P1", ctx, first.session))
                back = self.full("P2", ctx)
                self.assertTrue(self.resumes("P1", ctx, back.session))
                # Other keys: a full handshake, no error.
                self.assertFalse(self.resumes("P3", ctx, first.session))
                self.assertFalse(self.resumes("P4", ctx, first.session))
        # A resumed session serves a login.
        ctx = self.ctx(TLS13)
        first = self.full("P1", ctx)
        raw = socket.create_connection(self.posterns["P2"].address("imaps"), timeout=10)
        c = harness.Conn.__new__(harness.Conn)
        c.timeout, c.buf, c.eof = 10, bytearray(), False
        c.sock = ctx.wrap_socket(raw, server_hostname="localhost", session=first.session)
        self.addCleanup(c.close)
        self.assertTrue(c.sock.session_reused)
        c.readline()
        _, tagged = c.imap("a", "LOGIN alice demo")
        self.assertTrue(tagged.startswith(b"a OK"), tagged)

    def rotate(self, keys):
        """Writes the shared file and waits for P1's and P2's file watch to
        reload it (no signal)."""
        marks = {p: len(self.posterns[p].log()) for p in ("P1", "P2")}
        t0 = time.monotonic()
        rh.write_ticket_keys(self.shared, keys)
        for p in ("P1", "P2"):
            event = rh.wait_reload(self.posterns[p], marks[p], kind="files", timeout=5)
            self.assertIsNotNone(event, "%s did not reload the ticket keys" % p)
            self.assertEqual(event[0], "ok", event)
        return time.monotonic() - t0

    def test_rotation(self):
        self.addCleanup(rh.write_ticket_keys, self.shared, [self.k1])
        ctxs = {v: self.ctx(v) for v in (TLS12, TLS13)}
        old = {v: self.full("P1", ctxs[v]).session for v in ctxs}
        # 1. The new key first, the old one kept: old tickets resume
        #    everywhere; new tickets are sealed with the new key (P3 has
        #    only that one).
        took = self.rotate([self.k2, self.k1])
        print("\nrotation picked up by the file watch after %.1f s" % took)
        new = {}
        for v, ctx in ctxs.items():
            with self.subTest(step="new key first", version=v.name):
                self.assertTrue(self.resumes("P1", ctx, old[v]))
                self.assertTrue(self.resumes("P2", ctx, old[v]))
                self.assertFalse(self.resumes("P3", ctx, old[v]))
                new[v] = self.full("P2", ctx).session
                self.assertTrue(self.resumes("P3", ctx, new[v]))
                self.assertTrue(self.resumes("P1", ctx, new[v]))
        # 2. The old key removed: old tickets get a full handshake, no error.
        self.rotate([self.k2])
        for v, ctx in ctxs.items():
            with self.subTest(step="old key removed", version=v.name):
                self.assertFalse(self.resumes("P1", ctx, old[v]))
                self.assertFalse(self.resumes("P2", ctx, old[v]))
                self.assertTrue(self.resumes("P1", ctx, new[v]))
                self.assertTrue(self.resumes("P3", ctx, new[v]))

    def test_reload_without_key_file_keeps_resumption(self):
        P4 = self.posterns["P4"]
        other = rh.make_cert(os.path.join(self.tmp, "p4"), "other", "postern p4 other")
        for version in (TLS12, TLS13):
            with self.subTest(version=version.name):
                ctx = self.ctx(version)
                before = self.full("P4", ctx).session
                self.assertEqual(rh.sighup(P4)[0], "ok")
                self.assertTrue(self.resumes("P4", ctx, before))
        # A new certificate (a new TLS context) keeps the keys too.
        ctx = {v: self.ctx(v) for v in (TLS12, TLS13)}
        before = {v: self.full("P4", ctx[v]).session for v in ctx}
        cfg = rh.read(P4.config_path).decode()
        rh.write_config(P4, cfg.replace(self.cert, other[0]).replace(self.key, other[1]))
        self.addCleanup(rh.sighup, P4)
        self.addCleanup(rh.write_config, P4, cfg)
        self.assertEqual(rh.sighup(P4)[0], "ok")
        for v in ctx:
            self.assertTrue(self.resumes("P4", ctx[v], before[v]), v.name)


if __name__ == "__main__":
    unittest.main()
