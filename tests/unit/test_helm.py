"""The Helm chart deploy/helm/loyalty-connector: `helm lint` and invariants of `helm template`.

No cluster: every check runs on the manifests helm renders for a matrix of values. Helm is
v3.22.0, built once with `go install` into ~/.cache/loyalty-connector/; when it cannot be
obtained the tests fail with go's output, they never skip.
"""

from __future__ import annotations

import copy
import fcntl
import functools
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from connector.settings import VARIABLE_NAMES, VARIABLES

HELM_VERSION = "v3.22.0"
HELM_DIR = Path.home() / ".cache" / "loyalty-connector" / f"helm-{HELM_VERSION}"
HELM_PACKAGE = f"helm.sh/helm/v3/cmd/helm@{HELM_VERSION}"
GO_INSTALL_TIMEOUT = 900
CHART = Path(__file__).resolve().parents[2] / "deploy" / "helm" / "loyalty-connector"
RELEASE = "lc"
NAMESPACE = "shop"
FULLNAME = f"{RELEASE}-loyalty-connector"
BROKER = "kafka-0.kafka.shop.svc:9092,kafka-1.kafka.shop.svc:9092"

# Building helm may take minutes the first time: more than the suite's 300 s default.
pytestmark = pytest.mark.timeout(GO_INSTALL_TIMEOUT + 300)

SECRET_VARS = frozenset(v.name for v in VARIABLES if v.secret)
GAMEBALL_KEY = "gb-plain-secret-0f3a"
VOUCHERIFY_KEY = "vf-plain-secret-77c1"
REGISTRY_PASSWORD = "registry-password-19d2"
TENANT_KEY = "tenant-secret-5e6b"
TENANTS_TOML = f'[gameball.shop-eu]\nsecret_key = "{TENANT_KEY}"\n'
PLAIN_SECRETS = (GAMEBALL_KEY, VOUCHERIFY_KEY, REGISTRY_PASSWORD, TENANT_KEY)

CASES: dict[str, dict[str, Any]] = {
    "defaults": {},
    "service_monitor": {"serviceMonitor": {"enabled": True}},
    "existing_secret": {"secrets": {"existingSecret": "shop-connector-env"}},
    "existing_secret_and_tenants": {
        "secrets": {
            "existingSecret": "shop-connector-env",
            "existingTenantsSecret": "shop-connector-tenants",
            "tenantsFileKey": "loyalty-tenants.toml",
            "tenantsMountPath": "/etc/loyalty/",
        }
    },
    "created_secret_with_tenants": {
        "secrets": {
            "create": True,
            "env": {
                "CONNECTOR_GAMEBALL_SECRET_KEY": GAMEBALL_KEY,
                "CONNECTOR_VOUCHERIFY_SECRET_KEY": VOUCHERIFY_KEY,
                "CONNECTOR_SCHEMA_REGISTRY_PASSWORD": REGISTRY_PASSWORD,
            },
            "tenantsToml": TENANTS_TOML,
        },
        "extraEnv": [{"name": "CONNECTOR_LOG_LEVEL", "value": "DEBUG"}],
    },
    "exactly_once_registry": {
        "worker": {"processingGuarantee": "exactly_once", "replicas": 3, "standbyReplicas": 2},
        "schemaRegistry": {
            "url": "http://registry.shop.svc:8080/apis/ccompat/v7",
            "username": "connector",
        },
        "clusterDomain": "k8s.example.internal",
    },
    "bridge_replicas": {"bridge": {"replicas": 3, "port": 9000}, "worker": {"port": 7077}},
}


# ----------------------------------------------------------------------------- helm itself


def _helm_works(binary: Path) -> bool:
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        return False
    try:
        out = subprocess.run(
            [str(binary), "version", "--template", "{{.Version}}"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    # `go install` builds without ldflags: the version reads v3.22 (module version, no patch).
    return out.returncode == 0 and out.stdout.strip().startswith(HELM_VERSION.rsplit(".", 1)[0])


def _text(out: str | bytes | None) -> str:
    # TimeoutExpired may carry bytes even with text=True.
    return out.decode(errors="replace") if isinstance(out, bytes) else out or ""


@pytest.fixture(scope="session")
def helm() -> Path:
    """Path of helm v3.22.0; installed with `go install` (once, under a file lock) if missing."""
    binary = HELM_DIR / "helm"
    if _helm_works(binary):
        return binary
    HELM_DIR.mkdir(parents=True, exist_ok=True)
    with open(HELM_DIR / ".install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a parallel run installs; this one waits, then reuses
        if _helm_works(binary):
            return binary
        go = shutil.which("go")
        if go is None:
            pytest.fail(f"helm missing at {binary} and no `go` on PATH to `go install` it")
        cmd = [go, "install", HELM_PACKAGE]
        try:
            proc = subprocess.run(
                cmd,
                env={**os.environ, "GOBIN": str(HELM_DIR)},
                capture_output=True,
                text=True,
                timeout=GO_INSTALL_TIMEOUT,
            )
        except subprocess.TimeoutExpired as exc:
            pytest.fail(
                f"GOBIN={HELM_DIR} {' '.join(cmd)} timed out after {GO_INSTALL_TIMEOUT} s:\n"
                f"{_text(exc.stdout)}{_text(exc.stderr)}"
            )
        if proc.returncode != 0 or not _helm_works(binary):
            pytest.fail(
                f"GOBIN={HELM_DIR} {' '.join(cmd)} exited {proc.returncode}; helm at {binary} "
                f"{'works' if _helm_works(binary) else 'is missing or broken'}:\n"
                f"{proc.stdout}{proc.stderr}"
            )
    return binary


def _run(helm: Path, args: list[str], values: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(helm), *args, "-f", "-"],
        input=yaml.safe_dump(values),
        capture_output=True,
        text=True,
        timeout=60,
    )


def _with_broker(values: dict[str, Any]) -> dict[str, Any]:
    return _merge({"kafka": {"brokerUrl": BROKER}}, values)


def _template(helm: Path, values: dict[str, Any], chart: Path = CHART, *extra: str) -> str:
    args = ["template", RELEASE, str(chart), "--namespace", NAMESPACE, *extra]
    proc = _run(helm, args, values)
    assert proc.returncode == 0, f"helm template failed:\n{proc.stderr}"
    return proc.stdout


def _template_error(helm: Path, values: dict[str, Any]) -> str:
    proc = _run(helm, ["template", RELEASE, str(CHART), "--namespace", NAMESPACE], values)
    assert proc.returncode != 0, f"helm template rendered, expected a failure:\n{proc.stdout}"
    return proc.stderr


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


@functools.cache
def _chart_defaults() -> dict[str, Any]:
    return yaml.safe_load((CHART / "values.yaml").read_text())


class Rendered:
    """The objects of one `helm template` run, and the values (chart defaults + case) behind it."""

    def __init__(self, text: str, values: dict[str, Any]) -> None:
        self.docs: list[dict[str, Any]] = [d for d in yaml.safe_load_all(text) if d]
        self.values = _merge(_chart_defaults(), values)

    def all(self, kind: str) -> list[dict[str, Any]]:
        return [d for d in self.docs if d["kind"] == kind]

    def one(self, kind: str, name: str | None = None) -> dict[str, Any]:
        found = [d for d in self.all(kind) if name is None or d["metadata"]["name"] == name]
        assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
        return found[0]

    @property
    def bridge(self) -> dict[str, Any]:
        return self.one("Deployment", f"{FULLNAME}-bridge")

    @property
    def worker(self) -> dict[str, Any]:
        return self.one("StatefulSet", f"{FULLNAME}-worker")

    def workloads(self) -> list[dict[str, Any]]:
        return [self.bridge, self.worker]

    def v(self, dotted: str) -> Any:
        node: Any = self.values
        for part in dotted.split("."):
            node = node[part]
        return node


_renders: dict[str, Rendered] = {}


def _case(helm: Path, name: str) -> Rendered:
    """The case's render, once per session (the invariant tests share it)."""
    if name not in _renders:
        values = _with_broker(CASES[name])
        _renders[name] = Rendered(_template(helm, values), values)
    return _renders[name]


@pytest.fixture(params=sorted(CASES))
def rendered(request: pytest.FixtureRequest, helm: Path) -> Rendered:
    return _case(helm, request.param)


def _pod(workload: dict[str, Any]) -> dict[str, Any]:
    return workload["spec"]["template"]


def _container(workload: dict[str, Any]) -> dict[str, Any]:
    containers = _pod(workload)["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def _env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    names = [e["name"] for e in container.get("env", [])]
    assert len(names) == len(set(names)), f"duplicate env names in {names}"
    return {e["name"]: e for e in container.get("env", [])}


def _env_value(container: dict[str, Any], name: str) -> str:
    entry = _env(container)[name]
    assert isinstance(entry.get("value"), str), f"{name}: {entry}"
    return entry["value"]


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and selector.items() <= labels.items()


def _port(container: dict[str, Any], ref: int | str) -> int:
    """A probe's or Service's port (name or number) as the container port number it names."""
    ports = container["ports"]
    if isinstance(ref, str):
        matches = [p["containerPort"] for p in ports if p.get("name") == ref]
    else:
        matches = [p["containerPort"] for p in ports if p["containerPort"] == ref]
    assert len(matches) == 1, f"port {ref!r} is not one of the container's ports {ports}"
    return matches[0]


# ----------------------------------------------------------------------------- lint


@pytest.mark.parametrize("case", sorted(CASES))
def test_helm_lint_strict(helm: Path, case: str) -> None:
    proc = _run(helm, ["lint", "--strict", str(CHART)], _with_broker(CASES[case]))
    assert proc.returncode == 0, f"helm lint failed:\n{proc.stdout}{proc.stderr}"
    assert "0 chart(s) failed" in proc.stdout
    # Lint mode turns a template's `fail` into an [INFO] line instead of an error.
    assert "Fail:" not in proc.stdout + proc.stderr, proc.stderr


# ----------------------------------------------------------------------------- bridge


def test_bridge_deployment(rendered: Rendered) -> None:
    bridge = rendered.bridge
    assert bridge["spec"]["replicas"] == rendered.v("bridge.replicas")
    c = _container(bridge)
    assert c["args"] == ["bridge"]
    port = int(_env_value(c, "CONNECTOR_BRIDGE_PORT"))
    assert port == rendered.v("bridge.port")
    ready, live = c["readinessProbe"]["httpGet"], c["livenessProbe"]["httpGet"]
    assert ready["path"] == "/readyz" and live["path"] == "/healthz"
    assert _port(c, ready["port"]) == port and _port(c, live["port"]) == port


def test_pdb_selects_the_bridge_pods(rendered: Rendered) -> None:
    pdb = rendered.one("PodDisruptionBudget", f"{FULLNAME}-bridge")
    selector = pdb["spec"]["selector"]["matchLabels"]
    assert selector == rendered.bridge["spec"]["selector"]["matchLabels"]
    assert _selects(selector, _pod(rendered.bridge)["metadata"]["labels"])
    assert not _selects(selector, _pod(rendered.worker)["metadata"]["labels"])
    # maxUnavailable: a single bridge replica must not block node drains forever.
    assert pdb["spec"]["maxUnavailable"] == 1 and "minAvailable" not in pdb["spec"]


# ----------------------------------------------------------------------------- worker


def test_worker_statefulset_keeps_its_table_store_on_a_pvc(rendered: Rendered) -> None:
    worker = rendered.worker
    assert worker["spec"]["replicas"] == rendered.v("worker.replicas")
    assert worker["spec"]["podManagementPolicy"] == "Parallel"
    c = _container(worker)
    assert c["args"] == ["worker"]
    (claim,) = worker["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["resources"]["requests"]["storage"] == rendered.v("worker.storage.size")
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    data_dir = _env_value(c, "CONNECTOR_DATA_DIR")
    assert data_dir == rendered.v("worker.dataDir")
    (mount,) = [m for m in c["volumeMounts"] if m["name"] == claim["metadata"]["name"]]
    assert mount["mountPath"] == data_dir and not mount.get("readOnly", False)
    # The claim template is the volume: no pod volume of the same name shadows it.
    assert claim["metadata"]["name"] not in {v["name"] for v in _pod(worker)["spec"]["volumes"]}


def test_worker_storage_class(helm: Path) -> None:
    def claim(storage_class: str) -> dict[str, Any]:
        values = _with_broker({"worker": {"storage": {"storageClassName": storage_class}}})
        worker = Rendered(_template(helm, values), values).worker
        return worker["spec"]["volumeClaimTemplates"][0]["spec"]

    assert "storageClassName" not in claim("")  # the cluster's default class
    assert claim("fast-ssd")["storageClassName"] == "fast-ssd"
    assert claim("-")["storageClassName"] == ""  # no dynamic provisioning


def test_worker_advertises_its_stable_per_pod_host(rendered: Rendered) -> None:
    worker = rendered.worker
    c = _container(worker)
    env = c["env"]
    names = [e["name"] for e in env]
    by_name = _env(c)
    assert by_name["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert by_name["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    headless = worker["spec"]["serviceName"]
    host = _env_value(c, "CONNECTOR_WEB_ADVERTISED_HOST")
    assert host == f"$(POD_NAME).{headless}.$(POD_NAMESPACE).svc.{rendered.v('clusterDomain')}"
    # $(VAR) expands only variables defined earlier in the list.
    advertised = names.index("CONNECTOR_WEB_ADVERTISED_HOST")
    assert names.index("POD_NAME") < advertised and names.index("POD_NAMESPACE") < advertised

    svc = rendered.one("Service", headless)
    assert svc["spec"]["clusterIP"] == "None"
    assert svc["spec"]["publishNotReadyAddresses"] is True
    assert _selects(svc["spec"]["selector"], _pod(worker)["metadata"]["labels"])

    port = int(_env_value(c, "CONNECTOR_WEB_PORT"))
    assert port == rendered.v("worker.port")
    ready, live = c["readinessProbe"]["httpGet"], c["livenessProbe"]["httpGet"]
    assert ready["path"] == "/readyz" and live["path"] == "/healthz"
    assert _port(c, ready["port"]) == port and _port(c, live["port"]) == port


def test_worker_grace_period_covers_a_clean_leave(rendered: Rendered) -> None:
    grace = _pod(rendered.worker)["spec"]["terminationGracePeriodSeconds"]
    assert grace >= 30
    assert grace == rendered.v("worker.terminationGracePeriodSeconds")


def test_worker_processing_guarantee_and_standbys(rendered: Rendered) -> None:
    c = _container(rendered.worker)
    guarantee = _env_value(c, "CONNECTOR_PROCESSING_GUARANTEE")
    assert guarantee == rendered.v("worker.processingGuarantee")
    assert guarantee in ("at_least_once", "exactly_once")
    standbys = _env_value(c, "CONNECTOR_STANDBY_REPLICAS")
    assert standbys == str(rendered.v("worker.standbyReplicas"))
    env = _env(c)
    url = rendered.v("schemaRegistry.url")
    if url:
        assert _env_value(c, "CONNECTOR_SCHEMA_REGISTRY_URL") == url
    else:
        assert "CONNECTOR_SCHEMA_REGISTRY_URL" not in env
    username = rendered.v("schemaRegistry.username")
    if username:
        assert _env_value(c, "CONNECTOR_SCHEMA_REGISTRY_USERNAME") == username
    else:
        assert "CONNECTOR_SCHEMA_REGISTRY_USERNAME" not in env


# ----------------------------------------------------------------------------- both


def test_common_settings_reach_both(rendered: Rendered) -> None:
    for workload in rendered.workloads():
        c = _container(workload)
        assert _env_value(c, "CONNECTOR_BROKER_URL") == BROKER
        assert _env_value(c, "CONNECTOR_TOPIC_PREFIX") == rendered.v("topicPrefix")
        assert _env_value(c, "CONNECTOR_PARTITIONS") == str(rendered.v("partitions"))
        assert _env_value(c, "CONNECTOR_REPLICATION_FACTOR") == str(rendered.v("replicationFactor"))
        assert c["image"] == f"loyalty-connector:{_app_version()}"
        # Service links would inject `<SERVICE>_PORT=tcp://...` variables: a release named
        # `connector` would get CONNECTOR_* names the settings reader warns about.
        assert _pod(workload)["spec"]["enableServiceLinks"] is False
        # Every CONNECTOR_* name the chart sets is one the connector reads.
        unknown = {n for n in _env(c) if n.startswith("CONNECTOR_")} - VARIABLE_NAMES
        assert not unknown, f"{workload['kind']} sets unknown settings {sorted(unknown)}"


@functools.cache
def _app_version() -> str:
    return yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]


def test_services_select_their_pods_and_target_container_ports(rendered: Rendered) -> None:
    pods = {
        "bridge": (_pod(rendered.bridge)["metadata"]["labels"], _container(rendered.bridge)),
        "worker": (_pod(rendered.worker)["metadata"]["labels"], _container(rendered.worker)),
    }
    services = rendered.all("Service")
    assert {s["metadata"]["name"] for s in services} == {
        f"{FULLNAME}-bridge",
        f"{FULLNAME}-worker",
        f"{FULLNAME}-worker-headless",
    }
    for svc in services:
        selector = svc["spec"]["selector"]
        selected = [k for k, (labels, _) in pods.items() if _selects(selector, labels)]
        assert len(selected) == 1, f"{svc['metadata']['name']} selects {selected}"
        container = pods[selected[0]][1]
        for port in svc["spec"]["ports"]:
            _port(container, port["targetPort"])
    bridge_svc = rendered.one("Service", f"{FULLNAME}-bridge")
    assert bridge_svc["spec"]["type"] == "ClusterIP"
    assert [p["port"] for p in bridge_svc["spec"]["ports"]] == [80]
    assert _port(pods["bridge"][1], bridge_svc["spec"]["ports"][0]["targetPort"]) == rendered.v(
        "bridge.port"
    )
    worker_svc = rendered.one("Service", f"{FULLNAME}-worker")
    assert worker_svc["spec"]["type"] == "ClusterIP" and "clusterIP" not in worker_svc["spec"]
    assert [p["port"] for p in worker_svc["spec"]["ports"]] == [rendered.v("worker.port")]


def test_pods_run_as_non_root_with_a_read_only_root(rendered: Rendered) -> None:
    for workload in rendered.workloads():
        spec = _pod(workload)["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] == 10001
        assert spec["securityContext"]["fsGroup"] == 10001  # the PVC (and secret files)
        assert spec["automountServiceAccountToken"] is False
        c = _container(workload)
        sc = c["securityContext"]
        assert sc["runAsNonRoot"] is True and sc["runAsUser"] == 10001
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"]["drop"] == ["ALL"]
        volumes = {v["name"]: v for v in spec["volumes"]}
        (tmp,) = [m for m in c["volumeMounts"] if m["mountPath"] == "/tmp"]
        assert "emptyDir" in volumes[tmp["name"]]


# ----------------------------------------------------------------------------- secrets


def _expected_env_secret(r: Rendered) -> str | None:
    if r.v("secrets.create"):
        return FULLNAME
    return r.v("secrets.existingSecret") or None


def test_env_comes_from_the_secret(rendered: Rendered) -> None:
    name = _expected_env_secret(rendered)
    bridge, worker = _container(rendered.bridge), _container(rendered.worker)
    if name is None:
        assert "envFrom" not in bridge
        assert "CONNECTOR_SCHEMA_REGISTRY_PASSWORD" not in _env(worker)
        assert not rendered.all("Secret")
        return
    assert bridge["envFrom"] == [{"secretRef": {"name": name}}]
    # The worker needs no provider secret: only the registry password, if the Secret has it.
    assert "envFrom" not in worker
    ref = _env(worker)["CONNECTOR_SCHEMA_REGISTRY_PASSWORD"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": name, "key": "CONNECTOR_SCHEMA_REGISTRY_PASSWORD", "optional": True}
    if rendered.v("secrets.create"):
        secret = rendered.one("Secret", name)
        assert secret["stringData"] == rendered.v("secrets.env")
        # A changed Secret rolls the pods (env from a Secret is read at container start).
        for workload in rendered.workloads():
            assert "checksum/secret" in _pod(workload)["metadata"]["annotations"]
    else:
        assert not rendered.all("Secret")  # an existing Secret is never rendered


def test_tenants_file_is_mounted_read_only(rendered: Rendered) -> None:
    bridge = rendered.bridge
    c = _container(bridge)
    created = rendered.v("secrets.create") and rendered.v("secrets.tenantsToml")
    secret_name = f"{FULLNAME}-tenants" if created else rendered.v("secrets.existingTenantsSecret")
    if not secret_name:
        assert "CONNECTOR_TENANTS_FILE" not in _env(c)
        assert all("secret" not in v for v in _pod(bridge)["spec"]["volumes"])
        return
    key = rendered.v("secrets.tenantsFileKey")
    volumes = {v["name"]: v for v in _pod(bridge)["spec"]["volumes"]}
    (volume,) = [v for v in volumes.values() if "secret" in v]
    assert volume["secret"]["secretName"] == secret_name
    assert volume["secret"]["items"] == [{"key": key, "path": key}]
    assert volume["secret"]["defaultMode"] == 0o440
    (mount,) = [m for m in c["volumeMounts"] if m["name"] == volume["name"]]
    assert mount["readOnly"] is True
    path = _env_value(c, "CONNECTOR_TENANTS_FILE")
    assert path == mount["mountPath"].rstrip("/") + "/" + key
    # The worker does not read the tenants file.
    assert "CONNECTOR_TENANTS_FILE" not in _env(_container(rendered.worker))
    if created:
        secret = rendered.one("Secret", secret_name)
        assert secret["stringData"] == {key: rendered.v("secrets.tenantsToml")}
        # Its own Secret: envFrom of the env Secret does not turn the file into a variable.
        assert key not in rendered.one("Secret", FULLNAME).get("stringData", {})


def test_no_plain_secret_value_in_any_env(rendered: Rendered) -> None:
    for workload in rendered.workloads():
        for entry in _container(workload).get("env", []):
            if entry["name"] in SECRET_VARS:
                assert "value" not in entry and "secretKeyRef" in entry["valueFrom"], entry
            value = entry.get("value", "")
            assert not any(s in value for s in PLAIN_SECRETS), entry
    # Outside the Secrets themselves, no secret value is rendered anywhere.
    others = json.dumps([d for d in rendered.docs if d["kind"] != "Secret"])
    assert not any(s in others for s in PLAIN_SECRETS)


def test_chart_refuses_a_secret_in_extra_env(helm: Path) -> None:
    # The chart's own list of secret settings matches connector/settings.py.
    text = (CHART / "templates" / "_helpers.tpl").read_text()
    start = text.index('define "loyalty-connector.secretVars"')
    block = text[start : text.index("{{- end }}", start)]
    assert set(re.findall(r'"(CONNECTOR_[A-Z_]+)"', block)) == SECRET_VARS
    for name in sorted(SECRET_VARS):
        err = _template_error(helm, _with_broker({"extraEnv": [{"name": name, "value": "x"}]}))
        assert f"{name} is a secret" in err
    ref = {"secretKeyRef": {"name": "mine", "key": "gb"}}
    ok = {"worker": {"extraEnv": [{"name": "CONNECTOR_GAMEBALL_SECRET_KEY", "valueFrom": ref}]}}
    _template(helm, _with_broker(ok))


# ----------------------------------------------------------------------------- metrics


def test_prometheus_annotations_or_service_monitors(rendered: Rendered) -> None:
    monitors = rendered.all("ServiceMonitor")
    services = rendered.all("Service")
    for workload in rendered.workloads():
        annotations = _pod(workload)["metadata"].get("annotations", {})
        port = _container(workload)["ports"][0]["containerPort"]
        if not rendered.v("serviceMonitor.enabled"):
            assert annotations["prometheus.io/scrape"] == "true"
            assert annotations["prometheus.io/port"] == str(port)
            assert annotations["prometheus.io/path"] == "/metrics"
        else:
            assert not any(k.startswith("prometheus.io/") for k in annotations)
    if not rendered.v("serviceMonitor.enabled"):
        assert monitors == []
        return
    assert len(monitors) == 2
    components = set()
    for sm in monitors:
        assert sm["apiVersion"] == "monitoring.coreos.com/v1"
        assert sm["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
        sel = sm["spec"]["selector"]
        absent = {e["key"] for e in sel["matchExpressions"] if e["operator"] == "DoesNotExist"}
        chosen = [
            s
            for s in services
            if _selects(sel["matchLabels"], s["metadata"]["labels"])
            and not absent & s["metadata"]["labels"].keys()
        ]
        # One Service each: the headless one too would scrape every worker twice.
        assert len(chosen) == 1, [s["metadata"]["name"] for s in chosen]
        (endpoint,) = sm["spec"]["endpoints"]
        assert endpoint["path"] == "/metrics"
        assert endpoint["port"] in {p["name"] for p in chosen[0]["spec"]["ports"]}
        components.add(chosen[0]["metadata"]["labels"]["app.kubernetes.io/component"])
    assert components == {"bridge", "worker"}


# ----------------------------------------------------------------------------- defaults


def test_defaults(helm: Path) -> None:
    r = _case(helm, "defaults")
    assert r.bridge["spec"]["replicas"] == 2
    assert r.worker["spec"]["replicas"] == 2
    assert _pod(r.worker)["spec"]["terminationGracePeriodSeconds"] == 60
    c = _container(r.worker)
    assert _env_value(c, "CONNECTOR_PARTITIONS") == "8"
    assert _env_value(c, "CONNECTOR_PROCESSING_GUARANTEE") == "at_least_once"
    assert _env_value(c, "CONNECTOR_WEB_PORT") == "6066"
    assert _env_value(c, "CONNECTOR_WEB_ADVERTISED_HOST").endswith(".svc.cluster.local")
    assert _env_value(_container(r.bridge), "CONNECTOR_BRIDGE_PORT") == "8080"


def test_created_secret_without_tenants_has_no_tenants_file(helm: Path) -> None:
    values = _with_broker({"secrets": {"create": True, "env": {"CONNECTOR_WIX_PUBLIC_KEY": "k"}}})
    r = Rendered(_template(helm, values), values)
    assert [s["metadata"]["name"] for s in r.all("Secret")] == [FULLNAME]
    assert "CONNECTOR_TENANTS_FILE" not in _env(_container(r.bridge))


# ----------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("broker", ["", "   "])
def test_missing_broker_url_fails(helm: Path, broker: str) -> None:
    err = _template_error(helm, {"kafka": {"brokerUrl": broker}})
    assert "kafka.brokerUrl is required" in err
    # `helm lint` by design only reports a template's `fail` (charts with required values
    # still lint): the message is there, the exit status is 0.
    proc = _run(helm, ["lint", str(CHART)], {"kafka": {"brokerUrl": broker}})
    assert "Fail: kafka.brokerUrl is required" in proc.stdout + proc.stderr


@pytest.mark.parametrize("guarantee", ["exactly-once", "at_most_once", ""])
def test_bad_processing_guarantee_fails(helm: Path, guarantee: str) -> None:
    err = _template_error(helm, _with_broker({"worker": {"processingGuarantee": guarantee}}))
    assert f'worker.processingGuarantee="{guarantee}"' in err
    assert "expected at_least_once or exactly_once" in err


def test_grace_period_below_30_fails(helm: Path) -> None:
    err = _template_error(helm, _with_broker({"worker": {"terminationGracePeriodSeconds": 29}}))
    assert "worker.terminationGracePeriodSeconds=29: must be at least 30" in err
    values = _with_broker({"worker": {"terminationGracePeriodSeconds": 30}})
    assert (
        _pod(Rendered(_template(helm, values), values).worker)["spec"][
            "terminationGracePeriodSeconds"
        ]
        == 30
    )


@pytest.mark.parametrize(
    ("secrets", "message"),
    [
        ({"create": True, "existingSecret": "mine"}, "choose one"),
        ({"tenantsToml": "[gameball.a]\n"}, "secrets.tenantsToml needs secrets.create=true"),
        ({"env": {"CONNECTOR_GAMEBALL_SECRET_KEY": "x"}}, "secrets.env needs secrets.create"),
        ({"create": True, "env": {"BAD NAME": "x"}}, "is not an environment variable name"),
    ],
)
def test_inconsistent_secrets_fail(helm: Path, secrets: dict[str, Any], message: str) -> None:
    err = _template_error(helm, _with_broker({"secrets": secrets}))
    assert message in err


# ----------------------------------------------------------------------------- NOTES.txt


def test_notes_tell_how_to_reach_bridge_and_query_a_member(helm: Path, tmp_path: Path) -> None:
    # `helm install --dry-run` (3.22) still wants a cluster and `helm template` skips NOTES.txt:
    # render it as an ordinary template (a YAML document holding the text) of a copy of the chart.
    chart = tmp_path / "loyalty-connector"
    shutil.copytree(CHART, chart)
    text = (CHART / "templates" / "NOTES.txt").read_text()
    (chart / "templates" / "zz-notes.yaml").write_text(
        '{{- define "test.notes" }}' + text + "{{- end }}\n"
        'notes: {{ include "test.notes" . | toJson }}\n'
    )
    show = ("--show-only", "templates/zz-notes.yaml")

    def notes_for(values: dict[str, Any]) -> str:
        return yaml.safe_load(_template(helm, _with_broker(values), chart, *show))["notes"]

    notes = notes_for({})
    assert f"svc/{FULLNAME}-bridge 8080:80" in notes
    assert "GET /members/{provider}/{tenant}/{customer_id}" in notes
    assert f"Service {FULLNAME}-worker, port 6066" in notes
    assert f"http://{FULLNAME}-worker.{NAMESPACE}.svc.cluster.local:6066/members/" in notes
    assert "no Secret configured" in notes
    assert "sit idle" not in notes
    crowded = notes_for({"worker": {"replicas": 10}})
    assert "10 workers for 8 partitions" in crowded and "other 2 sit idle" in crowded
