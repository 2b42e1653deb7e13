"""Issue 9: the passwd-file re-read while postern runs (a changed file within
about two seconds, SIGHUP, a broken file keeps the old one and the log names
the file and line), and the directory answer cache (repeated logins answered
from it, a changed password never served from it, the TTL).

The users here carry `pass=`: the backend's password stays the same while
postern's file changes, so Dovecot needs no rewriting."""

import os
import re
import signal
import statistics
import time
import unittest

import harness
import testbed
from dirhelp import (DirTestCase, LogWindow, doveadm_pw, imap_login, pop3_login,
                     timed_imap_login, write_passwd)

BACKEND_PW = "backend-pw"


class _FileBed(DirTestCase):
    """One Dovecot, one postern with `directory: users`; install() puts a
    passwd-file in place and waits until postern answers from it."""

    users = ()  # Dovecot users (all with BACKEND_PW)
    cache = {}

    @classmethod
    def dovecot_options(cls):
        return dict(users=cls.users, password=BACKEND_PW, extra_conf="auth_verbose = yes\n")

    @classmethod
    def prepare(cls):
        cls.passwd = os.path.join(cls.bed.tmp, "users.passwd")
        cls.mark = 0
        cls.write_lines(cls.baseline())

    @classmethod
    def baseline(cls):
        return []

    @classmethod
    def write_lines(cls, lines, keep_mtime=False):
        cls.mark += 1
        # A user whose nologin reason says which version postern answers from.
        write_passwd(cls.passwd, list(lines) + ["zz-mark:{PLAIN}m::::::nologin reason=mark-%06d"
                                                % cls.mark], keep_mtime_of=keep_mtime)

    @classmethod
    def postern_config(cls):
        cfg = {"directories": [{"name": "users", "type": "passwd-file", "path": cls.passwd}],
               "directory": "users"}
        if cls.cache:
            cfg["auth_cache"] = cls.cache
        return cfg

    def current_mark(self):
        ok, text, _ = imap_login(self.bed, "imaps", "zz-mark", "m")
        m = re.search(r"mark-(\d+)", text)
        return int(m.group(1)) if m else None

    def wait_current(self, timeout=5.0):
        """Seconds until postern answers from the file last written, or None."""
        t0 = time.monotonic()
        ok = harness.wait_for(lambda: self.current_mark() == self.mark, timeout, 0.1)
        return time.monotonic() - t0 if ok else None

    def install(self, lines):
        """Writes the file, SIGHUPs postern and waits until it answers from it."""
        self.write_lines(lines)
        self.bed.postern.send_signal(signal.SIGHUP)
        self.assertIsNotNone(self.wait_current(), self.bed.postern.log()[-2000:])

    def setUp(self):
        super().setUp()
        self.install(self.baseline())


class ReloadTest(_FileBed):

    users = ("rita", "sam", "newbie")

    @classmethod
    def baseline(cls):
        return ["rita:%s::::::pass=%s" % (doveadm_pw("SHA512-CRYPT", "rita-old-1"), BACKEND_PW),
                "sam:%s::::::pass=%s" % (doveadm_pw("SSHA256", "sam-pw"), BACKEND_PW)]

    def assert_login(self, user, pw, ok_expected, name="imaps"):
        ok, text, _ = (imap_login if name.startswith("imap") else pop3_login)(
            self.bed, name, user, pw)
        self.assertEqual(ok, ok_expected, (user, pw, name, text))

    def test_changed_file_is_reread_within_two_seconds(self):
        self.assert_login("rita", "rita-old-1", True)
        pl = LogWindow(self.bed.postern.log)
        self.write_lines([
            "rita:%s::::::pass=%s" % (doveadm_pw("SHA512-CRYPT", "rita-new-22"), BACKEND_PW),
            "sam:{PLAIN}sam-pw::::::pass=%s" % BACKEND_PW,
            "newbie:%s::::::pass=%s" % (doveadm_pw("ARGON2ID", "hello-newbie"), BACKEND_PW),
        ])
        took = self.wait_current(timeout=5.0)
        self.assertIsNotNone(took, "the changed file was not re-read within 5 s")
        self.assertLess(took, 2.5, "re-read after %.2f s" % took)
        self.assertRegex(pl.text(), r"reload: result=ok kind=passwd-file directory=users path=%s users=4"
                         % re.escape(self.passwd))
        for name in ("imaps", "pop3s"):
            self.assert_login("rita", "rita-new-22", True, name)
            self.assert_login("rita", "rita-old-1", False, name)
            self.assert_login("newbie", "hello-newbie", True, name)
            self.assert_login("sam", "sam-pw", True, name)

    def test_sighup_rereads_a_change_the_watcher_cannot_see(self):
        """Same size, mtime put back: only SIGHUP makes postern read it."""
        self.assert_login("rita", "rita-old-1", True)
        old = self.baseline()
        new = ["rita:%s::::::pass=%s" % (doveadm_pw("SHA512-CRYPT", "rita-hup-1"), BACKEND_PW),
               old[1]]
        self.assertEqual(len(new[0]), len(old[0]))
        mark_before = self.mark
        size_before = os.path.getsize(self.passwd)
        self.write_lines(new, keep_mtime=True)  # the mark keeps its length too
        self.assertEqual(os.path.getsize(self.passwd), size_before)
        time.sleep(2.5)  # the watcher polls every second
        self.assertEqual(self.current_mark(), mark_before, "the watcher saw an invisible change")
        self.assert_login("rita", "rita-hup-1", False)
        pl = LogWindow(self.bed.postern.log)
        self.bed.postern.send_signal(signal.SIGHUP)
        self.assertIsNotNone(self.wait_current(), self.bed.postern.log()[-2000:])
        # SIGHUP reloads the whole config, and with it every file it names.
        self.assertIn("signal SIGHUP: reloading the config", pl.text())
        self.assertIn("reload: result=ok kind=config", pl.text())
        self.assert_login("rita", "rita-hup-1", True)
        self.assert_login("rita", "rita-old-1", False)

    def test_broken_file_keeps_the_old_one(self):
        """A bad line: the log names the file and the line (never the
        password), the old snapshot keeps answering, SIGHUP does not make it
        take the broken file either, and a fixed file is taken."""
        base = self.baseline()
        cases = [
            (base + ["newbie:{PLAIN}nb-pw::::::pass=x", "rita:{PLAIN}dup-pw"], 4,
             r"user rita: duplicate of line 1"),
            (base + ["newbie:{PLAIN}nb-pw::::::port=99999"], 3, r"port"),
            (["newbie:{SHA512-CRYPT}$6$notahash::::::"] + base, 1, r"SHA512-CRYPT"),
        ]
        for lines, line_no, why in cases:
            with self.subTest(line=line_no, why=why):
                pl = LogWindow(self.bed.postern.log)
                self.write_lines(lines)
                m = pl.wait(r'reload: result=refused kind=passwd-file directory=users '
                            r'detail="(\S+):(\d+): ([^\n]*)"', timeout=5)
                self.assertIsNotNone(m, pl.text())
                self.assertEqual(m.group(1), self.passwd)
                self.assertEqual(int(m.group(2)), line_no)
                self.assertRegex(m.group(3), why)
                for secret in ("nb-pw", "dup-pw", "notahash"):
                    self.assertNotIn(secret, pl.text())
                self.assert_login("rita", "rita-old-1", True)
                self.assert_login("newbie", "nb-pw", False)
                self.assertNotEqual(self.current_mark(), self.mark)
                pl = LogWindow(self.bed.postern.log)
                self.bed.postern.send_signal(signal.SIGHUP)
                # The whole reload is refused: the running config stays.
                self.assertTrue(pl.wait(r"reload: result=refused kind=config", timeout=5),
                                pl.text())
                self.assert_login("rita", "rita-old-1", True)
        # Fixed: taken at once.
        self.write_lines(self.baseline() + ["newbie:{PLAIN}nb-pw::::::pass=%s" % BACKEND_PW])
        self.assertIsNotNone(self.wait_current(), self.bed.postern.log()[-2000:])
        self.assert_login("newbie", "nb-pw", True)

    def test_deleted_file_keeps_the_old_one(self):
        """The file gone: nothing changes until it is back; SIGHUP says why
        it keeps the old one."""
        os.rename(self.passwd, self.passwd + ".away")
        try:
            time.sleep(1.5)
            self.assert_login("rita", "rita-old-1", True)
            pl = LogWindow(self.bed.postern.log)
            self.bed.postern.send_signal(signal.SIGHUP)
            m = pl.wait(r'reload: result=refused kind=config [^\n]*detail="([^\n]*)"', timeout=5)
            self.assertIsNotNone(m, pl.text())
            self.assertIn(self.passwd, m.group(1))
            self.assert_login("rita", "rita-old-1", True)
        finally:
            os.rename(self.passwd + ".away", self.passwd)

    def test_broken_file_at_start_is_refused_with_file_and_line(self):
        bad = os.path.join(self.bed.tmp, "broken.passwd")
        write_passwd(bad, ["ok:{PLAIN}a", "# comment", "ok:{PLAIN}b"])
        cfg = self.bed.config(harness.deep_merge(self.postern_config(), {
            "directories": [{"name": "users", "type": "passwd-file", "path": bad}]}))
        path = os.path.join(self.bed.tmp, "broken.yaml")
        with open(path, "w") as f:
            f.write(testbed.to_yaml(cfg))
        r = testbed.check_config(harness.postern_binary(), path)
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
        self.assertIn("%s:3: user ok: duplicate of line 1" % bad, r.stdout + r.stderr)


class CacheTest(_FileBed):
    """auth_cache: 4 s for answers either way. `slow` is ARGON2ID as doveadm
    makes it (64 MiB, 3 passes): about a tenth of a second of hashing that
    a cached answer skips. Postern logs nothing that tells a cached
    acceptance apart, so the latency shows it; a cached refusal's log detail
    says "cached"."""

    users = ("slow", "quick")
    cache = {"ttl": "4s", "negative_ttl": "4s"}

    @classmethod
    def baseline(cls):
        if not hasattr(cls, "_slow_old"):
            cls._slow_old = doveadm_pw("ARGON2ID", "slow-old-1")
        return ["slow:%s::::::pass=%s" % (cls._slow_old, BACKEND_PW),
                "quick:{PLAIN}quick-pw::::::pass=%s" % BACKEND_PW]

    def login_time(self, pw, ip):
        dt, tagged = timed_imap_login(self.bed, "imaps", "slow", pw, source_ip=ip)
        return dt, tagged

    def test_repeated_logins_are_answered_from_the_cache(self):
        # The key holds the client's address: each new source address is a miss.
        misses, hits = [], []
        for i in range(3):
            dt, tagged = self.login_time("slow-old-1", "127.0.0.%d" % (10 + i))
            self.assertTrue(tagged.startswith(b"a OK"), tagged)
            misses.append(dt)
        for i in range(4):
            dt, tagged = self.login_time("slow-old-1", "127.0.0.10")
            self.assertTrue(tagged.startswith(b"a OK"), tagged)
            hits.append(dt)
        msg = "uncached %s, cached %s" % (["%.3f" % x for x in misses],
                                          ["%.3f" % x for x in hits])
        self.assertLess(statistics.median(hits) * 2, statistics.median(misses), msg)
        print("\n  slow login: " + msg)

    def test_cached_refusal_is_logged_as_cached(self):
        pl = LogWindow(self.bed.postern.log)
        for _ in range(2):
            ok, _, _ = imap_login(self.bed, "imaps", "quick", "wrong-1")
            self.assertFalse(ok)
        details = re.findall(r'auth failed: .* user=quick backend=- detail="([^"]*)"', pl.text())
        self.assertEqual(details, ["passwd-file:users: password mismatch",
                                   "passwd-file:users: cached: password mismatch"])

    def test_changed_password_is_never_served_from_the_cache(self):
        ip = "127.0.0.20"
        # Fill the cache both ways: the old password accepted, the new refused.
        for _ in range(2):
            dt, tagged = self.login_time("slow-old-1", ip)
            self.assertTrue(tagged.startswith(b"a OK"), tagged)
            dt, tagged = self.login_time("slow-new-22", ip)
            self.assertTrue(tagged.startswith(b"a NO"), tagged)
        pl = LogWindow(self.bed.postern.log)
        self.write_lines(["slow:%s::::::pass=%s" % (doveadm_pw("ARGON2ID", "slow-new-22"),
                                                    BACKEND_PW), self.baseline()[1]])
        self.assertIsNotNone(self.wait_current(), self.bed.postern.log()[-2000:])
        dt, tagged = self.login_time("slow-old-1", ip)
        self.assertTrue(tagged.startswith(b"a NO [AUTHENTICATIONFAILED]"), tagged)
        dt, tagged = self.login_time("slow-new-22", ip)
        self.assertTrue(tagged.startswith(b"a OK"), tagged)
        details = re.findall(r'auth failed: .* user=slow backend=- detail="([^"]*)"', pl.text())
        self.assertEqual(details, ["passwd-file:users: password mismatch"], pl.text())

    def test_ttl_ends_a_cached_answer(self):
        ip = "127.0.0.30"
        first, _ = self.login_time("slow-old-1", ip)
        hit, _ = self.login_time("slow-old-1", ip)
        time.sleep(4.5)
        again, tagged = self.login_time("slow-old-1", ip)
        self.assertTrue(tagged.startswith(b"a OK"), tagged)
        msg = "first %.3f, cached %.3f, after the TTL %.3f" % (first, hit, again)
        self.assertLess(hit * 2, again, msg)
        print("\n  " + msg)


if __name__ == "__main__":
    unittest.main()
