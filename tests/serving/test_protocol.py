"""Decoding of Open Inference Protocol and records requests against a version's signature."""

from __future__ import annotations

import math

import numpy as np
import pytest

from serving.protocol import (
    RequestError,
    decode_infer_request,
    decode_records,
    output_tensor,
    requested_outputs,
)

SIG = {
    "inputs": [
        {"name": "amount", "type": "float"},
        {"name": "age", "type": "int"},
        {"name": "country", "type": "string"},
    ],
    "task": "classification",
    "classes": [0, 1],
}


def tensor(name: str, data: list, datatype: str, shape: list[int] | None = None) -> dict:
    return {"name": name, "shape": shape or [len(data), 1], "datatype": datatype, "data": data}


def good(n: int = 2) -> list[dict]:
    return [
        tensor("amount", [1.5, 2.0][:n], "FP64"),
        tensor("age", [30, 41][:n], "INT64", [n]),
        tensor("country", ["NL", "DE"][:n], "BYTES"),
    ]


def error_of(payload: object, sig: dict = SIG, **kw: int) -> str:
    with pytest.raises(RequestError) as info:
        decode_infer_request(payload, sig, **kw)
    assert info.value.status_code == 400
    return info.value.message


def test_one_tensor_per_column_in_any_order() -> None:
    batch = decode_infer_request({"inputs": list(reversed(good()))}, SIG)
    assert list(batch.columns) == ["amount", "age", "country"]
    assert batch.columns["amount"].dtype == np.float64
    assert batch.columns["age"].tolist() == [30, 41] and batch.columns["age"].dtype == np.int64
    assert batch.frame()["country"].tolist() == ["NL", "DE"]


def test_nested_data_and_float_column_taking_integers() -> None:
    payload = {"inputs": [tensor("amount", [[1], [2]], "INT32"), *good()[1:]]}
    assert decode_infer_request(payload, SIG).columns["amount"].tolist() == [1.0, 2.0]


def test_single_tensor_follows_signature_order() -> None:
    sig = {"inputs": [{"name": "a", "type": "float"}, {"name": "b", "type": "int"}]}
    batch = decode_infer_request({"inputs": [tensor("input", [[1.0, 2], [3.5, 4]], "FP32", [2, 2])]}, sig)
    assert batch.columns["a"].tolist() == [1.0, 3.5] and batch.columns["b"].tolist() == [2, 4]


def test_single_tensor_with_strings_as_bytes() -> None:
    payload = {"inputs": [tensor("x", [[1.5, 30, "NL"], [2, 41, "DE"]], "BYTES", [2, 3])]}
    batch = decode_infer_request(payload, SIG)
    assert batch.columns["age"].tolist() == [30, 41] and batch.columns["country"].tolist() == ["NL", "DE"]
    assert "row 0 holds 1.5: expected a whole number" in error_of(
        {"inputs": [tensor("x", [[1.5, 1.5, "NL"]], "BYTES", [1, 3])]}
    )
    assert "must have shape [N, 3]" in error_of({"inputs": [tensor("x", [1.0, 2.0], "FP64", [1, 2])]})


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ([1, 2], "JSON object with an 'inputs' list"),
        ({"inputs": []}, "non-empty 'inputs' list"),
        ({"inputs": [{"shape": [1]}]}, "string 'name'"),
        ({"inputs": [{"name": "amount", "shape": [1], "datatype": "FP64"}]}, "has no 'data'"),
        ({"inputs": good()[:2]}, "missing input 'country'"),
        ({"inputs": [*good(), tensor("colour", ["red", "blue"], "BYTES")]}, "unknown input 'colour'"),
        ({"inputs": [*good(), good()[0]]}, "given more than once"),
        (
            {"inputs": [tensor("amount", [1.0, 2.0], "FP64", [1, 2]), *good()[1:]]},
            "shape must be [N] or [N, 1]",
        ),
        ({"inputs": [tensor("amount", [1.0], "FP64", [2]), *good()[1:]]}, "needs 2 values, the data holds 1"),
        (
            {"inputs": [tensor("amount", [1.0], "FP64", [1]), *good()[1:]]},
            "has 2 rows, the other inputs have 1",
        ),
        ({"inputs": [tensor("amount", [1.0, 2.0], "FLOAT"), *good()[1:]]}, "datatype 'FLOAT' is not one of"),
        ({"inputs": [tensor("amount", ["a", "b"], "BYTES"), *good()[1:]]}, "does not fit the float column"),
        (
            {"inputs": [good()[0], tensor("age", [1.5, 2.0], "FP64"), good()[2]]},
            "does not fit the int column",
        ),
        (
            {"inputs": [good()[0], tensor("age", [1, 2.5], "INT64"), good()[2]]},
            "row 1 holds 2.5: expected a whole",
        ),
        (
            {"inputs": [tensor("amount", [1.0, "x"], "FP64"), *good()[1:]]},
            "row 1 holds 'x': expected a number",
        ),
        ({"inputs": [tensor("amount", [1.0, None], "FP64"), *good()[1:]]}, "row 1 is missing (null/NaN)"),
        (
            {"inputs": [*good()[:2], tensor("country", ["NL", 3], "BYTES")]},
            "row 1 holds 3: expected a string",
        ),
        ({"inputs": [tensor("amount", [1.0, [2.0, 3.0]], "FP64"), *good()[1:]]}, "input 'amount'"),
        (
            {"inputs": [tensor("amount", [1e400, 1.0], "FP64"), *good()[1:]]},
            "infinite values are not allowed",
        ),
        ({"inputs": [good()[0], tensor("age", [2**70, 1], "INT64"), good()[2]]}, "out of range"),
        ({"inputs": [tensor("amount", [], "FP64", [0]), *good()[1:]]}, "has no rows"),
        ({"inputs": [{**good()[0], "shape": [-1, 1]}, *good()[1:]]}, "non-negative whole numbers"),
        ({"inputs": [{**good()[0], "data": "1.5"}, *good()[1:]]}, "'data' must be a list"),
    ],
)
def test_bad_requests_name_the_input_and_problem(payload: object, expected: str) -> None:
    assert expected in error_of(payload)


def test_too_many_rows() -> None:
    assert "too many rows: 2 (this server accepts at most 1)" in error_of({"inputs": good()}, max_rows=1)


def test_nullable_float_and_string_inputs_take_missing_values() -> None:
    sig = {"inputs": [{"name": "amount", "type": "float", "nullable": True},
                      {"name": "country", "type": "string", "nullable": True}]}  # fmt: skip
    batch = decode_infer_request(
        {"inputs": [tensor("amount", [None, 2.0], "FP64"), tensor("country", ["NL", None], "BYTES")]}, sig
    )
    assert math.isnan(batch.columns["amount"][0]) and batch.columns["country"].tolist() == ["NL", None]


def test_bool_column() -> None:
    sig = {"inputs": [{"name": "flag", "type": "bool"}]}
    assert decode_infer_request({"inputs": [tensor("flag", [True, False], "BOOL")]}, sig).columns[
        "flag"
    ].tolist() == [True, False]
    assert "expected true or false" in error_of({"inputs": [tensor("flag", [1, 0], "BOOL")]}, sig)


def test_records() -> None:
    rows = [{"amount": 1, "age": 30, "country": "NL"}, {"amount": 2.5, "age": 41, "country": "DE"}]
    batch = decode_records({"instances": rows}, SIG)
    assert batch.rows == 2 and batch.columns["amount"].tolist() == [1.0, 2.5]
    assert decode_records(rows, SIG).rows == 2


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"instances": []}, "instances"),
        ({"rows": [{}]}, "instances"),
        ([1], "instance 0 must be an object"),
        ([{"amount": 1, "age": 2}], "instance 0 lacks feature 'country'"),
        ([{"amount": 1, "age": 2, "country": "NL", "x": 1}], "unknown feature(s) 'x'"),
        (
            [{"amount": 1, "age": 2, "country": "NL"}, {"amount": "a", "age": 2, "country": "NL"}],
            "feature 'amount': instance 1 holds 'a'",
        ),
        ([{"amount": None, "age": 2, "country": "NL"}], "feature 'amount': instance 0 is missing"),
        ([{"amount": 1, "age": 2.5, "country": "NL"}], "feature 'age': instance 0 holds 2.5"),
    ],
)
def test_bad_records(payload: object, expected: str) -> None:
    with pytest.raises(RequestError) as info:
        decode_records(payload, SIG)
    assert expected in info.value.message


def test_outputs() -> None:
    assert requested_outputs({"outputs": [{"name": "label"}]}, ["label", "probabilities"]) == ["label"]
    with pytest.raises(RequestError, match="unknown output 'nope'"):
        requested_outputs({"outputs": [{"name": "nope"}]}, ["label"])
    out = output_tensor("probabilities", np.array([[0.25, 0.75]]))
    assert out == {"name": "probabilities", "shape": [1, 2], "datatype": "FP64", "data": [0.25, 0.75]}
    assert output_tensor("label", np.array(["a"], dtype=object))["datatype"] == "BYTES"


def test_signature_missing_is_503() -> None:
    with pytest.raises(RequestError) as info:
        decode_infer_request({"inputs": good()}, {})
    assert info.value.status_code == 503
