"""Issue 9, master users end to end: a real Dovecot with a master passdb
(`passdb { driver = passwd-file; master = yes }`), postern's backends with
master_user / master_password_file, and users whose passwords only postern's
passwd-file knows. After the file accepted the login, postern logs in with
AUTHENTICATE PLAIN / AUTH PLAIN as the master user with the user as the
authorization identity; Dovecot's log shows "Master user logging in as
<user>". Over IMAP, POP3, and the POP3-to-IMAP gateway."""

import os
import re
import unittest

import harness
from harness import crlf
from dirhelp import (DirTestCase, base_listeners, doveadm_pw, imap_count, imap_login, listener,
                     pop3_count, pop3_login)

MASTER = "postern-master"
MASTER_PW = "m4ster-Secret-9"


class MasterUserTest(DirTestCase):

    @classmethod
    def dovecot_options(cls):
        # Dovecot's own passwords for these users are ones nobody types.
        return dict(users=(), passwords={"mu": "dovecot-only-1", "mu2": "dovecot-only-2",
                                         "gwuser": "dovecot-only-3", "flagged": "dovecot-only-4",
                                         "bm": "dovecot-only-5"},
                    master_users={MASTER: MASTER_PW}, extra_conf="auth_verbose = yes\n")

    @classmethod
    def prepare(cls):
        t = cls.bed.tmp
        cls.master_file = os.path.join(t, "master.pw")
        with open(cls.master_file, "w") as f:
            f.write(MASTER_PW + "\n")
        bad = os.path.join(t, "badmaster.pw")
        with open(bad, "w") as f:
            f.write("not-the-master-pw\n")
        cls.bad_master_file = bad
        cls.passwd = os.path.join(t, "users.passwd")
        with open(cls.passwd, "w") as f:
            f.write("mu:%s::::::\n" % doveadm_pw("SHA256-CRYPT", "postern-only-1"))
            f.write("gwuser:%s::::::backend=dovecot-gw\n" % doveadm_pw("BLF-CRYPT", "gw-pw-2"))
            f.write("alias:{PLAIN}alias-pw::::::destuser=mu2\n")
            f.write("flagged:{PLAIN}fl-pw::::::master\n")
            f.write("bm:{PLAIN}bm-pw::::::backend=dovecot-badmaster\n")

    @classmethod
    def postern_config(cls):
        d = cls.bed.dovecot

        def backend(name, master_file, **kw):
            b = {"name": name, "address": "127.0.0.1", "imap_port": d.imap_port,
                 "pop3_port": d.pop3_port, "master_user": MASTER,
                 "master_password_file": master_file}
            b.update(kw)
            return b

        return {
            "listeners": base_listeners(cls.bed) + [
                listener("imaps-pass", "imap", "implicit", directory="passthrough")],
            "backends": [backend("dovecot", cls.master_file),
                         backend("dovecot-gw", cls.master_file, pop3_mode="gateway"),
                         backend("dovecot-badmaster", cls.bad_master_file)],
            "routing": {"default_backend": "dovecot", "users": {}},
            "directories": [{"name": "users", "type": "passwd-file", "path": cls.passwd}],
            "directory": "users",
        }

    def master_logins(self, window, user):
        return len(re.findall(r"auth: Info: Master user logging in as %s\n" % re.escape(user),
                              window.text()))

    def test_dovecot_does_not_know_the_password(self):
        """The premise: Dovecot itself refuses mu's postern password."""
        c = harness.Conn((harness.HOST, self.bed.dovecot.imap_port))
        self.addCleanup(c.close)
        c.readline()
        _, tagged = c.imap("a", "LOGIN mu postern-only-1")
        self.assertTrue(tagged.startswith(b"a NO"), tagged)

    def test_imap_logs_in_as_master(self):
        n = len(self.messages("mu"))
        for name in ("imaps", "imap"):
            dv = self.dovecot_window()
            ok, text, got = imap_login(self.bed, name, "mu", "postern-only-1", then=imap_count)
            self.assertTrue(ok, (name, text))
            self.assertEqual(got, n)
            self.assertTrue(dv.wait(r"imap-login: Info: Login: user=<mu>, method=PLAIN"),
                            dv.text())
            self.assertEqual(self.master_logins(dv, "mu"), 1, dv.text())
        self.assertNotIn(MASTER_PW, self.bed.postern.log())

    def test_pop3_logs_in_as_master(self):
        msgs = self.messages("mu")
        for name in ("pop3s", "pop3"):
            dv = self.dovecot_window()
            ok, text, got = pop3_login(self.bed, name, "mu", "postern-only-1",
                                       then=lambda p: (pop3_count(p), p.retr(1)[1]))
            self.assertTrue(ok, (name, text))
            self.assertEqual(got[0], len(msgs))
            self.assertEqual(b"\r\n".join(got[1]) + b"\r\n", crlf(msgs[0]))
            self.assertTrue(dv.wait(r"pop3-login: Info: Login: user=<mu>, method=PLAIN"),
                            dv.text())
            self.assertEqual(self.master_logins(dv, "mu"), 1, dv.text())

    def test_pop3_gateway_logs_in_as_master_over_imap(self):
        msgs = self.messages("gwuser")
        dv = self.dovecot_window()

        def session(p):
            listing = p.list()[1]
            body = p.retr(len(msgs))[1]
            return len(listing), b"\r\n".join(body) + b"\r\n"

        ok, text, got = pop3_login(self.bed, "pop3s", "gwuser", "gw-pw-2", then=session)
        self.assertTrue(ok, text)
        self.assertEqual(got, (len(msgs), crlf(msgs[-1])))
        # The gateway speaks IMAP to the backend.
        self.assertTrue(dv.wait(r"imap-login: Info: Login: user=<gwuser>, method=PLAIN"),
                        dv.text())
        self.assertNotIn("pop3-login: Info: Login: user=<gwuser>", dv.text())
        self.assertEqual(self.master_logins(dv, "gwuser"), 1, dv.text())
        self.assert_postern_logged(r"session end: .* user=gwuser backend=dovecot-gw stage=gateway")

    def test_destuser_with_a_master(self):
        dv = self.dovecot_window()
        ok, text, n = imap_login(self.bed, "imaps", "alias", "alias-pw", then=imap_count)
        self.assertTrue(ok, text)
        self.assertEqual(n, len(self.messages("mu2")))
        ok, text, _ = pop3_login(self.bed, "pop3s", "alias", "alias-pw")
        self.assertTrue(ok, text)
        self.assertTrue(dv.wait(r"pop3-login: Info: Login: user=<mu2>"), dv.text())
        self.assertEqual(self.master_logins(dv, "mu2"), 2, dv.text())
        self.assertNotIn("user=<alias>", dv.text())

    def test_master_field(self):
        dv = self.dovecot_window()
        ok, text, _ = imap_login(self.bed, "imaps", "flagged", "fl-pw")
        self.assertTrue(ok, text)
        self.assertTrue(dv.wait(r"Login: user=<flagged>"), dv.text())
        self.assertEqual(self.master_logins(dv, "flagged"), 1, dv.text())

    def test_wrong_password_never_reaches_dovecot(self):
        dv = self.dovecot_window()
        for fn, name in ((imap_login, "imaps"), (pop3_login, "pop3s"), (pop3_login, "pop3")):
            ok, text, _ = fn(self.bed, name, "mu", "dovecot-only-1")  # Dovecot's, not the file's
            self.assertFalse(ok, text)
            ok, text, _ = fn(self.bed, name, "gwuser", "gw-pw-2x")
            self.assertFalse(ok, text)
        self.assert_backend_untouched(dv)

    def test_wrong_master_password_is_refused(self):
        """A backend whose master password is wrong: Dovecot refuses the
        master, the client is refused, nobody is logged in."""
        dv = self.dovecot_window()
        ok, text, _ = imap_login(self.bed, "imaps", "bm", "bm-pw")
        self.assertFalse(ok, text)
        ok, text, _ = pop3_login(self.bed, "pop3s", "bm", "bm-pw")
        self.assertFalse(ok, text)
        self.assertTrue(dv.wait(r"passwd-file\(%s,[^)]*\): Password mismatch" % MASTER),
                        dv.text())
        self.assertNotIn("Login: user=<bm>", dv.text())
        self.assertNotIn("not-the-master-pw", self.bed.postern.log())

    def test_passthrough_listener_uses_the_users_own_password(self):
        """The master login is only for logins a directory checked: on a
        passthrough listener Dovecot checks mu's own password."""
        dv = self.dovecot_window()
        ok, text, _ = imap_login(self.bed, "imaps-pass", "mu", "dovecot-only-1")
        self.assertTrue(ok, text)
        ok, text, _ = imap_login(self.bed, "imaps-pass", "mu", "postern-only-1")
        self.assertFalse(ok, text)
        self.assertTrue(dv.wait(r"passwd-file\(mu,[^)]*\): Password mismatch"), dv.text())
        self.assertEqual(self.master_logins(dv, "mu"), 0, dv.text())


if __name__ == "__main__":
    unittest.main()
