"""SpaceCodec: the token layout of one timestep, for any Gymnasium space.

A timestep is ``[observation tokens] [separator] [action tokens]``. The codec walks the
observation and action spaces once (Dict and Tuple to any depth) and gives every leaf a field
codec that turns a batch of values into a fixed number of tokens:

=====================================  ==================  ====================================
leaf space                             tokens              how
=====================================  ==================  ====================================
Discrete(n)                            1                   discrete id ``value - start``
MultiDiscrete(nvec) / MultiBinary(n)   len(nvec) / n       one discrete id each
Box vector (or any non-image Box)      prod(shape)         observations: mu-law then bins;
                                                           actions: scaled by finite bounds
Box image (H,W) (H,W,C) (C,H,W)        patches             observations only; pooled to at most
                                                           ``max_patches``, padded to the patch
                                                           size, embedded from pixels
Text, or any space sampling strings    a text budget       the vocabulary's text tokenizer;
                                                           actions are generated in the charset
Box read as ``"vector"`` (override)    1                   observations only: the values, each scaled
                                                           to [-1, 1] by its own range, as one patch
                                                           embedded like an image's
=====================================  ==================  ====================================

``FieldSpec`` overrides how one field is read, e.g. ``{"image": "image"}`` or
``{"image": {"kind": "discrete"}}``. Paths are dotted (``"a.b"``, ``"0"`` for a Tuple item);
errors print them as ``obs["a"]["b"]``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from gymnasium import spaces

from gato.text_tokenizer import WordByteTokenizer
from gato.vocab import Vocab

DEFAULT_TEXT_TOKENS = 16
"""Text budget of a string field when neither the caller nor the data says otherwise."""

ACTION_TEXT = "action:"
"""Prefix of an action field's key in a codec's ``text_budget`` (observation fields have none)."""

DEFAULT_MAX_PATCHES = 64
"""Most patches an image takes unless its FieldSpec says otherwise: a larger frame is pooled by the
smallest factor that fits (an 84x84 frame with 4x4 patches: by 3, 49 patches; 128x128: by 4, 64)."""


class UnsupportedSpaceError(ValueError):
    """A space (or one field of it) that the codec cannot turn into tokens."""


class DatasetValueError(ValueError):
    """A value in the data that does not belong to its space (NaN, out of range, ...)."""


class VocabMismatchError(ValueError):
    """Tokens of a codec built for one vocabulary, given to a policy of another."""


def not_encoded_for(what: str, encoded, vocab) -> VocabMismatchError:
    """The error for a language task (``what``) whose text is encoded for ``encoded`` (None: not yet encoded)
    used with a policy of vocabulary ``vocab``."""
    state = "is not encoded yet" if encoded is None else f"is encoded for {encoded}"
    return VocabMismatchError(f"{what} {state}, but the policy uses {vocab}; encode it first with "
                              "`task.encode_for(policy.vocab)` (or build it with vocab=policy.vocab)")


@dataclass(frozen=True)
class FieldSpec:
    """How to read one leaf field. ``kind`` is "discrete", "continuous", "image" or "text".

    ``low``/``high`` replace a Box's bounds for scaling (e.g. a symbolic grid whose values stop far below its
    declared 255; a vector field takes lists, one bound per value); ``channels_first`` forces the image layout;
    ``tokens`` sets a text budget; ``one_hot`` reads an integer image's values as categories (one 0/1 channel per
    value between low and high); ``pool`` reduces pool x pool pixel blocks before cutting patches, so a large frame
    takes fewer tokens (an 84x84 Atari frame pooled by 3 is 28x28: 49 patches of 4x4 instead of 441); ``pool_mode``
    is "mean" (default) or "max", which keeps a small bright sprite (Breakout's ball) at full brightness instead of
    a ninth of it; ``max_patches`` bounds an image's patches when ``pool`` is not given (default
    ``DEFAULT_MAX_PATCHES``): the image is pooled by the smallest factor that fits, so a large frame costs a bounded
    number of tokens (Gato's 80x64 frames take 20 patches of 16x16); ``once`` marks a field whose value never
    changes within an episode (a BabyAI mission): it is laid out in the first timestep of a window only, so every
    later timestep is that many tokens shorter (not for images).
    Kind ``"vector"`` reads an observation Box as one position embedded from its values (``VectorField``).
    """

    kind: str
    low: float | list | None = None
    high: float | list | None = None
    channels_first: bool | None = None
    tokens: int | None = None
    one_hot: bool | None = None
    pool: int | None = None
    pool_mode: str | None = None
    max_patches: int | None = None
    once: bool | None = None

    @classmethod
    def parse(cls, value: FieldSpec | str | dict) -> FieldSpec:
        """Accept a FieldSpec, a kind name, or a dict of FieldSpec fields."""
        if isinstance(value, FieldSpec):
            spec = value
        elif isinstance(value, str):
            spec = cls(kind=value)
        elif isinstance(value, dict):
            spec = cls(**value)
        else:
            raise TypeError(f"a field override must be a kind name, dict or FieldSpec, got {value!r}")
        if spec.kind not in ("discrete", "continuous", "image", "text", "vector"):
            raise ValueError(
                f"unknown field kind {spec.kind!r}; use 'discrete', 'continuous', 'image', 'text' or 'vector'"
            )
        return spec

    def to_dict(self) -> dict:
        """JSON-able form (None fields dropped)."""
        return {k: v for k, v in asdict(self).items() if v is not None}


def display_path(root: str, path: tuple) -> str:
    """``('a', 0)`` -> ``obs["a"][0]``."""
    return root + "".join(f"[{p}]" if isinstance(p, int) else f'["{p}"]' for p in path)


def dotted(path: tuple) -> str:
    """``('a', 0)`` -> ``"a.0"``, the form used for overrides."""
    return ".".join(str(p) for p in path)


def is_string_space(space: spaces.Space) -> bool:
    """True for Text and for any other space whose samples are strings (MissionSpace)."""
    if isinstance(space, spaces.Text):
        return True
    if type(space).__module__.startswith("gymnasium.spaces"):
        return False
    try:
        return isinstance(space.sample(), str)
    except Exception:  # a custom space that cannot sample is simply not a string space
        return False


def _image_layout(space: spaces.Box, spec: FieldSpec | None) -> tuple[int, int, int, bool] | None:
    """(C, H, W, channels_first) if the Box reads as an image, else None."""
    shape = space.shape
    if (spec is not None and spec.kind != "image") or 0 in shape:  # 0 in shape: no pixels, a field of 0 tokens
        return None
    if len(shape) == 2:
        if spec is None and min(shape) < 8:  # a small matrix of features, not a picture
            return None
        return 1, shape[0], shape[1], False
    if len(shape) != 3:
        if spec is not None:
            raise UnsupportedSpaceError(f"an image field needs a 2-D or 3-D Box, got shape {shape}")
        return None
    first = spec.channels_first if spec is not None else None
    if first is None:  # the channel axis is the short one
        first = shape[0] < shape[2] and shape[0] <= min(shape[1], shape[2])
    if first:
        return shape[0], shape[1], shape[2], True
    return shape[2], shape[0], shape[1], False


def fitting_pool(height: int, width: int, patch_size: int, max_patches: int) -> int:
    """The smallest pooling factor k with which a height x width image takes at most ``max_patches``
    patches of patch_size x patch_size (1: the image fits as it is)."""
    def patches(k: int) -> int:
        return _ceil(_ceil(height, k), patch_size) * _ceil(_ceil(width, k), patch_size)

    k = 1
    while patches(k) > max_patches:  # ends: at k = max(height, width) the image is one patch
        k += 1
    return k


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def bound_images(fields, overrides: dict, max_patches: int) -> dict:
    """``overrides`` plus ``max_patches`` for every image field among ``fields`` whose override sets
    neither ``pool`` nor ``max_patches``: a global bound on image tokens as per-field overrides, which
    a codec rebuilt from its ``overrides`` keeps."""
    out = dict(overrides)
    for f in fields:
        key = dotted(f.path)
        spec = FieldSpec.parse(out[key]).to_dict() if key in out else {"kind": "image"}
        if isinstance(f, ImageField) and not spec.get("pool") and not spec.get("max_patches"):
            out[key] = {**spec, "max_patches": int(max_patches)}
    return out


def batch_length(values) -> int:
    """How many entries a batch of values holds, whatever its structure: a Dict or Tuple batch
    (Minari's episode of a Tuple space is a tuple of per-item arrays) is as long as its first leaf."""
    while isinstance(values, (dict, tuple)):
        values = next(iter(values.values())) if isinstance(values, dict) else values[0]
    return len(values)


# ----------------------------------------------------------------------------- field codecs


class Field:
    """One leaf of a space: a fixed number of tokens per timestep."""

    kind = ""
    n_tokens = 0
    n_patches = 0
    once = False  # laid out in a window's first timestep only (FieldSpec.once)

    def __init__(self, path: tuple, space: spaces.Space, root: str):
        self.path = path
        self.space = space
        self.name = display_path(root, path)

    def encode(self, values, vocab: Vocab) -> np.ndarray:
        """(N, n_tokens) int64 global ids for a batch of N values."""
        raise NotImplementedError

    def decode(self, tokens: np.ndarray, vocab: Vocab):
        """Batch of N values from (N, n_tokens) ids (action fields only)."""
        raise UnsupportedSpaceError(f"{self.name}: a {self.kind} field cannot be an action")

    def token_ranges(self, vocab: Vocab) -> list[tuple[int, int]]:
        """For each token: the [lo, hi) id range a valid value can take."""
        raise NotImplementedError

    def token_masks(self, vocab: Vocab) -> list[np.ndarray | None]:
        """For each token: None (every id of its range is valid) or a bool array over its range
        saying which ids are (a text action's charset)."""
        return [None] * self.n_tokens

    def check(self, values) -> str | None:
        """A message if ``values`` hold something outside the space, else None."""
        return None

    def describe(self) -> str:
        """Short description of how the field is tokenised."""
        return self.kind


class DiscreteField(Field):
    """Discrete, MultiDiscrete, MultiBinary, or an integer Box read as discrete values."""

    kind = "discrete"

    def __init__(self, path, space, root, vocab: Vocab, spec: FieldSpec | None = None):
        super().__init__(path, space, root)
        if isinstance(space, spaces.Discrete):
            self.shape, start, nvec = (), np.array([space.start]), np.array([space.n])
        elif isinstance(space, spaces.MultiDiscrete):
            self.shape, start, nvec = space.shape, space.start.ravel(), space.nvec.ravel()
        elif isinstance(space, spaces.MultiBinary):
            self.shape = space.shape
            nvec = np.full(int(np.prod(space.shape)), 2)
            start = np.zeros_like(nvec)
        elif isinstance(space, spaces.Box):
            low = np.broadcast_to(space.low if spec.low is None else spec.low, space.shape).ravel()
            high = np.broadcast_to(space.high if spec.high is None else spec.high, space.shape).ravel()
            if not (np.isfinite(low).all() and np.isfinite(high).all()):
                raise UnsupportedSpaceError(f"{self.name}: a Box read as discrete needs finite bounds")
            self.shape, start, nvec = space.shape, low.astype(np.int64), (high - low).astype(np.int64) + 1
        else:
            raise UnsupportedSpaceError(f"{self.name}: {space} cannot be read as discrete values")
        self.start, self.nvec = start.astype(np.int64), nvec.astype(np.int64)
        self.n_tokens = len(self.nvec)
        if self.nvec.max(initial=0) > vocab.discrete_tokens:  # initial: a MultiDiscrete([]) has no values
            raise UnsupportedSpaceError(
                f"{self.name}: {space} has {int(self.nvec.max())} values but the vocabulary has "
                f"{vocab.discrete_tokens} discrete tokens; raise discrete_tokens"
            )

    def _flat(self, values) -> np.ndarray:
        v = np.asarray(values)
        return v.reshape(v.shape[0], -1).astype(np.int64) if self.shape else v.reshape(-1, 1).astype(np.int64)

    def encode(self, values, vocab):
        ids = np.clip(self._flat(values) - self.start, 0, self.nvec - 1)
        return ids + vocab.discrete_offset

    def decode(self, tokens, vocab):
        local = np.clip(tokens - vocab.discrete_offset, 0, self.nvec - 1) + self.start
        return local.reshape((len(tokens),) + self.shape) if self.shape else local[:, 0]

    def token_ranges(self, vocab):
        return [(vocab.discrete_offset, vocab.discrete_offset + int(n)) for n in self.nvec]

    def check(self, values):
        v = np.asarray(values)
        if v.dtype.kind == "f" and not np.isfinite(v).all():
            return f"{self.name} holds NaN or inf"
        local = self._flat(values) - self.start
        bad = (local < 0) | (local >= self.nvec)
        if bad.any():
            row = int(np.argwhere(bad)[0, 0])
            return f"{self.name} holds {self._flat(values)[row].tolist()} at step {row}, outside {self.space}"
        return None

    def describe(self):
        return f"discrete ({int(self.nvec.max())} values)" if self.n_tokens == 1 else f"discrete x{self.n_tokens}"


class ContinuousField(Field):
    """A Box of real values: mu-law for observations, scaled by bounds for actions."""

    kind = "continuous"

    def __init__(self, path, space: spaces.Box, root, is_action: bool, spec: FieldSpec | None = None):
        super().__init__(path, space, root)
        self.shape = space.shape
        self.n_tokens = int(np.prod(space.shape)) if space.shape else 1
        low = np.broadcast_to(space.low if spec is None or spec.low is None else spec.low, space.shape)
        high = np.broadcast_to(space.high if spec is None or spec.high is None else spec.high, space.shape)
        self.low = low.astype(np.float64).ravel()
        self.high = high.astype(np.float64).ravel()
        # Actions with finite bounds are scaled into [-1, 1]; everything else goes through mu-law.
        self.bounded = is_action & np.isfinite(self.low) & np.isfinite(self.high) & (self.high > self.low)
        self.is_action = is_action

    def _to_unit(self, x: np.ndarray, vocab: Vocab) -> np.ndarray:
        span = np.where(self.bounded, self.high - self.low, 1.0)
        scaled = 2.0 * (x - np.where(self.bounded, self.low, 0.0)) / span - 1.0
        mulaw = np.sign(x) * np.log1p(np.abs(x) * vocab.mu) / math.log1p(vocab.M * vocab.mu)
        return np.clip(np.where(self.bounded, scaled, mulaw), -1.0, 1.0)

    def _from_unit(self, y: np.ndarray, vocab: Vocab) -> np.ndarray:
        low = np.where(self.bounded, self.low, 0.0)  # keeps inf out of the discarded branch
        scaled = low + (y + 1.0) / 2.0 * np.where(self.bounded, self.high - self.low, 0.0)
        mulaw = np.sign(y) * np.expm1(np.abs(y) * math.log1p(vocab.M * vocab.mu)) / vocab.mu
        return np.where(self.bounded, scaled, mulaw)

    def _rows(self, values) -> np.ndarray:
        """(N, n_tokens) float64 values; a Box of size 0 gives N rows of 0 tokens."""
        x = np.asarray(values, dtype=np.float64)
        return x.reshape(-1, self.n_tokens) if self.n_tokens else x.reshape(len(x), 0)

    def encode(self, values, vocab):
        x = self._rows(values)
        y = self._to_unit(np.nan_to_num(x), vocab)
        bins = np.floor((y + 1.0) / 2.0 * vocab.continuous_tokens).astype(np.int64)
        return np.clip(bins, 0, vocab.continuous_tokens - 1) + vocab.continuous_offset

    def decode(self, tokens, vocab):
        bins = np.clip(tokens - vocab.continuous_offset, 0, vocab.continuous_tokens - 1)
        y = (bins + 0.5) / vocab.continuous_tokens * 2.0 - 1.0
        # Clipped to the bounds: a Box with low == high is read by mu-law, whose bin centre is not the bound.
        x = np.clip(self._from_unit(y, vocab), self.low, self.high)
        if np.issubdtype(self.space.dtype, np.integer):  # a bin centre rounds to the nearest integer, not down
            x = np.rint(x)
        return x.astype(self.space.dtype).reshape((len(tokens),) + self.shape)

    def token_ranges(self, vocab):
        return [(vocab.continuous_offset, vocab.continuous_offset + vocab.continuous_tokens)] * self.n_tokens

    def check(self, values):
        x = self._rows(values)
        if not np.isfinite(x).all():
            row = int(np.argwhere(~np.isfinite(x))[0, 0])
            return f"{self.name} holds NaN or inf at step {row}"
        if self.is_action:
            tol = 1e-5 * np.maximum(1.0, np.abs(self.high - self.low))
            bad = np.isfinite(self.low) & (x < self.low - tol) | np.isfinite(self.high) & (x > self.high + tol)
            if bad.any():
                row = int(np.argwhere(bad)[0, 0])
                return f"{self.name} holds {x[row].tolist()} at step {row}, outside {self.space}"
        return None

    def describe(self):
        how = "scaled by bounds" if self.bounded.all() else "mu-law"
        return f"continuous x{self.n_tokens} ({how})"


class PatchField(Field):
    """A field embedded from its values, cut into C x P x P patches (one position each), not looked up as ids:
    its tokens are pads that the patches replace. ``patches`` gives them raw, ``low``..``high`` scales them to
    [-1, 1]; ``levels`` (one-hot values) and ``pool`` are an image's."""

    levels = 0
    pool = 1
    pool_mode = "mean"

    def patches(self, values) -> np.ndarray:
        """(N, n_patches, C, P, P) raw patches of a batch of N values."""
        raise NotImplementedError

    def encode(self, values, vocab):
        return np.full((batch_length(values), self.n_tokens), vocab.pad, dtype=np.int64)

    def check(self, values):
        x = np.asarray(values)
        if x.dtype.kind == "f" and not np.isfinite(x).all():
            return f"{self.name} holds NaN or inf"
        return None


class VectorField(PatchField):
    """A Box of values read as one position (JAT's way), not one token a value: the values, each scaled to
    [-1, 1] by its own ``low``..``high`` and zero-padded, are laid out as one C x P x P patch (C = ceil(size /
    P^2)) that the patch encoder embeds. A Meta-World observation of 39 numbers then takes 1 position instead
    of 39, and the model reads the numbers themselves instead of 1,024 bins of them. ``low``/``high`` are the
    override's (``fit_codec`` fits them per value from the data), else the Box's widest bounds; a value without a
    finite, non-empty range goes in as it is. Scaling per value matters: positions that vary by centimetres would
    otherwise reach the model as differences of 0.01."""

    kind = "vector"

    def __init__(self, path, space: spaces.Box, root, patch_size: int, spec: FieldSpec | None):
        super().__init__(path, space, root)
        self.size = int(np.prod(space.shape))
        if not self.size:
            raise UnsupportedSpaceError(f"{self.name}: a vector field needs at least one value, got {space}")
        self.patch_size = patch_size
        self.channels = -(-self.size // patch_size**2)
        self.rows = self.cols = self.n_tokens = self.n_patches = 1
        # the override's bounds (lists: one per value), else the Box's widest, alike for every value
        low = np.min(space.low) if spec is None or spec.low is None else spec.low
        high = np.max(space.high) if spec is None or spec.high is None else spec.high
        lows, highs = (np.broadcast_to(np.asarray(b, np.float64).reshape(-1), (self.size,)) for b in (low, high))
        ranged = np.isfinite(lows) & np.isfinite(highs) & (highs > lows)
        self.scaled = int(ranged.sum())
        lows, highs = np.where(ranged, lows, -1.0), np.where(ranged, highs, 1.0)  # the identity where unranged
        self.centre = ((lows + highs) / 2.0).astype(np.float32)
        self.half_span = ((highs - lows) / 2.0).astype(np.float32)
        self.low, self.high = -1.0, 1.0  # patches() scales each value, so normalize_patches is the identity

    def patches(self, values) -> np.ndarray:
        x = (np.asarray(values, dtype=np.float32).reshape(-1, self.size) - self.centre) / self.half_span
        P = self.patch_size
        x = np.pad(x, ((0, 0), (0, self.channels * P * P - self.size)))  # the padding reads as zero
        return x.reshape(len(x), 1, self.channels, P, P)

    def describe(self):
        return (f"vector of {self.size} values -> 1 patch ({self.channels}x{self.patch_size}x{self.patch_size}), "
                f"{self.scaled} of {self.size} scaled by their range")


class ImageField(PatchField):
    """A Box image cut into patch_size x patch_size patches after padding to a multiple."""

    kind = "image"

    def __init__(self, path, space: spaces.Box, root, patch_size: int, layout, spec: FieldSpec | None):
        super().__init__(path, space, root)
        self.channels, self.height, self.width, self.channels_first = layout
        self.max_patches = int(spec.max_patches) if spec is not None and spec.max_patches else DEFAULT_MAX_PATCHES
        if self.max_patches < 1:
            raise ValueError(f"{self.name}: max_patches must be a positive int, got {self.max_patches}")
        if spec is not None and spec.pool:
            self.pool = int(spec.pool)
            self.auto_pool = False
        else:
            self.pool = fitting_pool(self.height, self.width, patch_size, self.max_patches)
            self.auto_pool = self.pool > 1
        if self.pool < 1:
            raise ValueError(f"{self.name}: pool must be a positive int, got {self.pool}")
        self.pool_mode = (spec.pool_mode if spec is not None else None) or "mean"
        if self.pool_mode not in ("mean", "max"):
            raise ValueError(f"{self.name}: pool_mode must be 'mean' or 'max', got {self.pool_mode!r}")
        self.source_height, self.source_width = self.height, self.width
        self.height, self.width = -(-self.height // self.pool), -(-self.width // self.pool)
        self.patch_size = patch_size
        self.rows = -(-self.height // patch_size)
        self.cols = -(-self.width // patch_size)
        self.n_tokens = self.n_patches = self.rows * self.cols
        low = space.low if spec is None or spec.low is None else spec.low
        high = space.high if spec is None or spec.high is None else spec.high
        self.low = float(np.min(low))
        self.high = float(np.max(high))
        if not (np.isfinite(self.low) and np.isfinite(self.high) and self.high > self.low):
            # Unbounded float images: assume they are already roughly in [0, 1].
            self.low, self.high = 0.0, 1.0
        self.source_channels = self.channels
        if spec is not None and spec.one_hot:
            # Symbolic values (object ids, colours) are categories, not intensities: one
            # 0/1 channel per value, so no layer has to decode an id from a brightness.
            self.levels = int(self.high - self.low) + 1
            if self.levels > 64:
                raise UnsupportedSpaceError(
                    f"{self.name}: one_hot needs at most 64 values per channel, got {self.levels}")
            self.value_low = self.low
            self.channels *= self.levels
            self.low, self.high = 0.0, 1.0

    def patches(self, values) -> np.ndarray:
        """(N, n_patches, C, P, P) raw patches, row-major over the patch grid (one-hot
        expanded to C * levels channels of 0/1 when the field is read one-hot)."""
        x = np.asarray(values)
        n = x.shape[0]
        if x.ndim == 3:
            x = x[:, None]
        elif not self.channels_first:
            x = np.moveaxis(x, -1, 1)
        p = self.patch_size
        ph, pw = self.rows * p - self.height, self.cols * p - self.width
        if self.pool > 1 and self.levels:
            # Symbols pool as categories: one-hot first, so a block holds each value's share (mean)
            # or presence (max), never an average of ids. The padding reads as value_low, as unpooled.
            x = self._pooled(self._one_hot(x).astype(np.float32))
            x = np.pad(x, ((0, 0), (0, 0), (0, ph), (0, pw)))
            first = x.reshape(n, self.source_channels, self.levels, x.shape[2], x.shape[3])[:, :, 0]
            first[:, :, self.height:, :] = 1.0
            first[:, :, :, self.width:] = 1.0
        else:
            if self.pool > 1:
                x = self._pooled(x)
            if ph or pw:
                fill = self.value_low if self.levels else self.low
                x = np.pad(x, ((0, 0), (0, 0), (0, ph), (0, pw)), constant_values=fill)
            if self.levels:
                x = self._one_hot(x)
        x = x.reshape(n, self.channels, self.rows, p, self.cols, p)
        return x.transpose(0, 2, 4, 1, 3, 5).reshape(n, self.n_patches, self.channels, p, p)

    def _one_hot(self, x: np.ndarray) -> np.ndarray:
        """(N, C, H, W) values -> (N, C * levels, H, W) 0/1 uint8, channel c * levels + v for value v."""
        onehot = (x[:, :, None] - self.value_low) == np.arange(self.levels).reshape(1, 1, -1, 1, 1)
        return onehot.astype(np.uint8).reshape(x.shape[0], self.channels, x.shape[2], x.shape[3])

    def _pooled(self, x: np.ndarray) -> np.ndarray:
        """(N, C, H, W) -> (N, C, H/pool, W/pool) block means or maxima, in the input's dtype."""
        k = self.pool
        n, c = x.shape[:2]
        ph, pw = self.height * k - x.shape[2], self.width * k - x.shape[3]
        if ph or pw:
            x = np.pad(x, ((0, 0), (0, 0), (0, ph), (0, pw)), mode="edge")
        blocks = x.reshape(n, c, self.height, k, self.width, k)
        if self.pool_mode == "max":
            return blocks.max(axis=(3, 5))
        means = blocks.mean(axis=(3, 5), dtype=np.float32)
        return np.rint(means).astype(x.dtype) if x.dtype.kind in "iu" else means.astype(x.dtype)

    def describe(self):
        if self.levels:
            return (f"image {self.source_channels}x{self.height}x{self.width} -> {self.rows}x{self.cols} patches, "
                    f"values {self.value_low:g}..{self.value_low + self.levels - 1:g} one-hot")
        pooled = ""
        if self.pool > 1:
            pooled = f", {self.pool_mode}-pooled {self.pool}x{self.pool} to {self.height}x{self.width}"
            if self.auto_pool:
                pooled += f" (max_patches {self.max_patches})"
        return (f"image {self.channels}x{self.source_height}x{self.source_width}{pooled} -> {self.rows}x{self.cols} "
                f"patches, values {self.low:g}..{self.high:g}")


class TextField(Field):
    """A string, tokenised and cut or padded to a fixed budget of text tokens.

    As an action (a ``Text`` action space) the model writes it: each token is restricted to the text
    ids whose characters are all in the space's charset, or the pad id, which ends the string
    (:meth:`token_masks`); :meth:`decode` reads the tokens before the first pad and keeps the result
    within the charset and the length limits.
    """

    kind = "text"

    def __init__(self, path, space, root, budget: int, is_action: bool = False):
        super().__init__(path, space, root)
        self.n_tokens = budget
        self.is_action = is_action
        text = isinstance(space, spaces.Text)
        self.charset = space.character_set if text else None  # None: any character
        self.min_length = space.min_length if text else 0
        self.max_length = space.max_length if text else None
        self._masks: dict = {}

    def encode(self, values, vocab):
        tok = vocab.tokenizer
        out = np.full((len(values), self.n_tokens), tok.pad_id, dtype=np.int64)
        for i, s in enumerate(values):
            ids = tok.encode(as_str(s))[: self.n_tokens]
            out[i, : len(ids)] = ids
        return out

    def token_ranges(self, vocab):
        return [(0, vocab.text_tokens)] * self.n_tokens

    def token_masks(self, vocab):
        allowed = self._masks.get(id(vocab.tokenizer))
        if allowed is None:
            allowed = self._allowed_ids(vocab.tokenizer)
            self._masks[id(vocab.tokenizer)] = allowed
        return [allowed] * self.n_tokens

    def _allowed_ids(self, tok) -> np.ndarray:
        """(text ids,) bool: the pad id, and every id that decodes to characters of the charset."""
        allowed = np.zeros(tok.vocab_size, bool)
        allowed[tok.pad_id] = True
        # A byte-level piece of a multi-byte character decodes to U+FFFD alone. It is allowed when the
        # charset has such characters (for the built-in tokenizer, whose ids below 256 are bytes: only
        # the bytes of the charset's characters); bytes that join into no character of the charset
        # are dropped by decode().
        wide = set() if self.charset is None else {c for c in self.charset if ord(c) > 127}
        byte_level = isinstance(tok, WordByteTokenizer)
        if byte_level and len(wide) < 4096:  # a huge charset (all of unicode) allows every byte anyway
            wide_bytes = {b for c in wide for b in c.encode("utf-8")}
        else:
            byte_level = False
        for i in range(tok.vocab_size):
            if i in (tok.pad_id, getattr(tok, "eos_id", None)):
                continue
            if byte_level and 127 < i < 256:
                allowed[i] = i in wide_bytes
                continue
            text = tok.decode([i])
            allowed[i] = bool(text) and (self.charset is None or all(
                c in self.charset or (c == "\ufffd" and wide) for c in text))
        return allowed

    def decode(self, tokens, vocab):
        if not self.is_action:
            return super().decode(tokens, vocab)
        tok = vocab.tokenizer
        out = []
        for row in np.asarray(tokens):
            ends = np.flatnonzero(row == tok.pad_id)
            text = tok.decode(row[: ends[0]] if len(ends) else row)
            out.append(self.conform(text))
        return tuple(out)  # a batch of strings, as a Gymnasium vector env batches a Text space

    def conform(self, text: str) -> str:
        """``text`` within the space: characters outside the charset dropped, cut to max_length,
        and, if shorter than min_length, completed with the charset's smallest character."""
        if self.charset is not None:
            text = "".join(c for c in text if c in self.charset)
        if self.max_length is not None:
            text = text[: self.max_length]
        filler = min(self.charset) if self.charset else " "
        return text + filler * max(0, self.min_length - len(text))

    def describe(self):
        if self.is_action:
            return f"text ({self.n_tokens} tokens, generated{' within its charset' if self.charset else ''})"
        return f"text ({self.n_tokens} tokens)"


def as_str(value) -> str:
    """A string from str, bytes or a 0-d array of either (Minari stores Text as bytes)."""
    if isinstance(value, np.ndarray):
        value = value.item()
    if isinstance(value, bytes):
        return value.decode("utf-8")
    return str(value)


# ----------------------------------------------------------------------------- the codec


def _leaves(space: spaces.Space, path: tuple = ()):
    """(path, leaf space) pairs in a fixed order: Dict keys as the space orders them."""
    if isinstance(space, spaces.Dict):
        for key, child in space.spaces.items():
            yield from _leaves(child, path + (key,))
    elif isinstance(space, spaces.Tuple):
        for i, child in enumerate(space.spaces):
            yield from _leaves(child, path + (i,))
    else:
        yield path, space


def _get(value, path: tuple):
    for p in path:
        value = value[p]
    return value


def _make_field(path, space, root, vocab, patch_size, spec, is_action, text_budget):
    name = display_path(root, path)
    if spec is not None and spec.kind == "text" or spec is None and is_string_space(space):
        budget = (spec.tokens if spec is not None and spec.tokens else None) or text_budget.get(dotted(path))
        if budget is None:
            if not isinstance(space, spaces.Text):
                budget = DEFAULT_TEXT_TOKENS
            else:  # an action is written whole: room for its longest string (a token holds at least a character)
                budget = space.max_length if is_action else min(space.max_length, DEFAULT_TEXT_TOKENS)
        return TextField(path, space, root, budget, is_action)
    if isinstance(space, (spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary)):
        if spec is not None and spec.kind != "discrete":
            raise UnsupportedSpaceError(f"{name}: {space} can only be read as discrete values")
        return DiscreteField(path, space, root, vocab)
    if isinstance(space, spaces.Box):
        if spec is not None and spec.kind == "discrete":
            return DiscreteField(path, space, root, vocab, spec)
        if spec is not None and spec.kind == "vector":  # overrides reach observations only
            return VectorField(path, space, root, patch_size, spec)
        # Only an observation is a picture: an action Box of any shape is values to predict.
        layout = None if (is_action or spec is not None and spec.kind == "continuous") else _image_layout(space, spec)
        if layout is not None:
            return ImageField(path, space, root, patch_size, layout, spec)
        return ContinuousField(path, space, root, is_action, spec)
    raise UnsupportedSpaceError(
        f"{name}: {type(space).__name__} spaces are not supported ({space}). Supported: Discrete, "
        "MultiDiscrete, MultiBinary, Box, Text (or any space of strings), and Dict/Tuple of these. "
        "Wrap the env to map this field into one of those."
    )


def _build_fields(space, root, vocab, patch_size, overrides, is_action, text_budget):
    overrides = {k: FieldSpec.parse(v) for k, v in (overrides or {}).items()}
    fields = []
    for path, leaf in _leaves(space):
        spec = overrides.pop(dotted(path), None)
        field = _make_field(path, leaf, root, vocab, patch_size, spec, is_action, text_budget)
        if spec is not None and spec.once:
            if isinstance(field, PatchField) or is_action:
                raise UnsupportedSpaceError(f"{field.name}: only an observation field read as tokens can "
                                            "be read once per window (once=True)")
            field.once = True
        fields.append(field)
    if overrides:
        known = ", ".join(repr(dotted(f.path)) for f in fields)
        raise ValueError(f"field overrides name unknown fields {sorted(overrides)}; the fields are: {known}")
    return fields


class SpaceCodec:
    """Token layout and encoding of one task's observation and action spaces.

    Args:
        observation_space, action_space: the env's spaces.
        vocab: the shared vocabulary (text tokenizer, discrete and continuous ranges).
        patch_size: side of the square image patches.
        overrides: {dotted field path: FieldSpec | kind | dict} for observation fields (kept as
            ``overrides``: with the spaces, vocabulary and text budgets they rebuild the codec).
        text_budget: {dotted field path: tokens} for string fields (e.g. the longest mission
            in the dataset); defaults to ``DEFAULT_TEXT_TOKENS``. An action field's key is
            ``ACTION_TEXT`` + its dotted path (``"action:"`` for a Text action space itself); an
            action defaults to its space's ``max_length``.
        task_id: if given, every observation starts with this task's token (multi-task
            training: the model is told which task a timestep belongs to).
    """

    def __init__(self, observation_space, action_space, vocab: Vocab | None = None, patch_size: int = 4,
                 overrides: dict | None = None, text_budget: dict | None = None, task_id: int | None = None):
        self.vocab = vocab or Vocab()
        self.patch_size = patch_size
        self.task_id = task_id
        self.overrides = dict(overrides or {})
        self._task_token = None if task_id is None else self.vocab.task(task_id)
        self.observation_space = observation_space
        self.action_space = action_space
        text_budget = text_budget or {}
        action_budget = {k[len(ACTION_TEXT):]: v for k, v in text_budget.items() if k.startswith(ACTION_TEXT)}
        self.obs_fields = _build_fields(observation_space, "obs", self.vocab, patch_size, overrides, False, text_budget)
        self.action_fields = _build_fields(action_space, "action", self.vocab, patch_size, None, True, action_budget)
        if not sum(f.n_tokens for f in self.action_fields):  # nothing to predict, nothing to step the env with
            raise UnsupportedSpaceError(
                f"action: {action_space} holds no values (0 action tokens); an agent needs an action space "
                "with at least one Discrete, MultiDiscrete, MultiBinary or Box value")
        self.obs_tokens = sum(f.n_tokens for f in self.obs_fields) + int(task_id is not None)
        self.action_tokens = sum(f.n_tokens for f in self.action_fields)
        self.tokens_per_step = self.obs_tokens + 1 + self.action_tokens
        # Which observation tokens only a window's first timestep holds (fields read once per window).
        self.obs_once = np.concatenate([np.zeros(int(task_id is not None), bool)]
                                       + [np.full(f.n_tokens, f.once) for f in self.obs_fields])
        self.tokens_per_later_step = self.tokens_per_step - int(self.obs_once.sum())
        images = [f for f in self.obs_fields if isinstance(f, PatchField)]
        self.patches_per_step = sum(f.n_patches for f in images)
        self.image_channels = max((f.channels for f in images), default=0)
        # Per patch slot of a timestep: its scaling and its (row, col) in its image.
        self.patch_low = np.concatenate([np.full(f.n_patches, f.low) for f in images] or [np.zeros(0)])
        self.patch_high = np.concatenate([np.full(f.n_patches, f.high) for f in images] or [np.zeros(0)])
        rowcol = [np.stack(np.divmod(np.arange(f.n_patches), f.cols), -1) for f in images]
        self.patch_rowcol = np.concatenate(rowcol) if rowcol else np.zeros((0, 2), np.int64)
        # Which of a timestep's observation tokens are patches.
        is_patch = [np.zeros(int(task_id is not None), bool)]
        is_patch += [np.full(f.n_tokens, isinstance(f, PatchField)) for f in self.obs_fields]
        self.obs_is_patch = np.concatenate(is_patch) if is_patch else np.zeros(0, bool)
        self.action_ranges = np.array(
            [r for f in self.action_fields for r in f.token_ranges(self.vocab)], dtype=np.int64
        ).reshape(-1, 2)
        # Per action token: None, or which ids of its range are valid (a text action's charset).
        self.action_masks = [m for f in self.action_fields for m in f.token_masks(self.vocab)]

    # -- encoding ------------------------------------------------------------------------

    def encode_observations(self, obs, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Tokens (n, obs_tokens) int64 and raw patches (n, patches_per_step, C, P, P).

        ``obs`` is a batch of n observations as Gymnasium batches them (dicts of arrays,
        tuples of strings) or as Minari stores them.
        """
        tokens = [] if self._task_token is None else [np.full((n, 1), self._task_token, np.int64)]
        patches = []
        for f in self.obs_fields:
            values = _get(obs, f.path)
            tokens.append(f.encode(values, self.vocab))
            if isinstance(f, PatchField):
                p = f.patches(values)
                if p.shape[2] < self.image_channels:  # pad channels so all images stack
                    pad = self.image_channels - p.shape[2]
                    p = np.pad(p, ((0, 0), (0, 0), (0, pad), (0, 0), (0, 0)), constant_values=f.low)
                patches.append(p)
        tok = np.concatenate(tokens, axis=1) if tokens else np.zeros((n, 0), np.int64)
        P = self.patch_size
        pat = np.concatenate(patches, axis=1) if patches else np.zeros((n, 0, 0, P, P), np.uint8)
        return tok, pat

    def encode_actions(self, actions, n: int) -> np.ndarray:
        """Tokens (n, action_tokens) int64 for a batch of n actions."""
        return np.concatenate([f.encode(_get(actions, f.path), self.vocab) for f in self.action_fields], axis=1)

    def decode_actions(self, tokens: np.ndarray):
        """A batch of actions, structured like the action space (dicts/tuples of arrays)."""
        tokens = np.asarray(tokens)
        out, i = {}, 0
        for f in self.action_fields:
            out[f.path] = f.decode(tokens[:, i : i + f.n_tokens], self.vocab)
            i += f.n_tokens
        return _assemble(self.action_space, (), out)

    def normalize_patches(self, patches: np.ndarray) -> np.ndarray:
        """Raw patches (..., patches_per_step, C, P, P) -> float32 in [-1, 1]."""
        low = self.patch_low.reshape(-1, 1, 1, 1)
        span = (self.patch_high - self.patch_low).reshape(-1, 1, 1, 1)
        return ((patches.astype(np.float32) - low) / span * 2.0 - 1.0).astype(np.float32)

    def check(self, observations, actions) -> str | None:
        """A message naming the first value outside its space, or None if all are valid."""
        for f in self.obs_fields:
            msg = f.check(_get(observations, f.path))
            if msg:
                return msg
        for f in self.action_fields:
            msg = f.check(_get(actions, f.path))
            if msg:
                return msg
        return None

    # -- description ---------------------------------------------------------------------

    def layout(self) -> list[dict]:
        """One row per field: name, space, how it is read, tokens per timestep (a field read once per window
        takes its tokens in the window's first timestep only)."""
        rows = [] if self.task_id is None else [
            {"field": "task", "space": "", "read as": f"task id {self.task_id}", "tokens": 1}]
        rows += [{"field": f.name, "space": str(f.space),
                  "read as": f.describe() + (", once per window" if f.once else ""), "tokens": f.n_tokens}
                 for f in self.obs_fields]
        rows.append({"field": "separator", "space": "", "read as": "separator", "tokens": 1})
        rows += [{"field": f.name, "space": str(f.space), "read as": f.describe(), "tokens": f.n_tokens}
                 for f in self.action_fields]
        return rows

    def window_tokens(self, steps: int) -> int:
        """Tokens of a window of ``steps`` consecutive timesteps: the first whole, each later one without
        the fields read once per window."""
        return 0 if steps <= 0 else self.tokens_per_step + (steps - 1) * self.tokens_per_later_step

    def timesteps_in(self, context_len: int) -> int:
        """How many consecutive timesteps fit in a context of ``context_len`` tokens (one window)."""
        if context_len < self.tokens_per_step:
            return 0
        return 1 + (context_len - self.tokens_per_step) // self.tokens_per_later_step


def _assemble(space, path, leaves):
    if isinstance(space, spaces.Dict):
        return {k: _assemble(s, path + (k,), leaves) for k, s in space.spaces.items()}
    if isinstance(space, spaces.Tuple):
        return tuple(_assemble(s, path + (i,), leaves) for i, s in enumerate(space.spaces))
    return leaves[path]


def tokens_per_space(space: spaces.Space, patch_size: int = 4, overrides: dict | None = None,
                     text_budget: dict | None = None, vocab: Vocab | None = None, steps: int = 1) -> int:
    """Tokens that ``steps`` consecutive values of ``space`` take in one window (Dict/Tuple: the sum of the
    fields; a field read once per window, ``FieldSpec.once``, counts once).

    >>> tokens_per_space(spaces.Dict(direction=spaces.Discrete(4),
    ...     image=spaces.Box(0, 255, (7, 7, 3), np.uint8)))
    5
    >>> mission = spaces.Dict(direction=spaces.Discrete(4), mission=spaces.Text(20))
    >>> tokens_per_space(mission, overrides={"mission": {"kind": "text", "tokens": 6, "once": True}}, steps=3)
    9
    """
    vocab = vocab or Vocab()
    fields = _build_fields(space, "space", vocab, patch_size, overrides, False, text_budget or {})
    return sum(f.n_tokens * (1 if f.once else steps) for f in fields) if steps > 0 else 0


def space_mismatch(expected: spaces.Space, actual: spaces.Space, root: str, path: tuple = ()) -> str | None:
    """Where two spaces disagree, as a message naming the field; None if they match.

    Strings match strings (a dataset stores minigrid's MissionSpace as Text), Boxes match on
    shape, discrete spaces on their sizes.
    """
    name = display_path(root, path)
    if is_string_space(expected) and is_string_space(actual):
        return None
    if isinstance(expected, spaces.Dict) and isinstance(actual, spaces.Dict):
        if set(expected.spaces) != set(actual.spaces):  # Minari sorts keys on load: order is not compared
            return f"{name}: keys {sorted(expected.spaces)} vs {sorted(actual.spaces)}"
        for k in expected.spaces:
            msg = space_mismatch(expected[k], actual[k], root, path + (k,))
            if msg:
                return msg
        return None
    if isinstance(expected, spaces.Tuple) and isinstance(actual, spaces.Tuple):
        if len(expected.spaces) != len(actual.spaces):
            return f"{name}: {len(expected.spaces)} items vs {len(actual.spaces)}"
        for i, (a, b) in enumerate(zip(expected.spaces, actual.spaces)):
            msg = space_mismatch(a, b, root, path + (i,))
            if msg:
                return msg
        return None
    if type(expected) is not type(actual):
        return f"{name}: {expected} vs {actual}"
    if isinstance(expected, spaces.Box) and expected.shape != actual.shape:
        return f"{name}: shape {expected.shape} vs {actual.shape}"
    if isinstance(expected, spaces.Discrete) and (expected.n, expected.start) != (actual.n, actual.start):
        return f"{name}: {expected} vs {actual}"
    if isinstance(expected, (spaces.MultiDiscrete, spaces.MultiBinary)) and expected != actual:
        return f"{name}: {expected} vs {actual}"
    return None
