"""``mlops registry tag / untag``: tags on models and versions, audited, and the AI Act risk they declare."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import torch
from typer.testing import CliRunner, Result

from mlops.cli import app
from storage.registry.core import Registry
from tasks.governance.risk import model_risk


def run(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def ok(*args: str) -> Result:
    result = run(*args)
    assert result.exit_code == 0, f"{args}: {result.output}"
    return result


def test_tag_and_untag_a_model_and_a_version_with_audit_entries() -> None:
    ok("registry", "create", "fraud")
    ok("registry", "register", "fraud", "--framework", "sklearn")
    out = ok("registry", "tag", "fraud", "domain=finance", "use_case=credit scoring", "--json").stdout
    assert json.loads(out)["tags"] == {"domain": "finance", "use_case": "credit scoring"}
    ok("registry", "tag", "fraud", "--version", "1", "reviewed=yes")
    registry = Registry.from_settings()
    assert registry.get_version("fraud", 1).tags["reviewed"] == "yes"
    assert model_risk(registry, "fraud") is not None
    assert model_risk(registry, "fraud").level == "high"  # type: ignore[union-attr]

    out = ok("registry", "untag", "fraud", "use_case", "nothing", "--json").stdout
    assert json.loads(out)["removed"] == ["use_case"]
    assert "had no tag: nothing" in ok("registry", "untag", "fraud", "nothing").stdout
    ok("registry", "untag", "fraud", "reviewed", "--version", "1")
    assert "reviewed" not in registry.get_version("fraud", 1).tags
    assert model_risk(registry, "fraud") is None

    actions = [e["action"] for e in json.loads(ok("audit", "log", "--json").stdout)]
    assert {"model.tag", "version.tag", "model.untag", "version.untag"} <= set(actions)
    assert ok("audit", "verify").exit_code == 0


def test_version_tags_declare_the_risk_of_that_version() -> None:
    ok("registry", "create", "triage")
    ok("registry", "register", "triage", "--framework", "sklearn")
    ok("registry", "register", "triage", "--framework", "sklearn")
    ok("registry", "tag", "triage", "domain=retail", "use_case=product recommendations")
    ok("registry", "tag", "triage", "--version", "2", "domain=health", "use_case=patient triage")
    registry = Registry.from_settings()
    assert model_risk(registry, "triage", 1).level == "minimal"  # type: ignore[union-attr]
    assert model_risk(registry, "triage", 2).level == "high"  # type: ignore[union-attr]


def test_tag_errors_are_reported_without_a_traceback() -> None:
    result = run("registry", "tag", "ghost", "a=b")
    assert result.exit_code == 1 and "ghost" in result.stderr
    result = run("registry", "tag", "ghost", "novalue")
    assert result.exit_code != 0


def _onnx_file(path: Path, outputs: int, softmax: bool) -> Path:
    torch.manual_seed(0)
    layers: list[torch.nn.Module] = [torch.nn.Linear(3, outputs)]
    if softmax:
        layers.append(torch.nn.Softmax(dim=1))
    axes = {"x": {0: "N"}, "out": {0: "N"}}
    net = torch.nn.Sequential(*layers).eval()
    torch.onnx.export(
        net,
        (torch.zeros(1, 3),),
        path,
        input_names=["x"],
        output_names=["out"],
        dynamic_axes=axes,
        dynamo=False,
    )
    return path


def test_import_infers_checks_and_registers(tmp_path: Path) -> None:
    model = _onnx_file(tmp_path / "model.onnx", 2, softmax=True)
    sample = tmp_path / "rows.csv"
    pd.DataFrame({"age": [31.0, 54.0], "amount": [10.5, 99.0], "score": [0.1, 0.9]}).to_csv(
        sample, index=False
    )
    out = ok(
        "registry", "import", "churn", str(model), "--sample", str(sample), "--tag", "team=growth", "--json"
    )
    found = json.loads(out.stdout)
    assert found["runtime"] == "onnx" and found["sample_rows"] == 2
    sig = found["version"]["signature"]
    assert [c["name"] for c in sig["inputs"]] == ["age", "amount", "score"]
    assert sig["task"] == "classification" and sig["classes"] == [0, 1]
    assert found["version"]["tags"] == {"team": "growth", "imported_from": "model.onnx"}
    assert "served by onnx" in ok("registry", "import", "churn", str(model), "--sample", str(sample)).stdout


def test_import_refuses_an_ambiguous_model_and_says_how_to_declare_it(tmp_path: Path) -> None:
    model = _onnx_file(tmp_path / "model.onnx", 1, softmax=False)
    result = run("registry", "import", "price", str(model))
    assert result.exit_code == 1
    assert '"role": "label|probabilities|logits|regression|ignore"' in result.stderr
    signature = tmp_path / "sig.yaml"
    signature.write_text("outputs:\n  - {name: out, role: regression}\n")
    found = json.loads(
        ok("registry", "import", "price", str(model), "--signature", str(signature), "--json").stdout
    )
    assert found["version"]["signature"]["task"] == "regression"
    assert json.loads(ok("registry", "import", "price", str(model), "--task", "regression", "--json").stdout)
