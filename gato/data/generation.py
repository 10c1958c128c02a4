"""One driver generates every dataset; BabyAI levels, the recipes and Meta-World are sources plugged into it.

:func:`generate_many` makes any number of datasets, of any sources, in one pool of spawned worker
processes under one progress bar (:func:`generate` is one of them): it checks every count and
dataset id (before any episode is played), plays the episodes, measures the reference returns,
and writes each dataset with its metadata in one atomic step (:func:`gato.data.writer.write_dataset`)
as soon as it is complete. A :class:`Source` says what differs: how to play an episode in a worker
(every episode is played by :func:`gato.envs.play_episode`), whether a demonstration is kept, what
the metadata says.

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
import math
import multiprocessing
import os
import queue
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

__all__ = ["DEMO", "EXPERT", "RANDOM", "REFERENCE_SEED_OFFSET", "Collected", "DatasetJob", "DatasetMaker",
           "EpisodeDropped", "GenerationReport", "Source", "acting_after_reset", "generate", "generate_many",
           "mean_std", "success_rate"]

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
            ``"error:<ExceptionType>"`` (the expert or env raised), a reason of the source's own
            (:class:`EpisodeDropped`, e.g. BabyAI's ``"replan_loop"``), and
            ``"worker_unresponsive"`` (a worker stopped answering; generation
            stopped early).
        expert_mean_return / expert_std_return: mean / population std of the expert's
            reference returns (NaN if none).
        random_mean_return / random_std_return: same for a uniform-random policy
            over the reference episodes (NaN if not computed).
        seconds: wall-clock time of the whole call.
        env_id: gymnasium id the data came from.
        attempts: demonstrations attempted (written + skipped).
        expert_success_rate / random_success_rate / demo_success_rate: share of the expert's reference
            episodes, the random ones and the written demonstrations with ``info["success"]`` at some step
            (NaN where the env reports no success, as BabyAI's).
        demo_mean_return: mean return of the written demonstrations (NaN if none).
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
    expert_success_rate: float = math.nan
    random_success_rate: float = math.nan
    demo_success_rate: float = math.nan
    demo_mean_return: float = math.nan


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and population std of returns (NaN, NaN for none)."""
    if not values:
        return math.nan, math.nan
    arr = np.asarray(values, dtype=np.float64)
    return float(arr.mean()), float(arr.std())


def success_rate(successes: list[bool | None]) -> float:
    """Share of episodes that succeeded (``Episode.success``); NaN for none, or when the env reports no success."""
    if not successes or any(s is None for s in successes):
        return math.nan
    return float(np.mean(successes))


class EpisodeDropped(Exception):
    """Raised by a source's player to drop the episode it plays for a reason of its own, counted under
    ``reason`` in the skip reasons (whatever the source's ``skips_failures``)."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(detail or reason)
        self.reason = reason


@dataclasses.dataclass
class Collected:
    """What the workers played: the kept demonstrations (episode dicts, in seed order) and the
    reference returns. ``expert_returns`` are the clean expert's on the reference seeds, or the
    kept demonstrations' returns when the source plays no clean expert; the ``*_successes`` are
    each episode's ``Episode.success`` likewise."""

    seed: int
    reference_seeds: list[int]
    demos: list[dict] = dataclasses.field(default_factory=list)
    attempts: int = 0
    skip_reasons: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    expert_returns: list[float] = dataclasses.field(default_factory=list)
    random_returns: list[float] = dataclasses.field(default_factory=list)
    expert_successes: list[bool | None] = dataclasses.field(default_factory=list)
    random_successes: list[bool | None] = dataclasses.field(default_factory=list)
    demo_successes: list[bool | None] = dataclasses.field(default_factory=list)

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
        recorded; :data:`EXPERT` or :data:`RANDOM`, for the return) from ``reset(seed=seed)``.
        It may raise :class:`EpisodeDropped` to drop an episode with a reason of its own."""

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
# One pool per generate_many call, for every source of it: a worker is told its sources once, at start, and
# each work item names one of them by its index.

_SOURCES: list[Source] = []
_PLAYERS: collections.OrderedDict = collections.OrderedDict()  # source index -> its player, most recent last
_PLAYERS_KEPT = 4
"""Players (each an env and its expert) a worker keeps: work comes dataset after dataset, so a few suffice, and
fifty Meta-World envs per worker would not."""


class _EpisodeTimeout(BaseException):
    """Raised by SIGALRM in a worker. BaseException so `except Exception` in expert code cannot swallow it."""


def _on_alarm(signum, frame):
    raise _EpisodeTimeout()


def _worker_init(sources: list[Source]) -> None:
    """Per-worker setup: silence prints, install the alarm handler, remember the sources, and import the
    packages that register their envs here, outside any episode's time budget (minigrid takes a good part
    of a second to import on a loaded machine)."""
    # Workers report through their results; prints (minigrid's "Sampling rejected: ...") would garble the bar.
    sys.stdout = open(os.devnull, "w")
    signal.signal(signal.SIGALRM, _on_alarm)
    warnings.filterwarnings("ignore")
    for env_id in dict.fromkeys(source.env_id for source in sources):
        is_env_id(env_id)
    _SOURCES[:] = sources


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


def _player(index: int) -> Callable[[str, int], Episode]:
    """Source ``index``'s player in this worker, built on first use; the least recently used beyond
    ``_PLAYERS_KEPT`` are dropped."""
    if index in _PLAYERS:
        _PLAYERS.move_to_end(index)
    else:
        _PLAYERS[index] = _SOURCES[index].player()
        while len(_PLAYERS) > _PLAYERS_KEPT:
            _PLAYERS.popitem(last=False)
    return _PLAYERS[index]


def _play_job(index: int, kind: str, seed: int) -> tuple[str, int, str, Any, bool | None]:
    """Play one episode of source ``index``: ``(kind, seed, "ok" | skip reason, payload, success)``, the payload a
    kept demonstration's episode dict or a reference episode's return."""
    source = _SOURCES[index]
    try:
        with _alarm(source.episode_timeout_s):
            episode = _player(index)(kind, seed)  # a player is built under the alarm: making the env is part of it
    except _EpisodeTimeout:
        return kind, seed, "timeout", None, None
    except EpisodeDropped as err:
        return kind, seed, err.reason, None, None
    except Exception as err:  # the BabyAI bot raises AssertionError, DisappearedBoxError, ...
        if not source.skips_failures:
            raise
        return kind, seed, f"error:{type(err).__name__}", None, None
    if kind != DEMO:
        return kind, seed, "ok", episode.total, episode.success
    if not source.succeeded(episode):
        # the step bound (the env's max_steps) and a plain failure are told apart: the first means "needs longer"
        status = "truncated" if episode.truncations and episode.truncations[-1] else "failed"
        return kind, seed, status, None, episode.success
    return kind, seed, "ok", episode.as_dict(), episode.success


def _play_chunk(item: tuple[int, list[tuple[str, int]]]) -> tuple[int, list, float]:
    """Play a work item, ``(source index, [(kind, seed), ...])``, in one IPC round-trip (BabyAI episodes take
    ~ms each): ``(source index, results, seconds)``."""
    index, jobs = item
    start = time.perf_counter()
    played = [_play_job(index, kind, seed) for kind, seed in jobs]
    return index, played, time.perf_counter() - start


# --------------------------------------------------------------------------- driver


@dataclasses.dataclass(frozen=True)
class DatasetJob:
    """One dataset for :func:`generate_many`: ``source``'s demonstrations until ``episodes`` are kept (or
    ``max_attempts``, default ``episodes``, were tried; attempt ``i`` resets with ``seed + i``), and
    ``reference_episodes`` reference episodes, written to ``dataset_id``."""

    source: Source
    episodes: int
    dataset_id: str
    seed: int = 0
    reference_episodes: int = 100
    max_attempts: int | None = None


_CHUNK_SECONDS = 0.5
"""A work item holds about this much play (up to 16 episodes): short enough to balance the workers and keep the
bar moving, long enough that pickling costs little beside ~ms BabyAI episodes."""
_CHUNKS_PER_WORKER = 2
"""Work items queued per worker: one playing, one ready, so a worker never waits on the parent."""


class _Making:
    """The parent's account of one dataset in the pool: what was handed out, what came back, when it is done.

    References are handed out first, then demonstration attempts in seed order. Results arrive in any order;
    the demonstrations written are the first ``episodes`` kept ones in seed order (the same whatever the
    number of workers), so the dataset is done once every reference is back and the attempts from the first
    on, without a gap, hold ``episodes`` kept ones (or every allowed attempt is back)."""

    def __init__(self, job: DatasetJob, max_attempts: int):
        self.job, self.max_attempts = job, max_attempts
        self.collected = Collected(job.seed, [job.seed + REFERENCE_SEED_OFFSET + j
                                              for j in range(job.reference_episodes)])
        self.references = [(RANDOM, s) for s in self.collected.reference_seeds]
        if job.source.clean_expert_reference:
            self.references += [(EXPERT, s) for s in self.collected.reference_seeds]
        self.references_left = len(self.references)
        self.reference_outcomes: dict[tuple[str, int], tuple[float, bool | None]] = {}  # (kind, seed): return, success
        self.bar_total = len(self.references) + job.episodes
        self.attempts_out = 0  # attempts handed out: seeds seed .. seed + attempts_out - 1
        self.outcomes: dict[int, tuple[str, Any, bool | None]] = {}  # attempt -> (status, payload, success)
        self.kept = self.dropped = 0  # kept and dropped attempts among the outcomes
        self.prefix = self.prefix_kept = 0  # attempts back without a gap from the first, and the kept among them
        self.in_flight = 0  # attempts handed out and not back
        self.advanced = 0  # bar steps given
        self.seconds = {}  # EMA of seconds per episode, for references (False) and demonstrations (True)
        self.started: float | None = None
        self.unresponsive = False  # a worker stopped answering: written as it stands
        self.report: GenerationReport | None = None

    def chunk(self) -> list[tuple[str, int]]:
        """The next work item's episodes (empty: nothing to hand out now)."""
        demos = not self.references
        size = max(1, min(16, round(_CHUNK_SECONDS / self.seconds[demos]))) if demos in self.seconds else 2
        if self.references:
            jobs, self.references = self.references[:size], self.references[size:]
            return jobs
        needed = self.job.episodes - self.kept
        if needed <= 0:
            return []
        back = len(self.outcomes)
        rate = max(self.kept / back, 0.05) if back else 1.0
        # Hand out only what the kept rate so far says is needed, plus one item's slack: the pool then moves on
        # to the next dataset instead of playing attempts this one will not write.
        n = min(size, math.ceil(needed / rate) + size - self.in_flight, self.max_attempts - self.attempts_out)
        if n <= 0:
            return []
        first = self.attempts_out
        self.attempts_out += n
        self.in_flight += n
        return [(DEMO, self.job.seed + i) for i in range(first, first + n)]

    def receive(self, kind: str, seed: int, status: str, payload: Any, success: bool | None) -> int:
        """Take one played episode; returns the bar steps it earns."""
        if kind != DEMO:
            self.references_left -= 1
            if status == "ok":
                self.reference_outcomes[kind, seed] = (payload, success)
            return 1
        attempt = seed - self.job.seed
        self.in_flight -= 1
        self.outcomes[attempt] = (status, payload, success)
        self.kept += status == "ok"
        self.dropped += status != "ok"
        while self.prefix in self.outcomes and self.prefix_kept < self.job.episodes:
            self.prefix_kept += self.outcomes[self.prefix][0] == "ok"
            self.prefix += 1
        return int(status == "ok")

    def timed(self, demos: bool, seconds_per_episode: float) -> None:
        """Record how long a work item's episodes took, for the size of the next."""
        old = self.seconds.get(demos)
        self.seconds[demos] = seconds_per_episode if old is None else 0.7 * old + 0.3 * seconds_per_episode

    @property
    def done(self) -> bool:
        """Every reference back, and the demonstrations to write known."""
        return not self.references_left and (self.prefix_kept >= self.job.episodes or self.prefix >= self.max_attempts)

    def collect(self) -> Collected:
        """What is written: the attempts from the first on without a gap, up to the last one kept."""
        collected = self.collected
        for kind, returns, successes in ((RANDOM, collected.random_returns, collected.random_successes),
                                         (EXPERT, collected.expert_returns, collected.expert_successes)):
            for seed in collected.reference_seeds:  # in seed order: the means are the same, bit for bit, however
                if (kind, seed) in self.reference_outcomes:  # the episodes came back
                    returns.append(self.reference_outcomes[kind, seed][0])
                    successes.append(self.reference_outcomes[kind, seed][1])
        collected.attempts = self.prefix + self.unresponsive
        if self.unresponsive:
            collected.skip_reasons["worker_unresponsive"] += 1
        for attempt in range(self.prefix):
            status, payload, success = self.outcomes[attempt]
            if status == "ok":
                collected.demos.append(payload)
                collected.demo_successes.append(success)
            else:
                collected.skip_reasons[status] += 1
        if not self.job.source.clean_expert_reference:
            collected.expert_returns = collected.demo_returns
            collected.expert_successes = list(collected.demo_successes)
        return collected

    def release(self) -> None:
        """Drop the episodes once written: a suite's levels would otherwise all stay in memory to the end."""
        self.outcomes, self.reference_outcomes, self.collected = {}, {}, None


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


def _start_pool(workers: int, sources: list[Source]):
    """The spawned worker processes (fork is unsafe with threads; spawn also carries sys.path)."""
    return multiprocessing.get_context("spawn").Pool(workers, initializer=_worker_init, initargs=(sources,))


WRITE_BAR_EPISODES = 20_000
"""A dataset of at least this many episodes gets a bar of its own while it is written (a minute or more)."""


def _write(making: _Making, prepared: tuple[Any, gym.Space, gym.Space], overwrite: bool,
           progress: bool = False) -> GenerationReport:
    """Write a finished dataset (nothing when no demonstration was kept) and report it."""
    from gato.data.writer import write_dataset

    job, source, collected = making.job, making.job.source, making.collect()
    env, observation_space, action_space = prepared
    demo_returns = collected.demo_returns
    report = GenerationReport(job.dataset_id, len(collected.demos), collected.skipped, collected.skip_reasons,
                              *collected.expert_stats, *collected.random_stats, seconds=0.0, env_id=source.env_id,
                              attempts=collected.attempts, expert_success_rate=success_rate(collected.expert_successes),
                              random_success_rate=success_rate(collected.random_successes),
                              demo_success_rate=success_rate(collected.demo_successes),
                              demo_mean_return=float(np.mean(demo_returns)) if demo_returns else math.nan)
    skips = f"(skips: {dict(collected.skip_reasons)})"
    if not collected.demos:
        warnings.warn(f"{source.expert} solved none of {collected.attempts} attempts on {source.env_id} {skips}; "
                      "no dataset was written.", RuntimeWarning, stacklevel=4)
    else:
        if len(collected.demos) < job.episodes:
            warnings.warn(f"Only {len(collected.demos)}/{job.episodes} successful episodes on {source.env_id} after "
                          f"{collected.attempts} attempts {skips}; writing those.", RuntimeWarning, stacklevel=4)
        have_refs = collected.have_refs
        write_dataset(job.dataset_id, collected.demos, env_id=env, observation_space=observation_space,
                      action_space=action_space, ref_min_score=report.random_mean_return if have_refs else None,
                      ref_max_score=report.expert_mean_return if have_refs else None,
                      num_episodes_average_score=len(collected.random_returns) if have_refs else None,
                      jpeg_encoding=False, overwrite=overwrite, progress=progress and len(collected.demos) >=
                      WRITE_BAR_EPISODES, **source.metadata(collected, action_space))
    report.seconds = time.perf_counter() - (making.started or time.perf_counter())
    return report


def generate_many(jobs: list[DatasetJob], *, workers: int = 2, overwrite: bool = False, progress: bool = True,
                  description: str | None = None) -> list[GenerationReport]:
    """Make every dataset of ``jobs`` in one pool of ``workers`` spawned processes, under one progress bar.

    Work items are runs of up to 16 episodes of one dataset, handed out dataset after dataset (references
    first), a few per worker at a time: the workers move on to the next dataset while the last attempts
    of one finish, and each dataset is written (atomically) as soon as its demonstrations are known, so a
    run killed half-way keeps the datasets it finished. The datasets are those :func:`generate` writes
    one at a time, episode for episode. Every count, seed block and dataset id is checked, and every
    source prepared, before any episode is played. ``description`` names the bar (default: the
    source's label, or the number of datasets). A script calling this needs an
    ``if __name__ == "__main__":`` guard.

    Returns one :class:`GenerationReport` per job, in order (``seconds``: from a dataset's first work item to its
    writing; ``episodes_written == 0`` and a RuntimeWarning where none was kept and nothing written).

    Raises:
        ValueError: a bad count or dataset id, the same id twice, or seeds past the data block of ``gato.seeds``.
        FileExistsError: a dataset exists locally and ``overwrite`` is False.
    """
    from tqdm.auto import tqdm

    jobs = list(jobs)
    ids = [job.dataset_id for job in jobs]
    if len(set(ids)) < len(ids):
        raise ValueError(f"a dataset id is given twice: {sorted({i for i in ids if ids.count(i) > 1})}")
    makings = []
    for job in jobs:
        max_attempts = _check_counts(job.episodes, workers, job.reference_episodes, job.max_attempts)
        DATA.take(max_attempts, job.seed)  # raises if demonstrations would replay evaluation or correction episodes
        _claim(job.dataset_id, overwrite)
        makings.append(_Making(job, max_attempts))
    if not makings:
        return []
    prepared = [job.source.prepare() for job in jobs]
    workers = min(workers, sum(len(m.references) + m.max_attempts for m in makings))
    pool = _start_pool(workers, [job.source for job in jobs])

    def describe() -> str:  # the bar names the earliest dataset still being made
        if description is not None or len(jobs) == 1:
            return description or jobs[0].source.label
        left = [i for i, m in enumerate(makings) if m.report is None]
        return f"{left[0] + 1}/{len(jobs)} {jobs[left[0]].source.label}" if left else f"{len(jobs)} datasets"

    bar = tqdm(total=sum(m.bar_total for m in makings), desc=describe(), unit="ep", disable=not progress,
               dynamic_ncols=True)
    results: queue.SimpleQueue = queue.SimpleQueue()  # filled by the pool's result thread
    bounds: list[tuple[int, float | None]] = []  # (making, seconds a work item may take at most), per item out
    try:
        while not all(m.report for m in makings):
            for index, making in enumerate(makings):  # fill the queue, earliest dataset first
                while making.report is None and len(bounds) < _CHUNKS_PER_WORKER * workers:
                    chunk = making.chunk()
                    if not chunk:
                        break
                    making.started = making.started or time.perf_counter()
                    timeout = making.job.source.episode_timeout_s
                    bounds.append((index, len(chunk) * timeout if timeout else None))
                    pool.apply_async(_play_chunk, ((index, chunk),), callback=results.put,
                                     error_callback=results.put)
            if not bounds:
                raise RuntimeError("generate_many: datasets unfinished with nothing to play (a bug in the driver)")
            # The per-episode alarm handles hangs in Python code; this watchdog guards against a worker wedged
            # where signals cannot reach it (e.g. inside a C call). Generous slack: a last resort.
            patience = None if any(b is None for _, b in bounds) else max((b for _, b in bounds), default=0) + 120.0
            try:
                item = results.get(timeout=patience)
            except queue.Empty:
                warnings.warn(f"A worker stopped responding for {patience:.0f}s (beyond the per-episode alarm); "
                              "stopping generation early and writing what was collected.", RuntimeWarning,
                              stacklevel=2)
                for making, ready in zip(makings, prepared):
                    if making.report is None:
                        making.unresponsive = True
                        making.report = _write(making, ready, overwrite, progress)
                break
            if isinstance(item, BaseException):
                raise item
            index, played, seconds = item
            making = makings[index]
            bounds.remove(next(b for b in bounds if b[0] == index))
            if making.report is not None:
                continue  # attempts past the ones written
            making.timed(played[0][0] == DEMO, seconds / len(played))
            for result in played:
                step = making.receive(*result)
                step = min(step, making.bar_total - making.advanced)
                making.advanced += step
                bar.update(step)
            bar.set_postfix(dropped=sum(m.dropped for m in makings), refresh=False)
            if making.done:
                making.report = _write(making, prepared[index], overwrite, progress)
                making.release()
                bar.update(making.bar_total - making.advanced)  # the episodes it did not need count as done
                making.advanced = making.bar_total
                bar.set_description(describe(), refresh=False)
    finally:
        bar.close()
        pool.terminate()  # not close: the attempts still queued are no longer needed
        pool.join()
    return [m.report for m in makings]


def generate(source: Source, episodes: int, *, dataset_id: str, seed: int = 0, workers: int = 2,
             reference_episodes: int = 100, max_attempts: int | None = None, overwrite: bool = False,
             progress: bool = True) -> GenerationReport:
    """Play ``source``'s expert until ``episodes`` demonstrations are kept and write them as a Minari dataset.

    Demonstration attempt ``i`` resets with ``seed + i``; the first ``episodes`` kept ones in
    seed order are written (generation stops once they are known, or after ``max_attempts``,
    default ``episodes``, attempts). ``reference_episodes`` uniform-random episodes (and clean
    expert ones if the source asks) give ``ref_min_score`` / ``ref_max_score``; 0 stores none.
    Workers are spawned processes, so a script calling this needs an
    ``if __name__ == "__main__":`` guard. One dataset of :func:`generate_many`.

    Returns a :class:`GenerationReport`; if no demonstration is kept, nothing is written and
    ``episodes_written == 0`` (a RuntimeWarning says so).

    Raises:
        ValueError: a bad count or dataset id, or seeds past the data block of ``gato.seeds``.
        FileExistsError: ``dataset_id`` exists locally and ``overwrite`` is False (both checked
            before any episode is played).
    """
    start = time.perf_counter()
    job = DatasetJob(source, episodes, dataset_id, seed, reference_episodes, max_attempts)
    report = generate_many([job], workers=workers, overwrite=overwrite, progress=progress)[0]
    report.seconds = time.perf_counter() - start  # the whole call, the workers' start included
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
