"""Every configuration deploy/ ships is accepted by the real binary, and
every postern flag deploy/ uses exists.

- Every YAML file under deploy/ parses (all documents).
- Every Postern config under deploy/ (postern.example.yaml, the container
  image's, samples/, the postern.yaml of the Kubernetes ConfigMap) passes
  `postern --check-config`, with the files it names made as dummies
  (shipped.py). Issue 11 keys this binary does not know yet are reported,
  removed, and the rest checked (shipped.PENDING_KEYS).
- test_pending_keys: which of those keys this binary rejects, each probed
  alone. A skip with the list while some are missing (the integrator's
  to-do), a failure with POSTERN_REQUIRE_ALL_KEYS=1.
- The postern command lines of the Containerfile, the Kubernetes Deployment
  and the systemd unit use only flags `postern --help` lists.
"""

import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import unittest

import harness
import shipped

REQUIRE_ALL = os.environ.get("POSTERN_REQUIRE_ALL_KEYS", "1") == "1"


class ShippedYaml(unittest.TestCase):

    def test_every_yaml_under_deploy_parses(self):
        files = shipped.yaml_files()
        self.assertGreaterEqual(len(files), 10, files)
        for path in files:
            with self.subTest(path=os.path.relpath(path, shipped.REPO)):
                docs = shipped.load_all(path)
                self.assertTrue(docs, "no YAML document in %s" % path)

    def test_the_expected_configs_are_found(self):
        labels = {s.label for s in shipped.shipped_configs()}
        for expected in ("deploy/postern.example.yaml", "deploy/container/postern.yaml",
                         "deploy/samples/single-node.yaml", "deploy/samples/fleet.yaml",
                         "deploy/kubernetes/configmap.yaml#postern.yaml"):
            self.assertIn(expected, labels)


class ShippedConfigs(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.binary = harness.postern_binary()
        cls.tmp = tempfile.mkdtemp(prefix="postern-shipped-")

    @classmethod
    def tearDownClass(cls):
        if not harness.KEEP:
            shipped.remove_tree(cls.tmp)

    def test_every_shipped_config_is_accepted(self):
        report = []
        for n, config in enumerate(shipped.shipped_configs()):
            with self.subTest(config=config.label):
                result = shipped.check(self.binary, config, os.path.join(self.tmp, str(n)))
                if result.pending:
                    report.append("  %s: %s" % (config.label,
                                                ", ".join(k for k, _ in result.pending)))
                self.assertTrue(result.ok, result.error)
        if report:
            sys.stderr.write("\nshipped configs: keys this binary does not know yet (removed, "
                             "the rest checked):\n%s\n" % "\n".join(report))

    def test_pending_keys(self):
        rejected = {k: v for k, v in shipped.probe_pending_keys(
            self.binary, os.path.join(self.tmp, "probe")).items() if v is not None}
        if not rejected:
            return
        lines = ["  %s  (%s)" % (k, shipped.short_message(rejected[k]))
                 for k in shipped.PENDING_KEYS if k in rejected]
        message = ("%s rejects %d of the %d issue 11 keys the shipped configs use:\n%s"
                   % (self.binary, len(rejected), len(shipped.PENDING_KEYS), "\n".join(lines)))
        sys.stderr.write("\n" + message + "\n")
        if REQUIRE_ALL:
            self.fail(message)
        self.skipTest(message)


def postern_help(binary):
    r = subprocess.run([binary, "--help"], capture_output=True, text=True, timeout=10)
    return r.stdout + r.stderr


def _is_postern(argv0):
    return os.path.basename(argv0) == "postern"


def command_lines():
    """(where, argv) for every postern invocation in the Containerfile, the
    Kubernetes manifests and the systemd unit."""
    out = []
    # Containerfile: ENTRYPOINT + CMD (JSON form), and RUN lines calling postern.
    with open(os.path.join(shipped.DEPLOY, "Containerfile")) as f:
        text = f.read()
    entry = cmd = None
    for m in re.finditer(r"^(ENTRYPOINT|CMD)\s+(\[.*\])\s*$", text, re.M):
        if m.group(1) == "ENTRYPOINT":
            entry = json.loads(m.group(2))
        else:
            cmd = json.loads(m.group(2))
    if entry:
        out.append(("Containerfile ENTRYPOINT+CMD", entry + (cmd or [])))
    for m in re.finditer(r"(/\S*postern)\s+(--[a-z-]+)", text):
        out.append(("Containerfile", [m.group(1), m.group(2)]))
    # Kubernetes: every container's command + args.
    for path in shipped.yaml_files():
        if os.sep + "kubernetes" + os.sep not in path:
            continue
        for doc in shipped.load_all(path):
            spec = ((doc.get("spec") or {}).get("template") or {}).get("spec") or {}
            for c in spec.get("containers", []) + spec.get("initContainers", []):
                argv = list(c.get("command", [])) + list(c.get("args", []))
                if argv and _is_postern(argv[0]):
                    out.append(("%s container %s" % (os.path.relpath(path, shipped.REPO),
                                                     c["name"]), argv))
    # systemd: Exec* lines.
    unit = os.path.join(shipped.DEPLOY, "systemd", "postern.service")
    with open(unit) as f:
        for line in f:
            m = re.match(r"^(Exec\w+)=[-@:+!]*(.*)$", line.strip())
            if m:
                argv = shlex.split(m.group(2))
                if argv and _is_postern(argv[0]):
                    out.append(("postern.service %s" % m.group(1), argv))
    return out


class CommandLines(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.binary = harness.postern_binary()
        cls.help = postern_help(cls.binary)
        cls.flags = set(re.findall(r"--[a-z][a-z-]*", cls.help))

    def test_help_lists_the_flags(self):
        for flag in ("--config", "--check-config", "--version"):
            self.assertIn(flag, self.flags, self.help)

    def test_every_flag_used_in_deploy_exists(self):
        lines = command_lines()
        wheres = " ".join(w for w, _ in lines)
        for expected in ("Containerfile ENTRYPOINT", "deployment.yaml", "ExecStart"):
            self.assertIn(expected, wheres, lines)
        for where, argv in lines:
            with self.subTest(where=where, argv=argv):
                for arg in argv[1:]:
                    if arg.startswith("-"):
                        self.assertIn(arg, self.flags,
                                      "%s uses %s; postern --help says:\n%s"
                                      % (where, arg, self.help))
                # A flag that takes a file is followed by one.
                for flag in ("--config", "--check-config"):
                    if flag in argv:
                        i = argv.index(flag)
                        self.assertLess(i + 1, len(argv), argv)
                        self.assertTrue(argv[i + 1].startswith("/"), argv)


if __name__ == "__main__":
    unittest.main()
