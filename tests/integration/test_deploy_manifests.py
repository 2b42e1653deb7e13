"""deploy/'s Kubernetes manifests, systemd unit and Containerfile agree with
each other and with the binary (no cluster, no systemd, no image build
needed: tests/container_test.py builds and runs the image).

- Kubernetes: the pieces fit (selectors, named ports, mounts holding every
  file the ConfigMap's config names, the --config path, the admin port and
  token of the probes and the preStop hook, the grace period against
  timeouts.shutdown_deadline, the restricted security context, PROXY
  protocol on the load balancer exactly when the listeners expect it).
- systemd: `systemd-analyze verify` accepts the unit (with the binary under
  test as ExecStart) without a warning, `systemd-analyze security` rates it,
  and the unit matches deploy/samples/single-node.yaml.
- Containerfile: the runtime packages are exactly those holding the shared
  libraries `ldd postern` lists (less the base image's), the user is
  numeric and not root, the ports, the health check and the entrypoint.
"""

import os
import re
import shutil
import subprocess
import tempfile
import unittest

import yaml

import harness
import shipped

K8S = os.path.join(shipped.DEPLOY, "kubernetes")
UNIT = os.path.join(shipped.DEPLOY, "systemd", "postern.service")
CONTAINERFILE = os.path.join(shipped.DEPLOY, "Containerfile")
# Open endpoints (no token): what the kubelet may probe.
OPEN_PATHS = ("/healthz", "/readyz")


def seconds(duration, default):
    """A Postern duration ("30s", "2m", "500ms", 30) in seconds."""
    if duration is None:
        return default
    m = re.fullmatch(r"(\d+)(ms|s|m|h)?", str(duration).strip())
    if not m:
        raise ValueError("not a duration: %r" % duration)
    n = int(m.group(1))
    return {"ms": n / 1000, "s": n, None: n, "m": n * 60, "h": n * 3600}[m.group(2)]


def port_of(address):
    return int(str(address).rsplit(":", 1)[1])


def cpu(quantity):
    q = str(quantity)
    return int(q[:-1]) / 1000 if q.endswith("m") else float(q)


class Kubernetes(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.docs = []
        for name in sorted(os.listdir(K8S)):
            if name.endswith(".yaml"):
                for d in shipped.load_all(os.path.join(K8S, name)):
                    cls.docs.append((name, d))
        cls.objects = {(d.get("kind"), (d.get("metadata") or {}).get("name")): d
                       for _, d in cls.docs}
        cls.deployment = cls.objects[("Deployment", "postern")]
        cls.pod = cls.deployment["spec"]["template"]["spec"]
        cls.container = cls.pod["containers"][0]
        cm = cls.objects[("ConfigMap", "postern-config")]
        cls.config = yaml.safe_load(cm["data"]["postern.yaml"])
        cls.secrets = {name: d for (kind, name), d in cls.objects.items() if kind == "Secret"}

    def test_every_document_is_a_kubernetes_object(self):
        for name, d in self.docs:
            if name == "kustomization.yaml":
                continue
            with self.subTest(file=name, kind=d.get("kind")):
                self.assertIn("apiVersion", d)
                self.assertIn("kind", d)
                self.assertTrue(d["metadata"]["name"])

    def test_kustomization_lists_the_files_but_not_the_placeholders(self):
        with open(os.path.join(K8S, "kustomization.yaml")) as f:
            k = yaml.safe_load(f)
        for r in k["resources"]:
            self.assertTrue(os.path.exists(os.path.join(K8S, r)), r)
        self.assertNotIn("secrets.yaml", k["resources"])
        listed = set(k["resources"]) | {"kustomization.yaml", "secrets.yaml"}
        self.assertEqual(listed, {n for n in os.listdir(K8S) if n.endswith(".yaml")})

    def test_selectors_match_the_pods(self):
        labels = self.deployment["spec"]["template"]["metadata"]["labels"]
        self.assertEqual(self.deployment["spec"]["selector"]["matchLabels"], labels)
        for kind, name in (("Service", "postern"), ("Service", "postern-admin")):
            self.assertEqual(self.objects[(kind, name)]["spec"]["selector"], labels)
        self.assertEqual(self.objects[("PodDisruptionBudget", "postern")]["spec"]["selector"]
                         ["matchLabels"], labels)
        target = self.objects[("HorizontalPodAutoscaler", "postern")]["spec"]["scaleTargetRef"]
        self.assertEqual((target["kind"], target["name"]), ("Deployment", "postern"))

    def test_hpa_scales_on_cpu_and_the_pdb_keeps_most(self):
        hpa = self.objects[("HorizontalPodAutoscaler", "postern")]["spec"]
        self.assertGreaterEqual(hpa["minReplicas"], 2)
        self.assertEqual([m["resource"]["name"] for m in hpa["metrics"]], ["cpu"])
        self.assertIn("cpu", self.container["resources"]["requests"])  # HPA needs a request
        pdb = self.objects[("PodDisruptionBudget", "postern")]["spec"]
        self.assertEqual(pdb.get("maxUnavailable"), 1)

    def test_container_ports_are_the_listeners_ports(self):
        ports = {p["name"]: p["containerPort"] for p in self.container["ports"]}
        listeners = {l["name"]: port_of(l["address"]) for l in self.config["listeners"]}
        for name, port in listeners.items():
            self.assertEqual(ports.get(name), port, "listener %s" % name)
            self.assertGreaterEqual(port, 1024, "the pod has no capability to bind %d" % port)
        self.assertEqual(ports["admin"], port_of(self.config["admin"]["address"]))
        self.assertTrue(self.config["admin"]["address"].startswith("0.0.0.0:"),
                        "the kubelet probes the pod's address, not its loopback")

    def test_service_maps_the_mail_ports(self):
        svc = self.objects[("Service", "postern")]
        spec = svc["spec"]
        self.assertEqual(spec["type"], "LoadBalancer")
        self.assertEqual(spec["externalTrafficPolicy"], "Local")
        names = {p["name"] for p in self.container["ports"]}
        mapped = {p["port"]: p["targetPort"] for p in spec["ports"]}
        self.assertEqual(mapped, {993: "imaps", 143: "imap", 995: "pop3s", 110: "pop3"})
        for target in mapped.values():
            self.assertIn(target, names)
        admin_svc = self.objects[("Service", "postern-admin")]["spec"]
        self.assertEqual(admin_svc["type"], "ClusterIP")
        self.assertNotIn("admin", {p["targetPort"] for p in spec["ports"]})

    def test_proxy_protocol_on_both_ends(self):
        annotations = self.objects[("Service", "postern")]["metadata"].get("annotations", {})
        lb_sends = any("proxy-protocol" in k or "proxyprotocol" in k for k in annotations)
        for l in self.config["listeners"]:
            with self.subTest(listener=l["name"]):
                self.assertEqual(bool(l.get("proxy_protocol")), lb_sends)
                if lb_sends:
                    self.assertTrue(l.get("trusted_networks"))

    def test_probes_use_open_admin_paths(self):
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            with self.subTest(probe=probe):
                get = self.container[probe]["httpGet"]
                self.assertEqual(get["port"], "admin")
                self.assertIn(get["path"], OPEN_PATHS)
        self.assertEqual(self.container["readinessProbe"]["httpGet"]["path"], "/readyz")
        self.assertEqual(self.container["livenessProbe"]["httpGet"]["path"], "/healthz")

    def test_prestop_drains_and_the_grace_period_covers_it(self):
        argv = self.container["lifecycle"]["preStop"]["exec"]["command"]
        script = " ".join(argv)
        self.assertIn("postern-admin POST /admin/drain", script)
        m = re.search(r"sleep (\d+)", script)
        self.assertIsNotNone(m, script)
        deadline = seconds((self.config.get("timeouts") or {}).get("shutdown_deadline"), 30)
        # The request takes at most POSTERN_ADMIN_TIMEOUT (5 s), then the
        # sleep, then SIGTERM and the shutdown deadline; 5 s more of margin.
        needed = 5 + int(m.group(1)) + deadline
        self.assertGreaterEqual(self.pod["terminationGracePeriodSeconds"], needed + 5)
        # postern-admin is in the image where the hook calls it.
        with open(CONTAINERFILE) as f:
            self.assertIn("/usr/bin/postern-admin", f.read())
        self.assertIn("/usr/bin/postern-admin", script)
        env = {e["name"]: e["value"] for e in self.container["env"]}
        self.assertEqual(env["POSTERN_ADMIN_TOKEN_FILE"], self.config["admin"]["token_file"])
        self.assertEqual(port_of(env["POSTERN_ADMIN_ADDRESS"]),
                         port_of(self.config["admin"]["address"]))

    def test_security_context_is_restricted(self):
        pod = self.pod["securityContext"]
        c = self.container["securityContext"]
        self.assertTrue(pod["runAsNonRoot"])
        self.assertNotEqual(pod["runAsUser"], 0)
        self.assertEqual(pod["seccompProfile"]["type"], "RuntimeDefault")
        self.assertFalse(c["allowPrivilegeEscalation"])
        self.assertTrue(c["readOnlyRootFilesystem"])
        self.assertEqual(c["capabilities"]["drop"], ["ALL"])
        self.assertNotIn("add", c["capabilities"])
        with open(CONTAINERFILE) as f:
            user = re.search(r"^USER\s+(\d+)", f.read(), re.M)
        self.assertIsNotNone(user, "the image's USER must be numeric")
        self.assertEqual(int(user.group(1)), pod["runAsUser"])
        self.assertFalse(self.pod.get("automountServiceAccountToken", True))

    def test_workers_match_the_cpu_limit(self):
        limit = cpu(self.container["resources"]["limits"]["cpu"])
        self.assertEqual(self.config.get("workers"), int(limit),
                         "workers: 0 would start one per core of the node")

    def test_config_path_is_the_configmap_mount(self):
        argv = self.container["command"] + self.container["args"]
        path = argv[argv.index("--config") + 1]
        mounts = {m["mountPath"]: m["name"] for m in self.container["volumeMounts"]}
        volumes = {v["name"]: v for v in self.pod["volumes"]}
        volume = volumes[mounts[os.path.dirname(path)]]
        self.assertEqual(volume["configMap"]["name"], "postern-config")
        self.assertIn(os.path.basename(path),
                      self.objects[("ConfigMap", "postern-config")]["data"])

    def test_every_file_the_config_names_is_mounted(self):
        mounts = {m["mountPath"]: m for m in self.container["volumeMounts"]}
        volumes = {v["name"]: v for v in self.pod["volumes"]}
        files = []
        for kind, value in shipped.referenced_files(self.config):
            files.extend(v for v in (value if kind == "certpair" else (value,)) if v)
        self.assertGreaterEqual(len(files), 4, files)
        for path in files:
            with self.subTest(file=path):
                mount = mounts.get(os.path.dirname(path))
                self.assertIsNotNone(mount, "%s: no volume mounted at %s" % (
                    path, os.path.dirname(path)))
                self.assertTrue(mount.get("readOnly"))
                secret = volumes[mount["name"]].get("secret")
                self.assertIsNotNone(secret, "%s should come from a Secret" % path)
                placeholder = self.secrets.get(secret["secretName"])
                self.assertIsNotNone(placeholder, "no Secret %s in secrets.yaml"
                                     % secret["secretName"])
                keys = set((placeholder.get("stringData") or {}).keys()) | set(
                    (placeholder.get("data") or {}).keys())
                self.assertIn(os.path.basename(path), keys)
                # Readable by the pod's group (fsGroup), not by others.
                self.assertEqual(secret.get("defaultMode"), 0o440)


class Systemd(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        with open(UNIT) as f:
            cls.unit = f.read()
        cls.settings = {}
        for line in cls.unit.splitlines():
            m = re.match(r"^(\w+)=(.*)$", line)
            if m:
                cls.settings.setdefault(m.group(1), []).append(m.group(2))
        with open(os.path.join(shipped.DEPLOY, "samples", "single-node.yaml")) as f:
            cls.sample = yaml.safe_load(f)

    def test_verify(self):
        analyze = shutil.which("systemd-analyze")
        if analyze is None:
            self.skipTest("systemd-analyze is not installed (apt-get install systemd): "
                          "the unit was not verified")
        binary = os.path.abspath(harness.postern_binary())
        with tempfile.TemporaryDirectory() as tmp:
            unit = os.path.join(tmp, "postern.service")
            with open(unit, "w") as f:
                f.write(self.unit.replace("/usr/bin/postern", binary))
            r = subprocess.run([analyze, "verify", unit], capture_output=True, text=True,
                               timeout=60)
            out = (r.stdout + r.stderr).strip()
            self.assertEqual(r.returncode, 0, out)
            # verify only warns about unknown keys and bad values.
            self.assertEqual(out, "", "systemd-analyze verify:\n" + out)
            r = subprocess.run([analyze, "security", "--offline=true", unit],
                               capture_output=True, text=True, timeout=60)
            m = re.search(r"Overall exposure level for postern.service: ([\d.]+)", r.stdout)
            if r.returncode != 0 or m is None:
                self.skipTest("systemd-analyze security --offline is not available here: %s"
                              % (r.stdout + r.stderr).strip()[-200:])
            self.assertLessEqual(float(m.group(1)), 2.0, r.stdout)

    def test_unit_shape(self):
        s = self.settings
        self.assertEqual(s["Type"], ["simple"])
        self.assertEqual(s["ExecStart"], ["/usr/bin/postern --config /etc/postern/postern.yaml"])
        self.assertIn("/bin/kill -HUP $MAINPID", s["ExecReload"])
        self.assertEqual(s["KillSignal"], ["SIGTERM"])
        for key in ("ProtectSystem", "ProtectHome", "PrivateTmp", "NoNewPrivileges",
                    "RestrictAddressFamilies", "SystemCallFilter", "MemoryDenyWriteExecute",
                    "LockPersonality", "CapabilityBoundingSet", "LimitNOFILE"):
            self.assertIn(key, s)
        self.assertEqual(s["ProtectSystem"], ["strict"])

    def test_stop_timeout_covers_the_shutdown_deadline(self):
        deadline = seconds((self.sample.get("timeouts") or {}).get("shutdown_deadline"), 30)
        self.assertGreaterEqual(int(self.settings["TimeoutStopSec"][0]), deadline + 5)

    def test_privilege_model_matches_the_sample(self):
        # systemd gives the unprivileged user CAP_NET_BIND_SERVICE; the
        # config then must not ask Postern to drop privileges itself.
        self.assertEqual(self.settings["User"], ["postern"])
        self.assertEqual(self.settings["AmbientCapabilities"], ["CAP_NET_BIND_SERVICE"])
        self.assertEqual(self.settings["CapabilityBoundingSet"], ["CAP_NET_BIND_SERVICE"])
        self.assertNotIn("user", self.sample)
        self.assertNotIn("group", self.sample)
        low = [l for l in self.sample["listeners"] if port_of(l["address"]) < 1024]
        self.assertTrue(low, "the sample binds no port below 1024: drop the capability")


class Containerfile(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        with open(CONTAINERFILE) as f:
            cls.text = f.read()
        # The runtime stage: everything after the last FROM.
        cls.runtime = cls.text[cls.text.rindex("\nFROM "):]

    def test_runtime_packages_are_what_the_binary_loads(self):
        binary = harness.postern_binary()
        if os.environ.get("POSTERN_SANITIZED") == "1":
            self.skipTest("a sanitizer build leaves jemalloc out and adds its runtimes")
        if shutil.which("dpkg") is None:
            self.skipTest("no dpkg: not a Debian machine")
        ldd = subprocess.run(["ldd", binary], capture_output=True, text=True, timeout=30).stdout
        libs = sorted({os.path.realpath(p) for p in re.findall(r"=> (/\S+)", ldd)})
        # On a merged-/usr system dpkg knows a library by its /lib/... or
        # its /usr/lib/... name, depending on the package: ask for both
        # (dpkg -S exits 1 for the names it does not know).
        def names(p):
            base = re.sub(r"^/usr/lib/", "/lib/", p)
            return [base, "/usr" + base]
        r = subprocess.run(["dpkg", "-S"] + [n for p in libs for n in names(p)],
                           capture_output=True, text=True, timeout=60)
        owners = {}
        for line in r.stdout.splitlines():
            pkg, path = line.split(": ", 1)
            owners[path] = pkg.split(":")[0]
        for lib in libs:
            self.assertTrue(any(n in owners for n in names(lib)), "no package holds %s" % lib)
        needed = set(owners.values())
        # In every Debian base image (libc6 is essential; apt needs the C++ runtime).
        needed -= {"libc6", "libstdc++6", "libgcc-s1"}
        m = re.search(r"apt-get install[^\n]*\\\n((?:\s+[^\n]*\\\n)+)", self.runtime)
        self.assertIsNotNone(m, self.runtime)
        listed = set(re.findall(r"\b(lib[a-z0-9.+-]+)\b", m.group(1)))
        self.assertEqual(listed, needed, "the Containerfile's runtime packages differ from "
                         "what ldd %s finds" % binary)

    def test_image_settings(self):
        self.assertRegex(self.runtime, r"\nUSER 10993:10993\n")
        expose = re.search(r"^EXPOSE (.*)$", self.runtime, re.M).group(1).split()
        self.assertEqual(sorted(expose), sorted(["993", "995", "143", "110", "9199"]))
        self.assertRegex(self.runtime, r'HEALTHCHECK .*\n\s+CMD \["/usr/bin/postern-admin", '
                         r'"GET", "/healthz"\]')
        self.assertIn('ENTRYPOINT ["/usr/bin/postern"]', self.runtime)
        self.assertIn('CMD ["--config", "/etc/postern/postern.yaml"]', self.runtime)
        self.assertIn("COPY deploy/container/postern.yaml /etc/postern/postern.yaml",
                      self.runtime)
        self.assertRegex(self.text, r"(?m)^FROM \$\{RUNTIME_BASE\}$")


if __name__ == "__main__":
    unittest.main()
