"""A 10 MiB message through postern, over TLS and over plaintext listeners
(where postern relays with splice(2)), by IMAP FETCH BODY[] and POP3 RETR,
arrives byte for byte (the Maildir holds LF line ends; IMAP and POP3
deliver CRLF, POP3 dot-stuffed: RFC 1939 section 3)."""

import hashlib
import signal
import re
import socket
import time
import unittest

import harness
from harness import crlf, dot_stuff

BIG = 10 * 1024 * 1024


def assert_clean_prefix(test, got, n, want):
    """`got` is a proper prefix of the FETCH answer for message n (`want`,
    LF line ends on disk), longer than a pipe-full."""
    wire = b"* %d FETCH (BODY[] {%d}\r\n" % (n, len(crlf(want))) + crlf(want)
    test.assertGreater(len(got), 64 * 1024, "too little arrived to have filled a pipe")
    test.assertLess(len(got), len(wire), "the session did not end early")
    test.assertEqual(hashlib.sha256(got).hexdigest(),
                     hashlib.sha256(wire[:len(got)]).hexdigest(),
                     "not a clean prefix: %d bytes" % len(got))


class BigMessageTest(harness.BedTestCase):
    dovecot_kwargs = {"extra_messages": {"alice": [BIG], "bob": [BIG]}}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        # Read the files now: fetching sets \Seen, and Dovecot renames them.
        cls.alice = cls.bed.dovecot.messages("alice")
        cls.bob = cls.bed.dovecot.messages("bob")

    def test_files_are_as_intended(self):
        self.assertEqual(len(self.alice[-1]), BIG)
        self.assertNotIn(b"\r", self.alice[-1])
        self.assertIn(b"\n.\n", self.alice[-1])  # a lone "." line
        self.assertRegex(self.alice[-1], rb"\n\.[^\n.]")

    def imap_fetch(self, listener, user, want, starttls=False):
        c = self.connect(listener)
        if starttls:
            _, tagged = c.imap("t", "STARTTLS")
            self.assertTrue(tagged.startswith(b"t OK"), tagged)
            c.start_tls()
        _, tagged = c.imap("a", "LOGIN %s demo" % user)
        self.assertTrue(tagged.startswith(b"a OK"), tagged)
        untagged, tagged = c.imap("b", "EXAMINE INBOX")
        n = int(re.search(rb"\* (\d+) EXISTS", b"".join(untagged)).group(1))
        start = time.monotonic()
        c.send("c FETCH %d BODY[]\r\n" % n)
        head = c.readline(timeout=30)
        m = re.match(rb"\* %d FETCH \(BODY\[\] \{(\d+)\}\r\n$" % n, head)
        self.assertIsNotNone(m, head)
        body = c.read_exact(int(m.group(1)), timeout=30)
        rest = c.readline(timeout=30)
        self.assertEqual(rest, b")\r\n")
        _, tagged = c.imap_until_tagged("c", timeout=30)
        elapsed = time.monotonic() - start
        self.assertTrue(tagged.startswith(b"c OK"), tagged)
        self.assertEqual(len(body), len(crlf(want)))
        self.assertEqual(hashlib.sha256(body).hexdigest(), hashlib.sha256(crlf(want)).hexdigest())
        _, tagged = c.imap("d", "LOGOUT")
        return elapsed

    def pop3_retr(self, listener, user, want, stls=False):
        c = self.connect(listener)
        if stls:
            self.assertTrue(c.pop3("STLS").startswith(b"+OK"))
            c.start_tls()
        self.assertTrue(c.pop3("USER " + user).startswith(b"+OK"))
        self.assertTrue(c.pop3("PASS demo").startswith(b"+OK"))
        stat = c.pop3("STAT")
        n = int(stat.split()[1])
        start = time.monotonic()
        r = c.pop3("RETR %d" % n)
        self.assertTrue(r.startswith(b"+OK"), r)
        raw = c.read_until(b"\r\n.\r\n", timeout=30)
        elapsed = time.monotonic() - start
        wire = dot_stuff(crlf(want)) + b".\r\n"
        self.assertEqual(len(raw), len(wire))
        self.assertEqual(hashlib.sha256(raw).hexdigest(), hashlib.sha256(wire).hexdigest())
        # And un-stuffed, the message itself.
        lines = raw[:-3].split(b"\r\n")
        unstuffed = b"\r\n".join(l[1:] if l.startswith(b".") else l for l in lines)
        self.assertEqual(hashlib.sha256(unstuffed).hexdigest(),
                         hashlib.sha256(crlf(want)).hexdigest())
        self.assertTrue(c.pop3("QUIT").startswith(b"+OK"))
        return elapsed

    def test_imaps_fetch_body(self):
        self.imap_fetch("imaps", "alice", self.alice[-1])

    def test_imap_starttls_fetch_body(self):
        self.imap_fetch("imap", "bob", self.bob[-1], starttls=True)

    def test_pop3s_retr(self):
        self.pop3_retr("pop3s", "alice", self.alice[-1])

    def test_pop3_stls_retr(self):
        self.pop3_retr("pop3", "bob", self.bob[-1], stls=True)

    def slow_reader(self, listener, protocol, user, want):
        """The client stops reading until the relay is backpressured (both
        watermarks crossed), then reads: every byte must still arrive."""
        c = self.connect(listener)
        if protocol == "pop3":
            self.assertTrue(c.pop3("USER " + user).startswith(b"+OK"))
            self.assertTrue(c.pop3("PASS demo").startswith(b"+OK"))
            n = int(c.pop3("STAT").split()[1])
            c.send("RETR %d\r\n" % n)
            expected = b"+OK"
            wire_end = dot_stuff(crlf(want)) + b".\r\n"
        else:
            n = harness.start_fetch_last(self, c, user)
            expected = b"* %d FETCH" % n
            wire_end = crlf(want) + b")\r\nc OK"
        time.sleep(1.5)
        head = c.readline(timeout=30)
        self.assertTrue(head.startswith(expected), head)
        end = wire_end[-64:]
        total = 0
        tail = b""
        while end not in tail:
            try:
                if not c._fill(timeout=15):
                    self.fail("closed after %d bytes" % total)
            except (socket.timeout, TimeoutError):
                self.fail("stalled after %d of about %d bytes" % (total, len(wire_end)))
            total += len(c.buf)
            tail = (tail + bytes(c.buf))[-200:]
            c.buf.clear()
        self.assertGreaterEqual(total, len(wire_end) - len(end))

    def test_slow_reader_imaps(self):
        self.slow_reader("imaps", "imap", "alice", self.alice[-1])

    def test_slow_reader_pop3s(self):
        self.slow_reader("pop3s", "pop3", "bob", self.bob[-1])

    def test_slow_reader_pop3_plain(self):
        self.slow_reader("pop3-plain", "pop3", "alice", self.alice[-1])

    # Plaintext on both sides: the relay splices socket -> pipe -> socket.

    def test_imap_plain_fetch_body(self):
        self.imap_fetch("imap-plain", "alice", self.alice[-1])

    def test_pop3_plain_retr(self):
        self.pop3_retr("pop3-plain", "bob", self.bob[-1])

    def test_slow_reader_imap_plain(self):
        self.slow_reader("imap-plain", "imap", "bob", self.bob[-1])

    def test_half_close_while_blocked_delivers_a_clean_prefix(self):
        """The client asks for 10 MiB, reads nothing until the relay is
        blocked (bytes wait in the proxy's pipe), then half-closes: the session
        ends, and what postern still held must follow what was already sent,
        in order, with nothing lost in between."""
        c = self.connect("imap-plain")
        n = harness.start_fetch_last(self, c, "alice")
        time.sleep(1.5)
        c.sock.shutdown(socket.SHUT_WR)
        while c._fill(timeout=15):
            pass
        assert_clean_prefix(self, bytes(c.buf), n, self.alice[-1])
        log = self.bed.postern.log()
        ends = [l for l in log.splitlines() if "session end" in l and "peer closed\"" in l]
        self.assertTrue(ends, log[-2000:])

    def test_two_at_once(self):
        # Two big transfers interleaved on one worker: start both, then read.
        a = self.connect("imaps")
        b = self.connect("pop3s")
        _, tagged = a.imap("a", "LOGIN alice demo")
        self.assertTrue(tagged.startswith(b"a OK"))
        untagged, _ = a.imap("b", "EXAMINE INBOX")
        n = int(re.search(rb"\* (\d+) EXISTS", b"".join(untagged)).group(1))
        self.assertTrue(b.pop3("USER bob").startswith(b"+OK"))
        self.assertTrue(b.pop3("PASS demo").startswith(b"+OK"))
        a.send("c FETCH %d BODY.PEEK[]\r\n" % n)
        b.send("RETR %d\r\n" % len(self.bob))
        self.assertTrue(b.readline(timeout=30).startswith(b"+OK"))
        head = a.readline(timeout=30)
        size = int(re.search(rb"\{(\d+)\}", head).group(1))
        # Alternate small reads so both relays make progress together.
        got_a = bytearray()
        while len(got_a) < size:
            got_a += a.read_exact(min(65536, size - len(got_a)), timeout=30)
            if not b.buf.endswith(b"\r\n.\r\n"):
                b._fill(timeout=30)
        raw_b = b.read_until(b"\r\n.\r\n", timeout=30)
        self.assertEqual(bytes(got_a), crlf(self.alice[-1]))
        self.assertEqual(raw_b, dot_stuff(crlf(self.bob[-1])) + b".\r\n")


if __name__ == "__main__":
    unittest.main()


class SplicedShutdownTest(harness.BedTestCase):
    """SIGTERM while a plaintext (spliced) transfer is blocked on a client
    that does not read: the session ends at the next point between two
    responses, so the client gets the whole FETCH response (never a cut
    literal), then the shutdown notice."""

    dovecot_kwargs = {"extra_messages": {"alice": [BIG]}}
    postern_overrides = {"timeouts": {"shutdown_grace": "1s"}}

    def test_notice_after_the_whole_response(self):
        want = self.bed.dovecot.messages("alice")[-1]
        c = self.connect("imap-plain")
        n = harness.start_fetch_last(self, c, "alice")
        time.sleep(1.0)  # the client's and postern's buffers fill up
        self.bed.postern.send_signal(signal.SIGTERM)
        time.sleep(1.5)  # past the grace: the session drains to a safe point
        while c._fill(timeout=15):
            pass
        got = bytes(c.buf)
        bye = b"* BYE Server shutting down.\r\n"
        self.assertTrue(got.endswith(bye), got[-200:])
        wire = b"* %d FETCH (BODY[] {%d}\r\n" % (n, len(crlf(want))) + crlf(want) + b")\r\n"
        body = got[:-len(bye)]
        self.assertEqual(len(body), len(wire))
        self.assertEqual(hashlib.sha256(body).hexdigest(), hashlib.sha256(wire).hexdigest())


# Sizes around the relay's splice thresholds (proxy/relay.cc: literals of 32
# and 64 KiB, 4 KiB peeks, 256 KiB pipes), in an order that mixes them.
MIXED = [65536, 1000, 33000, 70000, 20000, 300000, 64000, 40000, 1000000, 400, 200000,
         31000, 65536, 65536, 100000, 5000, 262144, 34000, 65536, 500]


def split_responses(stream):
    """Splits an IMAP response stream into whole responses (a line ending in
    "{n}" continues after n literal bytes)."""
    out, pos = [], 0
    while pos < len(stream):
        start = pos
        while True:
            eol = stream.find(b"\r\n", pos) + 2
            if eol < 2:
                raise AssertionError("a response cut inside a line at %d" % pos)
            m = re.search(rb"\{(\d+)\}\r\n$", stream[pos:eol])
            pos = eol
            if not m:
                break
            pos += int(m.group(1))
        out.append(stream[start:pos])
    return out


class SplicedManyMessagesTest(harness.BedTestCase):
    """A FETCH of many messages of mixed sizes over the plaintext listener:
    the relay peeks at the response lines and splices each body with the
    line before it (proxy/relay.cc). The stream must be the very bytes
    Dovecot sends a client connected to it directly, and a SIGTERM in the
    middle must cut it between two responses."""

    # Eight times over (160 messages, about 20 MB): more than the kernel's
    # socket buffers hold, so the relay is still at work when a signal comes.
    dovecot_kwargs = {"extra_messages": {"alice": MIXED * 8}}
    postern_overrides = {"timeouts": {"shutdown_grace": "1ms"}}
    COMMAND = b"c FETCH 1:* (UID RFC822.SIZE BODY.PEEK[HEADER] BODY.PEEK[])\r\n"

    def fetch_all(self, conn):
        _, tagged = conn.imap("a", "LOGIN alice demo")
        self.assertTrue(tagged.startswith(b"a OK"), tagged)
        _, tagged = conn.imap("b", "EXAMINE INBOX")
        self.assertTrue(tagged.startswith(b"b OK"), tagged)
        conn.send(self.COMMAND)
        # Untagged responses up to the tagged one (its text carries timings).
        return conn.read_until(b"\r\nc OK", timeout=60)

    def direct_stream(self):
        d = self.bed.dovecot
        c = harness.Conn((harness.HOST, d.imap_port))
        self.addCleanup(c.close)
        c.greeting = c.readline()
        return self.fetch_all(c)

    def test_byte_for_byte_as_dovecot_sends_it(self):
        want = self.direct_stream()
        self.assertGreater(len(want), 8 * sum(MIXED))
        for _ in range(2):
            got = self.fetch_all(self.connect("imap-plain"))
            self.assertEqual(len(got), len(want))
            self.assertEqual(hashlib.sha256(got).hexdigest(), hashlib.sha256(want).hexdigest())

    def test_sigterm_cuts_between_two_responses(self):
        # One command: Dovecot may run pipelined FETCHes side by side and
        # order their answers differently from one run to the next.
        want = self.direct_stream()  # the FETCH responses, then "c OK"
        responses = split_responses(want[:-len(b"c OK")])
        self.assertGreaterEqual(len(responses), 8 * len(MIXED))  # and the demo ones
        # Six times, each against a fresh postern (the signal ends it): where
        # the cut falls depends on timing.
        self.addCleanup(self.bed.start_postern)  # for the tests after this one
        for i in range(6):
            if i > 0:
                self.bed.start_postern()
            self.cut_once(self.COMMAND, responses)

    def cut_once(self, command, responses):
        c = self.connect("imap-plain")
        _, tagged = c.imap("a", "LOGIN alice demo")
        self.assertTrue(tagged.startswith(b"a OK"), tagged)
        _, tagged = c.imap("b", "EXAMINE INBOX")
        self.assertTrue(tagged.startswith(b"b OK"), tagged)
        c.send(command)
        # Read as fast as it comes: the relay peeks and splices body after
        # body, and the signal (no grace) comes while it is at work; the cut
        # must fall between two responses.
        signalled = False
        while c._fill(timeout=15):
            if not signalled and len(c.buf) > 3_000_000:
                self.bed.postern.send_signal(signal.SIGTERM)
                signalled = True
        self.assertTrue(signalled)
        got = bytes(c.buf)
        bye = b"* BYE Server shutting down.\r\n"
        self.assertTrue(got.endswith(bye), got[-200:])
        body = split_responses(got[:-len(bye)])
        self.assertGreater(len(body), len(MIXED))
        self.assertLess(len(body), len(responses), "the session did not end early")
        self.assertEqual(hashlib.sha256(b"".join(body)).hexdigest(),
                         hashlib.sha256(b"".join(responses[:len(body)])).hexdigest(),
                         "not whole responses: %d of them" % len(body))
