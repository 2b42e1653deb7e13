"""What the routing tests (test_routing*.py, issue 10) share: a fleet of
real Dovecots (shards of replicas, two of them on one Maildir root), postern
configs with shards, raw IMAP/POP3 logins from a chosen loopback source
address, and the two logs that say where a login went.

Where a login landed is read from both sides: postern's `session end` line
(session id, user, backend) and the Dovecot whose log holds `Login:
user=<u> ... session=<id>` for the same session id (postern sends its
session id to the backend: IMAP ID x-session-id, POP3 XCLIENT SESSION=, and
Dovecot takes them from login_trusted_networks, 127.0.0.0/8 in the testbed).
The ring itself is not reimplemented: the tests check consistency (a user
always lands on one shard, every shard gets users, two instances agree).
"""

import os
import re
import shutil
import socket
import ssl
import sys
import tempfile
import unittest

import harness
import testbed
from fakes import log_fields

HOST = harness.HOST
PASSWORD = "demo"
USERS = tuple("u%02d" % i for i in range(48))

# Every Dovecot of the fleet: sessions of one user from one address are not
# capped at Dovecot's default 10 (the spread and least-loaded tests hold 30+).
FLEET_CONF = "mail_max_userip_connections = 1000\n"


def haproxy_listeners_conf(imap_port, pop3_port=None):
    """extra_conf adding Dovecot listeners that expect a PROXY header
    (`haproxy = yes`, DIGEST d.4) from loopback."""
    out = ("haproxy_trusted_networks = 127.0.0.0/8\n"
           "service imap-login {\n  inet_listener imap_haproxy {\n    port = %d\n"
           "    haproxy = yes\n  }\n}\n" % imap_port)
    if pop3_port:
        out += ("service pop3-login {\n  inet_listener pop3_haproxy {\n    port = %d\n"
                "    haproxy = yes\n  }\n}\n" % pop3_port)
    return out


def start_dovecots(tmp, specs, users=USERS, cleanup=None):
    """Starts Dovecots {name: kwargs} in order (a kwarg `replica_of` names an
    earlier one whose Maildirs this one serves) and returns {name: Dovecot}.
    Every one holds every user (a misrouted login would succeed, and show
    in the wrong log). cleanup(fn) registers the stop of each."""
    out = {}
    for name, kw in specs.items():
        kw = dict(kw)
        of = kw.pop("replica_of", None)
        if of is not None:
            kw["mail_root"] = out[of].home_root
        kw["extra_conf"] = FLEET_CONF + kw.get("extra_conf", "")
        kw.setdefault("users", users)
        d = testbed.Dovecot(os.path.join(tmp, "dovecot-" + name), **kw)
        d.name = name
        if cleanup is not None:
            cleanup(d.stop)
        out[name] = d
    return out


def backend_entry(name, d, **kw):
    e = {"name": name, "address": HOST, "imap_port": d.imap_port, "pop3_port": d.pop3_port}
    e.update(kw)
    return e


def base_config(cert, key, backends, **extra):
    """A postern config with plain listeners (logins allowed without TLS:
    these tests are about where logins go), an IMAPS one, and `backends`."""
    cfg = {
        "workers": 2,
        "hostname": "postern.test",
        "listeners": [
            {"name": "imap", "protocol": "imap", "address": "%s:0" % HOST, "tls": "none",
             "allow_plaintext_auth": True},
            {"name": "pop3", "protocol": "pop3", "address": "%s:0" % HOST, "tls": "none",
             "allow_plaintext_auth": True},
            {"name": "imaps", "protocol": "imap", "address": "%s:0" % HOST,
             "tls": "implicit"},
        ],
        "tls": {"certificate": cert, "key": key},
        "backends": backends,
        "abuse": {"enabled": False},
        "limits": {"max_connections_per_ip": 0},
        "log": {"level": "info", "format": "text"},
    }
    return harness.deep_merge(cfg, extra)


# --- clients -------------------------------------------------------------------

def connect(addr, source_ip=None, tls=False, cafile=None, timeout=15.0):
    """A harness.Conn from source_ip (127.0.0.x), greeting read."""
    c = harness.Conn.__new__(harness.Conn)
    c.addr = addr
    c.cafile = cafile
    c.timeout = timeout
    c.sock = socket.create_connection(
        addr, timeout=timeout, source_address=(source_ip, 0) if source_ip else None)
    c.buf = bytearray()
    c.eof = False
    c.greeting = None
    if tls:
        c.start_tls()
    c.greeting = c.readline()
    return c


class Login:
    """What one login saw: the answer (bytes), the client's local port, and
    the connection when it was kept open."""

    def __init__(self, answer, port, conn=None):
        self.answer = answer
        self.port = port
        self.conn = conn

    @property
    def ok(self):
        return self.answer.startswith(b"a OK") or self.answer.startswith(b"+OK")


def imap_login(addr, user, password=PASSWORD, source_ip=None, keep=False, tls=False,
               cafile=None, timeout=15.0):
    """LOGIN over IMAP; LOGOUT unless keep (then the Conn stays in .conn)."""
    c = connect(addr, source_ip, tls=tls, cafile=cafile, timeout=timeout)
    port = c.sock.getsockname()[1]
    try:
        _, tagged = c.imap("a", "LOGIN %s %s" % (user, password))
        if keep and tagged.startswith(b"a OK"):
            return Login(tagged, port, c)
        try:
            c.imap("b", "LOGOUT", timeout=5)
            c.read_to_eof(5)
        except (harness.Closed, OSError, ssl.SSLError):
            pass
        c.close()
        return Login(tagged, port)
    except BaseException:
        c.close()
        raise


def pop3_login(addr, user, password=PASSWORD, source_ip=None, keep=False, timeout=15.0):
    """USER/PASS over POP3; QUIT unless keep. The answer is PASS's (or
    USER's when that was refused)."""
    c = connect(addr, source_ip, timeout=timeout)
    port = c.sock.getsockname()[1]
    try:
        r = c.pop3("USER %s" % user)
        if r.startswith(b"+OK"):
            r = c.pop3("PASS %s" % password)
        if keep and r.startswith(b"+OK"):
            return Login(r, port, c)
        try:
            c.pop3("QUIT", timeout=5)
            c.read_to_eof(5)
        except (harness.Closed, OSError):
            pass
        c.close()
        return Login(r, port)
    except BaseException:
        c.close()
        raise


# --- logs -----------------------------------------------------------------------

_DOVECOT_LOGIN = re.compile(
    r"(imap|pop3)-login: Info: Login: user=<([^>]*)>, method=\S+, rip=([^,]+), lip=([^,]+),"
    r".*?session=<([^>]+)>")


def dovecot_logins(d, since=0):
    """Dovecot's `Login:` lines after offset `since` of its log, as dicts
    (protocol, user, rip, lip, session)."""
    out = []
    for m in _DOVECOT_LOGIN.finditer(d.log()[since:]):
        out.append({"protocol": m.group(1), "user": m.group(2), "rip": m.group(3),
                    "lip": m.group(4), "session": m.group(5)})
    return out


def session_ends(postern, since=0):
    """Fields of postern's `session end` lines after offset `since`."""
    return [log_fields(l) for l in postern.log()[since:].splitlines() if "session end:" in l]


def session_end_for_port(postern, port, since=0, timeout=10.0):
    """The `session end` fields of the session from client port `port`."""
    suffix = ":%d" % port

    def find():
        for f in session_ends(postern, since):
            if f.get("client", "").endswith(suffix):
                return f
        return None
    return harness.wait_for(find, timeout=timeout)


class Placement:
    """Joins postern's session ends with the Dovecots' logins by session id."""

    def __init__(self, dovecots):
        self.dovecots = dovecots
        self.marks = {name: len(d.log()) for name, d in dovecots.items()}

    def dovecot_of(self, sessions, timeout=15.0):
        """{session id: Dovecot name} for the given ids, waiting (bounded)
        until each shows in some Dovecot's log (the log lags the protocol)."""
        want = set(sessions)
        found = {}

        def scan():
            for name, d in self.dovecots.items():
                for l in dovecot_logins(d, self.marks[name]):
                    if l["session"] in want:
                        found[l["session"]] = name
            return len(found) == len(want)
        harness.wait_for(scan, timeout=timeout, interval=0.1)
        return found


def wait_log(postern, pattern, since=0, timeout=10.0):
    """The first match of pattern in postern's log after `since`, waiting."""
    rx = re.compile(pattern)
    return harness.wait_for(lambda: rx.search(postern.log()[since:]), timeout=timeout)


# --- test case ---------------------------------------------------------------------

class FleetTestCase(unittest.TestCase):
    """A class-wide temp dir, certificate and cleanups; subclasses start
    their Dovecots and posterns in setUpClass (helpers below). On a
    failure the tails of every postern's and Dovecot's log are printed."""

    dovecots = {}
    posterns = {}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        if harness.DIRECT:
            raise unittest.SkipTest("routing is postern-only (POSTERN_TEST_DIRECT=1)")
        cls.tmp = tempfile.mkdtemp(prefix="postern-it-%s-" % cls.__name__)
        os.chmod(cls.tmp, 0o755)
        cls.addClassCleanup(cls._remove_tmp)
        cls.cert, cls.key = testbed.make_cert(os.path.join(cls.tmp, "tls"))
        cls.dovecots = {}
        cls.posterns = {}
        cls._n = 0

    @classmethod
    def _remove_tmp(cls):
        if harness.KEEP:
            print("kept %s" % cls.tmp, file=sys.stderr)
        else:
            shutil.rmtree(cls.tmp, ignore_errors=True)

    @classmethod
    def start_fleet(cls, specs, users=USERS):
        cls.dovecots.update(start_dovecots(cls.tmp, specs, users, cls.addClassCleanup))
        return cls.dovecots

    @classmethod
    def start_postern(cls, name, config):
        """Starts (or restarts) postern `name` with config; stopped at class end."""
        old = cls.posterns.get(name)
        if old is not None:
            old.stop()
        cls._n += 1
        p = testbed.Postern(harness.postern_binary(),
                            os.path.join(cls.tmp, "postern-%s-%d" % (name, cls._n)), config)
        cls.addClassCleanup(cls._stop_and_check, name, p)
        cls.posterns[name] = p
        return p

    _SANITIZER = re.compile(r"ERROR: (Address|Leak)Sanitizer|runtime error:|"
                            r"ERROR: ThreadSanitizer")

    @classmethod
    def _stop_and_check(cls, name, p):
        """Stops postern p; a sanitizer build's report in its log fails the
        class (the report would otherwise go with the temp dir)."""
        code = p.stop()
        m = cls._SANITIZER.search(p.log())
        if m:
            text = p.log()
            raise AssertionError("postern %s (exit %s): sanitizer report:\n%s"
                                 % (name, code, text[max(0, m.start() - 200):][:6000]))

    def tearDown(self):
        outcome = getattr(self, "_outcome", None)
        result = getattr(outcome, "result", None)
        if result is not None:
            failed = any(t is self for t, _ in list(result.failures) + list(result.errors))
            if failed:
                for name, p in self.posterns.items():
                    print("\n--- postern %s (tail) ---\n%s" % (name, p.log()[-5000:]),
                          file=sys.stderr)
                for name, d in self.dovecots.items():
                    print("\n--- dovecot %s (tail) ---\n%s" % (name, d.log()[-1500:]),
                          file=sys.stderr)
        super().tearDown()

    def assert_logged(self, postern, pattern, since=0, timeout=10.0):
        m = wait_log(postern, pattern, since, timeout)
        self.assertTrue(m, "no %r in postern's log:\n%s" % (pattern, postern.log()[since:][-3000:]))
        return m
