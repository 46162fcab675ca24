"""Governance reports: everything the platform can prove about a model version, as JSON and a model card.

The report gathers what is stored, it does not recompute: the version's
metrics and lineage, the declared domain, use case and EU AI Act risk level,
the newest bias report, the newest drift check, approvals, and a fresh
compliance check per framework.

Example:
    >>> import tempfile
    >>> from storage.registry.core import Registry
    >>> from tasks.governance.report import governance_report, model_card
    >>> home = tempfile.mkdtemp()
    >>> reg = Registry.open(f"sqlite:///{home}/m.db", f"{home}/a")
    >>> _ = reg.create_model("credit", tags={"domain": "finance", "use_case": "credit scoring"})
    >>> _ = reg.create_version("credit", framework="sklearn", metrics={"auc": 0.91})
    >>> report = governance_report(reg, "credit", 1, frameworks=["GDPR"])
    >>> report["risk"]["level"]
    'high'
    >>> "# Model card: credit version 1" in model_card(report)
    True
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact

from blocks.settings import get_settings
from storage.governance.lineage import LineageStore
from storage.governance.reports import ReportStore
from storage.objectstore import Place
from storage.registry.approvals import ApprovalStore
from storage.registry.core import Registry
from storage.registry.reads import VersionRef
from tasks.console_links import console_line
from tasks.governance.compliance import check_compliance
from tasks.governance.risk import model_risk
from tasks.registry.steps import open_registry


def _report(registry: Registry, kind: str, model: str, number: int) -> dict[str, Any] | None:
    found = ReportStore(registry).latest(kind, model, number)
    if found is None:
        return None
    return {"passed": found.passed, "summary": found.summary, "at": found.created_at.isoformat()}


def governance_report(
    registry: Registry,
    model: str,
    version: VersionRef | None = None,
    *,
    frameworks: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The governance report of a version (default: production, else the newest) as JSON-ready data.

    ``frameworks`` None checks every compliance framework; an empty list checks
    none (a card that shows stored compliance reports instead, as the console
    does: a fresh check verifies the whole audit chain once per framework).
    """
    ref = version if version is not None else _default_version(registry, model)
    mv = registry.get_version(model, ref)
    info = registry.get_model(model)
    risk = model_risk(registry, model, mv.number)
    skip = frameworks is not None and len(frameworks) == 0
    compliance = None if skip else check_compliance(registry, model, mv.number, frameworks)
    lineage: dict[str, Any] = next(
        (v for v in LineageStore(registry).model_lineage(model)["versions"] if v["number"] == mv.number), {}
    )
    approvals = [
        r.to_dict() | {"approvals": r.approvals}
        for r in ApprovalStore(registry).list(model=model, limit=1000)
        if r.version == mv.number
    ]
    return {
        "model": model,
        "version": mv.number,
        "semver": mv.semver,
        "stage": mv.stage,
        "aliases": list(mv.aliases),
        "description": info.description,
        "owner": info.owner,
        "intended_use": info.tags.get("intended_use", ""),
        "domain": info.tags.get("domain"),
        "use_case": info.tags.get("use_case"),
        "risk": risk.to_dict() if risk else {"level": None, "reasons": ["domain and use case not declared"]},
        "metrics": mv.metrics,
        "framework": mv.framework,
        "data": {
            "training_dataset": mv.dataset_uri,
            "hash": mv.dataset_hash,
            "datasets": lineage.get("datasets", []),
            "feature_groups": lineage.get("feature_groups", []),
            "run": lineage.get("run"),
        },
        "explainer": mv.extra.get("explainer"),
        "bias": _report(registry, "bias_report", model, mv.number),
        "monitoring": _report(registry, "drift_check", model, mv.number),
        "approvals": approvals,
        "compliance": [f.to_dict() for f in compliance.frameworks] if compliance else [],
    }


def _default_version(registry: Registry, model: str) -> VersionRef:
    production = registry.search_versions(model=model, stage="production", page_size=1).items
    return production[0].number if production else "latest"


def model_card(report: dict[str, Any]) -> str:
    """A readable Markdown model card of a governance report."""
    risk = report["risk"]
    lines = [
        f"# Model card: {report['model']} version {report['version']} ({report['semver']})",
        "",
        f"- **stage**: {report['stage']}; aliases: {', '.join(report['aliases']) or '-'}",
        f"- **owner**: {report['owner'] or '-'}",
        f"- **intended use**: {report['intended_use'] or '-'}",
        f"- **domain / use case**: {report['domain'] or '-'} / {report['use_case'] or '-'}",
        f"- **EU AI Act risk level**: {risk.get('level') or 'not declared'}",
        "",
        "## Metrics",
        "",
        *[f"- {k}: {v:.6g}" for k, v in sorted(report["metrics"].items())],
        "",
        "## Data",
        "",
        f"- training dataset: {report['data'].get('training_dataset') or 'not recorded'}",
        *[
            f"- {d['name']}: {d['source']}, PII: {'yes' if d['contains_pii'] else 'no'}, "
            f"retention: {d['retention_days'] or '-'} days"
            for d in report["data"].get("datasets", [])
        ],
        "",
        "## Evidence",
        "",
        f"- bias: {_evidence_line(report['bias'])}",
        f"- monitoring (drift): {_evidence_line(report['monitoring'])}",
        f"- explainer: {json.dumps(report['explainer']) if report['explainer'] else 'none configured'}",
        f"- approval requests: {len(report['approvals'])}"
        + "".join(f"; #{a['id']} {a['status']} ({a['approvals']} approvals)" for a in report["approvals"]),
        "",
        "## Compliance",
        "",
        "| framework | score | failing rules |",
        "|---|---|---|",
        *[
            f"| {f['framework']} | {f['score']:.0%} | "
            + ("; ".join(r["rule_id"] for r in f["results"] if r["status"] == "failed") or "-")
            + " |"
            for f in report["compliance"]
        ],
    ]
    return "\n".join(lines) + "\n"


def _evidence_line(found: dict[str, Any] | None) -> str:
    if found is None:
        return "no report recorded"
    return f"{'passed' if found['passed'] else 'FAILED'} — {found['summary']} ({found['at']})"


def report_place(out_dir: str | os.PathLike[str] | None = None) -> Place:
    """Where governance reports go: ``out_dir`` (a folder or fsspec URL), else ``<report root>/governance``.

    Example:
        >>> report_place("s3://bucket/reports").url
        's3://bucket/reports'
    """
    return Place(out_dir if out_dir is not None else f"{get_settings().resolved_report_root()}/governance")


def write_governance_report(
    report: dict[str, Any], out_dir: str | os.PathLike[str] | None = None
) -> tuple[str, str]:
    """Write ``<model>-v<n>-governance.json`` and ``...-model-card.md`` atomically; return their URIs.

    ``out_dir`` is a folder or any fsspec URL (``s3://bucket/reports``); by
    default the reports go to ``governance`` under the settings' report root
    (``MLOPS_STORAGE_URL``'s ``reports``, else ``MLOPS_HOME/reports``).
    """
    place = report_place(out_dir)
    stem = f"{report['model'].replace('/', '_')}-v{report['version']}"
    paths = (place.path(f"{stem}-governance.json"), place.path(f"{stem}-model-card.md"))
    texts = (json.dumps(report, indent=2, default=str), model_card(report))
    for path, text in zip(paths, texts, strict=True):
        place.write_bytes(path, text.encode())
    return place.uri(paths[0]), place.uri(paths[1])


@task(name="export-governance-report")
def export_governance_report(
    model: str,
    version: VersionRef | None = None,
    out_dir: str | None = None,
    *,
    frameworks: Sequence[str] | None = None,
    registry_block: str | None = None,
) -> dict[str, str]:
    """Write the JSON report and the model card (see :func:`write_governance_report`), publish the card."""
    report = governance_report(open_registry(registry_block), model, version, frameworks=frameworks)
    json_uri, card_uri = write_governance_report(report, out_dir)
    key = f"model-card-{model}-v{report['version']}".lower().replace("_", "-").replace("/", "-")
    markdown = model_card(report)
    link = console_line("version", model, report["version"])
    if link:
        markdown += f"\n{link}\n"
    create_markdown_artifact(markdown=markdown, key=key, description=f"{model} governance report")
    return {"json": json_uri, "model_card": card_uri, "artifact": key}
