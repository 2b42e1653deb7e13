"""A small OAuth 2.0 token introspection service (RFC 7662) for the tests:
Dovecot's oauth2 passdb asks it whether a bearer token is good. Standard
library only; runs on a thread of the test process, on a free loopback port.

    svc = IntrospectionService({"tok-alice": {"username": "alice"}})
    svc.url            # http://127.0.0.1:PORT/introspect
    svc.tokens["t2"] = {"username": "bob"}   # add or revoke at any time
    svc.requests       # [(method, token)], what was asked, in order
    svc.close()

A known token is answered {"active": true, "username": ..., ...}; an unknown
one {"active": false} (RFC 7662 section 2.2: nothing else about it). The
token is taken from where Dovecot 2.3 puts it for each introspection_mode:
post (form body `token=`), get (appended to the URL) or auth (an
`Authorization: Bearer` header).
"""

import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class IntrospectionService:

    def __init__(self, tokens=None, host="127.0.0.1", path="/introspect"):
        self.tokens = dict(tokens or {})
        self.requests = []
        self.path = path
        self._lock = threading.Lock()
        svc = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, fmt, *args):  # quiet
                pass

            def _answer(self, token):
                with svc._lock:
                    svc.requests.append((self.command, token))
                    info = svc.tokens.get(token) if token is not None else None
                body = dict(info, active=True) if info is not None else {"active": False}
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _header_token(self):
                auth = self.headers.get("Authorization", "")
                if auth.lower().startswith("bearer "):
                    return auth[7:].strip()
                return None

            def do_GET(self):
                url = urllib.parse.urlsplit(self.path)
                token = self._header_token()
                if token is None:
                    q = urllib.parse.parse_qs(url.query)
                    if "token" in q:
                        token = q["token"][0]
                    elif url.path.startswith(svc.path) and len(url.path) > len(svc.path):
                        token = urllib.parse.unquote(url.path[len(svc.path):].lstrip("/"))
                    elif url.query:
                        token = urllib.parse.unquote(url.query)
                self._answer(token)

            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0") or 0)
                raw = self.rfile.read(n).decode("utf-8", "replace") if n else ""
                token = urllib.parse.parse_qs(raw).get("token", [None])[0]
                if token is None:
                    token = self._header_token()
                self._answer(token)

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = "http://%s:%d%s" % (host, self.port, path)
        self._thread = threading.Thread(target=self.server.serve_forever,
                                        kwargs={"poll_interval": 0.2}, daemon=True)
        self._thread.start()

    def asked(self, token):
        """How many times the token was asked about."""
        with self._lock:
            return sum(1 for _, t in self.requests if t == token)

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)
