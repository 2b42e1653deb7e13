"""Pieces shared by test_hostile.py and test_faults.py: a scripted fake
backend, a TLS client over memory BIOs (to control exactly which bytes go out
in which segment), a client that pipelines one command without ever reading,
probes of postern's process (RSS, open fds) and of its log, and a test case
base class whose postern starts in setUp (so that a config today's loader
refuses fails the test instead of erroring the whole class).

Standard library only, like harness.py.
"""

import os
import re
import select
import socket
import ssl
import struct
import threading
import time

import harness
from harness import DIRECT


# --- postern's process and log ---------------------------------------------

def rss_bytes(pid):
    """VmRSS of a process, in bytes (0 if it is gone)."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def open_fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


_FIELD_RE = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|<[^>]*>|\S+)')


def log_fields(line):
    """key=value fields of one log line; quotes and <...> are kept off."""
    out = {}
    for k, v in _FIELD_RE.findall(line):
        if v[:1] in ('"', "<"):
            v = v[1:-1]
        out[k] = v
    return out


def session_ends(log):
    """(line, fields) of every "session end" line."""
    return [(l, log_fields(l)) for l in log.splitlines() if "session end" in l]


def wait_session_end(postern, client_port, timeout, since=0):
    """The "session end" line of the session from local port client_port
    (fields dict), waiting up to timeout seconds; None if none came."""
    suffix = ":%d" % client_port

    def find():
        for _, f in session_ends(postern.log()[since:]):
            if f.get("client", "").endswith(suffix):
                return f
        return None
    return harness.wait_for(find, timeout=timeout, interval=0.05)


def reset(sock):
    """Closes with an RST instead of a FIN (SO_LINGER on, 0 s)."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


# --- test case whose postern starts in setUp ----------------------------------

class LateStartTestCase(harness.BedTestCase):
    """Like harness.BedTestCase, but postern starts in setUp, from
    postern_overrides plus extra_config() (computed at run time, e.g. the
    port of a fake backend). If postern refuses the config (today's loader
    rejects keys it does not know) the test fails with the config error.

    restart_each_test: a fresh postern for every test (RSS and log counts
    start from a clean process)."""

    restart_each_test = False

    @classmethod
    def setUpClass(cls):
        super(harness.BedTestCase, cls).setUpClass()
        cls.bed = harness.Bed(cls.__name__, cls.postern_overrides, cls.dovecot_kwargs,
                              start_postern=False)
        cls.addClassCleanup(cls.bed.close)

    @classmethod
    def extra_config(cls):
        return {}

    def setUp(self):
        super().setUp()
        if DIRECT:
            return
        p = self.bed.postern
        if p is None or not p.running() or self.restart_each_test:
            self.start_postern()

    def start_postern(self, overrides=None):
        try:
            return self.bed.start_postern(harness.deep_merge(self.extra_config(), overrides))
        except RuntimeError as e:
            text = str(e)
            why = [l for l in text.splitlines() if "postern.yaml" in l or "error" in l.lower()]
            self.fail("postern did not start with this test's config: %s"
                      % ("; ".join(why[-3:]) or text[-600:]))


# --- TLS over memory BIOs ----------------------------------------------------

class MemTls:
    """A TLS client whose records we pump ourselves (ssl.MemoryBIO), so a
    test decides what goes out in which send(): data and close_notify in one
    segment, a flood of records that are never read, half a ClientHello."""

    def __init__(self, cafile, server_hostname="localhost"):
        ctx = harness.client_context(cafile)
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.incoming, self.outgoing, server_hostname=server_hostname)
        self.eof = False  # the server's close_notify arrived

    def handshake(self, sock, timeout=10.0):
        """Runs the handshake over a blocking socket."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.obj.do_handshake()
                sock.sendall(self.outgoing.read())
                return self.obj.version()
            except ssl.SSLWantReadError:
                out = self.outgoing.read()
                if out:
                    sock.sendall(out)
                sock.settimeout(max(0.01, deadline - time.monotonic()))
                data = sock.recv(65536)
                if not data:
                    raise harness.Closed("closed during the TLS handshake")
                self.incoming.write(data)

    def encrypt(self, data):
        """Ciphertext records carrying data."""
        self.obj.write(data)
        return self.outgoing.read()

    def close_notify(self):
        """Ciphertext of our close_notify alert (the read side stays open)."""
        try:
            self.obj.unwrap()
        except (ssl.SSLWantReadError, ssl.SSLError):
            pass
        return self.outgoing.read()

    def decrypt(self, data):
        """Plaintext from ciphertext bytes (sets eof at the server's close_notify)."""
        if data:
            self.incoming.write(data)
        out = bytearray()
        while not self.eof:
            try:
                chunk = self.obj.read(262144)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                self.eof = True
                break
            if not chunk:
                self.eof = True
                break
            out += chunk
        return bytes(out)


def client_hello_bytes():
    """The bytes of a real TLS ClientHello, as python's ssl sends it."""
    out = ssl.MemoryBIO()
    obj = ssl.create_default_context().wrap_bio(ssl.MemoryBIO(), out,
                                                server_hostname="localhost")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


class RawClient:
    """A client socket (plain, or TLS over MemTls) with a byte buffer of what
    arrived, for tests that need control over segments and blocking."""

    def __init__(self, addr, tls=False, cafile=None, timeout=10.0, source_ip=None,
                 sndbuf=None, rcvbuf=None):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if sndbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if source_ip:
            self.sock.bind((source_ip, 0))
        self.sock.settimeout(timeout)
        self.sock.connect(addr)
        self.port = self.sock.getsockname()[1]
        self.tls = MemTls(cafile) if tls else None
        self.buf = bytearray()
        self.eof = False
        if self.tls:
            self.tls.handshake(self.sock, timeout)

    def wire(self, data):
        """The bytes that carry plaintext data on the wire."""
        if isinstance(data, str):
            data = data.encode()
        return self.tls.encrypt(data) if self.tls else data

    def send(self, data):
        self.sock.sendall(self.wire(data))

    def fill(self, timeout):
        """Reads once (waiting up to timeout); False at EOF or timeout."""
        if self.eof:
            return False
        self.sock.settimeout(max(0.001, timeout))
        try:
            data = self.sock.recv(262144)
        except (socket.timeout, TimeoutError):
            return False
        except (ConnectionResetError, BrokenPipeError):
            data = b""
        if not data:
            self.eof = True
            return False
        if self.tls:
            data = self.tls.decrypt(data)
            if self.tls.eof:
                self.eof = True
        self.buf += data
        return True

    def readline(self, timeout=10.0):
        """One line (with CRLF), or raises Closed / socket.timeout."""
        deadline = time.monotonic() + timeout
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                line = bytes(self.buf[:i + 1])
                del self.buf[:i + 1]
                return line
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("no line within %.1fs; pending %r"
                                     % (timeout, bytes(self.buf[:200])))
            if not self.fill(left) and self.eof:
                raise harness.Closed("closed; pending %r" % bytes(self.buf[:200]))

    def read_until(self, marker, timeout=10.0):
        deadline = time.monotonic() + timeout
        while True:
            i = self.buf.find(marker)
            if i >= 0:
                data = bytes(self.buf[:i + len(marker)])
                del self.buf[:i + len(marker)]
                return data
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("no %r within %.1fs" % (marker, timeout))
            if not self.fill(left) and self.eof:
                raise harness.Closed("closed before %r; pending %r"
                                     % (marker, bytes(self.buf[:200])))

    def read_to_eof(self, timeout=10.0):
        """Everything until EOF; raises socket.timeout if EOF does not come."""
        deadline = time.monotonic() + timeout
        while not self.eof:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("no EOF within %.1fs" % timeout)
            self.fill(left)
        data = bytes(self.buf)
        self.buf.clear()
        return data

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def reset(self):
        reset(self.sock)


# --- a client that pipelines one command and never reads ------------------------

class Flooder(RawClient):
    """Pipelines one command as fast as the server takes it, never reading.

    pump() sends without blocking; `commands` counts the commands queued so
    far (all of them reach the server once finish() has sent the rest).
    The reply to one command (`reply`) is learned before the flood by sending
    it once and reading the answer up to reply_end (and to the end of that
    line).
    """

    CHUNK = 1024  # commands per chunk

    def __init__(self, addr, command, reply_end, tls=False, cafile=None, **kw):
        kw.setdefault("sndbuf", 65536)
        kw.setdefault("rcvbuf", 65536)
        super().__init__(addr, tls=tls, cafile=cafile, **kw)
        self.command = command
        self.greeting = self.readline()
        self.send(command)
        self.reply = self.read_until(reply_end)
        if not self.reply.endswith(b"\n"):
            self.reply += self.readline()
        self.sock.setblocking(False)
        self.pending = bytearray()
        self.commands = 0
        self.sent = 0
        self.last_progress = time.monotonic()
        self.error = None

    def pump(self):
        """Sends what the socket takes now; returns the bytes sent."""
        total = 0
        while self.error is None:
            if not self.pending:
                self.pending += self.wire(self.command * self.CHUNK)
                self.commands += self.CHUNK
            try:
                n = self.sock.send(self.pending)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as e:  # reset or closed by the server
                self.error = e
                break
            del self.pending[:n]
            total += n
            if total > (1 << 20):
                break  # let the others have a go
        if total:
            self.sent += total
            self.last_progress = time.monotonic()
        return total

    def stalled_for(self):
        return time.monotonic() - self.last_progress

    def finish(self, last_command, timeout):
        """Sends what is still pending, then last_command, and reads
        everything up to EOF (or timeout). Returns (plaintext, eof)."""
        deadline = time.monotonic() + timeout
        last = self.wire(last_command)
        out = self.pending + last
        self.pending = bytearray()
        while time.monotonic() < deadline and not self.eof:
            want_write = [self.sock] if out and self.error is None else []
            r, w, _ = select.select([self.sock], want_write, [],
                                    max(0.0, min(0.5, deadline - time.monotonic())))
            if w:
                try:
                    n = self.sock.send(out)
                    del out[:n]
                except (BlockingIOError, InterruptedError):
                    pass
                except OSError as e:
                    self.error = e
            if r:
                try:
                    data = self.sock.recv(1 << 20)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    data = b""
                if not data:
                    self.eof = True
                    break
                if self.tls:
                    data = self.tls.decrypt(data)
                    if self.tls.eof:
                        self.eof = True
                self.buf += data
        data = bytes(self.buf)
        self.buf.clear()
        return data, self.eof


def flood(flooders, seconds, pid=None, rss_cap=None, until=None):
    """Pumps every flooder for up to `seconds`. With pid and rss_cap: stops
    as soon as the process's RSS exceeds rss_cap bytes. until(flooders):
    stops when it returns true. Returns the peak RSS seen (0 without pid)."""
    deadline = time.monotonic() + seconds
    peak = rss_bytes(pid) if pid else 0
    next_sample = 0.0
    while time.monotonic() < deadline:
        live = [f for f in flooders if f.error is None]
        if not live:
            break
        _, w, _ = select.select([], [f.sock for f in live], [], 0.05)
        for f in live:
            if f.sock in w:
                f.pump()
        now = time.monotonic()
        if pid and now >= next_sample:
            next_sample = now + 0.1
            peak = max(peak, rss_bytes(pid))
            if rss_cap and peak > rss_cap:
                break
        if until is not None and until(flooders):
            break
    return peak


# --- a fake backend ------------------------------------------------------------

class FakeSession:
    """One connection accepted by a FakeBackend: line I/O with timeouts and
    a record of every byte received."""

    def __init__(self, sock):
        self.sock = sock
        self.received = bytearray()
        self.commands = []  # IMAP commands read by imap_command()
        self.buf = bytearray()
        self.closed = False

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        try:
            self.sock.sendall(data)
            return True
        except OSError:
            return False

    def _fill(self, timeout):
        self.sock.settimeout(max(0.001, timeout))
        try:
            data = self.sock.recv(65536)
        except (socket.timeout, TimeoutError):
            return None
        except OSError:
            data = b""
        if not data:
            self.closed = True
            return False
        self.received += data
        self.buf += data
        return True

    def readline(self, timeout=10.0):
        """A line with its CRLF; None at EOF or after timeout."""
        deadline = time.monotonic() + timeout
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                line = bytes(self.buf[:i + 1])
                del self.buf[:i + 1]
                return line
            left = deadline - time.monotonic()
            if left <= 0 or self.closed or not self._fill(left):
                return None

    def read_exact(self, n, timeout=10.0):
        deadline = time.monotonic() + timeout
        while len(self.buf) < n:
            left = deadline - time.monotonic()
            if left <= 0 or self.closed or not self._fill(left):
                return None
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    def imap_command(self, timeout=10.0):
        """One IMAP command with its literals inlined (synchronizing ones get
        a "+"); None at EOF or timeout."""
        out = bytearray()
        while True:
            line = self.readline(timeout)
            if line is None:
                return None
            out += line
            m = re.search(rb"\{(\d+)(\+?)\}\r\n$", line)
            if not m:
                self.commands.append(bytes(out))
                return bytes(out)
            if not m.group(2):
                self.send(b"+ go ahead\r\n")
            data = self.read_exact(int(m.group(1)), timeout)
            if data is None:
                return None
            out += data

    def hold(self, timeout=60.0):
        """Reads (and records) until the peer closes or timeout."""
        deadline = time.monotonic() + timeout
        while not self.closed and time.monotonic() < deadline:
            self._fill(deadline - time.monotonic())

    def close(self):
        self.closed = True
        try:
            self.sock.close()
        except OSError:
            pass


class FakeBackend:
    """A TCP server on 127.0.0.1 (port 0) that runs handler(session) in a
    thread for every connection it accepts. `handler` can be swapped
    between tests; `sessions` records every connection."""

    def __init__(self, handler=None):
        self.handler = handler
        self.sessions = []
        self._lock = threading.Lock()
        self._threads = []
        self._stop = False
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((harness.HOST, 0))
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self._accepter = threading.Thread(target=self._accept_loop, daemon=True)
        self._accepter.start()

    def _accept_loop(self):
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except (socket.timeout, TimeoutError):
                continue
            except OSError:
                return
            s = FakeSession(conn)
            with self._lock:
                self.sessions.append(s)
            t = threading.Thread(target=self._run, args=(self.handler, s), daemon=True)
            self._threads.append(t)
            t.start()

    @staticmethod
    def _run(handler, s):
        try:
            if handler is not None:
                handler(s)
        except OSError:
            pass
        finally:
            s.close()

    def reset(self, handler):
        """A new handler for the connections to come; forgets the old ones."""
        with self._lock:
            for s in self.sessions:
                s.close()
            self.sessions = []
        self.handler = handler

    def wait_sessions(self, n, timeout=5.0):
        return harness.wait_for(lambda: len(self.sessions) >= n, timeout=timeout)

    def close(self):
        self._stop = True
        try:
            self.sock.close()
        except OSError:
            pass
        with self._lock:
            for s in self.sessions:
                s.close()
        self._accepter.join(2)
        for t in self._threads:
            t.join(2)


def parse_imap_command(cmd):
    """(tag, NAME, rest) of an IMAP command line (bytes)."""
    first = cmd.split(b"\r\n", 1)[0]
    parts = first.split(b" ", 2)
    tag = parts[0] if parts else b""
    name = parts[1].upper() if len(parts) > 1 else b""
    rest = parts[2] if len(parts) > 2 else b""
    return tag, name, rest


FAKE_CAPS = b"IMAP4rev1 ID LITERAL+ SASL-IR AUTH=PLAIN"
FAKE_NO = b"NO [AUTHENTICATIONFAILED] Fake says no."


def imap_server(caps=FAKE_CAPS, login_answer=FAKE_NO, greeting=None, timeout=30.0,
                commands=None):
    """A handler speaking just enough IMAP: greeting with capabilities,
    CAPABILITY, ID, LOGIN/AUTHENTICATE (answered with login_answer), LOGOUT.
    commands: {name: f(s, tag)} for more commands; f returning True ends
    the handler."""
    def handler(s):
        s.send(greeting if greeting is not None
               else b"* OK [CAPABILITY " + caps + b"] Fake ready.\r\n")
        while True:
            cmd = s.imap_command(timeout)
            if cmd is None:
                return
            tag, name, _ = parse_imap_command(cmd)
            if name == b"CAPABILITY":
                s.send(b"* CAPABILITY " + caps + b"\r\n" + tag + b" OK Done.\r\n")
            elif name == b"ID":
                s.send(b"* ID NIL\r\n" + tag + b" OK ID done.\r\n")
            elif name in (b"LOGIN", b"AUTHENTICATE"):
                s.send(tag + b" " + login_answer + b"\r\n")
            elif name == b"LOGOUT":
                s.send(b"* BYE Bye.\r\n" + tag + b" OK Done.\r\n")
                return
            elif commands and name in commands:
                if commands[name](s, tag):
                    return
            else:
                s.send(tag + b" BAD Fake knows no such command.\r\n")
    return handler


def pop3_server(pass_answer=b"-ERR [AUTH] Fake says no.", timeout=30.0, capa=None,
                received=None):
    """A handler speaking just enough POP3 for a USER/PASS or AUTH login.
    capa: capability lines for CAPA (None: CAPA is refused, as an RFC 1939
    server would). received: a list the command lines are appended to."""
    def handler(s):
        s.send(b"+OK Fake ready.\r\n")
        while True:
            line = s.readline(timeout)
            if line is None:
                return
            if received is not None:
                received.append(line.rstrip(b"\r\n"))
            word = line.split(b" ", 1)[0].strip().upper()
            if word == b"CAPA" and capa is not None:
                s.send(b"+OK\r\n" + b"".join(c + b"\r\n" for c in capa) + b".\r\n")
            elif word == b"XCLIENT":
                s.send(b"+OK\r\n")
            elif word == b"USER":
                s.send(b"+OK\r\n")
            elif word in (b"PASS", b"AUTH"):
                s.send(pass_answer + b"\r\n")
            elif word == b"QUIT":
                s.send(b"+OK Bye.\r\n")
                return
            else:
                s.send(b"-ERR Fake knows no such command.\r\n")
    return handler


def silent(s):
    """Accepts and never answers (keeps reading until closed)."""
    s.hold(120)


class Unaccepting:
    """A listening socket (backlog 0) that never accepts, its queue filled by
    our own connections: a connect to it does not complete (the kernel drops
    the SYN while the accept queue is full). `works` says whether that was
    achieved on this machine."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind((harness.HOST, 0))
        self.sock.listen(0)
        self.port = self.sock.getsockname()[1]
        self.fillers = []
        self.works = False
        for _ in range(8):
            c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            c.setblocking(False)
            c.connect_ex((harness.HOST, self.port))
            self.fillers.append(c)
        time.sleep(0.2)
        probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        probe.settimeout(0.5)
        try:
            probe.connect((harness.HOST, self.port))
        except (socket.timeout, TimeoutError):
            self.works = True
        except OSError:
            pass
        finally:
            probe.close()

    def close(self):
        for c in self.fillers:
            c.close()
        self.sock.close()
