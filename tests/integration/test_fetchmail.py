"""fetchmail, a real client, downloads a whole mailbox through postern over
POP3S and IMAPS (keep, fetchall) into an MDA that writes one file per message;
what it delivered must be the Maildir's messages."""

import os
import re
import shutil
import stat
import subprocess
import unittest

import harness

MDA = """#!/bin/sh
# One file per delivered message.
exec cat > "$(mktemp "%s/msg.XXXXXXXX")"
"""


def strip_fetchmail_headers(data):
    """fetchmail prepends its own Received: header (possibly folded)."""
    m = re.match(rb"Received: [^\n]*\n(?:[ \t][^\n]*\n)*", data)
    return data[m.end():] if m else data


@unittest.skipUnless(shutil.which("fetchmail"), "fetchmail not installed")
class FetchmailTest(harness.BedTestCase):
    dovecot_kwargs = {"extra_messages": {"alice": [70000, 300000]}}

    def fetch(self, name, protocol, listener, user, tls):
        """Runs fetchmail once; returns the delivered messages and its log."""
        home = os.path.join(self.bed.tmp, "fm-" + name)
        out = os.path.join(home, "out")
        os.makedirs(out)
        mda = os.path.join(home, "mda.sh")
        with open(mda, "w") as f:
            f.write(MDA % out)
        os.chmod(mda, 0o755)
        host, port = self.bed.addr(listener)
        rc = os.path.join(home, "fetchmailrc")
        with open(rc, "w") as f:
            # The certificate names localhost (fetchmail ignores IP SANs).
            f.write(
                'set no syslog\n'
                'set no bouncemail\n'
                'poll %s service %d protocol %s timeout 30\n'
                '  user "%s" there with password "demo" is "root" here\n'
                '  %s sslcertfile "%s" sslcommonname "localhost"\n'
                '  keep fetchall no rewrite\n'
                '  mda "%s"\n' % (host, port, protocol, user, tls, self.bed.cert, mda))
        os.chmod(rc, stat.S_IRUSR | stat.S_IWUSR)  # fetchmail insists
        env = dict(os.environ, HOME=home, FETCHMAILHOME=home)
        r = subprocess.run(["fetchmail", "-f", rc, "--nodetach", "-v"], capture_output=True,
                           env=env, timeout=120, stdin=subprocess.DEVNULL)
        log = (r.stdout + r.stderr).decode(errors="replace")
        # 0: mail retrieved (1 would be: no mail).
        self.assertEqual(r.returncode, 0, log[-3000:])
        got = []
        for name in sorted(os.listdir(out)):
            with open(os.path.join(out, name), "rb") as f:
                got.append(strip_fetchmail_headers(f.read()))
        return got, log

    def check(self, user, got, log):
        want = self.messages(user)
        self.assertEqual(len(got), len(want), log[-2000:])
        self.assertEqual(sorted(got), sorted(want))

    def test_pop3s_whole_mailbox(self):
        got, log = self.fetch("pop3s", "POP3", "pop3s", "alice", "ssl sslcertck")
        self.check("alice", got, log)

    def test_imaps_whole_mailbox(self):
        got, log = self.fetch("imaps", "IMAP", "imaps", "alice", "ssl no sslcertck")
        self.check("alice", got, log)

    def test_imap_starttls_mailbox(self):
        # Without "ssl", an sslproto that asks for TLS makes fetchmail STARTTLS.
        got, log = self.fetch("imap", "IMAP", "imap", "bob", 'sslproto "tls1.2+" sslcertck')
        self.assertIn("STARTTLS", log)
        self.check("bob", got, log)

    def test_pop3_stls_mailbox(self):
        got, log = self.fetch("pop3", "POP3", "pop3", "carol", 'sslproto "tls1.2+" sslcertck')
        self.assertIn("STLS", log)
        self.check("carol", got, log)


if __name__ == "__main__":
    unittest.main()
