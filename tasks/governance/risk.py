"""EU AI Act risk levels from a model's declared domain and use case.

The level follows the Act's structure: practices prohibited by Article 5 are
``unacceptable``; the areas of Annex III (and AI in regulated products such as
medical devices, Art. 6(1)) are ``high``; systems with transparency duties
under Article 50 (chatbots, deepfakes, emotion recognition, biometric
categorisation) are ``limited``; everything else is ``minimal``. Each level
brings obligations, which the ``EU_AI_ACT`` rule set checks.

A model declares itself with the tags ``domain`` and ``use_case`` (and
optionally ``intended_use``), on the model or on a version (whose tags win).
Matching is by keywords on those words, so the assessment is explainable:
``reasons`` names what matched.

Example:
    >>> from tasks.governance.risk import assess_risk
    >>> assess_risk("finance", "credit scoring of loan applicants").level
    'high'
    >>> assess_risk("retail", "product recommendations").level
    'minimal'
    >>> assess_risk("public sector", "social scoring of citizens").level
    'unacceptable'
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from prefect import task

from storage.errors import ValidationError
from storage.registry.core import Registry
from storage.registry.reads import VersionRef
from storage.registry.records import Record

RiskLevel = str
LEVELS: tuple[RiskLevel, ...] = ("unacceptable", "high", "limited", "minimal")

#: Article 5 prohibited practices: (what, keywords that all must appear in one of the phrases).
PROHIBITED: tuple[tuple[str, tuple[tuple[str, ...], ...]], ...] = (
    ("social scoring (Art. 5(1)(c))", (("social scor",), ("social credit",))),
    (
        "real-time remote biometric identification in public spaces for law enforcement (Art. 5(1)(h))",
        (("real-time", "biometric identification"), ("realtime", "biometric"), ("live facial recognition",)),
    ),
    ("subliminal or manipulative techniques (Art. 5(1)(a))", (("subliminal",), ("manipulat", "behaviour"))),
    ("exploiting vulnerabilities of age or disability (Art. 5(1)(b))", (("exploit", "vulnerab"),)),
    (
        "predicting crimes from profiling alone (Art. 5(1)(d))",
        (("predictive policing",), ("crime", "predict")),
    ),
    ("untargeted scraping of facial images (Art. 5(1)(e))", (("facial", "scrap"),)),
    (
        "emotion recognition at work or in education (Art. 5(1)(f))",
        (("emotion recognition", "workplace"), ("emotion recognition", "school"), ("emotion", "employee")),
    ),
    ("biometric categorisation by sensitive traits (Art. 5(1)(g))", (("biometric categori", "sensitive"),)),
)

#: Annex III areas (and Art. 6(1) regulated products): (area, keywords, any one matches).
HIGH_RISK: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("biometric identification (Annex III 1)", ("biometric identification", "facial recognition")),
    (
        "critical infrastructure (Annex III 2)",
        (
            "critical infrastructure",
            "electricity grid",
            "power grid",
            "water supply",
            "gas supply",
            "road traffic",
            "traffic control",
        ),
    ),
    (
        "education and vocational training (Annex III 3)",
        ("education", "admission", "exam ", "exams", "student assessment", "proctoring"),
    ),
    (
        "employment and workers management (Annex III 4)",
        ("employment", "recruit", "hiring", "cv screening", "resume screening", "promotion decision", "hr"),
    ),
    (
        "access to essential services and benefits (Annex III 5)",
        (
            "credit scor",
            "creditworth",
            "loan",
            "public benefit",
            "social benefit",
            "life insurance",
            "health insurance",
            "emergency",
            "essential service",
        ),
    ),
    ("law enforcement (Annex III 6)", ("law enforcement", "police", "criminal", "evidence reliability")),
    (
        "migration, asylum and border control (Annex III 7)",
        ("migration", "asylum", "border control", "visa application"),
    ),
    ("administration of justice and democracy (Annex III 8)", ("judicial", "court", "election", "voting")),
    (
        "medical devices and health (Art. 6(1), Annex I)",
        ("medical device", "diagnos", "clinical", "triage", "patient"),
    ),
)

#: Article 50 transparency cases.
LIMITED_RISK: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "interacts with people: chatbot or assistant (Art. 50(1))",
        ("chatbot", "chat bot", "virtual assistant"),
    ),
    (
        "generates or manipulates content: deepfake, synthetic media (Art. 50(2), 50(4))",
        (
            "deepfake",
            "synthetic media",
            "generative",
            "content generation",
            "image generation",
            "text generation",
        ),
    ),
    ("emotion recognition or biometric categorisation (Art. 50(3))", ("emotion", "biometric categori")),
)

OBLIGATIONS: dict[RiskLevel, tuple[str, ...]] = {
    "unacceptable": ("prohibited: the system may not be placed on the market or used in the EU (Art. 5)",),
    "high": (
        "risk management system (Art. 9)",
        "data governance: training data relevant, representative, examined for bias (Art. 10)",
        "technical documentation (Art. 11)",
        "record-keeping: automatic logs (Art. 12)",
        "transparency and instructions for use (Art. 13)",
        "human oversight (Art. 14)",
        "accuracy, robustness and cybersecurity, monitored after deployment (Art. 15, Art. 72)",
        "conformity assessment and registration before use (Art. 43, Art. 49)",
    ),
    "limited": ("transparency: people are told they interact with AI or see generated content (Art. 50)",),
    "minimal": ("no mandatory obligations; voluntary codes of conduct (Art. 95)",),
}


@dataclass(frozen=True)
class RiskAssessment(Record):
    """An AI Act risk level, why it was chosen, and the obligations it brings."""

    level: RiskLevel
    reasons: tuple[str, ...]
    obligations: tuple[str, ...]


def _normalise(text: str) -> str:
    return " " + re.sub(r"[\s_\-/]+", " ", text.lower()).strip() + " "


def _contains(text: str, keyword: str) -> bool:
    # keywords are word prefixes ("recruit" matches "recruitment"); short ones ("hr") and those
    # ending in a space ("exam ") must be whole words.
    word = re.sub(r"[\s_\-/]+", " ", keyword.lower())
    if len(word) <= 3 or word.endswith(" "):
        return f" {word.strip()} " in text
    return f" {word}" in text


def assess_risk(domain: str, use_case: str, intended_use: str = "") -> RiskAssessment:
    """The AI Act risk level for a declared domain and use case.

    Raises ValidationError when domain or use case is empty.
    """
    for field, value in (("domain", domain), ("use_case", use_case)):
        if not isinstance(value, str) or not value.strip():
            raise ValidationError(f"{field} {value!r} is empty: declare it to assess the AI Act risk level")
    text = _normalise(f"{domain} {use_case} {intended_use}")
    found = [what for what, groups in PROHIBITED if any(all(_contains(text, k) for k in g) for g in groups)]
    if found:
        return RiskAssessment("unacceptable", tuple(found), OBLIGATIONS["unacceptable"])
    for level, table in (("high", HIGH_RISK), ("limited", LIMITED_RISK)):
        found = [what for what, keywords in table if any(_contains(text, k) for k in keywords)]
        if found:
            return RiskAssessment(level, tuple(found), OBLIGATIONS[level])
    return RiskAssessment(
        "minimal",
        (f"no prohibited, Annex III or transparency case matches {domain!r} / {use_case!r}",),
        OBLIGATIONS["minimal"],
    )


#: The tags a model (or one of its versions) declares its use with.
RISK_TAGS = ("domain", "use_case", "intended_use")


def declared_use(registry: Registry, model: str, version: VersionRef | None = None) -> dict[str, str]:
    """The ``domain``, ``use_case`` and ``intended_use`` tags: the model's, each overridden by the version's.

    A version tag wins over the model's tag of the same key, so one version can
    declare a narrower (or broader) use than the model as a whole.
    """
    declared = {k: v for k, v in registry.get_model(model).tags.items() if k in RISK_TAGS}
    if version is not None:
        tags = registry.get_version(model, version).tags
        declared.update({k: str(v) for k, v in tags.items() if k in RISK_TAGS and str(v).strip()})
    return declared


def model_risk(registry: Registry, model: str, version: VersionRef | None = None) -> RiskAssessment | None:
    """The risk level from the ``domain`` and ``use_case`` tags; None when either is missing.

    The tags are read from the model, and from ``version`` when given (its tags win):
    ``mlops registry tag MODEL domain=health`` or a training config's ``model_tags``
    declare them for every version, ``mlops registry tag MODEL --version N ...`` or the
    config's ``tags`` for one version.
    """
    tags = declared_use(registry, model, version)
    if not tags.get("domain", "").strip() or not tags.get("use_case", "").strip():
        return None
    return assess_risk(tags["domain"], tags["use_case"], tags.get("intended_use", ""))


@task(name="assess-ai-act-risk")
def assess_model_risk(
    model: str, version: VersionRef | None = None, *, registry_block: str | None = None
) -> RiskAssessment | None:
    """:func:`model_risk` for the registry a block (or ``MLOPS_*``) points at."""
    from tasks.registry.steps import open_registry

    return model_risk(open_registry(registry_block), model, version)
