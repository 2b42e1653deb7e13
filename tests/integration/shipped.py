"""The configuration files deploy/ ships, made checkable by the real binary.

Every Postern config under deploy/ (the example, the container image's, the
samples, and the postern.yaml inside the Kubernetes ConfigMap) refers to
files that exist only where it is deployed: certificates, keys, ticket keys,
the admin token, passwd-files. `materialize()` copies a config into a
temporary root with every `/etc/postern/` path moved under it and makes
each referenced file as a dummy of the right kind (a real self-signed
certificate and key, random ticket keys, a one-user passwd-file), so that
`postern --check-config` can load all of it.

Keys announced for issue 11 that the binary may not implement yet
(PENDING_KEYS): when the binary rejects one of them as unknown, `check()`
records it, removes it from the copy and checks again, so the rest of the
file is still checked; the list of such keys is what the integrator has
still to merge. Any other rejection is an error in the shipped file.

Used by test_shipped_configs.py, test_deploy_manifests.py and
tests/container_test.py.
"""

import copy
import base64
import os
import re
import secrets
import shutil
import subprocess

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
DEPLOY = os.path.join(REPO, "deploy")

import testbed  # noqa: E402  (deploy/testbed.py, on PYTHONPATH)

# Configuration keys of issue 11 that samples use before every binary knows
# them (a key, or a section whose sub-keys all count).
PENDING_KEYS = (
    "user",
    "group",
    "log.format",
    "tls.certificates",
    "tls.ticket_key_file",
    "admin",
    "timeouts.shutdown_deadline",
)

# Where each shipped config lives when deployed; relative paths in it
# resolve against that directory.
DEFAULT_RUNTIME_PATH = "/etc/postern/postern.yaml"
PREFIX = "/etc/postern/"

UNKNOWN_KEY_RE = re.compile(r"^(?P<file>.+?):(?P<line>\d+): (?P<key>[^\s:]+): unknown key", re.M)


def is_pending(key):
    return any(key == p or key.startswith(p + ".") or key.startswith(p + "[")
               for p in PENDING_KEYS)


def _yaml_files():
    out = []
    for dirpath, dirnames, filenames in os.walk(DEPLOY):
        dirnames.sort()
        for f in sorted(filenames):
            if f.endswith((".yaml", ".yml")):
                out.append(os.path.join(dirpath, f))
    return out


def yaml_files():
    """Every YAML file under deploy/ (absolute paths)."""
    return _yaml_files()


def load_all(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def deployment_config_path():
    """The --config argument of the Kubernetes Deployment's container."""
    for doc in load_all(os.path.join(DEPLOY, "kubernetes", "deployment.yaml")):
        if doc.get("kind") != "Deployment":
            continue
        for c in doc["spec"]["template"]["spec"]["containers"]:
            argv = list(c.get("command", [])) + list(c.get("args", []))
            if "--config" in argv:
                return argv[argv.index("--config") + 1]
    return None


class Shipped:
    """One Postern config shipped under deploy/."""

    def __init__(self, label, text, runtime_path=DEFAULT_RUNTIME_PATH):
        self.label = label  # "deploy/samples/fleet.yaml", "...configmap.yaml#postern.yaml"
        self.text = text
        self.runtime_path = runtime_path

    def __repr__(self):
        return "Shipped(%s)" % self.label


def shipped_configs():
    """Every Postern config under deploy/: plain files with `listeners`, and
    the *.yaml entries of Kubernetes ConfigMaps."""
    out = []
    for path in _yaml_files():
        rel = os.path.relpath(path, REPO)
        docs = load_all(path)
        if any(isinstance(d, dict) and "apiVersion" in d for d in docs):
            for d in docs:
                if d.get("kind") != "ConfigMap":
                    continue
                for key, value in (d.get("data") or {}).items():
                    if key.endswith((".yaml", ".yml")):
                        runtime = deployment_config_path() or DEFAULT_RUNTIME_PATH
                        runtime = os.path.join(os.path.dirname(runtime), key)
                        out.append(Shipped("%s#%s" % (rel, key), value, runtime))
            continue
        if len(docs) == 1 and isinstance(docs[0], dict) and "listeners" in docs[0]:
            with open(path) as f:
                out.append(Shipped(rel, f.read()))
    return out


# --- dummy files ------------------------------------------------------------

def ticket_key_line():
    """One ticket key as tls/tls_ticket_keys.h reads them: base64 of 80
    random bytes on a line (openssl rand 80 | base64 -w0)."""
    return base64.b64encode(secrets.token_bytes(80)) + b"\n"


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def _resolve(path, config_dir):
    return path if os.path.isabs(path) else os.path.join(config_dir, path)


def referenced_files(data):
    """(kind, path) for every file a parsed config refers to."""
    out = []
    tls = data.get("tls") or {}
    if isinstance(tls, dict):
        if "certificate" in tls or "key" in tls:
            out.append(("certpair", (tls.get("certificate"), tls.get("key"))))
        for entry in tls.get("certificates") or []:
            out.append(("certpair", (entry.get("certificate"), entry.get("key"))))
        if tls.get("ticket_key_file"):
            out.append(("ticket", tls["ticket_key_file"]))
    admin = data.get("admin") or {}
    if isinstance(admin, dict) and admin.get("token_file"):
        out.append(("token", admin["token_file"]))
    for d in data.get("directories") or []:
        if d.get("type") == "passwd-file" and d.get("path"):
            out.append(("passwd", d["path"]))
    for b in data.get("backends") or []:
        if b.get("master_password_file"):
            out.append(("secret", b["master_password_file"]))
        if b.get("tls_ca_file"):
            out.append(("ca", b["tls_ca_file"]))
    return out


class Materialized:
    """A shipped config copied under `root` (workdir/root), its files made.

    rewrite=True: every /etc/postern/ path in the text points under root, and
    `path` (the copy) is what the binary on this machine reads.
    rewrite=False: the text is unchanged and the files are made at
    root + their path, for a binary that sees root as / (a chroot, where
    `root/etc/postern` is mounted on the image's /etc/postern): that binary
    reads `runtime_path`.
    """

    def __init__(self, shipped, workdir, rewrite=True):
        self.shipped = shipped
        self.root = os.path.join(os.path.abspath(workdir), "root")
        os.makedirs(self.root, exist_ok=True)
        self.text = shipped.text.replace(PREFIX, self.root + PREFIX) if rewrite else shipped.text
        self.path = self.root + shipped.runtime_path
        self.runtime_path = self.path if rewrite else shipped.runtime_path
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        self.made = []  # paths of the dummy files
        certs = os.path.join(os.path.abspath(workdir), "certs")
        data = yaml.safe_load(self.text) or {}
        config_dir = os.path.dirname(self.runtime_path)
        here = (lambda p: p) if rewrite else (lambda p: self.root + p)
        for n, (kind, value) in enumerate(referenced_files(data)):
            if kind == "certpair":
                cert, key = value
                src_cert, src_key = testbed.make_cert(certs, "c%d" % n)
                for src, dst in ((src_cert, cert), (src_key, key)):
                    if dst:
                        self._put(here(_resolve(dst, config_dir)), _read(src))
            elif kind == "ticket":
                self._put(here(_resolve(value, config_dir)), ticket_key_line())
            elif kind == "token":
                self._put(here(_resolve(value, config_dir)),
                          (secrets.token_hex(16) + "\n").encode())
            elif kind == "passwd":
                self._put(here(_resolve(value, config_dir)),
                          b"alice@example.org:{PLAIN}demo::::::\n")
            elif kind == "secret":
                self._put(here(_resolve(value, config_dir)), b"master-secret\n")
            elif kind == "ca":
                src_cert, _ = testbed.make_cert(certs, "ca%d" % n)
                self._put(here(_resolve(value, config_dir)), _read(src_cert))
        with open(self.path, "w") as f:
            f.write(self.text)

    def _put(self, path, data):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
        os.chmod(path, 0o600)
        self.made.append(path)


# --- checking ---------------------------------------------------------------

def short_message(output):
    """The binary's first line without the file name and the list of
    expected keys: "log.format: unknown key"."""
    line = output.splitlines()[0] if output else ""
    line = re.sub(r"^.+?:\d+: ", "", line)
    return re.sub(r" \(expected one of: .*\)$", "", line)


def run_check(binary, path, timeout=30):
    r = subprocess.run([binary, "--check-config", path], capture_output=True, text=True,
                       timeout=timeout)
    return r.returncode, (r.stdout + r.stderr).strip()


def _path_tokens(key):
    return [int(i) if i else name for name, i in re.findall(r"([^.\[\]]+)|\[(\d+)\]", key)]


def strip_key(data, key):
    """Removes `key` ("tls.certificates", "listeners[1].x") from parsed data.
    Without tls.certificates, the first entry becomes tls.certificate/key so
    that the rest of the file still loads a certificate."""
    tokens = _path_tokens(key)
    node = data
    for t in tokens[:-1]:
        node = node[t]
    removed = node.pop(tokens[-1])
    if key == "tls.certificates" and removed and "certificate" not in node:
        node["certificate"] = removed[0]["certificate"]
        node["key"] = removed[0]["key"]


class CheckResult:
    def __init__(self):
        self.pending = []   # (key, the binary's message) rejected as unknown and stripped
        self.rc = None      # the exit status of the last check
        self.output = ""    # and its output
        self.error = None   # why the file is bad, or None
        self.materialized = None

    @property
    def ok(self):
        return self.error is None


def check(binary, shipped, workdir, rewrite=True, runner=None, prepare=None):
    """Checks one shipped config with `postern --check-config`; see the
    module's docstring for what happens to PENDING_KEYS.

    runner(path) -> (exit status, output) runs the check another way (in a
    chroot: see Materialized's rewrite=False); prepare(materialized) runs
    once the files are made, before the first check."""
    m = Materialized(shipped, workdir, rewrite=rewrite)
    if prepare is not None:
        prepare(m)
    if runner is None:
        runner = lambda path: run_check(binary, path)  # noqa: E731
    result = CheckResult()
    result.materialized = m
    data = None
    for _ in range(len(PENDING_KEYS) * 4 + 1):
        result.rc, result.output = runner(m.runtime_path)
        if result.rc == 0:
            return result
        hit = UNKNOWN_KEY_RE.search(result.output)
        if hit is None or not is_pending(hit.group("key")):
            result.error = "%s: postern --check-config exited %d:\n%s" % (
                shipped.label, result.rc, result.output)
            if result.pending:
                result.error += "\n(after removing the pending keys %s)" % ", ".join(
                    k for k, _ in result.pending)
            return result
        key = hit.group("key")
        result.pending.append((key, hit.group(0)))
        if data is None:
            data = yaml.safe_load(m.text)
        strip_key(data, key)
        with open(m.path, "w") as f:
            yaml.safe_dump(data, f, sort_keys=False)
    result.error = "%s: too many rounds of unknown keys:\n%s" % (shipped.label, result.output)
    return result


# --- one probe per pending key ----------------------------------------------

def probe_pending_keys(binary, workdir):
    """Checks a minimal config with each PENDING_KEYS key added alone.
    Returns {key: None if accepted, else the binary's message}."""
    certs = os.path.join(workdir, "certs")
    cert, key = testbed.make_cert(certs, "probe")
    cert2, key2 = testbed.make_cert(certs, "probe2")
    token = os.path.join(workdir, "token")
    ticket = os.path.join(workdir, "ticket.key")
    with open(token, "w") as f:
        f.write(secrets.token_hex(16) + "\n")
    with open(ticket, "wb") as f:
        f.write(ticket_key_line())
    base = {
        "listeners": [{"name": "imaps", "protocol": "imap", "address": "127.0.0.1:0",
                       "tls": "implicit"}],
        "tls": {"certificate": cert, "key": key},
        "backends": [{"name": "store1", "address": "127.0.0.1"}],
    }
    probes = {
        "user": {"user": "nobody"},
        "group": {"group": "nogroup"},
        "log.format": {"log": {"format": "json"}},
        "tls.certificates": {"tls": {"certificates": [{"certificate": cert, "key": key},
                                                      {"certificate": cert2, "key": key2}]}},
        "tls.ticket_key_file": {"tls": {"certificate": cert, "key": key,
                                        "ticket_key_file": ticket}},
        "admin": {"admin": {"address": "127.0.0.1:0", "token_file": token}},
        "timeouts.shutdown_deadline": {"timeouts": {"shutdown_deadline": "30s"}},
    }
    out = {}
    for name in PENDING_KEYS:
        config = copy.deepcopy(base)
        config.update(probes[name])
        path = os.path.join(workdir, "probe-%s.yaml" % name.replace(".", "-"))
        with open(path, "w") as f:
            yaml.safe_dump(config, f, sort_keys=False)
        rc, output = run_check(binary, path)
        out[name] = None if rc == 0 else output
    return out


def remove_tree(path):
    shutil.rmtree(path, ignore_errors=True)
