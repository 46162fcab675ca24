"""deployments/k8s/model-server.yaml: parsed, the required fields present and wired together.

No cluster runs here: the manifests are checked the way the API server would
reject them (kinds, selectors, ports, probes) and against the platform they
run (the probe paths, the metric names the server exports, the autoscaler's
defaults).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from serving.autoscaler import AutoscalePolicy

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = ROOT / "deployments" / "k8s" / "model-server.yaml"


@pytest.fixture(scope="module")
def docs() -> dict[str, dict[str, Any]]:
    found = {d["kind"]: d for d in yaml.safe_load_all(MANIFEST.read_text()) if d}
    assert set(found) == {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"}
    for doc in found.values():
        assert doc["apiVersion"] and doc["metadata"]["name"] == "mlops-model-server"
    return found


def _container(docs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    (container,) = docs["Deployment"]["spec"]["template"]["spec"]["containers"]
    return dict(container)


def test_deployment_selects_its_pods_and_rolls_one_at_a_time(docs: dict[str, dict[str, Any]]) -> None:
    spec = docs["Deployment"]["spec"]
    labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    assert spec["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    container = _container(docs)
    assert container["command"][:2] == ["mlops", "serve"] and "0.0.0.0" in container["command"]
    assert {"name": "http", "containerPort": 8080, "protocol": "TCP"} in container["ports"]
    assert container["resources"]["requests"]["cpu"]  # the HPA's CPU utilisation needs a request
    assert {"secretRef": {"name": "mlops-model-server"}} in container["envFrom"]


def test_probes_use_the_open_inference_protocol_health_routes(docs: dict[str, dict[str, Any]]) -> None:
    container = _container(docs)
    assert container["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    assert container["startupProbe"]["httpGet"]["path"] == "/v2/health/ready"


def test_service_targets_the_named_port(docs: dict[str, dict[str, Any]]) -> None:
    spec = docs["Service"]["spec"]
    pod_labels = docs["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert spec["selector"].items() <= pod_labels.items()
    assert spec["ports"][0]["targetPort"] == "http"


def test_hpa_scales_on_cpu_and_latency_like_the_local_autoscaler(docs: dict[str, dict[str, Any]]) -> None:
    spec = docs["HorizontalPodAutoscaler"]["spec"]
    defaults = AutoscalePolicy()
    assert spec["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "mlops-model-server",
    }
    assert (spec["minReplicas"], spec["maxReplicas"]) == (defaults.min_replicas, defaults.max_replicas)
    metrics = {
        m["type"] + ":" + (m.get("resource") or m["pods"]["metric"])["name"]: m for m in spec["metrics"]
    }
    cpu = metrics["Resource:cpu"]["resource"]["target"]
    assert cpu == {"type": "Utilization", "averageUtilization": int(defaults.target_cpu_percent or 0)}
    latency = metrics["Pods:mlops_request_latency_p95_seconds"]["pods"]["target"]
    assert latency == {"type": "AverageValue", "averageValue": f"{int(defaults.target_p95_ms or 0)}m"}
    assert "Pods:mlops_in_flight_requests" in metrics
    behavior = spec["behavior"]
    assert behavior["scaleUp"]["stabilizationWindowSeconds"] == defaults.scale_up_window_s
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] == defaults.scale_down_window_s


def test_metric_names_are_the_ones_the_server_exports() -> None:
    from serving.metrics import ServingMetrics

    text = ServingMetrics().render().decode()
    assert "mlops_in_flight_requests" in text
    assert "mlops_request_latency_seconds" in text  # the adapter derives the p95 from this histogram
