"""Every domain's named suites, and which domain a task belongs to: the catalogue ``gato eval`` groups a
checkpoint's tasks by, and ``--suite`` names.

A domain is a family of tasks scored together (one aggregate with confidence intervals): ``babyai`` (levels,
datasets ``babyai/<level>-bot-v0``) and ``metaworld`` (tasks, datasets ``metaworld/<task>-scripted-v0``). A
suite is a named list of a domain's members: BabyAI's ``jat`` and ``all`` (:mod:`gato.data.babyai_suites`),
Meta-World's ``mt10`` and ``mt50`` (Meta-World's own lists, read through
:func:`gato.data.experts.metaworld.resolve_tasks`). Nothing here imports minigrid or metaworld until a suite's
members are asked for.
"""

from __future__ import annotations

import re

from gato.data.babyai_suites import level_of

__all__ = ["DOMAINS", "SUITES", "domain_of", "member_of", "suite_domain", "suite_members"]

DOMAINS: dict[str, dict[str, str]] = {
    "babyai": {"label": "BabyAI", "unit": "level", "units": "levels"},
    "metaworld": {"label": "Meta-World", "unit": "task", "units": "tasks"},
}
"""The domains, in report order, with the words their reports use."""

SUITES: dict[str, str] = {"jat": "babyai", "all": "babyai", "mt10": "metaworld", "mt50": "metaworld"}
"""Every suite name and its domain (``all``: every BabyAI level the bot solves, as ``gato data babyai --levels
all``)."""

_METAWORLD = re.compile(r"^metaworld/(?P<task>[a-z0-9-]+-v\d+)-scripted(-v\d+)?$")


def member_of(name: str) -> tuple[str, str] | None:
    """``(domain, member)`` of a task name or dataset id: ``babyai/GoToLocal-bot(-v0)`` is ``("babyai",
    "GoToLocal")``, ``metaworld/reach-v3-scripted(-v0)`` is ``("metaworld", "reach-v3")``; None for a task of no
    domain (a single env, text, VQA)."""
    level = level_of(name)
    if level is not None:
        return "babyai", level
    match = _METAWORLD.match(name)
    return ("metaworld", match["task"]) if match else None


def domain_of(name: str) -> str | None:
    """The domain of a task name or dataset id (``"babyai"``, ``"metaworld"``), or None."""
    found = member_of(name)
    return found[0] if found else None


def suite_domain(suite: str) -> str:
    """The domain of a suite name; ValueError naming the suites for an unknown one."""
    if suite not in SUITES:
        raise ValueError(f"unknown suite {suite!r}: choose one of {', '.join(SUITES)} (BabyAI: jat, all; "
                         "Meta-World: mt10, mt50)")
    return SUITES[suite]


def suite_members(suite: str) -> list[str]:
    """The members of a suite, in its order: BabyAI level names or Meta-World task names (``reach-v3``)."""
    domain = suite_domain(suite)
    if domain == "babyai":
        from gato.data.babyai_suites import suite_levels

        return suite_levels(suite)
    from gato.data.experts.metaworld import resolve_tasks

    return resolve_tasks([suite])
