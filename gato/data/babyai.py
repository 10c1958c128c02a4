"""Offline recipe: BabyAI expert demonstrations from the BabyAI bot, as a Minari dataset.

Everything runs locally (no downloads). Episodes are played by
``minigrid.utils.baby_ai_bot.BabyAIBot`` in worker processes; each episode is
bounded by a wall-clock alarm inside its worker, because the bot can loop
forever inside ``replan()`` on some levels (GoToImpUnlock, UnlockToUnlock) and a
pure-Python hang cannot be interrupted from another thread. Episodes that hang,
raise (e.g. KeyInBox, PutNext*Carrying) or do not succeed are skipped and counted.

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

import collections
import dataclasses
import difflib
import itertools
import math
import multiprocessing
import os
import re
import signal
import string
import sys
import time
import warnings
from collections import OrderedDict
from typing import Any

import gymnasium as gym
import numpy as np

__all__ = [
    "GenerationReport",
    "MISSION_CHARSET",
    "MISSION_MAX_LENGTH",
    "babyai_levels",
    "babyai_observation_space",
    "generate_babyai",
]

# Every BabyAI mission seen across all registered levels uses lowercase letters,
# space and comma; the rest is headroom so that future/custom missions still fit.
MISSION_CHARSET: str = string.ascii_letters + string.digits + " ,.;:'-_!?()"
# Longest mission seen (MiniBossLevel) is ~170 chars; BossLevel can nest more.
MISSION_MAX_LENGTH: int = 1024

BOT_NAME = "minigrid.utils.baby_ai_bot.BabyAIBot"

# Reference (random-policy) episodes use seeds far from the data seeds so the two
# sets stay disjoint for any realistic dataset size, and do not depend on it.
_REFERENCE_SEED_OFFSET = 1_000_000_000

_LEVEL_ID_RE = re.compile(r"^BabyAI-(?P<name>.+)-v(?P<version>\d+)$")


@dataclasses.dataclass
class GenerationReport:
    """Outcome of :func:`generate_babyai`.

    Attributes:
        dataset_id: Minari id the data was written to (nothing is written when
            ``episodes_written == 0``).
        episodes_written: successful bot episodes stored.
        episodes_skipped: attempted episodes that were dropped.
        skip_reasons: counts per reason: ``"timeout"`` (exceeded
            ``episode_timeout_s``), ``"failed"`` (ended with return <= 0),
            ``"error:<ExceptionType>"`` (the bot or env raised), and
            ``"worker_unresponsive"`` (a worker stopped answering; generation
            stopped early).
        expert_mean_return / expert_std_return: mean / population std of the
            returns of the written episodes (NaN if none).
        random_mean_return / random_std_return: same for a uniform-random policy
            over ``reference_episodes`` episodes (NaN if not computed).
        seconds: wall-clock time of the whole call.
        env_id: gymnasium id the data came from.
        attempts: episodes attempted (written + skipped).
    """

    dataset_id: str
    episodes_written: int
    episodes_skipped: int
    skip_reasons: collections.Counter
    expert_mean_return: float
    expert_std_return: float
    random_mean_return: float
    random_std_return: float
    seconds: float
    env_id: str = ""
    attempts: int = 0


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


# --------------------------------------------------------------------------- workers
# Everything below the line runs inside spawned worker processes. It only
# imports gymnasium/minigrid/numpy (not minari/h5py) to keep worker start-up cheap.


class _EpisodeTimeout(BaseException):
    """Raised by SIGALRM in a worker. BaseException so `except Exception` in bot code cannot swallow it."""


_WORKER_ENVS: dict[str, gym.Env] = {}


def _on_alarm(signum, frame):
    raise _EpisodeTimeout()


def _worker_init() -> None:
    """Per-worker setup: silence level-generation prints, install the alarm handler."""
    # minigrid's level generator prints "Sampling rejected: ..." on stdout.
    sys.stdout = open(os.devnull, "w")
    signal.signal(signal.SIGALRM, _on_alarm)
    warnings.filterwarnings("ignore")
    _ensure_registered()


def _worker_env(env_id: str) -> gym.Env:
    env = _WORKER_ENVS.get(env_id)
    if env is None:
        env = _WORKER_ENVS[env_id] = gym.make(env_id)
    return env


def _play_bot(env: gym.Env, seed: int, noise: float = 0.0) -> dict[str, Any]:
    """One bot episode; returns the episode dict in the writer's per-step format.

    With ``noise`` > 0, each step takes a random turn or forward move with that probability
    (recorded as taken) and the bot, told what was taken, plans its way back: the data then
    shows how to recover from off-course states, which plain demonstrations never visit.
    """
    from minigrid.utils.baby_ai_bot import BabyAIBot

    obs, _ = env.reset(seed=seed)
    bot = BabyAIBot(env.unwrapped)
    rng = np.random.default_rng(seed)
    observations, actions, rewards, terms, truncs = [obs], [], [], [], []
    done, taken = False, None
    while not done:
        action = int(bot.replan(taken))
        if noise and rng.random() < noise:
            action = int(rng.integers(3))  # left, right or forward
        taken = action
        obs, reward, terminated, truncated, _ = env.step(action)
        observations.append(obs)
        actions.append(action)
        rewards.append(float(reward))
        terms.append(bool(terminated))
        truncs.append(bool(truncated))
        done = terminated or truncated
    return {
        "seed": seed,
        "observations": observations,
        "actions": actions,
        "rewards": rewards,
        "terminations": terms,
        "truncations": truncs,
    }


def _play_random(env: gym.Env, seed: int) -> float:
    """Return of one uniform-random-policy episode (actions seeded by the episode seed)."""
    rng = np.random.default_rng(seed)
    n_actions = int(env.action_space.n)
    env.reset(seed=seed)
    total, done = 0.0, False
    while not done:
        _, reward, terminated, truncated, _ = env.step(int(rng.integers(n_actions)))
        total += float(reward)
        done = terminated or truncated
    return total


def _run_task(task: tuple[str, str, int, float, float]) -> tuple[int, str, Any]:
    """Run one episode under a wall-clock alarm: ``(seed, "ok"|skip_reason, payload)``."""
    kind, env_id, seed, timeout_s, noise = task
    try:
        signal.setitimer(signal.ITIMER_REAL, timeout_s)
        try:
            env = _worker_env(env_id)
            payload = _play_bot(env, seed, noise) if kind == "bot" else _play_random(env, seed)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    except _EpisodeTimeout:
        return seed, "timeout", None
    except Exception as err:  # the bot raises AssertionError, DisappearedBoxError, ...
        return seed, f"error:{type(err).__name__}", None
    if kind == "bot" and sum(payload["rewards"]) <= 0:
        return seed, "failed", None
    return seed, "ok", payload


# --------------------------------------------------------------------------- driver


def _default_dataset_id(name: str) -> str:
    return f"babyai/{name}-bot-v0"


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and population std of returns (NaN, NaN for none)."""
    if not values:
        return math.nan, math.nan
    arr = np.asarray(values, dtype=np.float64)
    return float(arr.mean()), float(arr.std())


def _run_chunk(tasks: list[tuple[str, str, int, float, float]]) -> list[tuple[int, str, Any]]:
    """Run a chunk of episodes in one IPC round-trip (BabyAI episodes take ~ms each)."""
    return [_run_task(task) for task in tasks]


def _imap_with_watchdog(pool, tasks, chunksize: int, patience_s: float):
    """Ordered results of ``_run_task`` over ``tasks``, chunked, with a watchdog.

    Raises ``multiprocessing.TimeoutError`` if no chunk arrives for ``patience_s``.
    The per-episode alarm handles hangs in Python code; this only guards against
    a worker wedged where signals cannot reach it (e.g. inside a C call).
    Chunking is done here rather than via ``imap(chunksize=...)`` because the
    latter returns a plain generator whose ``next`` takes no timeout.
    """
    tasks = iter(tasks)
    chunks = iter(lambda: list(itertools.islice(tasks, chunksize)), [])
    it = pool.imap(_run_chunk, chunks)
    while True:
        try:
            chunk = it.next(timeout=patience_s)
        except StopIteration:
            return
        yield from chunk


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
) -> GenerationReport:
    """Generate ``episodes`` successful BabyAI-bot episodes and write them as a Minari dataset.

    Attempt ``i`` (0, 1, 2, ...) plays ``env.reset(seed=seed + i)`` with
    ``BabyAIBot(env.unwrapped).replan()`` until terminated/truncated. Attempts
    that exceed ``episode_timeout_s`` wall-clock seconds, raise, or end with
    return <= 0 are skipped. The first ``episodes`` successful attempts in seed
    order are written (deterministic, apart from which episodes time out on a
    slow machine); generation stops early once they are known, or after
    ``max_attempts`` attempts.

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
            from (see ``_play_bot``); the expert reference return is that of the noisy bot.
        reference_episodes: uniform-random-policy episodes for ``ref_min_score``
            (seeds ``seed + 10**9 + j``, disjoint from the data seeds). 0 skips the
            reference scores entirely (no ``ref_*_score`` is stored).
        max_attempts: cap on attempted bot episodes; default ``3 * episodes``.
        overwrite: replace an existing local dataset with the same id.
        progress: show a tqdm progress bar (successful episodes) on stderr.

    Episodes run in ``spawn``-ed worker processes, so a script calling this
    must guard its entry point with ``if __name__ == "__main__":``.

    Returns:
        A :class:`GenerationReport`. If no attempt succeeds, nothing is written
        and ``episodes_written == 0`` (a RuntimeWarning is issued).

    Raises:
        ValueError: unknown level, non-positive ``episodes``/``workers``/
            ``episode_timeout_s``, negative ``reference_episodes``, bad ``dataset_id``.
        FileExistsError: ``dataset_id`` exists locally and ``overwrite`` is False
            (checked before any episode is played).
    """
    from tqdm.auto import tqdm

    from gato.data.writer import local_dataset_exists, validate_dataset_id, write_dataset

    start = time.perf_counter()
    if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes <= 0:
        raise ValueError(f"episodes must be a positive int (number of episodes to write), got {episodes!r}")
    if not isinstance(workers, int) or workers <= 0:
        raise ValueError(f"workers must be a positive int (number of worker processes), got {workers!r}")
    if not episode_timeout_s or episode_timeout_s <= 0:
        raise ValueError(f"episode_timeout_s must be > 0 seconds, got {episode_timeout_s!r}")
    if not isinstance(reference_episodes, int) or reference_episodes < 0:
        raise ValueError(f"reference_episodes must be an int >= 0, got {reference_episodes!r}")
    max_attempts = 3 * episodes if max_attempts is None else int(max_attempts)
    if max_attempts < episodes:
        raise ValueError(f"max_attempts ({max_attempts}) must be >= episodes ({episodes})")
    if not hasattr(signal, "setitimer"):
        raise RuntimeError("generate_babyai needs signal.setitimer (POSIX) to bound episodes by time.")

    env_id, name = _resolve_level(level)
    dataset_id = dataset_id or _default_dataset_id(name)
    validate_dataset_id(dataset_id)
    # Fail before spending minutes on generation.
    if local_dataset_exists(dataset_id) and not overwrite:
        raise FileExistsError(
            f"Minari dataset {dataset_id!r} already exists; pass overwrite=True to replace it "
            "or choose another dataset_id."
        )

    probe = gym.make(env_id)
    observation_space = babyai_observation_space(probe.observation_space)
    action_space = probe.action_space
    probe.close()

    # A chunk of episodes per IPC round-trip: BabyAI episodes take ~ms, so
    # per-task pickling would otherwise dominate. Small enough to balance load.
    chunksize = max(1, min(16, max_attempts // (workers * 8)))
    # Workers are spawned (~seconds to import); after that a chunk needs at most
    # chunksize * timeout. Generous slack: this is only a last-resort watchdog.
    patience_s = chunksize * episode_timeout_s + 120.0

    skip_reasons: collections.Counter = collections.Counter()
    written: list[dict[str, Any]] = []
    random_returns: list[float] = []
    attempts = 0
    random_seeds = [seed + _REFERENCE_SEED_OFFSET + j for j in range(reference_episodes)]

    ctx = multiprocessing.get_context("spawn")  # fork is unsafe with threads; spawn also carries sys.path
    pool = ctx.Pool(workers, initializer=_worker_init)
    bar = tqdm(total=episodes, desc=f"{env_id} bot", unit="ep", disable=not progress)
    try:
        try:
            if reference_episodes:
                tasks = [("random", env_id, s, episode_timeout_s, 0.0) for s in random_seeds]
                ref_chunk = max(1, min(16, reference_episodes // (workers * 4)))
                for _, status, ret in _imap_with_watchdog(pool, tasks, ref_chunk, patience_s):
                    if status == "ok":
                        random_returns.append(ret)
            tasks = (("bot", env_id, seed + i, episode_timeout_s, noise) for i in range(max_attempts))
            for _, status, payload in _imap_with_watchdog(pool, tasks, chunksize, patience_s):
                attempts += 1
                if status == "ok":
                    written.append(payload)
                    bar.update(1)
                    if len(written) == episodes:
                        break
                else:
                    skip_reasons[status] += 1
                    bar.set_postfix(skipped=sum(skip_reasons.values()), refresh=False)
        except multiprocessing.TimeoutError:
            skip_reasons["worker_unresponsive"] += 1
            attempts += 1
            warnings.warn(
                f"A worker stopped responding for {patience_s:.0f}s (beyond the per-episode alarm); "
                "stopping generation early and writing what was collected.",
                RuntimeWarning,
                stacklevel=2,
            )
    finally:
        bar.close()
        # terminate (not close): remaining queued attempts are no longer needed.
        pool.terminate()
        pool.join()

    expert_mean, expert_std = mean_std([sum(ep["rewards"]) for ep in written])
    random_mean, random_std = mean_std(random_returns)
    skipped = sum(skip_reasons.values())
    report = GenerationReport(
        dataset_id=dataset_id,
        episodes_written=len(written),
        episodes_skipped=skipped,
        skip_reasons=skip_reasons,
        expert_mean_return=expert_mean,
        expert_std_return=expert_std,
        random_mean_return=random_mean,
        random_std_return=random_std,
        seconds=0.0,
        env_id=env_id,
        attempts=attempts,
    )
    if not written:
        warnings.warn(
            f"The BabyAI bot solved none of {attempts} attempts on {env_id} "
            f"(skips: {dict(skip_reasons)}); no dataset was written.",
            RuntimeWarning,
            stacklevel=2,
        )
        report.seconds = time.perf_counter() - start
        return report
    if len(written) < episodes:
        warnings.warn(
            f"Only {len(written)}/{episodes} successful episodes on {env_id} after {attempts} attempts "
            f"(skips: {dict(skip_reasons)}); writing those.",
            RuntimeWarning,
            stacklevel=2,
        )

    import minigrid

    have_refs = reference_episodes > 0 and bool(random_returns)
    reasons = ", ".join(f"{k}: {v}" for k, v in sorted(skip_reasons.items())) or "none"
    description = (
        f"Expert demonstrations for {env_id}, generated offline by the BabyAI bot "
        f"({BOT_NAME}, minigrid {minigrid.__version__}). Attempt i uses env.reset(seed={seed}+i) and "
        f"follows bot.replan() until the episode ends"
        + (f", taking a random left/right/forward move with probability {noise} (recorded; the bot then "
           "recovers)" if noise else "")
        + f"; {attempts} attempts (seeds {seed}..{seed + attempts - 1}), "
        f"{len(written)} successful episodes written, {skipped} skipped (timeout > {episode_timeout_s}s, "
        f"bot error, or return <= 0; {reasons}). Each episode's seed is stored with it. "
        "The mission is stored as a gymnasium Text space; images are stored losslessly. "
        + (
            f"ref_max_score = mean bot return over the written episodes ({expert_mean:.4f} +- {expert_std:.4f}); "
            f"ref_min_score = mean return of a uniform-random policy over {len(random_returns)} episodes with seeds "
            f"{random_seeds[0]}..{random_seeds[-1]} ({random_mean:.4f} +- {random_std:.4f})."
            if have_refs
            else "No reference scores were computed."
        )
    )
    extra = {
        "level": name,
        "expert_mean_return": expert_mean,
        "expert_std_return": expert_std,
        "num_expert_episodes": len(written),
        "episodes_skipped": skipped,
        "skip_reasons": dict(skip_reasons),
        "generator": {
            "recipe": "gato.data.babyai.generate_babyai",
            "bot": BOT_NAME,
            "env_id": env_id,
            "seed": seed,
            "attempts": attempts,
            "episode_timeout_s": float(episode_timeout_s),
            "noise": float(noise),
        },
    }
    if have_refs:
        extra.update(
            random_mean_return=random_mean,
            random_std_return=random_std,
            num_random_episodes=len(random_returns),
            random_seeds=[random_seeds[0], random_seeds[-1]],
        )
    write_dataset(
        dataset_id,
        written,
        env_id=env_id,
        observation_space=observation_space,
        action_space=action_space,
        ref_min_score=random_mean if have_refs else None,
        ref_max_score=expert_mean if have_refs else None,
        num_episodes_average_score=len(random_returns) if have_refs else None,
        description=description,
        algorithm_name=BOT_NAME,
        requirements=[f"minigrid=={minigrid.__version__}"],
        extra_metadata=extra,
        jpeg_encoding=False,
        overwrite=overwrite,
    )
    report.seconds = time.perf_counter() - start
    return report
