"""What an ONNX graph's outputs mean: labels, probabilities, logits or a regression value.

ONNX files come from many converters, and each names and shapes its outputs its
own way: skl2onnx and onnxmltools write ``label`` (int64 or string ``[N]``) and
``probabilities`` (float ``[N, C]``, or a ZipMap sequence of maps);
``torch.onnx`` and ``tf2onnx`` write whatever the network returns, often one
softmax output ``[N, C]`` named ``output`` or ``dense_1``. Serving must never
guess wrong (a softmax served as "predictions" is a silent wrong answer), so
:func:`classify_outputs` decides from names, element types and shapes, and
refuses what it cannot decide with a message saying how to declare it.

Rules, in order:

1. Declared roles win: the signature's ``outputs`` may give each output a
   ``role``: ``label``, ``probabilities``, ``logits`` (softmax is applied),
   ``regression``, or ``ignore``.
2. An int64/string/bool tensor is a label; a sequence of maps is ZipMap
   probabilities.
3. Known names: ``label``/``output_label``/``predicted_label``... are labels,
   ``probabilities``/``output_probability``/``probs``... probabilities,
   ``logits`` logits, ``variable``/``prediction``/``value``... regression.
4. What is left decides by shape: one float ``[N, C]`` with C ≥ 2 is a
   softmax (the label is its argmax); one float ``[N]``/``[N, 1]`` is a
   regression value, or the positive-class probability of a binary classifier
   when the task is declared ``classification``.

Anything else (two unnamed float outputs, a ``[N, 1]`` float without a
declared task, ``[N, ?]`` of unknown width) raises :class:`AmbiguousOutputs`.

Example:
    >>> plan = classify_outputs([("dense_1", "tensor(float)", ["N", 3])])
    >>> plan.task, plan.probabilities, plan.label
    ('classification', 'dense_1', None)
    >>> plan = classify_outputs([("output_label", "tensor(int64)", ["N"]),
    ...                          ("output_probability", "tensor(float)", ["N", 2])])
    >>> plan.label, plan.probabilities
    ('output_label', 'output_probability')
    >>> classify_outputs([("variable", "tensor(float)", ["N", 1])]).regression
    'variable'
    >>> try:
    ...     classify_outputs([("out", "tensor(float)", ["N", 1])])
    ... except AmbiguousOutputs as exc:
    ...     print(str(exc)[:58])
    cannot tell what output 'out' ([N, 1]) holds: a regression
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from storage.errors import ValidationError

#: Roles an output may be declared with in the signature's ``outputs``.
ROLES = ("label", "probabilities", "logits", "regression", "ignore")

LABEL_NAMES = frozenset({"label", "labels", "output_label", "predicted_label", "class", "class_label"})
PROBABILITY_NAMES = frozenset(
    {"probabilities", "probability", "output_probability", "probs", "proba", "predict_proba", "softmax"}
)
LOGIT_NAMES = frozenset({"logits", "logit"})
REGRESSION_NAMES = frozenset({"variable", "prediction", "predictions", "value", "values", "regression"})
_INTEGER_TYPES = ("int64", "int32", "int16", "int8", "uint8", "uint16", "uint32", "uint64", "string", "bool")

OutputInfo = tuple[str, str, Sequence[Any]]

HOW_TO_DECLARE = (
    "declare it in the version's signature: "
    '"outputs": [{"name": "<output>", "role": "label|probabilities|logits|regression|ignore"}] '
    "(mlops registry import ... --signature FILE), or give the task (--task classification|regression)"
)


class AmbiguousOutputs(ValidationError):
    """An ONNX graph whose outputs cannot be read without a declaration; the message says how."""


@dataclass(frozen=True)
class OutputPlan:
    """Which graph output holds what; the runtime fetches these and builds labels and probabilities.

    Attributes:
        task: ``classification`` or ``regression``.
        label: Output holding the labels (None: argmax of the probabilities).
        probabilities: Output holding probabilities ``[N, C]`` (or a ZipMap sequence).
        logits: Output holding logits ``[N, C]`` (softmax gives the probabilities).
        positive: Output holding the positive class's probability ``[N]``/``[N, 1]`` (binary).
        regression: Output holding the regression value.
        n_classes: Width of the probabilities when the graph says it.
    """

    task: str
    label: str | None = None
    probabilities: str | None = None
    logits: str | None = None
    positive: str | None = None
    regression: str | None = None
    n_classes: int | None = None

    @property
    def fetch(self) -> list[str]:
        """The graph outputs to run, in a fixed order."""
        names = (self.label, self.probabilities, self.logits, self.positive, self.regression)
        return [n for n in names if n is not None]

    def roles(self) -> list[dict[str, str]]:
        """The plan as the signature's ``outputs`` entries (what an import records)."""
        pairs = (
            ("label", self.label),
            ("probabilities", self.probabilities),
            ("logits", self.logits),
            ("probabilities", self.positive),
            ("regression", self.regression),
        )
        return [{"name": name, "role": role} for role, name in pairs if name is not None]

    def describe(self) -> str:
        """One line for people: which output is what."""
        parts = [f"{role} from {name!r}" for role, name in zip(
            ("label", "probabilities", "softmax of logits", "positive-class probability", "value"),
            (self.label, self.probabilities, self.logits, self.positive, self.regression),
            strict=True,
        ) if name is not None]  # fmt: skip
        if self.task == "classification" and self.label is None:
            parts.append("label = argmax")
        return f"{self.task}: " + ", ".join(parts)


def _shape_text(shape: Sequence[Any]) -> str:
    return "[" + ", ".join("N" if i == 0 else ("?" if not isinstance(d, int) else str(d))
                           for i, d in enumerate(shape)) + "]"  # fmt: skip


def _width(shape: Sequence[Any]) -> int | None:
    """Columns of a ``[N, C]`` output (1 for ``[N]``); None when unknown or not 1-2 dimensional."""
    if len(shape) == 1:
        return 1
    if len(shape) == 2:
        return shape[1] if isinstance(shape[1], int) and shape[1] > 0 else None
    return None


def _kind(type_name: str) -> str:
    if type_name.startswith("seq(map("):
        return "zipmap"
    inner = type_name.removeprefix("tensor(").removesuffix(")")
    if inner in _INTEGER_TYPES:
        return "label"
    if inner in ("float", "double", "float16", "bfloat16"):
        return "float"
    return "other"


def _declared(outputs: Sequence[OutputInfo], signature: Mapping[str, Any]) -> dict[str, str]:
    names = {o[0] for o in outputs}
    roles: dict[str, str] = {}
    for entry in signature.get("outputs") or []:
        if not isinstance(entry, Mapping) or "role" not in entry:
            continue
        name, role = str(entry.get("name")), str(entry["role"])
        if role not in ROLES:
            raise ValidationError(f"output {name!r}: role {role!r} is not one of {', '.join(ROLES)}")
        if name not in names:
            raise ValidationError(
                f"the signature declares output {name!r}, which the graph does not have "
                f"(its outputs are: {', '.join(sorted(names))})"
            )
        roles[name] = role
    return roles


def _plan_from_roles(
    roles: Mapping[str, str], shapes: Mapping[str, Sequence[Any]], task: str | None, zipmaps: frozenset[str]
) -> OutputPlan:
    by_role: dict[str, list[str]] = {}
    for name, role in roles.items():
        by_role.setdefault(role, []).append(name)
    for role, names in by_role.items():
        if role != "ignore" and len(names) > 1:
            listed = ", ".join(map(repr, names))
            raise ValidationError(f"outputs {listed} are all declared {role!r}: one only")
    one = {role: names[0] for role, names in by_role.items() if role != "ignore"}
    if "regression" in one:
        if set(one) != {"regression"}:
            raise ValidationError("an output declared 'regression' cannot sit beside labels or probabilities")
        if task == "classification":
            raise ValidationError("the signature says classification, and an output is declared 'regression'")
        return OutputPlan("regression", regression=one["regression"])
    if not one:
        raise AmbiguousOutputs(f"every output is declared 'ignore': nothing to serve; {HOW_TO_DECLARE}")
    if task == "regression":
        raise ValidationError("the signature says regression, and the outputs are declared as a classifier's")
    if "probabilities" in one and "logits" in one:
        raise ValidationError("declare either probabilities or logits, not both")
    scores = one.get("probabilities") or one.get("logits")
    width = None if scores is None or scores in zipmaps else _width(shapes[scores])
    if scores and width == 1 and "probabilities" in one:  # [N] / [N, 1]: the positive class alone
        return OutputPlan("classification", label=one.get("label"), positive=scores, n_classes=2)
    return OutputPlan(
        "classification",
        label=one.get("label"),
        probabilities=one.get("probabilities"),
        logits=one.get("logits"),
        n_classes=width if width and width > 1 else None,
    )


def _ambiguous(outputs: Sequence[OutputInfo], why: str) -> AmbiguousOutputs:
    listed = ", ".join(f"{n!r} ({t} {_shape_text(s)})" for n, t, s in outputs)
    return AmbiguousOutputs(f"{why} (the graph's outputs: {listed}); {HOW_TO_DECLARE}")


def classify_outputs(outputs: Sequence[OutputInfo], signature: Mapping[str, Any] | None = None) -> OutputPlan:
    """Which output holds labels, probabilities, logits or values (see the module docs).

    Args:
        outputs: ``(name, type, shape)`` per graph output, as ONNX Runtime reports them
            (``"tensor(float)"``, ``["N", 2]``).
        signature: The version's signature: its ``outputs`` roles and ``task``, when declared.

    Raises:
        AmbiguousOutputs: the outputs cannot be read without a declaration.
        ValidationError: a declaration that does not fit the graph.
    """
    sig = dict(signature or {})
    task = sig.get("task")
    task = str(task) if task in ("classification", "regression") else None
    shapes = {name: list(shape) for name, _, shape in outputs}
    kinds = {name: _kind(type_name) for name, type_name, _ in outputs}
    zipmaps = frozenset(name for name, kind in kinds.items() if kind == "zipmap")  # [N] lists of {class: p}
    roles = _declared(outputs, sig)
    if roles:
        return _plan_from_roles(roles, shapes, task, zipmaps)
    found: dict[str, list[str]] = {"label": [], "probabilities": [], "logits": [], "regression": []}
    rest: list[str] = []
    for name, _type, _shape in outputs:
        low = name.lower()
        if kinds[name] == "label" or (low in LABEL_NAMES and kinds[name] != "zipmap"):
            found["label"].append(name)
        elif kinds[name] == "zipmap" or (low in PROBABILITY_NAMES and kinds[name] == "float"):
            found["probabilities"].append(name)
        elif low in LOGIT_NAMES and kinds[name] == "float":
            found["logits"].append(name)
        elif low in REGRESSION_NAMES and kinds[name] == "float":
            found["regression"].append(name)
        else:
            rest.append(name)
    taken = {k: v for k, v in found.items() if v}
    if any(len(v) > 1 for v in taken.values()):
        twice = next(k for k, v in taken.items() if len(v) > 1)
        raise _ambiguous(outputs, f"several outputs look like {twice}")
    labelled = {k: v[0] for k, v in taken.items()}
    if labelled.get("regression") and (set(labelled) - {"regression"} or task == "classification"):
        raise _ambiguous(outputs, "the outputs look like both a regressor's and a classifier's")
    if labelled.get("regression"):
        return OutputPlan("regression", regression=labelled["regression"])
    if labelled and not rest:  # classifier outputs, every one recognised
        if task == "regression":
            raise _ambiguous(outputs, "the signature says regression, and the outputs are a classifier's")
        return _plan_from_roles({v: k for k, v in labelled.items()}, shapes, task, zipmaps)
    floats = [n for n in rest if kinds[n] == "float"]
    if len(rest) != 1 or len(floats) != 1:
        why = "outputs the runtime cannot tell apart" if rest else "no output it can read"
        raise _ambiguous(outputs, why)
    (name,) = floats
    width = _width(shapes[name])
    if width is None:
        raise _ambiguous(outputs, f"cannot tell what output {name!r} holds: its width is unknown")
    if width >= 2:
        if task == "regression":
            raise _ambiguous(outputs, f"output {name!r} has {width} columns and the task is regression")
        roles_now = {**{v: k for k, v in labelled.items()}, name: "probabilities"}
        return _plan_from_roles(roles_now, shapes, task, zipmaps)
    if task == "regression" and not labelled:
        return OutputPlan("regression", regression=name)
    if task == "classification":
        return OutputPlan("classification", label=labelled.get("label"), positive=name, n_classes=2)
    raise _ambiguous(
        outputs,
        f"cannot tell what output {name!r} ({_shape_text(shapes[name])}) holds: a regression value "
        "or a binary classifier's probability",
    )
