"""Issue 10, routing across mailbox shards: users land where the ring says.

Four real Dovecots: shard s1 is two replicas (a and b) serving the same
Maildir root, s2 is c, s3 is d. Every Dovecot holds every user, so a login
that went to the wrong store would still succeed and show up in that
store's log. Two postern instances run the same config. Where a login went
is read from postern's `session end` line and confirmed by the Dovecot
whose log holds the same session id (routehelp.Placement).

The ring is not reimplemented here: 48 users log in several times through
both instances, over IMAP and POP3, and each user must always land on one
shard, the same on both instances, with every shard getting users. Then a
directory's answer (passwd-file `shard=`, `backend=`, `host=`/`port=`)
must win over the ring. With `routing.ring_key: domain` (a third
instance) the users of one domain share a shard.
"""

import collections
import concurrent.futures
import os
import unittest

import harness
import routehelp
from routehelp import USERS

SHARDS = {"s1": ("a", "b"), "s2": ("c",), "s3": ("d",)}
SHARD_OF = {b: s for s, bs in SHARDS.items() for b in bs}
DOMAIN_USERS = tuple("m%d@d%d.test" % (i, d) for d in range(4) for i in range(4))


class RingTest(routehelp.FleetTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        dv = cls.start_fleet({"a": {}, "b": {"replica_of": "a"}, "c": {}, "d": {}},
                             users=USERS + DOMAIN_USERS)
        # The directory: three groups of users, each pointed elsewhere by
        # one kind of field; the targets cycle so that many differ from
        # the ring's choice.
        cls.directory_target = {}
        lines = []
        names = ["a", "b", "c", "d"]
        shard_names = sorted(SHARDS)
        for i, u in enumerate(USERS):
            kind = i % 3
            if kind == 0:
                s = shard_names[(i // 3) % 3]
                lines.append("%s:{PLAIN}%s::::::shard=%s" % (u, routehelp.PASSWORD, s))
                cls.directory_target[u] = ("shard", s)
            elif kind == 1:
                b = names[(i // 3) % 4]
                lines.append("%s:{PLAIN}%s::::::backend=%s" % (u, routehelp.PASSWORD, b))
                cls.directory_target[u] = ("backend", b)
            else:
                b = names[(i // 3 + 1) % 4]
                lines.append("%s:{PLAIN}%s::::::host=127.0.0.1 port=%d"
                             % (u, routehelp.PASSWORD, dv[b].imap_port))
                cls.directory_target[u] = ("host", b)
        cls.passwd = os.path.join(cls.tmp, "users.passwd")
        with open(cls.passwd, "w") as f:
            f.write("\n".join(lines) + "\n")
        cfg = routehelp.base_config(
            cls.cert, cls.key,
            [routehelp.backend_entry(n, dv[n]) for n in names],
            shards=[{"name": s, "backends": list(bs)} for s, bs in SHARDS.items()],
            directories=[{"name": "pw", "type": "passwd-file", "path": cls.passwd}])
        cfg["listeners"].append({"name": "imap-dir", "protocol": "imap",
                                 "address": "127.0.0.1:0", "tls": "none",
                                 "allow_plaintext_auth": True, "directory": "pw"})
        cls.config = cfg
        cls.start_postern("A", cfg)
        cls.start_postern("B", cfg)
        cls.start_postern("D", harness.deep_merge(cfg, {"routing": {"ring_key": "domain"}}))
        cls._ring = None

    def login_many(self, jobs):
        """Runs (postern name, protocol, user, listener) logins, 4 at a time;
        returns [(job, Login)]."""
        def one(job):
            p, proto, user, listener = job
            addr = self.posterns[p].address(listener)
            if proto == "imap":
                return job, routehelp.imap_login(addr, user)
            return job, routehelp.pop3_login(addr, user)
        with concurrent.futures.ThreadPoolExecutor(4) as ex:
            return list(ex.map(one, jobs))

    def placements(self, jobs):
        """Logs the jobs in and returns [(postern, protocol, user, backend
        by postern, Dovecot that logged it)]."""
        marks = {n: len(p.log()) for n, p in self.posterns.items()}
        place = routehelp.Placement(self.dovecots)
        results = self.login_many(jobs)
        bad = [(j, l.answer) for j, l in results if not l.ok]
        self.assertEqual(bad, [], "logins refused")
        out = []
        ends = {}
        for n, p in self.posterns.items():
            expect = sum(1 for j in jobs if j[0] == n)
            got = harness.wait_for(
                lambda: len(routehelp.session_ends(p, marks[n])) >= expect, timeout=15)
            self.assertTrue(got, "postern %s logged fewer session ends than logins" % n)
            ends[n] = routehelp.session_ends(p, marks[n])
        sessions = [f["session"] for fs in ends.values() for f in fs]
        where = place.dovecot_of(sessions)
        missing = [s for s in sessions if s not in where]
        self.assertEqual(missing, [], "sessions no Dovecot logged a login for")
        for n, fs in ends.items():
            for f in fs:
                out.append((n, f["protocol"], f["user"], f["backend"], where[f["session"]]))
        return out

    def ring(self):
        """user -> shard by the ring, learnt once through both instances
        (IMAP twice each, POP3 once each; shared by the tests)."""
        if RingTest._ring is None:
            jobs = []
            for u in USERS:
                for p in ("A", "B"):
                    jobs += [(p, "imap", u, "imap"), (p, "imap", u, "imap"),
                             (p, "pop3", u, "pop3")]
            RingTest._rows = self.placements(jobs)
            shards = collections.defaultdict(set)
            for p, proto, u, backend, dovecot in RingTest._rows:
                shards[u].add(SHARD_OF[dovecot])
            RingTest._ring = {u: next(iter(s)) if len(s) == 1 else s
                              for u, s in shards.items()}
        return RingTest._ring

    def test_users_stick_to_one_shard_and_instances_agree(self):
        ring = self.ring()
        rows = RingTest._rows
        # Postern's word and Dovecot's log agree on every login.
        disagree = [r for r in rows if r[3] != r[4]]
        self.assertEqual(disagree, [], "postern's backend= is not the Dovecot that logged in")
        self.assertEqual(len(rows), len(USERS) * 6)
        # Each user on one shard, through both instances and both protocols.
        split = {u: s for u, s in ring.items() if isinstance(s, set)}
        self.assertEqual(split, {}, "users that landed on more than one shard")
        per_instance = collections.defaultdict(set)
        for p, proto, u, backend, dovecot in rows:
            per_instance[(u, p)].add(SHARD_OF[dovecot])
        for u in USERS:
            self.assertEqual(per_instance[(u, "A")], per_instance[(u, "B")], u)
        counts = collections.Counter(ring.values())
        print("\nring placement of %d users: %s" % (len(USERS), dict(sorted(counts.items()))))
        for s in SHARDS:
            self.assertGreater(counts[s], 0, "shard %s got no user" % s)
        # Shard s1's users are served by both of its replicas.
        replicas = collections.Counter(r[4] for r in rows if SHARD_OF[r[4]] == "s1")
        print("s1 logins per replica: %s" % dict(replicas))
        self.assertGreater(replicas["a"], 0)
        self.assertGreater(replicas["b"], 0)

    def test_directory_answer_wins_over_ring(self):
        ring = self.ring()
        jobs = [(p, "imap", u, "imap-dir") for u in USERS for p in ("A", "B")]
        rows = self.placements(jobs)
        moved = collections.Counter()
        for p, proto, u, backend, dovecot in rows:
            kind, target = self.directory_target[u]
            if kind == "shard":
                self.assertEqual(SHARD_OF[dovecot], target, (p, u, kind, target, dovecot))
                differs = target != ring[u]
            else:
                self.assertEqual(dovecot, target, (p, u, kind, target, dovecot))
                differs = SHARD_OF[target] != ring[u] or len(SHARDS[ring[u]]) > 1
            if differs:
                moved[kind] += 1
        print("\nlogins the directory sent off the ring's shard (or to one chosen replica): %s"
              % dict(moved))
        for kind in ("shard", "backend", "host"):
            self.assertGreater(moved[kind], 0, "no %s= answer differed from the ring" % kind)


    def test_ring_key_domain_keeps_a_domain_together(self):
        jobs = [(p, "imap", u, "imap") for u in DOMAIN_USERS for p in ("A", "D")]
        rows = self.placements(jobs)
        by_domain = {p: collections.defaultdict(set) for p in ("A", "D")}
        for p, proto, u, backend, dovecot in rows:
            by_domain[p][u.split("@")[1]].add(SHARD_OF[dovecot])
        print("\nshards per domain, ring_key user: %s; ring_key domain: %s"
              % ({d: sorted(s) for d, s in sorted(by_domain["A"].items())},
                 {d: sorted(s) for d, s in sorted(by_domain["D"].items())}))
        for d, shards in by_domain["D"].items():
            self.assertEqual(len(shards), 1, "domain %s split over %s" % (d, shards))
        # By user, four users of a domain rarely share a shard (1 in 27 each).
        self.assertTrue(any(len(s) > 1 for s in by_domain["A"].values()))


if __name__ == "__main__":
    unittest.main()
