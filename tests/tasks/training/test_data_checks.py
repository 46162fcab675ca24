"""Stage 2: the validation report and what stops the flow."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from blocks.pipeline import ValidationThresholds
from storage.errors import ValidationError
from tasks.training.data_checks import infer_task, raise_for_fatal, validate_frame


def frame(n: int = 50) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame({"x": rng.normal(size=n), "c": rng.choice(["a", "b"], n), "y": rng.integers(0, 2, n)})


def test_clean_data_passes_with_a_full_report() -> None:
    report = validate_frame(frame(), "y")
    assert report.ok and report.task == "classification"
    assert report.columns == {"x": "float", "c": "string", "y": "int"}
    assert sum(report.class_counts.values()) == 50
    md = report.markdown("check")
    assert md.startswith("# check") and "| x | float | 0.000 |" in md and "passed" in md


def test_findings() -> None:
    data = frame()
    data["m"] = np.where(np.arange(50) < 30, np.nan, np.arange(50.0))  # 30 of 50 missing
    data["k"] = 1
    data = pd.concat([data, data.iloc[40:45]], ignore_index=True)
    report = validate_frame(data, "y")
    assert any("'m' is 54.5% missing" in p for p in report.fatal)
    assert "column 'k' is constant" in report.warnings
    assert report.duplicate_rows == 5 and "5 duplicate rows" in report.warnings


@pytest.mark.parametrize(
    ("data", "target", "message"),
    [
        (frame(), "label", "target column 'label' is not in d.csv"),
        (frame().assign(y=1), "y", "target column 'y' has one class (1)"),
        (frame(5), "y", "d.csv has 5 rows; at least 20 are needed"),
        (frame()[["y"]], "y", "no feature columns"),
    ],
)
def test_fatal_problems_stop_with_their_names(data: pd.DataFrame, target: str, message: str) -> None:
    report = validate_frame(data, target, source="d.csv")
    with pytest.raises(ValidationError) as err:
        raise_for_fatal(report, "d.csv")
    assert message in str(err.value)


def test_class_balance_limit() -> None:
    data = frame(200).assign(y=[1] + [0] * 199)
    report = validate_frame(data, "y", thresholds=ValidationThresholds(min_class_share=0.01))
    assert any("smallest class has 0.50%" in p for p in report.fatal)


def test_task_inference() -> None:
    assert infer_task(pd.Series(["a", "b"])) == "classification"
    assert infer_task(pd.Series([True, False])) == "classification"
    assert infer_task(pd.Series(range(100))) == "regression"
    assert infer_task(pd.Series([0.1, 0.7, 2.3])) == "regression"
    report = validate_frame(frame().assign(y=np.linspace(0, 1, 50)), "y")
    assert report.task == "regression" and report.class_counts == {}
    assert validate_frame(frame().assign(y="a"), "y", "regression").fatal == [
        "target column 'y' is not numeric; regression needs numbers"
    ]
