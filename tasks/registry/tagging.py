"""Model tags from a training run: the config's ``model_tags`` land on the model when a version registers.

A pipeline config's ``tags`` go on the version it registers; ``model_tags`` go
on the model itself, so they hold for every version: ``domain`` and
``use_case`` there declare the EU AI Act risk level
(:mod:`tasks.governance.risk`), ``owner`` or ``team`` say whose it is. Only tags
whose value changes are written, so a re-run audits nothing new.

Example:
    >>> import tempfile
    >>> from storage.registry.core import Registry
    >>> home = tempfile.mkdtemp()
    >>> reg = Registry.open(f"sqlite:///{home}/m.db", f"{home}/a")
    >>> _ = reg.create_model("churn")
    >>> apply_model_tags(reg, "churn", {"domain": "telecom", "use_case": "churn prediction"})
    ['domain', 'use_case']
    >>> apply_model_tags(reg, "churn", {"domain": "telecom"})
    []
"""

from __future__ import annotations

from collections.abc import Mapping

from prefect import task

from storage.registry.core import Registry


def apply_model_tags(
    registry: Registry, model: str, tags: Mapping[str, str], *, actor: str | None = None
) -> list[str]:
    """Set each of ``tags`` on ``model`` whose value differs; the keys written, in order."""
    current = registry.get_model(model).tags
    changed = [key for key, value in tags.items() if current.get(key) != str(value)]
    for key in changed:
        registry.set_model_tag(model, key, str(tags[key]), actor=actor)
    return changed


@task(name="tag-model", retries=2, retry_delay_seconds=1)
def tag_model(model: str, tags: Mapping[str, str], *, registry_block: str | None = None) -> list[str]:
    """:func:`apply_model_tags` on the registry a block (or ``MLOPS_*``) points at."""
    from tasks.registry.steps import open_registry

    if not tags:
        return []
    return apply_model_tags(open_registry(registry_block), model, tags)
