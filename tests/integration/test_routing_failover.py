"""Issue 10, failover between replicas and shards, with real Dovecots.

Shard s1 is two replicas (Dovecots a and b on one Maildir root), s2 is c
with `fallback: s3`, s3 is d with no fallback. Instance P checks backends
actively (health.check_interval 500 ms, failures 2, cooldown 60 s: a
backend comes back early only through a successful check) and spreads the
disconnects of a dying backend over 4 s; instance Q has no active checks
(passive only: 3 failed connects mark a backend down) and no spread.
Which shard the ring gives each user is learnt by logging in once (not
reimplemented). Stores are stopped the documented way (`doveadm stop`) and
started again; sessions are killed with their Dovecot imap processes.
"""

import collections
import selectors
import signal
import os
import re
import time
import unittest

import harness
import routehelp
from routehelp import USERS

SHARDS = {"s1": ("a", "b"), "s2": ("c",), "s3": ("d",)}
SHARD_OF = {b: s for s, bs in SHARDS.items() for b in bs}


class FailoverTest(routehelp.FleetTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        dv = cls.start_fleet({"a": {}, "b": {"replica_of": "a"}, "c": {}, "d": {}})
        backends = [routehelp.backend_entry(n, dv[n]) for n in ("a", "b", "c", "d")]
        shards = [{"name": "s1", "backends": ["a", "b"]},
                  {"name": "s2", "backends": ["c"], "fallback": "s3"},
                  {"name": "s3", "backends": ["d"]}]
        base = routehelp.base_config(cls.cert, cls.key, backends, shards=shards)
        cls.start_postern("P", harness.deep_merge(base, {"health": {
            "check_interval": "500ms", "check_timeout": "1s", "failures": 2,
            "cooldown": "60s", "disconnect_spread": "4s"}}))
        cls.start_postern("Q", harness.deep_merge(base, {"workers": 1, "health": {
            "check_interval": "0", "failures": 3, "cooldown": "60s"}}))
        # The ring's shard of every user, by one login through P.
        cls.shard_users = collections.defaultdict(list)
        p = cls.posterns["P"]
        for u in USERS:
            since = len(p.log())
            login = routehelp.imap_login(p.address("imap"), u)
            assert login.ok, login.answer
            f = routehelp.session_end_for_port(p, login.port, since)
            cls.shard_users[SHARD_OF[f["backend"]]].append(u)
        for s in SHARDS:
            assert cls.shard_users[s], "the ring gave shard %s no user of %d" % (s, len(USERS))

    # --- helpers ---

    def landed(self, p, user, proto="imap"):
        """(backend or None, answer, seconds) of one login through p."""
        post = self.posterns[p]
        since = len(post.log())
        t0 = time.monotonic()
        login = (routehelp.imap_login if proto == "imap" else routehelp.pop3_login)(
            post.address(proto), user)
        dt = time.monotonic() - t0
        if not login.ok:
            return None, login.answer, dt
        f = routehelp.session_end_for_port(post, login.port, since)
        return f["backend"], login.answer, dt

    def stop_store(self, name):
        """doveadm stop; started again (and seen up by P) after the test."""
        d = self.dovecots[name]
        mark = len(self.posterns["P"].log())
        d.doveadm_stop()
        self.assertTrue(harness.wait_for(lambda: not d.running(), timeout=10),
                        "dovecot %s did not stop" % name)
        self.addCleanup(self.start_store, name, mark)
        return mark

    def start_store(self, name, mark=None):
        d = self.dovecots[name]
        d.start()
        if mark is not None:
            self.assert_logged(self.posterns["P"], r"backend up: backend=%s\b" % name, mark,
                               timeout=10)

    def hold(self, p, users, n):
        """n sessions logged in through p, users taken in turn; returns
        the Logins (their .conn open)."""
        out = []
        for i in range(n):
            login = routehelp.imap_login(self.posterns[p].address("imap"),
                                         users[i % len(users)], keep=True)
            self.assertTrue(login.ok, login.answer)
            self.addCleanup(login.conn.close)
            out.append(login)
        return out

    def close_times(self, logins, t0, timeout):
        """Seconds after t0 at which each held connection saw EOF (None if
        it did not within timeout)."""
        sel = selectors.DefaultSelector()
        times = {}
        for i, l in enumerate(logins):
            l.conn.sock.setblocking(False)
            sel.register(l.conn.sock, selectors.EVENT_READ, i)
        deadline = t0 + timeout
        while len(times) < len(logins) and time.monotonic() < deadline:
            for key, _ in sel.select(max(0.0, deadline - time.monotonic())):
                try:
                    data = key.fileobj.recv(65536)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    data = b""
                if not data:
                    times[key.data] = time.monotonic() - t0
                    sel.unregister(key.fileobj)
        sel.close()
        return [times.get(i) for i in range(len(logins))]

    # --- tests ---

    def test_least_loaded_splits_sessions_between_replicas(self):
        marks = {n: len(self.dovecots[n].log()) for n in ("a", "b")}
        held = self.hold("P", self.shard_users["s1"], 40)
        counts = {}
        for n in ("a", "b"):
            counts[n] = len(routehelp.dovecot_logins(self.dovecots[n], marks[n]))
        if sum(counts.values()) < 40:  # Dovecot's log may lag
            harness.wait_for(lambda: sum(len(routehelp.dovecot_logins(
                self.dovecots[n], marks[n])) for n in ("a", "b")) >= 40, timeout=10)
            counts = {n: len(routehelp.dovecot_logins(self.dovecots[n], marks[n]))
                      for n in ("a", "b")}
        print("\n40 concurrent s1 sessions per replica: %s" % counts)
        self.assertEqual(sum(counts.values()), 40)
        self.assertLessEqual(abs(counts["a"] - counts["b"]), 4, counts)
        for l in held:
            l.conn.close()

    def test_stopped_replica_next_one_serves_marked_down_and_up(self):
        users = self.shard_users["s1"]
        mark_q = len(self.posterns["Q"].log())
        t_stop = time.monotonic()
        mark_p = self.stop_store("a")
        # Q (passive): each login may try a first; the client only sees b's answer.
        times = []
        for i in range(8):
            backend, answer, dt = self.landed("Q", users[i % len(users)])
            self.assertEqual(backend, "b", answer)
            times.append(dt)
        q_log = self.posterns["Q"].log()[mark_q:]
        retried = re.findall(r"backend failed: .*backend=a next=replica .*", q_log)
        print("\nQ: 8 logins with a stopped, %d went to a first; login times %s ms"
              % (len(retried), [int(t * 1000) for t in times]))
        self.assertGreaterEqual(len(retried), 1, "Q never tried the stopped replica first")
        self.assertIn("backend down: backend=a ", q_log)
        self.assertNotIn("backend unavailable", q_log)
        # P marks it down by its checks alone.
        m = self.assert_logged(self.posterns["P"], r"backend down: backend=a .*", mark_p,
                               timeout=5)
        print("P: %s (%.1f s after the stop)" % (m.group(0), time.monotonic() - t_stop))
        for u in users[:6]:
            backend, answer, _ = self.landed("P", u)
            self.assertEqual(backend, "b", answer)
        # Started again: P's check brings it back (the cooldown is 60 s).
        mark_p = len(self.posterns["P"].log())
        t0 = time.monotonic()
        self.dovecots["a"].start()
        self.assert_logged(self.posterns["P"], r"backend up: backend=a\b", mark_p, timeout=5)
        print("P: backend up %.1f s after Dovecot a started" % (time.monotonic() - t0))
        seen = collections.Counter(self.landed("P", users[i % len(users)])[0] for i in range(8))
        self.assertGreater(seen["a"], 0, seen)

    def test_stopped_shard_its_fallback_serves(self):
        users = self.shard_users["s2"]
        mark = self.stop_store("c")
        # Q has not seen c fail yet (no checks; 3 failures mark it down):
        # its first logins try c, then the fallback, before answering.
        mark_q = len(self.posterns["Q"].log())
        early = [self.landed("Q", users[0]) for _ in range(4)]
        print("\nQ right after c stopped: %s"
              % [(b, a[:40].decode(errors="replace")) for b, a, _ in early])
        self.assertEqual([b for b, _, _ in early], ["d"] * 4)
        self.assertRegex(self.posterns["Q"].log()[mark_q:],
                         r"backend failed: .*backend=c next=replica ")
        self.assert_logged(self.posterns["P"], r"backend down: backend=c ", mark, timeout=5)
        place = routehelp.Placement(self.dovecots)
        sessions = []
        for u in users[:4]:
            for proto in ("imap", "pop3"):
                post = self.posterns["P"]
                since = len(post.log())
                login = (routehelp.imap_login if proto == "imap" else routehelp.pop3_login)(
                    post.address(proto), u)
                self.assertTrue(login.ok, (u, proto, login.answer))
                f = routehelp.session_end_for_port(post, login.port, since)
                self.assertEqual(f["backend"], "d", (u, proto))
                sessions.append(f["session"])
        where = place.dovecot_of(sessions)
        self.assertEqual(set(where.values()), {"d"}, where)
        self.assertEqual(len(where), len(sessions))
        # Q serves them from the fallback too once it marked c down.
        self.assertEqual(self.landed("Q", users[0])[0], "d")
        # c back: P's users of s2 go home.
        self.doCleanups()
        self.assertEqual(self.landed("P", users[0])[0], "c")

    def test_stopped_shard_without_fallback_is_unavailable(self):
        users = self.shard_users["s3"]
        mark = self.stop_store("d")
        self.assert_logged(self.posterns["P"], r"backend down: backend=d ", mark, timeout=5)
        for p in ("P", "Q"):
            _, answer, _ = self.landed(p, users[0])
            self.assertTrue(re.match(rb"a NO \[UNAVAILABLE\]", answer), (p, answer))
            _, answer, _ = self.landed(p, users[0], "pop3")
            self.assertTrue(answer.startswith(b"-ERR [SYS/TEMP]"), (p, answer))
        self.assert_logged(self.posterns["P"],
                           r"backend unavailable: .*user=%s .*shard s3: no healthy replica and "
                           r"no fallback" % users[0], mark)

    def test_disconnect_spread_over_four_seconds(self):
        # P spreads (4 s); Q, the control, does not.
        for p, spread in (("P", 4.0), ("Q", 0.0)):
            users = self.shard_users["s3"]
            held = self.hold(p, users, 30)
            for l in held:
                _, tagged = l.conn.imap("s", "SELECT INBOX")
                self.assertTrue(tagged.startswith(b"s OK"), tagged)
            d = self.dovecots["d"]
            procs = d.processes("imap")
            self.assertGreaterEqual(len(procs), 30)
            t0 = time.monotonic()
            for pid, _ in procs:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            times = self.close_times(held, t0, spread + 6)
            self.assertNotIn(None, times, "sessions still open %.0f s after the kill"
                             % (spread + 6))
            times.sort()
            print("\n%s (disconnect_spread %.0f s): 30 clients closed between %.2f and %.2f s; "
                  "per second: %s" % (p, spread, times[0], times[-1],
                                       dict(collections.Counter(int(t) for t in times))))
            if spread:
                self.assertGreater(times[-1] - times[0], spread / 2,
                                   "the disconnects were not spread")
                self.assertLess(times[-1], spread + 1.5)
                self.assertLess(sum(1 for t in times if t < 0.5), 10,
                                "too many disconnects at once")
                self.assert_logged(self.posterns[p], r"end=\"backend: .*\(disconnect spread\)\"")
            else:
                self.assertLess(times[-1], 1.0)


if __name__ == "__main__":
    unittest.main()
