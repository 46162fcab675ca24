"""Reading ONNX outputs: each converter's layout, declared roles, refusals that say how to declare."""

from __future__ import annotations

import pytest

from storage.errors import ValidationError
from storage.registry.onnx_outputs import AmbiguousOutputs, classify_outputs

F, INT, S = "tensor(float)", "tensor(int64)", "tensor(string)"
ZIPMAP = "seq(map(int64,tensor(float)))"


@pytest.mark.parametrize(
    ("outputs", "signature", "expected"),
    [
        # skl2onnx / onnxmltools: label + probabilities (ZipMap off or on), string labels
        ([("label", INT, ["N"]), ("probabilities", F, ["N", 2])], None,
         ("classification", "label", "probabilities")),
        ([("output_label", INT, ["N"]), ("output_probability", ZIPMAP, ["N"])], None,
         ("classification", "output_label", "output_probability")),
        ([("label", S, ["N"]), ("p", F, ["N", 3])], None, ("classification", "label", "p")),
        # torch.onnx / tf2onnx: one softmax output, any name; two outputs told apart by type
        ([("dense_1", F, ["unk__7", 2])], None, ("classification", None, "dense_1")),
        ([("Identity", INT, ["N"]), ("Identity_1", F, ["N", 3])], None,
         ("classification", "Identity", "Identity_1")),
        # regression by name, or by a declared task
        ([("variable", F, ["N", 1])], None, ("regression", None, None)),
        ([("out", F, ["N", 1])], {"task": "regression"}, ("regression", None, None)),
        # a declared role settles what the names and shapes do not
        ([("a", F, ["N", 1]), ("b", F, ["N", 1])], {"outputs": [{"name": "a", "role": "regression"},
                                                              {"name": "b", "role": "ignore"}]},
         ("regression", None, None)),
    ],
)  # fmt: skip
def test_outputs_are_read_by_what_they_hold(outputs: list, signature: dict | None, expected: tuple) -> None:
    plan = classify_outputs(outputs, signature)
    assert (plan.task, plan.label, plan.probabilities) == expected


def test_binary_probability_column_and_logits() -> None:
    plan = classify_outputs([("p", F, ["N", 1])], {"task": "classification"})
    assert plan.positive == "p" and plan.n_classes == 2
    plan = classify_outputs([("z", F, ["N", 4])], {"outputs": [{"name": "z", "role": "logits"}]})
    assert plan.logits == "z" and plan.fetch == ["z"] and plan.roles() == [{"name": "z", "role": "logits"}]


@pytest.mark.parametrize(
    "outputs",
    [
        [("out", F, ["N", 1])],  # a value, or a binary probability?
        [("a", F, ["N", 3]), ("b", F, ["N", 3])],  # two unnamed score tables
        [("x", F, ["N", "C"])],  # width unknown
        [("probabilities", F, ["N", 2]), ("variable", F, ["N", 1])],  # both kinds
    ],
)
def test_ambiguous_outputs_are_refused_with_how_to_declare(outputs: list) -> None:
    with pytest.raises(AmbiguousOutputs, match="role"):
        classify_outputs(outputs)


def test_declarations_that_do_not_fit_are_errors() -> None:
    with pytest.raises(ValidationError, match="does not have"):
        classify_outputs([("p", F, ["N", 2])], {"outputs": [{"name": "q", "role": "probabilities"}]})
    with pytest.raises(ValidationError, match="not one of"):
        classify_outputs([("p", F, ["N", 2])], {"outputs": [{"name": "p", "role": "score"}]})
    with pytest.raises(AmbiguousOutputs, match="regression"):
        classify_outputs([("p", F, ["N", 2])], {"task": "regression"})
