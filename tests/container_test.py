#!/usr/bin/env python3
"""The container image (deploy/Containerfile), checked as far as the machine
allows.

`podman run` fails on the project's machines (TESTBED.md: crun, cgroups v1
in hybrid mode, setrlimit refused), so the image's file system is mounted
(`podman image mount`) and run with chroot as the container would run it:
the same files, the same binary and libraries, the image's user (uid 10993),
the host's network namespace (like --network=host).

    python3 tests/container_test.py -v                 # the image must exist
    POSTERN_CONTAINER_BUILD=1 python3 tests/container_test.py -v
                                   # deploy/container-build.sh first (5-15 min)

Environment: POSTERN_IMAGE (default localhost/postern:dev),
POSTERN_CONTAINER_BUILD=1, POSTERN_TEST_KEEP=1 (keep the temporary files).

What it checks:
- the image's settings (user, ports, health check, entrypoint) and its size;
- `postern --version` as the image's user, and that every shared library
  resolves inside the image (ldd);
- `postern --check-config` on the config the image ships, with dummy
  certificate, key and token files mounted where it expects them; issue 11
  keys this binary does not know yet are reported and removed
  (tests/integration/shipped.py);
- postern-admin (the HEALTHCHECK and the preStop hook) with the image's
  bash, as its user, against a stand-in endpoint;
- Postern started from the image in front of two testbed Dovecots (the
  README demo's layout), driven by the demo's curl commands (IMAPS, POP3S,
  STARTTLS, STLS, the POP3-to-IMAP gateway); then GET /healthz and /readyz
  with the image's own HEALTHCHECK command (postern-admin), when the binary
  has the admin endpoint; then SIGTERM and exit 0;
- `podman run` itself, reported as a skip where the machine refuses it.

Not part of ctest's default run: it needs root, podman, and an image that
takes minutes to build. It skips, saying why, when podman is missing, when
not root, when the image is missing, or when the machine refuses to mount it.
"""

import http.server
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "deploy"))
sys.path.insert(0, os.path.join(HERE, "integration"))

import shipped  # noqa: E402  (tests/integration/shipped.py)
import testbed  # noqa: E402  (deploy/testbed.py)

IMAGE = os.environ.get("POSTERN_IMAGE", "localhost/postern:dev")
BUILD = os.environ.get("POSTERN_CONTAINER_BUILD") == "1"
KEEP = os.environ.get("POSTERN_TEST_KEEP") == "1"
UID = GID = 10993

state = {}  # mount point, temporary directory


def run(argv, timeout=120, **kw):
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)


def setUpModule():
    if shutil.which("podman") is None:
        raise unittest.SkipTest("podman is not installed (apt-get install -y "
                                "--no-install-recommends podman mmdebstrap)")
    if os.geteuid() != 0:
        raise unittest.SkipTest("needs root: podman image mount and chroot")
    if BUILD:
        if shutil.which("mmdebstrap") is None:
            raise unittest.SkipTest("mmdebstrap is not installed: cannot make the base images")
        r = subprocess.run([os.path.join(REPO, "deploy", "container-build.sh"), "--tag", IMAGE])
        if r.returncode != 0:
            raise RuntimeError("deploy/container-build.sh failed (exit %d)" % r.returncode)
    if run(["podman", "image", "exists", IMAGE]).returncode != 0:
        raise unittest.SkipTest("no image %s: build it with deploy/container-build.sh "
                                "(or set POSTERN_CONTAINER_BUILD=1)" % IMAGE)
    r = run(["podman", "image", "mount", IMAGE])
    if r.returncode != 0:
        raise unittest.SkipTest("this machine refuses podman image mount: " + r.stderr.strip())
    state["mnt"] = r.stdout.strip()
    state["tmp"] = tempfile.mkdtemp(prefix="postern-container-")
    os.chmod(state["tmp"], 0o755)  # Dovecot's unprivileged processes read under it
    state["mounts"] = []


def tearDownModule():
    for m in reversed(state.get("mounts", [])):
        run(["umount", "-l", m])
    if "mnt" in state:
        run(["podman", "image", "unmount", IMAGE])
    if "tmp" in state and not KEEP:
        shutil.rmtree(state["tmp"], ignore_errors=True)


def mount(args, target):
    r = run(["mount"] + args + [target])
    if r.returncode != 0:
        raise unittest.SkipTest("this machine refuses mount %s %s: %s"
                                % (" ".join(args), target, r.stderr.strip()))
    state["mounts"].append(target)


def umount(target):
    run(["umount", "-l", target])
    state["mounts"].remove(target)


def chroot(argv, user=True, env=None, timeout=60):
    """Runs argv inside the image, as its user by default."""
    spec = ["--userspec=%d:%d" % (UID, GID)] if user else []
    return run(["chroot"] + spec + [state["mnt"]] + argv, timeout=timeout, env=env)


def chroot_env(**extra):
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
           "HOME": "/nonexistent", "LANG": "C.UTF-8"}
    env.update(extra)
    return env


def etc_postern(name):
    """A fresh directory holding a copy of the image's /etc/postern, to be
    mounted over it; returns (workdir, the directory)."""
    work = os.path.join(state["tmp"], name)
    etc = os.path.join(work, "root", "etc", "postern")
    shutil.copytree(os.path.join(state["mnt"], "etc", "postern"), etc)
    return work, etc


def give_to_image_user(path):
    for dirpath, dirnames, filenames in os.walk(path):
        os.chown(dirpath, UID, GID)
        for f in filenames:
            os.chown(os.path.join(dirpath, f), UID, GID)


class ImageSettings(unittest.TestCase):

    def test_settings(self):
        info = json.loads(run(["podman", "image", "inspect", IMAGE]).stdout)[0]
        config = info["Config"]
        self.assertEqual(config.get("User"), "%d:%d" % (UID, GID))
        self.assertEqual(sorted(config.get("ExposedPorts", {})),
                         sorted("%d/tcp" % p for p in (993, 995, 143, 110, 9199)))
        self.assertEqual(config.get("Entrypoint"), ["/usr/bin/postern"])
        self.assertEqual(config.get("Cmd"), ["--config", "/etc/postern/postern.yaml"])
        health = (info.get("Healthcheck") or info.get("HealthCheck") or config.get("Healthcheck")
                  or {})
        self.assertEqual(health.get("Test"), ["CMD", "/usr/bin/postern-admin", "GET", "/healthz"],
                         "no HEALTHCHECK: the image must be built with --format docker")
        sys.stderr.write("\nimage %s: %.1f MB\n" % (IMAGE, info["Size"] / 1e6))

    def test_files(self):
        mnt = state["mnt"]
        with open(os.path.join(mnt, "etc", "passwd")) as f:
            self.assertRegex(f.read(), r"(?m)^postern:x:%d:%d:" % (UID, GID))
        for path in ("usr/bin/postern", "usr/bin/postern-admin"):
            self.assertTrue(os.access(os.path.join(mnt, path), os.X_OK), path)
        with open(os.path.join(mnt, "etc", "postern", "postern.yaml")) as f, open(
                os.path.join(REPO, "deploy", "container", "postern.yaml")) as g:
            self.assertEqual(f.read(), g.read(), "the image's config is not the repo's")
        # A runtime image: no compilers, no sources, no curl (postern-admin
        # does its health checks).
        for absent in ("usr/bin/gcc", "usr/bin/cmake", "usr/bin/curl", "src", "build"):
            self.assertFalse(os.path.exists(os.path.join(mnt, absent)), absent)


class InImage(unittest.TestCase):

    def test_version_as_the_image_user(self):
        r = chroot(["/usr/bin/postern", "--version"], env=chroot_env())
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout, r"^postern \S+\n$")
        sys.stderr.write("\n%s" % r.stdout)

    def test_every_library_resolves(self):
        r = chroot(["/usr/bin/ldd", "/usr/bin/postern"], user=False, env=chroot_env())
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn("not found", r.stdout, r.stdout)
        self.assertRegex(r.stdout, r"libjemalloc\.so\.2 => /")
        self.assertNotRegex(r.stdout, r"libssl\.so|libcrypto\.so", "OpenSSL in the image")

    def test_check_config_of_the_shipped_config(self):
        work, etc = etc_postern("check")
        with open(os.path.join(etc, "postern.yaml")) as f:
            text = f.read()
        config = shipped.Shipped("image:/etc/postern/postern.yaml", text,
                                 "/etc/postern/postern.yaml")
        target = os.path.join(state["mnt"], "etc", "postern")

        def prepare(m):
            give_to_image_user(etc)
            mount(["--bind", etc], target)

        def runner(path):
            r = chroot(["/usr/bin/postern", "--check-config", path], env=chroot_env())
            return r.returncode, (r.stdout + r.stderr).strip()

        try:
            result = shipped.check(None, config, work, rewrite=False, runner=runner,
                                   prepare=prepare)
        finally:
            if target in state["mounts"]:
                umount(target)
        if result.pending:
            sys.stderr.write("\nthe image's postern rejects, as unknown, the keys %s of its "
                             "shipped config (removed, the rest checked)\n"
                             % ", ".join(k for k, _ in result.pending))
        self.assertTrue(result.ok, result.error)
        self.assertIn("config ok", result.output)

    def test_postern_admin_in_the_image(self):
        """The image's HEALTHCHECK and preStop tool, run with the image's
        bash as its user, against a stand-in admin endpoint (so that the
        tool is checked even where the binary has no endpoint yet)."""
        token = "t0ken-%d" % os.getpid()
        seen = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def answer(self, code, body):
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                seen.append(("GET", self.path, self.headers.get("Authorization")))
                self.answer(200 if self.path == "/healthz" else 503, b"stand-in\n")

            def do_POST(self):
                auth = self.headers.get("Authorization")
                seen.append(("POST", self.path, auth))
                self.answer(200 if auth == "Bearer " + token else 401, b"drained\n")

            def log_message(self, *args):
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self.addCleanup(server.server_close)
        self.addCleanup(server.shutdown)
        admin = os.path.join(state["tmp"], "admin-stub")
        os.makedirs(admin)
        with open(os.path.join(admin, "token"), "w") as f:
            f.write(token + "\n")
        os.chmod(os.path.join(admin, "token"), 0o400)
        give_to_image_user(admin)
        target = os.path.join(state["mnt"], "etc", "postern", "admin")
        mount(["--bind", admin], target)
        self.addCleanup(umount, target)
        env = chroot_env(POSTERN_ADMIN_ADDRESS="127.0.0.1:%d" % server.server_address[1])

        r = chroot(["/usr/bin/postern-admin", "GET", "/healthz"], env=env)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertRegex(r.stdout, r"^HTTP/1\.[01] 200 ")
        r = chroot(["/usr/bin/postern-admin", "GET", "/readyz"], env=env)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        r = chroot(["/bin/sh", "-c", "/usr/bin/postern-admin POST /admin/drain"], env=env)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn(("POST", "/admin/drain", "Bearer " + token), seen)
        r = chroot(["/usr/bin/postern-admin", "GET", "/healthz"],
                   env=chroot_env(POSTERN_ADMIN_ADDRESS="127.0.0.1:1"))
        self.assertEqual(r.returncode, 1, "nothing listens there")

    def test_serves_the_demo(self):
        """The README demo, with Postern from the image."""
        work, etc = etc_postern("demo")
        dv1 = testbed.Dovecot(os.path.join(work, "store1"), users=("alice", "bob"))
        self.addCleanup(dv1.stop)
        dv2 = testbed.Dovecot(os.path.join(work, "imapstore"), users=("carol",),
                              protocols=("imap",))
        self.addCleanup(dv2.stop)
        ports = {name: testbed.free_port() for name in ("imaps", "imap", "pop3s", "pop3")}
        admin_port = 9199
        try:
            testbed.wait_for_port("127.0.0.1", 9199, timeout=0.2)
            admin_port = testbed.free_port()  # 9199 is taken here
        except Exception:
            pass
        text = """\
hostname: localhost
workers: 1
listeners:
  - {{ name: imaps, protocol: imap, address: "127.0.0.1:{imaps}", tls: implicit }}
  - {{ name: imap,  protocol: imap, address: "127.0.0.1:{imap}", tls: starttls }}
  - {{ name: pop3s, protocol: pop3, address: "127.0.0.1:{pop3s}", tls: implicit }}
  - {{ name: pop3,  protocol: pop3, address: "127.0.0.1:{pop3}", tls: starttls }}
tls:
  certificates:
    - {{ certificate: /etc/postern/tls/tls.crt, key: /etc/postern/tls/tls.key }}
backends:
  - {{ name: store1, address: 127.0.0.1, imap_port: {d1}, pop3_port: {d2} }}
  - {{ name: imapstore, address: 127.0.0.1, imap_port: {d3}, pop3_mode: gateway }}
routing:
  default_backend: store1
  users: {{ carol: imapstore }}
admin:
  address: "127.0.0.1:{admin}"
  token_file: /etc/postern/admin/token
timeouts:
  shutdown_deadline: 5s
log:
  format: json
""".format(d1=dv1.imap_port, d2=dv1.pop3_port, d3=dv2.imap_port, admin=admin_port, **ports)
        config = shipped.Shipped("demo", text, "/etc/postern/postern.yaml")
        target = os.path.join(state["mnt"], "etc", "postern")
        mnt = state["mnt"]

        def prepare(m):
            give_to_image_user(etc)
            mount(["--bind", etc], target)
            mount(["-t", "proc", "proc"], os.path.join(mnt, "proc"))
            mount(["--bind", "/dev"], os.path.join(mnt, "dev"))

        def runner(path):
            r = chroot(["/usr/bin/postern", "--check-config", path], env=chroot_env())
            return r.returncode, (r.stdout + r.stderr).strip()

        def unmount_all():
            for t in (os.path.join(mnt, "dev"), os.path.join(mnt, "proc"), target):
                if t in state["mounts"]:
                    umount(t)

        self.addCleanup(unmount_all)
        result = shipped.check(None, config, work, rewrite=False, runner=runner,
                               prepare=prepare)
        self.assertTrue(result.ok, result.error)
        pending = [k for k, _ in result.pending]
        give_to_image_user(etc)

        log_path = os.path.join(work, "postern.log")
        log = open(log_path, "wb")
        self.addCleanup(log.close)
        proc = subprocess.Popen(
            ["chroot", "--userspec=%d:%d" % (UID, GID), mnt, "/usr/bin/postern", "--config",
             "/etc/postern/postern.yaml"], stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, env=chroot_env())

        def stop():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        self.addCleanup(stop)

        def log_text():
            with open(log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        for name, port in ports.items():
            deadline = time.monotonic() + 20
            while True:
                self.assertIsNone(proc.poll(), "postern exited:\n" + log_text())
                try:
                    testbed.wait_for_port("127.0.0.1", port, timeout=0.5)
                    break
                except Exception:
                    self.assertLess(time.monotonic(), deadline,
                                    "listener %s not up:\n%s" % (name, log_text()))

        def curl(url, user, *extra):
            r = subprocess.run(["curl", "-sS", "-k", "--max-time", "30", "-u", user + ":demo"]
                               + list(extra) + [url], capture_output=True, timeout=60)
            self.assertEqual(r.returncode, 0, "%s: %s\n%s" % (
                url, r.stderr.decode(errors="replace"), log_text()[-3000:]))
            return r.stdout

        def crlf(b):
            return b.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")

        base = {n: "127.0.0.1:%d" % p for n, p in ports.items()}
        alice, bob, carol = dv1.messages("alice"), dv1.messages("bob"), dv2.messages("carol")
        # The README demo's commands.
        self.assertRegex(curl("imaps://%s/INBOX" % base["imaps"], "alice"), rb"\* LIST .*INBOX")
        self.assertEqual(curl("imaps://%s/INBOX;UID=1" % base["imaps"], "alice"), crlf(alice[0]))
        self.assertEqual(curl("pop3s://%s/1" % base["pop3s"], "bob"), crlf(bob[0]))
        self.assertIn(b"INBOX", curl("imap://%s/INBOX" % base["imap"], "carol", "--ssl-reqd"))
        listing = curl("pop3://%s/" % base["pop3"], "alice", "--ssl-reqd").decode()
        self.assertEqual(len(listing.split("\r\n")) - 1, len(alice), listing)
        # carol through the POP3-to-IMAP gateway.
        self.assertEqual(curl("pop3s://%s/1" % base["pop3s"], "carol"), crlf(carol[0]))
        self.assertEqual(curl("pop3://%s/2" % base["pop3"], "carol", "--ssl-reqd"),
                         crlf(carol[1]))

        if "admin" in pending:
            sys.stderr.write("\n/healthz, /readyz: not checked, this binary has no admin "
                             "endpoint (it rejects the admin key)\n")
        else:
            env = chroot_env(POSTERN_ADMIN_ADDRESS="127.0.0.1:%d" % admin_port)
            # The image's HEALTHCHECK command, as the image's user.
            for path in ("/healthz", "/readyz"):
                r = chroot(["/usr/bin/postern-admin", "GET", path], env=env)
                self.assertEqual(r.returncode, 0, "%s: %s%s" % (path, r.stdout, r.stderr))
                self.assertRegex(r.stdout, r"^HTTP/1\.[01] 200")
            r = chroot(["/usr/bin/postern-admin", "GET", "/metrics"], env=env)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.fail("postern did not exit within 30 s of SIGTERM:\n" + log_text()[-3000:])
        self.assertEqual(rc, 0, log_text()[-3000:])
        if pending:
            sys.stderr.write("the demo config's keys this binary does not know yet "
                             "(removed): %s\n" % ", ".join(pending))


class PodmanRun(unittest.TestCase):

    def test_podman_run(self):
        r = run(["podman", "run", "--rm", "--network=none", "--ulimit", "nofile=1024:1024",
                 "--ulimit", "nproc=1024:1024", IMAGE, "--version"], timeout=120)
        if r.returncode != 0:
            self.skipTest("this machine refuses podman run (expected here, TESTBED.md): "
                          + (r.stderr.strip().splitlines() or ["?"])[-1])
        self.assertRegex(r.stdout, r"^postern \S+")


if __name__ == "__main__":
    unittest.main()
