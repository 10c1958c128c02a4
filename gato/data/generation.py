"""One driver generates every dataset; BabyAI levels and the recipes are sources plugged into it.

:func:`generate` checks its arguments and the dataset id (before any episode is played), plays
the episodes in spawned worker processes under a progress bar, measures the reference returns,
and writes the dataset with its metadata in one atomic step (:func:`gato.data.writer.write_dataset`).
A :class:`Source` says what differs: how to play an episode in a worker (every episode is played
by :func:`gato.envs.play_episode`), whether a demonstration is kept, what the metadata says.

Seeds: demonstration attempt ``i`` resets with ``seed + i``; reference episode ``j`` (a
uniform-random policy, and the clean expert when a source asks for it) with
``seed + REFERENCE_SEED_OFFSET + j`` (``gato.seeds``' reference block), disjoint from the data
seeds for any realistic dataset size and independent of it. Demonstrations are written in seed
order, each with its seed.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import itertools
import math
import multiprocessing
import os
import signal
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any, Protocol

import gymnasium as gym
import numpy as np

from gato.envs import Episode, is_env_id
from gato.seeds import DATA, REFERENCE

__all__ = ["DEMO", "EXPERT", "RANDOM", "REFERENCE_SEED_OFFSET", "Collected", "GenerationReport", "Source",
           "DatasetMaker", "acting_after_reset", "generate", "mean_std"]

REFERENCE_SEED_OFFSET = REFERENCE.start
"""Reference episode ``j`` resets with ``seed + REFERENCE_SEED_OFFSET + j`` (10**9, ``gato.seeds.REFERENCE``)."""

DEMO, EXPERT, RANDOM = "demo", "expert", "random"
"""Kinds of episode: a recorded demonstration, a clean expert reference, a uniform-random reference."""


@dataclasses.dataclass
class GenerationReport:
    """Outcome of :func:`generate`.

    Attributes:
        dataset_id: Minari id the data was written to (nothing is written when
            ``episodes_written == 0``).
        episodes_written: demonstrations stored.
        episodes_skipped: attempted demonstrations that were dropped.
        skip_reasons: counts per reason: ``"timeout"`` (exceeded the source's
            ``episode_timeout_s``), ``"truncated"`` (reached the env's step bound without succeeding),
            ``"failed"`` (ended otherwise, and the source says it did not succeed),
            ``"error:<ExceptionType>"`` (the expert or env raised), and
            ``"worker_unresponsive"`` (a worker stopped answering; generation
            stopped early).
        expert_mean_return / expert_std_return: mean / population std of the expert's
            reference returns (NaN if none).
        random_mean_return / random_std_return: same for a uniform-random policy
            over the reference episodes (NaN if not computed).
        seconds: wall-clock time of the whole call.
        env_id: gymnasium id the data came from.
        attempts: demonstrations attempted (written + skipped).
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


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and population std of returns (NaN, NaN for none)."""
    if not values:
        return math.nan, math.nan
    arr = np.asarray(values, dtype=np.float64)
    return float(arr.mean()), float(arr.std())


@dataclasses.dataclass
class Collected:
    """What the workers played: the kept demonstrations (episode dicts, in seed order) and the
    reference returns. ``expert_returns`` are the clean expert's on the reference seeds, or the
    kept demonstrations' returns when the source plays no clean expert."""

    seed: int
    reference_seeds: list[int]
    demos: list[dict] = dataclasses.field(default_factory=list)
    attempts: int = 0
    skip_reasons: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    expert_returns: list[float] = dataclasses.field(default_factory=list)
    random_returns: list[float] = dataclasses.field(default_factory=list)

    @property
    def demo_returns(self) -> list[float]:
        """Return of each kept demonstration."""
        return [sum(ep["rewards"]) for ep in self.demos]

    @property
    def expert_stats(self) -> tuple[float, float]:
        """Mean and population std of ``expert_returns``."""
        return mean_std(self.expert_returns)

    @property
    def random_stats(self) -> tuple[float, float]:
        """Mean and population std of ``random_returns``."""
        return mean_std(self.random_returns)

    @property
    def skipped(self) -> int:
        """Attempted demonstrations that were dropped."""
        return sum(self.skip_reasons.values())

    @property
    def have_refs(self) -> bool:
        """Whether both reference returns were measured (the dataset then stores ``ref_*_score``)."""
        return bool(self.random_returns) and bool(self.expert_returns)


class Source(Protocol):
    """One kind of dataset :func:`generate` makes. Sources are pickled into the worker processes:
    keep them to plain data (a worker builds its env and expert with :meth:`player`)."""

    env_id: str
    """The Gymnasium id the data comes from (reported)."""
    label: str
    """Names the progress bar, e.g. ``"BabyAI-GoToLocal-v0 bot"``."""
    expert: str
    """Names the expert in warnings, e.g. ``"The BabyAI bot"``."""
    episode_timeout_s: float | None
    """Wall-clock bound of each episode inside its worker (SIGALRM); None: unbounded."""
    skips_failures: bool
    """A demonstration that raises, times out or does not succeed is skipped and counted (else it raises)."""
    clean_expert_reference: bool
    """The expert's reference return comes from clean episodes on the reference seeds (the
    demonstrations are perturbed), not from the demonstrations."""

    def prepare(self) -> tuple[Any, gym.Space, gym.Space]:
        """In the parent, before any worker starts: ``write_dataset``'s ``env_id`` (a registered
        id or the env's spec) and the stored observation and action spaces."""

    def player(self) -> Callable[[str, int], Episode]:
        """In a worker, once: ``play(kind, seed)`` plays one episode of ``kind`` (:data:`DEMO`,
        recorded; :data:`EXPERT` or :data:`RANDOM`, for the return) from ``reset(seed=seed)``."""

    def succeeded(self, episode: Episode) -> bool:
        """Whether a played demonstration is kept."""

    def metadata(self, collected: Collected, action_space: gym.Space) -> dict[str, Any]:
        """``write_dataset``'s ``description``, ``algorithm_name``, ``requirements`` and ``extra_metadata``."""


def acting_after_reset(build: Callable[[], Callable]) -> Callable:
    """``play_episode``'s ``act`` from ``build()``, called at the first step, i.e. after the env's
    reset (the BabyAI bot reads the level that reset made; a recipe's expert is reset after the env)."""
    act = None

    def first_builds(obs):
        nonlocal act
        if act is None:
            act = build()
        return act(obs)

    return first_builds


# --------------------------------------------------------------------------- workers
# One pool per generate call, so a worker plays for one source only.

_SOURCE: Source | None = None
_PLAY: Callable[[str, int], Episode] | None = None


class _EpisodeTimeout(BaseException):
    """Raised by SIGALRM in a worker. BaseException so `except Exception` in expert code cannot swallow it."""


def _on_alarm(signum, frame):
    raise _EpisodeTimeout()


def _worker_init(source: Source) -> None:
    """Per-worker setup: silence prints, install the alarm handler, remember the source, and import the
    package that registers its env here, outside any episode's time budget (minigrid takes a good part
    of a second to import on a loaded machine)."""
    global _SOURCE
    # Workers report through their results; prints (minigrid's "Sampling rejected: ...") would garble the bar.
    sys.stdout = open(os.devnull, "w")
    signal.signal(signal.SIGALRM, _on_alarm)
    warnings.filterwarnings("ignore")
    is_env_id(source.env_id)
    _SOURCE = source


@contextlib.contextmanager
def _alarm(seconds: float | None):
    """Raise :class:`_EpisodeTimeout` in this process after ``seconds`` (None: never)."""
    if seconds:
        signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        if seconds:
            signal.setitimer(signal.ITIMER_REAL, 0)


def _play_job(job: tuple[str, int]) -> tuple[str, str, Any]:
    """Play one episode ``(kind, seed)``: ``(kind, "ok" | skip reason, payload)``, the payload a
    demonstration's episode dict or a reference episode's return."""
    global _PLAY
    kind, seed = job
    try:
        with _alarm(_SOURCE.episode_timeout_s):
            _PLAY = _PLAY or _SOURCE.player()  # built under the alarm: making the env is part of the episode
            episode = _PLAY(kind, seed)
    except _EpisodeTimeout:
        return kind, "timeout", None
    except Exception as err:  # the BabyAI bot raises AssertionError, DisappearedBoxError, ...
        if not _SOURCE.skips_failures:
            raise
        return kind, f"error:{type(err).__name__}", None
    if kind != DEMO:
        return kind, "ok", episode.total
    if not _SOURCE.succeeded(episode):
        # the step bound (the env's max_steps) and a plain failure are told apart: the first means "needs longer"
        return kind, "truncated" if episode.truncations and episode.truncations[-1] else "failed", None
    return kind, "ok", episode.as_dict()


def _play_chunk(jobs: list[tuple[str, int]]) -> list[tuple[str, str, Any]]:
    """Play a chunk of episodes in one IPC round-trip (BabyAI episodes take ~ms each)."""
    return [_play_job(job) for job in jobs]


# --------------------------------------------------------------------------- driver


def _imap_with_watchdog(pool, jobs, chunksize: int, patience_s: float | None):
    """Ordered results of ``_play_job`` over ``jobs``, chunked, with a watchdog.

    Raises ``multiprocessing.TimeoutError`` if no chunk arrives for ``patience_s`` (None: wait).
    The per-episode alarm handles hangs in Python code; this only guards against a worker
    wedged where signals cannot reach it (e.g. inside a C call). Chunking is done here rather
    than via ``imap(chunksize=...)`` because the latter returns a plain generator whose
    ``next`` takes no timeout.
    """
    jobs = iter(jobs)
    chunks = iter(lambda: list(itertools.islice(jobs, chunksize)), [])
    results = pool.imap(_play_chunk, chunks)
    while True:
        try:
            chunk = results.next(timeout=patience_s)
        except StopIteration:
            return
        yield from chunk


def _check_counts(episodes, workers, reference_episodes, max_attempts) -> int:
    """Raise ValueError on a bad count; returns ``max_attempts`` (default ``episodes``)."""
    if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes <= 0:
        raise ValueError(f"episodes must be a positive int (number of episodes to write), got {episodes!r}")
    if not isinstance(workers, int) or workers <= 0:
        raise ValueError(f"workers must be a positive int (number of worker processes), got {workers!r}")
    if not isinstance(reference_episodes, int) or reference_episodes < 0:
        raise ValueError(f"reference_episodes must be an int >= 0, got {reference_episodes!r}")
    max_attempts = episodes if max_attempts is None else int(max_attempts)
    if max_attempts < episodes:
        raise ValueError(f"max_attempts ({max_attempts}) must be >= episodes ({episodes})")
    return max_attempts


def _claim(dataset_id: str, overwrite: bool) -> None:
    """Fail on a bad or taken dataset id before spending minutes on generation."""
    from gato.data.writer import local_dataset_exists, validate_dataset_id

    validate_dataset_id(dataset_id)
    if local_dataset_exists(dataset_id) and not overwrite:
        raise FileExistsError(f"Minari dataset {dataset_id!r} already exists; pass overwrite=True (--overwrite) "
                              "to replace it or choose another dataset_id (--dataset_id).")


def _collect(source: Source, episodes: int, seed: int, workers: int, reference_episodes: int,
             max_attempts: int, progress: bool, bar=None) -> Collected:
    """Play the reference episodes, then demonstrations until ``episodes`` are kept (or
    ``max_attempts`` were tried), in a pool of spawned workers. ``bar``: a tqdm bar to advance (one bar
    across several datasets; it is left open), else one is made for this dataset."""
    from tqdm.auto import tqdm

    collected = Collected(seed, [seed + REFERENCE_SEED_OFFSET + j for j in range(reference_episodes)])
    references = [(RANDOM, s) for s in collected.reference_seeds]
    if source.clean_expert_reference:
        references += [(EXPERT, s) for s in collected.reference_seeds]
    jobs = itertools.chain(references, ((DEMO, seed + i) for i in range(max_attempts)))
    # Chunks of up to 16 episodes (per-episode pickling would dominate ~ms BabyAI episodes),
    # at least 8 per worker to balance the load.
    chunksize = max(1, min(16, (len(references) + max_attempts) // (workers * 8)))
    # After the workers start (~seconds to import), a chunk needs at most chunksize * timeout.
    # Generous slack: this is only a last-resort watchdog.
    patience_s = chunksize * source.episode_timeout_s + 120.0 if source.episode_timeout_s else None
    # spawn: fork is unsafe with threads; spawn also carries sys.path
    pool = multiprocessing.get_context("spawn").Pool(min(workers, len(references) + max_attempts),
                                                    initializer=_worker_init, initargs=(source,))
    own_bar, advanced = bar is None, 0
    if own_bar:
        bar = tqdm(total=len(references) + episodes, desc=source.label, unit="ep", disable=not progress)
    try:
        for kind, status, payload in _imap_with_watchdog(pool, jobs, chunksize, patience_s):
            if kind != DEMO:
                if status == "ok":
                    (collected.random_returns if kind == RANDOM else collected.expert_returns).append(payload)
                bar.update(1)
                advanced += 1
                continue
            collected.attempts += 1
            if status != "ok":
                collected.skip_reasons[status] += 1
                bar.set_postfix(skipped=collected.skipped, refresh=False)
                continue
            collected.demos.append(payload)
            bar.update(1)
            advanced += 1
            if len(collected.demos) == episodes:
                break
    except multiprocessing.TimeoutError:
        collected.skip_reasons["worker_unresponsive"] += 1
        collected.attempts += 1
        warnings.warn(f"A worker stopped responding for {patience_s:.0f}s (beyond the per-episode alarm); "
                      "stopping generation early and writing what was collected.", RuntimeWarning, stacklevel=4)
    finally:
        if own_bar:
            bar.close()
        else:  # the episodes this dataset will not get count as done on a shared bar
            bar.update(len(references) + episodes - advanced)
        pool.terminate()  # not close: the attempts still queued are no longer needed
        pool.join()
    if not source.clean_expert_reference:
        collected.expert_returns = collected.demo_returns
    return collected


def generate(source: Source, episodes: int, *, dataset_id: str, seed: int = 0, workers: int = 2,
             reference_episodes: int = 100, max_attempts: int | None = None, overwrite: bool = False,
             progress: bool = True, bar=None) -> GenerationReport:
    """Play ``source``'s expert until ``episodes`` demonstrations are kept and write them as a Minari dataset.

    Demonstration attempt ``i`` resets with ``seed + i``; the first ``episodes`` kept ones in
    seed order are written (generation stops once they are known, or after ``max_attempts``,
    default ``episodes``, attempts). ``reference_episodes`` uniform-random episodes (and clean
    expert ones if the source asks) give ``ref_min_score`` / ``ref_max_score``; 0 stores none.
    Workers are spawned processes, so a script calling this needs an
    ``if __name__ == "__main__":`` guard. ``bar``: a shared tqdm bar to advance instead of this call's own.

    Returns a :class:`GenerationReport`; if no demonstration is kept, nothing is written and
    ``episodes_written == 0`` (a RuntimeWarning says so).

    Raises:
        ValueError: a bad count or dataset id, or seeds past the data block of ``gato.seeds``.
        FileExistsError: ``dataset_id`` exists locally and ``overwrite`` is False (both checked
            before any episode is played).
    """
    from gato.data.writer import write_dataset

    start = time.perf_counter()
    max_attempts = _check_counts(episodes, workers, reference_episodes, max_attempts)
    DATA.take(max_attempts, seed)  # raises if demonstrations would replay evaluation or correction episodes
    _claim(dataset_id, overwrite)
    env, observation_space, action_space = source.prepare()
    collected = _collect(source, episodes, seed, workers, reference_episodes, max_attempts, progress, bar)
    report = GenerationReport(dataset_id, len(collected.demos), collected.skipped, collected.skip_reasons,
                              *collected.expert_stats, *collected.random_stats,
                              seconds=0.0, env_id=source.env_id, attempts=collected.attempts)
    skips = f"(skips: {dict(collected.skip_reasons)})"
    if not collected.demos:
        warnings.warn(f"{source.expert} solved none of {collected.attempts} attempts on {source.env_id} {skips}; "
                      "no dataset was written.", RuntimeWarning, stacklevel=3)
    else:
        if len(collected.demos) < episodes:
            warnings.warn(f"Only {len(collected.demos)}/{episodes} successful episodes on {source.env_id} after "
                          f"{collected.attempts} attempts {skips}; writing those.", RuntimeWarning, stacklevel=3)
        have_refs = collected.have_refs
        write_dataset(dataset_id, collected.demos, env_id=env, observation_space=observation_space,
                      action_space=action_space, ref_min_score=report.random_mean_return if have_refs else None,
                      ref_max_score=report.expert_mean_return if have_refs else None,
                      num_episodes_average_score=len(collected.random_returns) if have_refs else None,
                      jpeg_encoding=False, overwrite=overwrite, **source.metadata(collected, action_space))
    report.seconds = time.perf_counter() - start
    return report


class DatasetMaker:
    """A plug-in of this driver as the catalogue (:mod:`gato.data.catalogue`) lists it: the dataset ids it
    writes, how it writes a missing one and the command that does. The driver names none of its plug-ins."""

    name: str
    """The family's name (``gato data NAME``)."""

    def owns(self, dataset_id: str) -> bool:
        """Whether ``dataset_id`` is one this plug-in writes."""
        raise NotImplementedError

    def default_episodes(self, dataset_id: str) -> int | None:
        """Episodes written when the caller gives no count of this plug-in's own; None: the caller's general one."""
        return None

    def describe(self, dataset_id: str) -> str:
        """What the episodes are, for a progress line (``"BabyAI bot"``)."""
        raise NotImplementedError

    def make(self, dataset_id: str, episodes: int, progress: bool = True) -> GenerationReport:
        """Write ``dataset_id`` with ``episodes`` episodes."""
        raise NotImplementedError

    def command(self, dataset_id: str) -> str:
        """The `gato data` command that (re)writes ``dataset_id`` (over an existing one)."""
        raise NotImplementedError

    def list_rows(self) -> list[dict]:
        """Rows of ``gato data list``: recipe, dataset id, extra, what."""
        raise NotImplementedError
