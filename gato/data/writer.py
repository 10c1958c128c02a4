"""Write a local Minari dataset from whole, already-collected episodes.

``minari.DataCollector`` (and ``EpisodeBuffer.add_step_data``) import jax to
stack per-step observations. This module avoids that: it stacks the episodes
itself and hands fully built ``minari.data_collector.EpisodeBuffer`` objects to
``minari.create_dataset_from_buffers``. Importing it does not import jax.

Where things are stored:

* Datasets go under ``$MINARI_DATASETS_PATH`` (default ``~/.minari/datasets``);
  minari resolves that itself, nothing here hardcodes a path.
* A dataset is written whole under a hidden folder of that root (``.writing-*``,
  which minari's listings skip), then renamed into place (over a previous one:
  swapped with it atomically, see ``gato.atomic.replace_dir``): a killed write
  never leaves a half-written dataset under its id, nor none where one existed.
* Episodes are converted and written ``WRITE_CHUNK`` at a time (memory for one chunk's copies, not the
  dataset's), into an HDF5 file whose root group indexes its links by creation order: Minari counts the
  root's groups once per episode it writes, which in the default (symbol-table) root walks every group
  written so far, so n episodes took time growing as n^2; here the count is stored.
* ``ref_min_score`` / ``ref_max_score`` (read by ``minari.get_normalized_score``)
  are passed to ``create_dataset_from_buffers`` when an ``env_id`` is given.
  Minari silently drops them when the dataset has no env spec, so without an
  ``env_id`` they are written with ``storage.update_metadata`` instead; either
  way they end up as top-level keys of the dataset's ``metadata.json``.
* ``create_dataset_from_buffers`` has no argument for arbitrary metadata.
  ``extra_metadata`` is therefore merged into the same ``metadata.json`` right
  after creation via ``dataset.storage.update_metadata`` (a public, supported
  MinariStorage method that accepts any JSON-serialisable keys). Read it back
  with ``minari.load_dataset(id).storage.metadata[key]``.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import h5py
import minari
import numpy as np
from minari.data_collector.episode_buffer import EpisodeBuffer
from minari.dataset.minari_dataset import parse_dataset_id
from minari.namespace import create_namespace, list_local_namespaces
from minari.storage.datasets_root_dir import get_dataset_path
from tqdm.auto import tqdm

__all__ = ["write_dataset", "validate_dataset_id", "local_dataset_exists"]

# Minari's own id grammar (minari.dataset.minari_dataset.DATASET_ID_RE), but with
# the version made mandatory: parse_dataset_id crashes on ids without "-vN".
_DATASET_ID_RE = re.compile(
    r"^(?:(?P<namespace>[-_\w][-_\w/]*[-_\w]+)/)?(?P<dataset>[-_\w]+?)-v(?P<version>\d+)$"
)

WRITE_CHUNK = 1000
"""Episodes converted to Minari buffers and written at a time."""

# Keys minari itself writes into metadata.json; extra_metadata must not shadow them.
_RESERVED_METADATA_KEYS = frozenset(
    {
        "dataset_id",
        "total_episodes",
        "total_steps",
        "data_format",
        "jpeg_encoding",
        "observation_space",
        "action_space",
        "env_spec",
        "eval_env_spec",
        "code_permalink",
        "author",
        "author_email",
        "algorithm_name",
        "description",
        "minari_version",
        "ref_min_score",
        "ref_max_score",
        "num_episodes_average_score",
        "requirements",
        "dataset_size",
        "combined_datasets",
    }
)

# Advisory warnings minari emits for optional metadata left empty; pure noise here.
_NOISY_WARNINGS = (
    r"`(code_permalink|author|author_email|algorithm_name|description|eval_env)` is set to None.*"
)


def validate_dataset_id(dataset_id: str) -> None:
    """Raise ``ValueError`` unless ``dataset_id`` is a valid, versioned Minari id.

    Valid ids look like ``(namespace/)name-vN``, e.g. ``babyai/GoToLocal-bot-v0``.
    """
    if not isinstance(dataset_id, str) or not _DATASET_ID_RE.fullmatch(dataset_id):
        raise ValueError(
            f"Invalid Minari dataset id {dataset_id!r}: use '(namespace/)name-vN' with "
            "letters, digits, '-' or '_' only and a version suffix, e.g. 'babyai/GoToLocal-bot-v0'."
        )


def local_dataset_exists(dataset_id: str) -> bool:
    """Whether a dataset (or any directory) already occupies ``dataset_id`` locally.

    Looks under ``$MINARI_DATASETS_PATH`` (or minari's default root).
    """
    return get_dataset_path(dataset_id).exists()


def stack_steps(values: Sequence[Any], space: gym.Space, what: str) -> Any:
    """Turn a per-step list into the nested, stacked layout Minari's storage expects.

    Dict -> dict of stacked children, Tuple -> tuple of stacked children,
    Text -> list of str (stored as variable-length UTF-8), anything else -> one
    numpy array with a leading time axis.
    """
    if isinstance(space, gym.spaces.Dict):
        for v in values:
            if not isinstance(v, Mapping):
                raise TypeError(f"{what}: expected a dict per step for a Dict space, got {type(v).__name__}")
        return {
            key: stack_steps([v[key] for v in values], sub, f"{what}[{key!r}]")
            for key, sub in space.spaces.items()
        }
    if isinstance(space, gym.spaces.Tuple):
        return tuple(
            stack_steps([v[i] for v in values], sub, f"{what}[{i}]")
            for i, sub in enumerate(space.spaces)
        )
    if isinstance(space, gym.spaces.Text):
        return [str(v) for v in values]
    dtype = getattr(space, "dtype", None)
    return np.asarray(values, dtype=dtype)


def _is_stacked(values: Any) -> bool:
    """Per-step input is a list/tuple of steps; stacked input is a dict or ndarray."""
    return isinstance(values, (Mapping, np.ndarray))


def _to_buffer(
    index: int,
    episode: Mapping[str, Any],
    observation_space: gym.Space,
    action_space: gym.Space,
    validate: bool,
) -> EpisodeBuffer:
    """Check one episode dict and convert it to an EpisodeBuffer."""
    missing = {"observations", "actions", "rewards", "terminations", "truncations"} - set(episode)
    if missing:
        raise ValueError(f"episode {index}: missing keys {sorted(missing)}")
    observations, actions = episode["observations"], episode["actions"]
    n_steps = len(episode["rewards"])
    if n_steps < 1:
        raise ValueError(f"episode {index}: has no steps")
    for key in ("actions", "terminations", "truncations"):
        if not isinstance(episode[key], Mapping) and len(episode[key]) != n_steps:
            raise ValueError(
                f"episode {index}: len({key})={len(episode[key])} but len(rewards)={n_steps}"
            )
    if not _is_stacked(observations):
        # Minari stores the final observation too: T actions need T+1 observations.
        if len(observations) != n_steps + 1:
            raise ValueError(
                f"episode {index}: needs len(observations) == len(actions) + 1 "
                f"(got {len(observations)} observations for {n_steps} steps)"
            )
        if validate:
            for t, obs in enumerate(observations):
                if not observation_space.contains(obs):
                    raise ValueError(
                        f"episode {index}, step {t}: observation {obs!r} is not in the "
                        f"dataset observation_space {observation_space}"
                    )
        observations = stack_steps(observations, observation_space, "observations")
    if not _is_stacked(actions):
        if validate:
            for t, act in enumerate(actions):
                if not action_space.contains(act):
                    raise ValueError(
                        f"episode {index}, step {t}: action {act!r} is not in action_space {action_space}"
                    )
        actions = stack_steps(actions, action_space, "actions")
    seed = episode.get("seed")
    return EpisodeBuffer(
        id=None,  # storage assigns sequential ids
        seed=None if seed is None else int(seed),
        options=episode.get("options"),
        observations=observations,
        actions=actions,
        rewards=np.asarray(episode["rewards"], dtype=np.float64).tolist(),
        terminations=np.asarray(episode["terminations"], dtype=bool).tolist(),
        truncations=np.asarray(episode["truncations"], dtype=bool).tolist(),
        infos=None,
    )


def _check_extra_metadata(extra: Mapping[str, Any] | None) -> dict[str, Any]:
    """Reject extra keys that would clobber minari's keys or are not JSON-serialisable."""
    if not extra:
        return {}
    extra = dict(extra)
    clash = _RESERVED_METADATA_KEYS.intersection(extra)
    if clash:
        raise ValueError(
            f"extra_metadata may not set minari's own keys {sorted(clash)}; "
            "use the dedicated write_dataset arguments or rename the keys."
        )
    try:
        json.dumps(extra, allow_nan=True)
    except TypeError as err:
        raise ValueError(
            f"extra_metadata must be JSON-serialisable (use plain int/float/str/list/dict): {err}"
        ) from err
    return extra


def write_dataset(
    dataset_id: str, episodes: Iterable[Mapping[str, Any]], *,
    env_id: str | gym.envs.registration.EnvSpec | None, observation_space: gym.Space, action_space: gym.Space,
    ref_min_score: float | None = None, ref_max_score: float | None = None, description: str | None = None,
    algorithm_name: str | None = None, author: str | None = None, author_email: str | None = None,
    code_permalink: str | None = None, requirements: list[str] | None = None,
    num_episodes_average_score: int | None = None, extra_metadata: Mapping[str, Any] | None = None,
    jpeg_encoding: bool = False, overwrite: bool = False, validate: bool = True, progress: bool = False,
) -> minari.MinariDataset:
    """Write whole episodes as a local Minari dataset (hdf5 backend) in one atomic step; return it.

    The dataset is written in full under a hidden folder of the datasets root, then renamed into
    place: a kill at any instant leaves either no dataset under ``dataset_id`` or a complete one
    (with ``overwrite``, the previous one until the new one replaces it).

    Args:
        dataset_id: Minari id ``(namespace/)name-vN``, written under ``$MINARI_DATASETS_PATH``
            (minari's default root if unset).
        episodes: dicts with ``observations`` (T+1 per-step observations, or already stacked: a
            dict of arrays / an array), ``actions``, ``rewards``, ``terminations``, ``truncations``
            (T each), optionally ``seed`` (stored as the episode's seed) and ``options``.
        env_id: registered gymnasium id used to collect the data, or the env's own ``EnvSpec`` when
            it was made with kwargs or wrappers (so ``dataset.recover_environment()`` works), or None.
        observation_space, action_space: spaces of the stored data (an env's own space may not be
            storable: minigrid's MissionSpace is stored as ``gymnasium.spaces.Text``).
        ref_min_score, ref_max_score: reference (random-policy, expert) returns for
            ``minari.get_normalized_score``; give both (with only ``ref_max_score`` and an
            ``env_id``, minari rolls out a random policy itself).
        description, algorithm_name, author, author_email, code_permalink, requirements: minari's
            metadata, unchanged (``requirements``: pip pins checked by ``recover_environment``).
        num_episodes_average_score: episodes the reference scores average over (default 100).
        extra_metadata: further JSON-serialisable top-level keys of ``metadata.json`` (not
            minari's own keys), stored with ``dataset.storage.update_metadata``.
        jpeg_encoding: False stores images losslessly; True lets minari JPEG-encode them.
        overwrite: replace a dataset with this id instead of raising.
        validate: check every observation and action against its space before writing (e.g. a
            mission with characters outside a Text charset, which minari would store anyway).
        progress: a progress bar of the episodes written (of ``len(episodes)`` where it has one).

    Raises:
        FileExistsError: the id exists locally and ``overwrite`` is False.
        ValueError: malformed id, malformed episodes, no episodes, or bad ``extra_metadata``.
            Nothing is left on disk when writing fails (a malformed episode after the first
            ``WRITE_CHUNK`` is found while writing, and the partial dataset is removed).
    """
    validate_dataset_id(dataset_id)
    extra = _check_extra_metadata(extra_metadata)
    if isinstance(env_id, str):
        gym.spec(env_id)  # fail fast (gymnasium's NameNotFound) before touching the disk
    if local_dataset_exists(dataset_id) and not overwrite:
        raise _taken(dataset_id)
    chunks = _buffer_chunks(episodes, observation_space, action_space, validate)
    first = next(chunks, None)
    if first is None:
        raise ValueError(f"No episodes to write for dataset {dataset_id!r}.")
    metadata = dict(algorithm_name=algorithm_name, author=author, author_email=author_email,
                    code_permalink=code_permalink, description=description, requirements=requirements,
                    observation_space=observation_space, action_space=action_space, jpeg_encoding=jpeg_encoding)
    staging = Path(tempfile.mkdtemp(prefix=".writing-", dir=get_dataset_path()))
    try:
        with _datasets_root(staging):
            dataset = _create(dataset_id, env_id, metadata, (ref_min_score, ref_max_score),
                              num_episodes_average_score, extra)
            with tqdm(total=len(episodes) if hasattr(episodes, "__len__") else None, desc=f"writing {dataset_id}",
                      unit="ep", disable=not progress) as bar:
                for buffers in itertools.chain([first], chunks):
                    dataset.storage.update_episodes(buffers)
                    bar.update(len(buffers))
        _move_into_place(staging, dataset_id, overwrite)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return minari.load_dataset(dataset_id)


def _taken(dataset_id: str) -> FileExistsError:
    """The error for a taken dataset id."""
    return FileExistsError(
        f"Minari dataset {dataset_id!r} already exists at {get_dataset_path(dataset_id)}; "
        "pass overwrite=True to replace it, choose another id, or bump its -vN version."
    )


def _buffer_chunks(episodes, observation_space, action_space, validate: bool):
    """The episodes as lists of ``WRITE_CHUNK`` EpisodeBuffers, each converted (and checked) when it is asked for."""
    numbered = enumerate(episodes)
    while chunk := [_to_buffer(i, ep, observation_space, action_space, validate)
                    for i, ep in itertools.islice(numbered, WRITE_CHUNK)]:
        yield chunk


@contextlib.contextmanager
def _datasets_root(root: Path):
    """Point minari at ``root`` meanwhile: it reads ``MINARI_DATASETS_PATH`` on every call (and has no
    other way to be told where to write). Not thread-safe, as that variable is the process's."""
    before = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(root)
    try:
        yield
    finally:
        if before is None:
            del os.environ["MINARI_DATASETS_PATH"]
        else:
            os.environ["MINARI_DATASETS_PATH"] = before


def _create(dataset_id: str, env_id, metadata: dict[str, Any], ref_scores: tuple[float | None, float | None],
            num_episodes_average_score: int | None, extra: dict[str, Any]) -> minari.MinariDataset:
    """An empty dataset (``minari.create_dataset_from_buffers`` with no episodes) with the metadata it takes no
    argument for, its HDF5 file's root group indexing its links by creation order."""
    ref_min_score, ref_max_score = ref_scores
    # Minari only records ref scores when the dataset has an env spec; otherwise we add them.
    refs_via_minari = env_id is not None and ref_max_score is not None
    if refs_via_minari:
        metadata.update(ref_min_score=ref_min_score, ref_max_score=ref_max_score)
        if num_episodes_average_score is not None:
            metadata["num_episodes_average_score"] = int(num_episodes_average_score)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_NOISY_WARNINGS, category=UserWarning)
        dataset = minari.create_dataset_from_buffers(dataset_id, [], env=env_id, **metadata)
    _index_links_by_creation_order(dataset)
    late: dict[str, Any] = dict(extra)
    if not refs_via_minari:
        for key, value in (("ref_min_score", ref_min_score), ("ref_max_score", ref_max_score)):
            if value is not None:
                late[key] = float(value)
        if ref_min_score is not None or ref_max_score is not None:
            late["num_episodes_average_score"] = int(num_episodes_average_score or 100)
    if late:
        dataset.storage.update_metadata(late)
    return dataset


def _index_links_by_creation_order(dataset: minari.MinariDataset) -> None:
    """Make the empty dataset's HDF5 file anew with a root group that tracks link creation order (a new-style
    group, which stores its number of links: counting them no longer walks them all)."""
    path = Path(dataset.storage.data_path) / "main_data.hdf5"
    with h5py.File(path, "r") as file:
        if len(file):  # written by a Minari that adds episodes on creation: keep what it wrote
            return
    with h5py.File(path, "w", track_order=True):
        pass


def _move_into_place(staging: Path, dataset_id: str, overwrite: bool) -> None:
    """Rename the dataset written under ``staging`` to its place in the datasets root.

    A new id is one atomic rename (same file system). With ``overwrite`` the previous dataset and the
    new one swap names in one atomic step (:func:`gato.atomic.replace_dir`), so a kill at any instant
    leaves a complete dataset under the id, the previous one or the new.
    """
    from gato import atomic

    namespace = parse_dataset_id(dataset_id)[0]
    if namespace is not None and namespace not in list_local_namespaces():
        create_namespace(namespace)  # as minari does, so that the root lists the namespace
    target = get_dataset_path(dataset_id)
    if target.exists() and not overwrite:
        raise _taken(dataset_id)  # written by someone else meanwhile
    atomic.fsync_tree(staging / dataset_id)
    atomic.replace_dir(staging / dataset_id, target)
