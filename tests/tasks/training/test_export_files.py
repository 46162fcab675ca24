"""A version's exported files copied to a folder or an object store URL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from storage.objectstore import Place
from tasks.training.export import write_version_files


@pytest.fixture(params=["local", "s3"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A local folder, and a bucket on the test's S3 server."""
    return str(tmp_path / "exports") if request.param == "local" else str(request.getfixturevalue("s3_url"))


def test_version_files_land_under_model_and_version(target: str) -> None:
    files = {"model.onnx": b"\x08\x01onnx", "model.skops": b"skops-bytes"}
    out = write_version_files(target, "churn", 3, files, {"metrics": {"auc": 0.9}, "version": 3})
    assert out == f"{target}/churn/v3"
    place = Place(out)
    assert place.names() == ["model.onnx", "model.skops", "version.json"]
    assert place.read_bytes(place.path("model.onnx")) == files["model.onnx"]
    assert json.loads(place.read_bytes(place.path("version.json")))["metrics"] == {"auc": 0.9}
    again = write_version_files(target, "churn", 3, {"model.onnx": b"new"}, {"version": 3})
    assert again == out and place.read_bytes(place.path("model.onnx")) == b"new"
