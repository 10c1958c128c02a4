"""Minari datasets read (whole or in chunks), a codec fitted to them, their episodes encoded into timestep rows.

The statistics a codec is fitted to (:class:`DataStats`) are gathered in one pass and are small, so the
episodes need not stay in memory; ``gato.data.episode_store`` keeps the encoded rows on disk."""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from gymnasium import spaces

from gato.codec import (
    ACTION_TEXT,
    DatasetValueError,
    FieldSpec,
    ImageField,
    SpaceCodec,
    TextField,
    VectorField,
    _get,
    _leaves,
    as_str,
    batch_length,
    bound_images,
    dotted,
    is_string_space,
)
from gato.vocab import Vocab


class DatasetNotFoundError(FileNotFoundError):
    """A dataset id with no local copy."""


class DamagedDatasetError(ValueError):
    """A local dataset whose files are missing, truncated or damaged (e.g. left half-written by a killed
    write of an older version); the message names the folder to delete and the command that remakes it."""


# What minari and h5py raise on a damaged metadata.json or main_data.hdf5 (h5py: OSError for a file it
# cannot open or read, KeyError for a missing object; json: ValueError; minari: ValueError "No data found",
# KeyError/TypeError for metadata without its keys or of the wrong types, AssertionError for an hdf5 file
# whose groups are not laid out as it expects).
_DAMAGE = (OSError, KeyError, ValueError, TypeError, IndexError, RuntimeError, AttributeError, AssertionError)


def load_minari(dataset_id: str, open_data: bool = True):
    """``minari.load_dataset`` restricted to local data, with an error that says what to do: a missing
    dataset raises DatasetNotFoundError, a damaged or half-written one DamagedDatasetError.

    ``open_data=False`` reads only the metadata (the data file is opened when episodes are read): for
    a task whose encoded episodes are already stored (``gato.data.episode_store``)."""
    import minari
    from minari.storage.datasets_root_dir import get_dataset_path

    from gato.atomic import resolve_dir

    # resolve_dir: where a swap was killed halfway on a system without atomic exchange, the previous one
    path = resolve_dir(get_dataset_path(dataset_id))
    if not path.is_dir():
        local = sorted(minari.list_local_datasets())
        where = os.environ.get("MINARI_DATASETS_PATH", "~/.minari/datasets")
        hint = f"local datasets: {', '.join(local[:8])}" if local else "there are no local datasets"
        raise DatasetNotFoundError(
            f"dataset {dataset_id!r} is not in {where} ({hint}). neko-gato never downloads: make it with "
            "`gato data babyai --level LEVEL` or point MINARI_DATASETS_PATH at the folder that holds it."
        ) from None
    try:
        dataset = minari.MinariDataset(path / "data")
        # read now what minari reads lazily, so that damage shows here and not deep inside a later step
        dataset.observation_space, dataset.action_space, dataset.total_steps  # noqa: B018
        if open_data and dataset.total_episodes:
            dataset.storage.get_episodes([int(dataset.episode_indices[0])])  # opens the data file
    except _DAMAGE as e:
        raise damaged(dataset_id, path, e) from e
    except MemoryError as e:
        raise (damaged(dataset_id, path, e) if _oversized(path) else e) from e
    return dataset


def demonstration_seeds(dataset_id: str, n: int) -> list[int]:
    """The reset seeds of the first ``n`` episodes of local dataset ``dataset_id``, in stored order: the starts
    (BabyAI's layout and mission, Meta-World's goal and objects) that a model trained on it has seen. Raises
    ValueError where the dataset holds fewer episodes or did not record their seeds."""
    dataset = load_minari(dataset_id, open_data=False)
    if n > dataset.total_episodes:
        raise ValueError(f"{n} episodes asked for from the starts of dataset {dataset_id!r}, which holds "
                         f"{dataset.total_episodes}; ask for at most {dataset.total_episodes}")
    indices = [int(i) for i in dataset.episode_indices[:n]]
    try:
        found = [m.get("seed") for m in dataset.storage.get_episode_metadata(indices)]
    except _DAMAGE as e:
        raise damaged(dataset_id, Path(dataset.storage.data_path).parent, e) from e
    if any(s is None for s in found):
        raise ValueError(f"dataset {dataset_id!r} did not record the seed its episodes were reset with, so their "
                         "starts cannot be played again; evaluate on the evaluation seeds instead")
    return [int(s) for s in found]


def _oversized(path) -> bool:
    """Whether an hdf5 dataset declares arrays longer than its metadata's step count allows (a damaged
    shape, which makes h5py try to allocate terabytes); False where that cannot be told."""
    try:
        import h5py

        total = json.loads((Path(path) / "data" / "metadata.json").read_text())["total_steps"]
        found = []
        with h5py.File(Path(path) / "data" / "main_data.hdf5", "r") as f:
            f.visititems(lambda _, obj: found.append(obj.shape[0]) if getattr(obj, "shape", None) else None)
        return max(found, default=0) > int(total) + 1
    except Exception:  # noqa: BLE001 -- a probe of a damaged file: any failure means "cannot tell"
        return False


def damaged(dataset_id: str, path, error: BaseException) -> DamagedDatasetError:
    """The error for a dataset whose files cannot be read: what failed, which folder to delete, how to remake it."""
    what = f"{type(error).__name__}: {error}".splitlines()[0][:300]
    return DamagedDatasetError(
        f"dataset {dataset_id!r} is damaged or half-written ({what}); a write killed by an older neko-gato "
        f"leaves one like this. Delete the folder {path} and remake the dataset: {remake_command(dataset_id)}"
    )


def remake_command(dataset_id: str) -> str:
    """The `gato data` command that rewrites ``dataset_id`` (over the damaged one): the catalogue's."""
    from gato.data.catalogue import remake_command

    return remake_command(dataset_id)


def recommended_overrides(metadata: dict) -> dict:
    """The field overrides a dataset recommends for reading its observations (metadata key
    ``gato_field_overrides``, written by the recipes; e.g. Breakout's pooled frames), or {}."""
    raw = metadata.get("gato_field_overrides")
    if not raw:
        return {}
    return json.loads(raw) if isinstance(raw, str) else dict(raw)


CONSTANT_TEXT = ("window", "step")
"""Where a string observation that never changes within an episode is laid out: once per window, or in
every timestep (see :func:`fit_codec`)."""


def fit_codec(raw: RawEpisodes | DataStats, observation_space, action_space, *, vocab: Vocab | None = None,
              patch_size: int = 4, overrides: dict | None = None, metadata: dict | None = None,
              task_id: int | None = None, max_patches: int | None = None,
              constant_text: str = "window") -> SpaceCodec:
    """The codec that reads ``raw``'s episodes in these spaces (the env's; they must match the
    dataset's), fitted to them. ``raw`` may be the episodes or their :class:`DataStats`, which give
    the same codec (a task whose episodes are stored on disk fits it from the statistics saved there).

    Observations are read with ``overrides`` ({dotted path: FieldSpec | kind | dict}) or, if None, with those the
    dataset's ``metadata`` recommends; integer images whose values stay far below their bound are read over the
    values seen (``RawEpisodes.image_ranges``), unless an override names them; a field read as a vector is scaled
    per value by the range its values take (``DataStats.vector_ranges``), unless its override gives
    ``low``/``high``; string fields take the tokens of their longest string (``RawEpisodes.text_budget``), and so do
    string actions; ``task_id`` starts every observation with its task token; ``max_patches`` bounds the patches of
    every image whose override sets neither ``pool`` nor ``max_patches`` (None: ``FieldSpec``'s default,
    ``gato.codec.DEFAULT_MAX_PATCHES``). With ``constant_text`` "window" (the default), a string field that never
    changes within an episode is read once per window (``FieldSpec.once``; :meth:`DataStats.constant_text`); "step":
    in every timestep, as before.
    The returned codec's ``overrides`` hold everything fitted but the text budgets, so a codec
    rebuilt from them (another vocabulary, ``gato eval``) reads images the same way.
    """
    vocab = vocab or Vocab()
    chosen = recommended_overrides(metadata or {}) if overrides is None else overrides
    # which fields are integer images and strings does not depend on what is fitted below
    probe = SpaceCodec(observation_space, action_space, vocab, patch_size, chosen)
    if constant_text not in CONSTANT_TEXT:
        raise ValueError(f"constant_text must be one of {CONSTANT_TEXT}, got {constant_text!r}")
    if isinstance(raw, RawEpisodes):  # one pass over the episodes gives every statistic read below
        raw = DataStats.of(raw, DataStats.leaves_of_fields(probe.obs_fields)
                           + DataStats.leaves_of_fields(probe.action_fields, actions=True))
    once = raw.constant_text(probe.obs_fields) if constant_text == "window" else {}
    fitted = {**raw.image_ranges(probe.obs_fields), **once, **chosen}
    for path, ranged in raw.vector_ranges(probe.obs_fields).items():  # bounds an override gives are kept
        fitted[path] = {**ranged, **FieldSpec.parse(fitted[path]).to_dict()}
    if max_patches:
        fitted = bound_images(probe.obs_fields, fitted, max_patches)
    budget = raw.text_budget(probe.obs_fields, vocab.tokenizer)
    budget.update({ACTION_TEXT + k: v for k, v in raw.text_budget(probe.action_fields, vocab.tokenizer,
                                                                   actions=True).items()})
    return SpaceCodec(observation_space, action_space, vocab, patch_size, fitted, budget, task_id)


@dataclass
class RawEpisodes:
    """Episodes as read from the dataset: observations (T+1 per episode), actions, rewards.

    ``taken`` (optional, one entry per episode) holds the actions actually executed where they
    differ from ``actions``: a DAgger episode's ``actions`` are the expert's labels, the targets,
    while the policy saw its own actions in its history. None (or a None entry): as ``actions``.
    """

    observations: list
    actions: list
    rewards: list
    ids: list
    taken: list | None = None

    def __len__(self) -> int:
        return len(self.actions)

    @classmethod
    def read(cls, dataset, name: str) -> RawEpisodes:
        """Read every episode of a MinariDataset; an empty dataset is an error."""
        raw = cls([], [], [], [])
        for chunk in cls.chunks(dataset, name, len(dataset.episode_indices) or 1):
            raw.extend(chunk)
        if not len(raw):
            raise DatasetValueError(f"dataset {name!r} holds no episodes with at least one step; regenerate it")
        return raw

    @classmethod
    def chunks(cls, dataset, name: str, episodes: int, first: int = 0):
        """The episodes of a MinariDataset (those with at least one step), ``episodes`` dataset episodes at a
        time from its ``first``: memory holds one chunk, not the dataset. A damaged file raises
        DamagedDatasetError."""
        indices = np.asarray(dataset.episode_indices)
        for lo in range(first, len(indices), episodes):
            obs, act, rew, ids = [], [], [], []
            try:
                for ep in dataset.iterate_episodes(indices[lo : lo + episodes]):
                    if batch_length(ep.actions) == 0:
                        continue
                    ids.append(ep.id)
                    obs.append(ep.observations)
                    act.append(ep.actions)
                    rew.append(np.asarray(ep.rewards, dtype=np.float64))
            except (*_DAMAGE, MemoryError) as e:
                where = getattr(getattr(dataset, "storage", None), "_data_path", None)
                folder = Path(where).parent if where else None
                if isinstance(e, MemoryError) and not (folder and _oversized(folder)):
                    raise
                raise damaged(name, folder or "that holds it", e) from e
            yield cls(obs, act, rew, ids)

    def extend(self, other: RawEpisodes) -> None:
        """Append ``other``'s episodes."""
        if self.taken is not None or other.taken is not None:
            self.taken = (self.taken or [None] * len(self)) + (other.taken or [None] * len(other))
        self.observations += other.observations
        self.actions += other.actions
        self.rewards += other.rewards
        self.ids += other.ids

    def field_values(self, path: tuple) -> np.ndarray:
        """The values of the observation field at ``path`` (as ``gato.codec`` paths go) of every timestep that has
        an action, episodes back to back: one row per row of :meth:`EncodedEpisodes.encode`'s arrays."""
        return np.concatenate([np.asarray(_get(_first(obs, batch_length(act)), path))
                               for obs, act in zip(self.observations, self.actions)])

    def nbytes(self) -> int:
        """Roughly the memory the episodes' arrays and strings take (to bound what a caller keeps)."""
        return sum(_nbytes(x) for x in (self.observations, self.actions, self.rewards))

    def text_budget(self, codec_fields, tokenizer, actions: bool = False) -> dict:
        """{dotted path: longest tokenised string} for the string fields (of the actions if ``actions``; see
        :meth:`DataStats.text_budget`)."""
        leaves = DataStats.leaves_of_fields(codec_fields, actions)
        return DataStats.of(self, leaves).text_budget(codec_fields, tokenizer, actions)

    def image_ranges(self, codec_fields) -> dict:
        """{dotted path: FieldSpec dict} for integer images read over the values seen (see
        :meth:`DataStats.image_ranges`)."""
        return DataStats.of(self, DataStats.leaves_of_fields(codec_fields)).image_ranges(codec_fields)


MAX_STRINGS = 100_000
"""Distinct strings a :class:`DataStats` keeps per field; beyond it, only the longest (in UTF-8 bytes)."""
MAX_RANGE_VALUES = 4096
"""Box leaves of at most this many values get their range per value gathered (what a vector field is scaled by);
a larger Box read as a vector is scaled by its declared bounds."""


@dataclass
class DataStats:
    """What fitting a codec needs from a dataset's episodes, gathered in one pass (chunk by chunk, see
    :meth:`update`) and small enough to save beside an episode store, so a codec is fitted without the
    episodes in memory and exactly as from them (:func:`fit_codec` takes either).

    ``top``: {dotted path: largest value} of every integer Box leaf; ``strings``: {dotted path: set of the
    distinct strings} of every string leaf, an action's path prefixed with ``gato.codec.ACTION_TEXT`` (at
    most ``MAX_STRINGS``: past that the longest are kept and ``strings_capped`` is set, and a text budget may
    then be short of the longest tokenisation);
    ``episodes`` / ``steps``: episodes with at least one step and their timesteps; ``varying``: the dotted
    paths of the observation string leaves whose value changes within some episode (the others can be read
    once per window: :meth:`constant_text`); ``ranges``: {dotted path: [lowest, highest]} per value of every
    Box leaf of at most ``MAX_RANGE_VALUES`` values (flattened lists; :meth:`vector_ranges`).
    """

    top: dict = field(default_factory=dict)
    strings: dict = field(default_factory=dict)
    episodes: int = 0
    steps: int = 0
    strings_capped: bool = False
    varying: set = field(default_factory=set)
    ranges: dict = field(default_factory=dict)

    @classmethod
    def of(cls, raw: RawEpisodes, leaves) -> DataStats:
        """The statistics of ``raw`` over ``leaves``, (path, "text" | "int") pairs (see :meth:`leaves_of`)."""
        stats = cls()
        stats.update(raw, leaves)
        return stats

    @staticmethod
    def leaves_of(observation_space, action_space=None) -> list:
        """(path, kind) for the leaves whose statistics a codec may need: an observation space's strings
        ("text"), integer Boxes ("int") and Boxes small enough to be read as a vector ("range"), and an action
        space's strings ("action_text")."""
        out = []
        for path, leaf in _leaves(observation_space):
            if is_string_space(leaf):
                out.append((path, "text"))
            elif isinstance(leaf, spaces.Box):
                if np.issubdtype(leaf.dtype, np.integer):
                    out.append((path, "int"))
                if 0 < int(np.prod(leaf.shape)) <= MAX_RANGE_VALUES:
                    out.append((path, "range"))
        if action_space is not None:
            out += [(path, "action_text") for path, leaf in _leaves(action_space) if is_string_space(leaf)]
        return out

    @staticmethod
    def leaves_of_fields(codec_fields, actions: bool = False) -> list:
        """(path, kind) for the fields that :meth:`text_budget`, :meth:`image_ranges` and :meth:`vector_ranges`
        read (action fields if ``actions``)."""
        if actions:
            return [(f.path, "action_text") for f in codec_fields if isinstance(f, TextField)]
        out = []
        for f in codec_fields:
            if isinstance(f, TextField):
                out.append((f.path, "text"))
            elif isinstance(f, ImageField) and np.issubdtype(f.space.dtype, np.integer):
                out.append((f.path, "int"))
            elif isinstance(f, VectorField) and f.size <= MAX_RANGE_VALUES:
                out.append((f.path, "range"))
        return out

    def update(self, raw: RawEpisodes, leaves) -> None:
        """Add ``raw``'s episodes."""
        self.episodes += len(raw)
        self.steps += sum(batch_length(a) for a in raw.actions)
        for path, kind in leaves:
            key = (ACTION_TEXT if kind == "action_text" else "") + dotted(path)
            if kind in ("text", "action_text"):
                seen = self.strings.setdefault(key, set())
                values = raw.actions if kind == "action_text" else raw.observations
                episodes = [{as_str(s) for s in _get(o, path)} for o in values]
                seen.update(*episodes)
                if kind == "text" and any(len(e) > 1 for e in episodes):
                    self.varying.add(key)
                if len(seen) > MAX_STRINGS:
                    self.strings_capped = True
                    self.strings[key] = set(sorted(seen, key=lambda s: (-len(s.encode("utf-8")), s))[:MAX_STRINGS])
            elif kind == "range" and raw.observations:
                values = [np.asarray(_get(o, path), np.float64) for o in raw.observations]
                rows = [x.reshape(len(x), -1) for x in values if len(x)]  # (steps, values) per episode
                low = np.min([x.min(0) for x in rows], axis=0)
                high = np.max([x.max(0) for x in rows], axis=0)
                if key in self.ranges:
                    low, high = np.minimum(low, self.ranges[key][0]), np.maximum(high, self.ranges[key][1])
                self.ranges[key] = [low.tolist(), high.tolist()]
            elif raw.observations:
                top = max(int(np.max(_get(o, path))) for o in raw.observations)
                self.top[key] = max(top, self.top.get(key, top))

    def text_budget(self, codec_fields, tokenizer, actions: bool = False) -> dict:
        """{dotted path: longest tokenised string} for the string fields (action fields if ``actions``)."""
        prefix = ACTION_TEXT if actions else ""
        budget = {}
        for f in codec_fields:
            if isinstance(f, TextField):
                seen = self._seen(self.strings, f, prefix)
                budget[dotted(f.path)] = max(1, max(len(tokenizer.encode(s)) for s in seen))
        return budget

    def constant_text(self, codec_fields) -> dict:
        """{dotted path: FieldSpec dict} reading once per window each string field whose value never changes
        within an episode (BabyAI's mission): repeating it at every timestep would only take context."""
        return {dotted(f.path): {"kind": "text", "once": True} for f in codec_fields
                if isinstance(f, TextField) and dotted(f.path) in self.strings and dotted(f.path) not in self.varying}

    def image_ranges(self, codec_fields) -> dict:
        """{dotted path: FieldSpec dict} for integer images whose values stay far below their
        declared bound (a symbolic grid of object ids in a Box(0, 255)): they are symbols, so
        their observed values are read one-hot (up to 16 values) or at least rescaled to
        span [-1, 1] instead of a sliver of it."""
        fitted = {}
        for f in codec_fields:
            if isinstance(f, ImageField) and np.issubdtype(f.space.dtype, np.integer):
                top = self._seen(self.top, f)
                if f.low < top < f.low + 0.25 * (f.high - f.low):
                    fitted[dotted(f.path)] = {"kind": "image", "low": f.low, "high": float(top),
                                              "one_hot": top - f.low < 16}
        return fitted

    def vector_ranges(self, codec_fields) -> dict:
        """{dotted path: FieldSpec dict} giving each vector field the range of each of its values in the data:
        the bounds it is scaled by (a Box's declared bounds are often infinite, as Meta-World's from the object's
        position on, or far wider than what the values do)."""
        fitted = {}
        for f in codec_fields:
            if isinstance(f, VectorField) and f.size <= MAX_RANGE_VALUES:
                low, high = self._seen(self.ranges, f)
                fitted[dotted(f.path)] = {"kind": "vector", "low": low, "high": high}
        return fitted

    def _seen(self, table: dict, f, prefix: str = ""):
        if prefix + dotted(f.path) not in table:
            raise DatasetValueError(
                f"{f.name}: no statistics of this field's values (a {f.kind} override on a field of another "
                "kind?); build the task with store=False to fit its codec from the episodes themselves")
        return table[prefix + dotted(f.path)]

    def to_dict(self) -> dict:
        """JSON-able form (:meth:`from_dict` reads it)."""
        return {"top": self.top, "strings": {k: sorted(v) for k, v in self.strings.items()},
                "episodes": self.episodes, "steps": self.steps, "strings_capped": self.strings_capped,
                "varying": sorted(self.varying), "ranges": self.ranges}

    @classmethod
    def from_dict(cls, data: dict) -> DataStats:
        """The statistics :meth:`to_dict` wrote (a KeyError for those written before a statistic existed: the
        store gathers them again)."""
        return cls(dict(data["top"]), {k: set(v) for k, v in data["strings"].items()}, int(data["episodes"]),
                   int(data["steps"]), bool(data["strings_capped"]), set(data["varying"]), dict(data["ranges"]))


def _nbytes(x) -> int:
    """Approximate memory of nested lists/dicts/tuples of arrays and strings (Python objects included)."""
    if isinstance(x, np.ndarray):
        return x.nbytes + 112 + (x.size * 56 if x.dtype == object else 0)
    if isinstance(x, dict):
        return 232 + sum(_nbytes(v) for v in x.values())
    if isinstance(x, (list, tuple)):
        return 56 + 8 * len(x) + sum(_nbytes(v) for v in x)
    if isinstance(x, (str, bytes)):
        return 49 + len(x)
    return 32


@dataclass
class EncodedEpisodes:
    """Every timestep of every episode as one row of tokens, episodes back to back.

    steps (total, S) integer ids: [observation tokens, separator, action tokens];
    patches (total, n_patches, C, P, P) in the images' own dtype (normalised when sampled);
    starts (E+1,) row offsets; returns (E,); inputs (total, S) or None: ``steps`` with the
    actions actually taken in place of the targets (see ``RawEpisodes.taken``), None when no
    episode has such actions. The row arrays may be read from files on demand (``gato.data.episode_store``)
    or :class:`ChainedRows`; they are only ever sliced a few rows at a time.

    ``lengths``, ``length_cdf`` and ``return_order`` are computed once, on first use: sampling
    reads them instead of recomputing anything whose cost grows with the number of episodes.
    """

    steps: np.ndarray
    patches: np.ndarray
    starts: np.ndarray
    returns: np.ndarray
    inputs: np.ndarray | None = None
    _prefix_cdfs: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    @functools.cached_property
    def lengths(self) -> np.ndarray:
        """Timesteps per episode."""
        return np.diff(self.starts)

    @functools.cached_property
    def length_cdf(self) -> np.ndarray:
        """Cumulative share of the timesteps up to each episode: ``length_cdf.searchsorted(u, "right")`` for
        u uniform in [0, 1) draws an episode in proportion to its length, in O(log E), exactly as
        ``rng.choice(E, p=lengths / lengths.sum())`` does with the same u."""
        return _cdf(self.lengths)

    def prefix_cdf(self, prefix: int) -> np.ndarray:
        """:attr:`length_cdf` counting only each episode's first ``prefix`` timesteps (0: all), computed once per
        prefix."""
        if not prefix:
            return self.length_cdf
        if prefix not in self._prefix_cdfs:
            self._prefix_cdfs[prefix] = _cdf(np.minimum(self.lengths, prefix))
        return self._prefix_cdfs[prefix]

    @functools.cached_property
    def return_order(self) -> np.ndarray:
        """Episodes by decreasing return (ties: in order), where prompts are taken from."""
        return np.argsort(-self.returns, kind="stable")

    @classmethod
    def encode(cls, raw: RawEpisodes, codec: SpaceCodec, name: str) -> EncodedEpisodes:
        """Encode all episodes; a value outside its space raises DatasetValueError."""
        steps, patches, inputs = [], [], []
        sep = np.array([[codec.vocab.separator]])
        taken = raw.taken or [None] * len(raw)
        for i, obs, act, took in zip(raw.ids, raw.observations, raw.actions, taken):
            T = batch_length(act)  # not len(): a Tuple or Dict action is a tuple or dict of arrays
            obs_t = _first(obs, T)
            problem = codec.check(obs_t, act)
            if problem:
                raise DatasetValueError(
                    f"dataset {name!r}, episode {i}: {problem}. Fix or drop that episode and rewrite the dataset."
                )
            tok, pat = codec.encode_observations(obs_t, T)
            act_tok = codec.encode_actions(act, T)
            steps.append(np.concatenate([tok, np.repeat(sep, T, 0), act_tok], axis=1))
            inputs.append(steps[-1] if took is None else
                          np.concatenate([steps[-1][:, : -act_tok.shape[1]], codec.encode_actions(took, T)], axis=1))
            patches.append(pat)
        lengths = np.array([batch_length(a) for a in raw.actions], dtype=np.int64)
        return cls(
            steps=np.concatenate(steps),
            patches=np.concatenate(patches),
            starts=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
            returns=np.array([r.sum() for r in raw.rewards], dtype=np.float64),
            inputs=None if all(t is None for t in taken) else np.concatenate(inputs),
        )

    def concat(self, other: EncodedEpisodes) -> EncodedEpisodes:
        """These episodes followed by ``other``'s (encoded with the same codec). In-memory arrays are
        joined; a store's (read from its files) are chained (:class:`ChainedRows`), never read into memory."""
        def join(a, b):
            if all(isinstance(x, np.ndarray) and x.flags.writeable for x in (a, b)):  # a store's rows are no ndarray
                return np.concatenate([a, b])
            return ChainedRows([a, b])

        return EncodedEpisodes(
            steps=join(self.steps, other.steps),
            patches=join(self.patches, other.patches),
            starts=np.concatenate([self.starts, self.starts[-1] + other.starts[1:]]),
            returns=np.concatenate([self.returns, other.returns]),
            inputs=None if self.inputs is None and other.inputs is None else join(
                *[e.steps if e.inputs is None else e.inputs for e in (self, other)]),
        )


class LazyRows:
    """Rows read on demand, indexed as the in-memory array they stand for: a slice (step 1) or an index reads only
    its rows through ``read(lo, hi)``; any other index reads the whole. Subclasses give ``shape`` and ``read``
    (a store's files: ``gato.data.episode_store``; :class:`ChainedRows`)."""

    shape: tuple

    def read(self, lo: int, hi: int) -> np.ndarray:
        """Rows ``lo .. hi - 1``."""
        raise NotImplementedError

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def ndim(self) -> int:
        """As the array's."""
        return len(self.shape)

    def __getitem__(self, key):
        if isinstance(key, slice) and key.step in (None, 1):
            lo, hi, _ = key.indices(len(self))
            return self.read(lo, max(lo, hi))
        if isinstance(key, (int, np.integer)):
            i = int(key) + (len(self) if key < 0 else 0)
            if not 0 <= i < len(self):
                raise IndexError(f"row {key} of {len(self)}")
            return self.read(i, i + 1)[0]
        return np.asarray(self)[key]

    def __array__(self, dtype=None, copy=None):
        whole = self.read(0, len(self))
        return whole if dtype is None else whole.astype(dtype, copy=False)


class ChainedRows(LazyRows):
    """Row arrays back to back, read as one without being copied into one: a store's rows on disk
    followed by the few episodes added in memory (DAgger). A slice within one part is a view of it
    (sampling never crosses an episode, so never a part); a slice across parts reads the whole."""

    def __init__(self, parts):
        self.parts = [p for part in parts for p in (part.parts if isinstance(part, ChainedRows) else [part])]
        self.bounds = np.cumsum([0] + [len(p) for p in self.parts])

    @property
    def shape(self) -> tuple:
        """As the joined array's."""
        return (int(self.bounds[-1]),) + tuple(self.parts[0].shape[1:])

    @property
    def dtype(self):
        """The dtype every part's values fit."""
        return np.result_type(*(p.dtype for p in self.parts))

    def read(self, lo: int, hi: int) -> np.ndarray:
        """Rows ``lo .. hi - 1``: a slice of one part where they lie in one, else read from the whole."""
        i = int(np.searchsorted(self.bounds, lo, side="right")) - 1
        if i < len(self.parts) and hi <= self.bounds[i + 1]:
            return self.parts[i][lo - self.bounds[i] : hi - self.bounds[i]]
        return np.asarray(self)[lo:hi]

    def __array__(self, dtype=None, copy=None):
        joined = np.concatenate([np.asarray(p) for p in self.parts])
        return joined if dtype is None else joined.astype(dtype, copy=False)


def _cdf(lengths: np.ndarray) -> np.ndarray:
    cdf = (lengths / lengths.sum()).cumsum()
    cdf /= cdf[-1]
    return cdf


def _first(obs, T: int):
    """The first T entries of a (possibly nested) batch of observations."""
    if isinstance(obs, dict):
        return {k: _first(v, T) for k, v in obs.items()}
    if isinstance(obs, tuple):
        return tuple(_first(v, T) for v in obs)
    return obs[:T]
