"""storage/objectstore.py on a local folder and on a real S3 API (moto's server)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from blocks.settings import MlopsSettings
from storage.objectstore import Place, duckdb_connection, is_remote


@pytest.fixture(params=["local", "s3"])
def place(request: pytest.FixtureRequest, tmp_path: Path) -> Place:
    if request.param == "local":
        return Place(tmp_path / "store")
    return Place(request.getfixturevalue("s3_url"))


def test_a_table_written_is_read_back_by_duckdb_and_pyarrow(place: Place) -> None:
    path = place.path("g", "date=2026-01-01", "part-1.parquet")
    place.write_table(path, pa.table({"x": [1, 2, 3]}))
    assert place.glob("g", "date=*", "part-*.parquet") == [path]
    assert place.read_table(path).column("x").to_pylist() == [1, 2, 3]
    con = duckdb_connection(place)
    assert con.execute(f"SELECT sum(x) FROM read_parquet(['{place.uri(path)}'])").fetchone() == (6,)


def test_a_write_by_another_client_is_listed_at_once(place: Place) -> None:
    reader = Place(place.url)
    assert reader.glob("*.bin") == []
    writer = Place(place.url)
    writer.write_bytes(writer.path("a.bin"), b"abc")
    assert [p.rsplit("/", 1)[-1] for p in reader.glob("*.bin")] == ["a.bin"]
    assert reader.names() == ["a.bin"]
    assert reader.read_bytes(reader.path("a.bin")) == b"abc"


def test_rewriting_changes_the_stamp_and_remove_forgets(place: Place) -> None:
    path = place.path("f.bin")
    place.write_bytes(path, b"one")
    first = place.stamp(path)
    place.write_bytes(path, b"two!")
    assert place.stamp(path)[0] == 4 and place.stamp(path) != first
    place.remove([path, place.path("never-there.bin")])
    assert not place.exists(path)


def test_nothing_half_written_is_left_by_a_failed_local_write(tmp_path: Path) -> None:
    place = Place(tmp_path)

    class Unwritable:
        def __arrow_c_stream__(self) -> None:
            raise RuntimeError("boom")

    with pytest.raises(Exception):  # noqa: B017 - whatever pyarrow raises for a non-table
        place.write_table(place.path("x.parquet"), Unwritable())  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def test_settings_put_every_part_under_the_storage_url(tmp_path: Path) -> None:
    shared = MlopsSettings(home=tmp_path, storage_url="s3://bucket/team/")
    assert shared.resolved_artifact_root() == "s3://bucket/team/artifacts"
    assert shared.resolved_feature_root() == "s3://bucket/team/features"
    assert shared.resolved_prediction_log_root() == "s3://bucket/team/predictions"
    assert shared.resolved_ground_truth_root() == "s3://bucket/team/ground_truth"
    assert shared.resolved_report_root() == "s3://bucket/team/reports"
    assert shared.is_shared() and not MlopsSettings(home=tmp_path).is_shared()
    own = MlopsSettings(home=tmp_path, storage_url="s3://bucket/team", feature_root="/data/features")
    assert own.resolved_feature_root() == "/data/features"
    assert is_remote("s3://b") and not is_remote(tmp_path)


def test_the_artifact_store_and_a_registry_work_on_s3(s3_url: str, tmp_path: Path) -> None:
    from storage.artifacts import ArtifactStore
    from storage.registry.core import Registry

    store = ArtifactStore(f"{s3_url}/artifacts")
    ref = store.put_bytes(b"weights")
    assert ArtifactStore(f"{s3_url}/artifacts").get_bytes(ref.sha256, name="w.bin") == b"weights"
    registry = Registry.open(f"sqlite:///{tmp_path / 'mlops.db'}", f"{s3_url}/artifacts")
    (tmp_path / "model.bin").write_bytes(b"model bytes")
    registry.create_model("m")
    files = {"model.bin": tmp_path / "model.bin"}
    version = registry.create_version("m", framework="sklearn", artifacts=files)
    report = registry.verify_version("m", version.number)
    assert report.ok and len(report.artifacts) == 1, report
    assert Place(f"{s3_url}/artifacts").glob("sha256", "*", "*") != []


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".jsonl"])
def test_read_frame_reads_each_kind_from_a_folder_and_from_s3(place: Place, suffix: str) -> None:
    import pandas as pd

    from storage.objectstore import read_frame

    frame = pd.DataFrame({"id": [3, 1, 2], "v": [0.5, 1.5, 2.5]})
    path = place.path(f"data{suffix}")
    if suffix == ".csv":
        place.write_bytes(path, frame.to_csv(index=False).encode())
    elif suffix == ".parquet":
        place.write_table(path, pa.Table.from_pandas(frame, preserve_index=False))
    else:
        place.write_bytes(path, frame.to_json(orient="records", lines=True).encode())
    pd.testing.assert_frame_equal(read_frame(place.uri(path)), frame)


def test_read_frame_names_the_missing_or_unknown_file(place: Place) -> None:
    from storage.errors import ValidationError
    from storage.objectstore import read_frame

    with pytest.raises(ValidationError, match=r"missing\.csv' does not exist"):
        read_frame(place.uri(place.path("missing.csv")))
    with pytest.raises(ValidationError, match=r"expected \.csv, \.parquet"):
        read_frame(place.uri(place.path("data.xlsx")))
    place.write_bytes(place.path("bad.parquet"), b"not parquet")
    with pytest.raises(ValidationError, match=r"bad\.parquet' cannot be read as parquet"):
        read_frame(place.uri(place.path("bad.parquet")))


def test_a_failed_write_to_s3_publishes_nothing(s3_url: str) -> None:
    import gc

    place = Place(s3_url)
    path = place.path("half.bin")

    def fail_midway(handle: Any) -> None:
        handle.write(b"x" * 1000)
        raise RuntimeError("the writer failed")

    with pytest.raises(RuntimeError, match="writer failed"):
        place._atomic(path, fail_midway)
    gc.collect()
    assert not place.exists(path)
    place.write_bytes(path, b"whole")
    assert place.read_bytes(path) == b"whole"
