"""Issue 10, Redis routing overrides, with a real redis-server and two
postern instances sharing it.

Three real Dovecots, one per shard (s1: a, s2: c, s3: d). Instances A
(workers: 1) and B (workers: 2) read overrides from Redis
(`<prefix>route:<user>` = "shard:NAME" / "backend:NAME" / "NAME") with
routing.override_cache_ttl at 60 s: an override that shows within a second
can only have come through an invalidation, a PUBLISH of the user on
`<prefix>route-changed` or a keyspace notification. A third instance R,
same shards and no Redis, tells where the ring alone puts a user (the ring
is not reimplemented). Where a login went: postern's `session end` line,
confirmed by the Dovecot whose log holds the same session id.

Then Redis goes away mid-test: logins go on, routed by the ring, and the
log says so at most once a minute per worker; Redis back: overrides apply
again once the client has reconnected (backoff up to 5 s).
"""

import os
import re
import shutil
import time
import unittest

import harness
import opshelp
import routehelp
import testbed

SHARDS = {"s1": ("a",), "s2": ("c",), "s3": ("d",)}
SHARD_OF = {b: s for s, bs in SHARDS.items() for b in bs}
PREFIX = "rt:"
TTL_S = 60


class RedisOverrideTest(routehelp.FleetTestCase):

    @classmethod
    def setUpClass(cls):
        if shutil.which('redis-server') is None:
            raise unittest.SkipTest("redis-server is not installed (deploy/install-deps.sh)")
        super().setUpClass()
        cls.redis = testbed.RedisServer(os.path.join(cls.tmp, "redis"))
        cls.addClassCleanup(cls.redis.stop)
        dv = cls.start_fleet({"a": {}, "c": {}, "d": {}})
        backends = [routehelp.backend_entry(n, dv[n]) for n in ("a", "c", "d")]
        shards = [{"name": s, "backends": list(bs)} for s, bs in SHARDS.items()]
        ring_only = routehelp.base_config(cls.cert, cls.key, backends, shards=shards)
        cls.token_file, cls.token = opshelp.write_token(cls.tmp)
        with_redis = harness.deep_merge(ring_only, {
            "redis": {"address": cls.redis.address, "prefix": PREFIX, "timeout": "200ms"},
            "routing": {"redis_overrides": True, "override_cache_ttl": "%ds" % TTL_S},
            "admin": {"address": "%s:0" % routehelp.HOST, "token_file": cls.token_file},
        })
        cls.start_postern("R", harness.deep_merge(ring_only, {"workers": 1}))
        cls.start_postern("A", harness.deep_merge(with_redis, {"workers": 1}))
        cls.start_postern("B", with_redis)

    # --- helpers ---

    def landed(self, p, user, proto="imap"):
        """Logs user in through instance p; returns the backend it went to
        (postern's session end line), or the refusal."""
        post = self.posterns[p]
        since = len(post.log())
        login = (routehelp.imap_login if proto == "imap" else routehelp.pop3_login)(
            post.address(proto), user)
        if not login.ok:
            return "refused: %r" % login.answer
        f = routehelp.session_end_for_port(post, login.port, since)
        self.assertIsNotNone(f, "no session end for the login")
        return f["backend"]

    def confirmed(self, p, user):
        """Like landed(), and the Dovecot named must have logged that session."""
        post = self.posterns[p]
        since = len(post.log())
        place = routehelp.Placement(self.dovecots)
        login = routehelp.imap_login(post.address("imap"), user)
        self.assertTrue(login.ok, login.answer)
        f = routehelp.session_end_for_port(post, login.port, since)
        where = place.dovecot_of([f["session"]])
        self.assertEqual(where.get(f["session"]), f["backend"],
                         "postern says %s, the Dovecots' logs say %s"
                         % (f["backend"], where.get(f["session"])))
        return f["backend"]

    def ring_shard(self, user):
        return SHARD_OF[self.landed("R", user)]

    def other_shard(self, user):
        ring = self.ring_shard(user)
        return ring, next(s for s in sorted(SHARDS) if s != ring)

    def route_key(self, user):
        return PREFIX + "route:" + user

    def wait_moved(self, instances, user, want_shard, timeout=3.0):
        """Logs user in through each instance until it lands on want_shard
        (every 100 ms, at most timeout); returns {instance: seconds}."""
        t0 = time.monotonic()
        took = {}
        for p in instances:
            while True:
                b = self.landed(p, user)
                if SHARD_OF.get(b) == want_shard:
                    took[p] = time.monotonic() - t0
                    break
                if time.monotonic() - t0 > timeout:
                    self.fail("%s: %s still lands on %s after %.1f s (wanted %s)"
                              % (p, user, b, timeout, want_shard))
                time.sleep(0.1)
        return took

    def warm(self, user, n_b=8):
        """Lets A and B cache "no override" for user (B has two workers,
        each with its own cache: several logins)."""
        ring = self.ring_shard(user)
        self.assertEqual(SHARD_OF[self.landed("A", user)], ring)
        for _ in range(n_b):
            self.assertEqual(SHARD_OF[self.landed("B", user)], ring)
        return ring

    # --- tests ---

    def test_1_override_wins_over_ring(self):
        # Users no instance has looked up yet.
        cases = [("u20", "shard:%s"), ("u21", "backend:%s"), ("u22", "%s")]
        for user, fmt in cases:
            ring, target = self.other_shard(user)
            value = fmt % (target if fmt != "backend:%s" else SHARDS[target][0])
            self.redis.command("SET", self.route_key(user), value)
            for p in ("A", "B"):
                self.assertEqual(SHARD_OF[self.confirmed(p, user)], target,
                                 "%s with %s=%r (ring: %s)" % (p, self.route_key(user), value, ring))
        # A bare backend name works too.
        ring, target = self.other_shard("u23")
        self.redis.command("SET", self.route_key("u23"), SHARDS[target][0])
        self.assertEqual(self.confirmed("A", "u23"), SHARDS[target][0])
        # A value naming nothing configured: the ring answers, the log says why.
        since = len(self.posterns["A"].log())
        self.redis.command("SET", self.route_key("u24"), "shard:nosuch")
        self.assertEqual(SHARD_OF[self.landed("A", "u24")], self.ring_shard("u24"))
        self.assert_logged(self.posterns["A"],
                           r"a redis override names no configured shard or backend: "
                           r"'shard:nosuch'", since)
        # POP3 logins follow the override as well.
        self.assertEqual(SHARD_OF[self.landed("B", "u20", "pop3")], self.other_shard("u20")[1])

    def test_2_publish_moves_user_on_both_instances(self):
        user = "u30"
        ring = self.warm(user)
        target = next(s for s in sorted(SHARDS) if s != ring)
        self.redis.command("SET", self.route_key(user), "shard:" + target)
        # Without an invalidation the cached answer stands (60 s TTL):
        # what follows is the invalidation's doing, not the TTL's.
        for _ in range(3):
            self.assertEqual(SHARD_OF[self.landed("A", user)], ring,
                             "A moved the user without an invalidation")
            time.sleep(0.2)
        receivers = self.redis.command("PUBLISH", PREFIX + "route-changed", user)
        # Every worker of both instances subscribes: 1 + 2.
        self.assertEqual(receivers, 3, "subscribers to %sroute-changed" % PREFIX)
        took = self.wait_moved(("A", "B"), user, target)
        print("\nmoved by PUBLISH after %s" % {p: "%.2fs" % t for p, t in took.items()})
        self.assertLess(max(took.values()), 1.5)
        self.assertEqual(SHARD_OF[self.confirmed("A", user)], target)
        self.assertEqual(SHARD_OF[self.confirmed("B", user)], target)
        # DEL (and the PUBLISH) moves the user back.
        self.redis.command("DEL", self.route_key(user))
        self.redis.command("PUBLISH", PREFIX + "route-changed", user)
        took = self.wait_moved(("A", "B"), user, ring)
        print("moved back by DEL + PUBLISH after %s" % {p: "%.2fs" % t for p, t in took.items()})
        self.assertLess(max(took.values()), 1.5)

    def test_3_keyspace_notifications_move_user_without_publish(self):
        user = "u31"
        ring = self.warm(user)
        target = next(s for s in sorted(SHARDS) if s != ring)
        self.redis.command("CONFIG", "SET", "notify-keyspace-events", "K$g")
        self.addCleanup(self.redis.command, "CONFIG", "SET", "notify-keyspace-events", "")
        self.redis.command("SET", self.route_key(user), "shard:" + target)
        took = self.wait_moved(("A", "B"), user, target)
        print("\nmoved by a keyspace notification (SET) after %s"
              % {p: "%.2fs" % t for p, t in took.items()})
        self.assertLess(max(took.values()), 1.5)
        self.redis.command("DEL", self.route_key(user))
        took = self.wait_moved(("A", "B"), user, ring)
        print("moved back by DEL after %s" % {p: "%.2fs" % t for p, t in took.items()})
        self.assertLess(max(took.values()), 1.5)

    def test_4_redis_down_ring_routes_then_back(self):
        user = "u40"
        ring, target = self.other_shard(user)
        value = "shard:" + target
        self.redis.command("SET", self.route_key(user), value)
        for p in ("A", "B"):
            self.assertEqual(SHARD_OF[self.landed(p, user)], target)
        marks = {p: len(self.posterns[p].log()) for p in ("A", "B")}

        def fallbacks(p):
            text = opshelp.Admin(self.posterns[p].address("admin"), self.token).metrics()
            return opshelp.metric_sum(text, "postern_redis_fallbacks_total", use="routing")
        before = {p: fallbacks(p) for p in ("A", "B")}
        self.assertEqual(before, {"A": 0, "B": 0})
        self.redis.stop()
        self.addCleanup(self.redis.start)  # for the tests after this one
        time.sleep(0.3)
        # Logins go on, by the ring, for 3 s; the override (cached before)
        # is forgotten with the lost subscription.
        t_end = time.monotonic() + 3
        n = 0
        while time.monotonic() < t_end:
            for p in ("A", "B"):
                b = self.landed(p, user)
                self.assertEqual(SHARD_OF.get(b), ring, "%s during the outage: %s" % (p, b))
                self.assertEqual(SHARD_OF[self.landed(p, "u41")], self.ring_shard("u41"))
                n += 2
            time.sleep(0.1)
        for p, workers in (("A", 1), ("B", 2)):
            text = self.posterns[p].log()[marks[p]:]
            lines = re.findall(r"redis overrides unavailable, routing by the ring: .*", text)
            print("\n%s: %d logins during the outage, %d warning line(s): %s"
                  % (p, n, len(lines), lines[:1]))
            self.assertGreaterEqual(len(lines), 1, "%s did not say Redis is gone" % p)
            self.assertLessEqual(len(lines), workers, "more than one line a minute per worker")
            # Lookups the ring answered for want of Redis are counted.
            self.assertGreaterEqual(fallbacks(p), 1, p)
        # Redis back (empty: nothing is persisted), the override written again.
        self.redis.start()
        t0 = time.monotonic()
        self.redis.command("SET", self.route_key(user), value)
        took = self.wait_moved(("A", "B"), user, target, timeout=15)
        print("override applied again %s after Redis restarted"
              % {p: "%.2fs" % t for p, t in took.items()})
        for p in ("A", "B"):
            self.assert_logged(self.posterns[p], r"redis.*: connected again after", marks[p])
        # Every worker reconnects on its own backoff (B has two): the first
        # login that lands right may have met the one already back. Eight in
        # a row on each instance, then a login Dovecot confirms.
        for p in ("A", "B"):
            deadline = time.monotonic() + 15
            streak = 0
            while streak < 8:
                self.assertLess(time.monotonic(), deadline, "%s: %s not stable on %s"
                                % (p, user, target))
                streak = streak + 1 if SHARD_OF.get(self.landed(p, user)) == target else 0
        self.assertEqual(SHARD_OF[self.confirmed("B", user)], target)
        self.assertLess(time.monotonic() - t0, 15)


if __name__ == "__main__":
    unittest.main()
