"""The ground-truth log: validated labels, newest label per request id, readable by the performance check."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from storage.errors import ValidationError
from storage.monitoring.ground_truth import GroundTruthLog, read_labels


def test_append_read_and_newest_label_wins(tmp_path: Path) -> None:
    log = GroundTruthLog(tmp_path / "gt")
    log.append(
        [{"request_id": "a", "label": 1, "ts": "2026-01-01T00:00:00Z"}, {"request_id": "b", "label": 0}]
    )
    log.append([{"request_id": "a", "label": 0, "ts": "2026-01-02T00:00:00Z"}])
    frame = log.read()
    assert frame["request_id"].tolist() == ["a", "b"] and frame["label"].tolist() == [0, 0]
    assert str(frame["ts"].dt.tz) == "UTC"
    assert len(log.files()) == 2


def test_labels_of_different_types_in_different_calls(tmp_path: Path) -> None:
    log = GroundTruthLog(tmp_path)
    log.append([{"request_id": "a", "label": "spam"}])
    log.append([{"request_id": "b", "label": 2.5}])
    assert log.read()["label"].tolist() == ["spam", 2.5]


@pytest.mark.parametrize(
    ("records", "message"),
    [
        ([], "no labels"),
        ([{"request_id": "a"}], "label None must be"),
        ([{"request_id": 3, "label": 1}], "request_id 3 must be"),
        ([{"request_id": "a", "label": [1]}], "label [1] must be"),
        ([{"request_id": "a", "label": float("nan")}], "must be finite"),
        ([{"request_id": "a", "label": 1, "who": "x"}], "unknown field(s) ['who']"),
        ([{"request_id": "a", "label": 1, "ts": "yesterday"}], "is not a timestamp"),
        ([{"request_id": "a", "label": 1}, {"request_id": "b", "label": "x"}], "must share a type"),
        (["a"], "label 0 must be an object"),
    ],
)
def test_bad_labels_write_nothing(tmp_path: Path, records: list, message: str) -> None:
    log = GroundTruthLog(tmp_path)
    with pytest.raises(ValidationError) as info:
        log.append(records)
    assert message in str(info.value)
    assert log.files() == []


def test_read_labels_takes_a_folder_or_a_file(tmp_path: Path) -> None:
    GroundTruthLog(tmp_path / "gt").append([{"request_id": "a", "label": 1}])
    assert read_labels(tmp_path / "gt")["request_id"].tolist() == ["a"]
    pd.DataFrame({"request_id": ["z"], "label": [0]}).to_csv(tmp_path / "l.csv", index=False)
    assert read_labels(tmp_path / "l.csv")["label"].tolist() == [0]
    assert GroundTruthLog(tmp_path / "empty").read().empty


def test_folder_joins_to_the_prediction_log(tmp_path: Path) -> None:
    from tasks.monitoring.performance import join_ground_truth, windowed_performance

    log = pd.DataFrame(
        {
            "request_id": ["a", "b", "c"],
            "ts": pd.to_datetime(["2026-01-01"] * 3, utc=True),
            "prediction": ['{"label":1,"score":0.9}', '{"label":0,"score":0.2}', '{"label":1,"score":0.7}'],
            "status": ["ok"] * 3,
        }
    )
    truth = GroundTruthLog(tmp_path / "gt")
    truth.append([{"request_id": "a", "label": 1}, {"request_id": "b", "label": 1}])
    truth.append([{"request_id": "b", "label": 0}, {"request_id": "c", "label": 0}])  # b corrected
    joined = join_ground_truth(log, read_labels(tmp_path / "gt"))
    assert joined["label"].tolist() == [1, 0, 0]
    assert float(windowed_performance(joined).iloc[0]["accuracy"]) == pytest.approx(2 / 3)


def test_ground_truth_under_the_storage_url_lives_on_s3(s3_url: str, tmp_path: Path) -> None:
    from blocks.settings import MlopsSettings

    log = GroundTruthLog.from_settings(MlopsSettings(home=tmp_path, storage_url=s3_url))
    assert log.root == s3_url + "/ground_truth"
    log.append([{"request_id": "a", "label": 1, "ts": "2026-01-01T00:00:00Z"}])
    log.append(
        [{"request_id": "a", "label": 0, "ts": "2026-01-02T00:00:00Z"}, {"request_id": "b", "label": 1}]
    )
    assert len(log.files()) == 2 and not any(tmp_path.rglob("*.parquet"))
    again = read_labels(s3_url + "/ground_truth")
    assert again["request_id"].tolist() == ["a", "b"] and again["label"].tolist() == [0, 1]
