"""postern links BoringSSL statically: no OpenSSL shared library may be loaded
into it (libcrypt.so, the password hashing library, is fine), and it links
jemalloc."""

import os
import re
import shutil
import unittest

import harness

# libssl.so.3, libcrypto.so.3, libssl.so.1.1 ... but not libcrypt.so.1.
OPENSSL_RE = re.compile(r"^\s*(libssl\.so[.\d]*|libcrypto\.so[.\d]*)\s", re.M)


def ldd(path):
    r = harness.run(["ldd", path], timeout=30)
    if r.returncode != 0:
        raise AssertionError("ldd %s failed: %s" % (path, r.stderr.decode(errors="replace")))
    return r.stdout.decode()


def openssl_libs(ldd_text):
    return OPENSSL_RE.findall(ldd_text)


class LddSelfCheck(unittest.TestCase):
    """The detector itself: it must find OpenSSL where it is, and only there."""

    def test_finds_openssl_in_curl(self):
        curl = shutil.which("curl")
        self.assertIsNotNone(curl)
        self.assertTrue(openssl_libs(ldd(curl)), "curl links OpenSSL; the detector missed it")

    def test_libcrypt_is_not_openssl(self):
        text = ("\tlibcrypt.so.1 => /lib/x86_64-linux-gnu/libcrypt.so.1 (0x00007f)\n"
                "\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f)\n")
        self.assertEqual(openssl_libs(text), [])
        self.assertEqual(openssl_libs("\tlibcrypto.so.3 => /x/libcrypto.so.3 (0x1)\n"),
                         ["libcrypto.so.3"])


class PosternLinkage(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.binary = harness.postern_binary()
        cls.text = ldd(cls.binary)

    def test_no_openssl_loaded(self):
        self.assertEqual(openssl_libs(self.text), [],
                         "%s loads OpenSSL:\n%s" % (self.binary, self.text))

    @unittest.skipIf(os.environ.get("POSTERN_SANITIZED") == "1",
                     "ASan builds leave jemalloc out: its allocator and ASan's clash")
    def test_jemalloc_linked(self):
        self.assertRegex(self.text, r"libjemalloc\.so", "jemalloc not linked:\n" + self.text)

    def test_binary_is_executable(self):
        self.assertTrue(os.access(self.binary, os.X_OK))


if __name__ == "__main__":
    unittest.main()
