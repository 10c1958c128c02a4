"""Encoded episodes kept on disk, read a few rows at a time: built once per (dataset, codec), shared by processes.

A ``ControlTask`` would otherwise read every episode of its dataset into memory and encode it at start-up,
in every process. Instead, the first start reads the dataset in chunks and writes, under a folder named
by a hash of the dataset's identity:

* ``stats.json``: the :class:`gato.data.episodes.DataStats` a codec is fitted to (largest value of each
  integer Box, distinct strings of each string field), so later starts fit the same codec without reading
  a single episode;
* one folder per codec, named by a hash of its full description (spaces, fitted overrides, text budgets,
  task id, vocabulary layout, the tokenizer's encoding of the dataset's strings, and the source of the
  encoding code), holding ``steps.npy`` (total, S) token rows in the smallest unsigned type the
  vocabulary fits, one ``image-<i>.npy`` per image field (its patches), ``starts.npy`` (E+1,) row offsets,
  ``returns.npy`` (E,) and ``meta.json``: flat arrays back to back and an offsets index.

An image field read one-hot (a symbolic grid: BabyAI's 7x7x3 object ids) has patches of 0s and 1s, one channel
per value: they are kept packed 8 to a byte (``meta.json``'s ``images``: "bits") and unpacked when rows are read
(:class:`StoredPatches`), which costs microseconds; GoToLocal's grid then takes 192 bytes a timestep, not 1,536.
(Keeping the raw grid, 147 bytes, and cutting it into one-hot patches at every read was measured 5x slower to
sample: docs/EXPERIMENTS.md.) Other images keep their patches in their own dtype.

Rows are read with ``os.pread`` when sampled (:class:`FileRows`), not memory-mapped: a mapped page that a
batch touched stays in the process's resident memory, so over a long run RSS grew towards the size of the
store; a read copies the rows it needs into a buffer freed with the batch, and the page cache (shared by
every process of a machine, given back under memory pressure) is not counted as the process's. Private
memory holds a few numbers per episode, whatever the size of the data. The build writes the files with
plain sequential writes for the same reason.

The dataset's identity is its id, the name, size and modification time (ns) of each file in its ``data``
folder, a hash of ``metadata.json`` and of the episode indices read (a filtered MinariDataset is another
dataset): regenerating or appending to a dataset changes it, and a new store is built beside the old.

Where: under ``$GATO_STORE_PATH/<dataset id>/`` if that variable is set (``off`` keeps episodes in memory,
as before), otherwise in a hidden ``.gato-store`` folder inside the dataset's folder (which minari's
listings skip, and which ``gato data --overwrite`` replaces together with the dataset). Old versions are
never deleted automatically: delete the folder to reclaim the space.

Safety: a store is written under a temporary name and renamed into place once complete
(``gato.atomic.replacing_dir``), so a killed build leaves litter, never a half store under the real name.
Builds of one dataset take an exclusive ``flock`` on a lock file beside them: when several processes start
together one builds and the others wait, then open what it built. Partial folders of killed builds are
deleted by the next build. (``flock`` is per machine; on a network file system shared by several machines
the rename still keeps stores whole, but two machines may both build.)

The first build reads the dataset once, ``CHUNK_EPISODES`` at a time (memory holds a chunk, not the
dataset): the codec is fitted to the statistics of the first chunks (up to ``KEEP_STEPS`` timesteps or
``KEEP_BYTES``), every chunk is encoded with it, and the complete statistics are checked to fit the same
codec at the end; where they do not (a longer string or a new value seen late), the store is built again
from a second read. A store for another codec of the same dataset (another vocabulary) reads it once.
"""

from __future__ import annotations

import contextlib
import copy
import fcntl
import functools
import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from gymnasium import spaces

from gato import atomic
from gato.codec import (
    ACTION_TEXT,
    DatasetValueError,
    FieldSpec,
    PatchField,
    SpaceCodec,
    TextField,
    batch_length,
    dotted,
)
from gato.data.episodes import DataStats, EncodedEpisodes, LazyRows, RawEpisodes

STORE_PATH_ENV = "GATO_STORE_PATH"
"""Environment variable: the folder stores are kept under (``off``: keep episodes in memory)."""

FORMAT = 2
"""Version of the files' layout (2: a file per image field, one-hot patches packed to bits); a change of it, or
of the encoding code, makes new stores."""

PACK_BITS = True
"""Keep the patches of one-hot image fields packed 8 to a byte (False: as bytes, for comparison)."""

CHUNK_EPISODES = 1000
"""Dataset episodes read, encoded and written at a time while building."""

KEEP_STEPS = 100_000
KEEP_BYTES = 512 * 2**20
"""A first build fits its codec to the first chunks, up to these many timesteps and (estimated) bytes."""

_CODE = ("codec.py", "data/episodes.py")  # the encoding's source: a change of it may change the tokens


class StoreUnavailableError(OSError):
    """The store's folder cannot be written (a read-only dataset folder): see ``GATO_STORE_PATH``."""


def store_root(dataset, setting=None) -> Path | None:
    """The folder holding ``dataset``'s stores, or None to keep its episodes in memory.

    ``setting``: False (in memory), a path (stores under ``path/<dataset id>``), or True / None (the
    ``GATO_STORE_PATH`` variable if set, ``off`` meaning in memory; else ``.gato-store`` inside the
    dataset's folder). A dataset without a folder (not read from disk) is kept in memory.
    """
    if setting is False:
        return None
    if setting is None or setting is True:
        setting = os.environ.get(STORE_PATH_ENV) or None
        if setting is not None and setting.strip().lower() in ("off", "0", "false", "no", "none"):
            return None
    if setting is not None:
        return Path(setting).expanduser() / dataset.spec.dataset_id
    data_path = getattr(getattr(dataset, "storage", None), "data_path", None)
    return None if data_path is None else Path(data_path).parent / ".gato-store"


def dataset_identity(dataset) -> dict:
    """What identifies the dataset's content without reading it (see the module docstring)."""
    data = Path(dataset.storage.data_path)
    files = sorted([p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in data.iterdir() if p.is_file())
    return {"dataset_id": dataset.spec.dataset_id, "files": files,
            "metadata": _sha((data / "metadata.json").read_bytes()),
            "episodes": _sha(np.ascontiguousarray(dataset.episode_indices, dtype=np.int64).tobytes())}


def codec_identity(codec: SpaceCodec, stats: DataStats) -> dict:
    """Everything the tokens a codec writes depend on (see the module docstring)."""
    vocab, tok = codec.vocab, codec.vocab.tokenizer
    # the tokenizer by what it does to this dataset: two runs' identical BPEs share a store, any difference not
    texts = sorted(s for fields, prefix in ((codec.obs_fields, ""), (codec.action_fields, ACTION_TEXT))
                   for f in fields if isinstance(f, TextField) for s in stats.strings.get(prefix + dotted(f.path), ()))
    return {
        "format": FORMAT,
        "code": _sha(b"".join((Path(__file__).parents[1] / name).read_bytes() for name in _CODE)),
        "observation_space": _space_key(codec.observation_space),
        "action_space": _space_key(codec.action_space),
        "patch_size": codec.patch_size,
        "task_id": codec.task_id,
        "overrides": {k: FieldSpec.parse(v).to_dict() for k, v in sorted(codec.overrides.items())},
        "vocab": {"text_tokens": vocab.text_tokens, "discrete_tokens": vocab.discrete_tokens,
                  "continuous_tokens": vocab.continuous_tokens, "mu": vocab.mu, "M": vocab.M,
                  "task_tokens": vocab.task_tokens},
        "tokenizer": _sha(json.dumps([tok.pad_id, tok.vocab_size, [tok.encode(s) for s in texts]]).encode()),
        "fields": [[type(f).__name__, dotted(f.path), f.n_tokens, f.n_patches, f.describe()]
                   for f in codec.obs_fields + codec.action_fields],
    }


class EpisodeStore:
    """The stores of one dataset (in its version now on disk): :meth:`load` opens or builds one per codec.

    ``root``: see :func:`store_root`; ``name``: the dataset's id in error messages. After :meth:`load`,
    ``stats`` holds the dataset's :class:`DataStats`, ``path`` the store opened and ``built`` whether this
    process built it (False: it existed, or another process built it while this one waited).
    """

    def __init__(self, dataset, name: str, root: str | os.PathLike):
        self.dataset, self.name = dataset, name
        self.key = _sha(json.dumps(dataset_identity(dataset), sort_keys=True).encode())
        self.dir = Path(root) / self.key[:20]
        self.stats: DataStats | None = None
        self.path: Path | None = None
        self.built = False

    def load(self, make_codec) -> tuple[SpaceCodec, EncodedEpisodes]:
        """The codec ``make_codec(stats)`` fits and the episodes it encodes, read from the store's files. Reads the
        dataset only when the statistics or this codec's store are not on disk yet; then builds them, one process
        at a time."""
        self.built = False
        stats = self._read_stats()
        if stats is not None:
            codec = make_codec(stats)
            episodes = self._open(codec, stats)
            if episodes is not None:
                return codec, episodes
        with self._locked():
            self._clean()
            stats = self._read_stats()
            if stats is None:
                codec = self._first_build(make_codec)
            else:
                codec = make_codec(stats)
                if self._open(codec, stats) is None:
                    self._build(codec, self._chunks(), stats.steps)
                    self.built = True
            episodes = self._open(codec, self.stats)
            if episodes is None:
                raise RuntimeError(f"the episode store built at {self.path} does not open; delete {self.dir}")
        return codec, episodes

    # -- statistics ------------------------------------------------------------------------------

    def _read_stats(self) -> DataStats | None:
        try:
            data = json.loads((self.dir / "stats.json").read_text())
            if data.get("key") != self.key:
                return None
            self.stats = DataStats.from_dict(data["stats"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return self.stats

    def _first_build(self, make_codec) -> SpaceCodec:
        """The first build of a dataset: its statistics and the store of ``make_codec``'s codec in one read.

        The codec is fitted to the first chunks (up to KEEP_STEPS timesteps or KEEP_BYTES); every chunk is
        then encoded with it while the statistics grow. If the complete statistics fit the same codec (the
        usual case: the first chunks already show every string length and value), the store is kept;
        otherwise it is discarded and built again with the right codec (a second read)."""
        stats, head, steps, size = DataStats(), [], 0, 0
        leaves = DataStats.leaves_of(self.dataset.observation_space, self.dataset.action_space)
        chunks = RawEpisodes.chunks(self.dataset, self.name, CHUNK_EPISODES)
        for chunk in chunks:
            stats.update(chunk, leaves)
            head.append(chunk)
            steps, size = steps + sum(batch_length(a) for a in chunk.actions), size + chunk.nbytes()
            if steps > KEEP_STEPS or size > KEEP_BYTES:
                break
        guess = make_codec(copy.deepcopy(stats))

        def every_chunk():
            while head:
                yield head.pop(0)
            for chunk in chunks:
                stats.update(chunk, leaves)
                yield chunk

        def settle():
            """The complete statistics, saved; whether they fit the codec the store is being written with."""
            if not stats.episodes:
                raise DatasetValueError(f"dataset {self.name!r} holds no episodes with at least one step; "
                                        "regenerate it")
            atomic.write_json(self.dir / "stats.json", {"key": self.key, "stats": stats.to_dict()})
            self.stats = stats
            return codec_identity(guess, stats) == codec_identity(make_codec(stats), stats)

        # minari's step count sizes the files; should it not be the rows found, the build is done again
        if self._build(guess, every_chunk(), int(self.dataset.total_steps), settle):
            self.built = True
            return guess
        codec = make_codec(stats)
        self._build(codec, self._chunks(), stats.steps)
        self.built = True
        return codec

    # -- one codec's store -----------------------------------------------------------------------

    def _target(self, codec: SpaceCodec, stats: DataStats) -> tuple[Path, str]:
        key = _sha(json.dumps({"dataset": self.key, "codec": codec_identity(codec, stats)}, sort_keys=True).encode())
        return self.dir / key[:20], key

    def _open(self, codec: SpaceCodec, stats: DataStats) -> EncodedEpisodes | None:
        """The store of ``codec`` if it is complete and current, else None."""
        target, key = self._target(codec, stats)
        self.path = target
        try:
            meta = json.loads((target / "meta.json").read_text())
            if meta.get("key") != key:
                return None
            steps = FileRows(target / "steps.npy")
            images = [(form, FileRows(target / f"image-{i}.npy")) for i, form in enumerate(meta["images"])]
            if any(form["form"] not in ("bits", "patches") for form, _ in images):
                return None
            starts = np.load(target / "starts.npy")
            returns = np.load(target / "returns.npy")
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if (steps.shape != (meta["steps"], codec.tokens_per_step) or len(images) != len(patch_fields(codec))
                or any(len(rows) != meta["steps"] for _, rows in images)
                or len(starts) != meta["episodes"] + 1 or len(returns) != meta["episodes"] or starts[-1] != len(steps)):
            return None
        return EncodedEpisodes(steps=steps, patches=StoredPatches(codec, images, len(steps)), starts=starts,
                               returns=returns)

    def _build(self, codec: SpaceCodec, chunks, total: int, settle=None) -> bool:
        """Encode ``chunks`` with ``codec`` into ``total`` rows of files in a temporary folder, renamed into
        place when complete. ``settle()``, called once every chunk is read, returns whether to keep the
        result (it also sets ``self.stats``); False, or a row count other than ``total``, drops it."""
        start = time.perf_counter()
        dtype = np.uint16 if codec.vocab.size <= np.iinfo(np.uint16).max + 1 else np.int32
        starts, returns = [np.zeros(1, np.int64)], []
        tmp = Path(tempfile.mkdtemp(prefix=f".build-{os.getpid()}.writing-", dir=self.dir))
        fields = patch_fields(codec)
        files = [_RowWriter(tmp / "steps.npy", total, dtype)]
        try:
            forms, row, overflow = None, 0, False
            for chunk in chunks:
                if overflow or not len(chunk):
                    continue  # past ``total`` rows: only read on, for the statistics ``settle`` needs
                enc = EncodedEpisodes.encode(chunk, codec, self.name)
                n = len(enc.steps)
                if row + n > total:
                    overflow = True
                    continue
                # each field's patches in its own dtype (joined with the others' when read, as encoding joins them);
                # one field's are the encoded patches themselves
                cut = [enc.patches] if len(fields) == 1 else [field_patches(codec, f, chunk.field_values(f.path))
                                                              for f, _ in fields]
                if forms is None:
                    forms = [{"form": "bits" if PACK_BITS and zeros_and_ones(f) else "patches", "dtype": p.dtype.str}
                             for (f, _), p in zip(fields, cut)]
                    files += [_RowWriter(tmp / f"image-{i}.npy", total) for i in range(len(fields))]
                files[0].write(enc.steps)
                for file, form, p in zip(files[1:], forms, cut):
                    file.write(pack_bits(p) if form["form"] == "bits" else p)
                starts.append(row + enc.starts[1:])
                returns.append(enc.returns)
                row += n
            for file in files:
                file.close()
            if settle is not None and not (settle() and not overflow and row == total):
                shutil.rmtree(tmp, ignore_errors=True)
                return False
            if overflow or row != total:
                raise _changed(self.name)
            starts, returns = np.concatenate(starts), np.concatenate(returns)
            np.save(tmp / "starts.npy", starts)
            np.save(tmp / "returns.npy", returns)
            target, key = self._target(codec, self.stats)
            atomic.write_json(tmp / "meta.json", {
                "key": key, "dataset_id": self.name, "episodes": len(returns), "steps": total, "images": forms or [],
                "codec": codec_identity(codec, self.stats), "built_seconds": round(time.perf_counter() - start, 3),
                "built_by_pid": os.getpid()})
            _share(tmp)
            atomic.fsync_tree(tmp)
            atomic.replace_dir(tmp, target)
        except BaseException:
            for file in files:
                file.close()
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return True

    def _chunks(self):
        """The dataset's episodes, chunk by chunk."""
        return RawEpisodes.chunks(self.dataset, self.name, CHUNK_EPISODES)

    # -- processes -------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self):
        """Hold this dataset's build lock (released by the system if the process dies)."""
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.dir / ".lock", os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as e:
            raise StoreUnavailableError(
                e.errno, f"cannot write the episode store of {self.name!r} at {self.dir} ({e.strerror}); set "
                f"{STORE_PATH_ENV} to a writable folder, or to 'off' to keep the episodes in memory") from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _clean(self) -> None:
        """Delete what killed builds left (only called holding the lock: nothing else is being written)."""
        for path in self.dir.glob(".*"):
            if ".writing-" in path.name or path.name.startswith(".stats.json."):
                shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)


def patch_fields(codec: SpaceCodec) -> list:
    """(field, (first, end)) for each patch field (image or vector) of ``codec``'s observations: the patches it
    takes in a row of ``codec.encode_observations``'s patches (the fields' patches follow each other in field
    order)."""
    out, first = [], 0
    for f in codec.obs_fields:
        if isinstance(f, PatchField):
            out.append((f, (first, first + f.n_patches)))
            first += f.n_patches
    return out


def zeros_and_ones(f: PatchField) -> bool:
    """Whether a field's patches hold only 0 and 1: read one-hot, unpooled or max-pooled (a mean-pooled one-hot
    field holds each value's share of a block)."""
    return bool(f.levels) and (f.pool == 1 or f.pool_mode == "max")


def pack_bits(patches: np.ndarray) -> np.ndarray:
    """(N, ...) patches of 0s and 1s -> (N, bytes) uint8, 8 values a byte (:meth:`StoredPatches.read` unpacks)."""
    flat = patches.reshape(len(patches), -1)
    if flat.size and (flat.max() > 1 or flat.min() < 0):
        raise RuntimeError("one-hot patches hold a value other than 0 and 1; report this as a bug")
    return np.packbits(flat != 0, axis=1)


def field_patches(codec: SpaceCodec, f: PatchField, values: np.ndarray) -> np.ndarray:
    """The patches of one image field's values, as ``codec.encode_observations`` makes them before it joins the
    fields' (``PatchField.patches``, channels padded to the codec's; tests/test_episode_store_images.py holds
    the store's rows to the in-memory path's bytes)."""
    p = f.patches(values)
    if p.shape[2] < codec.image_channels:
        pad = codec.image_channels - p.shape[2]
        p = np.pad(p, ((0, 0), (0, 0), (0, pad), (0, 0), (0, 0)), constant_values=f.low)
    return p


class FileRows(LazyRows):
    """The rows of a ``.npy`` file, read from it when sliced (``os.pread``): ``rows[lo:hi]`` is a new array, as
    the in-memory array's slice would read (read-only, as a view of it might be); nothing of the file stays in
    the process's memory.

    A memory-mapped file would serve slices without a copy, but every page a slice touches then stays mapped
    and counts in the process's resident memory (up to the file's size over a long run, see the module
    docstring). Pickles as its path (a worker process opens the file again)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        with open(self.path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read(f)
            offset = f.tell()
        if dtype.hasobject or fortran and len(shape) > 1:
            raise ValueError(f"{self.path} holds objects or a Fortran-ordered array, which a store never writes")
        self.shape, self.dtype, self.offset = tuple(shape), dtype, offset
        self.row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
        self._fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        if os.fstat(self._fd).st_size < offset + len(self) * self.row_bytes:
            self.close()
            raise ValueError(f"{self.path} is shorter than its header says")

    def read(self, lo: int, hi: int) -> np.ndarray:
        """Rows ``lo .. hi - 1`` as a new read-only array (over the bytes read: one copy, from the page cache)."""
        size, at = (hi - lo) * self.row_bytes, self.offset + lo * self.row_bytes
        data = os.pread(self._fd, size, at)
        while len(data) < size:  # a short read: interrupted, or the file cut since it was opened
            more = os.pread(self._fd, size - len(data), at + len(data))
            if not more:
                raise OSError(f"{self.path} ended before row {hi} (truncated since it was opened?); delete its "
                              "folder and start again to rebuild the store")
            data += more
        return np.frombuffer(data, self.dtype).reshape((hi - lo,) + self.shape[1:])

    def close(self) -> None:
        """Close the file (a later read fails)."""
        if getattr(self, "_fd", None) is not None:
            os.close(self._fd)
            self._fd = None

    def __del__(self):
        self.close()

    def __getstate__(self):
        return {"path": self.path}

    def __setstate__(self, state):
        self.__init__(state["path"])


class StoredPatches(LazyRows):
    """A store's image patches, read as the in-memory array ``EncodedEpisodes.patches`` is: ``patches[lo:hi]`` is
    (hi - lo, patches_per_step, C, P, P) exactly as ``codec.encode_observations`` gives for those rows.

    ``images``: one (form, :class:`FileRows`) per image field of ``codec`` (see :func:`patch_fields`), form being
    {"form": "patches" (the field's patches as encoded) or "bits" (its 0/1 patches packed 8 to a byte, see
    :func:`pack_bits`), "dtype": the patches' dtype}; ``rows``: the number of rows."""

    def __init__(self, codec: SpaceCodec, images: list, rows: int):
        self.codec, self.images, self.rows = codec, images, rows
        P = codec.patch_size
        # per field: its rows' file, and for bits the shape and dtype of a row's patches (computed once: a
        # read is a few rows, and sampling makes dozens of reads a batch)
        self._parts = [(rows, form["form"] == "bits", (f.n_patches, codec.image_channels, P, P),
                        np.dtype(form["dtype"])) for (f, _), (form, rows) in zip(patch_fields(codec), images)]

    @property
    def shape(self) -> tuple:
        """As the in-memory array's."""
        return (self.rows, self.codec.patches_per_step, self.codec.image_channels, self.codec.patch_size,
                self.codec.patch_size)

    @functools.cached_property
    def dtype(self):
        """As the in-memory array's."""
        return self.read(0, min(1, self.rows)).dtype

    def read(self, lo: int, hi: int) -> np.ndarray:
        """The patches of rows ``lo .. hi - 1``."""
        parts = [self._unpacked(rows.read(lo, hi), shape, dtype) if bits else rows.read(lo, hi)
                 for rows, bits, shape, dtype in self._parts]
        if not parts:  # as encode_observations gives for observations without images
            return np.zeros((hi - lo, 0, 0, self.codec.patch_size, self.codec.patch_size), np.uint8)
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)

    @staticmethod
    def _unpacked(rows: np.ndarray, shape: tuple, dtype) -> np.ndarray:
        """(n, bytes) packed rows -> (n, *shape) patches of 0s and 1s in ``dtype``."""
        count = int(np.prod(shape))
        # whole bytes (P * P a multiple of 8): one unpacking of the flat bytes, the fastest numpy has
        if count == 8 * rows.shape[1]:
            bits = np.unpackbits(rows.reshape(-1))
        else:
            bits = np.unpackbits(rows, axis=1, count=count)
        patches = bits.reshape((len(rows),) + shape)
        return patches if patches.dtype == dtype else patches.astype(dtype)


class _RowWriter:
    """A ``.npy`` file of ``total`` rows written in order, chunk by chunk, with plain writes (a memory map being
    written would hold every page in the builder's resident memory); its dtype is the first chunk's unless given."""

    def __init__(self, path: Path, total: int, dtype=None):
        self.path, self.total, self.dtype, self.file = path, total, dtype, None

    def write(self, rows: np.ndarray) -> None:
        """Append ``rows`` (cast to the file's dtype)."""
        if self.file is None:
            self.dtype = np.dtype(self.dtype or rows.dtype)
            self.file = open(self.path, "wb")  # noqa: SIM115 -- closed by close(), after the last chunk
            np.lib.format.write_array_header_1_0(self.file, {
                "descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False,
                "shape": (self.total,) + rows.shape[1:]})
        self.file.write(np.ascontiguousarray(rows, self.dtype).data)

    def close(self) -> None:
        """Flush and close."""
        if self.file is not None:
            self.file.close()
            self.file = None


def _share(folder: Path) -> None:
    """Give a folder made by mkdtemp (private) and its files the permissions new ones get (umask)."""
    umask = os.umask(0)
    os.umask(umask)
    for path in [folder, *folder.iterdir()]:
        os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~umask)


def _changed(name: str) -> RuntimeError:
    return RuntimeError(f"dataset {name!r} changed while its episode store was being built; start again")


def _space_key(space) -> object:
    """A stable description of a space (reprs of some spaces hold memory addresses)."""
    if isinstance(space, spaces.Dict):
        return {"Dict": [[k, _space_key(s)] for k, s in space.spaces.items()]}
    if isinstance(space, spaces.Tuple):
        return {"Tuple": [_space_key(s) for s in space.spaces]}
    if isinstance(space, spaces.Box):
        return {"Box": [list(space.shape), str(space.dtype), _sha(space.low.tobytes() + space.high.tobytes())]}
    if isinstance(space, spaces.Discrete):
        return {"Discrete": [int(space.n), int(space.start)]}
    if isinstance(space, spaces.MultiDiscrete):
        return {"MultiDiscrete": [space.nvec.tolist(), np.asarray(space.start).tolist()]}
    if isinstance(space, spaces.MultiBinary):
        return {"MultiBinary": np.asarray(space.n).tolist()}
    return {type(space).__qualname__: getattr(space, "max_length", None)}


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
