"""What test_ops_reload.py (issue 11: change without dropping, drain and
stop, SNI, shared ticket keys) needs besides harness and routehelp:
certificates with chosen names, key types and subjects; a TLS client that
reports the certificate it was given and whether its session was resumed;
the admin endpoint; config rewrites and reloads (SIGHUP or POST
/admin/reload) waited for in postern's log; ticket key files.

Certificates are made with Debian's openssl command line (never loaded
into postern: it reads the PEM files). Each is self-signed, so the file
itself is the CA a client verifies against; a bundle of several is one
cafile for all of them.
"""

import base64
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request

import harness
import testbed

TOKEN = "reload-test-token-0123456789abcdef"


# --- certificates -------------------------------------------------------------------

def make_cert(directory, name, cn, dns=("localhost",), ips=("127.0.0.1",), key_type="ec"):
    """A self-signed certificate (random serial) for CN `cn` with the given
    subjectAltName entries; key_type "ec" (P-256) or "rsa" (2048 bits).
    Returns (cert_path, key_path)."""
    os.makedirs(directory, exist_ok=True)
    cert = os.path.join(directory, name + ".pem")
    key = os.path.join(directory, name + "-key.pem")
    newkey = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"] if key_type == "ec" \
        else ["-newkey", "rsa:2048"]
    san = ",".join(["DNS:%s" % d for d in dns] + ["IP:%s" % i for i in ips])
    subprocess.run(["openssl", "req", "-x509"] + newkey +
                   ["-nodes", "-keyout", key, "-out", cert, "-days", "30", "-subj", "/CN=%s" % cn,
                    "-addext", "subjectAltName=%s" % san],
                   check=True, capture_output=True, timeout=60)
    os.chmod(key, 0o600)
    return cert, key


def der_of(cert_path):
    """The DER bytes of the (first) certificate in a PEM file."""
    with open(cert_path) as f:
        pem = f.read()
    first = pem[:pem.index("-----END CERTIFICATE-----") + len("-----END CERTIFICATE-----")]
    return ssl.PEM_cert_to_DER_cert(first)


def bundle(path, certs):
    """Writes the PEM certificates `certs` into one file (a cafile)."""
    with open(path, "w") as out:
        for c in certs:
            with open(c) as f:
                out.write(f.read())
    return path


def replace_file(path, data):
    """Replaces path's content atomically (write beside, rename over), as an
    operator or configuration management does."""
    tmp = path + ".new"
    with open(tmp, "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())
    os.chmod(tmp, 0o600)
    os.rename(tmp, path)


def read(path):
    with open(path, "rb") as f:
        return f.read()


# --- TLS clients ----------------------------------------------------------------------

def client_context(cafile, max_version=None, ciphers=None, check_hostname=True):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cafile)
    ctx.check_hostname = check_hostname
    ctx.verify_mode = ssl.CERT_REQUIRED
    if max_version is not None:
        ctx.maximum_version = max_version
    if ciphers is not None:
        ctx.set_ciphers(ciphers)
    return ctx


class Probe:
    """One implicit-TLS connection: the certificate the server sent (DER),
    the TLS version, whether the session was resumed, the session (with
    its ticket once the greeting was read) and the greeting."""

    def __init__(self, addr, ctx, server_hostname="localhost", session=None, keep=False,
                 timeout=10.0):
        raw = socket.create_connection(addr, timeout=timeout)
        try:
            self.sock = ctx.wrap_socket(raw, server_hostname=server_hostname, session=session)
        except BaseException:
            raw.close()
            raise
        self.der = self.sock.getpeercert(binary_form=True)
        self.version = self.sock.version()
        self.reused = self.sock.session_reused
        # TLS 1.3 tickets come after the handshake: reading the greeting
        # takes them in.
        self.greeting = b""
        while not self.greeting.endswith(b"\n"):
            chunk = self.sock.recv(4096)
            if not chunk:
                break
            self.greeting += chunk
        self.session = self.sock.session
        if not keep:
            self.close()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def conn(addr, ctx, server_hostname="localhost", timeout=15.0):
    """A harness.Conn over implicit TLS with `ctx`, greeting read; .der is
    the server's certificate."""
    c = harness.Conn.__new__(harness.Conn)
    c.addr = addr
    c.cafile = None
    c.timeout = timeout
    raw = socket.create_connection(addr, timeout=timeout)
    c.sock = ctx.wrap_socket(raw, server_hostname=server_hostname)
    c.der = c.sock.getpeercert(binary_form=True)
    c.buf = bytearray()
    c.eof = False
    c.greeting = c.readline()
    return c


# --- admin endpoint -------------------------------------------------------------------

def write_token(path):
    with open(path, "w") as f:
        f.write(TOKEN + "\n")
    os.chmod(path, 0o600)
    return path


def admin(postern, method, path, token=TOKEN, timeout=15.0):
    """(HTTP status, parsed JSON or text) of one admin request."""
    host, port = postern.address("admin")
    req = urllib.request.Request("http://%s:%d%s" % (host, port, path), method=method,
                                 headers={"Authorization": "Bearer " + token})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status, body, ctype = resp.status, resp.read(), resp.headers.get("Content-Type", "")
    except urllib.error.HTTPError as e:
        status, body, ctype = e.code, e.read(), e.headers.get("Content-Type", "")
    if "json" in ctype:
        return status, json.loads(body)
    return status, body.decode(errors="replace")


def sessions(postern, **filters):
    """The admin API's session list (dicts), filtered by user/backend/client_ip."""
    q = "&".join("%s=%s" % kv for kv in filters.items())
    status, body = admin(postern, "GET", "/admin/sessions" + ("?" + q if q else ""))
    assert status == 200, (status, body)
    return body["sessions"]


# --- config and reloads ---------------------------------------------------------------

def write_config(postern, cfg):
    """Replaces the running postern's config file (atomically) with cfg
    (a dict, or YAML text)."""
    text = cfg if isinstance(cfg, str) else testbed.to_yaml(cfg)
    replace_file(postern.config_path, text)
    return text


_RELOAD = re.compile(r"reload: result=(\w+) kind=(\S+) snapshot=(\d+)(?: source=\S+)?"
                     r"(?: detail=\"(.*)\")?")


def reload_events(postern, since=0, kind=None):
    """(result, kind, snapshot, detail) of every `reload` line after `since`
    (config and files reloads; passwd-file ones have no snapshot)."""
    out = []
    for m in _RELOAD.finditer(postern.log()[since:]):
        if kind is None or m.group(2) == kind:
            out.append((m.group(1), m.group(2), int(m.group(3)), m.group(4)))
    return out


def wait_reload(postern, since, kind="config", timeout=10.0):
    """The first reload event of `kind` after `since`, waiting (None if none)."""
    found = harness.wait_for(lambda: reload_events(postern, since, kind), timeout=timeout)
    return found[0] if found else None


def sighup(postern, kind="config", timeout=10.0):
    """SIGHUP and its reload event (result, kind, snapshot, detail)."""
    mark = len(postern.log())
    postern.send_signal(signal.SIGHUP)
    return wait_reload(postern, mark, kind, timeout)


def admin_reload(postern):
    """POST /admin/reload: (status, body) and the log's event for it."""
    mark = len(postern.log())
    status, body = admin(postern, "POST", "/admin/reload")
    return status, body, wait_reload(postern, mark)


def line_of(text, needle):
    """The 1-based line of the only line of text holding needle."""
    hits = [i + 1 for i, l in enumerate(text.splitlines()) if needle in l]
    assert len(hits) == 1, "test bug: %r on lines %s" % (needle, hits)
    return hits[0]


# --- ticket keys ---------------------------------------------------------------------

def ticket_key():
    """One ticket key line: base64 of 80 random bytes (tls/README.md)."""
    return base64.b64encode(os.urandom(80)).decode()


def write_ticket_keys(path, keys):
    replace_file(path, "".join(k + "\n" for k in keys))
    return path


# --- IMAP helpers ---------------------------------------------------------------------

def message_id(data):
    """The Message-ID header of a message (bytes), or None."""
    m = re.search(rb"(?im)^Message-ID:\s*(<[^>\r\n]+>)", data)
    return m.group(1) if m else None


def fetch_first(c, tag="f"):
    """FETCH 1 BODY.PEEK[] on a selected IMAP Conn; the literal (bytes)."""
    untagged, tagged = c.imap(tag, "FETCH 1 BODY.PEEK[]")
    assert tagged.startswith(tag.encode() + b" OK"), tagged
    for r in untagged:
        m = re.match(rb"\* 1 FETCH \(.*BODY\[\] \{(\d+)\}\r\n", r)
        if m:
            return r[m.end():m.end() + int(m.group(1))]
    raise AssertionError("no literal in %r" % untagged)


def wait_until(predicate, timeout, interval=0.05):
    """(value, seconds) of the first truthy predicate() within timeout."""
    t0 = time.monotonic()
    v = harness.wait_for(predicate, timeout=timeout, interval=interval)
    return v, time.monotonic() - t0
