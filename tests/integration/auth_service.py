#!/usr/bin/python3
"""A small but real auth_http service: nginx's mail auth_http protocol.

It answers the way nginx's documentation describes (nginx.org,
ngx_mail_auth_http_module, "Protocol"), so that it works behind nginx's mail
proxy and behind Postern's auth-http directory alike:

  request:  GET <path> with Auth-Method, Auth-User, Auth-Pass (both
            percent-escaped by the proxy: space, "%" and control bytes),
            Auth-Protocol (imap | pop3), Auth-Login-Attempt, Client-IP, ...
  accepted: Auth-Status: OK, Auth-Server: <ip>, Auth-Port: <port>
            (plus the user's own extra headers: Auth-User / Auth-Pass
            rewriting, Postern's Auth-Backend, Auth-Master, ...)
  refused:  Auth-Status: Invalid login or password, and Auth-Wait: <s>
            while Auth-Login-Attempt is below max_attempts (the
            documentation asks for no Auth-Wait after 10 to 20 attempts,
            which makes nginx close the session).

HTTP/1.1 with keep-alive (a proxy that sends HTTP/1.0, as nginx does, gets
HTTP/1.1 answers and the connection closed after each one), one thread per
connection. Standard library only.

The users file (JSON):

    {
      "server": "127.0.0.1",                      # default Auth-Server
      "ports": {"imap": 10143, "pop3": 10110},    # default Auth-Port by Auth-Protocol
      "wait": 1,                                  # Auth-Wait on a refusal (0: none)
      "max_attempts": 10,
      "users": {
        "alice": {"password": "demo"},
        "bob":   {"password": "x y", "server": "127.0.0.2", "ports": {"imap": 20143},
                  "headers": {"Auth-User": "bob@store", "Auth-Pass": "secret"}},
        "odd":   {"password": "x", "answer": [["Auth-Status", "OK"]], "status": 500}
      }
    }

A user's "headers" are added to the accepting answer; "answer" replaces it
whole (a list of [name, value]) and "status" sets the HTTP status of the
user's answers, for tests of odd answers.

OAuth (Auth-Method xoauth2 or oauthbearer: Auth-Pass is the client's bearer
token): with "introspection_url" in the file, the service asks that token
introspection endpoint (RFC 7662: POST token=<token>, a JSON answer) and
accepts when the answer is {"active": true, "username": <Auth-User>} and the
user has an entry; without it, or for any other answer, it refuses. A
user's "oauth" object is merged over the entry for OAuth logins (other
"headers", "server", "ports": e.g. Auth-Master for a master login, or none
so that the token goes on to the backend). The user's password plays no
part in an OAuth login.

    "introspection_url": "http://127.0.0.1:8080/introspect",
    "users": {"dave": {"password": "!", "oauth": {"headers": {"Auth-Master": "yes"}}}}

User names and passwords are compared as UTF-8 bytes after percent-decoding
(never "+" to space: nginx leaves "+" alone).

Besides the auth path it serves, on the same port:

  GET /stats     {"connections": n, "auth_connections": n, "requests": n,
                  "open_connections": n}: TCP connections accepted, those
                  that carried at least one auth request, auth requests
  GET /requests  every auth request recorded so far, in order: method, path,
                  version, headers as [name, value] pairs (values as
                  latin-1 code points: one per byte), the response headers
                  sent, and the connection's number
  GET /reset     clears the counters and the record
  GET /control?delay=S&hang=0|1&status=CODE&close=0|1
                 from now on: answer auth requests after S seconds, or never
                 (hang: hold the connection open without answering until
                 the client goes away or the service stops), with another
                 HTTP status, or with "Connection: close"

Command line:

    auth_service.py --users users.json [--port 0] [--path /auth] [--ready-file F]

Listens on 127.0.0.1 (--host to change), prints the port and writes it to
--ready-file; runs until SIGTERM or SIGINT. Importable: AuthService(config)
with start(), stop(), port, stats(), requests(), control(...).
"""

import argparse
import http.server
import json
import signal
import socketserver
import sys
import threading
import time
import urllib.parse
import urllib.request


def _b(s):
    return s.encode("utf-8") if isinstance(s, str) else bytes(s)


def unescape(value):
    """Percent-decoding of a header value as nginx escapes it; bytes out."""
    return urllib.parse.unquote_to_bytes(value.encode("latin-1"))


class AuthService:
    """The service, in-process (threads) or from main()."""

    def __init__(self, config, host="127.0.0.1", port=0, path="/auth"):
        self.config = config
        self.path = path
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._connections = 0
        self._auth_connections = 0
        self._open = 0
        self._requests = []
        self._count = 0
        self._mode = {"delay": 0.0, "hang": False, "status": 200, "close": False}
        service = self

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True
            allow_reuse_address = True
            request_queue_size = 1024

            def process_request(self, request, client_address):
                with service._lock:
                    service._connections += 1
                    service._open += 1
                    number = service._connections
                service._conn_numbers[id(request)] = number
                super().process_request(request, client_address)

            def shutdown_request(self, request):
                with service._lock:
                    service._open -= 1
                service._conn_numbers.pop(id(request), None)
                super().shutdown_request(request)

        self._conn_numbers = {}
        self.server = Server((host, port), self._handler_class())
        self.port = self.server.server_address[1]
        self._thread = None

    # --- control (in-process) -------------------------------------------------

    def start(self):
        self._thread = threading.Thread(target=self.server.serve_forever,
                                        kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self._stopping.set()
        self.server.shutdown()
        self.server.server_close()
        if self._thread:
            self._thread.join(5)

    def stats(self):
        with self._lock:
            return {"connections": self._connections, "auth_connections": self._auth_connections,
                    "requests": self._count, "open_connections": self._open}

    def requests(self):
        with self._lock:
            return list(self._requests)

    def reset(self):
        with self._lock:
            self._connections = self._auth_connections = self._count = 0
            self._requests = []

    def control(self, delay=None, hang=None, status=None, close=None):
        with self._lock:
            if delay is not None:
                self._mode["delay"] = float(delay)
            if hang is not None:
                self._mode["hang"] = bool(hang)
            if status is not None:
                self._mode["status"] = int(status)
            if close is not None:
                self._mode["close"] = bool(close)

    # --- the protocol ---------------------------------------------------------

    def answer(self, headers):
        """The auth_http answer for request headers (a list of (name, value)):
        a list of (name, value) response headers."""
        h = {}
        for k, v in headers:
            h[k.lower()] = v
        cfg = self.config
        user = unescape(h.get("auth-user", ""))
        password = unescape(h.get("auth-pass", ""))
        protocol = h.get("auth-protocol", "").lower()
        try:
            attempt = int(h.get("auth-login-attempt", "1"))
        except ValueError:
            attempt = 1
        entry = None
        for name, e in cfg.get("users", {}).items():
            if _b(name) == user:
                entry = e
                break
        method = h.get("auth-method", "plain").lower()
        if method in ("xoauth2", "oauthbearer"):
            accepted = entry is not None and self.token_user(password) == user
            if accepted:
                entry = dict(entry, **entry.get("oauth", {}))
        else:
            accepted = entry is not None and _b(entry.get("password", "")) == password
        if accepted:
            ports = dict(cfg.get("ports", {}))
            ports.update(entry.get("ports", {}))
            if protocol not in ports:
                return [("Auth-Status", "Unsupported protocol")]
            if "answer" in entry:  # an answer given whole (for odd answers in tests)
                return [(k, str(v)) for k, v in entry["answer"]]
            out = [("Auth-Status", "OK"),
                   ("Auth-Server", entry.get("server", cfg.get("server", "127.0.0.1"))),
                   ("Auth-Port", str(ports[protocol]))]
            out += list(entry.get("headers", {}).items())
            return out
        out = [("Auth-Status", cfg.get("refusal", "Invalid login or password"))]
        wait = cfg.get("wait", 0)
        if wait and attempt < cfg.get("max_attempts", 10):
            out.append(("Auth-Wait", str(wait)))
        return out

    def token_user(self, token):
        """The user a bearer token belongs to, by the introspection
        endpoint's answer (RFC 7662), as bytes; None for a token that is not
        active, or when there is no endpoint or it fails."""
        url = self.config.get("introspection_url")
        if not url or not token:
            return None
        body = urllib.parse.urlencode({"token": token.decode("utf-8", "replace")}).encode()
        req = urllib.request.Request(url, data=body, headers={
            "Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                doc = json.load(r)
        except (OSError, ValueError):
            return None
        if doc.get("active") is not True or not isinstance(doc.get("username"), str):
            return None
        return _b(doc["username"])

    def status_for(self, headers):
        """The HTTP status a user's entry asks for, or None."""
        user = b""
        for k, v in headers:
            if k.lower() == "auth-user":
                user = unescape(v)
        for name, e in self.config.get("users", {}).items():
            if _b(name) == user and "status" in e:
                return int(e["status"])
        return None

    def _handler_class(self):
        service = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _send(self, status, headers, body=b""):
                self.send_response_only(status)
                for k, v in headers:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if body:
                    self.wfile.write(body)
                self.wfile.flush()

            def _json(self, obj):
                self._send(200, [("Content-Type", "application/json")],
                           json.dumps(obj).encode())

            def do_GET(self):
                url = urllib.parse.urlsplit(self.path)
                if url.path == service.path:
                    return self._auth()
                if url.path == "/stats":
                    return self._json(service.stats())
                if url.path == "/requests":
                    return self._json(service.requests())
                if url.path == "/reset":
                    service.reset()
                    return self._json({})
                if url.path == "/control":
                    q = dict(urllib.parse.parse_qsl(url.query))
                    service.control(delay=q.get("delay"),
                                    hang=q["hang"] == "1" if "hang" in q else None,
                                    status=q.get("status"),
                                    close=q["close"] == "1" if "close" in q else None)
                    return self._json({})
                self._send(404, [])

            def _auth(self):
                headers = list(self.headers.items())
                number = service._conn_numbers.get(id(self.request), 0)
                with service._lock:
                    service._count += 1
                    if not getattr(self, "_counted", False):
                        self._counted = True
                        service._auth_connections += 1
                    mode = dict(service._mode)
                record = {"method": self.command, "path": self.path,
                          "version": self.request_version, "headers": headers,
                          "connection": number}
                if mode["hang"]:
                    with service._lock:
                        service._requests.append(record)
                    # Hold the connection, answer nothing, until the client
                    # goes away or the service stops.
                    self.connection.settimeout(0.1)
                    while not service._stopping.is_set():
                        try:
                            if not self.connection.recv(1 << 16):
                                break
                        except OSError as e:
                            if "timed out" not in str(e):
                                break
                    self.close_connection = True
                    return
                if mode["delay"] > 0:
                    service._stopping.wait(mode["delay"])
                answer = service.answer(headers)
                status = service.status_for(headers) or mode["status"]
                if mode["close"]:
                    answer = answer + [("Connection", "close")]
                    self.close_connection = True
                record["response"] = {"status": status, "headers": answer}
                with service._lock:
                    service._requests.append(record)
                    del service._requests[:-10000]
                self._send(status, answer)

            def log_message(self, fmt, *args):  # quiet: one request per login
                pass

        return Handler


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--users", required=True, help="the users file (JSON, see above)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0: pick one")
    p.add_argument("--path", default="/auth")
    p.add_argument("--ready-file", help="written with the port once listening")
    args = p.parse_args(argv)
    with open(args.users) as f:
        config = json.load(f)
    service = AuthService(config, host=args.host, port=args.port, path=args.path)

    def stop(signum, frame):
        threading.Thread(target=service.stop, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print("auth_service listening on %s:%d" % (args.host, service.port), flush=True)
    if args.ready_file:
        with open(args.ready_file, "w") as f:
            f.write("%d\n" % service.port)
    service.server.serve_forever(poll_interval=0.2)
    service.server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
