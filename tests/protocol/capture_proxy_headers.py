#!/usr/bin/env python3
"""Captures the PROXY protocol headers a real HAProxy sends to its servers.

Prints the bytes each recording listener received (the header, then the
client's "HELLO\\n") as C++ string literals: the test vectors of
proxy_header_test.cc came from this script with HAProxy 2.6.12 (Debian 12).
Loopback only; needs haproxy and openssl on PATH.

    tests/protocol/capture_proxy_headers.py
"""

import os
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

# name -> (frontend bind, server options)
SERVERS = {
    "v1_tcp4": ("127.0.0.1:{fport}", "send-proxy"),
    "v1_tcp6": ("[::1]:{fport}", "send-proxy"),
    "v2_tcp4": ("127.0.0.1:{fport}", "send-proxy-v2"),
    "v2_tcp6_crc": ("[::1]:{fport}", "send-proxy-v2 proxy-v2-options crc32c"),
    "v2_ssl": ("127.0.0.1:{fport} ssl crt {dir}/srv.pem ca-file {dir}/ca.pem verify optional alpn imap",
               "send-proxy-v2-ssl-cn proxy-v2-options "
               "ssl,cert-cn,ssl-cipher,cert-sig,cert-key,authority,crc32c,unique-id"),
    "v2_local": (None, "send-proxy-v2 check check-send-proxy inter 60s"),
}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def record(listener, out):
    """Keeps the first bytes of every connection (until "HELLO\\n" or EOF)."""
    while True:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        data = b""
        conn.settimeout(2)
        try:
            while b"HELLO\n" not in data:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                data += chunk
        except OSError:
            pass
        conn.close()
        out.append(data)


def certificates(d):
    def run(*args):
        subprocess.run(args, cwd=d, check=True, capture_output=True)

    run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out",
        "ca.pem", "-days", "30", "-subj", "/CN=Postern Test CA")
    for name, key, cn in (("srv", ["rsa:2048"], "mail.example.com"),
                          ("cli", ["ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"],
                           "alice@example.com")):
        run("openssl", "req", "-newkey", *key, "-nodes", "-keyout", name + ".key", "-out",
            name + ".csr", "-subj", "/CN=" + cn)
        run("openssl", "x509", "-req", "-in", name + ".csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", name + ".crt", "-days", "30")
    with open(os.path.join(d, "srv.pem"), "w") as f:
        f.write(open(os.path.join(d, "srv.crt")).read() + open(os.path.join(d, "srv.key")).read())


def main():
    d = tempfile.mkdtemp(prefix="postern-pp-")
    certificates(d)
    config = ["defaults", "  mode tcp", "  timeout connect 2s", "  timeout client 5s",
              "  timeout server 5s"]
    captured, listeners, fronts = {}, [], {}
    for name, (bind, options) in SERVERS.items():
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        listeners.append(listener)
        captured[name] = []
        threading.Thread(target=record, args=(listener, captured[name]), daemon=True).start()
        sport = listener.getsockname()[1]
        config += ["backend be_" + name, f"  server s1 127.0.0.1:{sport} {options}"]
        if bind:
            fronts[name] = free_port()
            config += ["frontend fe_" + name,
                       "  bind " + bind.format(fport=fronts[name], dir=d),
                       "  unique-id-format %{+X}o\\ %ci:%cp_%fi:%fp_%Ts_%rt:%pid",
                       "  default_backend be_" + name]
    with open(os.path.join(d, "haproxy.cfg"), "w") as f:
        f.write("\n".join(config) + "\n")
    haproxy = subprocess.Popen(["haproxy", "-db", "-f", os.path.join(d, "haproxy.cfg")])
    try:
        time.sleep(1)
        clients = [(name, None) for name in fronts if name != "v2_ssl"]
        # TLS 1.3 with SNI, ALPN and a client certificate; TLS 1.2 with SNI only.
        clients += [("v2_ssl", "cert"), ("v2_ssl", "tls12")]
        for name, tls in clients:
            host = "::1" if "[::1]" in SERVERS[name][0] else "127.0.0.1"
            sock = socket.create_connection((host, fronts[name]))
            if tls:
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
                if tls == "cert":
                    ctx.load_cert_chain(os.path.join(d, "cli.crt"), os.path.join(d, "cli.key"))
                    ctx.set_alpn_protocols(["imap"])
                    sni = "mail.example.com"
                else:
                    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
                    sni = "imap.example.org"
                sock = ctx.wrap_socket(sock, server_hostname=sni)
            sock.sendall(b"HELLO\n")
            time.sleep(0.3)
            sock.close()
        time.sleep(1)
    finally:
        haproxy.terminate()
        haproxy.wait()
    for name, conns in captured.items():
        for data in conns[:2]:
            literal = "".join("\\x%02x" % b for b in data)
            print(f"// {name}: {len(data)} bytes\n\"{literal}\"")
    return 0 if all(captured.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
