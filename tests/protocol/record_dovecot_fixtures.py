#!/usr/bin/python3
"""Records what a real Dovecot 2.3 sends for a set of awkward messages.

The POP3 gateway (protocol/pop3_gateway.h) must answer RETR, TOP, LIST, UIDL
and STAT byte for byte like Dovecot's own POP3 server. This script starts a
private Dovecot (deploy/testbed.py), fills a Maildir with messages that hit the
edge cases (lines starting with ".", a body of only ".", 8-bit text, an empty
body, no final newline, a very long line, bare CR and bare LF), then records

  - over IMAP: SELECT INBOX, FETCH 1:* (UID RFC822.SIZE), and for each message
    UID FETCH BODY.PEEK[], BODY.PEEK[HEADER], BODY.PEEK[TEXT] (the literals);
  - over POP3: STAT, LIST, UIDL, LIST n, UIDL n, RETR n, TOP n k;

and writes them as C++ string literals to tests/protocol/dovecot_fixtures.inc,
which tests/protocol/pop3_gateway_test.cc includes: the test feeds the IMAP
side to the translator and compares its output with the POP3 side.

Run as root (Dovecot needs it) from the top of the repository:
    python3 tests/protocol/record_dovecot_fixtures.py
"""

import os
import re
import socket
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "deploy"))
import testbed  # noqa: E402

HEAD = ("From: <ana@example.org>\n"
        "To: gw <gw@example.test>\n"
        "Subject: {subject}\n"
        "Date: Tue, 14 Nov 2023 22:13:20 +0000\n"
        "Message-ID: <{subject}@fixture.example>\n")

# (name, raw bytes of the Maildir file). LF line ends unless the case is about CR.
MESSAGES = [
    ("dots", (HEAD.format(subject="dots") + "\n"
              ".leading dot\n..two dots\n.\n...\nplain line\n. space after dot\n").encode()),
    ("only-dot-body", (HEAD.format(subject="only-dot-body") + "\n.").encode()),
    ("eight-bit", (HEAD.format(subject="eight-bit") + "\n").encode()
     + "Grüße aus Köln\n".encode("utf-8") + b"\xe9\xff raw latin-1 bytes\n\x80\n"),
    ("empty-body", (HEAD.format(subject="empty-body") + "\n").encode()),
    ("no-final-newline", (HEAD.format(subject="no-final-newline") + "\n"
                          "line one\nline two").encode()),
    ("long-line", (HEAD.format(subject="long-line") + "\n"
                   + "x" * 20000 + "\n.end\n").encode()),
    ("bare-cr", (HEAD.format(subject="bare-cr").replace("\n", "\r\n") + "\r\n"
                 "a\rb\r\n\r\n.x\rc\r\n\r.dot after cr\r\ntail\r").encode()),
    ("mixed-lf-crlf", (HEAD.format(subject="mixed-lf-crlf") + "\n"
                       "l1\r\nl2\nl3\r\n\n.l5\r\n").encode()),
    ("dot-first", (".hidden: 1\n" + HEAD.format(subject="dot-first") + "\nbody\n").encode()),
    ("headers-only", (HEAD.format(subject="headers-only")).encode()),
    ("blank-first", b"\nbody right after an empty header\n.\nend\n"),
    ("trailing-blank-lines", (HEAD.format(subject="trailing-blank-lines") + "\n"
                              "text\n\n\n").encode()),
]
TOP_LINES = [0, 1, 2, 3, 10]


def write_message(dovecot, index, data):
    # No S=/W= in the name: Dovecot computes the sizes itself (testbed's
    # W= assumes LF-only files).
    md = dovecot.maildir("gw")
    name = "%d.F%d.fixture:2," % (1700000000 + index, index)
    path = os.path.join(md, "cur", name)
    with open(path, "wb") as f:
        f.write(data)
    uid, gid = testbed._mail_ids()
    os.chown(path, uid, gid)
    os.chmod(path, 0o600)


class Imap:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.buf = b""
        self.n = 0
        self.line()  # greeting

    def fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise EOFError
        self.buf += data

    def line(self):
        while b"\r\n" not in self.buf:
            self.fill()
        i = self.buf.index(b"\r\n") + 2
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def exact(self, n):
        while len(self.buf) < n:
            self.fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def command(self, text):
        """Returns (raw untagged bytes, raw tagged line without the tag)."""
        self.n += 1
        tag = b"r%d" % self.n
        self.sock.sendall(tag + b" " + text.encode() + b"\r\n")
        raw = b""
        while True:
            ln = self.line()
            if ln.startswith(tag + b" "):
                return raw, ln[len(tag) + 1:]
            raw += ln
            m = re.search(rb"\{(\d+)\}\r\n$", ln)
            while m:
                raw += self.exact(int(m.group(1)))
                ln = self.line()
                raw += ln
                m = re.search(rb"\{(\d+)\}\r\n$", ln)


def literal_of(raw):
    m = re.search(rb"\{(\d+)\}\r\n", raw)
    if not m:
        q = re.search(rb'(BODY\[[A-Z]*\]) (NIL|"")', raw)
        if q:
            return b""
        raise ValueError("no literal in %r" % raw[:200])
    n = int(m.group(1))
    return raw[m.end():m.end() + n]


class Pop3:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.settimeout(10)
        self.buf = b""
        self.greeting = self.until(lambda b: b.endswith(b"\r\n"))

    def until(self, done):
        while not done(self.buf):
            data = self.sock.recv(65536)
            if not data:
                raise EOFError
            self.buf += data
        out, self.buf = self.buf, b""
        return out

    def line_command(self, text):
        self.sock.sendall(text.encode() + b"\r\n")
        return self.until(lambda b: b.endswith(b"\r\n"))

    def command(self, text):
        # A NOOP behind the command marks where its answer ends, whatever the
        # answer holds (a body that was not dot-stuffed would fool a reader
        # looking for "\r\n.\r\n").
        self.sock.sendall(text.encode() + b"\r\nNOOP\r\n")
        out = self.until(lambda b: b.endswith(b"+OK\r\n") and len(b) > 5)
        assert out.endswith(b"+OK\r\n")
        return out[:-5]


def c_literal(data):
    """A C++ string literal (several adjacent pieces) holding exactly `data`."""
    pieces = []
    cur = ""
    for i, b in enumerate(data):
        ch = chr(b)
        if ch == "\\":
            cur += "\\\\"
        elif ch == '"':
            cur += '\\"'
        elif ch == "\r":
            cur += "\\r"
        elif ch == "\n":
            cur += "\\n"
        elif 0x20 <= b < 0x7f and ch != "?":
            cur += ch
        else:
            # A hex escape would swallow following hex digits: end the piece.
            cur += "\\x%02x" % b
            pieces.append(cur)
            cur = ""
            continue
        if ch == "\n" or len(cur) > 90:
            pieces.append(cur)
            cur = ""
    pieces.append(cur)
    pieces = [p for p in pieces if p] or [""]
    return "absl::string_view(" + "\n    ".join('"%s"' % p for p in pieces) + \
        ", %d)" % len(data)


def main():
    work = tempfile.mkdtemp(prefix="postern-fixtures-")
    dovecot = testbed.Dovecot(work, users=("gw",), start=False)
    md = dovecot.maildir("gw")
    for sub in ("cur", "new"):
        for name in os.listdir(os.path.join(md, sub)):
            os.unlink(os.path.join(md, sub, name))
    for i, (_, data) in enumerate(MESSAGES):
        write_message(dovecot, i + 1, data)
    dovecot.start()
    try:
        imap = Imap(dovecot.imap_port)
        imap.command("LOGIN gw demo")
        select = imap.command("SELECT INBOX")
        sizes = imap.command("FETCH 1:* (UID RFC822.SIZE)")
        uids = [int(u) for u in re.findall(rb"UID (\d+)", sizes[0])]
        msgs = []
        for uid, (name, _) in zip(uids, MESSAGES):
            body = literal_of(imap.command("UID FETCH %d (BODY.PEEK[])" % uid)[0])
            header = literal_of(imap.command("UID FETCH %d (BODY.PEEK[HEADER])" % uid)[0])
            text = literal_of(imap.command("UID FETCH %d (BODY.PEEK[TEXT])" % uid)[0])
            msgs.append((name, uid, body, header, text))
        imap.command("LOGOUT")

        pop = Pop3(dovecot.pop3_port)
        pop.line_command("USER gw")
        logged_in = pop.line_command("PASS demo")
        capa = pop.command("CAPA")
        stat = pop.command("STAT")
        listing = pop.command("LIST")
        uidl = pop.command("UIDL")
        answers = []
        for n in range(1, len(MESSAGES) + 1):
            a = {"list": pop.command("LIST %d" % n), "uidl": pop.command("UIDL %d" % n),
                 "retr": pop.command("RETR %d" % n),
                 "top": [(k, pop.command("TOP %d %d" % (n, k))) for k in TOP_LINES]}
            answers.append(a)
        misc = [(c, pop.command(c)) for c in (
            "LIST 0", "LIST 99", "RETR 99", "TOP 1", "TOP 1 x", "RETR +1", "RETR 1x",
            "DELE 1", "DELE 1", "RETR 1", "LIST 1", "UIDL 1", "TOP 1 0", "STAT", "RSET",
            "NOOP", "FOO", "USER x", "PASS x", "AUTH PLAIN", "STLS", "APOP a b")]
        quit_answer = pop.line_command("QUIT")
    finally:
        dovecot.stop()

    out = ["// Generated by tests/protocol/record_dovecot_fixtures.py from a real",
           "// Dovecot " + os.popen("dovecot --version").read().strip() +
           " (pop3_uidl_format %08Xu%08Xv). Do not edit.", "",
           "// IMAP, with the tagged line's tag removed.",
           "inline constexpr absl::string_view kDovecotSelectUntagged = " +
           c_literal(select[0]) + ";",
           "inline constexpr absl::string_view kDovecotSelectTagged = " +
           c_literal(select[1]) + ";",
           "inline constexpr absl::string_view kDovecotFetchSizesUntagged = " +
           c_literal(sizes[0]) + ";",
           "", "// POP3 answers, exactly as sent.",
           "inline constexpr absl::string_view kDovecotPop3Greeting = " +
           c_literal(pop.greeting) + ";",
           "inline constexpr absl::string_view kDovecotPop3LoggedIn = " +
           c_literal(logged_in) + ";",
           "inline constexpr absl::string_view kDovecotCapa = " + c_literal(capa) + ";",
           "inline constexpr absl::string_view kDovecotStat = " + c_literal(stat) + ";",
           "inline constexpr absl::string_view kDovecotList = " + c_literal(listing) + ";",
           "inline constexpr absl::string_view kDovecotUidl = " + c_literal(uidl) + ";",
           "inline constexpr absl::string_view kDovecotQuit = " + c_literal(quit_answer) + ";",
           "", "struct DovecotTop {", "  int lines;", "  absl::string_view answer;", "};",
           "struct DovecotMessage {", "  absl::string_view name;", "  uint32_t uid;",
           "  absl::string_view body;    // BODY[] literal",
           "  absl::string_view header;  // BODY[HEADER] literal",
           "  absl::string_view text;    // BODY[TEXT] literal",
           "  absl::string_view list;    // LIST n", "  absl::string_view uidl;    // UIDL n",
           "  absl::string_view retr;    // RETR n",
           "  DovecotTop top[%d];        // TOP n k" % len(TOP_LINES), "};", "",
           "inline const DovecotMessage kDovecotMessages[] = {"]
    for (name, uid, body, header, text), a in zip(msgs, answers):
        out.append("    {\"%s\", %d," % (name, uid))
        for v in (body, header, text, a["list"], a["uidl"], a["retr"]):
            out.append("     " + c_literal(v) + ",")
        out.append("     {" + ",\n      ".join("{%d, %s}" % (k, c_literal(v))
                                             for k, v in a["top"]) + "}},")
    out.append("};")
    out.append("")
    out.append("// Other commands in the same session, in this order (DELE 1 and RSET included).")
    out.append("struct DovecotExchange {")
    out.append("  absl::string_view command;")
    out.append("  absl::string_view answer;")
    out.append("};")
    out.append("inline const DovecotExchange kDovecotMisc[] = {")
    for c, v in misc:
        out.append("    {%s, %s}," % (c_literal(c.encode()), c_literal(v)))
    out.append("};")
    if os.environ.get("FIXTURES_PICKLE"):  # for a look from Python
        import pickle
        with open(os.environ["FIXTURES_PICKLE"], "wb") as f:
            pickle.dump({"select": select, "sizes": sizes, "msgs": msgs, "answers": answers,
                         "misc": misc, "stat": stat, "list": listing, "uidl": uidl}, f)
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "dovecot_fixtures.inc")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")
    print("wrote", path)


if __name__ == "__main__":
    main()
