"""What the POP3-to-IMAP gateway changes in the mailbox (issue 8, "How it is
shown", 2 and 3), checked in Dovecot's Maildir on disk and over a direct IMAP
session:

- deletion (RFC 1939 section 6): DELE + QUIT removes exactly the marked
  messages; RSET, a disconnect, a reset and an idle timeout remove none; a
  message delivered or expunged elsewhere mid-session changes nothing of it;
  another client's \\Deleted flag is left alone. Without UIDPLUS (Dovecot's
  imap_capability without it) DELE + QUIT still works when no other message
  carries \\Deleted, and answers -ERR, deleting nothing, when one does.
- \\Seen, against Dovecot's own POP3 server on the same Maildir: RETR marks
  (stored at QUIT, and when the client just leaves), TOP does not, RSET
  forgets; gateway.seen: never changes nothing, immediate marks at RETR,
  and an idle timeout stores them too (the gateway hears of it: Stage::
  IdleTimeout)."""

import os
import re
import socket
import time
import unittest

import fakes
import harness
from harness import DIRECT

# Dovecot 2.3.19's post-login capabilities, UIDPLUS left out.
NO_UIDPLUS = ("imap_capability = IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT "
              "SORT=DISPLAY THREAD=REFERENCES THREAD=REFS THREAD=ORDEREDSUBJECT MULTIAPPEND "
              "URL-PARTIAL CATENATE UNSELECT CHILDREN NAMESPACE LIST-EXTENDED I18NLEVEL=1 "
              "CONDSTORE QRESYNC ESEARCH ESORT SEARCHRES WITHIN CONTEXT=SEARCH LIST-STATUS BINARY "
              "MOVE SNIPPET=FUZZY PREVIEW=FUZZY PREVIEW STATUS=SIZE SAVEDATE LITERAL+ NOTIFY")

# Every test has its own user (own Maildir): u0, u1, ...
USERS = tuple("u%d" % i for i in range(12))
MSGS_PER_USER = 6


def message(user, i):
    return ("From: <ana@example.org>\nTo: %s <%s@example.test>\nSubject: m%d\n"
            "Message-ID: <%s.m%d@gateway.example>\n\nbody of m%d\n.dot line\n"
            % (user, user, i, user, i, i)).encode()


class GatewayBed(harness.BedTestCase):
    """Users u0.. hold messages m1..m6 (Subject: mN), POP3 through the gateway."""

    gateway_users = USERS
    dovecot_extra_conf = ""

    @classmethod
    def setUpClass(cls):
        # Dovecot starts with only the users' Maildirs; the messages are
        # added before anybody looked (UIDs 1..6 in order).
        cls.dovecot_kwargs = {"users": USERS, "extra_conf": cls.dovecot_extra_conf}
        super().setUpClass()
        for u in USERS:
            for path in os.listdir(os.path.join(cls.bed.dovecot.maildir(u), "cur")):
                os.unlink(os.path.join(cls.bed.dovecot.maildir(u), "cur", path))
            for i in range(1, MSGS_PER_USER + 1):
                cls.bed.dovecot.add_raw_message(u, message(u, i))

    # --- the mailbox on disk ---

    def on_disk(self, user):
        """{subject: maildir flags} of the user's messages on disk
        (Maildir flag letters: S \\Seen, T \\Deleted)."""
        md = self.bed.dovecot.maildir(user)
        out = {}
        for sub in ("cur", "new"):
            for name in os.listdir(os.path.join(md, sub)):
                with open(os.path.join(md, sub, name), "rb") as f:
                    m = re.search(rb"^Subject: (\S+)", f.read(), re.M)
                flags = name.split(":2,", 1)[1] if ":2," in name else ""
                out[m.group(1).decode()] = flags
        return out

    def subjects(self, user):
        return sorted(self.on_disk(user))

    def all_but(self, *numbers):
        return sorted("m%d" % i for i in range(1, MSGS_PER_USER + 1) if i not in numbers)

    # --- sessions ---

    def pop3(self, user, listener="pop3s"):
        c = self.connect(listener)
        c.port = c.sock.getsockname()[1]
        self.assertTrue(c.greeting.startswith(b"+OK"), c.greeting)
        self.assertEqual(c.pop3_raw("USER " + user), b"+OK\r\n")
        self.assertEqual(c.pop3_raw("PASS demo"), b"+OK Logged in.\r\n")
        return c

    def direct_pop3(self, user):
        c = harness.Conn((harness.HOST, self.bed.dovecot.pop3_port), timeout=15)
        self.addCleanup(c.close)
        c.greeting = c.readline()
        self.assertEqual(c.pop3_raw("USER " + user), b"+OK\r\n")
        self.assertEqual(c.pop3_raw("PASS demo"), b"+OK Logged in.\r\n")
        return c

    def imap(self, user):
        c = harness.Conn((harness.HOST, self.bed.dovecot.imap_port), timeout=15)
        self.addCleanup(c.close)
        c.readline()
        _, t = c.imap("a", "LOGIN %s demo" % user)
        self.assertTrue(t.startswith(b"a OK"), t)
        _, t = c.imap("b", "SELECT INBOX")
        self.assertTrue(t.startswith(b"b OK"), t)
        return c

    def imap_do(self, user, *commands):
        c = self.imap(user)
        for i, cmd in enumerate(commands):
            _, t = c.imap("c%d" % i, cmd)
            self.assertTrue(t.startswith(b"c%d OK" % i), (cmd, t))
        c.imap("z", "LOGOUT")
        c.close()

    def seen(self, user):
        """Subjects of the messages that carry \\Seen, over IMAP."""
        c = self.imap(user)
        untagged, _ = c.imap("f", "FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        c.imap("z", "LOGOUT")
        c.close()
        out = set()
        for r in untagged:
            m = re.search(rb"Subject: (\S+)", r)
            if m and b"\\Seen" in r.split(b"BODY[", 1)[0]:
                out.add(m.group(1).decode())
        return out

    def wait_session_end(self, c, timeout=10):
        """The gateway session of Conn c logged its end (its backend work,
        \\Seen and LOGOUT, is over)."""
        f = fakes.wait_session_end(self.bed.postern, c.port, timeout)
        self.assertIsNotNone(f, "no session end for port %d" % c.port)
        return f


@unittest.skipIf(DIRECT, "the gateway is postern's")
class GatewayDeleteTest(GatewayBed):
    """Dovecot with UIDPLUS: QUIT stores \\Deleted on the marked UIDs and
    UID EXPUNGEs exactly those."""

    def test_dele_quit_deletes_exactly_the_marked(self):
        c = self.pop3("u0")
        for n in (2, 4, 5):
            self.assertEqual(c.pop3_raw("DELE %d" % n), b"+OK Marked to be deleted.\r\n")
        self.assertEqual(c.pop3_raw("STAT"), b"+OK 3 %d\r\n" % sum(
            len(harness.crlf(message("u0", i))) for i in (1, 3, 6)))
        self.assertEqual(c.pop3_raw("QUIT"), b"+OK Logging out, messages deleted.\r\n")
        self.assertTrue(c.closed_within(5))
        self.assertEqual(self.subjects("u0"), self.all_but(2, 4, 5))
        self.assertEqual(self.wait_session_end(c).get("deleted"), "3")

    def test_dele_rset_quit_deletes_none(self):
        c = self.pop3("u1")
        for n in (1, 3):
            self.assertTrue(c.pop3_raw("DELE %d" % n).startswith(b"+OK"))
        self.assertEqual(c.pop3_raw("RSET"), b"+OK\r\n")
        self.assertEqual(c.pop3_raw("QUIT"), b"+OK Logging out.\r\n")
        self.assertTrue(c.closed_within(5))
        self.assertEqual(self.subjects("u1"), self.all_but())
        self.assertNotIn("T", "".join(self.on_disk("u1").values()))

    def test_dele_disconnect_deletes_none(self):
        c = self.pop3("u2")
        for n in (1, 2, 6):
            self.assertTrue(c.pop3_raw("DELE %d" % n).startswith(b"+OK"))
        c.sock.shutdown(socket.SHUT_RDWR)
        c.close()
        self.wait_session_end(c)
        self.assertEqual(self.subjects("u2"), self.all_but())
        self.assertNotIn("T", "".join(self.on_disk("u2").values()))

    def test_dele_reset_deletes_none(self):
        c = self.pop3("u3", listener="pop3-plain")
        self.assertTrue(c.pop3_raw("DELE 3").startswith(b"+OK"))
        fakes.reset(c.sock)
        self.wait_session_end(c)
        self.assertEqual(self.subjects("u3"), self.all_but())

    def test_dele_idle_timeout_deletes_none(self):
        self.bed.start_postern({"timeouts": {"pop3_idle": "1s"}})
        self.addCleanup(self.bed.start_postern)
        c = self.pop3("u4")
        for n in (1, 2):
            self.assertTrue(c.pop3_raw("DELE %d" % n).startswith(b"+OK"))
        start = time.monotonic()
        self.assertTrue(c.closed_within(10), "no idle timeout")
        self.assertLess(time.monotonic() - start, 8)
        f = self.wait_session_end(c)
        self.assertEqual(f.get("end"), "idle timeout", f)
        self.assertEqual(self.subjects("u4"), self.all_but())
        self.assertNotIn("T", "".join(self.on_disk("u4").values()))

    def test_other_clients_deleted_flag_is_left_alone(self):
        # UID EXPUNGE removes only our UIDs (RFC 4315 section 2.1): another
        # client's \Deleted message stays, flagged.
        c = self.pop3("u5")
        self.imap_do("u5", "STORE 3 +FLAGS.SILENT (\\Deleted)")
        self.assertTrue(c.pop3_raw("DELE 1").startswith(b"+OK"))
        self.assertEqual(c.pop3_raw("QUIT"), b"+OK Logging out, messages deleted.\r\n")
        self.assertTrue(c.closed_within(5))
        disk = self.on_disk("u5")
        self.assertEqual(sorted(disk), self.all_but(1))
        self.assertIn("T", disk["m3"])

    def test_delivery_and_expunge_elsewhere_mid_session(self):
        # The numbering is fixed at login (RFC 1939 section 4): a message
        # delivered afterwards is not ours to delete even when every number
        # is marked; DELE of a message another client expunged is harmless.
        c = self.pop3("u6")
        self.assertTrue(c.pop3_raw("STAT").startswith(b"+OK 6 "))
        self.bed.dovecot.add_raw_message("u6", message("u6", 7))
        self.imap_do("u6", "STORE 2 +FLAGS.SILENT (\\Deleted)", "EXPUNGE")
        self.assertNotIn("m2", self.on_disk("u6"))
        self.assertIn("m7", self.on_disk("u6"))
        for n in range(1, 7):
            self.assertTrue(c.pop3_raw("DELE %d" % n).startswith(b"+OK"), n)
        self.assertEqual(c.pop3_raw("STAT"), b"+OK 0 0\r\n")
        self.assertEqual(c.pop3_raw("QUIT"), b"+OK Logging out, messages deleted.\r\n")
        self.assertTrue(c.closed_within(5))
        self.assertEqual(self.on_disk("u6"), {"m7": ""})

    def test_deleting_everything_twice_over(self):
        # Every message marked, DELE of a marked one refused, RSET and again.
        c = self.pop3("u7")
        for n in range(1, 7):
            self.assertTrue(c.pop3_raw("DELE %d" % n).startswith(b"+OK"))
        self.assertEqual(c.pop3_raw("DELE 3"), b"-ERR Message is deleted.\r\n")
        self.assertEqual(c.pop3_raw("LIST", True), b"+OK 0 messages:\r\n.\r\n")
        self.assertEqual(c.pop3_raw("RSET"), b"+OK\r\n")
        self.assertTrue(c.pop3_raw("LIST", True).startswith(b"+OK 6 messages:\r\n"))
        for n in (6, 1):
            self.assertTrue(c.pop3_raw("DELE %d" % n).startswith(b"+OK"))
        self.assertEqual(c.pop3_raw("QUIT"), b"+OK Logging out, messages deleted.\r\n")
        self.assertEqual(self.subjects("u7"), self.all_but(1, 6))


@unittest.skipIf(DIRECT, "the gateway is postern's")
class GatewayDeleteNoUidplusTest(GatewayBed):
    """Dovecot advertising no UIDPLUS: the gateway searches for other
    \\Deleted messages and expunges with a plain EXPUNGE only when there are
    none (DIGEST c.4)."""

    dovecot_extra_conf = NO_UIDPLUS

    def test_capabilities_lack_uidplus(self):
        c = harness.Conn((harness.HOST, self.bed.dovecot.imap_port), timeout=15)
        self.addCleanup(c.close)
        c.readline()
        _, t = c.imap("a", "LOGIN u11 demo")
        self.assertTrue(t.startswith(b"a OK [CAPABILITY IMAP4rev1 "), t)
        self.assertNotIn(b"UIDPLUS", t)
        self.assertNotIn(b"IMAP4rev2", t)

    def test_dele_quit_without_uidplus(self):
        c = self.pop3("u0")
        for n in (2, 3):
            self.assertTrue(c.pop3_raw("DELE %d" % n).startswith(b"+OK"))
        self.assertEqual(c.pop3_raw("QUIT"), b"+OK Logging out, messages deleted.\r\n")
        self.assertTrue(c.closed_within(5))
        self.assertEqual(self.subjects("u0"), self.all_but(2, 3))

    def test_other_deleted_message_refuses_quit(self):
        # Another client flagged message 4 \Deleted mid-session: a plain
        # EXPUNGE would remove it too, so nothing is expunged and QUIT says so.
        c = self.pop3("u1")
        self.imap_do("u1", "STORE 4 +FLAGS.SILENT (\\Deleted)")
        self.assertTrue(c.pop3_raw("DELE 1").startswith(b"+OK"))
        self.assertTrue(c.pop3_raw("DELE 2").startswith(b"+OK"))
        answer = c.pop3_raw("QUIT")
        self.assertTrue(c.closed_within(5))
        disk = self.on_disk("u1")
        self.assertEqual(sorted(disk), self.all_but(), "QUIT answered %r" % answer)
        self.assertTrue(answer.startswith(b"-ERR "), answer)
        self.assertEqual(sorted(disk), self.all_but())
        self.assertIn("T", disk["m4"])
        for m in ("m1", "m2", "m3", "m5", "m6"):
            self.assertNotIn("T", disk[m], m)

    def test_other_deleted_before_login_refuses_quit(self):
        self.imap_do("u2", "STORE 6 +FLAGS.SILENT (\\Deleted)")
        c = self.pop3("u2")
        self.assertTrue(c.pop3_raw("DELE 5").startswith(b"+OK"))
        self.assertTrue(c.pop3_raw("QUIT").startswith(b"-ERR "))
        disk = self.on_disk("u2")
        self.assertEqual(sorted(disk), self.all_but())
        self.assertEqual([m for m, f in sorted(disk.items()) if "T" in f], ["m6"])

    def test_delivery_mid_session_without_uidplus(self):
        # The plain EXPUNGE removes what carries \Deleted: only ours.
        c = self.pop3("u3")
        self.bed.dovecot.add_raw_message("u3", message("u3", 7))
        for n in range(1, 7):
            self.assertTrue(c.pop3_raw("DELE %d" % n).startswith(b"+OK"))
        self.assertEqual(c.pop3_raw("QUIT"), b"+OK Logging out, messages deleted.\r\n")
        self.assertEqual(self.on_disk("u3"), {"m7": ""})

    def test_rset_and_disconnect_without_uidplus(self):
        c = self.pop3("u4")
        self.assertTrue(c.pop3_raw("DELE 1").startswith(b"+OK"))
        self.assertEqual(c.pop3_raw("RSET"), b"+OK\r\n")
        self.assertEqual(c.pop3_raw("QUIT"), b"+OK Logging out.\r\n")
        c = self.pop3("u4")
        self.assertTrue(c.pop3_raw("DELE 1").startswith(b"+OK"))
        c.close()
        self.wait_session_end(c)
        self.assertEqual(self.subjects("u4"), self.all_but())
        self.assertNotIn("T", "".join(self.on_disk("u4").values()))


# \Seen scenarios: (POP3 commands after login, how the session ends,
# messages that end up \Seen as Dovecot's own POP3 server leaves them).
SEEN_SCENARIOS = [
    ("retr-top-quit", ["RETR 1", "TOP 2 5", "RETR 4"], "quit", {"m1", "m4"}),
    ("rset-forgets", ["RETR 1", "RETR 2", "RSET", "RETR 3"], "quit", {"m3"}),
    ("top-only", ["TOP 1 0", "TOP 2 100", "TOP 3 1"], "quit", set()),
    ("retr-disconnect", ["RETR 2", "TOP 3 0", "RETR 5"], "close", {"m2", "m5"}),
    ("rset-disconnect", ["RETR 1", "RSET"], "close", set()),
    ("retr-dele-disconnect", ["RETR 1", "RETR 2", "DELE 2"], "close", {"m1", "m2"}),
    ("retr-dele-rset-quit", ["RETR 6", "DELE 6", "RSET", "RETR 1"], "quit", {"m1"}),
]


@unittest.skipIf(DIRECT, "compares Dovecot's POP3 with the gateway")
class GatewaySeenTest(GatewayBed):
    """\\Seen through the gateway and through Dovecot's POP3, same Maildir."""

    def reset_seen(self, user):
        self.imap_do(user, "STORE 1:* -FLAGS.SILENT (\\Seen)")
        self.assertEqual(self.seen(user), set())

    def run_scenario(self, c, commands, end):
        for cmd in commands:
            multi = cmd.split()[0] in ("RETR", "TOP")
            self.assertTrue(c.pop3_raw(cmd, multi, timeout=15).startswith(b"+OK"), cmd)
        if end == "quit":
            self.assertTrue(c.pop3_raw("QUIT").startswith(b"+OK"))
            self.assertTrue(c.closed_within(5))
        else:
            c.close()

    def direct_scenario(self, user, commands, end):
        self.reset_seen(user)
        self.run_scenario(self.direct_pop3(user), commands, end)
        # Dovecot stores the flags when its pop3 process ends the session.
        harness.wait_for(lambda: not self.bed.dovecot.processes("pop3", user), timeout=10)
        self.assertFalse(self.bed.dovecot.processes("pop3", user))
        return self.seen(user)

    def gateway_scenario(self, user, commands, end):
        self.reset_seen(user)
        c = self.pop3(user)
        self.run_scenario(c, commands, end)
        self.wait_session_end(c)
        return self.seen(user)

    def test_seen_as_dovecot_pop3_sets_it(self):
        for name, commands, end, want in SEEN_SCENARIOS:
            with self.subTest(scenario=name):
                direct = self.direct_scenario("u0", commands, end)
                gateway = self.gateway_scenario("u0", commands, end)
                self.assertEqual(direct, want, "Dovecot's own POP3")
                self.assertEqual(gateway, want, "the gateway")

    def test_seen_is_stored_at_quit_not_before(self):
        c = self.pop3("u1")
        self.reset_seen("u1")
        self.assertTrue(c.pop3_raw("RETR 2", True).startswith(b"+OK"))
        self.assertEqual(self.seen("u1"), set())  # deferred: BODY.PEEK[]
        self.assertTrue(c.pop3_raw("QUIT").startswith(b"+OK"))
        self.assertEqual(self.seen("u1"), {"m2"})

    def test_seen_stored_at_idle_timeout(self):
        # The session ends (timeouts.pop3_idle) without QUIT: nothing is
        # deleted, and the \Seen flags are stored as when the client leaves
        # (README, gateway.seen: "stored at QUIT or when the session ends";
        # Dovecot's POP3 stores them when its own idle timeout ends a
        # session).
        self.bed.start_postern({"timeouts": {"pop3_idle": "1s"}})
        self.addCleanup(self.bed.start_postern)
        self.reset_seen("u4")
        c = self.pop3("u4")
        self.assertTrue(c.pop3_raw("RETR 2", True).startswith(b"+OK"))
        self.assertTrue(c.pop3_raw("DELE 3").startswith(b"+OK"))
        self.assertTrue(c.closed_within(10), "no idle timeout")
        self.assertEqual(self.wait_session_end(c).get("end"), "idle timeout")
        self.assertEqual(self.subjects("u4"), self.all_but())
        self.assertEqual(harness.wait_for(lambda: self.seen("u4"), timeout=3), {"m2"})

    def test_seen_never(self):
        self.bed.start_postern({"gateway": {"seen": "never"}})
        self.addCleanup(self.bed.start_postern)
        for name, commands, end, _ in SEEN_SCENARIOS:
            with self.subTest(scenario=name):
                self.assertEqual(self.gateway_scenario("u2", commands, end), set())

    def test_seen_immediate(self):
        # BODY[]: the server sets \Seen at RETR; RSET cannot take it back.
        self.bed.start_postern({"gateway": {"seen": "immediate"}})
        self.addCleanup(self.bed.start_postern)
        self.reset_seen("u3")
        c = self.pop3("u3")
        self.assertTrue(c.pop3_raw("RETR 3", True).startswith(b"+OK"))
        self.assertTrue(c.pop3_raw("TOP 4 1", True).startswith(b"+OK"))
        self.assertEqual(self.seen("u3"), {"m3"})
        self.assertEqual(c.pop3_raw("RSET"), b"+OK\r\n")
        self.assertTrue(c.pop3_raw("QUIT").startswith(b"+OK"))
        self.assertEqual(self.seen("u3"), {"m3"})


if __name__ == "__main__":
    unittest.main()
