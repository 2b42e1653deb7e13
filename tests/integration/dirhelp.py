"""What the directory tests (test_directories*.py) share: real-client logins
that report the server's answer instead of raising, a passwd-file writer,
Dovecot log windows, and listeners beyond the harness's standard six."""

import imaplib
import os
import poplib
import re
import socket
import ssl
import subprocess
import time
import unittest

import harness

HOST = harness.HOST

# Listener name -> (protocol, tls) for every listener the directory tests
# use; the harness's six plus these.
EXTRA_LISTENERS = {}


def tls_mode(listener):
    if listener in harness.LISTENERS:
        return harness.LISTENERS[listener][1]
    return EXTRA_LISTENERS[listener][1]


def listener(name, protocol, tls, **kw):
    """A listener entry for postern's config (port 0), remembered by name."""
    EXTRA_LISTENERS[name] = (protocol, tls)
    d = dict(name=name, protocol=protocol, address="%s:0" % HOST, tls=tls)
    d.update(kw)
    return d


def base_listeners(bed):
    """The harness's listeners, as its config writes them."""
    return list(bed.config()["listeners"])


def _text(x):
    if isinstance(x, (list, tuple)):
        x = b" ".join(i for i in x if isinstance(i, bytes))
    if isinstance(x, bytes):
        return x.decode("utf-8", "replace")
    return str(x)


def imap_login(bed, name, user, password, timeout=15.0, then=None):
    """LOGIN through postern's listener `name` with imaplib (implicit TLS, or
    STARTTLS first). Returns (True, tagged OK text, then(M) result) or
    (False, the NO/BAD text, None). `then(M)` runs while logged in."""
    host, port = bed.addr(name)
    ctx = harness.client_context(bed.cert)
    if tls_mode(name) == "implicit":
        m = imaplib.IMAP4_SSL(host, port, ssl_context=ctx, timeout=timeout)
    else:
        m = imaplib.IMAP4(host, port, timeout=timeout)
        if tls_mode(name) == "starttls":
            m.starttls(ssl_context=ctx)
    try:
        try:
            typ, data = m.login(user, password)
        except imaplib.IMAP4.error as e:
            return False, str(e), None
        extra = then(m) if then else None
        try:
            m.logout()
        except (imaplib.IMAP4.abort, OSError):
            pass
        return typ == "OK", _text(data), extra
    finally:
        try:
            m.shutdown()
        except OSError:
            pass


def pop3_login(bed, name, user, password, timeout=15.0, then=None):
    """USER/PASS through postern's listener `name` with poplib (implicit TLS,
    or STLS first). Returns (True, +OK text, then(P) result) or
    (False, the -ERR line, None)."""
    host, port = bed.addr(name)
    ctx = harness.client_context(bed.cert)
    if tls_mode(name) == "implicit":
        p = poplib.POP3_SSL(host, port, context=ctx, timeout=timeout)
    else:
        p = poplib.POP3(host, port, timeout=timeout)
        if tls_mode(name) == "starttls":
            p.stls(context=ctx)
    try:
        try:
            p.user(user)
            resp = p.pass_(password)
        except poplib.error_proto as e:
            return False, _text(e.args[0] if e.args else e), None
        extra = then(p) if then else None
        try:
            p.quit()
        except (poplib.error_proto, OSError):
            pass
        return True, _text(resp), extra
    finally:
        try:
            p.close()
        except OSError:
            pass


def login(bed, name, user, password, **kw):
    """imap_login or pop3_login by the listener's protocol."""
    proto = (harness.LISTENERS.get(name) or EXTRA_LISTENERS[name])[0]
    return (imap_login if proto == "imap" else pop3_login)(bed, name, user, password, **kw)


def imap_count(m):
    """Messages in INBOX (imaplib, logged in)."""
    typ, data = m.select("INBOX", readonly=True)
    return int(data[0])


def pop3_count(p):
    return p.stat()[0]


def curl(bed, scheme, name, user, password, path="", *extra):
    """curl against postern's listener: imaps/pop3s, or imap/pop3 with
    --ssl-reqd (STARTTLS/STLS). Returns the CompletedProcess."""
    host, port = bed.addr(name)
    cmd = ["curl", "-sS", "--max-time", "20", "--cacert", bed.cert,
           "-u", "%s:%s" % (user, password)]
    if scheme in ("imap", "pop3"):
        cmd.append("--ssl-reqd")
    cmd += list(extra) + ["%s://%s:%d/%s" % (scheme, host, port, path)]
    return harness.run(cmd, timeout=40)


class LogWindow:
    """The part of a log written after this object was made."""

    def __init__(self, read):
        self.read = read
        self.start = len(read())

    def text(self):
        return self.read()[self.start:]

    def wait(self, pattern, timeout=5.0):
        """The first match of pattern in the window, waiting up to timeout."""
        rx = re.compile(pattern)
        m = harness.wait_for(lambda: rx.search(self.text()), timeout)
        return m


def write_passwd(path, lines, keep_mtime_of=None):
    """Writes a passwd-file (one entry a line) in place. With keep_mtime_of,
    the file's old mtime is put back (so only SIGHUP notices the change)."""
    old = os.stat(path) if keep_mtime_of and os.path.exists(path) else None
    with open(path, "w") as f:
        f.write("".join(l + "\n" for l in lines))
    if old is not None:
        os.utime(path, ns=(old.st_atime_ns, old.st_mtime_ns))


def doveadm_pw(scheme, password, rounds=None):
    """A password field made by Dovecot itself."""
    cmd = ["doveadm", "pw", "-s", scheme, "-p", password]
    if rounds is not None:
        cmd += ["-r", str(rounds)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=60).stdout
    return out.strip()


def b64(s):
    return harness.b64(s)


def xoauth2_ir(user, token):
    """XOAUTH2's initial response (Google's format)."""
    return b64("user=%s\x01auth=Bearer %s\x01\x01" % (user, token))


def oauthbearer_ir(user, token):
    """OAUTHBEARER's initial response (RFC 7628 section 3.1)."""
    return b64("n,a=%s,\x01auth=Bearer %s\x01\x01" % (user, token))


def tls_conn(addr, cafile, source_ip=None, timeout=15.0):
    """A harness.Conn over implicit TLS, optionally from another loopback
    source address (127.0.0.2, ...), with the greeting read."""
    c = harness.Conn.__new__(harness.Conn)
    c.addr = addr
    c.cafile = cafile
    c.timeout = timeout
    raw = socket.create_connection(addr, timeout=timeout,
                                   source_address=(source_ip, 0) if source_ip else None)
    c.sock = raw
    c.buf = bytearray()
    c.eof = False
    c.start_tls()
    c.greeting = c.readline()
    return c


def timed_imap_login(bed, name, user, password, source_ip=None):
    """(seconds from LOGIN sent to its tagged answer, tagged line), with a
    raw client over implicit TLS from source_ip."""
    c = tls_conn(bed.addr(name), bed.cert, source_ip)
    try:
        t0 = time.monotonic()
        _, tagged = c.imap("a", "LOGIN %s %s" % (user, password))
        dt = time.monotonic() - t0
        try:
            c.imap("b", "LOGOUT", timeout=5)
        except (harness.Closed, OSError, ssl.SSLError):
            pass
        return dt, tagged
    finally:
        c.close()


class DirTestCase(harness.BedTestCase):
    """A BedTestCase whose Dovecot options and postern config are computed
    at class setup: dovecot_options() (kwargs for testbed.Dovecot), then
    prepare() (second Dovecots, passwd-files; self.bed exists), then postern
    from postern_config(). Directory tests are postern-only."""

    @classmethod
    def dovecot_options(cls):
        return {}

    @classmethod
    def prepare(cls):
        pass

    @classmethod
    def postern_config(cls):
        return {}

    @classmethod
    def setUpClass(cls):
        super(harness.BedTestCase, cls).setUpClass()
        if harness.DIRECT:
            raise unittest.SkipTest("directories are postern-only (POSTERN_TEST_DIRECT=1)")
        cls.bed = harness.Bed(cls.__name__, {}, cls.dovecot_options(), start_postern=False)
        cls.addClassCleanup(cls.bed.close)
        cls.prepare()
        cls.bed.start_postern(cls.postern_config())

    def dovecot_window(self, dovecot=None):
        """Dovecot's log from now on (after what happened before was logged)."""
        self.sync_dovecot_log(dovecot)
        return LogWindow((dovecot or self.bed.dovecot).log)

    def postern_window(self):
        return LogWindow(self.bed.postern.log)

    def assert_postern_logged(self, pattern, timeout=5.0):
        """postern's log matches pattern (waiting: a session's end line comes
        after the client saw its last answer)."""
        m = harness.wait_for(lambda: re.search(pattern, self.bed.postern.log()), timeout)
        self.assertTrue(m, "no %r in postern's log:\n%s"
                        % (pattern, self.bed.postern.log()[-3000:]))
        return m

    _sync = 0

    def sync_dovecot_log(self, dovecot=None, timeout=10.0):
        """Waits until Dovecot's log holds what its login processes logged
        before now. Dovecot's log lines can lag the protocol by a second or
        more on a loaded machine; a marker session on each login service
        (its session id set by IMAP ID x-session-id and POP3 XCLIENT, which
        Dovecot takes from loopback; no login) is logged after anything the
        process logged earlier."""
        dovecot = dovecot or self.bed.dovecot
        DirTestCase._sync += 1
        marker = "zzsync-%d-%d" % (os.getpid(), DirTestCase._sync)
        imap = harness.Conn((HOST, dovecot.imap_port))
        pop3 = harness.Conn((HOST, dovecot.pop3_port))
        try:
            imap.readline()
            pop3.readline()
            imap.imap("a", 'ID ("x-session-id" "%s")' % marker)
            imap.imap("b", "LOGOUT")
            self.assertTrue(pop3.pop3("XCLIENT SESSION=" + marker).startswith(b"+OK"))
            pop3.pop3("QUIT")
        finally:
            imap.close()
            pop3.close()

        def logged():
            text = dovecot.log()
            return all(re.search(r"%s-login: Info: Disconnected: .*session=<%s>" % (p, marker),
                                 text) for p in ("imap", "pop3"))

        self.assertTrue(harness.wait_for(logged, timeout),
                        "Dovecot did not log the marker sessions %s" % marker)

    def assert_backend_untouched(self, window, what="", dovecot=None):
        """No login process of the Dovecot behind `window` saw a connection
        after the window began (postern never reached the backend; every
        connection to a login process is logged when it ends)."""
        self.sync_dovecot_log(dovecot)
        lines = [l for l in window.text().splitlines()
                 if "-login:" in l and "zzsync-" not in l]
        self.assertEqual(lines, [], "the backend saw %s" % (what or "a login"))


def second_dovecot(test_cls, name, **kw):
    """Another private Dovecot in the bed's temp dir, stopped at class end."""
    import testbed
    d = testbed.Dovecot(os.path.join(test_cls.bed.tmp, name), **kw)
    test_cls.addClassCleanup(d.stop)
    return d
