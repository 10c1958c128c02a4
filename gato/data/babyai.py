"""Offline recipe: BabyAI expert demonstrations from the BabyAI bot, as a Minari dataset.

Everything runs locally (no downloads). Episodes are played by
``minigrid.utils.baby_ai_bot.BabyAIBot`` in worker processes. The bot can loop
forever inside ``replan()`` on some levels (about a quarter of UnlockToUnlock's
seeds, a few of GoToImpUnlock's): its loop pushes subgoals on its stack without end.
A step that pushes more than :data:`REPLAN_SUBGOAL_LIMIT` subgoals (ten times the most
any solved episode's step pushes) drops the episode as ``"replan_loop"``, within
milliseconds; a wall-clock alarm inside the worker (``episode_timeout_s``) remains
for anything else, since a pure-Python hang cannot be interrupted from another thread.
Episodes that loop, hang, raise (e.g. KeyInBox, PutNext*Carrying) or do not succeed
are skipped and counted. The level is a source of the one generation driver,
:func:`gato.data.generation.generate_many`.

Stored layout (hdf5, lossless images)::

    observations: Dict(direction=Discrete(4), image=Box(0, 255, (7, 7, 3), uint8),
                       mission=Text(max_length=MISSION_MAX_LENGTH, charset=MISSION_CHARSET))
    actions:      Discrete(7)

``mission`` becomes a gymnasium ``Text`` space because minigrid's
``MissionSpace`` cannot be serialised by minari; it reads back as a list of str.

Metadata (``minari.load_dataset(id).storage.metadata``): ``ref_max_score`` = mean
bot return over the written episodes, ``ref_min_score`` = mean return of a
uniform-random policy (so ``minari.get_normalized_score`` works), plus
``expert_mean_return``, ``expert_std_return``, ``random_mean_return``,
``random_std_return``, ``num_expert_episodes``, ``num_random_episodes``,
``random_seeds``, ``episodes_skipped``, ``skip_reasons``, ``level``,
``generator`` (the recipe's arguments). Each episode keeps its reset seed as
its ``seed`` attribute.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import signal
import string
from collections import OrderedDict
from typing import Any

import gymnasium as gym
import numpy as np

from gato.data.generation import (
    RANDOM,
    Collected,
    DatasetJob,
    DatasetMaker,
    EpisodeDropped,
    GenerationReport,
    acting_after_reset,
    generate,
)
from gato.envs import Episode, make_env, play_episode
from gato.seeds import DATA

__all__ = [
    "BOT_NAME",
    "MISSION_CHARSET",
    "MISSION_MAX_LENGTH",
    "REPLAN_SUBGOAL_LIMIT",
    "babyai_job",
    "babyai_levels",
    "babyai_observation_space",
    "generate_babyai",
    "DATASET_ID",
    "MAKER",
    "babyai_dataset_id",
]

# Every BabyAI mission seen across all registered levels uses lowercase letters,
# space and comma; the rest is headroom so that future/custom missions still fit.
MISSION_CHARSET: str = string.ascii_letters + string.digits + " ,.;:'-_!?()"
# Longest mission seen (MiniBossLevel) is ~170 chars; BossLevel can nest more.
MISSION_MAX_LENGTH: int = 1024

BOT_NAME = "minigrid.utils.baby_ai_bot.BabyAIBot"

DATASET_ID = re.compile(r"^babyai/(?P<level>[A-Za-z0-9]+)-bot-v0$")
"""The dataset ids ``gato data babyai --level LEVEL`` writes by default (and ``gato train`` makes when missing)."""


def babyai_dataset_id(level: str) -> str:
    """The dataset a level's bot episodes are written to: ``babyai/<level>-bot-v0``."""
    return f"babyai/{level}-bot-v0"

_LEVEL_ID_RE = re.compile(r"^BabyAI-(?P<name>.+)-v(?P<version>\d+)$")


def _ensure_registered() -> None:
    """BabyAI envs are registered as a side effect of importing minigrid."""
    import minigrid  # noqa: F401


def babyai_levels() -> list[str]:
    """Sorted names of the registered BabyAI levels (ids ``BabyAI-<name>-v0``), e.g. ``"GoToLocal"``."""
    _ensure_registered()
    names = []
    for env_id in gym.registry:
        m = _LEVEL_ID_RE.match(env_id)
        if m and m["version"] == "0":
            names.append(m["name"])
    return sorted(names)


def _resolve_level(level: str) -> tuple[str, str]:
    """Map a level name or full id to ``(env_id, short_name_for_dataset_id)``."""
    _ensure_registered()
    if not isinstance(level, str) or not level:
        raise ValueError(f"level must be a non-empty string such as 'GoToLocal', got {level!r}")
    if level in gym.registry and _LEVEL_ID_RE.match(level):
        m = _LEVEL_ID_RE.match(level)
        name = m["name"] if m["version"] == "0" else f"{m['name']}-v{m['version']}"
        return level, name
    env_id = f"BabyAI-{level}-v0"
    if env_id in gym.registry:
        return env_id, level
    levels = babyai_levels()
    close = difflib.get_close_matches(level, levels, n=3)
    hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
    raise ValueError(
        f"Unknown BabyAI level {level!r}.{hint} Pass a level name such as "
        f"{', '.join(map(repr, levels[:5]))} (see gato.data.babyai.babyai_levels() for all "
        f"{len(levels)}) or a full registered id like 'BabyAI-GoToLocal-v0'."
    )


def babyai_observation_space(env_space: gym.spaces.Dict) -> gym.spaces.Dict:
    """The storable version of a BabyAI observation space.

    Same keys in the same order, with minigrid's ``MissionSpace`` (not
    serialisable by minari) replaced by a ``Text`` space over
    :data:`MISSION_CHARSET`.
    """
    from minigrid.core.mission import MissionSpace

    spaces = OrderedDict()
    for key, sub in env_space.spaces.items():
        if isinstance(sub, MissionSpace):
            sub = gym.spaces.Text(max_length=MISSION_MAX_LENGTH, min_length=0, charset=MISSION_CHARSET)
        spaces[key] = sub
    # OrderedDict: a plain dict would be re-sorted by gymnasium.spaces.Dict.
    return gym.spaces.Dict(spaces)


# --------------------------------------------------------------------------- source

REPLAN_SUBGOAL_LIMIT = 100
"""Subgoals one bot step may push before the episode is dropped as ``"replan_loop"``. Solved episodes push at
most 10 in a step (150 seeds of each of JAT's 39 levels, minigrid 3.2.0); a looping ``replan`` pushes ~10,000
a second on UnlockToUnlock and ~400 on GoToImpUnlock (docs/EXPERIMENTS.md, 2026-12-06)."""


class _SubgoalStack(list):
    """The bot's stack of subgoals, counting what one ``replan`` pushes (the bot pushes by ``append`` only):
    past :data:`REPLAN_SUBGOAL_LIMIT` it is looping, and the episode is dropped."""

    def __init__(self, subgoals, limit: int = REPLAN_SUBGOAL_LIMIT):
        super().__init__(subgoals)
        self.limit, self.pushed = limit, 0

    def append(self, subgoal) -> None:
        """Push ``subgoal``; raise :class:`EpisodeDropped` when this step has pushed more than ``limit``."""
        self.pushed += 1
        if self.pushed > self.limit:
            raise EpisodeDropped("replan_loop", f"the BabyAI bot pushed over {self.limit} subgoals in one step")
        super().append(subgoal)


def _bot(env: gym.Env, seed: int, noise: float):
    """The BabyAI bot as ``play_episode``'s ``act``, for the level ``env`` was just reset to.

    With ``noise`` > 0, each step takes a random turn or forward move with that probability
    (recorded as taken) and the bot, told what was taken, plans its way back: the data then
    shows how to recover from off-course states, which plain demonstrations never visit.
    A step whose ``replan`` loops raises :class:`gato.data.generation.EpisodeDropped` (see :class:`_SubgoalStack`).
    """
    from minigrid.utils.baby_ai_bot import BabyAIBot

    bot, rng, taken = BabyAIBot(env.unwrapped), np.random.default_rng(seed), None
    bot.stack = _SubgoalStack(bot.stack)

    def act(obs) -> int:
        nonlocal taken
        bot.stack.pushed = 0
        action = int(bot.replan(taken))
        if noise and rng.random() < noise:
            action = int(rng.integers(3))  # left, right or forward
        taken = action
        return action

    return act


@dataclasses.dataclass(frozen=True)
class _BotSource:
    """BabyAI bot demonstrations of one level (a :class:`gato.data.generation.Source`)."""

    env_id: str
    level: str  # the short name, e.g. "GoToLocal"
    episode_timeout_s: float
    noise: float
    max_steps: int | None = None  # None: the level's own step bound (minigrid's max_steps)
    expert = "The BabyAI bot"
    skips_failures = True  # the bot hangs in replan() or raises on some levels, or fails
    clean_expert_reference = False  # the expert reference is the written (noisy) episodes

    @property
    def label(self) -> str:
        """Progress bar name."""
        return f"{self.env_id} bot"

    def make(self) -> gym.Env:
        """The level's env, with the step bound ``max_steps`` when one is given."""
        return make_env(self.env_id) if self.max_steps is None else make_env(self.env_id, max_steps=self.max_steps)

    def prepare(self) -> tuple[str, gym.Space, gym.Space]:
        """The env id, the storable observation space and the action space."""
        probe = make_env(self.env_id)
        spaces = babyai_observation_space(probe.observation_space), probe.action_space
        probe.close()
        return self.env_id, *spaces

    def player(self):
        """Plays bot demonstrations and uniform-random references (actions from the episode seed)."""
        env = self.make()

        def play(kind: str, seed: int) -> Episode:
            if kind == RANDOM:
                rng, n_actions = np.random.default_rng(seed), int(env.action_space.n)
                return play_episode(env, lambda _: int(rng.integers(n_actions)), seed)
            return play_episode(env, acting_after_reset(lambda: _bot(env, seed, self.noise)), seed, record=True)

        return play

    def succeeded(self, episode: Episode) -> bool:
        """A demonstration is kept when the bot reached the goal (return > 0)."""
        return episode.total > 0

    def metadata(self, collected: Collected, action_space: gym.Space) -> dict[str, Any]:
        """Description, bot name, minigrid pin and the extra keys listed in the module docstring."""
        import minigrid

        seed, attempts, written, skipped = collected.seed, collected.attempts, len(collected.demos), collected.skipped
        (expert_mean, expert_std), (random_mean, random_std) = collected.expert_stats, collected.random_stats
        refs = collected.reference_seeds
        reasons = ", ".join(f"{k}: {v}" for k, v in sorted(collected.skip_reasons.items())) or "none"
        description = (
            f"Expert demonstrations for {self.env_id}, generated offline by the BabyAI bot "
            f"({BOT_NAME}, minigrid {minigrid.__version__}). Attempt i uses env.reset(seed={seed}+i) and "
            f"follows bot.replan() until the episode ends"
            + (f", taking a random left/right/forward move with probability {self.noise} (recorded; the bot then "
               "recovers)" if self.noise else "")
            + f"; {attempts} attempts (seeds {seed}..{seed + attempts - 1}), "
            f"{written} successful episodes written, {skipped} skipped (a replan loop of over "
            f"{REPLAN_SUBGOAL_LIMIT} subgoals in a step, timeout > {self.episode_timeout_s}s, bot error, "
            f"or return <= 0; {reasons}). Each episode's seed is stored with it. "
            "The mission is stored as a gymnasium Text space; images are stored losslessly. "
            + (f"ref_max_score = mean bot return over the written episodes ({expert_mean:.4f} +- {expert_std:.4f}); "
               f"ref_min_score = mean return of a uniform-random policy over {len(collected.random_returns)} episodes "
               f"with seeds {refs[0]}..{refs[-1]} ({random_mean:.4f} +- {random_std:.4f})."
               if collected.have_refs else "No reference scores were computed.")
        )
        extra = {
            "level": self.level, "expert_mean_return": expert_mean, "expert_std_return": expert_std,
            "num_expert_episodes": written, "episodes_skipped": skipped, "skip_reasons": dict(collected.skip_reasons),
            "generator": {"recipe": "gato.data.babyai.generate_babyai", "bot": BOT_NAME, "env_id": self.env_id,
                          "seed": seed, "attempts": attempts, "episode_timeout_s": float(self.episode_timeout_s),
                          "noise": float(self.noise)},
        }
        if self.max_steps is not None:  # hdf5 attributes hold no None
            extra["generator"]["max_steps"] = int(self.max_steps)
        if collected.have_refs:
            extra.update(random_mean_return=random_mean, random_std_return=random_std,
                         num_random_episodes=len(collected.random_returns), random_seeds=[refs[0], refs[-1]])
        return {"description": description, "algorithm_name": BOT_NAME,
                "requirements": [f"minigrid=={minigrid.__version__}"], "extra_metadata": extra}


def generate_babyai(
    level: str = "GoToLocal",
    episodes: int = 1000,
    *,
    dataset_id: str | None = None,
    seed: int = 0,
    workers: int = 2,
    episode_timeout_s: float = 5.0,
    reference_episodes: int = 100,
    max_attempts: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
    noise: float = 0.0,
    max_steps: int | None = None,
) -> GenerationReport:
    """Generate ``episodes`` successful BabyAI-bot episodes and write them as a Minari dataset.

    Attempt ``i`` (0, 1, 2, ...) plays ``env.reset(seed=seed + i)`` with
    ``BabyAIBot(env.unwrapped).replan()`` until terminated/truncated. Attempts
    whose bot loops in ``replan`` (``"replan_loop"``, see :data:`REPLAN_SUBGOAL_LIMIT`),
    that exceed ``episode_timeout_s`` wall-clock seconds, raise, or end with
    return <= 0 are skipped. The first ``episodes`` successful attempts in seed
    order are written (deterministic, apart from which episodes time out on a
    slow machine); generation stops early once they are known, or after
    ``max_attempts`` attempts. The driver is :func:`gato.data.generation.generate`.

    Args:
        level: BabyAI level name (``"GoToLocal"`` -> ``BabyAI-GoToLocal-v0``; see
            :func:`babyai_levels`) or a full registered id (``"BabyAI-GoToLocal-v0"``).
        episodes: number of successful episodes to write (> 0).
        dataset_id: Minari id; default ``"babyai/<level>-bot-v0"``.
        seed: first reset seed; data seeds are ``seed .. seed + attempts - 1``.
        workers: worker processes (spawned; each runs one episode at a time).
        episode_timeout_s: wall-clock budget per episode, enforced by SIGALRM
            inside the worker (reset + bot planning + stepping).
        noise: probability of a random move at each step, which the bot then recovers
            from (see ``_bot``); the expert reference return is that of the noisy bot.
        reference_episodes: uniform-random-policy episodes for ``ref_min_score``
            (seeds ``seed + 10**9 + j``, disjoint from the data seeds). 0 skips the
            reference scores entirely (no ``ref_*_score`` is stored).
        max_attempts: cap on attempted bot episodes; default ``3 * episodes``, fewer where the data seed
            block (:data:`gato.seeds.DATA`) ends sooner (never fewer than ``episodes``).
        overwrite: replace an existing local dataset with the same id.
        progress: show a tqdm progress bar (episodes played) on stderr.
        max_steps: step bound of every episode (bot and random); None: the level's own (minigrid's
            ``max_steps``). An episode that reaches it without success is skipped as ``"truncated"``.

    Episodes run in ``spawn``-ed worker processes, so a script calling this
    must guard its entry point with ``if __name__ == "__main__":``.

    Returns:
        A :class:`~gato.data.generation.GenerationReport`. If no attempt succeeds, nothing is
        written and ``episodes_written == 0`` (a RuntimeWarning is issued).

    Raises:
        ValueError: unknown level, non-positive ``episodes``/``workers``/
            ``episode_timeout_s``, negative ``reference_episodes``, bad ``dataset_id``.
        FileExistsError: ``dataset_id`` exists locally and ``overwrite`` is False
            (checked before any episode is played).
    """
    job = babyai_job(level, episodes, dataset_id=dataset_id, seed=seed, episode_timeout_s=episode_timeout_s,
                     reference_episodes=reference_episodes, max_attempts=max_attempts, noise=noise, max_steps=max_steps)
    return generate(job.source, job.episodes, dataset_id=job.dataset_id, seed=seed, workers=workers,
                    reference_episodes=reference_episodes, max_attempts=job.max_attempts, overwrite=overwrite,
                    progress=progress)


def babyai_job(level: str, episodes: int, *, dataset_id: str | None = None, seed: int = 0,
               episode_timeout_s: float = 5.0, reference_episodes: int = 100, max_attempts: int | None = None,
               noise: float = 0.0, max_steps: int | None = None) -> DatasetJob:
    """One level's bot dataset as a :class:`gato.data.generation.DatasetJob` (for
    :func:`gato.data.generation.generate_many`, several levels in one pool); the arguments and their checks are
    :func:`generate_babyai`'s."""
    env_id, name = _resolve_level(level)
    if not episode_timeout_s or episode_timeout_s <= 0:
        raise ValueError(f"episode_timeout_s must be > 0 seconds, got {episode_timeout_s!r}")
    if not hasattr(signal, "setitimer"):
        raise RuntimeError("generate_babyai needs signal.setitimer (POSIX) to bound episodes by time.")
    if max_steps is not None and (isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1):
        raise ValueError(f"max_steps must be a positive int (steps per episode) or None, got {max_steps!r}")
    if max_attempts is None and isinstance(episodes, int):
        # Attempts past the data block would replay evaluation episodes: near its end, fewer spares.
        max_attempts = max(episodes, min(3 * episodes, DATA.stop - seed))
    return DatasetJob(_BotSource(env_id, name, episode_timeout_s, noise, max_steps), episodes,
                      dataset_id or babyai_dataset_id(name), seed, reference_episodes, max_attempts)


class _BabyAIMaker(DatasetMaker):
    """BabyAI levels in the catalogue (gato.data.catalogue): ``babyai/LEVEL-bot-v0``, the BabyAI bot's episodes."""

    name = "babyai"

    def owns(self, dataset_id: str) -> bool:
        return DATASET_ID.match(dataset_id) is not None

    def describe(self, dataset_id: str) -> str:
        return "BabyAI bot"

    def make(self, dataset_id: str, episodes: int, progress: bool = True) -> GenerationReport:
        return generate_babyai(DATASET_ID.match(dataset_id)["level"], episodes, dataset_id=dataset_id,
                               progress=progress)

    def command(self, dataset_id: str) -> str:
        return f"`gato data babyai --level {DATASET_ID.match(dataset_id)['level']} --overwrite`"

    def list_rows(self) -> list[dict]:
        return [{"recipe": "babyai", "dataset id": "babyai/LEVEL-bot-v0", "extra": "",
                 "what": "any BabyAI level (--level; several: --levels jat|all|NAMES), BabyAI bot: "
                 + ", ".join(babyai_levels()[:4]) + ", ..."}]


MAKER = _BabyAIMaker()
"""This plug-in, as :mod:`gato.data.catalogue` lists it."""
