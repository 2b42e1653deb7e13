"""Issue 9, failed-login limits (abuse:) through the real binary: a real
Dovecot, a real redis-server, two postern instances sharing it (A with one
worker, B with two), imaplib and poplib over implicit TLS from chosen
127.0.0.x source addresses.

Policy (small, so that the file takes about a minute): the n-th failure in
a row is answered after 0.3 s, 0.6 s, then 1.2 s (first_delay 300ms, factor
2, max_delay 1200ms); 5 failures block the client IP, 4 the user, for 5 s;
counts are forgotten 60 s after their last failure (longer than the file).

Who refuses a wrong password: on the `imaps` and `pop3s` listeners a
passwd-file directory (PLAIN, microseconds), so that the time from
LOGIN/PASS to the answer is postern's delay plus a few milliseconds; right
passwords go on to Dovecot, which logs the user in with them. Dovecot
itself answers a wrong password 0 to 0.5 s late even with
auth_failure_delay = 0 (its auth process sends failures from a 500 ms
timer), too coarse to tell 0.3 s from 0.6 s; its refusals, on the
passthrough listener `imaps-pt`, are shown to count the same way with that
margin.

- per IP: failures for five different users from one address are answered
  later and later, then the address is blocked: the right password of a
  sixth user is refused over IMAP and POP3 with the answer of a wrong one
  (`NO [AUTHENTICATIONFAILED]` / `-ERR [AUTH]`, routing/README.md) without
  a backend login, while that user logs in from another address; after the
  5 s the address logs in again and its count starts from zero;
- per user: failures of one user from four addresses add up to the user's
  block, which a fifth address cannot get past; other users from that
  address log in;
- across instances: failures alternating between A and B count as one
  sequence (the delays keep growing), the block made on A refuses on B, the
  counts are in Redis (`<prefix>abuse:ip:<address>`, TTL the block's), and
  the block ends on both instances when it ends in Redis;
- refusals by Dovecot (passthrough) are delayed and counted toward a block
  as well;
- Redis stopped: right passwords log in on both instances at once, each
  counts failures on its own (B's first failure is answered after the first
  delay whatever A counted), each says so in its log; Redis back (empty): the
  clients reconnect, the log says so, and failures count across instances
  again;
- /metrics on the admin endpoint: postern_abuse_total{action="delayed" |
  "blocked"} and postern_logins_total{result="blocked"} move by exactly the
  delayed failures and the refused logins of each instance, and
  postern_backend_logins_total does not move for a refused one;
  postern_redis_fallbacks_total{use="abuse"} moves with every login while
  Redis is stopped, and at no other time.
"""

import imaplib
import os
import poplib
import re
import shutil
import socket
import time
import unittest

import harness
import opshelp
import routehelp
import testbed
from opshelp import metric_sum

HOST = harness.HOST
PASSWORD = routehelp.PASSWORD
USERS = tuple("u%02d" % i for i in range(40))
PREFIX = "ab:"

FIRST_DELAY = 0.3
MAX_DELAY = 1.2
BLOCK_AFTER_IP = 5
BLOCK_AFTER_USER = 4
BLOCK_FOR = 5.0
# What a failure's answer may take beyond its delay (the directory, a loaded
# machine); less than the smallest step between two delays (0.3 s), so that
# a delay one step off is never taken for the right one.
SLACK = 0.25
# Dovecot's own lateness in answering a wrong password (the 500 ms timer of
# its auth process; see above).
DOVECOT_TICK = 0.5
ABUSE = {
    "enabled": True, "first_delay": "300ms", "factor": 2, "max_delay": "1200ms",
    "block_after_ip": BLOCK_AFTER_IP, "block_after_user": BLOCK_AFTER_USER,
    "window": "60s", "block_for": "5s",
}
IMAP_REFUSED = b"[AUTHENTICATIONFAILED] Authentication failed."
POP3_REFUSED = b"-ERR [AUTH] Authentication failed."


def delay_for(n):
    """The delay before the answer to the n-th failure (AbusePolicy::DelayFor)."""
    return min(FIRST_DELAY * 2 ** (n - 1), MAX_DELAY)


# --- clients from a chosen source address ------------------------------------------

class SourceIMAP4_SSL(imaplib.IMAP4_SSL):
    """imaplib over implicit TLS, connecting from source_ip."""

    def __init__(self, addr, source_ip, cafile, timeout=15):
        self.source_ip = source_ip
        super().__init__(addr[0], addr[1], ssl_context=harness.client_context(cafile),
                         timeout=timeout)

    def _create_socket(self, timeout):
        sock = socket.create_connection((self.host, self.port), timeout,
                                        source_address=(self.source_ip, 0))
        return self.ssl_context.wrap_socket(sock, server_hostname=self.host)


class SourcePOP3_SSL(poplib.POP3_SSL):
    """poplib over implicit TLS, connecting from source_ip."""

    def __init__(self, addr, source_ip, cafile, timeout=15):
        self.source_ip = source_ip
        super().__init__(addr[0], addr[1], context=harness.client_context(cafile),
                         timeout=timeout)

    def _create_socket(self, timeout):
        sock = socket.create_connection((self.host, self.port), timeout,
                                        source_address=(self.source_ip, 0))
        return self.context.wrap_socket(sock, server_hostname=self.host)


class Attempt:
    """One login: whether it succeeded, the server's answer (imaplib: the
    text of the tagged NO, which it raises; poplib: the -ERR line) and the
    seconds from sending LOGIN/PASS to the answer."""

    def __init__(self, ok, answer, seconds):
        self.ok = ok
        self.answer = answer
        self.seconds = seconds

    def __repr__(self):
        return "<%s %r after %.3f s>" % ("ok" if self.ok else "refused", self.answer,
                                          self.seconds)


def imap_attempt(postern, listener, user, password, source_ip, cafile):
    m = SourceIMAP4_SSL(postern.address(listener), source_ip, cafile)
    try:
        t0 = time.monotonic()
        try:
            typ, data = m.login(user, password)
            a = Attempt(typ == "OK", data[-1], time.monotonic() - t0)
        except imaplib.IMAP4.error as e:
            a = Attempt(False, e.args[0], time.monotonic() - t0)
        if a.ok:
            m.logout()
        return a
    finally:
        try:
            m.shutdown()
        except OSError:
            pass


def pop3_attempt(postern, listener, user, password, source_ip, cafile):
    p = SourcePOP3_SSL(postern.address(listener), source_ip, cafile)
    try:
        p.user(user)
        t0 = time.monotonic()
        try:
            a = Attempt(True, p.pass_(password), time.monotonic() - t0)
        except poplib.error_proto as e:
            a = Attempt(False, e.args[0], time.monotonic() - t0)
        if a.ok:
            p.quit()
        return a
    finally:
        p.close()


class AbuseTest(routehelp.FleetTestCase):

    @classmethod
    def setUpClass(cls):
        if shutil.which("redis-server") is None:
            raise unittest.SkipTest("redis-server is not installed (deploy/install-deps.sh)")
        super().setUpClass()
        cls.redis = testbed.RedisServer(os.path.join(cls.tmp, "redis"))
        cls.addClassCleanup(cls.redis.stop)
        d = cls.start_fleet({"store": {}}, users=USERS)["store"]
        token_file, token = opshelp.write_token(cls.tmp)
        passwd = os.path.join(cls.tmp, "users.passwd")
        with open(passwd, "w") as f:
            f.writelines("%s:{PLAIN}%s::::::\n" % (u, PASSWORD) for u in USERS)
        cfg = {
            "hostname": "postern.test",
            "listeners": [
                {"name": "imaps", "protocol": "imap", "address": "%s:0" % HOST,
                 "tls": "implicit"},
                {"name": "pop3s", "protocol": "pop3", "address": "%s:0" % HOST,
                 "tls": "implicit"},
                {"name": "imaps-pt", "protocol": "imap", "address": "%s:0" % HOST,
                 "tls": "implicit", "directory": "passthrough"},
            ],
            "tls": {"certificate": cls.cert, "key": cls.key},
            "backends": [routehelp.backend_entry("store", d)],
            "routing": {"default_backend": "store"},
            "directories": [{"name": "users", "type": "passwd-file", "path": passwd}],
            "directory": "users",
            "abuse": ABUSE,
            "redis": {"address": cls.redis.address, "prefix": PREFIX, "timeout": "200ms"},
            "admin": {"address": "%s:0" % HOST, "token_file": token_file},
            "limits": {"max_connections_per_ip": 0},
            # log.format left at its default: JSON lines.
        }
        cls.workers = {"A": 1, "B": 2}
        cls.admins = {}
        for name, workers in cls.workers.items():
            p = cls.start_postern(name, harness.deep_merge(cfg, {"workers": workers}))
            cls.admins[name] = opshelp.Admin(p.address("admin"), token)

    # --- helpers ---

    def attempt(self, p, user, password, source_ip, proto="imap", listener=None):
        """A login on instance p's listener (default: imaps or pop3s)."""
        fn = imap_attempt if proto == "imap" else pop3_attempt
        return fn(self.posterns[p], listener or proto + "s", user, password, source_ip,
                  self.cert)

    def wrong(self, p, user, source_ip, n, proto="imap", listener=None, late=0.0):
        """A wrong password for user from source_ip on instance p, which must
        be the n-th failure in a row: refused, answered after delay_for(n)
        (and at most `late` more than that, plus SLACK)."""
        a = self.attempt(p, user, "wrong-" + PASSWORD, source_ip, proto, listener)
        want = delay_for(n)
        what = "%s %s from %s, failure %d (delay %.1f s): %r" % (p, user, source_ip, n, want, a)
        self.assertFalse(a.ok, what)
        self.assertEqual(a.answer, IMAP_REFUSED if proto == "imap" else POP3_REFUSED, what)
        self.assertGreaterEqual(a.seconds, want - 0.01, "answered too early: " + what)
        self.assertLess(a.seconds, want + late + SLACK, "answered too late: " + what)
        return a

    def blocked(self, p, user, source_ip, failed_at, proto="imap", listener=None):
        """The right password for user from source_ip on p, while the block
        made by the failure at failed_at (time.monotonic()) lasts: refused,
        as a wrong password is (the block is never told apart)."""
        self.assertLess(time.monotonic() - failed_at, BLOCK_FOR - 0.3,
                        "the test is too slow: the block is about to end")
        a = self.attempt(p, user, PASSWORD, source_ip, proto, listener)
        what = "%s %s from %s, right password: %r" % (p, user, source_ip, a)
        self.assertFalse(a.ok, "not blocked: " + what)
        self.assertEqual(a.answer, IMAP_REFUSED if proto == "imap" else POP3_REFUSED, what)
        return a

    def logs_in(self, p, user, source_ip, proto="imap", listener=None):
        a = self.attempt(p, user, PASSWORD, source_ip, proto, listener)
        self.assertTrue(a.ok, "%s %s from %s, right password: %r" % (p, user, source_ip, a))
        return a

    def counters(self, p):
        """This instance's abuse and login counters (summed over workers)."""
        text = self.admins[p].metrics()

        def get(name, **labels):
            return metric_sum(text, name, **labels) or 0.0
        return {
            "delayed": get("postern_abuse_total", action="delayed"),
            "blocked": get("postern_abuse_total", action="blocked"),
            "logins_blocked": get("postern_logins_total", result="blocked"),
            "logins_auth_failed": get("postern_logins_total", result="auth_failed"),
            "backend_logins": get("postern_backend_logins_total", backend="store"),
            "redis_fallbacks": get("postern_redis_fallbacks_total", use="abuse"),
        }

    def assert_moved(self, p, before, **want):
        """The counters of p moved from `before` by exactly `want` (others: 0)."""
        after = self.counters(p)
        moved = {k: after[k] - before[k] for k in after}
        expected = {k: float(want.get(k, 0)) for k in after}
        self.assertEqual(moved, expected, "%s's counters moved by %r" % (p, moved))

    def mark(self, p):
        return len(self.posterns[p].log())

    def log_since(self, p, mark):
        return self.posterns[p].log()[mark:]

    def messages(self, p, mark, pattern):
        """The `msg` of p's JSON log lines after mark that match pattern."""
        rx = re.compile(pattern)
        text = self.log_since(p, mark)
        return [e["msg"] for e in opshelp.json_lines(text[:text.rfind("\n") + 1])
                if "msg" in e and rx.search(e["msg"])]

    def assert_message(self, p, mark, pattern, timeout=5.0):
        found = harness.wait_for(lambda: self.messages(p, mark, pattern), timeout=timeout)
        self.assertTrue(found, "no log line matching %r on %s:\n%s"
                        % (pattern, p, self.log_since(p, mark)[-3000:]))
        return found

    def refusal_details(self, p, mark, user):
        """The `detail` of p's auth_failed events for user after mark."""
        text = self.log_since(p, mark)
        return [e.get("detail") for e in opshelp.events(text[:text.rfind("\n") + 1],
                                                         "auth_failed", user=user)]

    def ip_count(self, ip):
        v = self.redis.command("GET", "%sabuse:ip:%s" % (PREFIX, ip))
        return None if v is None else int(v)

    # --- tests ---

    def test_1_per_ip_delay_then_block_then_expiry(self):
        ip, other_ip = "127.0.0.11", "127.0.0.12"
        before = self.counters("A")
        mark = self.mark("A")
        # A different user each time: only the address's count grows.
        took = []
        for n, user in enumerate(("u01", "u02", "u03", "u04", "u05"), 1):
            took.append(self.wrong("A", user, ip, n).seconds)
        failed_at = time.monotonic() - delay_for(BLOCK_AFTER_IP)  # the 5th failure
        print("\nper IP: failures answered after %s s" % ", ".join("%.2f" % t for t in took))
        # Refused by the passwd-file: no backend login.
        self.assert_moved("A", before, delayed=BLOCK_AFTER_IP, logins_auth_failed=BLOCK_AFTER_IP)
        self.assert_message("A", mark, r"^abuse: client IP %s blocked for 5 s after 5 failed "
                            r"logins$" % re.escape(ip))
        # Blocked: u06's right password is refused over IMAP and POP3, and no
        # backend login is made for it.
        before = self.counters("A")
        imap = self.blocked("A", "u06", ip, failed_at)
        pop3 = self.blocked("A", "u06", ip, failed_at, "pop3")
        print("blocked: IMAP %r, POP3 %r" % (imap, pop3))
        self.assert_moved("A", before, blocked=2, logins_blocked=2)
        details = self.refusal_details("A", mark, "u06")
        self.assertEqual(details, ["blocked: client IP %s blocked: 5 failed logins" % ip] * 2)
        # The block is the address's: u06 logs in from another one.
        self.logs_in("A", "u06", other_ip)
        self.logs_in("A", "u06", other_ip, "pop3")
        # After block_for from the failure that reached the limit, the
        # address logs in again, and its count has started over.
        time.sleep(max(0.0, failed_at + BLOCK_FOR + 0.3 - time.monotonic()))
        self.logs_in("A", "u06", ip)
        self.wrong("A", "u07", ip, 1)

    def test_2_per_user_across_addresses(self):
        user = "u10"
        before = self.counters("A")
        mark = self.mark("A")
        took = []
        # One failure from each of four addresses: the addresses' counts stay
        # at 1, the user's reaches the limit.
        for n, ip in enumerate(("127.0.0.21", "127.0.0.22", "127.0.0.23", "127.0.0.24"), 1):
            took.append(self.wrong("A", user, ip, n, "pop3").seconds)
        failed_at = time.monotonic() - delay_for(BLOCK_AFTER_USER)
        print("\nper user: failures from four addresses answered after %s s"
              % ", ".join("%.2f" % t for t in took))
        self.assert_message("A", mark, r'^abuse: user "%s" blocked for 5 s after 4 failed '
                            r'logins$' % user)
        # A fifth address does not get past the user's block, over either
        # protocol; another user from that address logs in.
        self.blocked("A", user, "127.0.0.25", failed_at, "pop3")
        self.blocked("A", user, "127.0.0.25", failed_at)
        self.logs_in("A", "u11", "127.0.0.25", "pop3")
        self.assert_moved("A", before, delayed=BLOCK_AFTER_USER,
                          logins_auth_failed=BLOCK_AFTER_USER, blocked=2, logins_blocked=2,
                          backend_logins=1)
        self.assertEqual(self.refusal_details("A", mark, user)[-2:],
                         ["blocked: user blocked: 4 failed logins"] * 2)
        time.sleep(max(0.0, failed_at + BLOCK_FOR + 0.3 - time.monotonic()))
        self.logs_in("A", user, "127.0.0.25", "pop3")

    def test_3_counts_shared_through_redis(self):
        ip = "127.0.0.31"
        before = {p: self.counters(p) for p in ("A", "B")}
        marks = {p: self.mark(p) for p in ("A", "B")}
        # Failures alternate between the instances: one sequence of delays.
        seq = (("A", "u12"), ("B", "u13"), ("A", "u14"), ("B", "u15"), ("A", "u16"))
        took = []
        for n, (p, user) in enumerate(seq, 1):
            took.append("%s %.2f" % (p, self.wrong(p, user, ip, n).seconds))
            self.assertEqual(self.ip_count(ip), n, "Redis's count of %s" % ip)
        failed_at = time.monotonic() - delay_for(BLOCK_AFTER_IP)
        print("\nacross A and B: failures answered after %s s" % ", ".join(took))
        # Redis holds the block: the key lives block_for, not the window.
        pttl = self.redis.command("PTTL", "%sabuse:ip:%s" % (PREFIX, ip))
        self.assertTrue(0 < pttl <= BLOCK_FOR * 1000, "PTTL of the address's key: %r" % pttl)
        # The block made on A refuses on B, and on A.
        self.blocked("B", "u17", ip, failed_at)
        self.blocked("A", "u17", ip, failed_at)
        self.assert_moved("A", before["A"], delayed=3, logins_auth_failed=3, blocked=1,
                          logins_blocked=1)
        self.assert_moved("B", before["B"], delayed=2, logins_auth_failed=2, blocked=1,
                          logins_blocked=1)
        self.assertEqual(self.refusal_details("B", marks["B"], "u17"),
                         ["blocked: client IP %s blocked: 5 failed logins" % ip])
        # The user's count is shared too: a failure on A, then one on B.
        self.wrong("A", "u18", "127.0.0.32", 1)
        self.wrong("B", "u18", "127.0.0.33", 2)
        # The block ends on both instances when it ends in Redis.
        time.sleep(max(0.0, failed_at + BLOCK_FOR + 0.3 - time.monotonic()))
        self.assertIsNone(self.ip_count(ip), "Redis still holds the address's count")
        for p in ("B", "A", "B"):
            self.logs_in(p, "u17", ip)

    def test_4_backend_refusals_count_too(self):
        # The passthrough listener: Dovecot refuses the wrong passwords (a
        # backend login each, up to DOVECOT_TICK late), postern delays its
        # answers and counts them; the block then refuses before Dovecot.
        user = "u31"
        before = self.counters("A")
        mark = self.mark("A")
        took = []
        for n, ip in enumerate(("127.0.0.51", "127.0.0.52", "127.0.0.53", "127.0.0.54"), 1):
            took.append(self.wrong("A", user, ip, n, listener="imaps-pt",
                                   late=DOVECOT_TICK).seconds)
        failed_at = time.monotonic() - delay_for(BLOCK_AFTER_USER)
        print("\nrefused by Dovecot: answered after %s s" % ", ".join("%.2f" % t for t in took))
        details = self.refusal_details("A", mark, user)
        self.assertEqual(len(details), BLOCK_AFTER_USER, details)
        for d in details:
            self.assertTrue(d.startswith("backend: "), "not Dovecot's refusal: %r" % d)
        self.blocked("A", user, "127.0.0.55", failed_at, listener="imaps-pt")
        self.assertEqual(self.refusal_details("A", mark, user)[-1],
                         "blocked: user blocked: 4 failed logins")
        self.assert_moved("A", before, delayed=BLOCK_AFTER_USER,
                          logins_auth_failed=BLOCK_AFTER_USER, backend_logins=BLOCK_AFTER_USER,
                          blocked=1, logins_blocked=1)

    def test_5_redis_stopped_then_back(self):
        marks = {p: self.mark(p) for p in ("A", "B")}
        for p in ("A", "B"):
            self.logs_in(p, "u20", "127.0.0.40")
        before = {p: self.counters(p) for p in ("A", "B")}
        self.assertEqual([before[p]["redis_fallbacks"] for p in ("A", "B")], [0.0, 0.0],
                         "Redis was not usable before it was stopped")
        # Last in the file: a failure here would leave Redis reconnecting
        # under the tests after it.
        self.redis.stop()
        self.addCleanup(self.redis.start)
        t_stop = time.monotonic()
        # Logins go on on both instances (each worker of B: several logins),
        # with no wait for Redis.
        for p in ("A", "B"):
            for i in range(4):
                a = self.logs_in(p, "u21", "127.0.0.40", "imap" if i % 2 == 0 else "pop3")
                self.assertLess(a.seconds, 0.5, "%s: a login during the outage: %r" % (p, a))
        # Failures are counted by each instance on its own: B does not see A's.
        self.wrong("A", "u22", "127.0.0.41", 1)
        self.wrong("A", "u23", "127.0.0.41", 2)
        self.wrong("B", "u24", "127.0.0.41", 1)
        self.wrong("A", "u25", "127.0.0.41", 3)
        self.wrong("B", "u26", "127.0.0.41", 2)
        # Each of those logins found Redis unusable at least once (its check;
        # the write after it again): postern_redis_fallbacks_total{use="abuse"}.
        during = {p: self.counters(p) for p in ("A", "B")}
        for p, attempts in (("A", 4 + 3), ("B", 4 + 2)):
            moved = during[p]["redis_fallbacks"] - before[p]["redis_fallbacks"]
            self.assertGreaterEqual(moved, attempts, "%s: fallbacks during the outage" % p)
        for p in ("A", "B"):
            lines = self.messages(p, marks[p], r"^abuse: Redis not usable")
            print("\n%s during the outage: %r" % (p, lines))
            self.assertGreaterEqual(len(lines), 1, "%s did not say Redis is gone" % p)
            self.assertLessEqual(len(lines), self.workers[p],
                                 "%s: more than one line a minute per worker" % p)
            self.assertRegex(lines[0], r"^abuse: Redis not usable \(.+\): failed logins are "
                             r"counted by this instance only")
        # Redis back, empty: every worker's client reconnects (its backoff
        # has grown to a few seconds meanwhile).
        self.redis.start()
        t_start = time.monotonic()
        for p in ("A", "B"):
            pattern = r"^redis .*\(%s, commands\): connected again after" % re.escape(
                self.redis.address)
            found = harness.wait_for(
                lambda: len(self.messages(p, marks[p], pattern)) >= self.workers[p],
                timeout=10.0, interval=0.1)
            self.assertTrue(found, "%s: not every worker reconnected to Redis:\n%s"
                            % (p, self.log_since(p, marks[p])[-3000:]))
        print("outage %.1f s; reconnected %.1f s after the restart"
              % (t_start - t_stop, time.monotonic() - t_start))
        # Logins again (on each worker: several), which find Redis back.
        after = {p: self.counters(p) for p in ("A", "B")}
        for p in ("A", "B"):
            for i in range(4):
                self.logs_in(p, "u21", "127.0.0.40", "imap" if i % 2 == 0 else "pop3")
        # Counting is shared again: A's two failures count on B.
        ip = "127.0.0.42"
        self.wrong("A", "u27", ip, 1)
        self.wrong("A", "u28", ip, 2)
        self.wrong("B", "u29", ip, 3)
        self.assertEqual(self.ip_count(ip), 3)
        for p in ("A", "B"):
            self.assert_message(p, marks[p], r"^abuse: Redis answers again: failed logins are "
                                r"counted fleet-wide$")
            self.assertEqual(self.counters(p)["redis_fallbacks"], after[p]["redis_fallbacks"],
                             "%s: Redis not usable after it came back" % p)


if __name__ == "__main__":
    unittest.main()
