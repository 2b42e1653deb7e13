"""What the issue 11 admin and observability tests (test_ops_admin.py)
share: a bed whose postern runs the admin endpoint (bearer token in a
file), an HTTP client for it, a Prometheus text parser, a private real
Prometheus (Debian's `prometheus`, own config and TSDB in the temp dir, a
free loopback port, stopped by PID) queried over its HTTP API, and readers
for postern's JSON log lines."""

import http.client
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
import unittest
import urllib.parse

import harness
import testbed

HOST = harness.HOST


# --- the admin endpoint ---------------------------------------------------------------

def write_token(directory, name="admin.token"):
    """A random bearer token (32 hex characters) in a file of its own;
    returns (path, token)."""
    token = secrets.token_hex(16)
    path = os.path.join(directory, name)
    with open(path, "w") as f:
        f.write(token + "\n")
    os.chmod(path, 0o600)
    return path, token


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return "<HTTP %d %r>" % (self.status, self.body[:300])


class Admin:
    """postern's admin endpoint at addr, with `token` (None: no
    Authorization header at all)."""

    def __init__(self, addr, token):
        self.addr = addr
        self.token = token

    def request(self, method, path, params=None, token=Ellipsis, headers=None, timeout=15.0):
        """One request on a fresh connection; token=... uses self.token,
        None sends no Authorization, a string sends that one."""
        if params:
            path += "?" + urllib.parse.urlencode(params)
        h = dict(headers or {})
        tok = self.token if token is Ellipsis else token
        if tok is not None:
            h["Authorization"] = "Bearer " + tok
        conn = http.client.HTTPConnection(self.addr[0], self.addr[1], timeout=timeout)
        try:
            conn.request(method, path, headers=h)
            r = conn.getresponse()
            return Response(r.status, dict((k.lower(), v) for k, v in r.getheaders()),
                            r.read().decode("utf-8", "replace"))
        finally:
            conn.close()

    def get(self, path, params=None, **kw):
        return self.request("GET", path, params, **kw)

    def post(self, path, params=None, **kw):
        return self.request("POST", path, params, **kw)

    def sessions(self, **filters):
        """The `sessions` list of GET /admin/sessions with these filters."""
        r = self.get("/admin/sessions", filters or None)
        if r.status != 200:
            raise AssertionError("GET /admin/sessions %r: %r" % (filters, r))
        d = r.json()
        assert d["count"] == len(d["sessions"]), d
        return d["sessions"]

    def metrics(self):
        r = self.get("/metrics")
        if r.status != 200:
            raise AssertionError("GET /metrics: %r" % r)
        return r.body


# --- Prometheus text format -------------------------------------------------------------

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text):
    """[(name, {label: value}, float)] of every sample line."""
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if not m:
            raise AssertionError("not a sample line: %r" % line)
        labels = {k: v.replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\")
                  for k, v in _LABEL.findall(m.group(2) or "")}
        out.append((m.group(1), labels, float(m.group(3))))
    return out


def metric_sum(text, name, **labels):
    """The sum of the samples of `name` whose labels include `labels`
    (None when there is none)."""
    vals = [v for n, l, v in parse_metrics(text)
            if n == name and all(l.get(k) == str(x) for k, x in labels.items())]
    return sum(vals) if vals else None


def promql(name, **labels):
    """sum(name{labels}): the query of metric_sum's number."""
    sel = ",".join('%s="%s"' % (k, v) for k, v in labels.items())
    return "sum(%s{%s})" % (name, sel)


# --- a real Prometheus ---------------------------------------------------------------

class Prometheus:
    """A private Prometheus scraping `jobs` {job: (host, port, token file or
    None)} every second (/metrics, bearer token from the file), its TSDB
    and log in workdir, on a free loopback port; stopped by its PID."""

    def __init__(self, workdir, jobs):
        self.workdir = os.path.abspath(workdir)
        os.makedirs(self.workdir, exist_ok=True)
        self.jobs = dict(jobs)
        self.port = testbed.free_port()
        self.conf_path = os.path.join(self.workdir, "prometheus.yml")
        self.log_path = os.path.join(self.workdir, "prometheus.log")
        self.proc = None

    def _write_conf(self):
        # JSON is YAML: no quoting questions.
        conf = {"global": {"scrape_interval": "1s", "scrape_timeout": "1s",
                           "evaluation_interval": "1s"},
                "scrape_configs": []}
        for job, (host, port, token_file) in self.jobs.items():
            sc = {"job_name": job, "metrics_path": "/metrics",
                  "static_configs": [{"targets": ["%s:%d" % (host, port)]}]}
            if token_file:
                sc["authorization"] = {"type": "Bearer", "credentials_file": token_file}
            conf["scrape_configs"].append(sc)
        with open(self.conf_path, "w") as f:
            json.dump(conf, f, indent=1)

    def start(self, timeout=20.0):
        self._write_conf()
        out = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            ["prometheus", "--config.file=" + self.conf_path,
             "--storage.tsdb.path=" + os.path.join(self.workdir, "tsdb"),
             "--web.listen-address=%s:%d" % (HOST, self.port),
             "--storage.tsdb.retention.time=1h"],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            preexec_fn=testbed._kill_with_parent)
        out.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("prometheus exited with %s:\n%s"
                                   % (self.proc.returncode, self.log()[-3000:]))
            try:
                if self._get("/-/ready", timeout=1)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("prometheus not ready:\n%s" % self.log()[-3000:])

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def _get(self, path, timeout=10.0):
        conn = http.client.HTTPConnection(HOST, self.port, timeout=timeout)
        try:
            conn.request("GET", path)
            r = conn.getresponse()
            return r.status, r.read().decode()
        finally:
            conn.close()

    def api(self, path, **params):
        status, body = self._get("/api/v1/%s?%s" % (path, urllib.parse.urlencode(params)))
        d = json.loads(body)
        if status != 200 or d.get("status") != "success":
            raise AssertionError("prometheus %s %r: %s %s" % (path, params, status, body[:500]))
        return d["data"]

    def query(self, q):
        """[(labels, value)] of an instant query."""
        data = self.api("query", query=q)
        return [(r["metric"], float(r["value"][1])) for r in data["result"]]

    def value(self, q):
        """The one value of q (a sum(...)), None when it has no result."""
        r = self.query(q)
        if not r:
            return None
        if len(r) != 1:
            raise AssertionError("%s: %d series: %r" % (q, len(r), r))
        return r[0][1]

    def wait_value(self, q, want, timeout=15.0):
        """Waits until q's value is `want` (a query without a result counts
        as 0); returns the last value seen (0.0 for none)."""
        seen = [None]

        def check():
            v = self.value(q)
            seen[0] = 0.0 if v is None else v
            return seen[0] == want
        harness.wait_for(check, timeout=timeout, interval=0.2)
        return seen[0]

    def targets(self):
        return self.api("targets")["activeTargets"]


# --- JSON log lines ---------------------------------------------------------------

def json_lines(text):
    """Every complete line of a JSON log, parsed (ValueError names a line
    that is not one JSON object)."""
    out = []
    lines = text.split("\n")
    for i, line in enumerate(lines[:-1]):  # the last piece is unfinished (or "")
        try:
            obj = json.loads(line)
        except ValueError as e:
            raise ValueError("line %d is not JSON (%s): %r" % (i + 1, e, line[:500]))
        if not isinstance(obj, dict):
            raise ValueError("line %d is not an object: %r" % (i + 1, line[:500]))
        out.append(obj)
    return out


def events(text, name=None, **fields):
    """The JSON log's events (named `name`) whose fields equal `fields`."""
    return [e for e in json_lines(text)
            if (name is None or e.get("event") == name)
            and all(e.get(k) == v for k, v in fields.items())]


def wait_events(read, name, count=1, timeout=10.0, **fields):
    """Waits until read() (a log's text) holds `count` such events; returns them."""
    found = [[]]

    def check():
        found[0] = events(read(), name, **fields)
        return len(found[0]) >= count
    harness.wait_for(check, timeout=timeout)
    return found[0]


# --- test case ---------------------------------------------------------------------

class AdminTestCase(harness.BedTestCase):
    """A bed (Dovecot + postern) whose postern runs the admin endpoint on a
    free loopback port with a bearer token from a file: self.admin (the
    token) and self.anon (no token). Dovecot's options and postern's extra
    config come from dovecot_options() and postern_config() (the bed
    exists when prepare() runs). Postern-only."""

    postern_overrides = {}
    # None: log.format left out, so postern's default (JSON) applies.
    log_format = None

    @classmethod
    def dovecot_options(cls):
        return dict(cls.dovecot_kwargs)

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
            raise unittest.SkipTest("the admin endpoint is postern's (POSTERN_TEST_DIRECT=1)")
        cls.bed = harness.Bed(cls.__name__, cls.postern_overrides, cls.dovecot_options(),
                              start_postern=False, gateway_users=cls.gateway_users)
        cls.addClassCleanup(cls.bed.close)
        cls.token_file, cls.token = write_token(cls.bed.tmp)
        cls.prepare()
        cls.start()

    @classmethod
    def start(cls, extra=None):
        """(Re)starts postern with the admin section and postern_config()."""
        cfg = harness.deep_merge({"admin": {"address": "%s:0" % HOST,
                                            "token_file": cls.token_file},
                                  "log": {"format": cls.log_format}},
                                 cls.postern_config())
        cls.bed.start_postern(harness.deep_merge(cfg, extra))
        cls.admin = Admin(cls.bed.postern.address("admin"), cls.token)
        cls.anon = Admin(cls.bed.postern.address("admin"), None)

    def log(self):
        return self.bed.postern.log()

    def mark(self):
        """An offset into postern's log (after its last complete line): what
        is logged from now on."""
        return self.log().rfind("\n") + 1

    def since(self, mark):
        return self.log()[mark:]

    def scrape(self, name, **labels):
        return metric_sum(self.admin.metrics(), name, **labels)


def source_conn(addr, source_ip, tls=False, cafile=None, timeout=15.0, rcvbuf=None):
    """A harness.Conn from source_ip (127.0.0.x), greeting read; optionally a
    small receive buffer (a slow reader)."""
    import socket
    c = harness.Conn.__new__(harness.Conn)
    c.addr = addr
    c.cafile = cafile
    c.timeout = timeout
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    raw.settimeout(timeout)
    if source_ip:
        raw.bind((source_ip, 0))
    raw.connect(addr)
    c.sock = raw
    c.buf = bytearray()
    c.eof = False
    c.greeting = None
    if tls:
        c.start_tls()
    c.greeting = c.readline()
    return c


def local_port(c):
    return c.sock.getsockname()[1]


def print_failure_logs(test, *logs):
    """In tearDown: the tails of extra logs when the test failed."""
    outcome = getattr(test, "_outcome", None)
    result = getattr(outcome, "result", None)
    if result is None:
        return
    if any(t is test for t, _ in list(result.failures) + list(result.errors)):
        for title, text in logs:
            print("\n--- %s (tail) ---\n%s" % (title, text[-3000:]), file=sys.stderr)
