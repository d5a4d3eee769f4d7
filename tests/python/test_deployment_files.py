"""docs/deployment's files are checked the way docs/systemd's units are:
each by the tool that will read it where there is one here (haproxy -c,
nginx -t), else parsed and held to a schema written below (Envoy, which
Debian does not ship; the Kubernetes manifests, without kubectl; the
Containerfile). Every ferrocorn command line in them goes through
ferrocorn's own parser (--print-config), and what the files say of one
another (ports, probe paths, grace periods) must agree."""

import ast
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys

import pytest
from helpers import HERE, free_port, server_env, wait_for
from loadgen import LoadGen

ROOT = os.path.dirname(os.path.dirname(HERE))
DEPLOY = os.path.join(ROOT, "docs", "deployment")
GUIDE = os.path.join(ROOT, "docs", "deployment.md")


def read(name):
    with open(os.path.join(DEPLOY, name)) as f:
        return f.read()


def resolved(argv, tmp_path, env=None):
    """ferrocorn's resolved settings for the command line `argv` (which
    starts with "ferrocorn"), from `--print-config`: the command must pass
    the parser and every check ferrocorn makes at start (a setting it does
    not serve yet fails it). The app module is a stand-in made here."""
    assert argv[0] == "ferrocorn", argv
    app = tmp_path / "myproject"
    app.mkdir(exist_ok=True)
    (app / "__init__.py").write_text("")
    (app / "wsgi.py").write_text("def application(environ, start_response):\n    return []\n")
    out = subprocess.run(
        [sys.executable, "-m", "ferrocorn", "--print-config", *argv[1:]],
        capture_output=True,
        text=True,
        cwd=str(tmp_path),
        env=server_env(env),
        timeout=60,
    )
    assert out.returncode == 0, "%s\n%s" % (argv, out.stderr)
    settings = {}
    for line in out.stdout.splitlines():
        name, sep, value = line.partition(" = ")
        if sep:
            settings[name.strip()] = value.strip()
    return settings


def port_of(address):
    return int(address.rsplit(":", 1)[1])


# -- a small structural schema checker ----------------------------------------
#
# A schema is a dict (a mapping whose keys must be among the schema's, and
# whose values conform to theirs; keys named in REQUIRED must be there), a
# one-item list (a list of that), a type or tuple of types, or ANY.

ANY = object()


class Required(str):
    """A key that must be present."""


def conforms(value, schema, path="$"):
    """The list of ways `value` does not fit `schema` (empty when it fits)."""
    if schema is ANY:
        return []
    if isinstance(schema, dict):
        if not isinstance(value, dict):
            return ["%s: a mapping expected, got %r" % (path, value)]
        errors = ["%s: unknown key %r" % (path, k) for k in value if k not in schema]
        errors += ["%s: %r missing" % (path, k) for k in schema if isinstance(k, Required) and k not in value]
        for k, v in value.items():
            if k in schema:
                errors += conforms(v, schema[k], "%s.%s" % (path, k))
        return errors
    if isinstance(schema, list):
        if not isinstance(value, list) or not value:
            return ["%s: a non-empty list expected, got %r" % (path, value)]
        return [e for i, item in enumerate(value) for e in conforms(item, schema[0], "%s[%d]" % (path, i))]
    if isinstance(value, bool) and schema is not bool and bool not in (schema if isinstance(schema, tuple) else ()):
        return ["%s: %r is a boolean" % (path, value)]
    if not isinstance(value, schema):
        return ["%s: %r is not %s" % (path, value, schema)]
    return []


R = Required
PORT = (int, str)
HTTP_GET = {R("path"): str, R("port"): PORT}
PROBE = {
    R("httpGet"): HTTP_GET,
    "initialDelaySeconds": int,
    "periodSeconds": int,
    "timeoutSeconds": int,
    "failureThreshold": int,
    "successThreshold": int,
}
CONTAINER = {
    R("name"): str,
    R("image"): str,
    "command": [str],
    "args": [str],
    "env": [{R("name"): str, "value": str, "valueFrom": {"resourceFieldRef": {R("resource"): str, "divisor": str}}}],
    "ports": [{"name": str, R("containerPort"): int, "protocol": str}],
    "resources": {"requests": {"cpu": str, "memory": str}, "limits": {"cpu": str, "memory": str}},
    "readinessProbe": PROBE,
    "livenessProbe": PROBE,
    "startupProbe": PROBE,
    "lifecycle": {"preStop": {"exec": {R("command"): [str]}, "sleep": {R("seconds"): int}}},
    "securityContext": ANY,
}
METADATA = {R("name"): str, "labels": ANY, "namespace": str}
SELECTOR = {R("matchLabels"): ANY}
KUBERNETES = {
    "Deployment": {
        R("apiVersion"): str,
        R("kind"): str,
        R("metadata"): METADATA,
        R("spec"): {
            "replicas": int,
            R("selector"): SELECTOR,
            "strategy": {
                R("type"): str,
                "rollingUpdate": {"maxUnavailable": PORT, "maxSurge": PORT},
            },
            R("template"): {
                R("metadata"): {R("labels"): ANY},
                R("spec"): {
                    "terminationGracePeriodSeconds": int,
                    R("containers"): [CONTAINER],
                    "securityContext": ANY,
                },
            },
        },
    },
    "Service": {
        R("apiVersion"): str,
        R("kind"): str,
        R("metadata"): METADATA,
        R("spec"): {
            R("selector"): ANY,
            R("ports"): [{"name": str, R("port"): int, "targetPort": PORT, "protocol": str}],
            "type": str,
        },
    },
    "PodDisruptionBudget": {
        R("apiVersion"): str,
        R("kind"): str,
        R("metadata"): METADATA,
        R("spec"): {"maxUnavailable": PORT, "minAvailable": PORT, R("selector"): SELECTOR},
    },
}
API_VERSIONS = {"Deployment": "apps/v1", "Service": "v1", "PodDisruptionBudget": "policy/v1"}


def test_conforms_finds_what_is_wrong():
    """The checker itself: a misspelt key, a missing one, a wrong type."""
    doc = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"}, "spec": {"selector": {}}}
    errors = conforms(doc, KUBERNETES["Deployment"])
    assert "$.spec: 'template' missing" in errors
    assert "$.spec.selector: 'matchLabels' missing" in errors
    probe = {"httpGet": {"path": "/readyz", "port": "metrics"}, "periodSeconds": "2", "failureTreshold": 2}
    assert conforms(probe, PROBE) == ["$: unknown key 'failureTreshold'", "$.periodSeconds: '2' is not <class 'int'>"]
    assert conforms({"replicas": True}, {"replicas": int}) == ["$.replicas: True is a boolean"]


def labels_match(selector, labels):
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items()), labels
    return selector and all(labels.get(k) == v for k, v in selector.items())


# -- every file has its check, and the guide links it --------------------------

CHECKED = {"haproxy.cfg", "nginx.conf", "envoy.yaml", "kubernetes.yaml", "Containerfile"}


def test_every_file_is_checked_and_linked_from_the_guide():
    assert set(os.listdir(DEPLOY)) == CHECKED
    with open(GUIDE) as f:
        guide = f.read()
    for name in CHECKED:
        assert "(deployment/%s)" % name in guide, name


# -- HAProxy -------------------------------------------------------------------


def comment_command(text):
    """The ferrocorn command line a file gives in its comments (with
    backslash continuations)."""
    lines = [line.lstrip("#").strip() for line in text.splitlines() if line.startswith("#")]
    joined = "\n".join(lines).replace("\\\n", " ")
    match = re.search(r"^(ferrocorn .*)$", joined, re.M)
    assert match, "no ferrocorn command in the comments"
    return shlex.split(match.group(1))


@pytest.mark.skipif(not shutil.which("haproxy"), reason="haproxy not installed (make ci-deps installs it)")
def test_haproxy_cfg(tmp_path):
    text = read("haproxy.cfg")
    out = subprocess.run(
        ["haproxy", "-c", "-f", os.path.join(DEPLOY, "haproxy.cfg")], capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 0 and "Configuration file is valid" in out.stdout, out.stdout + out.stderr
    assert "[WARNING]" not in out.stdout + out.stderr and "[ALERT]" not in out.stdout + out.stderr
    # the hosts' command, as the comment gives it, is one ferrocorn runs,
    # and the balancer speaks what it expects: PROXY v2 on the app port,
    # plain HTTP checks of /readyz on its --metrics-bind port
    conf = resolved(comment_command(text), tmp_path)
    assert conf["proxy_protocol"] == "v2"
    app_port, probe_port = port_of(ast.literal_eval(conf["bind"])[0]), port_of(conf["metrics_bind"])
    assert "http-check send meth GET uri /readyz\n" in text
    default_server = re.search(r"^\s*default-server (.*)$", text, re.M).group(1).split()
    assert {"check", "send-proxy-v2"} <= set(default_server)
    assert default_server[default_server.index("port") + 1] == str(probe_port)
    servers = re.findall(r"^\s*server \S+ (\S+)$", text, re.M)
    assert len(servers) >= 2 and all(port_of(s) == app_port for s in servers), servers
    # the balancer's address is the one the hosts take PROXY headers and
    # forwarded headers from
    proxy = ast.literal_eval(conf["proxy_allow_ips"])
    assert proxy == ast.literal_eval(conf["forwarded_allow_ips"]) and "127.0.0.1" not in proxy, conf


# -- nginx ---------------------------------------------------------------------


@pytest.mark.skipif(not shutil.which("nginx"), reason="nginx not installed (make ci-deps installs it)")
def test_nginx_conf(tmp_path):
    text = read("nginx.conf")
    # its own prefix: nothing read or written outside the test's directory
    (tmp_path / "logs").mkdir()
    out = subprocess.run(
        ["nginx", "-t", "-q", "-p", str(tmp_path), "-e", "stderr", "-c", os.path.join(DEPLOY, "nginx.conf"),
         "-g", "pid %s;" % (tmp_path / "nginx.pid")],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert out.returncode == 0 and not out.stderr.strip(), out.stderr
    # the scheme, believed from --forwarded-allow-ips, and the client's
    # address for the application's proxy middleware
    assert "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;" in text
    assert "proxy_set_header X-Forwarded-Proto $scheme;" in text
    servers = re.findall(r"^\s*#?\s*server (\S+)( fail_timeout=0)?;$", text, re.M)
    assert servers and all(flag for _, flag in servers), servers
    # not uwsgi_pass: ferrocorn serves HTTP only (see docs/deployment.md)
    assert not re.search(r"^\s*uwsgi_pass", text, re.M)


@pytest.mark.skipif(not shutil.which("nginx"), reason="nginx not installed (make ci-deps installs it)")
def test_nginx_conf_in_front_of_ferrocorn(server, tmp_path):
    """The configuration for real, with only the socket path and the
    listening address changed: requests reach ferrocorn on its Unix socket
    through nginx's kept-alive upstream connections, and a HUP (new workers)
    under load fails none of them."""
    sock = tmp_path / "ferrocorn.sock"
    access = tmp_path / "access.json"
    s = server(
        "-b", "unix:%s" % sock, "-k", "gthread", "-w", "2", "--access-logfile", str(access), "--access-log-json",
        "ops_app:app", bind=False, wait=False, env={"OPS_SLEEP_MS": "1"},
    )  # fmt: skip
    s.wait_booted()
    port = free_port()
    text = read("nginx.conf")
    text, sockets = re.subn(r"server unix:\S+ ", "server unix:%s " % sock, text)
    text, listens = re.subn(r"listen 80 ", "listen 127.0.0.1:%d " % port, text)
    assert (sockets, listens) == (1, 1)
    (tmp_path / "logs").mkdir()
    conf = tmp_path / "nginx.conf"
    conf.write_text(text)
    # its workers run as root: the socket is in the test's private directory
    settings = "daemon off; user root; pid %s;" % (tmp_path / "nginx.pid")
    nginx = subprocess.Popen(
        ["nginx", "-p", str(tmp_path), "-e", "stderr", "-c", str(conf), "-g", settings],
        stdout=subprocess.DEVNULL, stderr=open(tmp_path / "nginx.err", "wb"),
    )  # fmt: skip
    try:

        def listening():
            assert nginx.poll() is None, (tmp_path / "nginx.err").read_text()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return True
            except OSError:
                return False

        wait_for(listening, what="nginx")
        old = s.wait_workers(2)
        with LoadGen(port=port, keepalive=2, fresh=2, duration=30) as load:
            load.wait_ok(100)
            s.signal(signal.SIGHUP)
            s.wait_workers(2, exclude=old)
            load.wait_ok(100)
        res = load.result()
        assert not res.failures, "%s\n%s" % (res.summary(), res.failures[:10])
        # both generations answered through nginx, and ferrocorn saw the
        # headers the configuration sets
        assert set(res.pids) & set(old) and set(res.pids) - set(old), res.pids
        with open(access) as f:
            line = json.loads(f.readline())
        assert line["url.scheme"] == "http" and line["http.request.method"] == "GET", line
    finally:
        if nginx.poll() is None:
            nginx.send_signal(signal.SIGQUIT)
            try:
                nginx.wait(timeout=15)
            except subprocess.TimeoutExpired:
                nginx.kill()
                nginx.wait()


# -- Envoy (not in Debian: its configuration is held to a schema) --------------

TYPED = {"@type": R(str)}
ENVOY_TYPES = {
    "envoy.filters.network.http_connection_manager": (
        "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
    ),
    "envoy.filters.http.router": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router",
    "envoy.transport_sockets.raw_buffer": (
        "type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer"
    ),
    "envoy.transport_sockets.upstream_proxy_protocol": (
        "type.googleapis.com/envoy.extensions.transport_sockets.proxy_protocol.v3.ProxyProtocolUpstreamTransport"
    ),
}
SOCKET_ADDRESS = {R("socket_address"): {R("address"): str, R("port_value"): int}}
RAW = {R("name"): str, R("typed_config"): {R("@type"): str}}
TRANSPORT = {
    R("name"): str,
    R("typed_config"): {R("@type"): str, "config": {R("version"): str}, "transport_socket": RAW},
}
ROUTE = {
    R("match"): {R("prefix"): str},
    R("route"): {
        R("cluster"): str,
        "timeout": str,
        "retry_policy": {R("retry_on"): str, "num_retries": int},
    },
}
HCM = {
    R("@type"): str,
    R("stat_prefix"): str,
    "use_remote_address": bool,
    R("route_config"): {R("virtual_hosts"): [{R("name"): str, R("domains"): [str], R("routes"): [ROUTE]}]},
    R("http_filters"): [{R("name"): str, R("typed_config"): {R("@type"): str}}],
}
ENVOY = {
    R("static_resources"): {
        R("listeners"): [
            {
                R("name"): str,
                R("address"): SOCKET_ADDRESS,
                R("filter_chains"): [{R("filters"): [{R("name"): str, R("typed_config"): HCM}]}],
            }
        ],
        R("clusters"): [
            {
                R("name"): str,
                R("type"): str,
                R("connect_timeout"): str,
                "lb_policy": str,
                R("load_assignment"): {
                    R("cluster_name"): str,
                    R("endpoints"): [
                        {
                            R("lb_endpoints"): [
                                {
                                    R("endpoint"): {
                                        R("address"): SOCKET_ADDRESS,
                                        "health_check_config": {R("port_value"): int},
                                    }
                                }
                            ]
                        }
                    ],
                },
                R("health_checks"): [
                    {
                        R("timeout"): str,
                        R("interval"): str,
                        R("unhealthy_threshold"): int,
                        R("healthy_threshold"): int,
                        R("http_health_check"): {R("path"): str},
                        "transport_socket_match_criteria": ANY,
                    }
                ],
                "transport_socket_matches": [{R("name"): str, R("match"): ANY, R("transport_socket"): RAW}],
                R("transport_socket"): TRANSPORT,
            }
        ],
    }
}
DURATION = re.compile(r"^\d+(\.\d+)?s$")
RETRY_ON = {"5xx", "gateway-error", "reset", "connect-failure", "retriable-4xx", "refused-stream"}


def named_configs(node):
    """Every (name, typed_config) pair in the tree."""
    if isinstance(node, dict):
        if "name" in node and "typed_config" in node:
            yield node["name"], node["typed_config"]
        for v in node.values():
            yield from named_configs(v)
    elif isinstance(node, list):
        for v in node:
            yield from named_configs(v)


def durations(node):
    if isinstance(node, dict):
        for k, v in node.items():
            if k in ("timeout", "interval", "connect_timeout"):
                yield v
            else:
                yield from durations(v)
    elif isinstance(node, list):
        for v in node:
            yield from durations(v)


def test_envoy_yaml(tmp_path):
    yaml = pytest.importorskip("yaml", reason="PyYAML (the test extra has it)")
    text = read("envoy.yaml")
    config = yaml.safe_load(text)
    assert conforms(config, ENVOY) == []
    for name, typed in named_configs(config):
        assert ENVOY_TYPES.get(name) == typed["@type"], (name, typed["@type"])
    assert all(DURATION.match(d) for d in durations(config)), list(durations(config))
    res = config["static_resources"]
    clusters = {c["name"]: c for c in res["clusters"]}
    for listener in res["listeners"]:
        for chain in listener["filter_chains"]:
            for f in chain["filters"]:
                for vhost in f["typed_config"]["route_config"]["virtual_hosts"]:
                    for route in vhost["routes"]:
                        assert route["route"]["cluster"] in clusters
                        retry = route["route"].get("retry_policy")
                        assert not retry or set(retry["retry_on"].split(",")) <= RETRY_ON, retry
                # the router is the last HTTP filter, as Envoy requires
                assert f["typed_config"]["http_filters"][-1]["name"] == "envoy.filters.http.router"
    # the hosts' command in the comments runs, and the cluster speaks it
    conf = resolved(comment_command(text), tmp_path)
    assert conf["proxy_protocol"] == "v2"
    app_port, probe_port = port_of(ast.literal_eval(conf["bind"])[0]), port_of(conf["metrics_bind"])
    for cluster in clusters.values():
        assert cluster["load_assignment"]["cluster_name"] == cluster["name"]
        assert cluster["transport_socket"]["typed_config"]["config"]["version"] == "V2"
        assert [h["http_health_check"]["path"] for h in cluster["health_checks"]] == ["/readyz"]
        # checks go to the probe port with no PROXY header
        criteria = cluster["health_checks"][0]["transport_socket_match_criteria"]
        assert [m["match"] for m in cluster["transport_socket_matches"]] == [criteria]
        assert (
            cluster["transport_socket_matches"][0]["transport_socket"]["name"] == "envoy.transport_sockets.raw_buffer"
        )
        for group in cluster["load_assignment"]["endpoints"]:
            for ep in group["lb_endpoints"]:
                assert ep["endpoint"]["address"]["socket_address"]["port_value"] == app_port
                assert ep["endpoint"]["health_check_config"]["port_value"] == probe_port


# -- Kubernetes ----------------------------------------------------------------


def test_kubernetes_yaml(tmp_path):
    yaml = pytest.importorskip("yaml", reason="PyYAML (the test extra has it)")
    docs = [d for d in yaml.safe_load_all(read("kubernetes.yaml")) if d is not None]
    by_kind = {}
    for doc in docs:
        kind = doc.get("kind")
        assert kind in KUBERNETES, kind
        assert doc["apiVersion"] == API_VERSIONS[kind], doc["apiVersion"]
        assert conforms(doc, KUBERNETES[kind]) == [], (kind, conforms(doc, KUBERNETES[kind]))
        assert kind not in by_kind
        by_kind[kind] = doc
    assert set(by_kind) == set(KUBERNETES)
    deployment, service, pdb = by_kind["Deployment"], by_kind["Service"], by_kind["PodDisruptionBudget"]
    pod = deployment["spec"]["template"]
    pod_labels = pod["metadata"]["labels"]
    assert labels_match(deployment["spec"]["selector"]["matchLabels"], pod_labels)
    assert labels_match(service["spec"]["selector"], pod_labels)
    assert labels_match(pdb["spec"]["selector"]["matchLabels"], pod_labels)
    # a rolling update never takes a ready pod away before its successor is
    # ready, and a voluntary disruption leaves the others serving
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert deployment["spec"]["replicas"] > pdb["spec"]["maxUnavailable"]

    (container,) = pod["spec"]["containers"]
    argv = container.get("command", []) + container.get("args", [])
    # -w follows the CPU request: WEB_CONCURRENCY (-w's default) is the
    # request, rounded up to whole CPUs by the kubelet
    (web_concurrency,) = [e for e in container["env"] if e["name"] == "WEB_CONCURRENCY"]
    assert web_concurrency["valueFrom"]["resourceFieldRef"] == {"resource": "requests.cpu", "divisor": "1"}
    assert not any(a == "-w" or a.startswith(("--workers", "-w")) for a in argv), argv
    cpus = int(container["resources"]["requests"]["cpu"])
    conf = resolved(argv, tmp_path, env={"WEB_CONCURRENCY": str(cpus)})
    assert conf["workers"] == str(cpus)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["http"] == port_of(ast.literal_eval(conf["bind"])[0])
    assert ports["metrics"] == port_of(conf["metrics_bind"])
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz"), ("startupProbe", "/readyz")):
        assert container[probe]["httpGet"] == {"path": path, "port": "metrics"}, probe
    targets = [p["targetPort"] for p in service["spec"]["ports"]]
    assert targets and all(t in ports or t in ports.values() for t in targets), targets
    # zero failed requests: the pod leaves the endpoints during preStop,
    # then TERM gives requests in progress --graceful-timeout; the kubelet's
    # SIGKILL must come after both
    stop = container["lifecycle"]["preStop"]
    pre_stop = stop["sleep"]["seconds"] if "sleep" in stop else int(stop["exec"]["command"][-1])
    assert stop.get("exec", {}).get("command", ["sleep"])[0] == "sleep"
    assert pre_stop >= 1
    grace = pod["spec"]["terminationGracePeriodSeconds"]
    assert grace > pre_stop + int(conf["graceful_timeout"]), (grace, pre_stop, conf["graceful_timeout"])


# -- the container image recipe -----------------------------------------------

INSTRUCTIONS = {
    "FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME", "USER", "WORKDIR",
    "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL",
}  # fmt: skip


def instructions(text):
    """(INSTRUCTION, arguments) of a Containerfile: comments and blank lines
    dropped, backslash continuations joined."""
    out, pending = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        word, _, rest = (pending + stripped).partition(" ")
        out.append((word, rest.strip()))
        pending = ""
    assert not pending, "a continuation runs off the end"
    return out


def exec_form(arguments):
    """The argv of a JSON-array (exec form) argument list."""
    argv = json.loads(arguments)
    assert isinstance(argv, list) and argv and all(isinstance(a, str) for a in argv), arguments
    return argv


def test_containerfile(tmp_path):
    steps = instructions(read("Containerfile"))
    assert steps[0][0] == "FROM"
    assert all(word in INSTRUCTIONS for word, _ in steps), [w for w, _ in steps if w not in INSTRUCTIONS]
    words = [w for w, _ in steps]
    # one CMD, in exec form, so that ferrocorn is pid 1 and gets the TERM
    (cmd,) = [a for w, a in steps if w == "CMD"]
    argv = exec_form(cmd)
    assert "ENTRYPOINT" not in words
    conf = resolved(argv, tmp_path)
    # not root: the last USER names someone else
    users = [a for w, a in steps if w == "USER"]
    assert users and users[-1] not in ("root", "0"), users
    assert words.index("USER") > max(i for i, w in enumerate(words) if w == "RUN")
    exposed = {int(p.split("/")[0]) for w, a in steps if w == "EXPOSE" for p in a.split()}
    assert exposed == {port_of(ast.literal_eval(conf["bind"])[0]), port_of(conf["metrics_bind"])}
    assert ast.literal_eval(conf["bind"])[0].startswith("0.0.0.0:")
    # the health check asks /healthz on the metrics port, in exec form
    (health,) = [a for w, a in steps if w == "HEALTHCHECK"]
    options, _, check = health.partition(" CMD ")
    assert all(o.startswith("--") for o in options.split()), options
    check_argv = exec_form(check)
    assert "127.0.0.1:%d/healthz" % port_of(conf["metrics_bind"]) in " ".join(check_argv)
    # the dependencies are installed before the application's code is
    # copied, so a code change does not reinstall them
    runs = [i for i, (w, a) in enumerate(steps) if w == "RUN" and "pip install" in a]
    copies = [i for i, (w, a) in enumerate(steps) if w == "COPY" and a.split()[0] == "."]
    assert runs and copies and runs[0] < copies[0]
