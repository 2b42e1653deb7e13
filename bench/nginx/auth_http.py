#!/usr/bin/python3
"""nginx mail auth_http endpoint for bench/compare (standard library only).

Answers every request with Auth-Status: OK and the backend's address:
Auth-Server 127.0.0.1 and the IMAP or POP3 port by the request's
Auth-Protocol header. The backend (Dovecot) checks the password itself; with
--password the endpoint checks it too and answers a failure otherwise.

    auth_http.py --imap-port 10143 --pop3-port 10110 [--port 0] [--ready-file F]

One thread, one selectors loop, many connections at once. HTTP/1.0 requests
(nginx's: a new connection per login) get an HTTP/1.0 answer and the
connection is closed after it, unless the request asked for keep-alive;
HTTP/1.1 requests (Postern's auth-http directory) keep the connection open
unless they say `Connection: close`. So nginx and Postern can use the same
process, and its CPU per login shows what each way of talking to it costs.

`GET /stats` answers a JSON body {"connections": N, "requests": N}: the
connections accepted (those that only asked for /stats not included) and the
auth requests answered so far (bench/compare reads it before and after a
run: connections per login).

Listens on 127.0.0.1 only; prints (and writes to --ready-file) the port it
got. Runs until SIGTERM or SIGINT.
"""

import argparse
import json
import selectors
import signal
import socket
import sys
import urllib.parse

MAX_HEADER = 16384  # bytes of one request's head; more closes the connection


class Conn:
    __slots__ = ("sock", "inbuf", "outbuf", "close_after", "auth_requests", "counted")

    def __init__(self, sock):
        self.sock = sock
        self.inbuf = b""
        self.outbuf = b""
        self.close_after = False
        self.auth_requests = 0
        self.counted = True  # in Service.connections


class Service:
    def __init__(self, imap_port, pop3_port, password, port):
        self.ports = {"imap": imap_port, "pop3": pop3_port}
        self.password = password
        self.connections = 0
        self.requests = 0
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", port))
        self.listener.listen(1024)  # a login storm opens many at once (nginx)
        self.listener.setblocking(False)
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.listener, selectors.EVENT_READ, None)
        self.running = True

    @property
    def port(self):
        return self.listener.getsockname()[1]

    def answer(self, c, head):
        """The response bytes for one request head, and whether to close after it."""
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        version = parts[2] if len(parts) == 3 else "HTTP/1.0"
        target = parts[1] if len(parts) >= 2 else "/"
        headers = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        conn_hdr = headers.get("connection", "").lower()
        if version == "HTTP/1.1":
            close = conn_hdr == "close"
        else:
            version = "HTTP/1.0"
            close = conn_hdr != "keep-alive"
        out = ["%s 200 OK" % version]
        body = b""
        if target == "/stats":
            if c.counted and c.auth_requests == 0:
                self.connections -= 1  # a connection only asking for /stats is not counted
                c.counted = False
            body = json.dumps({"connections": self.connections,
                               "requests": self.requests}).encode()
            out.append("Content-Type: application/json")
        else:
            self.requests += 1
            c.auth_requests += 1
            proto = headers.get("auth-protocol", "imap").lower()
            port = self.ports.get(proto)
            password = urllib.parse.unquote(headers.get("auth-pass", ""))
            if port is None:
                out.append("Auth-Status: Unsupported protocol")
            elif self.password is not None and password != self.password:
                out.append("Auth-Status: Invalid login or password")
                out.append("Auth-Wait: 1")
            else:
                out.append("Auth-Status: OK")
                out.append("Auth-Server: 127.0.0.1")
                out.append("Auth-Port: %d" % port)
        out.append("Content-Length: %d" % len(body))
        if version == "HTTP/1.0" and not close:
            out.append("Connection: keep-alive")
        return ("\r\n".join(out) + "\r\n\r\n").encode("latin-1") + body, close

    def on_readable(self, c):
        try:
            data = c.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self.drop(c)
            return
        c.inbuf += data
        while not c.close_after:
            end = c.inbuf.find(b"\r\n\r\n")
            if end < 0:
                if len(c.inbuf) > MAX_HEADER:
                    self.drop(c)
                    return
                break
            head, c.inbuf = c.inbuf[:end], c.inbuf[end + 4:]  # GET: no body
            resp, close = self.answer(c, head)
            c.outbuf += resp
            c.close_after = close
        self.flush(c)

    def flush(self, c):
        while c.outbuf:
            try:
                n = c.sock.send(c.outbuf)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self.drop(c)
                return
            c.outbuf = c.outbuf[n:]
        if c.outbuf:
            self.sel.modify(c.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, c)
        elif c.close_after:
            self.drop(c)
        else:
            self.sel.modify(c.sock, selectors.EVENT_READ, c)

    def drop(self, c):
        try:
            self.sel.unregister(c.sock)
        except (KeyError, ValueError):
            pass
        c.sock.close()

    def serve(self):
        while self.running:
            for key, events in self.sel.select(timeout=0.2):
                if key.data is None:
                    while True:
                        try:
                            sock, _ = self.listener.accept()
                        except (BlockingIOError, InterruptedError):
                            break
                        sock.setblocking(False)
                        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                        self.connections += 1
                        self.sel.register(sock, selectors.EVENT_READ, Conn(sock))
                    continue
                c = key.data
                if events & selectors.EVENT_READ:
                    self.on_readable(c)
                elif events & selectors.EVENT_WRITE:
                    self.flush(c)
        self.listener.close()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--port", type=int, default=0, help="listen port on 127.0.0.1 (0: pick one)")
    p.add_argument("--imap-port", type=int, required=True)
    p.add_argument("--pop3-port", type=int, required=True)
    p.add_argument("--password", help="also check the password")
    p.add_argument("--ready-file", help="written with the port once listening")
    args = p.parse_args(argv)

    service = Service(args.imap_port, args.pop3_port, args.password, args.port)

    def stop(signum, frame):
        service.running = False

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print("auth_http listening on 127.0.0.1:%d" % service.port, flush=True)
    if args.ready_file:
        with open(args.ready_file, "w") as f:
            f.write("%d\n" % service.port)
    service.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
