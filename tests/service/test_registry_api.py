"""The registry over REST through :class:`mlops.Client`: same answers as the registry itself."""

from __future__ import annotations

import hashlib

import httpx
import pytest

from storage.errors import AccessError, IntegrityError, NotFoundError, ValidationError
from tests.raw_http import send_declared_body
from tests.service.conftest import Service


def test_register_with_files_then_read_back(service: Service, tmp_path) -> None:
    weights = tmp_path / "model.onnx"
    weights.write_bytes(b"\x01" * 300_000)
    with service.client("contributor") as client:
        client.create_model("fraud", tags={"team": "risk"})
        mv = client.create_version(
            "fraud",
            framework="onnx",
            artifacts={"model.onnx": weights, "config.json": b'{"a": 1}'},
            metrics={"auc": 0.91},
            tags={"data": "2026-11"},
        )
        assert mv.number == 1 and mv.created_by == "contributor-user"
        assert {a.name for a in mv.artifacts} == {"model.onnx", "config.json"}
        assert client.load_artifact("fraud", 1, "model.onnx") == weights.read_bytes()
        exported = client.export_version("fraud", "latest", tmp_path / "out")
        assert sorted(p.name for p in exported) == ["config.json", "model.onnx"]
        assert client.verify_version("fraud", 1).ok
    local = service.registry.get_version("fraud", 1)
    assert local == mv  # the client rebuilds exactly the registry's record
    assert service.registry.load_artifact("fraud", 1, "config.json") == b'{"a": 1}'


def test_search_pages_and_filters_match_the_registry(service: Service) -> None:
    service.registry.create_model("m")
    for n in range(7):
        service.registry.create_version(
            "m", framework="sklearn", metrics={"auc": n / 10}, tags={"odd": str(n % 2)}
        )
    with service.client("reader") as client:
        first = client.list_versions("m", page_size=3)
        second = client.list_versions("m", page_size=3, page_token=first.next_token)
        assert [v.number for v in first.items] == [7, 6, 5]
        assert [v.number for v in second.items] == [4, 3, 2]
        found = client.search_versions(model="m", metrics=["auc>=0.3"], tags={"odd": "1"})
        expected = service.registry.search_versions(model="m", metrics=["auc>=0.3"], tags={"odd": "1"})
        assert found.items == expected.items and [v.number for v in found.items] == [6, 4]


def test_roles_decide_who_may_do_what(service: Service) -> None:
    service.registry.create_model("m")
    service.registry.create_version("m", framework="sklearn")
    with service.client("reader") as reader:
        assert reader.get_version("m", 1).number == 1
        with pytest.raises(AccessError, match="role 'reader'.*may not write"):
            reader.create_model("other")
    with service.client("contributor") as contributor, pytest.raises(AccessError, match="needs one of admin"):
        contributor.transition_stage("m", 1, "staging")
    with service.client("admin") as admin:
        assert admin.transition_stage("m", 1, "staging", reason="ok").stage == "staging"
        assert admin.set_alias("m", "champion", 1).to_version == 1
    history = service.registry.stage_history("m", 1)
    assert history[-1].actor == "admin-user"  # the key's owner is the actor


def test_missing_and_wrong_keys_are_401(service: Service) -> None:
    answer = httpx.get(f"{service.url}/api/v1/models")
    assert answer.status_code == 401 and "Authorization: Bearer" in answer.json()["error"]
    wrong = httpx.get(f"{service.url}/api/v1/models", headers={"Authorization": "Bearer mlops_nope"})
    assert wrong.status_code == 401
    with service.client("admin") as admin:
        key = admin.create_key("temp", "reader")
        assert _get_models(service.url, key["key"]).status_code == 200
        admin.revoke_key(key["id"])
    assert _get_models(service.url, key["key"]).status_code == 401


def _get_models(url: str, key: str) -> httpx.Response:
    return httpx.get(f"{url}/api/v1/models", headers={"Authorization": f"Bearer {key}"})


def test_upload_refuses_mismatch_and_oversize_leaving_nothing(service: Service) -> None:
    headers = {"Authorization": f"Bearer {service.keys['contributor']}"}
    store = service.registry.artifacts
    data = b"payload"
    wrong = "0" * 64
    answer = httpx.put(f"{service.url}/api/v1/artifacts/{wrong}", content=data, headers=headers)
    assert answer.status_code == 409 and "checksum mismatch" in answer.json()["error"]
    assert not store.exists(hashlib.sha256(data).hexdigest())
    big = b"x" * (5 << 20 | 1)
    answer = httpx.put(
        f"{service.url}/api/v1/artifacts/{hashlib.sha256(big).hexdigest()}", content=big, headers=headers
    )
    assert answer.status_code == 413
    assert not store.exists(hashlib.sha256(big).hexdigest())
    assert list(store.fs.ls(store._join("tmp"))) == []  # nothing half-written is left
    bad = httpx.put(f"{service.url}/api/v1/artifacts/not-a-digest", content=data, headers=headers)
    assert bad.status_code == 400


def test_a_refused_upload_still_reads_its_413(service: Service) -> None:
    """The client keeps sending after the service has decided: it must get the answer, not a reset."""
    auth = {"Authorization": f"Bearer {service.keys['contributor']}"}
    size = (5 << 20) + 1  # over the fixture's 5 MiB limit, declared up front
    head = send_declared_body(service.url, "PUT", f"/api/v1/artifacts/{'a' * 64}", auth, size)
    assert head.startswith(b"HTTP/1.1 413"), head


def test_unknown_things_are_404_and_bad_refs_4xx(service: Service) -> None:
    service.registry.create_model("m")
    with service.client("reader") as client:
        with pytest.raises(NotFoundError, match="model 'nope' does not exist"):
            client.get_model("nope")
        with pytest.raises(NotFoundError, match="no alias"):
            client.get_version("m", "¹")  # a Unicode digit is not a version number
        with pytest.raises(ValidationError, match="malformed"):
            client.get_version("m", "1.2")


def test_version_refers_to_a_file_that_was_never_uploaded(service: Service) -> None:
    service.registry.create_model("m")
    body = {"framework": "sklearn", "artifacts": {"model.bin": {"sha256": "a" * 64, "size": 3}}}
    headers = {"Authorization": f"Bearer {service.keys['contributor']}"}
    answer = httpx.post(f"{service.url}/api/v1/models/m/versions", json=body, headers=headers)
    assert answer.status_code == 404 and "no artifact" in answer.json()["error"]
    assert service.registry.get_model("m").latest_version is None


def test_download_detects_a_corrupted_file(service: Service) -> None:
    service.registry.create_model("m")
    mv = service.registry.create_version("m", framework="sklearn", artifacts={"w.bin": b"abc" * 1000})
    path = service.registry.artifacts.path_of(mv.artifacts[0].sha256)
    with open(path, "r+b") as handle:
        handle.write(b"X")
    with service.client("reader") as client, pytest.raises(IntegrityError, match="corrupted"):
        client.load_artifact("m", 1, "w.bin")
