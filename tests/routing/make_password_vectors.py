#!/usr/bin/env python3
"""Writes tests/routing/testdata/dovecot_password_vectors.tsv.

Every hash comes from Dovecot's own `doveadm pw -s SCHEME -p PASSWORD`, or is
made by hand (an empty salt, a one-byte salt, a label that does not match the
hash) where doveadm cannot produce the case. Every verdict is Dovecot's: each
(password, hash) pair is checked with `doveadm pw -t HASH -p PASSWORD` and
recorded as match, mismatch or error. routing_test then expects
VerifyPassword to agree with Dovecot on every row (password_scheme_test.cc).

Salts are random, so running this again rewrites every hash; the committed
file is the test's input. Run with Dovecot 2.3 installed:
    tests/routing/make_password_vectors.py > tests/routing/testdata/dovecot_password_vectors.tsv
"""

import base64
import hashlib
import subprocess
import sys
import warnings

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import crypt  # libxcrypt, for the hand-made crypt strings

PASSWORDS = [
    "s3cret",
    "correct horse battery staple " * 4 + "and then some more, past bcrypt's 72 bytes",
    "pässwörd-日本語-🔑",
    "a b:c{d}$e\\f'g\"h",
    "x",
]

SCHEMES = [
    "SHA512-CRYPT", "SHA256-CRYPT", "BLF-CRYPT", "MD5-CRYPT", "CRYPT", "DES-CRYPT",
    "ARGON2I", "ARGON2ID",
    "SSHA256", "SSHA512", "SSHA256.HEX", "SSHA512.HEX", "SSHA256.B64", "SSHA512.BASE64",
    "SHA256", "SHA512", "SHA256.HEX", "SHA512.hex", "SHA512.b64",
    "PLAIN", "CLEAR", "PLAIN.HEX", "CLEAR.B64",
]

# Fewer passwords for the expensive schemes (doveadm's defaults: 32 MiB and
# 64 MiB of memory per check), so that routing_test stays quick.
ARGON2_PASSWORDS = PASSWORDS[:3]

ROUNDS = [("SHA512-CRYPT", 10000), ("SHA256-CRYPT", 1000), ("BLF-CRYPT", 4), ("ARGON2I", 3)]


def doveadm_hash(scheme, password, rounds=None):
    cmd = ["doveadm", "pw", "-s", scheme, "-p", password]
    if rounds is not None:
        cmd[2:2] = ["-r", str(rounds)]
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip()


def dovecot_verdict(stored, password):
    r = subprocess.run(["doveadm", "pw", "-t", stored, "-p", password],
                       capture_output=True, text=True)
    if r.returncode == 0 and "(verified)" in r.stdout:
        return "match", ""
    if "Password mismatch" in r.stderr:
        return "mismatch", ""
    return "error", r.stderr.strip().replace("\t", " ").replace("Fatal: ", "")


def wrong(password):
    # Another first character: never the same password, even for DES (8
    # characters) or bcrypt (72 bytes).
    return ("y" if password[0] != "y" else "z") + password[1:]


def row(out, stored, password, note):
    verdict, why = dovecot_verdict(stored, password)
    note = note + (" (dovecot: " + why + ")" if why else "")
    out.write("\t".join([verdict, password.encode().hex(), stored, note]) + "\n")


def b64(b):
    return base64.b64encode(b).decode()


def main():
    out = sys.stdout
    version = subprocess.run(["dovecot", "--version"], capture_output=True, text=True).stdout.strip()
    out.write("# Made by tests/routing/make_password_vectors.py with Dovecot %s.\n" % version)
    out.write("# verdict <TAB> password as hex of its UTF-8 <TAB> stored field <TAB> note\n")
    out.write("# verdict: Dovecot's answer to `doveadm pw -t STORED -p PASSWORD`.\n")

    for scheme in SCHEMES:
        passwords = ARGON2_PASSWORDS if scheme.startswith("ARGON2") else PASSWORDS
        for i, password in enumerate(passwords):
            stored = doveadm_hash(scheme, password)
            row(out, stored, password, "doveadm pw -s %s, password %d" % (scheme, i))
            row(out, stored, wrong(password), "doveadm pw -s %s, password %d, wrong" % (scheme, i))
    for scheme, rounds in ROUNDS:
        stored = doveadm_hash(scheme, PASSWORDS[0], rounds)
        row(out, stored, PASSWORDS[0], "doveadm pw -s %s -r %d" % (scheme, rounds))
        row(out, stored, wrong(PASSWORDS[0]), "doveadm pw -s %s -r %d, wrong" % (scheme, rounds))

    pw = PASSWORDS[0]
    pwb = pw.encode()
    sha512_crypt = doveadm_hash("SHA512-CRYPT", pw)
    argon2id = doveadm_hash("ARGON2ID", pw)
    hand = [
        # Scheme names and encoding suffixes are case-insensitive.
        ("{sha512-crypt}" + sha512_crypt.split("}", 1)[1], pw, "lower-case scheme name"),
        ("{Ssha256.hex}" + doveadm_hash("SSHA256.HEX", pw).split("}", 1)[1].upper(), pw,
         "mixed-case scheme, upper-case hex digits"),
        # Empty salts: libxcrypt makes them, Dovecot verifies them.
        ("{SHA512-CRYPT}" + crypt.crypt(pw, "$6$"), pw, "SHA512-CRYPT, empty salt"),
        ("{SHA256-CRYPT}" + crypt.crypt(pw, "$5$"), pw, "SHA256-CRYPT, empty salt"),
        ("{MD5-CRYPT}" + crypt.crypt(pw, "$1$"), pw, "MD5-CRYPT, empty salt"),
        ("{SHA512-CRYPT}" + crypt.crypt(pw, "$6$rounds=1000$abc"), pw, "SHA512-CRYPT, rounds=1000, short salt"),
        # The CRYPT label takes any crypt method; so do the others but BLF-CRYPT.
        ("{CRYPT}" + crypt.crypt(pw, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16)), pw, "CRYPT with $2b$"),
        ("{CRYPT}" + sha512_crypt.split("}", 1)[1], pw, "CRYPT label, SHA512-CRYPT hash"),
        ("{SHA256-CRYPT}" + sha512_crypt.split("}", 1)[1], pw, "SHA256-CRYPT label, SHA512-CRYPT hash"),
        ("{BLF-CRYPT}" + sha512_crypt.split("}", 1)[1], pw, "BLF-CRYPT label, SHA512-CRYPT hash"),
        ("{CRYPT}" + crypt.crypt(pw, "ab"), pw, "CRYPT with a DES hash"),
        # Salted digests with salts doveadm does not make (it uses 4 bytes).
        ("{SSHA256}" + b64(hashlib.sha256(pwb + b"\x00").digest() + b"\x00"), pw, "SSHA256, 1-byte NUL salt"),
        ("{SSHA512}" + b64(hashlib.sha512(pwb + bytes(range(64))).digest() + bytes(range(64))), pw,
         "SSHA512, 64-byte salt"),
        ("{SSHA256}" + b64(hashlib.sha256(pwb).digest()), pw, "SSHA256, empty salt"),
        ("{SSHA512.HEX}" + hashlib.sha512(pwb).hexdigest(), pw, "SSHA512.HEX, empty salt"),
        # Unsalted digests: hex is guessed from the length when no suffix says.
        ("{SHA256}" + hashlib.sha256(pwb).hexdigest(), pw, "SHA256, hex without suffix"),
        ("{SHA512}" + hashlib.sha512(pwb).hexdigest().upper(), pw, "SHA512, upper-case hex without suffix"),
        ("{SHA256}" + b64(hashlib.sha256(pwb).digest()).rstrip("="), pw, "SHA256, base64 without padding"),
        ("{SHA256}" + b64(hashlib.sha256(pwb).digest()[:31]), pw, "SHA256, 31 bytes"),
        ("{SHA256.HEX}" + b64(hashlib.sha256(pwb).digest()), pw, "SHA256.HEX holding base64"),
        ("{SHA256.XYZ}" + b64(hashlib.sha256(pwb).digest()), pw, "unknown encoding suffix"),
        ("{PLAIN.B64}" + b64(pwb), pw, "PLAIN.B64"),
        ("{CLEAR.hex}" + pwb.hex().upper(), pw, "CLEAR.hex, upper-case digits"),
        ("{CLEARTEXT}" + pw, pw, "CLEARTEXT alias"),
        ("{PLAIN}" + pw + " ", pw, "PLAIN with a trailing space"),
        # The argon2 variant comes from the hash string (libsodium), not the label.
        ("{ARGON2I}" + argon2id.split("}", 1)[1], pw, "ARGON2I label, argon2id hash"),
        ("{ARGON2ID}" + argon2id.split("}", 1)[1][:-4], pw, "argon2id hash cut short"),
        ("{FOO}bar", pw, "unknown scheme"),
    ]
    for stored, password, note in hand:
        row(out, stored, password, "hand-made: " + note)
        row(out, stored, wrong(password), "hand-made: " + note + ", wrong")


if __name__ == "__main__":
    main()
