"""Shared pieces of the integration tests: a test bed per test class (one
Dovecot, one postern), raw protocol clients and helpers.

Environment:
    POSTERN_BIN          the postern binary (ctest sets it); otherwise the
                         first of build/postern, build-*/postern in the repo.
    POSTERN_TEST_DIRECT  "1": point the tests at Dovecot's own ports (Dovecot
                         then runs with TLS) instead of at postern; proves the
                         client side of every test against a real server.
                         Tests of postern-only behaviour are skipped.
    POSTERN_TEST_KEEP    "1": keep the temporary directories (logs, configs).
"""

import base64
import copy
import glob
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "deploy"))

import testbed  # noqa: E402  (deploy/testbed.py)

DIRECT = os.environ.get("POSTERN_TEST_DIRECT") == "1"
KEEP = os.environ.get("POSTERN_TEST_KEEP") == "1"
HOST = "127.0.0.1"


def _sigterm_to_exit(signum, frame):
    # ctest stops a test that runs over its TIMEOUT with SIGTERM first: turn it
    # into SystemExit so class cleanups stop Dovecot and postern.
    raise SystemExit(128 + signum)


signal.signal(signal.SIGTERM, _sigterm_to_exit)


# The first line of an ASan / LeakSanitizer / UBSan report.
_SANITIZER_RE = re.compile(r"==\d+==ERROR: (Address|Leak)Sanitizer|: runtime error: ")


def postern_binary():
    b = os.environ.get("POSTERN_BIN")
    if b:
        return b
    for cand in [os.path.join(REPO, "build", "postern")] + sorted(
            glob.glob(os.path.join(REPO, "build*", "postern"))):
        if os.access(cand, os.X_OK):
            return cand
    raise unittest.SkipTest("no postern binary: set POSTERN_BIN")


def proxy_only(fn):
    """Marks a test of postern-only behaviour: skipped in direct mode."""
    return unittest.skipIf(DIRECT, "postern-only behaviour (POSTERN_TEST_DIRECT=1)")(fn)


def deep_merge(base, override):
    """base with override merged in; a None in override removes the key
    (to leave a setting at postern's own default)."""
    out = copy.deepcopy(base)
    for k, v in (override or {}).items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


# Listener name -> (protocol, tls mode). "imap"/"pop3" are STARTTLS/STLS
# listeners; the "-plain" ones allow plaintext login without TLS.
LISTENERS = {
    "imaps": ("imap", "implicit"),
    "imap": ("imap", "starttls"),
    "pop3s": ("pop3", "implicit"),
    "pop3": ("pop3", "starttls"),
    "imap-plain": ("imap", "none"),
    "pop3-plain": ("pop3", "none"),
}


class Bed:
    """One Dovecot and (unless direct) one postern, in a temp dir."""

    def __init__(self, name, postern_overrides=None, dovecot_kwargs=None, start_postern=True,
                 gateway_users=()):
        """gateway_users: users routed to a second backend on the same Dovecot
        with pop3_mode: gateway (their POP3 is served by postern's
        POP3-to-IMAP gateway over Dovecot's IMAP); the others stay on the
        relay backend "dovecot"."""
        self.gateway_users = tuple(gateway_users)
        self.tmp = tempfile.mkdtemp(prefix="postern-it-%s-" % name)
        os.chmod(self.tmp, 0o755)
        self.cert, self.key = testbed.make_cert(os.path.join(self.tmp, "tls"))
        kwargs = dict(dovecot_kwargs or {})
        if DIRECT:
            kwargs.update(ssl_cert=self.cert, ssl_key=self.key)
        self.dovecot = None
        self.postern = None
        self._postern_n = 0
        self.postern_overrides = postern_overrides or {}
        try:
            self.dovecot = testbed.Dovecot(os.path.join(self.tmp, "dovecot"), **kwargs)
            if not DIRECT and start_postern:
                self.start_postern()
        except BaseException:
            self.close()
            raise

    def config(self, overrides=None):
        """The postern config (dict) for this bed, with overrides merged in."""
        d = self.dovecot
        cfg = {
            "workers": 1,
            "hostname": "postern.test",
            "listeners": [
                dict(name=n, protocol=p, address="%s:0" % HOST, tls=t,
                     **({"allow_plaintext_auth": True} if t == "none" else {}))
                for n, (p, t) in LISTENERS.items()
            ],
            "tls": {"certificate": self.cert, "key": self.key},
            "backends": [{
                "name": "dovecot", "address": HOST, "imap_port": d.imap_port,
                "pop3_port": d.pop3_port, "imap_login": "login", "pop3_login": "user",
            }],
            "routing": {"default_backend": "dovecot", "users": {"alice": "dovecot"}},
            "limits": {"max_line": 8192, "max_prelogin_literal": "64k", "error_budget": 10},
            "timeouts": {"login": "60s", "backend_connect": "5s", "imap_idle": "31m",
                         "pop3_idle": "10m", "shutdown_grace": "10s"},
            # Failed-login delays are tested on their own (test_directories,
            # test_abuse); elsewhere a wrong password is answered at once.
            "abuse": {"enabled": False},
            "log": {"level": "info", "format": "text"},
        }
        if self.gateway_users:
            gw = dict(cfg["backends"][0], name="gateway", pop3_mode="gateway")
            cfg["backends"].append(gw)
            for u in self.gateway_users:
                cfg["routing"]["users"][u] = "gateway"
        return deep_merge(deep_merge(cfg, self.postern_overrides), overrides)

    def start_postern(self, overrides=None):
        """(Re)starts postern with this bed's config plus overrides."""
        if self.postern is not None:
            self.postern.stop()
        self._postern_n += 1
        self.postern = testbed.Postern(postern_binary(),
                                       os.path.join(self.tmp, "postern%d" % self._postern_n),
                                       self.config(overrides))
        return self.postern

    def addr(self, name):
        """(host, port) of a listener: postern's, or Dovecot's in direct mode."""
        if DIRECT:
            d = self.dovecot
            return HOST, {
                "imaps": d.imaps_port, "imap": d.imap_port, "imap-plain": d.imap_port,
                "pop3s": d.pop3s_port, "pop3": d.pop3_port, "pop3-plain": d.pop3_port,
            }[name]
        return self.postern.address(name)

    def logs(self):
        parts = []
        if self.postern is not None:
            parts.append("--- postern log (tail) ---\n" + self.postern.log()[-6000:])
        if self.dovecot is not None:
            parts.append("--- dovecot log (tail) ---\n" + self.dovecot.log()[-3000:])
        return "\n".join(parts)

    def sanitizer_reports(self):
        """What ASan, LeakSanitizer or UBSan wrote into the logs of every
        postern this bed ran (they report when the process exits), or ""."""
        found = []
        for log in sorted(glob.glob(os.path.join(self.tmp, "postern*", "postern.log"))):
            with open(log, "rb") as f:
                text = f.read().decode("utf-8", "replace")
            m = _SANITIZER_RE.search(text)
            if m:
                found.append("%s:\n%s" % (log, text[m.start():m.start() + 4000]))
        return "\n".join(found)

    def close(self):
        reports = ""
        try:
            if self.postern is not None:
                self.postern.stop()
            reports = self.sanitizer_reports()
        finally:
            if self.dovecot is not None:
                self.dovecot.stop()
            if KEEP or reports:
                print("kept %s" % self.tmp, file=sys.stderr)
            else:
                shutil.rmtree(self.tmp, ignore_errors=True)
        # A leak or a sanitizer error in postern fails the test class (in the
        # ASan+UBSan build; a Release binary never writes these).
        if reports:
            raise AssertionError("sanitizer report from postern:\n" + reports)


def start_fetch_last(test, c, user):
    """On an IMAP Conn: LOGIN (password demo), EXAMINE INBOX, then send FETCH
    BODY.PEEK[] of the last message without reading the answer; returns its
    sequence number."""
    _, tagged = c.imap("a", "LOGIN %s demo" % user)
    test.assertTrue(tagged.startswith(b"a OK"), tagged)
    untagged, _ = c.imap("b", "EXAMINE INBOX")
    n = int(re.search(rb"\* (\d+) EXISTS", b"".join(untagged)).group(1))
    c.send("c FETCH %d BODY.PEEK[]\r\n" % n)
    return n


class BedTestCase(unittest.TestCase):
    """A test class with its own Bed (Dovecot + postern), stopped on the way out."""

    postern_overrides = {}
    dovecot_kwargs = {}
    gateway_users = ()  # Bed(gateway_users=...): POP3 through the gateway
    bed = None

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.bed = Bed(cls.__name__, cls.postern_overrides, cls.dovecot_kwargs,
                      gateway_users=cls.gateway_users)
        cls.addClassCleanup(cls.bed.close)

    def tearDown(self):
        # On failure, show the logs of the bed next to the traceback.
        outcome = getattr(self, "_outcome", None)
        result = getattr(outcome, "result", None)
        if result is not None and self.bed is not None:
            failed = any(t is self for t, _ in list(result.failures) + list(result.errors))
            if failed:
                print("\n" + self.bed.logs(), file=sys.stderr)
        super().tearDown()

    # --- helpers used by many tests ---

    def connect(self, listener, **kw):
        """A Conn to a listener; implicit TLS on imaps/pop3s. Reads the greeting."""
        tls = listener in ("imaps", "pop3s")
        c = Conn(self.bed.addr(listener), tls=tls, cafile=self.bed.cert, **kw)
        self.addCleanup(c.close)
        c.greeting = c.readline()
        return c

    def messages(self, user):
        return self.bed.dovecot.messages(user)

    def assert_serving(self, user="alice"):
        """A full IMAP login through the TLS listener still works."""
        c = self.connect("imaps")
        self.assertTrue(c.greeting.startswith(b"* OK"), c.greeting)
        _, tagged = c.imap("z1", "LOGIN %s %s" % (user, self.bed.dovecot.passwords[user]))
        self.assertTrue(tagged.startswith(b"z1 OK"), tagged)
        _, tagged = c.imap("z2", "LOGOUT")
        self.assertTrue(tagged.startswith(b"z2 OK"), tagged)
        c.close()


def client_context(cafile):
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.check_hostname = True
    return ctx


class Closed(Exception):
    """The peer closed the connection."""


class Conn:
    """A line-oriented client over TCP or TLS, with IMAP literal support."""

    def __init__(self, addr, tls=False, cafile=None, timeout=15.0, rcvbuf=None):
        self.addr = addr
        self.cafile = cafile
        self.timeout = timeout
        raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        raw.settimeout(timeout)
        raw.connect(addr)
        self.sock = raw
        self.buf = bytearray()
        self.eof = False
        self.greeting = None
        if tls:
            self.start_tls()

    def start_tls(self):
        """Wraps the socket in TLS. Fails if the server sent bytes after its
        STARTTLS/STLS answer (they would be plaintext injected ahead of TLS)."""
        if self.buf:
            raise AssertionError("bytes before the TLS handshake: %r" % bytes(self.buf[:200]))
        self.sock = client_context(self.cafile).wrap_socket(self.sock, server_hostname="localhost")
        return self.sock.version()

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def _fill(self, timeout=None):
        """Reads more bytes; returns False on EOF."""
        if self.eof:
            return False
        self.sock.settimeout(self.timeout if timeout is None else timeout)
        try:
            chunk = self.sock.recv(262144)
        except ConnectionResetError:
            chunk = b""
        except ssl.SSLError as e:
            # A TLS alert or an unclean close ends the stream for our purposes.
            if "EOF" in str(e) or "ALERT" in str(e).upper() or "RECORD" in str(e).upper():
                chunk = b""
            else:
                raise
        if not chunk:
            self.eof = True
            return False
        self.buf += chunk
        return True

    def readline(self, timeout=None):
        """One line including its CRLF. Raises Closed at EOF."""
        start = 0
        while True:
            i = self.buf.find(b"\n", start)
            if i >= 0:
                line = bytes(self.buf[:i + 1])
                del self.buf[:i + 1]
                return line
            start = len(self.buf)
            if not self._fill(timeout):
                raise Closed("closed; pending %r" % bytes(self.buf[:200]))

    def read_exact(self, n, timeout=None):
        while len(self.buf) < n:
            if not self._fill(timeout):
                raise Closed("closed after %d of %d bytes" % (len(self.buf), n))
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    def read_until(self, marker, timeout=None):
        """Bytes up to and including marker."""
        start = 0
        while True:
            i = self.buf.find(marker, start)
            if i >= 0:
                data = bytes(self.buf[:i + len(marker)])
                del self.buf[:i + len(marker)]
                return data
            start = max(0, len(self.buf) - len(marker) + 1)
            if not self._fill(timeout):
                raise Closed("closed before %r" % marker)

    def read_to_eof(self, timeout=None, limit=None):
        """Everything until the peer closes. Raises socket.timeout if it does not."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("no EOF")
            if not self._fill(left):
                break
            if limit is not None and len(self.buf) > limit:
                del self.buf[:len(self.buf) - limit]
        data = bytes(self.buf)
        self.buf.clear()
        return data

    def closed_within(self, timeout):
        """True if the peer closes within timeout (pending data is discarded)."""
        try:
            self.read_to_eof(timeout)
            return True
        except (socket.timeout, TimeoutError):
            return False

    # --- IMAP ---

    def imap_response(self, timeout=None):
        """One IMAP response line with its literals inlined."""
        out = bytearray()
        while True:
            line = self.readline(timeout)
            out += line
            m = re.search(rb"\{(\d+)\+?\}\r\n$", line)
            if not m:
                return bytes(out)
            out += self.read_exact(int(m.group(1)), timeout)

    def imap_until_tagged(self, tag, timeout=None):
        """(untagged/continuation responses, tagged response) up to tag."""
        tag = tag.encode() if isinstance(tag, str) else tag
        others = []
        while True:
            r = self.imap_response(timeout)
            if r.startswith(tag + b" "):
                return others, r
            others.append(r)

    def imap(self, tag, command, timeout=None):
        self.send("%s %s\r\n" % (tag, command))
        return self.imap_until_tagged(tag, timeout)

    # --- POP3 ---

    def pop3(self, command, timeout=None):
        self.send(command + "\r\n")
        return self.readline(timeout)

    def pop3_raw(self, command, multiline=False, timeout=None):
        """Sends a POP3 command and returns its whole answer as sent: the
        first line and, for a positive answer to a multi-line command, the
        body (still dot-stuffed) through the terminating ".\r\n"."""
        self.send(command + "\r\n")
        first = self.readline(timeout)
        if not (multiline and first.startswith(b"+OK")):
            return first
        return first + self.pop3_raw_body(timeout)

    def pop3_raw_body(self, timeout=None):
        """The rest of a multi-line answer after its first line, as sent,
        through the terminating ".\r\n" (which starts a line)."""
        start = 0
        while True:
            if self.buf.startswith(b".\r\n"):
                end = 3
                break
            i = self.buf.find(b"\r\n.\r\n", start)
            if i >= 0:
                end = i + 5
                break
            start = max(0, len(self.buf) - 4)
            if not self._fill(timeout):
                raise Closed("closed inside a multi-line answer after %d bytes" % len(self.buf))
        data = bytes(self.buf[:end])
        del self.buf[:end]
        return data

    def pop3_multiline(self, timeout=None):
        """Lines of a multi-line answer after its +OK line, dot-unstuffed,
        without the terminating "." line; CRLFs kept."""
        data = self.read_until(b"\r\n.\r\n", timeout) if not self.buf.startswith(b".\r\n") \
            else self.read_exact(3)
        body = data[:-3]  # keeps the CRLF before the "."
        lines = body.split(b"\r\n")
        if lines and lines[-1] == b"":
            lines.pop()
        return [l[1:] if l.startswith(b".") else l for l in lines]

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def b64(s):
    if isinstance(s, str):
        s = s.encode()
    return base64.b64encode(s).decode()


def plain_ir(user, password, authzid=""):
    """SASL PLAIN initial response (RFC 4616 section 2), base64."""
    return b64("%s\0%s\0%s" % (authzid, user, password))


def crlf(data):
    """A Maildir file's LF line ends as the CRLF that IMAP/POP3 deliver."""
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def dot_stuff(data):
    """RFC 1939 section 3: lines starting with "." get one more."""
    lines = data.split(b"\r\n")
    return b"\r\n".join(b"." + l if l.startswith(b".") else l for l in lines)


def run(cmd, timeout=60, **kw):
    return subprocess.run(cmd, capture_output=True, timeout=timeout, **kw)


def wait_for(predicate, timeout=5.0, interval=0.05):
    deadline = time.monotonic() + timeout
    while True:
        v = predicate()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(interval)
