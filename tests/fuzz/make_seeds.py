#!/usr/bin/env python3
"""Writes the seed corpora of tests/fuzz/corpus/<target>/ (seed-*; files found
by fuzzing, crash-* and others, are kept beside them and never touched).

Each target's input starts with a small header of choices (limits, slab
sizes, split seeds: see the comment at the top of <target>_fuzz.cc); the seeds
are realistic sessions and lines behind such headers. The TLS ClientHellos
come from Python's ssl module (OpenSSL) over memory BIOs, so they differ from
run to run (random, key shares); everything else is deterministic.

Run from anywhere: python3 tests/fuzz/make_seeds.py
"""

import os
import random
import ssl
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")
ROOT = os.path.dirname(os.path.dirname(HERE))


def write(target, name, data):
    if isinstance(data, str):
        data = data.encode("latin-1")
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


def u16(v):
    return struct.pack(">H", v)


def u32(v):
    return struct.pack(">I", v)


IMAP_SESSIONS = {
    "login-quoted": 'a1 CAPABILITY\r\na2 LOGIN "alice" "pa ss\\"word"\r\na3 LOGOUT\r\n',
    "login-atoms": "a1 LOGIN alice secret\r\n",
    "login-literal": "a1 LOGIN {5}\r\nalice {6}\r\nsecret\r\n",
    "login-literal-plus": "a1 LOGIN {5+}\r\nalice {6+}\r\nsecret\r\n",
    "authenticate-plain-ir": "a1 AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA==\r\n",
    "authenticate-login": "a1 AUTHENTICATE LOGIN\r\nYWxpY2U=\r\nc2VjcmV0\r\n",
    "id-list": 'a1 ID ("name" "Thunderbird" "version" "115.0" "os" NIL)\r\na2 NOOP\r\n',
    "nested-lists": "a1 X (a (b (c (d (e (f (g (h (i)))))))))\r\n",
    "starttls-pipelined": "a1 STARTTLS\r\na2 LOGIN alice secret\r\n",
    "fetch": "a1 UID FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (FROM SUBJECT)])\r\n",
    "bad-then-good": "a1 LOGIN (x\r\n\r\n* NOOP\r\na2 NOOP\r\nbad{3+}\r\nabc\r\na3 NOOP\r\n",
    "nul": "a1 NOOP\r\na2 LOG\x00IN\r\n",
    "big-literal-plus": "a1 APPEND INBOX {99999999999+}\r\nabc\r\n",
    "big-literal-sync": "a1 APPEND INBOX {70000}\r\na2 NOOP\r\n",
    "bare-lf-and-cr": "a1 NOOP\na2 NOOP\r\ra3 NOOP\r\n",
    "escapes": 'a1 LOGIN "a\\\\b" "\\q"\r\na2 LOGIN "x\r\n',
    "search-charset": "a1 SEARCH CHARSET UTF-8 TEXT {4+}\r\n\xc3\xa9t\xc3\r\n",
    "list": 'a1 LIST "" "%"\r\na2 LIST () "" *\r\n',
}


def imap_command_parser():
    for name, session in IMAP_SESSIONS.items():
        # Default limits (0xffff chooses them), split seed, pieces of 1..8 bytes.
        write("imap_command_parser", name,
              u16(0xffff) + u16(0xffff) + bytes([10, 0xff]) + u32(7) + bytes([7]) + session.encode("latin-1"))
    # Small limits: 40-byte lines, 8-byte literals, 2 errors, 3 arguments.
    for name in ("login-literal", "id-list", "bad-then-good", "nested-lists"):
        write("imap_command_parser", name + "-small-limits",
              u16(40) + u16(8) + bytes([2, 3]) + u32(99) + bytes([3]) + IMAP_SESSIONS[name].encode("latin-1"))


def line_splitter():
    texts = {
        "imap-session": "* OK [CAPABILITY IMAP4rev1 STARTTLS] ready\r\na1 OK done\r\n\r\n",
        "pop3-session": "+OK ready\r\nUSER alice\r\nPASS secret\r\nSTAT\r\nQUIT\r\n",
        "bare-lf": "one\ntwo\n\nthree\r\n",
        "cr-only": "a\rb\r\r\n\r",
        "overlong": "x" * 70 + "\r\nshort\r\n" + "y" * 200 + "\nz\n",
        "unterminated": "no end in sight " * 5,
        "exact-fit": "abcdefgh\r\nabcdefghi\r\nabcdefg\n",
    }
    for name, text in texts.items():
        for slab, max_line, piece in ((0, 10, 0), (7, 64, 3), (230, 8192, 255)):
            write("line_splitter", f"{name}-slab{slab}-max{max_line}",
                  bytes([slab]) + u16(max_line) + u32(12345) + bytes([piece]) + text.encode("latin-1"))


def imap_response():
    lines = [
        "* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ STARTTLS AUTH=PLAIN] Dovecot ready.",
        "a1 OK [CAPABILITY IMAP4rev1 SASL-IR ID ENABLE IDLE SORT THREAD=REFERENCES MOVE] Logged in",
        "a2 NO [AUTHENTICATIONFAILED] Authentication failed.",
        "a3 BAD Error in IMAP command: Unknown command.",
        "* CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED",
        '* ID ("name" "Dovecot")',
        "* BYE Server shutting down.",
        "* PREAUTH [CAPABILITY IMAP4rev1] hi",
        "* 3 EXISTS",
        "+ ",
        "+",
        "+ VXNlcm5hbWU6",
        "+ [ALERT] go on",
        "a4 ok [unterminated code",
        "+OK Dovecot ready.",
        "+OK",
        "-ERR [AUTH] Authentication failed.",
        "-ERR [SYS/TEMP] Try again later",
        "-ERR",
        "+OKay",
        "CAPABILITY IMAP4rev1 AUTH=PLAIN  AUTH=LOGIN ",
    ]
    for i, line in enumerate(lines):
        write("imap_response", f"{i:02d}", line)


def pop3_command():
    sessions = {
        "user-pass": ("USER alice\r\nPASS secret with spaces\r\nSTAT\r\nQUIT\r\n", 0),
        "capa-stls": ("CAPA\r\nSTLS\r\nNOOP\r\n", 0),
        "auth-plain-ir": ("AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n", 0),
        # AUTH LOGIN: the two answers are raw lines (events 1 and 2).
        "auth-login": ("AUTH LOGIN\r\nYWxpY2U=\r\nc2VjcmV0\r\nLIST\r\n", 0b110),
        "auth-cancel": ("AUTH PLAIN\r\n*\r\nQUIT\r\n", 0b10),
        "top-retr": ("TOP 1 10\r\nRETR 1\r\nUIDL\r\nAPOP alice c4c9334bac560ecc979e58001b3e22fb\r\n", 0),
        "errors": ("XY\r\nTOOLONGCMD\r\nUSER " + "a" * 41 + "\r\nA B C D E F G H I J\r\nQUIT\r\n", 0),
        "nul": ("USER al\x00ice\r\nQUIT\r\n", 0),
        "bare-lf": ("USER alice\nPASS x\n", 0),
        "overlong": ("NOOP " + "x" * 1200 + "\r\nQUIT\r\n", 0),
        "pass-empty": ("PASS\r\nPASS \r\nPASS  two  spaces \r\n", 0),
        "utf8-user": ("USER j\xc3\xb6rg\r\n", 0),
    }
    for name, (text, choices) in sessions.items():
        for slab, budget in ((230, 10), (0, 1)):
            header = (bytes([slab]) + u16(1024) + u16(1999) + bytes([budget]) + struct.pack(">Q", choices)
                      + bytes([0]) + u32(4242) + bytes([5]))
            write("pop3_command", f"{name}-slab{slab}", header + text.encode("latin-1"))


def sasl():
    seeds = {
        "plain": "AGFsaWNlAHNlY3JldA==",
        "plain-authzid": "YWRtaW4AYWxpY2UAc2VjcmV0",
        "plain-empty-user": "AABzZWNyZXQ=",
        "plain-missing-nul": "YWxpY2U=",
        "noncanonical": "YWxpY2V=",
        "bad-char": "YW*pY2U=",
        "padding-inside": "YQ==YQ==",
        "empty": "",
        "equals": "=",
        "login-lines": "YWxpY2U=\nc2VjcmV0\nZXh0cmE=",
        # First byte odd: the LOGIN steps take these lines base64-encoded.
        "login-raw": "alice\nsecret\nmore",
        "raw-message": "\x00alice\x00secret",
        "raw-message-authzid": "admin\x00alice\x00s\xe9cret",
        "raw-message-3nul": "\x00a\x00b\x00c",
    }
    for name, text in seeds.items():
        write("sasl", name, text)


def config():
    base = """listeners:
  - { name: imap, protocol: imap, address: "127.0.0.1:1143", tls: none, allow_plaintext_auth: true }
  - { protocol: pop3, address: "[::1]:1110", tls: none, backlog: 16 }
backends:
  - { name: store1, address: 127.0.0.1, imap_port: 10143, pop3_port: 10110 }
  - { name: store2, address: "::1", imap_login: plain, pop3_login: plain }
routing:
  default_backend: store2
  users: { alice: store1, "bob@example.com": store2 }
limits:
  max_line: 8k
  max_prelogin_literal: 64k
  error_budget: 10
  relay_high_watermark: 1m
  relay_low_watermark: 64k
  max_auth_attempts: 3
timeouts: { login: 60s, backend_connect: 500ms, backend_login: 15, imap_idle: 31m, pop3_idle: 1h, shutdown_grace: 10s }
log: { level: debug }
workers: 2
hostname: mail.example.com
"""
    write("config", "full-plaintext", base)
    with open(os.path.join(ROOT, "deploy", "postern.example.yaml"), "rb") as f:
        write("config", "example", f.read())
    variants = {
        "minimal": "listeners: [{protocol: imap, address: '127.0.0.1:0', tls: none}]\nbackends: [{name: b, address: 10.0.0.1}]\n",
        "tls-missing-files": "listeners:\n  - {protocol: imap, address: 0.0.0.0:993}\ntls:\n  certificate: cert.pem\n  key: key.pem\nbackends:\n  - {name: b, address: 10.0.0.1}\n",
        "tls-unused": "listeners: [{protocol: pop3, address: '0.0.0.0:110', tls: none}]\ntls: {certificate: /nonexistent/c.pem, key: k.pem, min_version: '1.3', session_tickets: off}\nbackends: [{name: b, address: '[::1]'}]\n",
        "bad-tls-mode": "listeners:\n  - {protocol: imap, address: 0.0.0.0:993, tls: ssl}\nbackends: [{name: b, address: 10.0.0.1}]\n",
        "duplicate-key": "workers: 1\nworkers: 2\n",
        "anchors": "x: &a {protocol: imap, address: '127.0.0.1:1', tls: none}\nlisteners: [*a, *a]\nbackends: [{name: b, address: 10.0.0.1}]\n",
        "self-alias": "listeners: &a [*a]\n",
        "flow-and-tags": "!!map {listeners: !!seq [ {protocol: imap, address: '1.2.3.4:5', tls: none} ], backends: [{name: !!str 1, address: 1.2.3.4}]}\n",
        "syntax-error": "listeners: [\n  - {protocol: imap\n",
        "nested": "routing: " + "[" * 60 + "]" * 60 + "\n",
        "sizes": "limits: {max_line: 1024m, max_prelogin_literal: 0, relay_high_watermark: 1, relay_low_watermark: 0}\n",
        "durations": "timeouts: {login: 0, backend_connect: 9223372036854775807ms, imap_idle: 99999999999999999h}\n",
        "block-scalars": "hostname: |\n  multi\n  line\nlisteners: >\n  folded\n",
        "documents": "---\nworkers: 1\n---\nworkers: 2\n...\n",
        "bom-and-tabs": "\ufeffworkers:\t1\n",
    }
    for name, text in variants.items():
        write("config", name, text.encode("utf-8"))


def client_hello(max_version=None, sni="mail.example.com", alpn=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if max_version is not None:
        ctx.maximum_version = max_version
    if alpn:
        ctx.set_alpn_protocols(alpn)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname=sni)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


def tls_engine():
    hellos = {
        "hello-tls13": client_hello(),
        "hello-tls12": client_hello(ssl.TLSVersion.TLSv1_2),
        "hello-no-sni": client_hello(sni=None),
        "hello-alpn": client_hello(alpn=["imap", "pop3"]),
    }
    for name, hello in hellos.items():
        # Raw mode, 16 KiB slabs, whole pieces (max piece 1 + 255 * 4).
        write("tls_engine", name, bytes([0, 200]) + u32(1) + bytes([255]) + hello)
        # Small slabs, small pieces, and garbage after the ClientHello.
        write("tls_engine", name + "-split", bytes([0, 3]) + u32(77) + bytes([2]) + hello + b"\x17\x03\x03\x00\x05hello")
    write("tls_engine", "http", bytes([0, 200]) + u32(1) + bytes([255]) + b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    write("tls_engine", "sslv2", bytes([0, 200]) + u32(1) + bytes([255]) + bytes.fromhex("802b0103010012000000100000"))
    write("tls_engine", "alert", bytes([0, 200]) + u32(1) + bytes([255]) + bytes.fromhex("15030100020228"))

    def op(code, payload=b""):
        return bytes([code, len(payload)]) + payload

    login = b"a1 LOGIN alice secret\r\n"
    programs = {
        # write, deliver in 17-byte pieces, server answers, client closes.
        "records-login": op(0, login) + op(7 * 1 + 1) * 6 + op(4, b"a1 OK Logged in\r\n") + op(6) + op(1),
        "records-big": op(0, b"x" * 255) * 4 + op(1 + 7 * 30) * 8,
        "records-inject": op(0, login) + op(2, bytes.fromhex("1703030010") + b"\x00" * 16) + op(1 + 7 * 36),
        "records-flip": op(0, login) + op(3, b"\x09\x80") + op(1 + 7 * 36),
        "records-server-close": op(5) + op(0, login) + op(1 + 7 * 36) + op(4, b"late"),
        "records-alert": op(2, bytes.fromhex("15030300020100")) + op(0, b"after"),
    }
    for name, program in programs.items():
        write("tls_engine", name + "-tls13", bytes([1, 200]) + program)
        write("tls_engine", name + "-tls12-small-slabs", bytes([3, 5]) + program)


def buffer_diff():
    rng = random.Random(2024)
    for i in range(24):
        slabs = bytes([rng.choice([0, 1, 3, 15, 63, 200, 245]) for _ in range(3)])
        free = bytes([rng.randrange(5) for _ in range(3)])
        program = bytearray()
        for _ in range(rng.randrange(10, 60)):
            op = rng.randrange(16)
            program += bytes([op, rng.randrange(2)])
            if op == 0:
                n = rng.randrange(0, 80)
                program += bytes([n]) + bytes(rng.randrange(32, 127) for _ in range(n))
            elif op in (1, 2, 7, 8):  # Range() operands: 2 bytes each; Find also takes a byte
                program += bytes(rng.randrange(256) for _ in range({1: 2, 2: 2, 7: 3, 8: 4}[op]))
            elif op in (6, 10, 14, 15):
                program += bytes([rng.randrange(256)])
            elif op == 13:
                program += bytes([rng.randrange(256), rng.randrange(256)])
        write("buffer_diff", f"{i:02d}", slabs + free + bytes(program))


def dialogue_header(flags, mechs=0x0F, budget=10, attempts=3, answers=(1, 1, 0, 0, 0, 0, 0, 0),
                    line=0, chunk=7):
    """front_dialogue.h's header: flags, three limits, budgets, mechanisms,
    split seed and largest piece, the answers to the first 8 logins."""
    return (bytes([flags]) + u16(line) + u16(line) + u16(line) + bytes([budget, attempts - 1, mechs])
            + u32(0x12345678) + bytes([chunk - 1]) + bytes(answers))


def b64(s):
    import base64
    return base64.b64encode(s.encode("latin-1")).decode()


def imap_front():
    tls, starttls, plain, trusted, tlsfail, small = 1, 2, 4, 8, 16, 32
    sessions = {
        "capability-logout": (tls, "a CAPABILITY\r\nb NOOP\r\nc LOGOUT\r\n"),
        "login-ok": (tls, "a LOGIN alice demo\r\nb SELECT INBOX\r\n"),
        "login-fail-twice": (tls, "a LOGIN alice x\r\nb LOGIN \"alice\" \"y z\"\r\n"
                                  "c LOGIN alice demo\r\n"),
        "login-literal": (tls, "a LOGIN {5}\r\nalice {4+}\r\ndemo\r\n"),
        "plaintext-refused": (0, "a LOGIN alice demo\r\nb AUTHENTICATE PLAIN\r\nc LOGOUT\r\n"),
        "starttls": (starttls, "a STARTTLS\r\nb LOGIN pipelined before tls\r\n"),
        "starttls-fails": (starttls | tlsfail, "a STARTTLS\r\nb LOGIN alice demo\r\n"),
        "auth-plain-ir": (tls, "a AUTHENTICATE PLAIN " + b64("\0alice\0demo") + "\r\n"),
        "auth-plain-authzid": (tls, "a AUTHENTICATE PLAIN " + b64("bob\0alice\0demo") + "\r\n"),
        "auth-plain-cont": (tls, "a AUTHENTICATE PLAIN\r\n" + b64("\0alice\0demo") + "\r\n"),
        "auth-login": (tls, "a AUTHENTICATE LOGIN\r\n" + b64("alice") + "\r\n" + b64("demo")
                       + "\r\n"),
        "auth-cancel": (tls, "a AUTHENTICATE PLAIN\r\n*\r\nb LOGOUT\r\n"),
        "auth-xoauth2": (tls, "a AUTHENTICATE XOAUTH2 "
                         + b64("user=alice\x01auth=Bearer tok\x01\x01") + "\r\n\r\n"),
        "auth-oauthbearer": (tls, "a AUTHENTICATE OAUTHBEARER "
                             + b64("n,a=alice,\x01auth=Bearer tok\x01\x01") + "\r\n\r\n"),
        "id": (tls, 'a ID ("name" "Thunderbird" "version" "115" "x-session-id" "forged" '
                    '"x-originating-ip" "10.0.0.1")\r\nb LOGIN alice demo\r\n'),
        "id-nil": (tls, "a ID NIL\r\nb ID (\"name\" NIL)\r\n"),
        "id-trusted": (tls | trusted, 'a ID ("x-originating-ip" "192.0.2.7" "x-originating-port"'
                                      ' "5555" "x-proxy-ttl" "4")\r\nb LOGIN alice demo\r\n'),
        "garbage": (tls, "\x16\x03\x01\x00\xff\r\n* BAD\r\n\r\na\r\na SELECT\r\n"),
        "long-line-small": (tls | small, "a LOGIN " + "x" * 300 + " demo\r\nb NOOP\r\n"),
        "error-budget": (tls, "x\r\n" * 14),
    }
    for name, (flags, stream) in sessions.items():
        answers = (1, 2, 3, 0x41, 0x13, 0x22, 0, 0) if "fail" in name else (0x40, 0, 0, 0, 0, 0, 0, 0)
        line = 200 if flags & small else 0
        write("imap_front", name, dialogue_header(flags, answers=answers, line=line) + stream.encode("latin-1"))


def pop3_front():
    tls, starttls, plain, trusted, tlsfail, small = 1, 2, 4, 8, 16, 32
    sessions = {
        "capa-quit": (tls, "CAPA\r\nNOOP\r\nQUIT\r\n"),
        "user-pass": (tls, "USER alice\r\nPASS demo\r\nSTAT\r\n"),
        "user-pass-fail": (tls, "USER alice\r\nPASS x\r\nUSER alice\r\nPASS y\r\n"
                                "USER alice\r\nPASS demo\r\n"),
        "pass-first": (tls, "PASS demo\r\nUSER alice\r\nPASS demo\r\n"),
        "long-user": (tls, "USER " + "a" * 250 + "@example.com\r\nPASS demo\r\n"),
        "plaintext-refused": (0, "USER alice\r\nPASS demo\r\nAUTH PLAIN\r\nQUIT\r\n"),
        "stls": (starttls, "STLS\r\nUSER pipelined\r\n"),
        "stls-fails": (starttls | tlsfail, "STLS\r\nUSER alice\r\nPASS demo\r\n"),
        "auth-plain-ir": (tls, "AUTH PLAIN " + b64("\0alice\0demo") + "\r\n"),
        "auth-plain-cont": (tls, "AUTH PLAIN\r\n" + b64("bob\0alice\0demo") + "\r\n"),
        "auth-login": (tls, "AUTH LOGIN\r\n" + b64("alice") + "\r\n" + b64("demo") + "\r\n"),
        "auth-cancel": (tls, "AUTH PLAIN\r\n*\r\nQUIT\r\n"),
        "auth-list": (tls, "AUTH\r\nAUTH XOAUTH2 " + b64("user=a\x01auth=Bearer t\x01\x01")
                      + "\r\n\r\n"),
        "xclient-trusted": (tls | trusted, "XCLIENT ADDR=192.0.2.7 PORT=5555 TTL=3\r\nUSER a\r\n"
                                           "PASS b\r\n"),
        "xclient-untrusted": (tls, "XCLIENT ADDR=192.0.2.7\r\nQUIT\r\n"),
        "garbage": (tls, "\x00\xff\r\nRETR 1\r\nUSER\r\n\r\nAPOP a b\r\n"),
        "long-line-small": (tls | small, "USER " + "x" * 300 + "\r\nNOOP\r\n"),
        "error-budget": (tls, "BOGUS\r\n" * 14),
    }
    for name, (flags, stream) in sessions.items():
        answers = (1, 2, 3, 0x41, 0x13, 0x22, 0, 0) if "fail" in name else (0, 0, 0, 0, 0, 0, 0, 0)
        line = 200 if flags & small else 0
        write("pop3_front", name, dialogue_header(flags, answers=answers, line=line) + stream.encode("latin-1"))


if __name__ == "__main__":
    line_splitter()
    imap_command_parser()
    imap_response()
    pop3_command()
    sasl()
    config()
    tls_engine()
    buffer_diff()
    imap_front()
    pop3_front()
