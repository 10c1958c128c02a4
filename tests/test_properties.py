"""Property-based tests of SpaceCodec: random nested spaces (Dict/Tuple of Box of any shape,
bounds and dtype, Discrete with any start, MultiDiscrete, MultiBinary, Text).

1. Observations: a batch of samples encodes to (n, obs_tokens) ids, each inside the vocabulary
   and its field's range, and ``tokens_per_space`` counts exactly the tokens produced.
2. Actions: decode(encode(a)) == a for discrete kinds, within one bin for continuous ones, and
   every decoded action belongs to the action space.
3. Refused spaces raise UnsupportedSpaceError naming the field's path, never another error.

Every test is derandomized (the same examples on every run) so CI stays deterministic.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from gymnasium import spaces
from gymnasium.vector.utils import concatenate, create_empty_array
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gato.codec import (
    DEFAULT_MAX_PATCHES,
    ContinuousField,
    DiscreteField,
    FieldSpec,
    ImageField,
    SpaceCodec,
    TextField,
    UnsupportedSpaceError,
    display_path,
    fitting_pool,
    tokens_per_space,
)
from gato.vocab import Vocab

VOCAB = Vocab()
FLOAT_DTYPES = [np.float16, np.float32, np.float64]
INT_DTYPES = [np.int8, np.int16, np.int32, np.int64, np.uint8]
SETTINGS = dict(deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])

# --------------------------------------------------------------------------- strategies


def shapes(max_ndim: int = 3, max_side: int = 9):
    """Shapes of 0..max_ndim dims, sides 0..max_side."""
    return st.lists(st.integers(0, max_side), max_size=max_ndim).map(tuple)


# What the codec reads as an image: any 3-D Box, or a 2-D one of sides >= 8.
IMAGE_SHAPES = st.one_of(st.lists(st.integers(1, 13), min_size=3, max_size=3).map(tuple),
                         st.lists(st.integers(8, 13), min_size=2, max_size=2).map(tuple))


@st.composite
def boxes(draw, shape=None):
    """A Box of any dtype, with finite, infinite, half-infinite or degenerate (low == high) bounds;
    ``shape`` draws its shape (default: any of 0..3 dims)."""
    shape = draw(shapes() if shape is None else shape)
    dtype = draw(st.sampled_from(FLOAT_DTYPES + INT_DTYPES))
    kind = draw(st.sampled_from(["finite", "finite", "infinite", "low only", "high only", "degenerate"]))
    if dtype in INT_DTYPES:
        lo, hi = max(np.iinfo(dtype).min, -300), min(np.iinfo(dtype).max, 300)
        a = draw(st.integers(lo, hi - 1))
        b = draw(st.integers(a + 1, hi))
    else:  # float16-representable bounds, so no dtype changes them by casting
        a = np.float16(draw(st.floats(-3e4, 3e4, width=16)))
        b = max(np.float16(a + draw(st.floats(0.0, 3e4, width=16))), np.nextafter(a, np.float16(np.inf)))
        a, b = float(a), float(b)
    if kind == "degenerate":
        b = a
    low = -np.inf if kind in ("infinite", "high only") else a
    high = np.inf if kind in ("infinite", "low only") else b
    if dtype == np.uint8:  # a signed integer Box turns inf into its dtype's limits; an unsigned one refuses it
        low, high = max(low, 0), min(high, 255)
    return spaces.Box(low, high, shape, dtype)


def discretes():
    """Discrete(n, start) with any start; n up to the vocabulary's discrete tokens."""
    return st.builds(spaces.Discrete, st.integers(1, VOCAB.discrete_tokens), start=st.integers(-2**60, 2**60))


@st.composite
def multi_discretes(draw):
    """MultiDiscrete of a 1-D or 2-D nvec (possibly empty), each entry with its own start."""
    shape = tuple(draw(st.lists(st.integers(0, 4), min_size=1, max_size=2)))
    size = int(np.prod(shape))
    nvec = np.array(draw(st.lists(st.integers(1, VOCAB.discrete_tokens), min_size=size, max_size=size)), np.int64)
    start = np.array(draw(st.lists(st.integers(-2**40, 2**40), min_size=size, max_size=size)), np.int64)
    return spaces.MultiDiscrete(nvec.reshape(shape), start=start.reshape(shape))


def multi_binaries():
    """MultiBinary(n) or MultiBinary(shape)."""
    return st.one_of(st.integers(1, 9), st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple)).map(
        spaces.MultiBinary)


@st.composite
def texts(draw):
    """Text of any length bounds over a random charset (any code point but surrogates)."""
    max_length = draw(st.integers(1, 40))
    charset = draw(st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=12))
    return spaces.Text(max_length, min_length=draw(st.integers(0, max_length)), charset=charset)


KEYS = st.text("abcxyz_", min_size=1, max_size=3)


def nested(leaf, depth: int):
    """``leaf`` or a Dict/Tuple nest of leaves (empty ones too), up to ``depth`` containers deep."""
    if depth == 0:
        return leaf
    child = nested(leaf, depth - 1)
    return st.one_of(
        leaf,
        st.lists(child, max_size=3).map(spaces.Tuple),
        st.dictionaries(KEYS, child, max_size=3).map(spaces.Dict),
    )


# Boxes are listed more than once: they have the most cases (shapes, dtypes, bounds, images).
OBS_LEAVES = st.one_of(boxes(), boxes(IMAGE_SHAPES), discretes(), multi_discretes(), multi_binaries(), texts())
# Box actions of any shape are values, even one shaped like an image; Text actions are written by the model.
ACTION_BOXES = boxes(shapes(max_ndim=2, max_side=7))
ACTION_LEAVES = st.one_of(ACTION_BOXES, ACTION_BOXES, ACTION_BOXES, boxes(IMAGE_SHAPES), discretes(),
                          multi_discretes(), multi_binaries(), texts())

# --------------------------------------------------------------------------- helpers


def batch(space: spaces.Space, n: int, seed: int):
    """n seeded samples, batched as a Gymnasium vector env batches them."""
    space.seed(seed)
    return concatenate(space, [space.sample() for _ in range(n)], create_empty_array(space, n))


def get(value, path: tuple):
    for p in path:
        value = value[p]
    return value


def field_ranges(field, vocab: Vocab) -> list[tuple[int, int]]:
    """[lo, hi) id range of each of a field's tokens; text and image fields have no token_ranges."""
    if isinstance(field, TextField):
        return [(0, vocab.text_tokens)] * field.n_tokens
    if isinstance(field, ImageField):  # a patch position holds pad; the model embeds its pixels
        return [(vocab.pad, vocab.pad + 1)] * field.n_tokens
    return field.token_ranges(vocab)


# --------------------------------------------------------------------------- 1. observations


@settings(max_examples=300, **SETTINGS)
@given(space=nested(OBS_LEAVES, depth=3), n=st.integers(1, 4), seed=st.integers(0, 2**32 - 1))
def test_observation_tokens_are_in_range_and_counted(space, n, seed):
    codec = SpaceCodec(space, spaces.Discrete(2), VOCAB)
    obs = batch(space, n, seed)
    tokens, patches = codec.encode_observations(obs, n)
    assert tokens.dtype == np.int64 and tokens.shape == (n, codec.obs_tokens)
    assert tokens_per_space(space) == codec.obs_tokens == sum(f.n_tokens for f in codec.obs_fields)
    assert ((tokens >= 0) & (tokens < VOCAB.size)).all(), "a token outside the vocabulary"
    # image fields take one position per patch, and the raw patches come alongside
    assert codec.obs_is_patch.sum() == codec.patches_per_step
    assert patches.shape[:2] == (n, codec.patches_per_step)
    i = 0
    for f in codec.obs_fields:
        ranges = np.array(field_ranges(f, VOCAB), dtype=np.int64).reshape(-1, 2)
        got = tokens[:, i: i + f.n_tokens]
        assert ((got >= ranges[:, 0]) & (got < ranges[:, 1])).all(), f"{f.name} left its range"
        assert (codec.obs_is_patch[i: i + f.n_tokens] == isinstance(f, ImageField)).all()
        values = get(obs, f.path)
        if isinstance(f, DiscreteField):  # valid values map one to one onto discrete ids
            local = np.asarray(values, np.int64).reshape(n, -1) - f.start
            np.testing.assert_array_equal(got - VOCAB.discrete_offset, local)
        if isinstance(f, TextField):  # lossless: a string that fits its budget decodes back
            for row, s in zip(got, values):
                if len(VOCAB.tokenizer.encode(s)) <= f.n_tokens:
                    assert VOCAB.tokenizer.decode(row) == s
        i += f.n_tokens
    actions = np.zeros(n, np.int64)
    assert codec.check(obs, actions) is None, "a sample of the space was reported as invalid"


@settings(max_examples=150, **SETTINGS)
@given(space=nested(OBS_LEAVES, depth=3), k=st.integers(1, 5), seed=st.integers(0, 2**32 - 1))
def test_fields_read_once_per_window_are_counted_and_laid_out_once(space, k, seed):
    """Every text field read once per window: ``tokens_per_space``, ``window_tokens`` and ``StepLayout.run`` agree
    on the tokens of k timesteps, and a later timestep is the whole one without exactly those fields."""
    from gato.batch import StepLayout
    from gato.codec import dotted

    probe = SpaceCodec(space, spaces.Discrete(2), VOCAB)
    once = {dotted(f.path): {"kind": "text", "once": True} for f in probe.obs_fields if isinstance(f, TextField)}
    codec = SpaceCodec(space, spaces.Discrete(2), VOCAB, overrides=once)
    n_once = sum(f.n_tokens for f in codec.obs_fields if f.once)
    assert codec.tokens_per_later_step == codec.tokens_per_step - n_once
    per_step = 1 + codec.action_tokens  # separator and action
    assert codec.window_tokens(k) == tokens_per_space(space, overrides=once, steps=k) + k * per_step
    assert codec.timesteps_in(codec.window_tokens(k)) == k
    obs = batch(space, k, seed)
    tokens, patches = codec.encode_observations(obs, k)
    rows = np.concatenate([tokens, np.full((k, 1), VOCAB.separator), codec.encode_actions(np.zeros(k, np.int64), k)],
                          axis=1)
    run = StepLayout.of(codec).run(rows, patches.astype(np.float32), None)
    assert len(run) == codec.window_tokens(k)
    kept = np.r_[np.ones(codec.tokens_per_step, bool), np.tile(np.r_[~codec.obs_once, np.ones(per_step, bool)], k - 1)]
    np.testing.assert_array_equal(run.tokens, rows.reshape(-1)[kept])
    np.testing.assert_array_equal(run.in_step_pos, np.tile(np.arange(codec.tokens_per_step), k)[kept])
    assert run.is_patch.sum() == k * codec.patches_per_step  # images are never read once


# --------------------------------------------------------------------------- 2. actions


def continuous_gap_ok(f: ContinuousField, a: np.ndarray, d: np.ndarray, vocab: Vocab) -> np.ndarray:
    """Whether decoded ``d`` is within one bin of ``a``, per element.

    ``encode`` maps x to y = f._to_unit(x) in [-1, 1] (scaled by finite bounds, mu-law
    otherwise, clipped at +-1) and cuts [-1, 1] into continuous_tokens uniform bins of width
    2/ct; ``decode`` returns the bin's centre through f._from_unit. So in y the round trip moves
    at most half a bin, 1/ct, wherever the bins are uniform, plus the rounding of the centre
    to the space's dtype: one float step of x (measured in y around d), or for an integer Box
    the rounding to the nearest integer (0.5 in x).
    """
    a64 = a.astype(np.float64).reshape(len(a), -1)
    d64 = d.astype(np.float64).reshape(len(d), -1)
    if np.issubdtype(f.space.dtype, np.integer):
        step = np.full_like(d64, 0.5)
    else:
        step = np.spacing(np.abs(d.astype(f.space.dtype))).astype(np.float64).reshape(d64.shape)
    unit = f._to_unit(d64, vocab)
    slack = np.maximum(np.abs(f._to_unit(d64 + step, vocab) - unit), np.abs(unit - f._to_unit(d64 - step, vocab)))
    return np.abs(f._to_unit(a64, vocab) - unit) <= 1.0 / vocab.continuous_tokens + slack + 1e-12


def sample_at(space: spaces.Space, values, i: int):
    """Item i of a batch of one leaf's values, as the leaf space holds it."""
    item = values[i]
    return np.asarray(item, dtype=space.dtype) if isinstance(space, spaces.Box) else item


def action_tokens(space: spaces.Space) -> int:
    """Tokens an action of ``space`` takes, counted independently of the codec: one per value of a Box
    (whatever its shape) or discrete space, a Text's max_length (its default budget), the sum over a nest."""
    if isinstance(space, spaces.Dict):
        return sum(action_tokens(s) for s in space.spaces.values())
    if isinstance(space, spaces.Tuple):
        return sum(action_tokens(s) for s in space.spaces)
    if isinstance(space, spaces.Discrete):
        return 1
    if isinstance(space, spaces.Text):
        return space.max_length
    return int(np.prod(space.shape))


@settings(max_examples=400, **SETTINGS)
@given(space=nested(ACTION_LEAVES, depth=2), n=st.integers(1, 5), seed=st.integers(0, 2**32 - 1))
def test_action_round_trip(space, n, seed):
    if action_tokens(space) == 0:  # nothing to act with (an empty nest, a Box of size 0): refused up front
        assert_refused_naming(lambda: SpaceCodec(spaces.Discrete(2), space, VOCAB), "action")
        return
    codec = SpaceCodec(spaces.Discrete(2), space, VOCAB)
    actions = batch(space, n, seed)
    tokens = codec.encode_actions(actions, n)
    assert tokens.shape == (n, codec.action_tokens) == (n, action_tokens(space))
    lo, hi = codec.action_ranges[:, 0], codec.action_ranges[:, 1]
    assert ((tokens >= lo) & (tokens < hi)).all(), "an action token left its field's range"
    assert len(codec.action_masks) == codec.action_tokens
    decoded = codec.decode_actions(tokens)
    start = 0
    for f in codec.action_fields:
        a, d = np.asarray(get(actions, f.path)), np.asarray(get(decoded, f.path))
        field_tokens, start = tokens[:, start : start + f.n_tokens], start + f.n_tokens
        assert d.shape == a.shape, f.name
        if isinstance(f, TextField):
            check_text_action(f, a, d, field_tokens, codec.action_masks[start - f.n_tokens : start])
        elif isinstance(f, DiscreteField):
            np.testing.assert_array_equal(d, a, err_msg=f.name)
        else:
            assert d.dtype == f.space.dtype, f.name
            ok = continuous_gap_ok(f, a, d, VOCAB)
            assert ok.all(), f"{f.name}: {a.reshape(n, -1)[~ok]} decoded as {d.reshape(n, -1)[~ok]}"
            bin_x = (f.high - f.low) / VOCAB.continuous_tokens  # a bin's width in x (bounded fields)
            fine = np.broadcast_to(f.bounded & (bin_x < 1.0), (n, f.n_tokens))
            if np.issubdtype(f.space.dtype, np.integer):  # bins narrower than 1: the integer comes back
                np.testing.assert_array_equal(d.reshape(n, -1)[fine], a.reshape(n, -1)[fine], err_msg=f.name)
        for i in range(n):  # every decoded action is one the env accepts
            assert f.space.contains(sample_at(f.space, d, i)), f"{f.name}: {d[i]} is outside {f.space}"


def check_text_action(f, a, d, tokens, masks):
    """A written Text action: its data's tokens are all allowed by the generation masks, it decodes to the
    same string when that string's tokens fit the budget, and always to a string of the space."""
    for i in range(len(a)):
        ids = VOCAB.tokenizer.encode(str(a[i]))
        for j, token in enumerate(tokens[i]):
            assert masks[j][token - 0], f"{f.name}: token {token} of {a[i]!r} is masked out"
        if len(ids) <= f.n_tokens:
            assert d[i] == a[i], f"{f.name}: {a[i]!r} decoded as {d[i]!r}"
        assert f.space.contains(str(d[i])), f"{f.name}: {d[i]!r} is outside {f.space}"


@settings(max_examples=300, **SETTINGS)
@given(height=st.integers(1, 300), width=st.integers(1, 300), patch=st.integers(1, 16), bound=st.integers(1, 100))
def test_image_pool_is_the_smallest_that_fits(height, width, patch, bound):
    k = fitting_pool(height, width, patch, bound)
    field = ImageField(("image",), spaces.Box(0, 255, (height, width), np.uint8), "obs", patch, (1, height, width,
                                                                                                 False), None)

    def patches(pool):
        return math.ceil(math.ceil(height / pool) / patch) * math.ceil(math.ceil(width / pool) / patch)

    assert patches(k) <= bound and (k == 1 or patches(k - 1) > bound)
    if bound == DEFAULT_MAX_PATCHES:
        assert field.pool == k and field.n_patches == patches(k)
    x = np.random.default_rng(0).integers(0, 256, (2, height, width), dtype=np.uint8)
    spec = FieldSpec("image", max_patches=bound)
    bounded = ImageField(("image",), spaces.Box(0, 255, (height, width), np.uint8), "obs", patch,
                         (1, height, width, False), spec)
    assert bounded.patches(x).shape == (2, bounded.n_patches, 1, patch, patch) and bounded.n_patches <= bound


# --------------------------------------------------------------------------- 3. refused spaces


class NotASpace(spaces.Space):
    """A custom space of integers: neither a known kind nor a space of strings."""

    def sample(self, mask=None, probability=None):
        return 3


GRAPH = spaces.Graph(node_space=spaces.Box(0, 1, (2,), np.float32), edge_space=None)
REFUSED_ANYWHERE = st.one_of(
    st.just(GRAPH),
    st.builds(spaces.Sequence, st.one_of(discretes(), texts())),
    st.builds(lambda s: spaces.OneOf((s, spaces.Discrete(2))), discretes()),
    st.builds(NotASpace),
    st.integers(VOCAB.discrete_tokens + 1, 10**6).map(spaces.Discrete),
    st.integers(VOCAB.discrete_tokens + 1, 10**6).map(lambda n: spaces.MultiDiscrete([2, n])),
)
REFUSED_AS_ACTION = REFUSED_ANYWHERE  # an image-shaped Box or a Text is a valid action (values, written text)


@st.composite
def nest_around(draw, refused, accepted):
    """(space, path): ``refused`` placed at ``path`` in a random Dict/Tuple nest of accepted leaves."""
    path = tuple(draw(st.lists(st.one_of(KEYS, st.integers(0, 2)), max_size=3)))
    space = draw(refused)
    for step in reversed(path):
        siblings = draw(st.lists(accepted, max_size=2))
        if isinstance(step, str):
            items = {f"{k}{j}": s for j, (k, s) in enumerate(zip(draw(st.lists(KEYS, min_size=2, max_size=2)),
                                                                 siblings))}
            items.pop(step, None)
            items[step] = space
            space = spaces.Dict(items)
        else:
            items = siblings + [draw(accepted) for _ in range(step - len(siblings))]
            items.insert(step, space)
            space = spaces.Tuple(items)
    return space, path


def assert_refused_naming(build, name: str):
    with pytest.raises(UnsupportedSpaceError) as info:  # any other exception type fails the test
        build()
    assert str(info.value).startswith(name + ":"), f"{info.value!r} does not start with {name}"


@settings(max_examples=150, **SETTINGS)
@given(case=nest_around(REFUSED_ANYWHERE, OBS_LEAVES))
def test_refused_observation_space_names_the_field(case):
    space, path = case
    assert_refused_naming(lambda: SpaceCodec(space, spaces.Discrete(2), VOCAB), display_path("obs", path))
    assert_refused_naming(lambda: tokens_per_space(space), display_path("space", path))


@settings(max_examples=150, **SETTINGS)
@given(case=nest_around(REFUSED_AS_ACTION, ACTION_LEAVES))
def test_refused_action_space_names_the_field(case):
    space, path = case
    assert_refused_naming(lambda: SpaceCodec(spaces.Discrete(2), space, VOCAB), display_path("action", path))


@settings(max_examples=100, **SETTINGS)
@given(height=st.integers(1, 70), width=st.integers(1, 70), levels=st.integers(2, 6), bound=st.integers(1, 20),
       seed=st.integers(0, 2**32 - 1))
def test_pooled_symbols_are_shares_of_each_value(height, width, levels, bound, seed):
    """A symbolic image read one-hot and pooled holds, per pooled pixel, the share of each value in its block
    (never an average of ids); the padding reads as the lowest value, as an unpooled image's does."""
    space = spaces.Box(0, 255, (height, width, 2), np.uint8)
    spec = FieldSpec("image", low=0, high=levels - 1, one_hot=True, max_patches=bound)
    field = ImageField(("grid",), space, "obs", 4, (2, height, width, False), spec)
    x = np.random.default_rng(seed).integers(0, levels, (1, height, width, 2), dtype=np.uint8)
    p, k = field.patches(x), field.pool
    assert p.shape == (1, field.n_patches, 2 * levels, 4, 4) and field.n_patches <= bound
    image = p.reshape(field.rows, field.cols, 2, levels, 4, 4).transpose(2, 3, 0, 4, 1, 5)
    image = image.reshape(2, levels, field.rows * 4, field.cols * 4)
    np.testing.assert_allclose(image.sum(axis=1), 1.0, atol=1e-6)  # every pixel, padding too, is one distribution
    assert (image[:, 0, field.height:, :] == 1).all() and (image[:, 0, :, field.width:] == 1).all()
    grid = np.pad(np.moveaxis(x[0], -1, 0), ((0, 0), (0, field.height * k - height), (0, field.width * k - width)),
                  mode="edge")
    blocks = grid.reshape(2, field.height, k, field.width, k)
    for v in range(levels):
        share = (blocks == v).mean(axis=(2, 4))
        np.testing.assert_allclose(image[:, v, : field.height, : field.width], share, atol=1e-6)
