"""SpaceCodec: one test per space kind (token count and id range, exact or one-bin action
round trips), the text tokenizer, field overrides and unsupported spaces."""

from __future__ import annotations

import math
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces

from gato.codec import FieldSpec, SpaceCodec, UnsupportedSpaceError, tokens_per_space
from gato.text_tokenizer import WordByteTokenizer
from gato.vocab import Vocab

N = 16  # samples per batch

VOCAB = Vocab()


def babyai_env(level: str = "GoToLocal"):
    # "minigrid:" makes gymnasium import minigrid (which registers BabyAI) exactly once.
    return gym.make(f"minigrid:BabyAI-{level}-v0")


def sample_batch(space: spaces.Space, n: int, seed: int = 0):
    """n samples of ``space`` stacked the way Gymnasium vector envs batch them."""
    space.seed(seed)
    return stack(space, [space.sample() for _ in range(n)])


def stack(space, samples):
    if isinstance(space, spaces.Dict):
        return {k: stack(s, [x[k] for x in samples]) for k, s in space.spaces.items()}
    if isinstance(space, spaces.Tuple):
        return tuple(stack(s, [x[i] for x in samples]) for i, s in enumerate(space.spaces))
    if isinstance(samples[0], str):
        return list(samples)
    return np.stack([np.asarray(x) for x in samples])


def equal_nested(a, b):
    if isinstance(a, dict):
        assert set(a) == set(b)
        for k in a:
            equal_nested(a[k], b[k])
    elif isinstance(a, tuple):
        assert isinstance(b, tuple) and len(a) == len(b)
        for x, y in zip(a, b):
            equal_nested(x, y)
    else:
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def encode_obs(space, n=N, seed=0, **kwargs):
    codec = SpaceCodec(space, spaces.Discrete(2), VOCAB, **kwargs)
    obs = sample_batch(space, n, seed)
    tokens, patches = codec.encode_observations(obs, n)
    assert tokens.dtype == np.int64
    assert tokens.shape == (n, codec.obs_tokens)
    assert codec.obs_tokens == tokens_per_space(space, patch_size=kwargs.get("patch_size", 4),
                                                overrides=kwargs.get("overrides"),
                                                text_budget=kwargs.get("text_budget"))
    return codec, obs, tokens, patches


def action_round_trip(space, n=N, seed=0):
    codec = SpaceCodec(spaces.Box(-1, 1, (2,), np.float32), space, VOCAB)
    actions = sample_batch(space, n, seed)
    tokens = codec.encode_actions(actions, n)
    assert tokens.shape == (n, codec.action_tokens) == (n, tokens_per_space(space))
    lo, hi = codec.action_ranges[:, 0], codec.action_ranges[:, 1]
    assert ((tokens >= lo) & (tokens < hi)).all(), "an action token left its field's range"
    return codec, actions, tokens, codec.decode_actions(tokens)


def in_range(tokens, lo, hi):
    return bool(((tokens >= lo) & (tokens < hi)).all())


# --------------------------------------------------------------------------- discrete kinds


def test_discrete_with_nonzero_start():
    space = spaces.Discrete(5, start=-2)
    _, obs, tokens, _ = encode_obs(space)
    assert tokens.shape[1] == 1
    off = VOCAB.discrete_offset
    np.testing.assert_array_equal(tokens[:, 0], obs + 2 + off)  # value - start
    assert in_range(tokens, off, off + 5)

    codec, actions, tokens, decoded = action_round_trip(space)
    np.testing.assert_array_equal(decoded, actions)
    assert all(space.contains(a) for a in decoded)
    # every value of the space, not only the sampled ones
    every = np.arange(-2, 3)
    np.testing.assert_array_equal(codec.decode_actions(codec.encode_actions(every, 5)), every)


def test_multidiscrete():
    space = spaces.MultiDiscrete([[3, 4], [5, 2]], start=[[1, -1], [0, 10]])
    _, obs, tokens, _ = encode_obs(space)
    assert tokens.shape[1] == 4
    off = VOCAB.discrete_offset
    local = tokens - off
    np.testing.assert_array_equal(local, (obs - space.start).reshape(N, 4))
    assert (local >= 0).all() and (local < space.nvec.reshape(1, 4)).all()

    codec, actions, tokens, decoded = action_round_trip(space)
    assert decoded.shape == (N, 2, 2)
    np.testing.assert_array_equal(decoded, actions)
    assert all(space.contains(a) for a in decoded)
    np.testing.assert_array_equal(codec.action_ranges[:, 1] - codec.action_ranges[:, 0], [3, 4, 5, 2])


def test_multibinary():
    space = spaces.MultiBinary((2, 3))
    _, obs, tokens, _ = encode_obs(space)
    assert tokens.shape[1] == 6
    off = VOCAB.discrete_offset
    np.testing.assert_array_equal(tokens - off, obs.reshape(N, 6))
    assert in_range(tokens, off, off + 2)

    _, actions, _, decoded = action_round_trip(space)
    assert decoded.shape == (N, 2, 3)
    np.testing.assert_array_equal(decoded, actions)


# --------------------------------------------------------------------------- continuous


def mulaw(x, mu=100.0, M=256.0):
    return np.sign(x) * np.log1p(np.abs(x) * mu) / math.log1p(M * mu)


def test_box_vector_observation_mu_law():
    space = spaces.Box(-np.inf, np.inf, (5,), np.float32)
    codec, obs, tokens, patches = encode_obs(space)
    assert tokens.shape[1] == 5 and patches.shape[1] == 0
    c0, ct = VOCAB.continuous_offset, VOCAB.continuous_tokens
    assert in_range(tokens, c0, c0 + ct)
    # Independent mu-law + uniform binning (Gato: mu=100, M=256, 1024 bins).
    x = np.array([[-1000.0, -3.0, 0.0, 0.01, 250.0]], np.float32)
    expected = np.clip(np.floor((np.clip(mulaw(x.astype(np.float64)), -1, 1) + 1) / 2 * ct), 0, ct - 1) + c0
    got, _ = codec.encode_observations(x, 1)
    np.testing.assert_array_equal(got, expected.astype(np.int64))
    assert got[0, 2] == c0 + ct // 2  # zero sits in the middle bin
    # monotone: a larger value never gets a lower bin
    line = np.linspace(-300, 300, 1001, dtype=np.float32).reshape(-1, 1).repeat(5, 1)
    tok, _ = codec.encode_observations(line, len(line))
    assert (np.diff(tok[:, 0]) >= 0).all()


def test_a_vector_override_reads_a_box_as_one_patch_of_its_values():
    """JAT's reading: 39 Meta-World numbers take one position, and the model gets the numbers themselves."""
    unbounded = spaces.Box(-np.inf, np.inf, (39,), np.float64)
    codec = SpaceCodec(unbounded, spaces.Box(-1, 1, (4,), np.float32), VOCAB, overrides={"": "vector"}, task_id=0)
    assert codec.tokens_per_step == 1 + 1 + 1 + 4 and codec.obs_is_patch.tolist() == [False, True]
    assert codec.layout()[1]["read as"] == "vector of 39 values -> 1 patch (3x4x4), 0 of 39 scaled by their range"
    x = np.random.default_rng(0).normal(0, 3, (5, 39))
    tokens, patches = codec.encode_observations(x, 5)
    assert (tokens[:, 1] == VOCAB.pad).all() and patches.shape == (5, 1, 3, 4, 4)
    unit = codec.normalize_patches(patches).reshape(5, -1)
    np.testing.assert_allclose(unit[:, :39], x, rtol=1e-6)  # no bounds: the values as they are
    assert (unit[:, 39:] == 0).all()  # the padding reads as zero
    assert tokens_per_space(unbounded, overrides={"": "vector"}) == 1

    # without bounds of its own, scaled by the Box's widest, -4..4
    bounded = spaces.Box(np.array([0.0, -4.0], np.float32), np.array([2.0, 4.0], np.float32))
    codec = SpaceCodec(bounded, spaces.Discrete(2), VOCAB, overrides={"": {"kind": "vector"}}, patch_size=2)
    _, patches = codec.encode_observations(np.array([[2.0, -4.0]]), 1)
    np.testing.assert_allclose(codec.normalize_patches(patches).ravel(), [0.5, -1.0, 0.0, 0.0])
    # an override's bounds per value (what fit_codec gives); a value without a finite range goes in as it is
    spec = {"kind": "vector", "low": [0.0, 1.0, -np.inf], "high": [0.1, 1.0, np.inf]}
    codec = SpaceCodec(spaces.Box(-np.inf, np.inf, (3,)), spaces.Discrete(2), VOCAB, overrides={"": spec})
    _, patches = codec.encode_observations(np.array([[0.075, 7.0, -3.0]]), 1)
    np.testing.assert_allclose(codec.normalize_patches(patches).ravel()[:3], [0.5, 7.0, -3.0], rtol=1e-6)

    with pytest.raises(UnsupportedSpaceError, match="can only be read as discrete values"):
        SpaceCodec(spaces.Discrete(3), spaces.Discrete(2), VOCAB, overrides={"": "vector"})
    with pytest.raises(UnsupportedSpaceError, match="only an observation field read as tokens"):
        SpaceCodec(bounded, spaces.Discrete(2), VOCAB, overrides={"": {"kind": "vector", "once": True}})


def test_box_action_finite_nonsymmetric_bounds():
    space = spaces.Box(low=np.array([-2.0, 0.0], np.float32), high=np.array([2.0, 10.0], np.float32))
    codec, actions, tokens, decoded = action_round_trip(space, n=64)
    c0, ct = VOCAB.continuous_offset, VOCAB.continuous_tokens
    assert in_range(tokens, c0, c0 + ct)
    bin_width = (space.high - space.low) / ct
    assert decoded.shape == actions.shape and decoded.dtype == space.dtype
    assert (np.abs(decoded - actions) <= bin_width).all()
    assert all(space.contains(a) for a in decoded)
    # the bounds themselves, and the middle of the box (scaled by the bounds, not mu-law)
    edges = np.array([[-2.0, 0.0], [2.0, 10.0], [0.0, 5.0]], np.float32)
    tok = codec.encode_actions(edges, 3)
    assert tok[0].tolist() == [c0, c0] and tok[1].tolist() == [c0 + ct - 1] * 2
    assert tok[2].tolist() == [c0 + ct // 2] * 2
    back = codec.decode_actions(tok)
    assert (np.abs(back - edges) <= bin_width).all()
    assert all(space.contains(a) for a in back)


def test_box_action_infinite_bounds():
    space = spaces.Box(-np.inf, np.inf, (3,), np.float32)
    codec = SpaceCodec(spaces.Discrete(2), space, VOCAB)
    rng = np.random.default_rng(0)
    actions = rng.uniform(-20, 20, size=(64, 3)).astype(np.float32)
    actions[0] = [0.0, -255.0, 255.0]
    tokens = codec.encode_actions(actions, 64)
    assert tokens.shape == (64, tokens_per_space(space)) == (64, 3)
    c0, ct = VOCAB.continuous_offset, VOCAB.continuous_tokens
    assert in_range(tokens, c0, c0 + ct)
    decoded = codec.decode_actions(tokens)
    assert decoded.shape == (64, 3) and np.isfinite(decoded).all()
    # within one bin, measured where the bins are uniform (after mu-law)
    gap = np.abs(mulaw(decoded.astype(np.float64)) - mulaw(actions.astype(np.float64)))
    assert (gap <= 2.0 / ct + 1e-9).all()
    assert np.sign(decoded[1:]).tolist() == np.sign(actions[1:]).tolist()


def test_box_action_infinite_bounds_decode_is_warning_free():
    # Decoding runs at every step of a rollout: it must not emit numpy RuntimeWarnings.
    space = spaces.Box(-np.inf, np.inf, (3,), np.float32)
    codec = SpaceCodec(spaces.Discrete(2), space, VOCAB)
    tokens = codec.encode_actions(np.zeros((2, 3), np.float32), 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        decoded = codec.decode_actions(tokens)
    assert np.isfinite(decoded).all()


# --------------------------------------------------------------------------- images


def reassemble(patches, rows, cols, p):
    """(N, rows*cols, C, p, p) -> (N, C, rows*p, cols*p)."""
    n, _, c = patches.shape[:3]
    x = patches.reshape(n, rows, cols, c, p, p).transpose(0, 3, 1, 4, 2, 5)
    return x.reshape(n, c, rows * p, cols * p)


@pytest.mark.parametrize(
    "shape, chw",
    [
        ((10, 13), lambda x: x[:, None]),                            # (H, W), not divisible by 4
        ((9, 10, 1), lambda x: np.moveaxis(x, -1, 1)),               # (H, W, C)
        ((9, 10, 3), lambda x: np.moveaxis(x, -1, 1)),
        ((9, 10, 4), lambda x: np.moveaxis(x, -1, 1)),
        ((18, 17, 12), lambda x: np.moveaxis(x, -1, 1)),             # stacked frames
        ((3, 9, 10), lambda x: x),                                   # (C, H, W)
        ((16, 16, 3), lambda x: np.moveaxis(x, -1, 1)),              # divisible
    ],
)
def test_box_image_layouts_and_patches(shape, chw):
    space = spaces.Box(0, 255, shape, np.uint8)
    codec, obs, tokens, patches = encode_obs(space, n=3)
    image = chw(obs)
    C, H, W = image.shape[1:]
    p = 4
    rows, cols = -(-H // p), -(-W // p)
    assert codec.patches_per_step == rows * cols == tokens.shape[1] == tokens_per_space(space)
    assert (tokens == VOCAB.pad).all()  # patch positions are embedded from pixels, not looked up
    assert patches.shape == (3, rows * cols, C, p, p)
    assert codec.obs_is_patch.all()
    np.testing.assert_array_equal(codec.patch_rowcol, np.stack(np.divmod(np.arange(rows * cols), cols), -1))
    full = reassemble(patches, rows, cols, p)
    np.testing.assert_array_equal(full[:, :, :H, :W], image)  # the original pixels, untouched
    assert (full[:, :, H:, :] == 0).all() and (full[:, :, :, W:] == 0).all()  # padded with low
    norm = codec.normalize_patches(patches)
    assert norm.dtype == np.float32 and norm.min() >= -1.0 and norm.max() <= 1.0
    np.testing.assert_allclose(norm, patches / 255.0 * 2 - 1, atol=1e-6)


def test_ambiguous_image_layout_can_be_forced():
    # (9, 10, 12) reads as channels-first (9 is the shortest axis); an override fixes it.
    space = spaces.Box(0, 255, (9, 10, 12), np.uint8)
    default = SpaceCodec(space, spaces.Discrete(2), VOCAB)
    assert default.obs_fields[0].channels == 9
    codec = SpaceCodec(spaces.Dict(img=space), spaces.Discrete(2), VOCAB,
                       overrides={"img": FieldSpec(kind="image", channels_first=False)})
    obs = sample_batch(spaces.Dict(img=space), 2)
    _, patches = codec.encode_observations(obs, 2)
    assert patches.shape == (2, 3 * 3, 12, 4, 4)
    full = reassemble(patches, 3, 3, 4)
    np.testing.assert_array_equal(full[:, :, :9, :10], np.moveaxis(obs["img"], -1, 1))


def test_small_2d_box_is_features_not_image():
    space = spaces.Box(-1, 1, (3, 4), np.float32)
    codec, _, tokens, patches = encode_obs(space)
    assert tokens.shape[1] == 12 and codec.patches_per_step == 0
    assert in_range(tokens, VOCAB.continuous_offset, VOCAB.continuous_offset + VOCAB.continuous_tokens)


# --------------------------------------------------------------------------- text


def decode_text(ids):
    return VOCAB.tokenizer.decode([i for i in ids if i != VOCAB.tokenizer.pad_id])


def test_text_space():
    space = spaces.Text(max_length=40)
    codec, obs, tokens, _ = encode_obs(space)
    assert tokens.shape[1] == 16  # min(max_length, default budget)
    assert in_range(tokens, 0, VOCAB.text_tokens)
    strings = ["go to the red ball", "", "open the door and pick up a key"]
    tok, _ = codec.encode_observations(strings, 3)
    assert [decode_text(t) for t in tok] == strings
    codec = SpaceCodec(space, spaces.Discrete(2), VOCAB, text_budget={"": 4})
    tok, _ = codec.encode_observations(["go to the red ball"], 1)
    assert tok.shape == (1, 4) and decode_text(tok[0]) == "go to the red"


def test_minigrid_mission_space():
    env = babyai_env()
    space = env.observation_space["mission"]
    from minigrid.core.mission import MissionSpace  # minigrid is imported (and registered) by now

    assert isinstance(space, MissionSpace) and not isinstance(space, spaces.Text)
    assert tokens_per_space(space) == 16
    codec = SpaceCodec(space, env.action_space, VOCAB)
    missions = [env.reset(seed=s)[0]["mission"] for s in range(6)]
    tokens, _ = codec.encode_observations(tuple(missions), 6)  # vector envs batch strings as tuples
    assert tokens.shape == (6, 16) and in_range(tokens, 0, VOCAB.text_tokens)
    assert [decode_text(t) for t in tokens] == missions
    _, _, tokens, _ = encode_obs(space, n=4)
    assert in_range(tokens, 0, VOCAB.text_tokens)
    env.close()


@pytest.mark.parametrize(
    "text",
    [
        "", " ", "  ", "go to the red ball", " go to the red ball", "go  to   the red ball ",
        "  leading and trailing  ", "Red RED red rEd", "redredred", "tab\tnew\nline\r\n",
        "pick up the purple key, then open the door.", "héllo wörld", "日本語のテキスト",
        "emoji 😀👍🏽 and ZWJ 👩‍👩‍👧", "\x00\x7f\u200b\ufeff", "ΑΒΓ αβγ", "a" * 300,
    ],
)
def test_text_tokenizer_round_trip(text):
    tok = WordByteTokenizer()
    ids = tok.encode(text)
    assert all(0 <= i < tok.vocab_size and i not in (tok.pad_id, tok.eos_id) for i in ids)
    assert tok.decode(ids) == text


def test_text_tokenizer_round_trip_random_unicode():
    tok = WordByteTokenizer()
    rng = np.random.default_rng(0)
    alphabet = [c for c in range(0x20000) if not 0xD800 <= c <= 0xDFFF]
    for _ in range(200):
        n = int(rng.integers(0, 40))
        pick = rng.choice(len(alphabet), n) if rng.random() < 0.5 else rng.integers(0, 128, n)
        text = "".join(chr(alphabet[i]) for i in pick)
        if rng.random() < 0.5:
            text = " ".join(["  ", text, "go to", " the ", "ball  "])
        assert tok.decode(tok.encode(text)) == text
    # known words are one token each, with or without their leading space
    assert len(tok.encode("go to the red ball")) == 5


# --------------------------------------------------------------------------- nesting


NESTED_OBS = spaces.Dict(
    a=spaces.Tuple((
        spaces.Dict(x=spaces.Discrete(3, start=1), y=spaces.Box(-1, 1, (2,), np.float32)),
        spaces.MultiBinary(3),
    )),
    img=spaces.Box(0, 255, (8, 8, 3), np.uint8),
    txt=spaces.Text(max_length=10),
)
NESTED_ACT = spaces.Tuple((
    spaces.Dict(move=spaces.Tuple((
        spaces.Discrete(4, start=1),
        spaces.Box(np.array([-2.0, 0.0], np.float32), np.array([2.0, 10.0], np.float32)),
    ))),
    spaces.MultiDiscrete([2, 3]),
))


def test_dict_and_tuple_nested_three_deep_observation():
    codec, obs, tokens, patches = encode_obs(NESTED_OBS)
    assert tokens.shape[1] == 1 + 2 + 3 + 4 + 10 == tokens_per_space(NESTED_OBS)
    assert [f.name for f in codec.obs_fields] == [
        'obs["a"][0]["x"]', 'obs["a"][0]["y"]', 'obs["a"][1]', 'obs["img"]', 'obs["txt"]']
    # each field's tokens are what the field encodes on its own, in order
    i = 0
    for leaf_space, values in [
        (NESTED_OBS["a"][0]["x"], obs["a"][0]["x"]), (NESTED_OBS["a"][0]["y"], obs["a"][0]["y"]),
        (NESTED_OBS["a"][1], obs["a"][1]), (NESTED_OBS["img"], obs["img"]), (NESTED_OBS["txt"], obs["txt"]),
    ]:
        alone, _ = SpaceCodec(leaf_space, spaces.Discrete(2), VOCAB).encode_observations(values, N)
        np.testing.assert_array_equal(tokens[:, i : i + alone.shape[1]], alone)
        i += alone.shape[1]
    assert patches.shape == (N, 4, 3, 4, 4)
    np.testing.assert_array_equal(codec.obs_is_patch, [False] * 6 + [True] * 4 + [False] * 10)


def test_dict_and_tuple_nested_three_deep_action():
    codec, actions, tokens, decoded = action_round_trip(NESTED_ACT, n=32)
    assert tokens.shape[1] == 1 + 2 + 2
    equal_nested(decoded[0]["move"][0], actions[0]["move"][0])
    equal_nested(decoded[1], actions[1])
    box = NESTED_ACT[0]["move"][1]
    width = (box.high - box.low) / VOCAB.continuous_tokens
    assert (np.abs(decoded[0]["move"][1] - actions[0]["move"][1]) <= width).all()
    for j in range(32):
        one = (
            {"move": (decoded[0]["move"][0][j], decoded[0]["move"][1][j])},
            decoded[1][j],
        )
        assert NESTED_ACT.contains(one)


# --------------------------------------------------------------------------- overrides


def test_babyai_grid_read_as_discrete():
    env = babyai_env()
    space = env.observation_space
    codec = SpaceCodec(space, env.action_space, VOCAB, overrides={"image": "discrete"})
    image = next(f for f in codec.obs_fields if f.name == 'obs["image"]')
    assert image.kind == "discrete" and image.n_tokens == 147
    assert tokens_per_space(space, overrides={"image": "discrete"}) == 1 + 147 + 16
    obs = [env.reset(seed=s)[0] for s in range(3)]
    batch = stack(space, obs)
    tokens, patches = codec.encode_observations(batch, 3)
    assert patches.shape[1] == 0
    np.testing.assert_array_equal(tokens[:, 1:148] - VOCAB.discrete_offset, batch["image"].reshape(3, -1))
    env.close()


def test_unknown_override_path_names_the_known_fields():
    env = babyai_env()
    with pytest.raises(ValueError) as info:
        SpaceCodec(env.observation_space, env.action_space, VOCAB, overrides={"imgae": "image"})
    msg = str(info.value)
    assert "imgae" in msg
    for known in ("'direction'", "'image'", "'mission'"):
        assert known in msg
    with pytest.raises(ValueError, match="unknown field kind"):
        SpaceCodec(env.observation_space, env.action_space, VOCAB, overrides={"image": "pixels"})
    env.close()


# --------------------------------------------------------------------------- unsupported


GRAPH = spaces.Graph(node_space=spaces.Box(0, 1, (2,), np.float32), edge_space=None)
SEQUENCE = spaces.Sequence(spaces.Discrete(3))


@pytest.mark.parametrize(
    "space, path, kind",
    [
        (GRAPH, "obs:", "Graph"),
        (SEQUENCE, "obs:", "Sequence"),
        (spaces.Dict(a=spaces.Tuple((SEQUENCE, spaces.Discrete(2)))), 'obs["a"][0]', "Sequence"),
        (spaces.Tuple((spaces.Discrete(2), spaces.Dict(a=GRAPH))), 'obs[1]["a"]', "Graph"),
    ],
)
def test_unsupported_spaces_name_the_field_and_space(space, path, kind):
    with pytest.raises(UnsupportedSpaceError) as info:
        SpaceCodec(space, spaces.Discrete(2), VOCAB)
    msg = str(info.value)
    assert msg.startswith(path)
    assert f"{kind}(" in msg and "not supported" in msg
    with pytest.raises(UnsupportedSpaceError):
        tokens_per_space(space)


def test_unsupported_action_spaces():
    with pytest.raises(UnsupportedSpaceError, match=r'^action\["seq"\]: Sequence'):
        SpaceCodec(spaces.Discrete(2), spaces.Dict(seq=SEQUENCE), VOCAB)
    with pytest.raises(UnsupportedSpaceError, match="raise discrete_tokens"):
        SpaceCodec(spaces.Discrete(2), spaces.Discrete(5000), VOCAB)


# --------------------------------------------------------------------------- tokens_per_space


def test_tokens_per_space_reexported_for_babyai():
    from gato.tasks.control_task import tokens_per_space as reexported

    assert reexported is tokens_per_space
    env = babyai_env()
    space = env.observation_space
    # direction 1 + image 7x7 -> 2x2 patches of 4 + the mission's text budget
    assert reexported(space, patch_size=4) == 1 + 4 + 16
    assert reexported(space, patch_size=4, text_budget={"mission": 9}) == 1 + 4 + 9
    assert reexported(space, patch_size=7) == 1 + 1 + 16
    stored = spaces.Dict(direction=space["direction"], image=space["image"], mission=spaces.Text(max_length=1024))
    assert reexported(stored, patch_size=4) == 1 + 4 + 16
    env.close()


def test_one_hot_image_reads_each_value_as_a_channel():
    space = spaces.Box(0, 255, (5, 6, 2), np.uint8)
    codec = SpaceCodec(space, spaces.Discrete(2), patch_size=4,
                       overrides={"": {"kind": "image", "low": 0, "high": 3, "one_hot": True}})
    field = codec.obs_fields[0]
    assert field.channels == 8 and codec.image_channels == 8
    rng = np.random.default_rng(0)
    img = rng.integers(0, 4, size=(2, 5, 6, 2)).astype(np.uint8)
    _, patches = codec.encode_observations(img, 2)
    assert patches.shape == (2, 4, 8, 4, 4)
    # patch (0, 0), pixel (row 1, col 2): channel c * 4 + v is 1 exactly when img[..., c] == v
    for c in range(2):
        for v in range(4):
            assert patches[1, 0, c * 4 + v, 1, 2] == (img[1, 1, 2, c] == v)
    assert set(np.unique(codec.normalize_patches(patches))) <= {-1.0, 1.0}


@pytest.mark.parametrize("mode", ["mean", "max"])
def test_pooled_image_reduces_blocks(mode):
    # A 1-pixel sprite of 90 in a dark 8x8 frame, pooled 2x2 to 4x4 (one 4x4 patch).
    img = np.zeros((1, 8, 8), np.uint8)
    img[0, 5, 2] = 90
    spec = {"kind": "image", "pool": 2, **({"pool_mode": mode} if mode == "max" else {})}
    codec = SpaceCodec(spaces.Box(0, 255, (1, 8, 8), np.uint8), spaces.Discrete(2), patch_size=4,
                       overrides={"": spec})
    _, patches = codec.encode_observations(img, 1)
    assert patches.shape == (1, 1, 1, 4, 4)
    pooled = patches[0, 0, 0]
    assert pooled[2, 1] == (90 if mode == "max" else round(90 / 4))  # block (2, 1) holds the sprite
    assert pooled.sum() == pooled[2, 1]
    assert f"{mode}-pooled 2x2 to 4x4" in codec.obs_fields[0].describe()


def test_unknown_pool_mode_is_refused():
    with pytest.raises(ValueError, match="pool_mode must be 'mean' or 'max'"):
        SpaceCodec(spaces.Box(0, 255, (8, 8), np.uint8), spaces.Discrete(2),
                   overrides={"": {"kind": "image", "pool": 2, "pool_mode": "median"}})


# --------------------------------------------------------------------------- fitting a codec to a dataset


def _three_step_codec(dataset, raw, observation_space, action_space, vocab, task_id):
    """The codec as ControlTask and `gato inspect` built it before ``fit_codec``: overrides
    fitted on a probe of the dataset's spaces, a second probe for the text budgets, the codec."""
    from gato.data.episodes import recommended_overrides

    overrides = recommended_overrides(dataset.storage.metadata)
    probe = SpaceCodec(dataset.observation_space, dataset.action_space, Vocab(), 4, overrides)
    overrides = {**raw.image_ranges(probe.obs_fields), **overrides}
    probe = SpaceCodec(observation_space, action_space, vocab, 4, overrides)
    budget = raw.text_budget(probe.obs_fields, vocab.tokenizer)
    return SpaceCodec(observation_space, action_space, vocab, 4, overrides, budget, task_id)


@pytest.mark.parametrize("spaces_of", ["dataset", "env"])
@pytest.mark.parametrize("vocab", [Vocab(), Vocab(discrete_tokens=64, continuous_tokens=64)], ids=["default", "tiny"])
def test_fitted_codec_is_the_one_the_three_step_path_built(babyai_dataset, spaces_of, vocab):
    """``fit_codec`` (two codecs) gives the codec of the old path (three): same layout, same
    tokens for every episode; ControlTask's codec is that codec (the mission in every timestep, as then)."""
    from argparse import Namespace

    from gato.data.episodes import EncodedEpisodes, RawEpisodes, fit_codec
    from gato.tasks.control_task import ControlTask

    source = babyai_dataset if spaces_of == "dataset" else gym.make("BabyAI-GoToRedBall-v0")
    obs_space, act_space = source.observation_space, source.action_space
    raw = RawEpisodes.read(babyai_dataset, "babyai")
    expected = _three_step_codec(babyai_dataset, raw, obs_space, act_space, vocab, task_id=3)
    fitted = fit_codec(raw, obs_space, act_space, vocab=vocab, patch_size=4,
                       metadata=babyai_dataset.storage.metadata, task_id=3, constant_text="step")
    assert fitted.layout() == expected.layout()
    assert fitted.tokens_per_step == expected.tokens_per_step == 13  # the task token, then BabyAI's 12
    ours, theirs = (EncodedEpisodes.encode(raw, c, "babyai") for c in (fitted, expected))
    np.testing.assert_array_equal(ours.steps, theirs.steps)
    np.testing.assert_array_equal(ours.patches, theirs.patches)
    np.testing.assert_array_equal(fitted.normalize_patches(ours.patches), expected.normalize_patches(theirs.patches))

    if spaces_of == "env":  # what a task trains on
        task = ControlTask("babyai", source, babyai_dataset, 128, Namespace(patch_size=4), vocab=vocab, task_id=3,
                           constant_text="step")
        assert task.codec.layout() == expected.layout()
        np.testing.assert_array_equal(task.episodes.steps, theirs.steps)


def test_explicit_overrides_replace_the_recommended_ones(babyai_dataset):
    from gato.data.episodes import RawEpisodes, fit_codec

    raw = RawEpisodes.read(babyai_dataset, "babyai")
    obs_space, act_space = babyai_dataset.observation_space, babyai_dataset.action_space
    codec = fit_codec(raw, obs_space, act_space, overrides={"image": "discrete"},
                      metadata={"gato_field_overrides": '{"image": {"kind": "image", "pool": 7}}'})
    # an explicit override also beats the fitted range; the mission never changes within an episode
    assert codec.overrides == {"image": "discrete", "mission": {"kind": "text", "once": True}}
    assert codec.obs_tokens == 1 + 147 + 5  # direction, 7x7x3 values, the longest mission
    recommended = fit_codec(raw, obs_space, act_space,
                            metadata={"gato_field_overrides": '{"image": {"kind": "image", "pool": 7}}'})
    assert recommended.obs_fields[1].n_patches == 1 and recommended.overrides["image"]["pool"] == 7


# --------------------------------------------------------------------------- gato inspect


@pytest.mark.parametrize("env_id", ["BabyAI-OpenDoor-v0", "ALE/Pong-v5", "CartPole-v1"])
def test_inspect_takes_the_env_ids_of_installed_plugins(env_id):
    """In a fresh interpreter, where nothing has imported minigrid or ale_py yet (the test extra installs both)."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "gato.cli", "inspect", env_id], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"env {env_id}" in done.stdout and "tokens per timestep:" in done.stdout


def test_inspect_names_what_it_accepts(capsys):
    from gato.cli import main

    assert main(["inspect", "nobody/NoSuchEnv-v0"]) == 2
    err = capsys.readouterr().err
    assert "neither a local Minari dataset nor a Gymnasium env id" in err and "minigrid" in err


def test_only_text_that_never_changes_within_an_episode_is_read_once():
    """``DataStats.varying`` names the string fields that change inside some episode; the others are read once
    per window, and the statistics saved beside a store keep that."""
    from gato.data.episodes import DataStats, RawEpisodes, fit_codec

    space = spaces.Dict(goal=spaces.Text(20), note=spaces.Text(20), x=spaces.Discrete(3))
    obs = [{"goal": np.array(["up", "up", "up"]), "note": np.array(["a", "b", "b"]), "x": np.zeros(3, np.int64)},
           {"goal": np.array(["down"] * 2), "note": np.array(["c"] * 2), "x": np.zeros(2, np.int64)}]
    raw = RawEpisodes(obs, [np.zeros(2, np.int64), np.zeros(1, np.int64)], [np.zeros(2), np.zeros(1)], [0, 1])
    stats = DataStats.of(raw, DataStats.leaves_of(space))
    assert stats.varying == {"note"}
    assert DataStats.from_dict(stats.to_dict()).varying == {"note"}
    codec = fit_codec(stats, space, spaces.Discrete(2))
    assert [f.once for f in codec.obs_fields] == [True, False, False]
    assert codec.overrides == {"goal": {"kind": "text", "once": True}}
    assert not any(f.once for f in fit_codec(stats, space, spaces.Discrete(2), constant_text="step").obs_fields)
    with pytest.raises(ValueError, match="constant_text must be one of"):
        fit_codec(stats, space, spaces.Discrete(2), constant_text="episode")
    with pytest.raises(UnsupportedSpaceError, match="only an observation field read as tokens"):
        SpaceCodec(spaces.Box(0, 255, (8, 8, 3), np.uint8), spaces.Discrete(2), overrides={"": {"kind": "image",
                                                                                                 "once": True}})
