#!/usr/bin/python3
"""Real-component test bed for Postern: Dovecot, certificates and postern.

Importable (the integration tests use it) and a small CLI (the demo uses it).
Standard library only.

    Dovecot(workdir, imap_port=0, pop3_port=0, users=("alice", "bob", "carol"),
            password="demo", extra_messages=None, protocols=("imap", "pop3"),
            master_users=None, oauth2=None, extra_conf="", mail_root=None)
        A private Dovecot 2.3 instance: own config, base_dir, state_dir, logs
        and Maildirs under workdir, on loopback ports (0 picks free ones);
        protocols=("imap",) makes an IMAP-only store (no POP3 listener);
        optionally with a master passdb, an oauth2 passdb and extra settings
        appended to its dovecot.conf; mail_root=another.home_root makes a
        replica serving the same Maildirs.
    make_cert(dir) -> (cert_path, key_path)
        Self-signed EC P-256 certificate for localhost / 127.0.0.1.
    Postern(binary, workdir, config)
        Runs `postern --config` and parses the ports it reports.
    RedisServer(workdir, extra_conf="")
        A private redis-server (own config and directory, a free loopback
        port, stopped by PID) and a small RESP client (command()).
    HAProxy(workdir, routes)
        A private HAProxy in TCP mode, one frontend per route, each sending
        PROXY protocol v2 (send-proxy-v2) to its target.

CLI:
    testbed.py dovecot --dir DIR --imap-port 10143 --pop3-port 10110
    testbed.py dovecot --dir DIR --imap-port 10144 --protocols imap --users carol
    testbed.py cert --dir DIR
"""

import argparse
import email.utils
import hashlib
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

MAIL_USER = "mail"  # Dovecot refuses uid 0 for mail storage.

_SAMPLE_MESSAGES = [
    (
        "Quarterly report",
        "Hi {user},\n\nattached you will find the figures for the last quarter.\n"
        "Revenue went up by 4%, costs stayed flat.\n\n"
        "Let me know if anything looks off.\n\nRegards,\nMargaret\n",
    ),
    (
        "Lunch on Friday?",
        "Hey {user},\n\nare you free for lunch on Friday? The new place near the\n"
        "station does a decent soup of the day.\n\n-- \nTom\n",
    ),
    (
        "Re: server migration",
        "> When do we switch the DNS?\n\nTuesday night, 23:00 UTC. The old box stays up\n"
        "for a week as a fallback.\n\n.leading dot line, to exercise POP3 dot-stuffing\n"
        "..and one with two dots\n.\nThanks,\nOps\n",
    ),
    (
        "Your order has shipped",
        "Dear customer,\n\nyour order #48213 has left our warehouse and should\n"
        "arrive within 3-5 business days.\n\nTracking: 1Z999AA10123456784\n",
    ),
    (
        "Minutes of the planning meeting",
        "Present: {user}, Ana, Bo, Chen.\n\n1. Roadmap: agreed.\n2. Budget: pending.\n"
        "3. Next meeting: in two weeks.\n\n" + "".join(
            "Line %02d of the appendix, kept for the record.\n" % i for i in range(40)),
    ),
]


def free_port(host="127.0.0.1"):
    """Returns a TCP port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_for_port(host, port, timeout=10.0, expect_prefix=None):
    """Waits until host:port accepts (and, if given, greets with expect_prefix)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=2) as s:
                if expect_prefix is None:
                    return
                s.settimeout(max(0.5, deadline - time.monotonic()))
                data = b""
                while b"\n" not in data:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                if data.startswith(expect_prefix):
                    return
                last = "greeting %r" % data
        except OSError as e:
            last = str(e)
        time.sleep(0.05)
    raise TimeoutError("%s:%d not ready after %.0fs (%s)" % (host, port, timeout, last))


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); treat it as gone.
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def cpu_seconds(pids):
    """utime+stime of the given processes from /proc/PID/stat, summed (a
    process that is gone counts 0)."""
    total = 0.0
    for pid in pids:
        try:
            with open("/proc/%d/stat" % pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            pass
    return total


def _die_with_parent(sig=signal.SIGTERM):
    """preexec_fn: the child gets sig when the process that started it dies."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(sig), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _kill_with_parent():
    _die_with_parent(signal.SIGKILL)


def _mail_ids():
    import pwd
    pw = pwd.getpwnam(MAIL_USER)
    return pw.pw_uid, pw.pw_gid


_PRINTABLE = (b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
              b"0123456789 !\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
_TO_PRINTABLE = bytes(_PRINTABLE[i % len(_PRINTABLE)] for i in range(256))


def random_body_lines(rng, nbytes):
    """Random printable ASCII lines (LF ends) totalling exactly nbytes.

    Every 97th line starts with "." and line 50 is a lone "." so POP3
    dot-stuffing is exercised. Fast enough for tens of MiB.
    """
    blob = rng.randbytes(nbytes).translate(_TO_PRINTABLE)
    out = []
    pos = 0
    left = nbytes
    n = 0
    while left > 0:
        n += 1
        if left <= 78:
            length = left - 1  # the last line fills up exactly, LF included
        elif n == 50:
            length = 1
        else:
            length = rng.randint(0, 76)
        if n == 50 and length == 1:
            out.append(b".\n")
        elif n % 97 == 0 and length >= 1:
            out.append(b"." + blob[pos:pos + length - 1] + b"\n")
        else:
            out.append(blob[pos:pos + length] + b"\n")
        pos += length
        left -= length + 1
    return b"".join(out)


class Dovecot:
    """A private Dovecot instance on loopback ports, with its own Maildirs."""

    def __init__(self, workdir, imap_port=0, pop3_port=0,
                 users=("alice", "bob", "carol"), password="demo",
                 extra_messages=None, password_scheme="PLAIN",
                 ssl_cert=None, ssl_key=None, imaps_port=None, pop3s_port=None,
                 start=True, auth_failure_delay="0", passwords=None,
                 protocols=("imap", "pop3"), master_users=None, oauth2=None,
                 extra_conf="", mail_root=None):
        """Prepares (and by default starts) the instance.

        extra_messages: {user: [size_in_bytes, ...]} random messages added to
            the Maildirs before Dovecot starts.
        passwords: {user: password} for users whose password differs from
            `password` (they are added to `users` if missing).
        ssl_cert/ssl_key: when given, Dovecot also speaks STARTTLS/STLS and
            runs IMAPS/POP3S listeners (used to run the integration tests
            directly against Dovecot). Otherwise ssl = no.
        protocols: the services Dovecot runs; ("imap",) is an IMAP-only store
            (no POP3 listener at all; pop3_port is then unused).
        master_users: {name: password}: a master passdb (`master = yes`,
            passwd-file, PLAIN) ahead of the users' one, so `name` may log in
            as any user with SASL PLAIN's authorization identity.
        oauth2: {key: value} written to dovecot-oauth2.conf.ext (for
            instance introspection_mode, introspection_url,
            username_attribute, active_attribute, active_value): an oauth2
            passdb for the XOAUTH2 and OAUTHBEARER mechanisms, which are then
            offered too.
        extra_conf: lines appended to dovecot.conf (later settings win), e.g.
            'imap_capability = ...' to hide an extension, auth_verbose = yes.
            A section given again is merged with the one above (a further
            `service imap-login { inet_listener ... }` adds a listener).
        mail_root: another instance's home_root: this one serves the same
            Maildirs (a replica of a shard; Dovecot's own locking keeps two
            instances on one file system consistent) and writes no messages.
        """
        self.workdir = os.path.abspath(workdir)
        self.host = "127.0.0.1"
        self.passwords = {u: password for u in users}
        self.passwords.update(passwords or {})
        self.users = tuple(self.passwords)
        self.password = password
        self.password_scheme = password_scheme
        self.ssl_cert = ssl_cert
        self.ssl_key = ssl_key
        self.auth_failure_delay = auth_failure_delay
        self.protocols = tuple(protocols)
        if not self.protocols or not set(self.protocols) <= {"imap", "pop3"}:
            raise ValueError("protocols: imap and/or pop3, got %r" % (protocols,))
        self.master_users = dict(master_users or {})
        self.oauth2 = dict(oauth2) if oauth2 else None
        self.extra_conf = extra_conf or ""
        self._auto_ports = imap_port == 0 or pop3_port == 0
        self.imap_port = imap_port or free_port()
        self.pop3_port = pop3_port or free_port()
        self.imaps_port = None
        self.pop3s_port = None
        if ssl_cert:
            self.imaps_port = imaps_port or free_port()
            self.pop3s_port = pop3s_port or free_port()
        self.instance = "postern-tb-%d-%d" % (os.getpid(), self.imap_port)
        self.conf_path = os.path.join(self.workdir, "dovecot.conf")
        self.base_dir = os.path.join(self.workdir, "run")
        self.state_dir = os.path.join(self.workdir, "state")
        self.log_path = os.path.join(self.workdir, "dovecot.log")
        self.shared_mail = mail_root is not None
        self.home_root = os.path.abspath(mail_root) if mail_root else os.path.join(
            self.workdir, "home")
        self._seq = 0
        self.proc = None
        self._prepare(extra_messages or {})
        if start:
            self.start()

    # --- files ---------------------------------------------------------------

    def _prepare(self, extra_messages):
        os.makedirs(self.workdir, exist_ok=True)
        # Mail processes run as `mail` and must traverse the workdir.
        os.chmod(self.workdir, 0o755)
        for d in (self.state_dir, self.home_root):
            os.makedirs(d, exist_ok=True)
        os.chmod(self.home_root, 0o755)
        self._write_passwd()
        self._write_conf()
        if self.shared_mail:
            return  # the instance that owns home_root wrote the messages
        uid, gid = _mail_ids()
        for user in self.users:
            self.maildir(user)  # creates it
            for i, (subject, body) in enumerate(self._samples_for(user)):
                self._write_message(user, self._compose(user, subject, body.format(user=user), i))
            for size in extra_messages.get(user, ()):
                self.add_message(user, size)
        for root, dirs, files in os.walk(self.home_root):
            for name in dirs + files:
                os.chown(os.path.join(root, name), uid, gid)

    def _samples_for(self, user):
        # Different users hold different mailboxes (alice 5, bob 4, carol 3, ...).
        idx = self.users.index(user) if user in self.users else 0
        return _SAMPLE_MESSAGES[: max(2, len(_SAMPLE_MESSAGES) - idx)]

    def _write_passwd(self):
        lines = []
        for user, password in self.passwords.items():
            if self.password_scheme.upper() == "PLAIN":
                hashed = "{PLAIN}" + password
            else:
                hashed = subprocess.run(
                    ["doveadm", "pw", "-s", self.password_scheme, "-p", password],
                    check=True, capture_output=True, text=True).stdout.strip()
            lines.append("%s:%s::::::\n" % (user, hashed))
        path = os.path.join(self.workdir, "passwd")
        with open(path, "w") as f:
            f.writelines(lines)
        # Read by Dovecot's auth process, which runs as its internal user.
        import grp
        os.chown(path, 0, grp.getgrnam("dovecot").gr_gid)
        os.chmod(path, 0o640)
        extra = {}
        if self.master_users:
            extra["master-users"] = "".join(
                "%s:{PLAIN}%s::::::\n" % (u, p) for u, p in self.master_users.items())
        if self.oauth2:
            extra["dovecot-oauth2.conf.ext"] = "".join(
                "%s = %s\n" % (k, v) for k, v in self.oauth2.items())
        for name, text in extra.items():
            path = os.path.join(self.workdir, name)
            with open(path, "w") as f:
                f.write(text)
            os.chown(path, 0, grp.getgrnam("dovecot").gr_gid)
            os.chmod(path, 0o640)

    def _write_conf(self):
        w = self.workdir
        ssl_block = "ssl = no\n"
        imaps = pop3s = "port = 0"
        if self.ssl_cert:
            ssl_block = ("ssl = yes\nssl_cert = <%s\nssl_key = <%s\n"
                         "ssl_min_protocol = TLSv1.2\n" % (self.ssl_cert, self.ssl_key))
            imaps = "port = %d" % self.imaps_port
            pop3s = "port = %d" % self.pop3s_port
        pop3_services = ""
        if "pop3" in self.protocols:
            pop3_services = f"""service pop3-login {{
  inet_listener pop3 {{
    port = {self.pop3_port}
  }}
  inet_listener pop3s {{
    {pop3s}
  }}
  service_count = 0
  process_min_avail = 1
  client_limit = 4000
  process_limit = 2
  vsz_limit = 1G
}}
service pop3 {{
  process_limit = 2000
}}
"""
        mechanisms = "plain login"
        master_passdb = passwd_mechanisms = oauth2_passdb = ""
        if self.master_users:
            master_passdb = ("passdb {\n  driver = passwd-file\n  master = yes\n"
                             "  args = scheme=PLAIN %s/master-users\n}\n" % w)
        if self.oauth2:
            mechanisms += " xoauth2 oauthbearer"
            # Tokens go to the oauth2 passdb only, passwords to the file only.
            passwd_mechanisms = "  mechanisms = plain login\n"
            oauth2_passdb = ("passdb {\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n"
                             "  args = %s/dovecot-oauth2.conf.ext\n}\n" % w)
        conf = f"""# Written by deploy/testbed.py; private test instance.
instance_name = {self.instance}
base_dir = {self.base_dir}
state_dir = {self.state_dir}
log_path = {self.log_path}
info_log_path = {self.log_path}
debug_log_path = {self.log_path}
protocols = {" ".join(self.protocols)}
listen = {self.host}
{ssl_block}disable_plaintext_auth = no
auth_mechanisms = {mechanisms}
auth_failure_delay = {self.auth_failure_delay}
login_trusted_networks = 127.0.0.0/8
verbose_proctitle = yes
mail_location = maildir:~/Maildir
mail_uid = {MAIL_USER}
mail_gid = {MAIL_USER}
first_valid_uid = 1
first_valid_gid = 1
default_login_user = dovenull
default_internal_user = dovecot
shutdown_clients = yes
pop3_uidl_format = %08Xu%08Xv
{master_passdb}passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {w}/passwd
{passwd_mechanisms}}}
{oauth2_passdb}userdb {{
  driver = static
  args = uid={MAIL_USER} gid={MAIL_USER} home={self.home_root}/%u
}}
service imap-login {{
  inet_listener imap {{
    port = {self.imap_port}
  }}
  inet_listener imaps {{
    {imaps}
  }}
  service_count = 0
  process_min_avail = 1
  client_limit = 4000
  process_limit = 2
  vsz_limit = 1G
}}
{pop3_services}service imap {{
  process_limit = 2000
}}
service anvil {{
  # No auth penalty: every test connects from 127.0.0.1 and some fail on
  # purpose; Dovecot would otherwise delay each later login up to 15 s.
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
default_process_limit = 2000
default_client_limit = 4000
"""
        if self.extra_conf:
            conf += "# extra_conf\n" + self.extra_conf.rstrip("\n") + "\n"
        with open(self.conf_path, "w") as f:
            f.write(conf)

    def maildir(self, user):
        """Returns (and creates) the user's Maildir."""
        md = os.path.join(self.home_root, user, "Maildir")
        if not os.path.isdir(os.path.join(md, "cur")):
            uid, gid = _mail_ids()
            for d in (os.path.join(self.home_root, user), md,
                      os.path.join(md, "cur"), os.path.join(md, "new"),
                      os.path.join(md, "tmp")):
                os.makedirs(d, exist_ok=True)
                os.chmod(d, 0o700)
                os.chown(d, uid, gid)
        return md

    def _compose(self, user, subject, body, n):
        date = email.utils.formatdate(1700000000 + 3600 * n, localtime=False)
        sender = ["margaret@example.org", "tom@example.net", "ops@example.com",
                  "shop@example.com", "ana@example.org"][n % 5]
        return (
            f"Return-Path: <{sender}>\n"
            f"From: <{sender}>\n"
            f"To: {user} <{user}@example.test>\n"
            f"Subject: {subject}\n"
            f"Date: {date}\n"
            f"Message-ID: <{user}.{n}.{self.imap_port}@testbed.example>\n"
            "MIME-Version: 1.0\n"
            "Content-Type: text/plain; charset=us-ascii\n"
            "\n" + body).encode("ascii")

    def _write_message(self, user, data, sizes=True):
        """Writes a message (LF line ends) into cur/ and returns its path.

        The name carries a timestamp that grows with every message, so Dovecot
        assigns UIDs in the order messages were added (and messages() can
        list them in UID order); S= and W= give the sizes with LF and CRLF
        line ends (sizes=False leaves them out: Dovecot then reads the file
        to compute them, right for any line ends).
        """
        md = self.maildir(user)
        self._seq += 1
        # Strictly increasing, and in the past: messages that Dovecot stores
        # itself later (APPEND) are named by the current time and sort after.
        stamp = 1700000000 + self._seq
        uniq = "M%dP%dQ%d" % (self._seq, os.getpid(), self.imap_port)
        if sizes:
            name = "%d.%s.testbed,S=%d,W=%d:2," % (stamp, uniq, len(data),
                                                   len(data) + data.count(b"\n"))
        else:
            name = "%d.%s.testbed:2," % (stamp, uniq)
        tmp = os.path.join(md, "tmp", name)
        with open(tmp, "wb") as f:
            f.write(data)
        uid, gid = _mail_ids()
        os.chown(tmp, uid, gid)
        os.chmod(tmp, 0o600)
        path = os.path.join(md, "cur", name)
        os.rename(tmp, path)
        return path

    def add_raw_message(self, user, data):
        """Adds a message of exactly these bytes (any line ends, 8-bit, no
        final newline...) and returns the path of its Maildir file. Dovecot
        picks it up at its next sync, even while it runs."""
        lf_only = b"\r" not in data
        return self._write_message(user, data, sizes=lf_only)

    def add_message(self, user, nbytes, seed=None):
        """Adds a message of exactly nbytes (random printable lines, LF ends).

        Returns the path of the Maildir file. Read it before a client fetches
        the message: Dovecot renames the file when it sets the \\Seen flag.
        """
        rng = random.Random(nbytes if seed is None else seed)
        header = (
            "From: <generator@example.org>\n"
            f"To: {user} <{user}@example.test>\n"
            f"Subject: random message of {nbytes} bytes\n"
            f"Date: {email.utils.formatdate(1700000000, localtime=False)}\n"
            f"Message-ID: <rand.{nbytes}.{self._seq + 1}.{self.imap_port}@testbed.example>\n"
            "\n").encode("ascii")
        if nbytes < len(header) + 1:
            raise ValueError("message size %d too small (header is %d bytes)"
                             % (nbytes, len(header)))
        body = random_body_lines(rng, nbytes - len(header))
        data = header + body
        assert len(data) == nbytes
        return self._write_message(user, data)

    def messages(self, user):
        """The user's messages as bytes (LF line ends), in UID order."""
        md = self.maildir(user)
        files = []
        for sub in ("cur", "new"):
            for name in os.listdir(os.path.join(md, sub)):
                if name.startswith("."):
                    continue
                files.append(os.path.join(md, sub, name))
        files.sort(key=lambda p: int(os.path.basename(p).split(".", 1)[0]))
        out = []
        for p in files:
            with open(p, "rb") as f:
                out.append(f.read())
        return out

    # --- process -------------------------------------------------------------

    def doveadm_stop(self):
        """Stops the instance the documented way (`doveadm -c CONF stop`)."""
        subprocess.run(["doveadm", "-c", self.conf_path, "stop"], stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def master_pid(self):
        try:
            with open(os.path.join(self.base_dir, "master.pid")) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None

    def running(self):
        pid = self.master_pid()
        return pid is not None and pid_alive(pid)

    def start(self, timeout=15.0):
        """Starts Dovecot in the foreground (-F) as our child, so it gets
        SIGTERM if this process dies (no orphans when a test run is killed)."""
        if self.running():
            return
        if self.proc is not None:
            self.proc.poll()  # reaps the master of a previous run (doveadm stop)
        for attempt in range(3):
            out_path = os.path.join(self.workdir, "dovecot.stdout")
            out = open(out_path, "ab")
            self.proc = subprocess.Popen(["dovecot", "-F", "-c", self.conf_path],
                                         stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
            out.close()
            try:
                self._wait_ready(timeout)
                return
            except RuntimeError as e:
                err = str(e)
                self.stop()
                if self._auto_ports and "in use" in err and attempt < 2:
                    # Someone took a port between our pick and the bind: pick again.
                    self.imap_port = free_port()
                    self.pop3_port = free_port()
                    if self.ssl_cert:
                        self.imaps_port = free_port()
                        self.pop3s_port = free_port()
                    self._write_conf()
                    continue
                raise

    def _wait_ready(self, timeout):
        ports = [(self.imap_port, b"* OK")]
        if self.ssl_cert:
            ports.append((self.imaps_port, None))
        if "pop3" in self.protocols:
            ports.append((self.pop3_port, b"+OK"))
            if self.ssl_cert:
                ports.append((self.pop3s_port, None))
        deadline = time.monotonic() + timeout
        for port, prefix in ports:
            while True:
                if self.proc.poll() is not None:
                    with open(os.path.join(self.workdir, "dovecot.stdout"), "rb") as f:
                        out = f.read().decode(errors="replace")
                    raise RuntimeError("dovecot exited with %s: %s%s" % (
                        self.proc.returncode, out[-2000:], self._log_tail()))
                try:
                    wait_for_port(self.host, port, min(0.5, max(0.05, deadline - time.monotonic())),
                                  prefix)
                    break
                except TimeoutError as e:
                    if time.monotonic() >= deadline:
                        raise RuntimeError("%s\n%s" % (e, self._log_tail()))

    def stop(self, timeout=10.0):
        proc = getattr(self, "proc", None)
        pid = self.master_pid()
        if proc is not None and proc.poll() is None:
            pid = proc.pid
        if pid is None or not pid_alive(pid):
            if proc is not None:
                proc.poll()
            return
        children = self._descendants(pid)
        # What `doveadm stop` does (SIGTERM to the master), without its slow
        # polling: the master is gone in about a second instead of three.
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + timeout
        while pid_alive(pid) and time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                break
            time.sleep(0.02)
        if pid_alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if proc is not None:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        # Make sure no login or mail process of ours outlives the master.
        for c in children:
            if pid_alive(c):
                try:
                    os.kill(c, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    @staticmethod
    def _descendants(pid):
        out = subprocess.run(["ps", "-e", "-o", "pid=,ppid="], capture_output=True,
                             text=True).stdout
        kids = {}
        for line in out.splitlines():
            p, pp = line.split()
            kids.setdefault(int(pp), []).append(int(p))
        result, todo = [], [pid]
        while todo:
            for c in kids.get(todo.pop(), []):
                result.append(c)
                todo.append(c)
        return result

    def processes(self, service=None, user=None):
        """Children of this instance's master as [(pid, args)].

        service: "imap", "pop3", "imap-login", ...; user: only mail processes
        serving this user (their title is "dovecot/imap [alice 127.0.0.1 ...]").
        """
        pid = self.master_pid()
        if pid is None:
            return []
        out = subprocess.run(["ps", "--ppid", str(pid), "-o", "pid=,args="],
                             capture_output=True, text=True).stdout
        result = []
        for line in out.splitlines():
            p, _, args = line.strip().partition(" ")
            args = args.strip()
            m = re.match(r"^(?:\S*?/)?([\w-]+)(?:\s+\[(.*)\])?", args)
            if not m:
                continue
            if service is not None and m.group(1) != service:
                continue
            if user is not None:
                detail = (m.group(2) or "").split()
                if not detail or detail[0] != user:
                    continue
            result.append((int(p), args))
        return result

    def _log_tail(self, n=4000):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()[-n:]
        except OSError:
            return ""

    def log(self):
        return self._log_tail(n=10 ** 9)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        return False


def make_cert(directory, name="cert"):
    """Self-signed EC P-256 certificate (SAN localhost, 127.0.0.1).

    Returns (cert_path, key_path). Reuses an existing pair.
    """
    os.makedirs(directory, exist_ok=True)
    cert = os.path.join(directory, name + ".pem")
    key = os.path.join(directory, name + "-key.pem")
    if os.path.exists(cert) and os.path.exists(key):
        return cert, key
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", key, "-out", cert, "-days", "3650", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True)
    os.chmod(key, 0o600)
    return cert, key


# --- YAML (enough for postern's config; strings are JSON-quoted) -------------

def _yaml_scalar(v):
    if v is True:
        return "true"
    if v is False:
        return "false"
    if v is None:
        return "null"
    if isinstance(v, (int, float)):
        return str(v)
    return json.dumps(str(v))


def to_yaml(value, indent=0):
    pad = " " * indent
    if isinstance(value, dict):
        if not value:
            return pad + "{}\n"
        out = []
        for k, v in value.items():
            if isinstance(v, (dict, list)) and v:
                out.append("%s%s:\n%s" % (pad, k, to_yaml(v, indent + 2)))
            elif isinstance(v, (dict, list)):
                out.append("%s%s: %s\n" % (pad, k, "{}" if isinstance(v, dict) else "[]"))
            else:
                out.append("%s%s: %s\n" % (pad, k, _yaml_scalar(v)))
        return "".join(out)
    if isinstance(value, list):
        out = []
        for v in value:
            if isinstance(v, (dict, list)) and v:
                inner = to_yaml(v, indent + 2)
                out.append(pad + "- " + inner[indent + 2:])
            else:
                out.append("%s- %s\n" % (pad, _yaml_scalar(v)))
        return "".join(out)
    return pad + _yaml_scalar(value) + "\n"


_LISTEN_RE = re.compile(r"listening name=(\S+) address=(\S+):(\d+)")


class Postern:
    """Runs the postern binary with a config; parses the ports it reports."""

    def __init__(self, binary, workdir, config, start=True, ready_timeout=20.0):
        self.binary = os.path.abspath(binary)
        self.workdir = os.path.abspath(workdir)
        os.makedirs(self.workdir, exist_ok=True)
        self.config_path = os.path.join(self.workdir, "postern.yaml")
        self.log_path = os.path.join(self.workdir, "postern.log")
        text = config if isinstance(config, str) else to_yaml(config)
        with open(self.config_path, "w") as f:
            f.write(text)
        self.proc = None
        self.ports = {}  # listener name -> (host, port)
        self._exit_code = None
        if start:
            self.start(ready_timeout)

    def start(self, ready_timeout=20.0):
        self._log_file = open(self.log_path, "ab")
        self.proc = subprocess.Popen([self.binary, "--config", self.config_path],
                                     stdin=subprocess.DEVNULL, stdout=self._log_file,
                                     stderr=subprocess.STDOUT, preexec_fn=_kill_with_parent)
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline:
            text = self.log()
            self._parse_ports(text)
            if re.search(r"\bready\b", text) and self.ports:
                return
            if self.proc.poll() is not None:
                self._log_file.close()
                raise RuntimeError("postern exited with %s before ready:\n%s"
                                   % (self.proc.returncode, text[-4000:]))
            time.sleep(0.02)
        self.stop(signal.SIGKILL)
        raise RuntimeError("postern not ready after %.0fs:\n%s" % (ready_timeout,
                                                                  self.log()[-4000:]))

    def _parse_ports(self, text):
        for m in _LISTEN_RE.finditer(text):
            name, host, port = m.group(1), m.group(2), int(m.group(3))
            if host.startswith("[") and host.endswith("]"):
                host = host[1:-1]
            self.ports.setdefault(name, (host, port))

    def address(self, name):
        return self.ports[name]

    def port(self, name):
        return self.ports[name][1]

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def send_signal(self, sig):
        if self.running():
            self.proc.send_signal(sig)

    def wait(self, timeout=None):
        """Waits for exit; returns the exit code (negative: killed by signal)."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, sig=signal.SIGTERM, timeout=20.0):
        """Signals postern and waits; SIGKILL after timeout. Returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if not self._log_file.closed:
            self._log_file.close()
        return self.proc.returncode

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        return False


class RedisError(Exception):
    """An error reply (-ERR ...) from Redis."""


class RedisServer:
    """A private redis-server: own config and directory, a free loopback
    port, started as our child and stopped by its PID (never the system's
    one). Nothing is persisted: a restart starts empty.

    command(*args) speaks RESP over a fresh connection: returns str, int,
    None or a list, raises RedisError for an error reply and OSError when
    the server cannot be reached."""

    def __init__(self, workdir, extra_conf="", start=True):
        self.workdir = os.path.abspath(workdir)
        os.makedirs(self.workdir, exist_ok=True)
        self.host = "127.0.0.1"
        self.port = free_port()
        self.extra_conf = extra_conf
        self.conf_path = os.path.join(self.workdir, "redis.conf")
        self.log_path = os.path.join(self.workdir, "redis.log")
        self.proc = None
        if start:
            self.start()

    @property
    def address(self):
        return "%s:%d" % (self.host, self.port)

    def _write_conf(self):
        with open(self.conf_path, "w") as f:
            f.write("bind %s\nport %d\ndir %s\nlogfile %s\ndaemonize no\nsave \"\"\n"
                    "appendonly no\nprotected-mode no\n%s\n"
                    % (self.host, self.port, self.workdir, self.log_path, self.extra_conf))

    def start(self, timeout=10.0):
        """Starts (again, on the same port) and waits for PING."""
        if self.running():
            return
        for attempt in range(3):
            self._write_conf()
            self.proc = subprocess.Popen(["redis-server", self.conf_path],
                                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL, preexec_fn=_kill_with_parent)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    if self.command("PING", timeout=1) == "PONG":
                        return
                except (OSError, RedisError):
                    pass
                time.sleep(0.02)
            self.stop(signal.SIGKILL)
            if "Address already in use" in self.log() and attempt < 2:
                self.port = free_port()  # taken between our pick and the bind
                continue
            raise RuntimeError("redis-server did not start:\n%s" % self.log()[-2000:])

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=5.0):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill(self):
        self.stop(signal.SIGKILL)

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def command(self, *args, timeout=5.0):
        with socket.create_connection((self.host, self.port), timeout=timeout) as s:
            s.settimeout(timeout)
            out = b"*%d\r\n" % len(args)
            for a in args:
                a = a if isinstance(a, bytes) else str(a).encode()
                out += b"$%d\r\n%s\r\n" % (len(a), a)
            s.sendall(out)
            f = s.makefile("rb")
            return self._reply(f)

    @classmethod
    def _reply(cls, f):
        line = f.readline()
        if not line.endswith(b"\r\n"):
            raise OSError("redis closed the connection")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RedisError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = f.read(n + 2)
            return data[:-2].decode(errors="replace")
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [cls._reply(f) for _ in range(n)]
        raise OSError("bad RESP line %r" % line)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        return False


class HAProxy:
    """A private HAProxy (mode tcp, one thread) started as our child and
    stopped by its PID. routes: {name: (host, port)}: each gets a frontend
    on a free 127.0.0.1 port that forwards to (host, port) with a PROXY
    protocol v2 header (`send-proxy-v2`). port(name) says where."""

    def __init__(self, workdir, routes, send_proxy="send-proxy-v2", start=True):
        self.workdir = os.path.abspath(workdir)
        os.makedirs(self.workdir, exist_ok=True)
        self.routes = dict(routes)
        self.send_proxy = send_proxy
        self.ports = {name: free_port() for name in self.routes}
        self.conf_path = os.path.join(self.workdir, "haproxy.cfg")
        self.log_path = os.path.join(self.workdir, "haproxy.out")
        self.proc = None
        if start:
            self.start()

    def port(self, name):
        return self.ports[name]

    def _write_conf(self):
        parts = ["global\n  nbthread 1\n  maxconn 2000\n",
                 "defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 120s\n"
                 "  timeout server 120s\n"]
        for name, (host, port) in self.routes.items():
            parts.append("frontend f_%s\n  bind 127.0.0.1:%d\n  default_backend b_%s\n"
                         % (name, self.ports[name], name))
            parts.append("backend b_%s\n  server s %s:%d %s\n"
                         % (name, host, port, self.send_proxy))
        with open(self.conf_path, "w") as f:
            f.write("".join(parts))

    def start(self, timeout=10.0):
        self._write_conf()
        out = open(self.log_path, "ab")
        self.proc = subprocess.Popen(["haproxy", "-db", "-f", self.conf_path],
                                     stdin=subprocess.DEVNULL, stdout=out,
                                     stderr=subprocess.STDOUT, preexec_fn=_kill_with_parent)
        out.close()
        deadline = time.monotonic() + timeout
        for name in self.routes:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError("haproxy exited with %s:\n%s"
                                       % (self.proc.returncode, self.log()[-2000:]))
                # Bound sockets show in /proc/net/tcp; a probe connection would
                # reach the target as a session of its own.
                if _listening(self.ports[name]):
                    break
                if time.monotonic() >= deadline:
                    self.stop(signal.SIGKILL)
                    raise RuntimeError("haproxy not listening:\n%s" % self.log()[-2000:])
                time.sleep(0.02)

    def stop(self, sig=signal.SIGTERM, timeout=5.0):
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""


def _listening(port):
    """True when some socket listens on 127.0.0.1:port (from /proc/net/tcp)."""
    want = "0100007F:%04X" % port
    try:
        with open("/proc/net/tcp") as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if len(fields) > 3 and fields[1] == want and fields[3] == "0A":
                    return True
    except OSError:
        pass
    return False


def check_config(binary, path, timeout=20):
    """Runs `postern --check-config path`; returns CompletedProcess (text)."""
    return subprocess.run([binary, "--check-config", path], capture_output=True,
                          text=True, timeout=timeout)


def sha256(data):
    return hashlib.sha256(data).hexdigest()


# --- CLI -----------------------------------------------------------------------

def _cmd_dovecot(args):
    d = os.path.abspath(args.dir)
    conf = os.path.join(d, "dovecot.conf")
    if os.path.exists(conf):
        # A previous run (perhaps killed hard) may still be up: stop it first.
        subprocess.run(["doveadm", "-c", conf, "stop"], stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        pidfile = os.path.join(d, "run", "master.pid")
        deadline = time.monotonic() + 10
        while os.path.exists(pidfile) and time.monotonic() < deadline:
            try:
                with open(pidfile) as f:
                    if not pid_alive(int(f.read().strip())):
                        break
            except (OSError, ValueError):
                break
            time.sleep(0.1)
    if os.path.isdir(d):
        shutil.rmtree(d)
    users = [u for u in args.users.split(",") if u]
    stop_event = threading.Event()

    def on_signal(signum, frame):
        stop_event.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    protocols = tuple(p for p in args.protocols.replace(",", " ").split() if p)
    dv = Dovecot(d, imap_port=args.imap_port, pop3_port=args.pop3_port, users=users,
                 password=args.password, protocols=protocols)
    try:
        if "pop3" in protocols:
            print("testbed: dovecot %s running: IMAP %s:%d, POP3 %s:%d" %
                  (dv.instance, dv.host, dv.imap_port, dv.host, dv.pop3_port), flush=True)
        else:
            print("testbed: dovecot %s running: IMAP %s:%d (IMAP only, no POP3)" %
                  (dv.instance, dv.host, dv.imap_port), flush=True)
        print("testbed: users %s, password %r; Maildirs under %s; log %s" %
              (", ".join(users), args.password, dv.home_root, dv.log_path), flush=True)
        for u in users:
            print("testbed:   %s: %d messages" % (u, len(dv.messages(u))), flush=True)
        if args.ready_file:
            with open(args.ready_file, "w") as f:
                f.write("%d %d\n" % (dv.imap_port,
                                      dv.pop3_port if "pop3" in protocols else 0))
        while not stop_event.wait(0.5):
            if not dv.running():
                print("testbed: dovecot exited unexpectedly; log:\n" + dv._log_tail(),
                      file=sys.stderr, flush=True)
                return 1
    finally:
        dv.stop()
        print("testbed: dovecot stopped", flush=True)
    return 0


def _cmd_cert(args):
    cert, key = make_cert(args.dir)
    print(cert)
    print(key)
    return 0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("dovecot", help="run a private Dovecot until SIGINT/SIGTERM")
    d.add_argument("--dir", required=True, help="work directory (wiped and recreated)")
    d.add_argument("--imap-port", type=int, default=10143)
    d.add_argument("--pop3-port", type=int, default=10110)
    d.add_argument("--protocols", default="imap pop3",
                   help='"imap pop3" (default) or "imap" for an IMAP-only store')
    d.add_argument("--users", default="alice,bob,carol")
    d.add_argument("--password", default="demo")
    d.add_argument("--ready-file", help="written with the ports once Dovecot serves")
    d.set_defaults(func=_cmd_dovecot)
    c = sub.add_parser("cert", help="make a self-signed EC P-256 cert in DIR")
    c.add_argument("--dir", required=True)
    c.set_defaults(func=_cmd_cert)
    args = p.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
