"""postern's life: graceful shutdown on SIGTERM, --check-config, and what it
logs about sessions (never a password). postern-only: skipped in direct mode."""

import os
import re
import signal
import socket
import subprocess
import time
import unittest

import harness
import testbed
from harness import plain_ir, proxy_only

PASSWORD = "Tr0ub4dor-9xq"  # distinctive, so it can be searched for in the log
# Seconds postern may take to exit after its grace period has run out.
EXIT_SLACK = 2.0


def session_ends(log):
    """key=value fields of every "session end" line."""
    out = []
    for line in log.splitlines():
        if "session end" in line:
            out.append(dict(re.findall(r"(\w+)=(\S+)", line)))
    return out


@proxy_only
class ShutdownTest(harness.BedTestCase):
    postern_overrides = {"timeouts": {"shutdown_grace": "1s"}}

    def setUp(self):
        if not self.bed.postern.running():
            self.bed.start_postern()

    def refused(self, listener):
        try:
            s = socket.create_connection(self.bed.addr(listener), timeout=1)
        except (ConnectionRefusedError, ConnectionResetError):
            # Reset: the connect raced the listener's close and was dropped
            # from its accept queue; not accepted either way.
            return True
        s.close()
        return False

    def test_sigterm_with_open_sessions(self):
        imap = self.connect("imaps")
        _, tagged = imap.imap("a", "LOGIN alice demo")
        self.assertTrue(tagged.startswith(b"a OK"), tagged)
        _, tagged = imap.imap("b", "SELECT INBOX")
        self.assertTrue(tagged.startswith(b"b OK"), tagged)
        pop = self.connect("pop3s")
        self.assertTrue(pop.pop3("USER bob").startswith(b"+OK"))
        self.assertTrue(pop.pop3("PASS demo").startswith(b"+OK"))
        self.assertTrue(pop.pop3("STAT").startswith(b"+OK"))

        postern = self.bed.postern
        start = time.monotonic()
        postern.send_signal(signal.SIGTERM)
        # It stops accepting at once...
        self.assertTrue(harness.wait_for(lambda: self.refused("imaps"), timeout=0.7),
                        "still accepting after SIGTERM")
        self.assertTrue(self.refused("pop3s"))
        # ...while open sessions keep working during the grace period.
        _, tagged = imap.imap("c", "NOOP")
        self.assertTrue(tagged.startswith(b"c OK"), tagged)

        # After the grace period (1s) they are told and closed.
        line = imap.readline(timeout=10)
        self.assertEqual(line, b"* BYE Server shutting down.\r\n")
        self.assertGreaterEqual(time.monotonic() - start, 0.8)
        self.assertTrue(imap.closed_within(5))
        line = pop.readline(timeout=10)
        self.assertEqual(line, b"-ERR Server shutting down.\r\n")
        self.assertTrue(pop.closed_within(5))

        code = postern.wait(10)
        self.assertEqual(code, 0, postern.log()[-2000:])
        # Once its sessions are closed there is nothing left to wait for.
        self.assertLess(time.monotonic() - start, 1 + EXIT_SLACK)

    def test_sigterm_before_login(self):
        c = self.connect("imap")
        p = self.connect("pop3")
        start = time.monotonic()
        self.bed.postern.send_signal(signal.SIGTERM)
        self.assertEqual(c.readline(timeout=10), b"* BYE Server shutting down.\r\n")
        self.assertTrue(c.closed_within(5))
        self.assertEqual(p.readline(timeout=10), b"-ERR Server shutting down.\r\n")
        self.assertTrue(p.closed_within(5))
        self.assertEqual(self.bed.postern.wait(10), 0)
        self.assertLess(time.monotonic() - start, 1 + EXIT_SLACK)

    def test_sigterm_idle_server_exits_promptly(self):
        start = time.monotonic()
        self.bed.postern.send_signal(signal.SIGTERM)
        self.assertEqual(self.bed.postern.wait(10), 0)
        self.assertLess(time.monotonic() - start, 3)

    def test_session_ending_during_grace(self):
        # A session that logs out by itself during the grace period is not
        # held up; postern exits once the grace period is over (or earlier).
        c = self.connect("imaps")
        _, tagged = c.imap("a", "LOGIN carol demo")
        self.assertTrue(tagged.startswith(b"a OK"))
        start = time.monotonic()
        self.bed.postern.send_signal(signal.SIGTERM)
        _, tagged = c.imap("b", "LOGOUT")
        self.assertTrue(tagged.startswith(b"b OK"), tagged)
        self.assertTrue(c.closed_within(5))
        self.assertEqual(self.bed.postern.wait(10), 0)
        self.assertLess(time.monotonic() - start, 1 + EXIT_SLACK)

    def test_sigint_stops_it(self):
        self.bed.postern.send_signal(signal.SIGINT)
        self.assertIsNotNone(self.bed.postern.wait(10), "SIGINT did not stop postern")


@proxy_only
class CheckConfigTest(harness.BedTestCase):

    def write(self, name, text):
        path = os.path.join(self.bed.tmp, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_good_config(self):
        path = self.write("good.yaml", harness.testbed.to_yaml(self.bed.config()))
        r = harness.testbed.check_config(harness.postern_binary(), path)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("config ok", r.stdout + r.stderr)

    def test_check_config_binds_nothing(self):
        # A port we hold ourselves: --check-config must not try to bind it.
        holder = socket.socket()
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        try:
            cfg = self.bed.config()
            cfg["listeners"][0]["address"] = "127.0.0.1:%d" % port
            path = self.write("held.yaml", harness.testbed.to_yaml(cfg))
            r = harness.testbed.check_config(harness.postern_binary(), path)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertNotIn("listening", r.stdout + r.stderr)
        finally:
            holder.close()

    def bad_case(self, mutate, key, bad_value):
        """Applies mutate to a good config; returns (path, line of bad_value)."""
        cfg = self.bed.config()
        mutate(cfg)
        text = harness.testbed.to_yaml(cfg)
        lines = [i + 1 for i, l in enumerate(text.splitlines()) if bad_value in l]
        self.assertEqual(len(lines), 1, "test bug: %r not unique in\n%s" % (bad_value, text))
        path = self.write(key.replace("[", "_").replace("]", "_") + ".yaml", text)
        return path, lines[0]

    CASES = [
        ("listeners[1].tls", lambda c: c["listeners"][1].update(tls="sometimes"), "sometimes"),
        ("limits.max_line", lambda c: c["limits"].update(max_line="lots"), "lots"),
        ("limits.max_lines", lambda c: c["limits"].update(max_lines=9999), "max_lines"),
        ("routing.default_backend", lambda c: c["routing"].update(default_backend="nowhere"),
         "nowhere"),
        ("backends[0].imap_port", lambda c: c["backends"][0].update(imap_port=70000), "70000"),
        ("timeouts.login", lambda c: c["timeouts"].update(login="soon"), "soon"),
        ("listeners[2].protocol", lambda c: c["listeners"][2].update(protocol="smtp"), "smtp"),
    ]

    def test_bad_configs_name_key_and_line(self):
        for key, mutate, bad in self.CASES:
            with self.subTest(key=key):
                path, line = self.bad_case(mutate, key, bad)
                r = harness.testbed.check_config(harness.postern_binary(), path)
                self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
                self.assertNotIn("config ok", r.stdout)
                self.assertRegex(r.stderr, re.escape("%s:%d: %s" % (path, line, key)) +
                                 r"\b.*: ")

    def test_bad_config_starts_nothing(self):
        port = harness.testbed.free_port()
        cfg = self.bed.config()
        cfg["listeners"][0]["address"] = "127.0.0.1:%d" % port
        cfg["listeners"][3]["tls"] = "sometimes"
        path = self.write("bad-run.yaml", harness.testbed.to_yaml(cfg))
        proc = subprocess.Popen([harness.postern_binary(), "--config", path],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            out, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            self.fail("postern kept running with a bad config")
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn(b"listeners[3].tls", err)
        self.assertNotIn(b"listening", out + err)
        with socket.socket() as s:
            self.assertNotEqual(s.connect_ex(("127.0.0.1", port)), 0)

    def test_missing_file(self):
        r = harness.testbed.check_config(harness.postern_binary(),
                                         os.path.join(self.bed.tmp, "nope.yaml"))
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("nope.yaml", r.stderr)


@proxy_only
class SessionLogTest(harness.BedTestCase):
    dovecot_kwargs = {"password": PASSWORD}

    def tearDown(self):
        try:
            log = self.bed.postern.log()
            self.assertNotIn(PASSWORD, log)
            self.assertNotIn(plain_ir("alice", PASSWORD), log)
            self.assertNotIn(harness.b64(PASSWORD), log)
        finally:
            super().tearDown()

    def wait_session_end(self, **want):
        def find():
            for fields in session_ends(self.bed.postern.log()):
                if all(fields.get(k) == v for k, v in want.items()):
                    return fields
            return None
        fields = harness.wait_for(find, timeout=5)
        self.assertIsNotNone(fields, "no session end with %r in:\n%s"
                             % (want, self.bed.postern.log()[-3000:]))
        return fields

    def test_imap_session_line(self):
        msgs = self.messages("alice")
        c = self.connect("imaps")
        _, tagged = c.imap("a", "LOGIN alice %s" % PASSWORD)
        self.assertTrue(tagged.startswith(b"a OK"), tagged)
        c.imap("b", "EXAMINE INBOX")
        c.imap("c", "FETCH 1 BODY.PEEK[]")
        c.imap("d", "LOGOUT")
        self.assertTrue(c.closed_within(5))
        f = self.wait_session_end(user="alice", protocol="imap", listener="imaps")
        self.assertRegex(f.get("client", ""), r"^127\.0\.0\.1:\d+$")
        self.assertIn(f.get("tls"), ("TLSv1.3", "TLSv1.2"))
        self.assertEqual(f.get("backend"), "dovecot")
        self.assertGreater(int(f["in"]), 0)
        self.assertGreater(int(f["out"]), len(msgs[0]))
        self.assertGreaterEqual(int(f["duration_ms"]), 0)
        self.assertTrue(f.get("end"))

    def test_pop3_stls_session_line(self):
        c = self.connect("pop3")
        self.assertTrue(c.pop3("STLS").startswith(b"+OK"))
        c.start_tls()
        self.assertTrue(c.pop3("AUTH PLAIN " + plain_ir("bob", PASSWORD)).startswith(b"+OK"))
        self.assertTrue(c.pop3("RETR 1").startswith(b"+OK"))
        c.pop3_multiline()
        self.assertTrue(c.pop3("QUIT").startswith(b"+OK"))
        self.assertTrue(c.closed_within(5))
        f = self.wait_session_end(user="bob", protocol="pop3", listener="pop3")
        self.assertIn(f.get("tls"), ("TLSv1.3", "TLSv1.2"))
        self.assertGreater(int(f["out"]), len(self.messages("bob")[0]))

    def test_plaintext_session_line(self):
        c = self.connect("imap-plain")
        _, tagged = c.imap("a", "LOGIN carol %s" % PASSWORD)
        self.assertTrue(tagged.startswith(b"a OK"), tagged)
        c.imap("z", "LOGOUT")
        f = self.wait_session_end(user="carol", listener="imap-plain")
        self.assertEqual(f.get("tls"), "none")

    def test_auth_failure_logged_without_password(self):
        wrong = "Wr0ng-Zebra-77"
        c = self.connect("imaps")
        _, tagged = c.imap("a", "LOGIN carol %s" % wrong)
        self.assertTrue(tagged.startswith(b"a NO"), tagged)
        _, tagged = c.imap("b", "AUTHENTICATE PLAIN " + plain_ir("carol", wrong))
        self.assertTrue(tagged.startswith(b"b NO"), tagged)
        c.imap("z", "LOGOUT")

        def failed_lines():
            return [l for l in self.bed.postern.log().splitlines()
                    if "auth failed" in l and "carol" in l]
        self.assertTrue(harness.wait_for(failed_lines, timeout=5), self.bed.postern.log()[-2000:])
        log = self.bed.postern.log()
        self.assertNotIn(wrong, log)
        self.assertNotIn(plain_ir("carol", wrong), log)


if __name__ == "__main__":
    unittest.main()


def open_fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


@proxy_only
class FdExhaustionTest(harness.BedTestCase):
    """Out of file descriptors: waiting connections are dropped, the loop does
    not spin on the still-readable listener, and service resumes when fds are
    free again."""

    def test_accept_with_no_fds_left(self):
        import resource

        pid = self.bed.postern.pid
        # Room for a handful of sessions above what is open now.
        limit = open_fds(pid) + 6
        hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)[1]
        old = resource.prlimit(pid, resource.RLIMIT_NOFILE, (limit, hard))
        try:
            held = []
            for _ in range(20):
                s = socket.create_connection(self.bed.addr("imap"), timeout=5)
                held.append(s)
            time.sleep(0.5)
            greeted = dropped = 0
            for s in held:
                s.settimeout(2)
                try:
                    data = s.recv(200)
                except (ConnectionResetError, socket.timeout):
                    data = b""
                if data.startswith(b"* OK"):
                    greeted += 1
                else:
                    dropped += 1
            self.assertGreater(greeted, 0)
            self.assertGreater(dropped, 0, "the fd limit was never reached")
            # Nothing left waiting: no busy loop on the listener either way.
            for _ in range(5):
                held.append(socket.create_connection(self.bed.addr("imap"), timeout=5))
            before = testbed.cpu_seconds([pid])
            time.sleep(1.5)
            spent = testbed.cpu_seconds([pid]) - before
            self.assertLess(spent, 0.3, "postern burned %.2f s of CPU in 1.5 s" % spent)
            self.assertIn("out of file descriptors", self.bed.postern.log())
            for s in held:
                s.close()
        finally:
            resource.prlimit(pid, resource.RLIMIT_NOFILE, old)
        time.sleep(0.5)
        self.assert_serving()
