#!/usr/bin/python3
"""Records what nginx's mail proxy asks an auth_http service, and what it does
with the answers, for routing/auth_http_directory.h to be compared against.

Starts, on loopback ports:
  - tests/integration/auth_service.py (in-process), with users whose names
    and passwords hold space, "%", "+", ":", quotes, a tab, DEL and UTF-8;
  - fake IMAP and POP3 backends (in-process) that accept any LOGIN or
    USER/PASS and record the credentials and the port they arrived on;
  - nginx's mail proxy exactly as bench/compare runs it (Debian's nginx-light
    with libnginx-mod-mail, bench/nginx/nginx.conf.in: IMAPS, POP3S and a
    plaintext IMAP server with `imap_auth login plain`);

then logs in through nginx with IMAP LOGIN (quoted strings and literals),
AUTHENTICATE PLAIN (with and without an authorization identity),
AUTHENTICATE LOGIN, POP3 USER/PASS and AUTH PLAIN, right and wrong
passwords (a refusal with Auth-Wait, then a second attempt in the same
session), and records for each login: the HTTP request nginx sent (request
line and headers, in order), the service's answer, and what nginx did with
it (the backend port and the credentials it logged in with, or the line the
client got).

    nginx_compat.py            record, write tests/routing/nginx_auth_http_fixtures.inc
    nginx_compat.py --check    record, compare with the committed file (exit 1 if
                               nginx now behaves differently), write nothing
    nginx_compat.py --json F   also dump the raw record as JSON

tests/routing/auth_http_nginx_compat_test.cc builds Postern's request for
the same logins and compares it header by header with nginx's, and feeds
the same answers to Postern's response parser, which must pick the same
backend, user and password (or the same refusal).

Needs root (nginx switches its workers to nobody) or a user that may run
nginx; standard library only.
"""

import argparse
import base64
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "deploy"))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True

import auth_service  # noqa: E402
import testbed  # noqa: E402

NGINX_TEMPLATE = os.path.join(REPO, "bench", "nginx", "nginx.conf.in")
FIXTURES = os.path.join(REPO, "tests", "routing", "nginx_auth_http_fixtures.inc")

# Users of the auth service. Keys are what the client types (UTF-8).
USERS = {
    "alice": {"password": "demo"},
    "sp ace": {"password": "pa ss"},
    "per%cent": {"password": "100%"},
    "plus+sign": {"password": "a+b=c"},
    "co:lon": {"password": "x:y:z"},
    "j\u00fcrgen": {"password": "p\u00e4ssw\u00f6rd"},
    "quote\"back\\slash": {"password": "q\"b\\s"},
    "ctl": {"password": "tab\there\x7fdel"},
    # Answers that rewrite the backend login and send the mailbox elsewhere.
    "rewritten": {"password": "pw", "ports": {"imap": "@OTHER_IMAP@", "pop3": "@OTHER_POP3@"},
                  "headers": {"Auth-User": "real@store", "Auth-Pass": "backend secret"}},
    # Odd answers, to see what nginx makes of them.
    "nostatus": {"password": "pw", "answer": [["Auth-Server", "127.0.0.1"],
                                              ["Auth-Port", "@IMAP@"]]},
    "spaces": {"password": "pw", "answer": [["Auth-Status", "  OK  "],
                                            ["Auth-Server", "  127.0.0.1 "],
                                            ["Auth-Port", "@IMAP@  "]]},
    "hostname": {"password": "pw", "answer": [["Auth-Status", "OK"], ["Auth-Server", "localhost"],
                                              ["Auth-Port", "@IMAP@"]]},
    "noport": {"password": "pw", "answer": [["Auth-Status", "OK"], ["Auth-Server", "127.0.0.1"]]},
    "badport": {"password": "pw", "answer": [["Auth-Status", "OK"], ["Auth-Server", "127.0.0.1"],
                                             ["Auth-Port", "99999"]]},
    "lowerok": {"password": "pw", "answer": [["Auth-Status", "ok"], ["Auth-Server", "127.0.0.1"],
                                             ["Auth-Port", "@IMAP@"]]},
    "errcode": {"password": "pw", "answer": [["Auth-Status", "Temporary failure"],
                                             ["Auth-Error-Code", "UNAVAILABLE"],
                                             ["Auth-Wait", "1"]]},
    "badwait": {"password": "pw", "answer": [["Auth-Status", "Go away"], ["Auth-Wait", "soon"]]},
    "status500": {"password": "pw", "status": 500},
}

# (name, server, how, user, password, authzid). server: imap (plaintext),
# imaps, pop3s. how: login | login-literal | auth-plain | auth-login |
# user-pass | pop3-auth-plain | retry (a wrong password, then the right one
# in the same session) | refused-twice (two wrong passwords: the second
# answer has no Auth-Wait, and nginx closes the session).
CASES = [
    ("imap_login", "imap", "login", "alice", "demo", ""),
    ("imaps_login", "imaps", "login", "alice", "demo", ""),
    ("imap_login_space", "imap", "login", "sp ace", "pa ss", ""),
    ("imap_login_percent", "imap", "login", "per%cent", "100%", ""),
    ("imap_login_plus", "imap", "login", "plus+sign", "a+b=c", ""),
    ("imap_login_colon", "imap", "login", "co:lon", "x:y:z", ""),
    ("imap_login_quotes", "imap", "login", "quote\"back\\slash", "q\"b\\s", ""),
    ("imap_login_utf8", "imap", "login-literal", "j\u00fcrgen", "p\u00e4ssw\u00f6rd", ""),
    ("imap_login_controls", "imap", "login-literal", "ctl", "tab\there\x7fdel", ""),
    ("imap_auth_plain", "imap", "auth-plain", "alice", "demo", ""),
    ("imaps_auth_plain_authzid", "imaps", "auth-plain", "alice", "demo", "bob"),
    ("imap_auth_login", "imap", "auth-login", "j\u00fcrgen", "p\u00e4ssw\u00f6rd", ""),
    ("imap_rewritten", "imap", "login", "rewritten", "pw", ""),
    ("imap_retry", "imap", "retry", "alice", "demo", ""),
    ("imap_refused_twice", "imap", "refused-twice", "alice", "demo", ""),
    ("pop3s_user_pass", "pop3s", "user-pass", "alice", "demo", ""),
    ("pop3s_user_pass_percent", "pop3s", "user-pass", "per%cent", "100%", ""),
    ("pop3s_auth_plain_space", "pop3s", "pop3-auth-plain", "sp ace", "pa ss", ""),
    ("pop3s_rewritten", "pop3s", "user-pass", "rewritten", "pw", ""),
    ("pop3s_retry", "pop3s", "retry", "plus+sign", "a+b=c", ""),
    ("answer_without_status", "imap", "login", "nostatus", "pw", ""),
    ("answer_with_spaces", "imap", "login", "spaces", "pw", ""),
    ("answer_server_name", "imap", "login", "hostname", "pw", ""),
    ("answer_without_port", "imap", "login", "noport", "pw", ""),
    ("answer_bad_port", "imap", "login", "badport", "pw", ""),
    ("answer_lowercase_ok", "imap", "login", "lowerok", "pw", ""),
    ("answer_error_code", "pop3s", "login", "errcode", "pw", ""),
    ("answer_bad_wait", "pop3s", "login", "badwait", "pw", ""),
    ("answer_http_500", "imap", "login", "status500", "pw", ""),
]

WRONG = "wrong"
TIMEOUT = 10.0


# --- fake backends -------------------------------------------------------------

class Backend:
    """Accepts any login, records (port, protocol, user, password) as bytes."""

    def __init__(self, protocol):
        self.protocol = protocol
        self.logins = []
        self.lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _record(self, user, password):
        with self.lock:
            self.logins.append((self.port, self.protocol, user, password))

    def _serve(self, c):
        c.settimeout(TIMEOUT)
        f = c.makefile("rb")
        try:
            if self.protocol == "imap":
                self._imap(c, f)
            else:
                self._pop3(c, f)
        except (OSError, ValueError):
            pass
        finally:
            c.close()

    def _pop3(self, c, f):
        c.sendall(b"+OK fake pop3\r\n")
        user = None
        while True:
            line = f.readline()
            if not line:
                return
            cmd, _, arg = line.rstrip(b"\r\n").partition(b" ")
            cmd = cmd.upper()
            if cmd == b"USER":
                user = arg
                c.sendall(b"+OK\r\n")
            elif cmd == b"PASS":
                self._record(user, arg)
                c.sendall(b"+OK logged in\r\n")
            elif cmd == b"QUIT":
                c.sendall(b"+OK bye\r\n")
                return
            elif cmd == b"CAPA":
                c.sendall(b"+OK\r\nUSER\r\n.\r\n")
            else:
                c.sendall(b"+OK\r\n")

    @staticmethod
    def _tokens(data):
        """IMAP atoms and quoted strings of one line segment."""
        out, i = [], 0
        while i < len(data):
            if data[i:i + 1] == b" ":
                i += 1
            elif data[i:i + 1] == b'"':
                i += 1
                tok = b""
                while data[i:i + 1] != b'"':
                    if data[i:i + 1] == b"\\":
                        i += 1
                    tok += data[i:i + 1]
                    i += 1
                out.append(tok)
                i += 1
            else:
                j = data.find(b" ", i)
                j = len(data) if j < 0 else j
                out.append(data[i:j])
                i = j
        return out

    def _imap(self, c, f):
        c.sendall(b"* OK fake imap ready\r\n")
        while True:
            tokens = []
            while True:
                line = f.readline()
                if not line:
                    return
                line = line.rstrip(b"\r\n")
                m = re.search(rb"\{(\d+)(\+?)\}$", line)
                if not m:
                    tokens += self._tokens(line)
                    break
                tokens += self._tokens(line[:m.start()])
                if not m.group(2):
                    c.sendall(b"+ go ahead\r\n")
                tokens.append(f.read(int(m.group(1))))
            if len(tokens) < 2:
                continue
            tag, cmd = tokens[0], tokens[1].upper()
            if cmd == b"LOGIN" and len(tokens) >= 4:
                self._record(tokens[2], tokens[3])
                c.sendall(tag + b" OK LOGIN completed\r\n")
            elif cmd == b"LOGOUT":
                c.sendall(b"* BYE\r\n" + tag + b" OK LOGOUT completed\r\n")
                return
            elif cmd == b"CAPABILITY":
                c.sendall(b"* CAPABILITY IMAP4rev1\r\n" + tag + b" OK done\r\n")
            else:
                c.sendall(tag + b" OK done\r\n")

    def close(self):
        self.sock.close()


# --- clients ---------------------------------------------------------------------

class Client:
    def __init__(self, port, tls):
        s = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            s = ctx.wrap_socket(s, server_hostname="localhost")
        self.s = s
        self.buf = b""

    def line(self):
        while b"\r\n" not in self.buf:
            d = self.s.recv(4096)
            if not d:
                line, self.buf = self.buf, b""
                return line
            self.buf += d
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def send(self, data):
        self.s.sendall(data)

    def tagged(self, tag):
        """The tagged answer, or the last line before the server closed."""
        last = b""
        while True:
            line = self.line()
            if not line:
                return last
            if line.startswith(tag + b" "):
                return line
            last = line

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass


def imap_quoted(s):
    return b'"' + s.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def imap_login(c, user, password, literal):
    if not literal:
        c.send(b"a LOGIN " + imap_quoted(user) + b" " + imap_quoted(password) + b"\r\n")
        return c.tagged(b"a")
    c.send(b"a LOGIN {%d}\r\n" % len(user))
    if not c.line().startswith(b"+"):
        return b"no continuation"
    c.send(user + b" {%d}\r\n" % len(password))
    if not c.line().startswith(b"+"):
        return b"no continuation"
    c.send(password + b"\r\n")
    return c.tagged(b"a")


def imap_auth_plain(c, user, password, authzid):
    c.send(b"a AUTHENTICATE PLAIN\r\n")
    if not c.line().startswith(b"+"):
        return b"no continuation"
    c.send(base64.b64encode(authzid + b"\0" + user + b"\0" + password) + b"\r\n")
    return c.tagged(b"a")


def imap_auth_login(c, user, password):
    c.send(b"a AUTHENTICATE LOGIN\r\n")
    if not c.line().startswith(b"+"):
        return b"no continuation"
    c.send(base64.b64encode(user) + b"\r\n")
    if not c.line().startswith(b"+"):
        return b"no continuation"
    c.send(base64.b64encode(password) + b"\r\n")
    return c.tagged(b"a")


def pop3_user_pass(c, user, password):
    c.send(b"USER " + user + b"\r\n")
    r = c.line()
    if not r.startswith(b"+OK"):
        return r
    c.send(b"PASS " + password + b"\r\n")
    return c.line()


def pop3_auth_plain(c, user, password, authzid):
    c.send(b"AUTH PLAIN\r\n")
    if not c.line().startswith(b"+"):
        return b"no continuation"
    c.send(base64.b64encode(authzid + b"\0" + user + b"\0" + password) + b"\r\n")
    return c.line()


def run_case(ports, case):
    name, server, how, user, password, authzid = case
    user, password, authzid = user.encode(), password.encode(), authzid.encode()
    pop3 = server.startswith("pop3")
    c = Client(ports[server], tls=server.endswith("s"))
    replies = [c.line()]  # greeting

    def login(u, p):
        if how in ("login", "retry", "refused-twice"):
            return pop3_user_pass(c, u, p) if pop3 else imap_login(c, u, p, False)
        if how == "login-literal":
            return imap_login(c, u, p, True)
        if how == "auth-plain":
            return imap_auth_plain(c, u, p, authzid)
        if how == "auth-login":
            return imap_auth_login(c, u, p)
        if how == "user-pass":
            return pop3_user_pass(c, u, p)
        if how == "pop3-auth-plain":
            return pop3_auth_plain(c, u, p, authzid)
        raise ValueError(how)

    if how == "retry":  # a wrong password first, then (below) the right one
        replies.append(login(user, WRONG.encode()))
    if how == "refused-twice":
        replies.append(login(user, WRONG.encode()))
        replies.append(login(user, WRONG.encode()))
    else:
        replies.append(login(user, password))
    ok = replies[-1].startswith(b"+OK" if pop3 else b"a OK")
    if ok:
        c.send(b"QUIT\r\n" if pop3 else b"b LOGOUT\r\n")
        replies.append(c.line())
    c.close()
    return replies


# --- nginx ----------------------------------------------------------------------

def start_nginx(workdir, auth_port):
    cert, key = testbed.make_cert(workdir)
    ports = {"imaps": testbed.free_port(), "pop3s": testbed.free_port(),
             "imap": testbed.free_port()}
    with open(NGINX_TEMPLATE) as f:
        conf = f.read()
    for k, v in {"@WORKERS@": 1, "@DIR@": workdir, "@AUTH_PORT@": auth_port, "@CERT@": cert,
                 "@KEY@": key, "@IMAPS_PORT@": ports["imaps"], "@POP3S_PORT@": ports["pop3s"],
                 "@IMAP_PORT@": ports["imap"]}.items():
        conf = conf.replace(k, str(v))
    path = os.path.join(workdir, "nginx.conf")
    with open(path, "w") as f:
        f.write(conf)
    err = os.path.join(workdir, "nginx-error.log")
    with open(os.path.join(workdir, "nginx.out"), "ab") as out:
        proc = subprocess.Popen(["nginx", "-c", path, "-p", workdir + "/", "-e", err],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=out,
                                preexec_fn=testbed._kill_with_parent)
    for p in ports.values():
        testbed.wait_for_port("127.0.0.1", p, 10)
    return proc, ports


def nginx_version():
    r = subprocess.run(["nginx", "-v"], capture_output=True, text=True)
    return (r.stderr or r.stdout).strip().replace("nginx version: ", "")


def record():
    imap, pop3 = Backend("imap"), Backend("pop3")
    other_imap, other_pop3 = Backend("imap"), Backend("pop3")
    users = json.loads(json.dumps(USERS).replace('"@OTHER_IMAP@"', str(other_imap.port))
                       .replace('"@OTHER_POP3@"', str(other_pop3.port))
                       .replace("@IMAP@", str(imap.port)))
    config = {"server": "127.0.0.1", "ports": {"imap": imap.port, "pop3": pop3.port},
              "wait": 1, "max_attempts": 2, "users": users}
    service = auth_service.AuthService(config).start()
    workdir = tempfile.mkdtemp(prefix="nginx-compat-")
    proc = None
    out = []
    try:
        proc, ports = start_nginx(workdir, service.port)
        backends = [imap, pop3, other_imap, other_pop3]
        for case in CASES:
            before = len(service.requests())
            seen = [len(b.logins) for b in backends]
            replies = run_case(ports, case)
            # nginx may still be talking to the backend when the client is done.
            time.sleep(0.1)
            logins = []
            for b, n in zip(backends, seen):
                logins += b.logins[n:]
            out.append({"case": case, "replies": replies,
                        "requests": service.requests()[before:], "logins": logins})
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        service.stop()
        for b in (imap, pop3, other_imap, other_pop3):
            b.close()
        shutil.rmtree(workdir, ignore_errors=True)
    return out, {"imap": imap.port, "pop3": pop3.port, "other_imap": other_imap.port,
                 "other_pop3": other_pop3.port}


# --- the fixture file -------------------------------------------------------------

def c_string(data):
    """An absl::string_view of bytes: a C++ literal (split after each LF,
    escapes for everything but printable ASCII) with its length."""
    if isinstance(data, str):
        data = data.encode("latin-1")
    chunks, cur, prev_hex = [], "", False
    for b in data:
        ch = chr(b)
        if prev_hex and ch in "0123456789abcdefABCDEF":
            cur += '" "'  # a hex escape must not swallow the next character
        prev_hex = False
        if ch == "\\":
            cur += "\\\\"
        elif ch == '"':
            cur += '\\"'
        elif ch == "\r":
            cur += "\\r"
        elif ch == "\n":
            chunks.append(cur + "\\n")
            cur = ""
        elif ch == "?":
            cur += "\\?"
        elif 0x20 <= b < 0x7F:
            cur += ch
        else:
            cur += "\\x%02x" % b
            prev_hex = True
    if cur or not chunks:
        chunks.append(cur)
    lit = "\n            ".join('"%s"' % c for c in chunks)
    return "absl::string_view(%s, %d)" % (lit, len(data))


def raw_request(r):
    head = "%s %s %s\r\n" % (r["method"], r["path"], r["version"])
    for k, v in r["headers"]:
        head += "%s: %s\r\n" % (k, v)
    return head + "\r\n"


def raw_response(r):
    resp = r.get("response")
    if resp is None:
        return ""
    head = "HTTP/1.1 %d OK\r\n" % resp["status"]
    for k, v in resp["headers"]:
        head += "%s: %s\r\n" % (k, v)
    return head + "Content-Length: 0\r\n\r\n"


def write_fixtures(results, ports, path):
    version = nginx_version()
    lines = [
        "// Generated by tests/integration/nginx_compat.py from %s (Debian's" % version,
        "// nginx-light + libnginx-mod-mail, bench/nginx/nginx.conf.in). Do not edit.",
        "//",
        "// One row per auth_http request nginx made: the login that caused it, the",
        "// request as tests/integration/auth_service.py received it (request line",
        "// and headers in order, values byte for byte), the service's answer, and",
        "// what nginx did next: the backend it logged in to (port, user, password)",
        "// or, after a refusal, the line its client got.",
        "",
        "inline constexpr uint16_t kNginxImapBackendPort = %d;" % ports["imap"],
        "inline constexpr uint16_t kNginxPop3BackendPort = %d;" % ports["pop3"],
        "inline constexpr uint16_t kNginxOtherImapBackendPort = %d;" % ports["other_imap"],
        "inline constexpr uint16_t kNginxOtherPop3BackendPort = %d;" % ports["other_pop3"],
        "",
        "inline const NginxAuthHttpCase kNginxAuthHttpCases[] = {",
    ]
    for res in results:
        name, server, how, user, password, authzid = res["case"]
        reqs = res["requests"]
        secrets = {"retry": [WRONG, password], "refused-twice": [WRONG, WRONG]}.get(how, [password])
        if len(reqs) != len(secrets):
            raise RuntimeError("%s: nginx made %d auth requests, %d expected" % (
                name, len(reqs), len(secrets)))
        for i, r in enumerate(reqs):
            # The backend login, if this request's answer led to one; else the
            # line the client got for this login (replies[0] is the greeting).
            login = res["logins"][0] if (i == len(reqs) - 1 and res["logins"]) else None
            reply = b"" if login is not None else res["replies"][1 + i]
            lines += [
                "    {",
                "        // %s: %s over %s, request %d of %d" % (name, how, server, i + 1, len(reqs)),
                "        %s, %s, %s," % (c_string(name), c_string(server), c_string(how)),
                "        %s," % c_string(user.encode("utf-8")),
                "        %s," % c_string(secrets[i].encode("utf-8")),
                "        %s," % c_string(authzid.encode("utf-8")),
                "        %d," % (i + 1),
                "        %s," % c_string(raw_request(r)),
                "        %s," % c_string(raw_response(r)),
                "        %d," % (login[0] if login else 0),
                "        %s," % c_string(login[2] if login else b""),
                "        %s," % c_string(login[3] if login else b""),
                "        %s," % c_string(reply),
                "    },",
            ]
    lines.append("};")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--check", action="store_true",
                   help="compare with the committed fixtures instead of writing them")
    p.add_argument("--json", help="also write the raw record here")
    p.add_argument("--out", default=FIXTURES)
    args = p.parse_args(argv)
    if shutil.which("nginx") is None or not os.path.exists(
            "/usr/lib/nginx/modules/ngx_mail_module.so"):
        print("nginx_compat: nginx-light and libnginx-mod-mail are needed", file=sys.stderr)
        return 77
    results, ports = record()
    if args.json:
        with open(args.json, "w") as f:
            json.dump([{**r, "replies": [x.decode("latin-1") for x in r["replies"]],
                        "logins": [(l[0], l[1], l[2].decode("latin-1"), l[3].decode("latin-1"))
                                   for l in r["logins"]]} for r in results], f, indent=1)
    if args.check:
        fd, tmp = tempfile.mkstemp(suffix=".inc")
        os.close(fd)
        try:
            write_fixtures(results, ports, tmp)
            with open(tmp) as f:
                new = f.read()
            with open(args.out) as f:
                old = f.read()
        finally:
            os.unlink(tmp)

        def norm(text):
            text = re.sub(r"\b\d{4,5}\b", "PORT", text)  # ports differ run to run
            text = re.sub(r'"Auth-SSL-(Protocol|Cipher): [^"]*"', "SSL", text)
            return re.sub(r"nginx/[\d.]+", "nginx", text)
        if norm(new) != norm(old):
            print("nginx_compat: nginx's requests or behaviour differ from %s" % args.out)
            return 1
        print("nginx_compat: nginx behaves as recorded in %s" % args.out)
        return 0
    write_fixtures(results, ports, args.out)
    print("nginx_compat: %d cases, %d requests written to %s" % (
        len(results), sum(len(r["requests"]) for r in results), args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
