"""Hostile and broken peers: overlong lines, oversized literals, NUL bytes,
garbage instead of TLS, stalled clients, plaintext injected after STARTTLS,
a backend that is down or dies mid-transfer. After each, postern still serves
a normal login."""

import os
import re
import signal
import socket
import struct
import ssl
import time
import unittest

import harness
from harness import DIRECT, plain_ir, proxy_only


class BadInputTest(harness.BedTestCase):
    postern_overrides = {"limits": {"max_line": 8192, "max_prelogin_literal": "64k",
                                    "error_budget": 10}}

    def tearDown(self):
        # Whatever the test did, postern must still serve a normal login.
        try:
            self.assert_serving()
        finally:
            super().tearDown()

    def assert_pop3_serving(self):
        c = self.connect("pop3s")
        self.assertTrue(c.greeting.startswith(b"+OK"), c.greeting)
        self.assertTrue(c.pop3("USER bob").startswith(b"+OK"))
        self.assertTrue(c.pop3("PASS demo").startswith(b"+OK"))
        self.assertTrue(c.pop3("QUIT").startswith(b"+OK"))

    # --- overlong lines (limits.max_line) ---

    def test_overlong_line_imap(self):
        c = self.connect("imaps")
        c.send(b"a " + b"X" * 20000 + b"\r\n")
        r = c.readline()
        if r.startswith(b"* BYE"):
            self.assertTrue(c.closed_within(5), "BYE but the connection stays open")
        else:
            self.assertRegex(r, rb"^(a|\*) BAD ")
            _, tagged = c.imap("b", "NOOP")
            self.assertTrue(tagged.startswith(b"b OK"), tagged)
            _, tagged = c.imap("c", "LOGIN alice demo")
            self.assertTrue(tagged.startswith(b"c OK"), tagged)

    def test_overlong_line_without_end(self):
        # Bytes past the limit with no LF at all: must not be buffered forever.
        c = self.connect("imaps")
        try:
            for _ in range(64):
                c.send(b"Y" * 16384)
        except OSError:
            pass  # closed on us: fine
        try:
            r = c.readline(timeout=5)
        except harness.Closed:
            return
        self.assertTrue(r.startswith(b"* BYE") or re.match(rb"^(\*|a|Y+) BAD", r), r)

    def test_overlong_line_pop3(self):
        c = self.connect("pop3s")
        c.send(b"USER " + b"X" * 20000 + b"\r\n")
        r = c.readline()
        self.assertTrue(r.startswith(b"-ERR"), r)
        try:
            c.send(b"CAPA\r\n")
            r = c.readline(timeout=5)
        except (harness.Closed, OSError):
            return  # closed cleanly after the -ERR
        self.assertTrue(r.startswith(b"+OK"), r)
        c.pop3_multiline()
        self.assertTrue(c.pop3("USER alice").startswith(b"+OK"))
        self.assertTrue(c.pop3("PASS demo").startswith(b"+OK"))

    # --- literals before login (limits.max_prelogin_literal) ---

    def test_prelogin_literal_too_big(self):
        c = self.connect("imaps")
        c.send(b"a LOGIN {1000000}\r\n")
        r = c.readline()
        self.assertFalse(r.startswith(b"+"), "continuation for a 1 MB pre-login literal")
        if DIRECT:  # Dovecot: "* BYE Literal size too large"
            self.assertRegex(r, rb"^(a BAD|\* BYE)")
            return
        # RFC 9051 section 7.1: TOOBIG.
        self.assertTrue(r.startswith(b"a BAD [TOOBIG]"), r)
        try:
            _, tagged = c.imap("b", "NOOP", timeout=5)
        except (harness.Closed, OSError):
            return
        self.assertTrue(tagged.startswith(b"b OK"), tagged)

    def test_prelogin_nonsync_literal_too_big(self):
        # RFC 7888 section 4: reject and read past the literal, or BYE and close.
        size = 1000000
        c = self.connect("imaps")
        c.send(b"a LOGIN {%d+}\r\n" % size)
        r = c.readline()
        if r.startswith(b"* BYE"):
            self.assertTrue(c.closed_within(5))
            return
        self.assertRegex(r, rb"^a (BAD|NO)")
        # The literal's bytes look like commands; none of them may run.
        filler = b"x LOGOUT\r\n"
        body = filler * (size // len(filler)) + b"." * (size % len(filler))
        try:
            c.send(body + b"\r\nb NOOP\r\n")
        except OSError:
            self.assertTrue(c.closed_within(5))
            return
        others, tagged = c.imap_until_tagged("b", timeout=10)
        self.assertTrue(tagged.startswith(b"b OK"), tagged)
        self.assertFalse([o for o in others if o.startswith(b"x ") or o.startswith(b"* BYE")],
                         others[:5])

    def test_prelogin_literal_within_limit(self):
        c = self.connect("imaps")
        c.send(b"a LOGIN {5}\r\n")
        self.assertTrue(c.readline().startswith(b"+"))
        c.send(b"alice {4}\r\n")
        self.assertTrue(c.readline().startswith(b"+"))
        c.send(b"demo\r\n")
        _, tagged = c.imap_until_tagged("a")
        self.assertTrue(tagged.startswith(b"a OK"), tagged)

    # --- NUL bytes ---

    def test_nul_in_imap_command(self):
        c = self.connect("imaps")
        c.send(b"a LOGIN al\x00ice demo\r\n")
        r = c.readline()
        self.assertRegex(r, rb"^(a BAD|\* BAD|\* BYE)")
        if not DIRECT:  # Dovecot answers BAD and carries on
            self.assertTrue(c.closed_within(5), "still open after NUL")

    def test_nul_in_pop3_command(self):
        c = self.connect("pop3s")
        c.send(b"USER al\x00ice\r\n")
        if DIRECT:  # Dovecot takes the name as is and fails later
            c.readline()
            return
        r = c.readline()
        self.assertTrue(r.startswith(b"-ERR"), r)
        self.assertTrue(c.closed_within(5), "still open after NUL")

    # --- error budget (limits.error_budget) ---

    def test_error_budget_imap(self):
        c = self.connect("imaps")
        c.send(b"".join(b"x%d FROBNICATE\r\n" % i for i in range(30)))
        lines = c.read_to_eof(timeout=10).split(b"\r\n")
        bads = [l for l in lines if re.match(rb"^x\d+ BAD", l)]
        self.assertTrue(bads, lines[:5])
        self.assertTrue(any(l.startswith(b"* BYE") for l in lines), lines[-3:])
        if not DIRECT:
            self.assertLessEqual(len(bads), 11)

    def test_error_budget_pop3(self):
        c = self.connect("pop3s")
        c.send(b"FROBNICATE\r\n" * 30)
        lines = c.read_to_eof(timeout=10).split(b"\r\n")
        errs = [l for l in lines if l.startswith(b"-ERR")]
        self.assertTrue(errs)
        if not DIRECT:
            self.assertLessEqual(len(errs), 12)

    # --- garbage instead of a TLS handshake ---

    def garbage_on(self, listener):
        host, port = self.bed.addr(listener)
        s = socket.create_connection((host, port), timeout=10)
        try:
            s.sendall(b"GET / HTTP/1.0\r\nHost: example\r\n\r\n" + bytes(range(256)) * 8)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    chunk = s.recv(65536)
                except ConnectionResetError:
                    return
                if not chunk:
                    return
                self.assertNotIn(b"* OK", chunk)
                self.assertNotIn(b"+OK", chunk)
            self.fail("connection not closed after a bad TLS handshake")
        finally:
            s.close()

    def test_garbage_tls_handshake_imaps(self):
        self.garbage_on("imaps")

    def test_garbage_tls_handshake_pop3s(self):
        self.garbage_on("pop3s")
        self.assert_pop3_serving()

    def test_tls_client_closes_mid_handshake(self):
        host, port = self.bed.addr("imaps")
        for _ in range(5):
            s = socket.create_connection((host, port), timeout=10)
            s.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # a cut ClientHello
            s.close()

    # --- plaintext injected after STARTTLS (RFC 2595 / RFC 3501 section 6.2.1) ---

    def tls_after_injection(self, c):
        """Handshakes after a STARTTLS that had a command pipelined behind it.

        postern must drop the pipelined plaintext and complete the handshake.
        Dovecot instead feeds those bytes to TLS and fails the handshake, which
        is safe too: in direct mode that counts as a pass (returns False)."""
        try:
            c.start_tls()  # also fails if any plaintext followed the OK
            return True
        except (ssl.SSLError, OSError) as e:
            if DIRECT:
                return False
            raise AssertionError("TLS handshake after STARTTLS failed: %r" % e)

    def test_starttls_command_injection_imap(self):
        c = self.connect("imap")
        c.send(b"a STARTTLS\r\nb CAPABILITY\r\n")
        r = c.readline()
        self.assertTrue(r.startswith(b"a OK"), r)
        if not self.tls_after_injection(c):
            return
        c.send(b"c CAPABILITY\r\nd LOGOUT\r\n")
        lines = c.read_to_eof(timeout=10).split(b"\r\n")
        self.assertFalse([l for l in lines if l.startswith(b"b ")], lines)
        self.assertEqual(len([l for l in lines if l.startswith(b"* CAPABILITY")]), 1, lines)
        self.assertTrue([l for l in lines if l.startswith(b"c OK")], lines)
        self.assertTrue([l for l in lines if l.startswith(b"d OK")], lines)

    def test_stls_command_injection_pop3(self):
        c = self.connect("pop3")
        c.send(b"STLS\r\nCAPA\r\n")
        r = c.readline()
        self.assertTrue(r.startswith(b"+OK"), r)
        if not self.tls_after_injection(c):
            return
        c.send(b"CAPA\r\nQUIT\r\n")
        data = c.read_to_eof(timeout=10)
        lines = data.split(b"\r\n")
        # Exactly one CAPA answer (ours, over TLS), then QUIT's +OK.
        self.assertEqual(lines.count(b"."), 1, lines)
        self.assertEqual(len([l for l in lines if l.startswith(b"+OK")]), 2, lines)

    def test_starttls_with_injected_login(self):
        # The injected command is a LOGIN: it must not log in.
        c = self.connect("imap")
        c.send(b"a STARTTLS\r\nb LOGIN alice demo\r\n")
        self.assertTrue(c.readline().startswith(b"a OK"))
        if not self.tls_after_injection(c):
            return
        untagged, tagged = c.imap("c", "EXAMINE INBOX")
        self.assertTrue(tagged.startswith(b"c BAD") or tagged.startswith(b"c NO"), tagged)
        self.assertFalse([u for u in untagged if u.startswith(b"b ")], untagged)

    def test_starttls_twice(self):
        c = self.connect("imap")
        _, tagged = c.imap("a", "STARTTLS")
        self.assertTrue(tagged.startswith(b"a OK"))
        c.start_tls()
        _, tagged = c.imap("b", "STARTTLS")
        self.assertTrue(tagged.startswith(b"b BAD") or tagged.startswith(b"b NO"), tagged)


@proxy_only
class LoginTimeoutTest(harness.BedTestCase):
    postern_overrides = {"timeouts": {"login": "2s"}}

    def test_stalled_imap_client(self):
        start = time.monotonic()
        c = self.connect("imaps")
        r = c.readline(timeout=10)
        elapsed = time.monotonic() - start
        self.assertEqual(r, b"* BYE Disconnected for inactivity.\r\n")
        self.assertGreaterEqual(elapsed, 1.5)
        self.assertLess(elapsed, 6)
        self.assertTrue(c.closed_within(5))

    def test_stalled_imap_client_after_a_command(self):
        c = self.connect("imap")
        _, tagged = c.imap("a", "CAPABILITY")
        self.assertTrue(tagged.startswith(b"a OK"))
        start = time.monotonic()
        r = c.readline(timeout=10)
        self.assertEqual(r, b"* BYE Disconnected for inactivity.\r\n")
        self.assertLess(time.monotonic() - start, 6)
        self.assertTrue(c.closed_within(5))

    def test_stalled_pop3_client(self):
        start = time.monotonic()
        c = self.connect("pop3s")
        r = c.readline(timeout=10)
        elapsed = time.monotonic() - start
        self.assertEqual(r, b"-ERR Disconnected for inactivity.\r\n")
        self.assertGreaterEqual(elapsed, 1.5)
        self.assertLess(elapsed, 6)
        self.assertTrue(c.closed_within(5))

    def test_stalled_tls_handshake(self):
        host, port = self.bed.addr("imaps")
        s = socket.create_connection((host, port), timeout=10)
        start = time.monotonic()
        try:
            self.assertEqual(s.recv(100), b"")
        except ConnectionResetError:
            pass
        finally:
            s.close()
        self.assertLess(time.monotonic() - start, 6)

    def test_active_session_outlives_login_timeout(self):
        c = self.connect("imaps")
        _, tagged = c.imap("a", "LOGIN alice demo")
        self.assertTrue(tagged.startswith(b"a OK"))
        time.sleep(3)
        _, tagged = c.imap("b", "NOOP")
        self.assertTrue(tagged.startswith(b"b OK"), tagged)


@proxy_only
class BackendDownTest(harness.BedTestCase):
    postern_overrides = {"timeouts": {"backend_connect": "2s"}}

    def test_backend_down_then_back(self):
        self.bed.dovecot.stop()
        c = self.connect("imaps")
        _, tagged = c.imap("a", "LOGIN alice demo", timeout=20)
        self.assertTrue(tagged.startswith(b"a NO [UNAVAILABLE]"), tagged)
        _, tagged = c.imap("b", "AUTHENTICATE PLAIN " + plain_ir("bob", "demo"), timeout=20)
        self.assertTrue(tagged.startswith(b"b NO [UNAVAILABLE]"), tagged)

        p = self.connect("pop3s")
        self.assertTrue(p.pop3("USER alice").startswith(b"+OK"))
        r = p.pop3("PASS demo", timeout=20)
        self.assertTrue(r.startswith(b"-ERR [SYS/TEMP]"), r)
        p2 = self.connect("pop3s")
        r = p2.pop3("AUTH PLAIN " + plain_ir("alice", "demo"), timeout=20)
        self.assertTrue(r.startswith(b"-ERR [SYS/TEMP]"), r)

        self.bed.dovecot.start()

        def login_ok():
            c = self.connect("imaps")
            _, tagged = c.imap("a", "LOGIN alice demo", timeout=20)
            c.close()
            return tagged.startswith(b"a OK")
        self.assertTrue(harness.wait_for(login_ok, timeout=30, interval=0.5),
                        "no login after the backend came back")


class BackendDiesTest(harness.BedTestCase):
    SIZE = 32 * 1024 * 1024
    dovecot_kwargs = {"extra_messages": {"bob": [SIZE]}}

    def test_backend_killed_mid_fetch(self):
        self.backend_killed_mid_fetch("imaps")

    def test_backend_killed_mid_fetch_plain(self):
        # Plaintext on both sides: postern relays with splice(2).
        self.backend_killed_mid_fetch("imap-plain")

    def test_client_resets_mid_fetch_plain(self):
        """The client resets while a spliced transfer toward it is under way:
        the session ends (a write or read error), nothing else is hurt."""
        log_start = len(self.bed.postern.log())
        c = self.connect("imap-plain", rcvbuf=65536)
        harness.start_fetch_last(self, c, "bob")
        c.read_exact(65536, timeout=30)
        time.sleep(0.3)  # postern is now blocked on the client, bytes in its pipe
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.sock.close()
        deadline = time.monotonic() + 10
        ends = []
        while time.monotonic() < deadline and not ends:
            ends = [l for l in self.bed.postern.log()[log_start:].splitlines()
                    if "session end" in l and "user=bob" in l and "listener=imap-plain" in l]
            time.sleep(0.1)
        self.assertTrue(ends, self.bed.postern.log()[-2000:])
        self.assertRegex(ends[-1], r'end="client: (write error|read error|peer closed)')
        self.assert_serving("alice")

    def backend_killed_mid_fetch(self, listener):
        c = self.connect(listener, rcvbuf=65536)
        _, tagged = c.imap("a", "LOGIN bob demo")
        self.assertTrue(tagged.startswith(b"a OK"), tagged)
        untagged, _ = c.imap("b", "EXAMINE INBOX")
        n = int(re.search(rb"\* (\d+) EXISTS", b"".join(untagged)).group(1))
        c.send("c FETCH %d BODY[]\r\n" % n)
        head = c.readline(timeout=30)
        self.assertRegex(head, rb"BODY\[\] \{\d+\}\r\n$")
        size = int(re.search(rb"\{(\d+)\}", head).group(1))
        c.read_exact(65536, timeout=30)  # the transfer is under way; stop reading

        procs = self.bed.dovecot.processes("imap", "bob")
        self.assertEqual(len(procs), 1, procs)
        os.kill(procs[0][0], signal.SIGKILL)

        # Drain: the connection must end (not hang) and the FETCH not complete.
        got = 65536 + len(c.buf)
        tail = bytes(c.buf[-64:])
        c.buf.clear()
        deadline = time.monotonic() + 20
        closed = False
        while time.monotonic() < deadline:
            c.sock.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                chunk = c.sock.recv(1 << 20)
            except (ConnectionResetError, ssl.SSLError):
                chunk = b""
            except socket.timeout:
                break
            if not chunk:
                closed = True
                break
            got += len(chunk)
            tail = (tail + chunk)[-64:]
        self.assertTrue(closed, "client connection still open after the backend died")
        self.assertLess(got, size, "the whole message arrived: the kill came too late")
        self.assertNotIn(b"c OK", tail)
        self.assert_serving("alice")


if __name__ == "__main__":
    unittest.main()
