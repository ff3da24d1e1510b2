#!/usr/bin/env python3
"""The chart's wiring, checked without a cluster: the rendered containers run as local processes.

  chart_wiring.py CHART --bin-dir target/debug [--work DIR] [--timeout SECONDS]

Renders CHART (scripts/deploy/helm.py) with the required values plus a real TLS certificate, and runs every
container of its Deployments and StatefulSets as a local process, one replica each, exactly as rendered:
its `command` and `args`, and only its `env` (no variable of this script's environment leaks in except
PATH, which puts --bin-dir first so `switchboard-gateway` is the built binary). Then one simulated agent
enrols with a software statement made by `switchboard generate-software-statement` run with the auth
container's environment (as `kubectl exec` into the auth pod would), and a session goes
create -> READY -> delete through the gateway's REST API. Last, the chart's `helm test` pod runs as rendered.

What a cluster would provide is replaced, and nothing else:
  - Service DNS: every container port gets a free 127.0.0.1 port. A listen address `0.0.0.0:N` of a
    container becomes `127.0.0.1:<its port N>`; a URL `scheme://NAME:PORT` whose NAME is a Service of the
    render (short, `.ns.svc` or `.ns.svc.<domain>`, or `<pod>.<headless service>...`) becomes
    `scheme://127.0.0.1:<the port of the container port the Service's targetPort names>`;
    `127.0.0.1:N`/`localhost:N` is the pod's own port N. Any other host in a URL fails the check.
  - Volumes: each mount is a directory of this run (Secrets and ConfigMaps written there as files);
    a value (env or arg) starting with a mount path is rewritten to that directory.
  - Secrets: the chart-made Secrets as rendered, except the Redis Secret's `url`, which is the local
    `redis-server` started here (the chart's default points at a Service that is not part of the chart).
  - valueFrom: secretKeyRef and configMapKeyRef from the render, fieldRef metadata.name (pod name
    `<workload>-0`), metadata.namespace and status.podIP (127.0.0.1); `$(VAR)` references are expanded.
  - Probes: each container is ready when its rendered readinessProbe passes (httpGet as rendered, TLS not
    verified like the kubelet; grpc and tcpSocket probes as a TCP connect).
Also, before anything starts, every SWITCHBOARD_* variable a container sets must be one its binary reads
(listed as `[env: NAME=]` in its --help), so a misspelt name fails even when nothing else would notice; and
the upstream URLs (SWITCHBOARD_{AUTH,PLACEMENT,STORE}_URL) must name headless Services, over whose pods the
clients balance.

Every wait is bounded (--timeout for the whole run); every process started is killed on exit.
"""

import argparse
import base64
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
DEADLINE = None
PROCESSES = []


class WiringError(Exception):
    pass


def remaining(cap):
    left = DEADLINE - time.monotonic()
    if left <= 0:
        raise WiringError("the run's time limit was reached")
    return min(cap, left)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(cmd, env=None, cwd=None, cap=30, check=True):
    result = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=remaining(cap))
    if check and result.returncode != 0:
        raise WiringError(f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout}{result.stderr}")
    return result


class Process:
    def __init__(self, label, argv, env, cwd, log_dir):
        self.label = label
        self.log = os.path.join(log_dir, f"{label}.log")
        with open(self.log, "wb") as out:
            self.popen = subprocess.Popen(argv, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, start_new_session=True)
        PROCESSES.append(self)

    def check_alive(self):
        code = self.popen.poll()
        if code is not None:
            raise WiringError(f"{self.label} exited with {code}:\n{self.tail()}")

    def tail(self, lines=25):
        try:
            with open(self.log, encoding="utf-8", errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return ""

    def stop(self):
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.popen.wait(timeout=10)


def stop_all():
    for process in reversed(PROCESSES):
        process.stop()


def make_tls(directory):
    """A CA and a server certificate for localhost and 127.0.0.1 (the gateway and agent ports)."""
    ca_key, ca, key, csr, crt = (os.path.join(directory, n) for n in ("ca.key", "ca.crt", "tls.key", "tls.csr", "tls.crt"))
    ext = os.path.join(directory, "ext.cnf")
    with open(ext, "w", encoding="utf-8") as f:
        f.write("basicConstraints=CA:FALSE\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n"
                "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\n")
    run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", ca_key, "-out", ca, "-days", "2", "-subj", "/CN=chart wiring CA"])
    run(["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key,
         "-out", csr, "-subj", "/CN=localhost"])
    run(["openssl", "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-out", crt,
         "-days", "2", "-extfile", ext])
    return ca, crt, key


class Cluster:
    """The render, with Services resolved to local ports."""

    def __init__(self, docs, namespace, bin_dir, work):
        self.namespace = namespace
        self.bin_dir = bin_dir
        self.work = work
        self.secrets, self.config_maps, self.services, self.workloads = {}, {}, {}, []
        self.test_pods = []
        for doc in docs:
            kind, name = doc["kind"], doc["metadata"]["name"]
            if kind == "Secret":
                data = {k: base64.b64decode(v) for k, v in (doc.get("data") or {}).items()}
                data.update({k: v.encode() for k, v in (doc.get("stringData") or {}).items()})
                self.secrets[name] = data
            elif kind == "ConfigMap":
                self.config_maps[name] = {k: v.encode() for k, v in (doc.get("data") or {}).items()}
            elif kind == "Service":
                self.services[name] = doc["spec"]
            elif kind in ("Deployment", "StatefulSet"):
                self.workloads.append(doc)
            elif kind == "Pod" and "test" in (doc["metadata"].get("annotations") or {}).get("helm.sh/hook", ""):
                self.test_pods.append(doc)
        # Pod name -> {"labels", "spec", "ports": {containerPort: local}, "named": {name: containerPort}}.
        self.pods = {}
        for workload in self.workloads:
            pod = f"{workload['metadata']['name']}-0"
            template = workload["spec"]["template"]
            self.add_pod(pod, template["metadata"].get("labels") or {}, template["spec"])
        for test in self.test_pods:
            self.add_pod(test["metadata"]["name"], test["metadata"].get("labels") or {}, test["spec"])

    def add_pod(self, name, labels, spec):
        ports, named = {}, {}
        for container in spec.get("containers", []):
            for port in container.get("ports") or []:
                ports[port["containerPort"]] = free_port()
                if "name" in port:
                    named[port["name"]] = port["containerPort"]
        self.pods[name] = {"labels": labels, "spec": spec, "ports": ports, "named": named}

    def service_names(self, service):
        ns = self.namespace
        return {service, f"{service}.{ns}", f"{service}.{ns}.svc", f"{service}.{ns}.svc.cluster.local"}

    def resolve(self, host, port, own_pod):
        """The local port behind HOST:PORT as seen from own_pod."""
        if host in ("127.0.0.1", "localhost"):
            local = self.pods[own_pod]["ports"].get(port)
            if local is None:
                raise WiringError(f"{own_pod}: {host}:{port} is no port of its own containers")
            return local
        for name, spec in self.services.items():
            names = self.service_names(name)
            pod_part = None
            if host not in names:
                # <pod>.<headless service>.<ns>.svc...
                first, _, rest = host.partition(".")
                if spec.get("clusterIP") == "None" and rest in names:
                    pod_part = first
                else:
                    continue
            selected = [p for p, pod in self.pods.items()
                        if all(pod["labels"].get(k) == v for k, v in (spec.get("selector") or {}).items())]
            if pod_part is not None:
                selected = [p for p in selected if p == pod_part]
            if not selected:
                raise WiringError(f"Service {name} selects no pod of the render")
            for service_port in spec.get("ports", []):
                if service_port["port"] != port:
                    continue
                target = service_port.get("targetPort", port)
                pod = self.pods[selected[0]]
                container_port = pod["named"].get(target) if isinstance(target, str) else target
                if container_port not in pod["ports"]:
                    raise WiringError(f"Service {name} port {port}: targetPort {target} is no container port of {selected[0]}")
                return pod["ports"][container_port]
            raise WiringError(f"Service {name} has no port {port}")
        raise WiringError(f"{own_pod}: {host}:{port} is no Service of the render")

    def rewrite(self, value, pod, mounts):
        """A rendered env value or arg as it must read locally (see the module docstring)."""
        def listen(m):
            local = self.pods[pod]["ports"].get(int(m.group(2)))
            if local is None:
                raise WiringError(f"{pod}: listens on {m.group(0)}, which is no containerPort of it")
            return f"127.0.0.1:{local}"

        def url(m):
            return f"{m.group(1)}://127.0.0.1:{self.resolve(m.group(2), int(m.group(3)), pod)}"

        value = re.sub(r"^(0\.0\.0\.0|\[::\]):(\d+)$", listen, value)
        value = re.sub(r"(https?)://([A-Za-z0-9.-]+):(\d+)", url, value)
        for mount_path, local in sorted(mounts.items(), key=lambda item: -len(item[0])):
            if value == mount_path or value.startswith(mount_path.rstrip("/") + "/"):
                return local + value[len(mount_path):]
        return value

    def materialize(self, pod, spec):
        """Local directories for the pod's volumes; returns {volume name: directory}."""
        root = os.path.join(self.work, "pods", pod)
        volumes = {}
        for volume in spec.get("volumes") or []:
            directory = os.path.join(root, "volumes", volume["name"])
            os.makedirs(directory, exist_ok=True)
            source = None
            if "secret" in volume:
                name = volume["secret"]["secretName"]
                if name not in self.secrets:
                    raise WiringError(f"{pod}: volume {volume['name']} names Secret {name}, not in the render")
                source = self.secrets[name]
            elif "configMap" in volume:
                name = volume["configMap"]["name"]
                if name not in self.config_maps:
                    raise WiringError(f"{pod}: volume {volume['name']} names ConfigMap {name}, not in the render")
                source = self.config_maps[name]
            elif "emptyDir" not in volume:
                raise WiringError(f"{pod}: volume {volume['name']} of a kind this check does not map: {volume}")
            for key, data in (source or {}).items():
                with open(os.path.join(directory, key), "wb") as f:
                    f.write(data)
            volumes[volume["name"]] = directory
        return volumes

    def container_env(self, pod, container, mounts):
        env = {}

        def expand(text):
            return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m.group(1), m.group(0)), text)

        for item in container.get("env") or []:
            name = item["name"]
            if "value" in item:
                value = expand(str(item["value"]))
            else:
                source = item.get("valueFrom") or {}
                if "secretKeyRef" in source:
                    ref = source["secretKeyRef"]
                    value = self.secrets.get(ref["name"], {}).get(ref["key"])
                    if value is None:
                        raise WiringError(f"{pod}: {name} from Secret {ref['name']} key {ref['key']}: not in the render")
                    value = value.decode()
                elif "configMapKeyRef" in source:
                    ref = source["configMapKeyRef"]
                    value = self.config_maps.get(ref["name"], {}).get(ref["key"])
                    if value is None:
                        raise WiringError(f"{pod}: {name} from ConfigMap {ref['name']} key {ref['key']}: not in the render")
                    value = value.decode()
                elif "fieldRef" in source:
                    path = source["fieldRef"]["fieldPath"]
                    fields = {"metadata.name": pod, "metadata.namespace": self.namespace, "status.podIP": "127.0.0.1"}
                    if path not in fields:
                        raise WiringError(f"{pod}: {name} from fieldRef {path}: not mapped by this check")
                    value = fields[path]
                else:
                    raise WiringError(f"{pod}: {name}: valueFrom {source} not mapped by this check")
            env[name] = self.rewrite(value, pod, mounts)
        return env

    def prepare(self, pod):
        """argv, env and cwd of the pod's (single) container."""
        spec = self.pods[pod]["spec"]
        containers = spec["containers"]
        if len(containers) != 1:
            raise WiringError(f"{pod}: {len(containers)} containers; this check runs one per pod")
        container = containers[0]
        volumes = self.materialize(pod, spec)
        mounts = {}
        for mount in container.get("volumeMounts") or []:
            if mount["name"] not in volumes:
                raise WiringError(f"{pod}: mount of undeclared volume {mount['name']}")
            mounts[mount["mountPath"]] = volumes[mount["name"]]
        env = self.container_env(pod, container, mounts)
        argv = [self.rewrite(str(a), pod, mounts) for a in (container.get("command") or []) + (container.get("args") or [])]
        if not argv:
            raise WiringError(f"{pod}: no command (the image's default command is not checked here)")
        cwd = self.rewrite(container.get("workingDir") or "", pod, mounts) or os.path.join(self.work, "pods", pod)
        os.makedirs(cwd, exist_ok=True)
        env["PATH"] = f"{self.bin_dir}:/usr/bin:/bin"
        return argv, env, cwd, container

    def probe_ready(self, pod, container):
        probe = container.get("readinessProbe")
        if not probe:
            raise WiringError(f"{pod}: no readinessProbe")
        ports = self.pods[pod]
        if "httpGet" in probe:
            get = probe["httpGet"]
            port = get["port"]
            port = ports["named"].get(port) if isinstance(port, str) else port
            scheme = get.get("scheme", "HTTP").lower()
            url = f"{scheme}://127.0.0.1:{ports['ports'][port]}{get.get('path', '/')}"
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            try:
                with urllib.request.urlopen(url, timeout=2, context=context if scheme == "https" else None) as r:
                    return 200 <= r.status < 400
            except (urllib.error.URLError, OSError):
                return False
        port = (probe.get("grpc") or probe.get("tcpSocket") or {}).get("port")
        if port is None:
            raise WiringError(f"{pod}: readinessProbe of a kind this check does not run: {probe}")
        port = ports["named"].get(port) if isinstance(port, str) else port
        try:
            with socket.create_connection(("127.0.0.1", ports["ports"][port]), timeout=2):
                return True
        except OSError:
            return False


def binary_envs(bin_dir, program, *args):
    """The environment variables `program [args] --help` lists ([env: NAME=...])."""
    result = run([os.path.join(bin_dir, program), *args, "--help"], env={"PATH": "/usr/bin:/bin"})
    return set(re.findall(r"\[env: ([A-Z0-9_]+)=", result.stdout))


class Api:
    def __init__(self, base, ca_file):
        self.base = base
        self.context = ssl.create_default_context(cafile=ca_file)
        self.token = None

    def request(self, path, body=None, headers=None, data=None):
        req = urllib.request.Request(self.base + path, method="POST", headers=headers or {}, data=data)
        if body is not None:
            req.data = json.dumps(body).encode()
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=remaining(10), context=self.context) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            raise WiringError(f"POST {path}: {error.code} {error.read()[:500]!r}") from None

    def login(self, client_id, secret):
        basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
        answer = self.request("/oauth2/token?grant_type=client_credentials",
                              headers={"Authorization": f"Basic {basic}",
                                       "Content-Type": "application/x-www-form-urlencoded"}, data=b"")
        self.token = answer["access_token"]

    def call(self, path, body):
        return self.request(path, body, headers={"Authorization": f"Bearer {self.token}"})


def wait(what, check, cap, interval=0.2, alive=()):
    deadline = time.monotonic() + remaining(cap)
    while True:
        for process in alive:
            process.check_alive()
        result = check()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise WiringError(f"{what}: not after {cap} s")
        time.sleep(interval)


def scenario(args, work):
    tls_dir = os.path.join(work, "tls")
    os.makedirs(tls_dir)
    ca, crt, key = make_tls(tls_dir)
    admin_token = base64.b16encode(os.urandom(16)).decode().lower()
    values = os.path.join(work, "values.yaml")
    with open(values, "w", encoding="utf-8") as f:
        yaml.safe_dump({"adminToken": {"value": admin_token}}, f)
    rendered = run([sys.executable, os.path.join(HERE, "helm.py"), "template", args.chart, "--name", "sb",
                    "--namespace", "switchboard", "-f", values, "--set-file", f"tls.cert={crt}",
                    "--set-file", f"tls.key={key}"], cap=60).stdout
    docs = [d for d in yaml.safe_load_all(rendered) if d]
    cluster = Cluster(docs, "switchboard", args.bin_dir, work)
    if len(cluster.workloads) < 4:
        raise WiringError(f"expected the four services in the render, found {len(cluster.workloads)} workloads")

    # The one substitution of a Secret's content: Redis is this run's redis-server.
    redis_port = free_port()
    redis_dir = os.path.join(work, "redis")
    os.makedirs(redis_dir)
    redis = Process("redis", ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                              "--appendonly", "no", "--dir", redis_dir], None, redis_dir, work)
    redis_secrets = [n for n, d in cluster.secrets.items() if "url" in d and d["url"].startswith(b"redis")]
    if len(redis_secrets) != 1:
        raise WiringError(f"expected one Redis Secret in the render, found {redis_secrets}")
    cluster.secrets[redis_secrets[0]]["url"] = f"redis://127.0.0.1:{redis_port}/0".encode()
    wait("redis-server answers", lambda: run(["redis-cli", "-p", str(redis_port), "ping"], check=False).stdout.strip() == "PONG",
         10, alive=[redis])

    # Internal clients balance over the addresses a name has (common/src/grpc.rs::replica_channel): the
    # upstream URLs must name headless Services (one address per pod), not a ClusterIP that pins each
    # client's connection to one pod.
    upstreams = ("SWITCHBOARD_AUTH_URL", "SWITCHBOARD_PLACEMENT_URL", "SWITCHBOARD_STORE_URL")
    for workload in cluster.workloads:
        for container in workload["spec"]["template"]["spec"]["containers"]:
            for variable in container.get("env") or []:
                if variable["name"] not in upstreams or "value" not in variable:
                    continue
                host = re.sub(r"^https?://([^:/]+).*$", r"\1", variable["value"]).split(".")[0]
                if cluster.services.get(host, {}).get("clusterIP") != "None":
                    raise WiringError(f"{workload['metadata']['name']}: {variable['name']} names {host}, "
                                      "which is no headless Service of the render")

    print("Service -> local port:")
    for name, spec in sorted(cluster.services.items()):
        for port in spec.get("ports", []):
            try:
                print(f"  {name}:{port['port']} -> 127.0.0.1:{cluster.resolve(name, port['port'], None)}")
            except WiringError as error:
                raise WiringError(f"Service {name}: {error}") from None

    started = []
    for workload in cluster.workloads:
        pod = f"{workload['metadata']['name']}-0"
        argv, env, cwd, container = cluster.prepare(pod)
        program = argv[0]
        with open(os.path.join(work, "pods", pod, "process.json"), "w", encoding="utf-8") as f:
            json.dump({"argv": argv, "env": env, "cwd": cwd}, f, indent=1)
        if shutil.which(program, path=args.bin_dir) is None:
            raise WiringError(f"{pod}: command {program} is not a binary of {args.bin_dir}")
        if not args.skip_env_names:
            # The pod's variables are read by its binary, or by the admin command an operator runs in the pod
            # with `kubectl exec` (`switchboard register-api-client` and the others: SWITCHBOARD_ADMIN_*).
            known = binary_envs(args.bin_dir, program) | binary_envs(args.bin_dir, "switchboard", "register-api-client")
            unknown = sorted(n for n in env if n.startswith("SWITCHBOARD_") and n not in known)
            if unknown:
                raise WiringError(f"{pod}: {program} reads no {', '.join(unknown)} (its --help lists {len(known)} variables)")
        print(f"start {pod}: {' '.join(argv)}  ({len(env)} variables)")
        started.append((pod, container, Process(pod, argv, env, cwd, work)))
    for pod, container, process in started:
        wait(f"{pod} ready (readinessProbe)", lambda: cluster.probe_ready(pod, container), 60, alive=[process])
        print(f"ready {pod}")

    # Admin commands as `kubectl exec deploy/<release>-switchboard-auth -- switchboard ...` runs them.
    auth_pod = next(p for p, _, _ in started if p.endswith("-auth-0"))
    _, auth_env, auth_cwd, _ = cluster.prepare(auth_pod)
    printed = run(["switchboard", "generate-software-statement"], env=auth_env, cwd=auth_cwd).stdout
    statement = re.search(r"^software-statement: (\S+)$", printed, re.M)
    if not statement:
        raise WiringError(f"generate-software-statement printed no statement:\n{printed}")
    statement = statement.group(1)
    client = run(["switchboard", "register-api-client", "--client-name", "chart-wiring"], env=auth_env, cwd=auth_cwd).stdout
    client_id = re.search(r"^client-id: (\S+)", client, re.M)
    secret = re.search(r"^client-password: (\S+)", client, re.M)
    if not (client_id and secret):
        raise WiringError(f"register-api-client printed no credentials:\n{client}")

    # One simulated agent, dialling the agents Service as a DCV host would.
    agent_dir = os.path.join(work, "agent")
    os.makedirs(agent_dir)
    statement_path = os.path.join(agent_dir, "software_statement.txt")
    with open(statement_path, "w", encoding="utf-8") as f:
        f.write(statement + "\n")
    agents_port = cluster.resolve("sb-switchboard-agents", 8445, None)
    conf = os.path.join(agent_dir, "agent.conf")
    with open(conf, "w", encoding="utf-8") as f:
        f.write(f"version = '0.1'\n[agent]\nbroker_host = 'localhost'\nbroker_port = {agents_port}\n"
                f"ca_file = '{ca}'\nsoftware_statement_path = '{statement_path}'\ndriver = 'simulated'\n"
                f"hostname = 'wiring-host'\nserver_id = 'wiring-host'\nbroker_update_interval = 1\n"
                f"tags_folder = '{agent_dir}/tags'\ninit_folder = '{agent_dir}/init'\n"
                f"autorun_folder = '{agent_dir}/autorun'\n[log]\nlevel = 'info'\n")
    agent = Process("agent", [os.path.join(args.bin_dir, "switchboard-agent"), "--config", conf],
                    {"PATH": "/usr/bin:/bin", "HOME": agent_dir}, agent_dir, work)

    gateway_port = cluster.resolve("sb-switchboard-gateway", 8443, None)
    api = Api(f"https://localhost:{gateway_port}", ca)
    api.login(client_id.group(1), secret.group(1))
    everyone = [p for _, _, p in started] + [agent, redis]

    def server_up():
        servers = api.call("/describeServers", {}).get("Servers") or []
        return any(s.get("Availability") == "AVAILABLE" for s in servers)
    wait("the agent's server AVAILABLE in describeServers", server_up, 30, 0.5, everyone)
    print("agent enrolled; server AVAILABLE")

    created = api.call("/createSessions", [{"Name": "wiring", "Owner": "alice", "Type": "VIRTUAL"}])
    successful = created.get("SuccessfulList") or []
    if not successful:
        raise WiringError(f"createSessions: {created}")
    session = successful[0]["Id"]
    print(f"created {session}")

    def state():
        sessions = api.call("/describeSessions", {"SessionIds": [session]}).get("Sessions") or []
        return sessions[0].get("State") if sessions else None
    final = wait(f"session {session} leaves CREATING", lambda: (s := state()) not in (None, "CREATING") and s, 30, 0.3, everyone)
    if final != "READY":
        raise WiringError(f"session {session}: {final}, not READY")
    print(f"{session} READY")
    deleted = api.call("/deleteSessions", [{"SessionId": session, "Owner": "alice"}])
    if not deleted.get("SuccessfulList"):
        raise WiringError(f"deleteSessions: {deleted}")
    wait(f"session {session} gone or DELETED", lambda: state() in (None, "DELETED", "DELETING") and True, 30, 0.3, everyone)
    print(f"{session} deleted")

    # The chart's `helm test` pod, as rendered.
    for test in cluster.test_pods:
        pod = test["metadata"]["name"]
        argv, env, cwd, _ = cluster.prepare(pod)
        result = run(argv, env=env, cwd=cwd, cap=60, check=False)
        if result.returncode != 0:
            raise WiringError(f"helm test pod {pod} failed ({result.returncode}):\n{result.stdout}{result.stderr}")
        print(f"helm test pod {pod}: passed")


def main():
    global DEADLINE
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("chart")
    parser.add_argument("--bin-dir", required=True)
    parser.add_argument("--work", help="keep the run's files (logs) here instead of a temporary directory")
    parser.add_argument("--timeout", type=float, default=150)
    parser.add_argument("--skip-env-names", action="store_true",
                        help="do not compare SWITCHBOARD_* names with --help (to show the scenario alone fails)")
    args = parser.parse_args()
    args.bin_dir = os.path.abspath(args.bin_dir)
    args.chart = os.path.abspath(args.chart)
    DEADLINE = time.monotonic() + args.timeout
    work = os.path.abspath(args.work) if args.work else tempfile.mkdtemp(prefix="chart-wiring-")
    if args.work:
        shutil.rmtree(work, ignore_errors=True)
        os.makedirs(work)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        scenario(args, work)
        print("chart wiring: passed")
        return 0
    except (WiringError, subprocess.TimeoutExpired) as error:
        print(f"FAIL: {error}", file=sys.stderr)
        for process in PROCESSES:
            print(f"--- last lines of {process.label} ({process.log})", file=sys.stderr)
            print(process.tail(15), file=sys.stderr)
        return 1
    finally:
        stop_all()
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
