"""Offline-store tests run on a local folder and on S3 (moto's server): the ``offline_root`` fixture."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(params=["local", "s3"])
def offline_root(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh offline-store root: a local folder, then ``s3://<fresh bucket>/mlops/features``."""
    if request.param == "s3":
        return f"{request.getfixturevalue('s3_url')}/features"
    return str(tmp_path / "features")


@pytest.fixture
def storage_url(offline_root: str) -> str | None:
    """``MLOPS_STORAGE_URL`` for the parametrized root: None locally, the S3 URL on S3."""
    return offline_root.removesuffix("/features") if offline_root.startswith("s3://") else None
