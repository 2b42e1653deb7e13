"""The POP3-to-IMAP gateway against Dovecot's own POP3 server (issue 8, "How
it is shown", 1): one Maildir, served once by Dovecot's POP3 server directly
and once by postern translating POP3 onto Dovecot's IMAP
(backends[].pop3_mode: gateway). For every message STAT, LIST, UIDL, RETR
(the whole answer, first line included) and TOP with several line counts are
identical byte for byte, also for awkward messages and while another IMAP
client expunges a message mid-session; a pipelined burst gets the same
answers in the same order.

The one deliberate difference: a message whose very first byte is "." is
dot-stuffed by the gateway (RFC 1939 section 3 stuffs every line, the first
one too) and not by Dovecot 2.3.19, which leaves the first byte of a RETR or
TOP body unstuffed (protocol/dot_stuffer.h)."""

import hashlib
import re
import unittest

import harness
from harness import DIRECT

MiB = 1024 * 1024

HEAD = ("From: <ana@example.org>\n"
        "To: alice <alice@example.test>\n"
        "Subject: {subject}\n"
        "Date: Tue, 14 Nov 2023 22:13:20 +0000\n"
        "Message-ID: <{subject}@gateway.example>\n")


def head(subject):
    return HEAD.format(subject=subject).encode()


# (name, raw bytes of the Maildir file), in the order they get their UIDs.
AWKWARD = [
    ("dots", head("dots") + b"\n.leading dot\n..two dots\n.\n...\nplain line\n"
     b". space after dot\n.\n"),
    ("only-dot-body", head("only-dot-body") + b"\n.\n"),
    ("only-dot-no-newline", head("only-dot-no-newline") + b"\n."),
    ("eight-bit", head("eight-bit") + b"\n" + "Grüße aus Köln\n".encode("utf-8")
     + b"\xe9\xff raw latin-1 bytes\n\x80\n.\xe9 dot then 8-bit\n"),
    ("empty-body", head("empty-body") + b"\n"),
    ("no-final-newline", head("no-final-newline") + b"\nline one\nline two"),
    ("long-line", head("long-line") + b"\n" + b"x" * (100 * 1024) + b"\n.end\n"),
    ("long-line-no-newline", head("long-line-no-newline") + b"\nshort\n" + b"y" * (100 * 1024)),
    ("headers-only", head("headers-only")),
    ("blank-first", b"\nbody right after an empty header\n.\nend\n"),
    ("trailing-blank-lines", head("trailing-blank-lines") + b"\ntext\n\n\n"),
    ("bare-cr", head("bare-cr").replace(b"\n", b"\r\n") + b"\r\na\rb\r\n\r\n.x\rc\r\n"
     b"\r.dot after cr\r\ntail\r"),
    ("mixed-lf-crlf", head("mixed-lf-crlf") + b"\nl1\r\nl2\nl3\r\n\n.l5\r\n"),
    ("victim", head("victim") + b"\nexpunged by another IMAP client mid-session\n"),
    ("dot-first", b".hidden: 1\n" + head("dot-first") + b"\nbody\n"),
]
# The deliberate difference (module docstring).
DOT_FIRST = "dot-first"
VICTIM = "victim"
BIG = 20 * MiB
# TOP line counts: none, one, a few, more than any body has.
TOP_LINES = (0, 1, 5, 10 ** 7)


def digest(b):
    return "%d bytes sha256 %s" % (len(b), hashlib.sha256(b).hexdigest()[:16])


@unittest.skipIf(DIRECT, "compares Dovecot's POP3 with the gateway itself")
class GatewayDifferentialTest(harness.BedTestCase):
    """alice's POP3 goes through the gateway; Dovecot's own POP3 port serves
    the same Maildir."""

    gateway_users = ("alice",)

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        dv = cls.bed.dovecot
        # After the testbed's 5 sample messages (which hold "." lines too).
        cls.names = ["sample%d" % i for i in range(len(dv.messages("alice")))]
        for name, data in AWKWARD[:7]:
            dv.add_raw_message("alice", data)
            cls.names.append(name)
        dv.add_message("alice", BIG)  # random lines; "." lines; a lone "."
        cls.names.append("big")
        for name, data in AWKWARD[7:]:
            dv.add_raw_message("alice", data)
            cls.names.append(name)

    def direct(self, user="alice"):
        """A POP3 session on Dovecot's own POP3 port (plaintext: Dovecot
        runs without TLS here and trusts loopback)."""
        d = self.bed.dovecot
        c = harness.Conn((harness.HOST, d.pop3_port), timeout=60)
        self.addCleanup(c.close)
        c.greeting = c.readline()
        self.assertTrue(c.greeting.startswith(b"+OK"), c.greeting)
        return c

    def gateway(self, listener="pop3s"):
        c = self.connect(listener)
        c.timeout = 60
        self.assertTrue(c.greeting.startswith(b"+OK"), c.greeting)
        return c

    def login(self, c, user="alice"):
        self.assertEqual(c.pop3_raw("USER " + user), b"+OK\r\n")
        self.assertEqual(c.pop3_raw("PASS demo"), b"+OK Logged in.\r\n")

    def imap(self, user="alice"):
        """A direct IMAP session on Dovecot with INBOX selected."""
        d = self.bed.dovecot
        c = harness.Conn((harness.HOST, d.imap_port), timeout=30)
        self.addCleanup(c.close)
        c.readline()
        _, t = c.imap("a", "LOGIN %s demo" % user)
        self.assertTrue(t.startswith(b"a OK"), t)
        _, t = c.imap("b", "SELECT INBOX")
        self.assertTrue(t.startswith(b"b OK"), t)
        return c

    def both(self, command, multiline, d, g, number=None):
        """The answers of Dovecot (d) and the gateway (g) to one command."""
        return d.pop3_raw(command, multiline), g.pop3_raw(command, multiline)

    def assert_same(self, command, want, got, name=None):
        if want == got:
            return
        i = next((k for k in range(min(len(want), len(got))) if want[k] != got[k]),
                 min(len(want), len(got)))
        self.fail("%s%s: Dovecot %s, gateway %s; first difference at byte %d:\n"
                  "  Dovecot: %r\n  gateway: %r" % (
                      command, " (%s)" % name if name else "", digest(want), digest(got), i,
                      want[max(0, i - 40):i + 40], got[max(0, i - 40):i + 40]))

    def compare_message(self, d, g, n, name):
        """RETR n and TOP n k on both sides: identical, but for dot-first."""
        commands = [("RETR %d" % n, True), ("LIST %d" % n, False), ("UIDL %d" % n, False)]
        commands += [("TOP %d %d" % (n, k), True) for k in TOP_LINES]
        for command, multi in commands:
            want, got = self.both(command, multi, d, g)
            self.assertTrue(want.startswith(b"+OK"), (command, name, want[:100]))
            if name == DOT_FIRST and multi:
                # Dovecot leaves the first byte unstuffed; the gateway stuffs
                # it (RFC 1939 section 3). Everything else is the same.
                first = want[:want.index(b"\r\n") + 2]
                self.assertTrue(want[len(first):].startswith(b".hidden"), want[:80])
                self.assert_same(command, first + b"." + want[len(first):], got, name)
            else:
                self.assert_same(command, want, got, name)

    def test_mailbox_identical_with_a_message_expunged_mid_session(self):
        d = self.direct()
        g = self.gateway()
        self.login(d)
        self.login(g)
        n_msgs = len(self.names)
        stat_d, stat_g = self.both("STAT", False, d, g)
        self.assert_same("STAT", stat_d, stat_g)
        self.assertTrue(stat_g.startswith(b"+OK %d " % n_msgs), stat_g)
        listing = {}
        for command in ("LIST", "UIDL"):
            want, got = self.both(command, True, d, g)
            self.assert_same(command, want, got)
            listing[command] = got
        self.assertEqual(listing["LIST"].count(b"\r\n"), n_msgs + 2)

        # Another IMAP client expunges one message after both sessions
        # numbered the maildrop.
        victim = self.names.index(VICTIM) + 1
        imap = self.imap()
        untagged, t = imap.imap("s", "UID SEARCH SUBJECT victim")
        uids = re.findall(rb"\d+", b"".join(u for u in untagged if u.startswith(b"* SEARCH")))
        self.assertEqual(len(uids), 1, untagged)
        _, t = imap.imap("f", "UID STORE %s +FLAGS.SILENT (\\Deleted)" % uids[0].decode())
        self.assertTrue(t.startswith(b"f OK"), t)
        _, t = imap.imap("e", "UID EXPUNGE %s" % uids[0].decode())
        self.assertTrue(t.startswith(b"e OK"), t)
        imap.imap("l", "LOGOUT")
        self.assertFalse(any(b"expunged by another IMAP client" in m
                             for m in self.bed.dovecot.messages("alice")))

        for n, name in enumerate(self.names, 1):
            with self.subTest(message=n, name=name):
                if n == victim:
                    continue
                self.compare_message(d, g, n, name)

        # The expunged message: both answer -ERR (Dovecot's text may differ);
        # the gateway's listing still shows it (its snapshot, RFC 1939
        # section 4: the numbering stays fixed).
        for command in ("RETR %d" % victim, "TOP %d 0" % victim, "TOP %d 5" % victim):
            want, got = self.both(command, True, d, g)
            self.assertTrue(want.startswith(b"-ERR"), (command, want[:200]))
            self.assertEqual(got, b"-ERR Message %d expunged.\r\n" % victim, command)
        want, got = self.both("LIST %d" % victim, False, d, g)
        self.assertTrue(got.startswith(b"+OK %d " % victim), got)
        for command in ("LIST", "UIDL"):
            got = g.pop3_raw(command, True)
            self.assertEqual(got, listing[command], "%s after the expunge" % command)
        self.assertEqual(g.pop3_raw("STAT"), stat_g)

        want, got = self.both("QUIT", False, d, g)
        self.assert_same("QUIT", want, got)
        self.assertEqual(got, b"+OK Logging out.\r\n")

    def test_pipelined_burst_identical(self):
        # RFC 2449 section 6.6: a burst in one write, answered in order.
        # Login included; DELE is taken back by RSET, so nothing changes.
        burst = ["USER alice", "PASS demo", "STAT", "LIST", "UIDL", "RETR 1", "TOP 2 3",
                 "LIST 2", "UIDL 3", "DELE 3", "LIST 3", "STAT", "RETR 3", "RSET", "LIST 3",
                 "RETR 6", "TOP 7 0", "RETR 12", "TOP 12 1", "RETR 5", "NOOP", "LIST 999",
                 "RETR x", "TOP 1", "QUIT"]
        multi = {"LIST", "UIDL", "RETR", "TOP"}
        answers = []
        for c in (self.direct(), self.gateway()):
            c.send("".join(cmd + "\r\n" for cmd in burst))
            got = []
            for cmd in burst:
                parts = cmd.split()
                is_multi = parts[0] in multi and (parts[0] in ("RETR", "TOP") or len(parts) == 1)
                first = c.readline(timeout=30)
                if is_multi and first.startswith(b"+OK"):
                    first += c.pop3_raw_body(timeout=30)
                got.append(first)
            self.assertTrue(c.closed_within(10))
            answers.append(got)
        for cmd, want, got in zip(burst, *answers):
            with self.subTest(command=cmd):
                self.assert_same(cmd, want, got)

    def test_uidl_matches_imap_uids(self):
        # %08Xu%08Xv (Dovecot 2.3's default pop3_uidl_format): UID and
        # UIDVALIDITY in hexadecimal, as Dovecot's own POP3 gives them.
        imap = self.imap()
        untagged, _ = imap.imap("s", "STATUS INBOX (UIDVALIDITY)")
        imap.imap("l", "LOGOUT")
        validity = int(re.search(rb"UIDVALIDITY (\d+)", b"".join(untagged)).group(1))
        g = self.gateway()
        self.login(g)
        lines = g.pop3_raw("UIDL", True).split(b"\r\n")[1:-2]
        imap = self.imap()
        untagged, _ = imap.imap("f", "FETCH 1:* (UID)")
        uids = [int(m) for m in re.findall(rb"\(UID (\d+)\)", b"".join(untagged))]
        self.assertEqual(lines, [b"%d %08x%08x" % (n, uid, validity)
                                 for n, uid in enumerate(uids, 1)])
        g.pop3_raw("QUIT")


if __name__ == "__main__":
    unittest.main()
