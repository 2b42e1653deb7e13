#!/usr/bin/python3
"""nginx mail auth_http endpoint for bench/compare (standard library only).

Answers every request with Auth-Status: OK and the backend's address:
Auth-Server 127.0.0.1 and the IMAP or POP3 port by the request's
Auth-Protocol header. The backend (Dovecot) checks the password itself; with
--password the endpoint checks it too and answers a failure otherwise.

    auth_http.py --imap-port 10143 --pop3-port 10110 [--port 0] [--ready-file F]

Listens on 127.0.0.1 only; prints (and writes to --ready-file) the port it
got. Runs until SIGTERM or SIGINT.
"""

import argparse
import http.server
import signal
import sys
import threading


def make_handler(imap_port, pop3_port, password):
    ports = {"imap": imap_port, "pop3": pop3_port}

    class Handler(http.server.BaseHTTPRequestHandler):
        # nginx speaks HTTP/1.0 to auth_http and closes after each answer.
        protocol_version = "HTTP/1.0"

        def do_GET(self):
            proto = self.headers.get("Auth-Protocol", "imap").lower()
            port = ports.get(proto)
            self.send_response(200)
            if port is None:
                self.send_header("Auth-Status", "Unsupported protocol")
            elif password is not None and self.headers.get("Auth-Pass", "") != password:
                self.send_header("Auth-Status", "Invalid login or password")
                self.send_header("Auth-Wait", "1")
            else:
                self.send_header("Auth-Status", "OK")
                self.send_header("Auth-Server", "127.0.0.1")
                self.send_header("Auth-Port", str(port))
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, fmt, *args):  # quiet: one request per login
            pass

    return Handler


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--port", type=int, default=0, help="listen port on 127.0.0.1 (0: pick one)")
    p.add_argument("--imap-port", type=int, required=True)
    p.add_argument("--pop3-port", type=int, required=True)
    p.add_argument("--password", help="also check the password")
    p.add_argument("--ready-file", help="written with the port once listening")
    args = p.parse_args(argv)

    class Server(http.server.HTTPServer):
        request_queue_size = 1024  # listen backlog: a login storm opens many at once

    server = Server(("127.0.0.1", args.port),
                    make_handler(args.imap_port, args.pop3_port, args.password))
    port = server.server_address[1]

    def stop(signum, frame):
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print("auth_http listening on 127.0.0.1:%d" % port, flush=True)
    if args.ready_file:
        with open(args.ready_file, "w") as f:
            f.write("%d\n" % port)
    server.serve_forever(poll_interval=0.2)
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
