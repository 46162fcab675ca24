"""deployments/k8s/: every manifest valid against Kubernetes' OpenAPI schema, and wired together.

The schema check runs offline: kubernetes-validate ships the JSON schemas of
each Kubernetes version inside the package, and the tests that use it block
every socket so a schema fetched from the network would fail them. Strict
mode rejects fields the API does not know (the API server would drop a
misspelt field without a word). The wiring checks are plain functions that
return the problems they find, so a broken copy of a manifest shows each one
can fail: selectors select the pods, Services and probes reach ports the
containers open, every ``MLOPS_*`` variable is a setting the platform reads,
and all parts share one database, one object store, one Dask scheduler and
one Prefect work pool.
"""

from __future__ import annotations

import copy
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import ValidationError, all_versions
from pydantic_settings import BaseSettings

from blocks.settings import MlopsSettings
from service.config import ServiceSettings
from serving.config import ServeSettings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deployments" / "k8s"
KUSTOMIZATION = K8S / "kustomization.yaml"
#: A Kubernetes version whose schemas kubernetes-validate ships (checked below).
K8S_VERSION = "1.33.0"
#: The image built from this repository (deployments/README.md); no registry host.
IMAGE = "dwcp-mlops"
SHARED_CONFIGMAP = "mlops-settings"
SHARED_SECRET = "mlops-platform"
#: Secrets created with kubectl (never kept in the repository) and the keys they hold.
SECRETS = {
    SHARED_SECRET: {"MLOPS_DATABASE_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"},
    "mlops-model-server": {"MLOPS_SERVE_ADMIN_KEY", "MLOPS_SERVE_API_KEYS"},
}
SETTINGS_CLASSES: tuple[type[BaseSettings], ...] = (MlopsSettings, ServeSettings, ServiceSettings)
#: ``MLOPS_*`` names the platform reads with ``os.environ`` rather than a settings class,
#: and the file that reads each (checked, so the list cannot outlive the code).
DIRECT_ENV = {
    "MLOPS_DASK_ADDRESS": "tasks/cluster.py",
    "MLOPS_SERVE_URL": "tasks/rollout/steps.py",
}
#: Settings that would take one part of the platform out of MLOPS_STORAGE_URL.
PART_ROOTS = {
    "MLOPS_ARTIFACT_ROOT",
    "MLOPS_FEATURE_ROOT",
    "MLOPS_PREDICTION_LOG_ROOT",
    "MLOPS_GROUND_TRUTH_ROOT",
}
OBJECT_STORE_ENV = {"AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"}

Doc = dict[str, Any]


# ------------------------------------------------------------------ loading
def manifest_files() -> list[Path]:
    """The Kubernetes manifests (everything but the kustomization)."""
    return sorted(p for p in K8S.glob("*.yaml") if p != KUSTOMIZATION)


def load_docs() -> list[Doc]:
    """Every object of every manifest, in file order."""
    return [d for path in manifest_files() for d in yaml.safe_load_all(path.read_text()) if d]


def _ids(doc: Doc) -> str:
    return f"{doc['kind']}/{doc['metadata']['name']}"


def of_kind(docs: list[Doc], kind: str) -> dict[str, Doc]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def containers(docs: list[Doc]) -> Iterator[tuple[Doc, dict[str, Any]]]:
    """Each Deployment with each of its containers."""
    for deployment in of_kind(docs, "Deployment").values():
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            yield deployment, container


def env_values(container: dict[str, Any], docs: list[Doc]) -> dict[str, str | None]:
    """The variables a container gets: ConfigMap values, Secret keys (value None), its own env."""
    configmaps = of_kind(docs, "ConfigMap")
    found: dict[str, str | None] = {}
    for source in container.get("envFrom") or []:
        if ref := source.get("configMapRef"):
            found |= dict(configmaps.get(ref["name"], {}).get("data") or {})
        if ref := source.get("secretRef"):
            found |= dict.fromkeys(SECRETS.get(ref["name"], set()))
    for var in container.get("env") or []:
        found[var["name"]] = var.get("value")
    return found


# ------------------------------------------------------------------ wiring checks
def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and selector.items() <= labels.items()


def selector_problems(docs: list[Doc]) -> list[str]:
    """Deployments select their own pods; each Service/PDB selects one workload; HPAs target one."""
    problems = []
    pods = {
        name: d["spec"]["template"]["metadata"]["labels"] for name, d in of_kind(docs, "Deployment").items()
    }
    for name, d in of_kind(docs, "Deployment").items():
        if not _selects(d["spec"]["selector"]["matchLabels"], pods[name]):
            problems.append(f"Deployment/{name}: selector does not match its pod labels")
    for kind, path in (("Service", ("selector",)), ("PodDisruptionBudget", ("selector", "matchLabels"))):
        for name, d in of_kind(docs, kind).items():
            selector = d["spec"]
            for key in path:
                selector = selector.get(key) or {}
            chosen = [p for p, labels in pods.items() if _selects(selector, labels)]
            if len(chosen) != 1:
                problems.append(f"{kind}/{name}: selector {selector} matches {chosen or 'no'} Deployment(s)")
    for name, d in of_kind(docs, "HorizontalPodAutoscaler").items():
        target = d["spec"]["scaleTargetRef"]
        if target["kind"] != "Deployment" or target["name"] not in pods:
            problems.append(f"HorizontalPodAutoscaler/{name}: no Deployment {target['name']!r}")
    return problems


def _port_of(ports: list[dict[str, Any]], ref: int | str) -> dict[str, Any] | None:
    return next((p for p in ports if ref in (p.get("name"), p["containerPort"])), None)


def port_problems(docs: list[Doc]) -> list[str]:
    """Service target ports and probe ports are ports the selected containers open."""
    problems = []
    pod_ports: dict[str, list[dict[str, Any]]] = {}
    for deployment, container in containers(docs):
        ports = list(container.get("ports") or [])
        pod_ports.setdefault(deployment["metadata"]["name"], []).extend(ports)
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            action = (container.get(probe) or {}).get("httpGet") or (container.get(probe) or {}).get(
                "tcpSocket"
            )
            if action and _port_of(ports, action["port"]) is None:
                problems.append(
                    f"{container['name']}: {probe} port {action['port']!r} is not a container port"
                )
    labels = {n: d["spec"]["template"]["metadata"]["labels"] for n, d in of_kind(docs, "Deployment").items()}
    for name, service in of_kind(docs, "Service").items():
        chosen = [p for p, pod in labels.items() if _selects(service["spec"]["selector"], pod)]
        opened = [p for c in chosen for p in pod_ports[c]]
        for port in service["spec"]["ports"]:
            target = _port_of(opened, port.get("targetPort", port["port"]))
            if target is None or target.get("protocol", "TCP") != port.get("protocol", "TCP"):
                problems.append(
                    f"Service/{name}: port {port['port']} targets no {port.get('protocol', 'TCP')} port"
                )
    return problems


def known_settings() -> set[str]:
    """Every ``MLOPS_*`` variable the settings classes read, with their prefixes."""
    names = set(DIRECT_ENV)
    for cls in SETTINGS_CLASSES:
        prefix = str(cls.model_config.get("env_prefix", ""))
        names |= {f"{prefix}{field}".upper() for field in cls.model_fields}
    return names


def env_problems(docs: list[Doc]) -> list[str]:
    """MLOPS_* names the platform does not read, part roots out of the store, missing shared refs."""
    problems = []
    known = known_settings()
    configmaps = of_kind(docs, "ConfigMap")
    for _, container in containers(docs):
        where = f"container {container['name']}"
        refs = [(k, v["name"]) for s in container.get("envFrom") or [] for k, v in s.items()]
        refs += [
            ("secretRef", v["valueFrom"]["secretKeyRef"]["name"])
            for v in container.get("env") or []
            if "valueFrom" in v
        ]
        for kind, name in refs:
            if (kind == "configMapRef" and name not in configmaps) or (
                kind == "secretRef" and name not in SECRETS
            ):
                problems.append(f"{where}: {kind} {name!r} is neither a manifest nor a documented Secret")
        if not {("configMapRef", SHARED_CONFIGMAP), ("secretRef", SHARED_SECRET)} <= set(refs):
            problems.append(f"{where}: lacks the shared settings ({SHARED_CONFIGMAP}, {SHARED_SECRET})")
        env = env_values(container, docs)
        problems += [
            f"{where}: {n} is not a setting the platform reads"
            for n in env
            if n.startswith("MLOPS_") and n not in known
        ]
        problems += [
            f"{where}: {n} takes a part out of MLOPS_STORAGE_URL" for n in sorted(PART_ROOTS & set(env))
        ]
    return problems


# ------------------------------------------------------------------ schema, offline
@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to open a connection fails the test."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"network access during schema validation: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def validate(doc: Doc) -> str:
    """Validate one object strictly against the shipped schema; the version used."""
    return str(kubernetes_validate.validate(doc, K8S_VERSION, strict=True))


def test_the_package_ships_the_chosen_version() -> None:
    assert K8S_VERSION in all_versions(), all_versions()


@pytest.mark.parametrize("doc", load_docs(), ids=_ids)
def test_manifest_is_valid_against_the_kubernetes_schema(doc: Doc, offline: None) -> None:
    assert validate(doc) == K8S_VERSION.rsplit(".", 1)[0]


def test_the_validator_rejects_a_misspelt_field_and_a_wrong_type(offline: None) -> None:
    deployment = of_kind(load_docs(), "Deployment")["mlops-server"]
    misspelt = copy.deepcopy(deployment)
    port = misspelt["spec"]["template"]["spec"]["containers"][0]["ports"][0]
    port["containerport"] = port.pop("containerPort")
    with pytest.raises(ValidationError) as caught:
        validate(misspelt)
    assert "containerport" in caught.value.message or "containerPort" in caught.value.message
    wrong_type = copy.deepcopy(deployment)
    wrong_type["spec"]["replicas"] = "two"
    with pytest.raises(ValidationError):
        validate(wrong_type)


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load(KUSTOMIZATION.read_text())
    assert kustomization["kind"] == "Kustomization"
    assert sorted(kustomization["resources"]) == [p.name for p in manifest_files()]


# ------------------------------------------------------------------ wiring
def test_selectors_match_the_pod_labels() -> None:
    assert selector_problems(load_docs()) == []


def test_services_and_probes_reach_container_ports() -> None:
    assert port_problems(load_docs()) == []


def test_every_mlops_variable_is_a_setting_and_every_part_shares_the_settings() -> None:
    assert env_problems(load_docs()) == []


def test_the_wiring_checks_catch_broken_copies() -> None:
    docs = load_docs()
    misselected = copy.deepcopy(docs)
    of_kind(misselected, "Service")["mlops-server"]["spec"]["selector"] = {
        "app.kubernetes.io/name": "mlops-srever"
    }
    assert any(p.startswith("Service/mlops-server: selector") for p in selector_problems(misselected))
    mistargeted = copy.deepcopy(docs)
    of_kind(mistargeted, "Service")["mlops-server"]["spec"]["ports"][0]["targetPort"] = "htp"
    assert port_problems(mistargeted) == ["Service/mlops-server: port 80 targets no TCP port"]
    misnamed = copy.deepcopy(docs)
    (container,) = [c for _, c in containers(misnamed) if c["name"] == "platform-service"]
    container["env"].append({"name": "MLOPS_DATABSE_URL", "value": "postgresql+psycopg://db/mlops"})
    container["env"].append({"name": "MLOPS_ARTIFACT_ROOT", "value": "/data"})
    container["envFrom"] = container["envFrom"][:1]
    assert env_problems(misnamed) == [
        f"container platform-service: lacks the shared settings ({SHARED_CONFIGMAP}, {SHARED_SECRET})",
        "container platform-service: MLOPS_DATABSE_URL is not a setting the platform reads",
        "container platform-service: MLOPS_ARTIFACT_ROOT takes a part out of MLOPS_STORAGE_URL",
    ]


def test_direct_settings_are_read_where_listed() -> None:
    for name, path in DIRECT_ENV.items():
        assert f'"{name}"' in (ROOT / path).read_text(), f"{path} no longer reads {name}"


def test_settings_values_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each container's literal values pass the settings classes' own validation."""
    docs = load_docs()
    for _, container in containers(docs):
        for name in [n for n in os.environ if n.startswith("MLOPS_")]:
            monkeypatch.delenv(name)
        for name, value in env_values(container, docs).items():
            if value is not None:
                monkeypatch.setenv(name, value)
        for cls in SETTINGS_CLASSES:
            cls()


def test_images_are_the_repository_image_without_a_registry() -> None:
    for _, container in containers(load_docs()):
        name, _, tag = container["image"].partition(":")
        assert name == IMAGE and tag, f"{container['name']}: image {container['image']!r}"


def test_documented_secrets_match_what_the_manifests_read() -> None:
    text = "\n".join(p.read_text() for p in manifest_files())
    for name, keys in SECRETS.items():
        assert f"kubectl create secret generic {name}" in text, f"no instructions to create Secret {name}"
        for key in keys:
            assert f"--from-literal={key}=" in text, f"Secret {name}: {key} undocumented"


def test_object_store_and_database_reach_every_platform_container() -> None:
    docs = load_docs()
    settings = of_kind(docs, "ConfigMap")[SHARED_CONFIGMAP]["data"]
    store = urlparse(settings["MLOPS_STORAGE_URL"])
    assert store.scheme == "s3" and store.netloc and store.path.strip("/"), settings["MLOPS_STORAGE_URL"]
    for _, container in containers(docs):
        env = env_values(container, docs)
        missing = ({"MLOPS_STORAGE_URL", "MLOPS_DATABASE_URL"} | OBJECT_STORE_ENV) - set(env)
        assert not missing, f"{container['name']} lacks {missing}"
    assert "postgresql+psycopg://" in (K8S / "config.yaml").read_text()


def _service_url(docs: list[Doc], url: str) -> tuple[Doc, int]:
    parsed = urlparse(url)
    service = of_kind(docs, "Service").get(str(parsed.hostname))
    assert service is not None, f"{url}: no Service {parsed.hostname!r}"
    port = parsed.port or {"http": 80, "https": 443}.get(parsed.scheme)
    assert port in [p["port"] for p in service["spec"]["ports"]], f"{url}: Service has no port {port}"
    return service, int(port or 0)


def test_dask_address_is_the_scheduler_service_and_the_workers_use_it() -> None:
    docs = load_docs()
    address = of_kind(docs, "ConfigMap")[SHARED_CONFIGMAP]["data"]["MLOPS_DASK_ADDRESS"]
    service, port = _service_url(docs, address)
    assert service["metadata"]["name"] == "mlops-dask-scheduler"
    by_name = {c["name"]: c for _, c in containers(docs)}
    scheduler = by_name["dask-scheduler"]["command"]
    assert scheduler[:2] == ["dask", "scheduler"]
    assert scheduler[scheduler.index("--port") + 1] == str(port)
    worker = by_name["dask-worker"]["command"]
    assert worker[:3] == ["dask", "worker", address]
    assert "PREFECT_API_URL" in env_values(by_name["dask-worker"], docs)


def test_prefect_worker_polls_the_pool_of_every_deployment() -> None:
    docs = load_docs()
    (worker,) = [c for _, c in containers(docs) if c["name"] == "prefect-worker"]
    command = worker["command"]
    assert command[:3] == ["python", "-m", "mlops.prefect_worker"]  # a process worker
    pool = command[command.index("--pool") + 1]
    deployments = yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]
    assert {d["work_pool"]["name"] for d in deployments} == {pool}
    env = env_values(worker, docs)
    assert urlparse(str(env["PREFECT_API_URL"])).path == "/api"
    _service_url(docs, str(env["MLOPS_SERVE_URL"]))
    assert "MLOPS_SERVE_ADMIN_KEY" in env


def test_platform_service_listens_where_probed_and_the_health_route_answers(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from service.app import API_PREFIX, create_app

    docs = load_docs()
    (container,) = [c for _, c in containers(docs) if c["name"] == "platform-service"]
    env = env_values(container, docs)
    settings = ServiceSettings(host=str(env["MLOPS_SERVER_HOST"]), port=int(str(env["MLOPS_SERVER_PORT"])))
    assert settings.host == "0.0.0.0"
    assert _port_of(container["ports"], "http") == {
        "name": "http",
        "containerPort": settings.port,
        "protocol": "TCP",
    }
    paths = {container[p]["httpGet"]["path"] for p in ("startupProbe", "readinessProbe", "livenessProbe")}
    assert paths == {f"{API_PREFIX}/health"}
    app = create_app(settings=MlopsSettings(home=tmp_path))
    assert TestClient(app).get(f"{API_PREFIX}/health").status_code == 200
