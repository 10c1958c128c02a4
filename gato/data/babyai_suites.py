"""Named suites of BabyAI levels, the one catalogue that ``gato data babyai --levels`` and ``gato eval --suite``
read: JAT's 39 levels, and ``all`` (every registered level, less those the bot cannot solve); and
:func:`generate_babyai_suite`, which writes a dataset per level of one.

A level is named as minigrid registers it without prefix and version: ``"GoToLocal"`` is
``BabyAI-GoToLocal-v0`` and its dataset is ``babyai/GoToLocal-bot-v0`` (:func:`dataset_id`).
"""

from __future__ import annotations

import dataclasses
import difflib
import re

__all__ = ["BOT_UNSOLVED", "JAT_LEVELS", "SUITES", "LevelOutcome", "dataset_id", "episode_counts",
           "generate_babyai_suite", "level_of", "resolve_levels", "suite_levels"]

JAT_LEVELS: tuple[str, ...] = (
    "ActionObjDoor", "BlockedUnlockPickup", "BossLevel", "BossLevelNoUnlock", "FindObjS5", "GoTo", "GoToDoor",
    "GoToImpUnlock", "GoToLocal", "GoToObj", "GoToObjDoor", "GoToRedBall", "GoToRedBallGrey", "GoToRedBallNoDists",
    "GoToRedBlueBall", "GoToSeq", "KeyCorridor", "MiniBossLevel", "MoveTwoAcrossS8N9", "OneRoomS8", "Open",
    "OpenDoor", "OpenDoorsOrderN4", "OpenRedDoor", "OpenTwoDoors", "Pickup", "PickupAbove", "PickupDist",
    "PickupLoc", "PutNextS7N4", "PutNextLocal", "Synth", "SynthLoc", "SynthSeq", "UnblockPickup", "Unlock",
    "UnlockLocal", "UnlockPickup", "UnlockToUnlock",
)
"""The 39 levels JAT (huggingface/jat) trains one model on (its ``create_babyai_dataset.py``); each is
``BabyAI-<name>-v0``."""

BOT_UNSOLVED: dict[str, str] = {
    "KeyInBox": "the bot raises AssertionError on every seed tried (0-3)",
    "PutNextS5N2Carrying": "the bot raises AssertionError on every seed tried (0-3)",
    "PutNextS6N3Carrying": "the bot raises AssertionError on every seed tried (0-3)",
    "PutNextS7N4Carrying": "the bot raises AssertionError on every seed tried (0-3)",
    "OpenDoorsOrderN2Debug": "the bot fails 2 of seeds 0-3 (a debug level ends at the first wrong door)",
    "OpenDoorsOrderN4Debug": "the bot fails 3 of seeds 0-3 (a debug level ends at the first wrong door)",
}
"""Registered levels that ``all`` leaves out, and why (minigrid 3.2.0's BabyAIBot, 2026-12-06; every other
registered level: 4 of 4 seeds solved)."""

_PREFIX = re.compile(r"^BabyAI-(?P<name>.+)-v0$")


def suite_levels(name: str) -> list[str]:
    """The levels of suite ``name``: ``jat`` (:data:`JAT_LEVELS`) or ``all`` (every registered BabyAI level the
    bot solves, sorted)."""
    from gato.data.babyai import babyai_levels

    if name == "jat":
        return list(JAT_LEVELS)
    if name == "all":
        return [level for level in babyai_levels() if level not in BOT_UNSOLVED]
    raise ValueError(f"unknown BabyAI suite {name!r}: choose one of {', '.join(SUITES)} or name the levels")


SUITES: tuple[str, ...] = ("jat", "all")
"""Suite names :func:`suite_levels` knows."""


def resolve_levels(names: list[str] | tuple[str, ...] | str) -> list[str]:
    """Level names from a suite name (``"jat"``, ``"all"``) or a list of levels (names or ``BabyAI-X-v0`` ids),
    checked against the registry, duplicates dropped, order kept. A misspelt level gets the closest names."""
    from gato.data.babyai import babyai_levels

    names = [names] if isinstance(names, str) else list(names)
    if not names:
        raise ValueError("no BabyAI level given: pass a suite (jat, all) or level names such as GoToLocal")
    if len(names) == 1 and names[0] in SUITES:
        return suite_levels(names[0])
    known, levels = set(babyai_levels()), []
    for name in names:
        match = _PREFIX.match(name)
        level = match["name"] if match else name
        if level in SUITES:
            raise ValueError(f"suite {level!r} stands alone: pass `--levels {level}` without other names")
        if level not in known:
            close = difflib.get_close_matches(level, sorted(known), n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise ValueError(f"unknown BabyAI level {name!r}{hint}"
                             f"; suites: {', '.join(SUITES)}; every level: gato.data.babyai.babyai_levels()")
        levels.append(level)
    return list(dict.fromkeys(levels))


def dataset_id(level: str) -> str:
    """The dataset a level's bot episodes are written to: ``babyai/<level>-bot-v0``."""
    from gato.data.babyai import babyai_dataset_id

    return babyai_dataset_id(level)


def level_of(name: str) -> str | None:
    """The BabyAI level of a dataset id or task name (``babyai/GoToLocal-bot-v0``, ``babyai/GoToLocal-bot``), or
    None for anything else."""
    match = re.match(r"^babyai/(?P<level>[A-Za-z0-9]+)-bot(-v\d+)?$", name)
    return match["level"] if match else None


def episode_counts(spec: list[str] | tuple[str, ...] | int | None, levels: list[str], default: int = 5000) -> dict:
    """Episodes per level from ``--episodes``: one number for every level (``["5000"]``), ``LEVEL=N`` pairs with
    an optional ``default=N`` (or a bare ``N``) for the rest (``["GoTo=8000", "BossLevel=20000", "5000"]``), or a
    JSON file holding such an object (``["counts.json"]``). Nothing given: ``default`` for every level."""
    import json
    from pathlib import Path

    if spec is None or (not isinstance(spec, int) and not spec):
        return {level: default for level in levels}
    if isinstance(spec, int):
        spec = [str(spec)]
    spec = [str(s) for s in spec]
    if len(spec) == 1 and spec[0].endswith(".json"):
        path = Path(spec[0])
        if not path.is_file():
            raise ValueError(f"--episodes {spec[0]}: no such JSON file (it should hold {{\"GoTo\": 8000, "
                             "\"default\": 5000}})")
        try:
            spec = [f"{k}={v}" for k, v in json.loads(path.read_text()).items()]
        except (json.JSONDecodeError, AttributeError) as e:
            raise ValueError(f"--episodes {path}: not a JSON object of level -> count ({e})") from None
    spec = [item if "=" in item else f"default={item}" for item in spec]  # a bare count: every other level's
    given = {}
    for item in spec:
        name, sep, value = item.partition("=")
        if not sep or not value.strip().isdigit() or int(value) < 1:
            raise ValueError(f"--episodes {item!r}: expected a positive count N, LEVEL=N or default=N "
                             "(e.g. --episodes GoTo=8000 BossLevel=20000 default=5000)")
        if name.strip() in given:
            raise ValueError(f"--episodes gives {name.strip()} twice")
        given[name.strip()] = int(value)
    default = given.pop("default", default)
    unknown = [name for name in given if name not in levels]
    if unknown:
        raise ValueError(f"--episodes names {', '.join(unknown)}, not among the levels generated "
                         f"({', '.join(levels[:6])}{', ...' if len(levels) > 6 else ''})")
    return {level: given.get(level, default) for level in levels}


# --------------------------------------------------------------------------- suites


@dataclasses.dataclass
class LevelOutcome:
    """What ``generate_babyai_suite`` did for one level: ``status`` is ``"written"``, ``"kept"`` (its dataset
    already existed and was left as it is) or ``"none"`` (no episode succeeded, nothing written); ``short``
    says the dataset holds fewer episodes than requested."""

    level: str
    dataset_id: str
    requested: int
    status: str
    episodes: int
    skipped: int = 0
    skip_reasons: dict = dataclasses.field(default_factory=dict)
    expert_return: float = float("nan")
    random_return: float = float("nan")
    seconds: float = 0.0

    @property
    def short(self) -> bool:
        """Fewer episodes than requested."""
        return self.episodes < self.requested

    @property
    def ms_per_attempt(self) -> float:
        """Wall-clock milliseconds per bot attempt (the level's time, from its first work item in the pool to its
        writing, over its attempts, the references included; NaN for a kept level)."""
        attempts = self.episodes + self.skipped
        return 1000 * self.seconds / attempts if self.status != "kept" and attempts else float("nan")

    def row(self) -> dict:
        """A row of the summary table."""
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(self.skip_reasons.items()))
        return {"level": self.level, "status": self.status + (" SHORT" if self.short else ""),
                "episodes": f"{self.episodes}/{self.requested}", "dropped": self.skipped, "why": reasons or "-",
                "expert": self.expert_return, "random": self.random_return, "seconds": f"{self.seconds:.1f}"}


def _existing(dataset_id: str) -> LevelOutcome | None:
    """The outcome of a level whose dataset is already written (its counts and references from its metadata)."""
    from gato.data.episodes import load_minari
    from gato.data.writer import local_dataset_exists

    if not local_dataset_exists(dataset_id):
        return None

    dataset = load_minari(dataset_id)
    meta = dataset.storage.metadata
    return LevelOutcome("", dataset_id, 0, "kept", int(dataset.total_episodes),
                        int(meta.get("episodes_skipped", 0)), dict(meta.get("skip_reasons", {}) or {}),
                        float(meta.get("expert_mean_return", float("nan"))),
                        float(meta.get("random_mean_return", float("nan"))))


def generate_babyai_suite(levels: list[str], episodes: int | dict[str, int], *, workers: int = 2,
                          episode_timeout_s: float = 5.0, max_steps: int | None = None, reference_episodes: int = 100,
                          seed: int = 0, overwrite: bool = False, progress: bool = True,
                          noise: float = 0.0) -> list[LevelOutcome]:
    """Write one bot dataset per level (``babyai/<Level>-bot-v0``, each as
    :func:`gato.data.babyai.generate_babyai` writes it, references included), under one progress bar over every
    level's episodes; returns one :class:`LevelOutcome` per level, in order.

    Resumable: a level whose dataset exists is kept as it is (status ``"kept"``) unless ``overwrite``. The levels
    are played by one pool of ``workers`` processes (:func:`gato.data.generation.generate_many`), level after
    level, and each is written as soon as it is complete. Every episode is bounded by the level's step bound
    (``max_steps``, default the level's own), by the bot's replan-loop guard and by ``episode_timeout_s`` of wall
    clock; what was dropped, and why, is in each outcome (and the dataset's metadata) -- a level is never silently
    thin.

    ``episodes``: the count for every level, or ``{level: count}`` covering every level
    (:func:`episode_counts` builds one from ``GoTo=8000 default=5000``). ``noise``: as
    :func:`gato.data.babyai.generate_babyai`'s, on every level. A level killed half-way is played again from its start.
    """
    import warnings as _warnings

    from gato.data.babyai import babyai_job
    from gato.data.generation import generate_many

    counts = {level: episodes for level in levels} if isinstance(episodes, int) else dict(episodes)
    missing = [level for level in levels if level not in counts]
    if missing:
        raise ValueError(f"no episode count for {', '.join(missing)}: give one for every level or a default")
    outcomes: list[LevelOutcome | None] = []
    for level in levels:
        kept = None if overwrite else _existing(dataset_id(level))
        if kept is not None:
            kept.level, kept.requested = level, counts[level]
        outcomes.append(kept)
    todo = [level for level, done in zip(levels, outcomes) if done is None]
    jobs = [babyai_job(level, counts[level], dataset_id=dataset_id(level), seed=seed,
                       episode_timeout_s=episode_timeout_s, reference_episodes=reference_episodes, noise=noise,
                       max_steps=max_steps) for level in todo]
    with _warnings.catch_warnings():  # a short level is reported in its outcome, not as a warning mid-bar
        _warnings.simplefilter("ignore", RuntimeWarning)
        reports = dict(zip(todo, generate_many(jobs, workers=workers, overwrite=overwrite, progress=progress)))
    for i, level in enumerate(levels):
        if outcomes[i] is None:
            report = reports[level]
            outcomes[i] = LevelOutcome(level, report.dataset_id, counts[level],
                                       "written" if report.episodes_written else "none", report.episodes_written,
                                       report.episodes_skipped, dict(report.skip_reasons), report.expert_mean_return,
                                       report.random_mean_return, report.seconds)
    return outcomes
