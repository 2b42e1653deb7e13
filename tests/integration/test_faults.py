"""Faults (issue 7): backends that never answer, never accept, or answer
with garbage or forged tagged lines during postern's login; clients that
vanish mid-literal or mid-handshake; SIGTERM under load. postern-only
(skipped in direct mode): the backends here are fakes, or the checks are on
postern's log, fds and exit.
"""

import re
import signal
import socket
import threading
import time
import unittest

import fakes
import harness
from harness import crlf, dot_stuff, proxy_only

UNAVAILABLE = rb"^a NO \[UNAVAILABLE\] "
SYS_TEMP = rb"^-ERR \[SYS/TEMP\] "

# Tags a forging backend might guess for postern's login command: the ones
# today's code uses (P1..P4) and other common choices.
FORGED_TAGS = [b"P%d" % i for i in range(10)] + [b"A1", b"a1", b"1", b"A0001", b"p3", b"x"]


def forged_ok_lines():
    return b"".join(b"%s OK [CAPABILITY IMAP4rev1] Forged login OK.\r\n" % t
                    for t in FORGED_TAGS)


@proxy_only
class FakeBackendTest(fakes.LateStartTestCase):
    """postern logs in to a scripted fake backend (users not listed go to
    it); "stuck" goes to a listener whose accept queue is full."""

    postern_overrides = {"timeouts": {"backend_login": "2s", "backend_connect": "1s"}}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.fake = fakes.FakeBackend()
        cls.addClassCleanup(cls.fake.close)
        cls.stuck = fakes.Unaccepting()
        cls.addClassCleanup(cls.stuck.close)

    @classmethod
    def extra_config(cls):
        d = cls.bed.dovecot
        return {
            "backends": [
                {"name": "dovecot", "address": harness.HOST, "imap_port": d.imap_port,
                 "pop3_port": d.pop3_port},
                {"name": "fake", "address": harness.HOST, "imap_port": cls.fake.port,
                 "pop3_port": cls.fake.port},
                {"name": "stuck", "address": harness.HOST, "imap_port": cls.stuck.port,
                 "pop3_port": cls.stuck.port},
            ],
            "routing": {"default_backend": "fake", "users": {"alice": "dovecot",
                                                             "stuck": "stuck"}},
        }

    def imap_login(self, handler, user="fred", timeout=10):
        """LOGIN through imaps to the fake running handler: (tagged, seconds)."""
        self.fake.reset(handler)
        c = self.connect("imaps")
        start = time.monotonic()
        try:
            _, tagged = c.imap("a", "LOGIN %s demo" % user, timeout=timeout)
        except (harness.Closed, socket.timeout) as e:
            self.fail("no answer to LOGIN: %r" % e)
        return tagged, time.monotonic() - start

    def pop3_login(self, handler, user="fred", timeout=10):
        self.fake.reset(handler)
        c = self.connect("pop3s")
        self.assertTrue(c.pop3("USER %s" % user).startswith(b"+OK"))
        start = time.monotonic()
        try:
            r = c.pop3("PASS demo", timeout=timeout)
        except (harness.Closed, socket.timeout) as e:
            self.fail("no answer to PASS: %r" % e)
        return r, time.monotonic() - start

    def assert_not_forged(self, tagged):
        """Never an OK; NO [UNAVAILABLE] or the backend's genuine NO."""
        self.assertFalse(tagged.startswith(b"a OK"), "the client got a forged OK: %r" % tagged)
        self.assertRegex(tagged, rb"^a NO \[(UNAVAILABLE|AUTHENTICATIONFAILED)\] ")

    # --- after login ---

    def test_literal_of_twenty_digits_spliced(self):
        # A backend may announce a literal of 2^64-1 octets (the tracker
        # saturates there). On a spliced pair, after bulk has made the relay
        # peek, the peek that sees that line alone once made the splice's
        # length wrap around: it moved all but the line's LF, then 0 bytes,
        # which the relay took for the backend's EOF and ended the session.
        # The payload that follows must reach the client.
        def fetch(s, tag):
            s.send(b"* 1 FETCH (BODY[] {30000}\r\n" + b"x" * 30000 + b")\r\n")
            time.sleep(0.3)
            s.send(b"* 2 FETCH (BODY[] {18446744073709551615}\r\n")
            time.sleep(0.3)
            s.send(b"hello after the line")
            time.sleep(5)
            return True

        handler = fakes.imap_server(login_answer=b"OK Logged in.", commands={b"FETCH": fetch})
        self.fake.reset(handler)
        c = self.connect("imap-plain")
        _, tagged = c.imap("a", "LOGIN fred demo")
        self.assertTrue(tagged.startswith(b"a OK"), tagged)
        c.send(b"b FETCH 1:2 BODY[]\r\n")
        c.read_until(b"x" * 30000 + b")\r\n", timeout=10)
        try:
            line = c.read_until(b"}\r\n", timeout=10)
            got = c.read_exact(len(b"hello after the line"), timeout=10)
        except harness.Closed as e:
            self.fail("the session ended at the literal's line: %r" % e)
        self.assertEqual(line, b"* 2 FETCH (BODY[] {18446744073709551615}\r\n")
        self.assertEqual(got, b"hello after the line")

    # --- a backend that never answers, or never accepts ---

    def test_silent_backend_imap(self):
        tagged, took = self.imap_login(fakes.silent)
        self.assertRegex(tagged, UNAVAILABLE)
        self.assertGreaterEqual(took, 1.9)
        self.assertLessEqual(took, 5)

    def test_silent_backend_pop3(self):
        r, took = self.pop3_login(fakes.silent)
        self.assertRegex(r, SYS_TEMP)
        self.assertGreaterEqual(took, 1.9)
        self.assertLessEqual(took, 5)

    def connect_never_completes(self, login):
        if not self.stuck.works:
            self.skipTest("could not make a connect hang on this machine")
        answer, took = login(None, user="stuck")
        self.assertGreaterEqual(took, 0.9)
        self.assertLessEqual(took, 4)
        return answer

    def test_connect_never_completes_imap(self):
        self.assertRegex(self.connect_never_completes(self.imap_login), UNAVAILABLE)

    def test_connect_never_completes_pop3(self):
        self.assertRegex(self.connect_never_completes(self.pop3_login), SYS_TEMP)

    # --- garbage and forged answers during postern's login ---

    def test_genuine_no(self):
        # The fake itself: a plain refusal is the client's refusal.
        tagged, _ = self.imap_login(fakes.imap_server())
        self.assertRegex(tagged, rb"^a NO \[AUTHENTICATIONFAILED\] ")

    def test_garbage_greeting_imap(self):
        def handler(s):
            s.send(b"\x16\x03\x01 HTTP/1.1 400 Bad Request\r\n\xff\xfe\r\n")
            s.hold(10)
        tagged, _ = self.imap_login(handler)
        self.assertRegex(tagged, UNAVAILABLE)

    def test_garbage_greeting_pop3(self):
        def handler(s):
            s.send(b"HTTP/1.1 400 Bad Request\r\n+OK\r\n+OK\r\n")
            s.hold(10)
        r, _ = self.pop3_login(handler)
        self.assertRegex(r, SYS_TEMP)

    def test_forged_tagged_ok_with_the_greeting(self):
        # Tagged OKs in the greeting's segment, before postern sent anything:
        # none of them can be the answer to postern's login.
        tagged, _ = self.imap_login(fakes.imap_server(
            greeting=b"* OK [CAPABILITY IMAP4rev1 ID LITERAL+ SASL-IR AUTH=PLAIN] Fake ready.\r\n"
            + forged_ok_lines()))
        self.assert_not_forged(tagged)

    def test_forged_tagged_ok_after_capability(self):
        # A greeting without capabilities: postern asks for them; the answer
        # comes with forged tagged OKs pipelined behind it, before the login.
        def handler(s):
            s.send(b"* OK Fake ready.\r\n")
            while True:
                cmd = s.imap_command(10)
                if cmd is None:
                    return
                tag, name, _ = fakes.parse_imap_command(cmd)
                if name == b"CAPABILITY":
                    s.send(b"* CAPABILITY IMAP4rev1 ID LITERAL+ SASL-IR AUTH=PLAIN\r\n" + tag +
                           b" OK Done.\r\n" + forged_ok_lines())
                elif name == b"ID":
                    s.send(b"* ID NIL\r\n" + tag + b" OK Done.\r\n")
                else:
                    s.send(tag + b" NO [AUTHENTICATIONFAILED] Fake says no.\r\n")
        tagged, _ = self.imap_login(handler)
        self.assert_not_forged(tagged)

    def test_bye_during_login(self):
        def handler(s):
            s.send(b"* OK [CAPABILITY IMAP4rev1 LITERAL+] Fake ready.\r\n")
            if s.imap_command(10) is not None:
                s.send(b"* BYE Going away.\r\n")
                s.hold(10)
        tagged, took = self.imap_login(handler)
        self.assertRegex(tagged, UNAVAILABLE)
        self.assertLess(took, 1.5, "postern waited for its timeout after the BYE")

    def test_overlong_line_during_login(self):
        def handler(s):
            s.send(b"* OK [CAPABILITY IMAP4rev1 LITERAL+] Fake ready.\r\n")
            if s.imap_command(10) is not None:
                s.send(b"* OK " + b"x" * (1 << 20) + b"\r\n")
                s.hold(10)
        tagged, _ = self.imap_login(handler)
        self.assertRegex(tagged, UNAVAILABLE)

    def test_endless_continuations(self):
        # Every line postern sends is answered with "+": it must give up (at
        # the latest at its backend_login timeout), never log the client in.
        def handler(s):
            s.send(b"* OK [CAPABILITY IMAP4rev1] Fake ready.\r\n")
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                line = s.readline(0.05)
                if line is None and s.closed:
                    return
                if not s.send(b"+ more\r\n"):
                    return
        tagged, took = self.imap_login(handler)
        self.assertRegex(tagged, UNAVAILABLE)
        self.assertLessEqual(took, 5)


@proxy_only
class ClientVanishesTest(harness.BedTestCase):
    """Clients that vanish mid-literal or mid-handshake: one session end line
    each, postern's open fds back to where they were, still serving."""

    def setUp(self):
        super().setUp()
        pid = self.bed.postern.pid
        time.sleep(0.2)  # whatever the previous test closed is closed
        self.fds = fakes.open_fds(pid)
        self.since = len(self.bed.postern.log())

    def assert_cleaned_up(self, port):
        postern = self.bed.postern
        self.assertIsNotNone(fakes.wait_session_end(postern, port, 5, self.since),
                             "no session end line for client port %d" % port)
        time.sleep(0.3)
        ends = [f for _, f in fakes.session_ends(postern.log()[self.since:])
                if f.get("client", "").endswith(":%d" % port)]
        self.assertEqual(len(ends), 1, ends)
        self.assertTrue(harness.wait_for(lambda: fakes.open_fds(postern.pid) <= self.fds,
                                         timeout=5),
                        "open fds %d, %d before" % (fakes.open_fds(postern.pid), self.fds))
        self.assert_serving()

    def vanish_mid_literal(self, listener):
        c = self.connect(listener)
        port = c.sock.getsockname()[1]
        c.send(b"a LOGIN {20}\r\n")
        self.assertTrue(c.readline().startswith(b"+"))
        c.send(b"0123456789")
        time.sleep(0.1)
        c.close()
        self.assert_cleaned_up(port)

    def test_vanish_mid_literal_imaps(self):
        self.vanish_mid_literal("imaps")

    def test_vanish_mid_literal_plain(self):
        self.vanish_mid_literal("imap-plain")

    def test_half_a_client_hello(self):
        hello = fakes.client_hello_bytes()
        s = socket.create_connection(self.bed.addr("imaps"), timeout=5)
        port = s.getsockname()[1]
        s.sendall(hello[:len(hello) // 2])
        time.sleep(0.1)
        s.close()
        self.assert_cleaned_up(port)

    def test_client_hello_then_reset(self):
        s = socket.create_connection(self.bed.addr("pop3s"), timeout=5)
        port = s.getsockname()[1]
        s.sendall(fakes.client_hello_bytes())
        try:
            s.recv(100)  # the server's first flight: postern is mid-handshake
        except OSError:
            pass
        fakes.reset(s)
        self.assert_cleaned_up(port)


# --- SIGTERM under load ----------------------------------------------------------------

LOAD_USERS = ["alice", "bob", "carol"] + ["u%02d" % i for i in range(1, 8)]
MESSAGE = 256 * 1024
# A few clients fetch a bigger message: one that is still streaming from the
# backend when the grace period ends, so that the end of a response is not
# in postern's buffers already.
BIG = 8 * 1024 * 1024
BIG_USERS = ["u01", "u02", "u03"]


def first_difference(a, b):
    """Offset of the first byte where a and b differ (bisecting on prefixes)."""
    lo, hi = 0, min(len(a), len(b))
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def notice_in(partial):
    """Says so if the shutdown notice sits at the end of a cut response."""
    tail = bytes(partial[-300:])
    for notice in (b"* BYE", b"-ERR"):
        i = tail.rfind(notice)
        if i >= 0:
            return ", ending with %r" % tail[i:i + 60]
    return ""


class _Outcome:
    def __init__(self, name):
        self.name = name
        self.rounds = 0
        self.ended = None   # "bye" or "close" once the stream ended cleanly
        self.problem = None  # what went wrong, if anything
        self.ready = threading.Event()


@proxy_only
class ShutdownUnderLoadTest(harness.BedTestCase):
    """SIGTERM while 40 clients fetch a 256 KiB message in a loop over IMAPS
    and POP3S and a few sit idle: every stream ends after a complete
    response, with the shutdown notice or a clean close, never inside a
    literal or a RETR body; postern exits 0."""

    dovecot_kwargs = {"users": tuple(LOAD_USERS),
                      "extra_messages": {u: [MESSAGE] + ([BIG] if u in BIG_USERS else [])
                                         for u in LOAD_USERS}}
    postern_overrides = {"timeouts": {"shutdown_grace": "2s"}}

    IMAP_FETCHERS = 20
    POP3_FETCHERS = 15
    IDLE = 5

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        # (user, size) -> (sequence number, message with LF line ends)
        cls.want = {}
        for u in LOAD_USERS:
            for i, m in enumerate(cls.bed.dovecot.messages(u)):
                cls.want[u, len(m)] = (i + 1, m)

    def imap_client(self, out, user, size, fetch):
        c = harness.Conn(self.bed.addr("imaps"), tls=True, cafile=self.bed.cert, timeout=20)
        try:
            c.readline()
            _, tagged = c.imap("a", "LOGIN %s demo" % user)
            if not tagged.startswith(b"a OK"):
                out.problem = "login: %r" % tagged
                return
            c.imap("b", "EXAMINE INBOX")
            n, want = self.want[user, size]
            want = crlf(want)
            out.ready.set()
            while True:
                if fetch:
                    c.send("f%d FETCH %d BODY.PEEK[]\r\n" % (out.rounds, n))
                    tag = b"f%d" % out.rounds
                else:
                    tag = None  # idle: only the end is left to read
                while True:
                    try:
                        r = c.imap_response(timeout=20)
                    except harness.Closed as e:
                        if c.buf or "closed; pending b''" not in str(e):
                            out.problem = "truncated response (%s)%s" % (e, notice_in(c.buf))
                        else:
                            out.ended = "close"  # a clean close between responses
                        return
                    if r.startswith(b"* BYE"):
                        if not c.closed_within(5):
                            out.problem = "still open after %r" % r
                        else:
                            out.ended = "bye"
                        return
                    m = re.match(rb"\* \d+ FETCH \(BODY\[\] \{(\d+)\}\r\n", r)
                    if m:
                        body = r[m.end():m.end() + int(m.group(1))]
                        if body != want:
                            at = first_difference(body, want)
                            out.problem = ("literal differs at byte %d of %d: %r"
                                           % (at, len(want), body[at:at + 60]))
                            return
                    elif tag is not None and r.startswith(tag + b" "):
                        if not r.startswith(tag + b" OK"):
                            out.problem = "FETCH: %r" % r
                            return
                        out.rounds += 1
                        break
        except Exception as e:  # noqa: BLE001 (reported by the test, not lost in a thread)
            out.problem = "%s: %r" % (type(e).__name__, e)
        finally:
            out.ready.set()
            c.close()

    def pop3_client(self, out, user, size):
        c = harness.Conn(self.bed.addr("pop3s"), tls=True, cafile=self.bed.cert, timeout=20)
        try:
            c.readline()
            c.pop3("USER %s" % user)
            r = c.pop3("PASS demo")
            if not r.startswith(b"+OK"):
                out.problem = "login: %r" % r
                return
            n, want = self.want[user, size]
            want = dot_stuff(crlf(want))
            want = want if want.endswith(b"\r\n") else want + b"\r\n"
            out.ready.set()
            while True:
                c.send("RETR %d\r\n" % n)
                try:
                    status = c.readline(timeout=20)
                except harness.Closed as e:
                    if c.buf or "closed; pending b''" not in str(e):
                        out.problem = "truncated status line: %s" % e
                    else:
                        out.ended = "close"
                    return
                if status.startswith(b"-ERR"):
                    out.ended = "bye" if c.closed_within(5) else None
                    if out.ended is None:
                        out.problem = "still open after %r" % status
                    return
                if not status.startswith(b"+OK"):
                    out.problem = "RETR status: %r" % status
                    return
                try:
                    body = c.read_until(b"\r\n.\r\n", timeout=20)
                except harness.Closed as e:
                    out.problem = "truncated RETR body (%s)%s" % (e, notice_in(c.buf))
                    return
                if body[:-3] != want:
                    got = body[:-3]
                    at = first_difference(got, want)
                    out.problem = ("RETR body differs at byte %d of %d: %r"
                                   % (at, len(want), got[at:at + 60]))
                    return
                out.rounds += 1
        except Exception as e:  # noqa: BLE001 (reported by the test, not lost in a thread)
            out.problem = "%s: %r" % (type(e).__name__, e)
        finally:
            out.ready.set()
            c.close()

    def test_sigterm_under_load(self):
        outcomes, threads = [], []

        def start(name, target, *args):
            o = _Outcome(name)
            t = threading.Thread(target=target, args=(o,) + args, daemon=True)
            outcomes.append(o)
            threads.append(t)
            t.start()

        # At most 4 IMAP and 2 POP3 sessions per user: Dovecot allows 10 per
        # user and address (mail_max_userip_connections).
        for i in range(self.IMAP_FETCHERS):
            user, size = LOAD_USERS[i % len(LOAD_USERS)], MESSAGE
            if i >= self.IMAP_FETCHERS - 5:
                user, size = BIG_USERS[i % len(BIG_USERS)], BIG
            start("imap-fetch-%d-%s-%d" % (i, user, size), self.imap_client, user, size, True)
        for i in range(self.IDLE):
            user = LOAD_USERS[(i + 3) % len(LOAD_USERS)]
            start("imap-idle-%d-%s" % (i, user), self.imap_client, user, MESSAGE, False)
        for i in range(self.POP3_FETCHERS):
            user, size = LOAD_USERS[(i + 5) % len(LOAD_USERS)], MESSAGE
            if i >= self.POP3_FETCHERS - 4:
                user, size = BIG_USERS[i % len(BIG_USERS)], BIG
            start("pop3-retr-%d-%s-%d" % (i, user, size), self.pop3_client, user, size)
        for o in outcomes:
            o.ready.wait(30)
        early = ["%s: %s" % (o.name, o.problem) for o in outcomes if o.problem]
        if early:
            self.fail("clients failed before the signal:\n" + "\n".join(early[:10]))
        time.sleep(1.0)  # transfers under way everywhere

        postern = self.bed.postern
        signalled = time.monotonic()
        postern.send_signal(signal.SIGTERM)
        for t in threads:
            t.join(max(0.1, signalled + 30 - time.monotonic()))
        hung = [o.name for o, t in zip(outcomes, threads) if t.is_alive()]
        self.assertFalse(hung, "clients whose stream did not end")
        bad = ["%s: %s" % (o.name, o.problem) for o in outcomes if o.problem]
        if bad:
            self.fail("%d of %d streams ended badly:\n%s"
                      % (len(bad), len(outcomes), "\n".join(bad[:10])))
        self.assertTrue(all(o.ended for o in outcomes), [(o.name, o.ended) for o in outcomes])
        self.assertGreater(sum(o.rounds for o in outcomes), len(outcomes),
                           "too little was fetched for this to be a test under load")
        self.assertEqual(postern.wait(15), 0, postern.log()[-2000:])


if __name__ == "__main__":
    unittest.main()
