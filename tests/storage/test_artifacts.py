"""The content-addressed artifact store."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from storage.artifacts import ArtifactStore, validate_artifact_name
from storage.errors import IntegrityError, NotFoundError, ValidationError


def test_put_and_get_are_content_addressed(artifact_store: ArtifactStore) -> None:
    ref = artifact_store.put_bytes(b"hello")
    assert ref.sha256 == hashlib.sha256(b"hello").hexdigest() and ref.size == 5
    assert artifact_store.put_bytes(b"hello") == ref
    assert artifact_store.get_bytes(ref.sha256) == b"hello"
    assert not list((Path(artifact_store.root) / "tmp").iterdir())


def test_put_file_streams(artifact_store: ArtifactStore, tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(b"\x01" * (3 << 20) + b"tail")
    ref = artifact_store.put_file(big)
    assert ref.sha256 == hashlib.sha256(big.read_bytes()).hexdigest()
    out = artifact_store.download(ref.sha256, tmp_path / "out" / "copy.bin")
    assert out.read_bytes() == big.read_bytes()


def test_flipped_byte_raises_integrity_error(artifact_store: ArtifactStore) -> None:
    ref = artifact_store.put_bytes(b"model weights")
    path = Path(artifact_store.path_of(ref.sha256))
    path.write_bytes(b"model weightz")
    with pytest.raises(IntegrityError, match="artifact 'clf.onnx' is corrupted"):
        artifact_store.get_bytes(ref.sha256, name="clf.onnx")
    assert artifact_store.hash_stored(ref.sha256) != ref.sha256


def test_missing_blob_is_named(artifact_store: ArtifactStore) -> None:
    with pytest.raises(NotFoundError, match="'m.onnx'"):
        artifact_store.get_bytes("a" * 64, name="m.onnx")


def test_crash_during_write_leaves_nothing_visible(artifact_store: ArtifactStore, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import os

    def crash(src: str, dst: str) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        artifact_store.put_bytes(b"partial")
    monkeypatch.undo()
    assert not artifact_store.exists(hashlib.sha256(b"partial").hexdigest())
    assert not list((Path(artifact_store.root) / "tmp").iterdir())


def test_fsspec_memory_filesystem_works_unchanged() -> None:
    store = ArtifactStore("memory://mlops-test-artifacts")
    ref = store.put_bytes(b"in memory")
    assert store.get_bytes(ref.sha256) == b"in memory"


@pytest.mark.parametrize("name", ["../x", "a/../../b", "/abs", "~/home", "C:/win", "a\\b", "", "a//b", "./a"])
def test_escaping_names_are_refused(name: str) -> None:
    with pytest.raises(ValidationError):
        validate_artifact_name(name)


@pytest.mark.parametrize("name", ["model.onnx", "reports/validation.html", "a.b/c-d_e.json"])
def test_ordinary_names_pass(name: str) -> None:
    assert validate_artifact_name(name) == name
