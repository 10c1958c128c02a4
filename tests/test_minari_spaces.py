"""Every space of Minari's own test suite (its tests/common.py: Box, Discrete, Tuple, Dict, nested, Text),
in datasets written with Minari's own API (``minari.create_dataset_from_buffers``; ``DataCollector`` needs jax),
read by gato as a user would: ``gato inspect``, ``gato train``, ``gato eval``, and an agent acting in a fresh env.

The envs are registered under ids of this module, so ``dataset.recover_environment()`` (what ``gato eval`` uses)
makes them again; their ``step`` refuses an action outside the action space, so an evaluation that finishes
proves every decoded action belonged to it.
"""

from __future__ import annotations

import json
import sys
import unicodedata

import gymnasium as gym
import minari
import numpy as np
import pytest
from gymnasium import spaces
from minari.data_collector import EpisodeBuffer

from gato.agent import Agent
from gato.cli import main

F = np.float32
UNICODE = "".join(chr(i) for i in range(sys.maxunicode) if unicodedata.category(chr(i)) != "Cs")


def nested_combo():
    return spaces.Tuple((spaces.Box(2, 3, dtype=F), spaces.Tuple((spaces.Box(2, 3, dtype=F), spaces.Dict({
        "component_1": spaces.Box(-1, 1, dtype=F),
        "component_2": spaces.Dict({"subcomponent_1": spaces.Box(2, 3, dtype=F),
                                    "subcomponent_2": spaces.Tuple((spaces.Box(4, 5, dtype=F), spaces.Discrete(10)))}),
        "component_3": spaces.Text(100, min_length=20)})))))


# The 13 spaces of Minari's `test_spaces`, in its order.
MINARI_SPACES = [
    spaces.Box(-1, 4, (2,), F),
    spaces.Box(-1, 4, (3,), F),
    spaces.Box(-1, 4, (2, 2, 2), F),
    spaces.Box(-1, 4, (3, 3, 3), F),
    spaces.Text(max_length=10, min_length=10),
    spaces.Text(max_length=20, charset=UNICODE),
    spaces.Text(max_length=10, charset="01"),
    spaces.Tuple((spaces.Discrete(1), spaces.Discrete(5))),
    spaces.Tuple((spaces.Box(-1, 4, dtype=F), spaces.Discrete(5))),
    spaces.Dict({"component_1": spaces.Box(-1, 1, dtype=F), "component_2": spaces.Dict(
        {"subcomponent_1": spaces.Box(2, 3, dtype=F), "subcomponent_2": spaces.Box(4, 5, dtype=F)})}),
    spaces.Tuple((spaces.Box(2, 3, dtype=F), spaces.Box(4, 5, dtype=F))),
    spaces.Tuple((spaces.Box(2, 3, dtype=F), spaces.Tuple((spaces.Box(2, 3, dtype=F), spaces.Box(4, 5, dtype=F))))),
    nested_combo(),
]

# (observation space, action space) of Minari's dummy envs, plus a true scalar Box (shape ()) in a Tuple and
# a Dict, and the 128x128 grey frame.
ENVS = {
    "box": (spaces.Box(-1, 4, (3,), F), spaces.Box(-1, 4, (2,), F)),
    "multi-dim-box": (spaces.Box(-1, 4, (3, 3, 3), F), spaces.Box(-1, 4, (2, 2, 2), F)),
    "tuple-discrete-box": (MINARI_SPACES[8], MINARI_SPACES[7]),
    "dict": (MINARI_SPACES[9], MINARI_SPACES[9]),
    "tuple": (MINARI_SPACES[11], MINARI_SPACES[10]),
    # Minari's DummyTextEnv observes Text(20) over all of unicode: that one is read in
    # test_every_minari_space...[obs-5]; here a smaller charset, as gymnasium takes seconds per copy of it.
    "text": (spaces.Text(20, charset="abcdefghij "), spaces.Text(10, min_length=2, charset="01")),
    "text-accents": (spaces.Discrete(4), spaces.Text(6, min_length=1, charset="éa b")),
    "combo": (nested_combo(), MINARI_SPACES[10]),
    "scalar": (spaces.Tuple((spaces.Box(F(-1), F(4), shape=(), dtype=F), spaces.Discrete(5))),
               spaces.Dict({"a": spaces.Box(F(-1), F(1), shape=(), dtype=F), "b": spaces.Discrete(3)})),
    "large-image": (spaces.Box(0, 255, (128, 128), np.uint8), spaces.Discrete(3)),
}
CASES = {**ENVS, **{f"obs-{i}": (s, spaces.Discrete(3)) for i, s in enumerate(MINARI_SPACES)},
         **{f"action-{i}": (spaces.Box(-1, 1, (2,), F), s) for i, s in enumerate(MINARI_SPACES)}}


class SpaceEnv(gym.Env):
    """Random observations of a space for 6 steps, reward 1 a step; an action outside the space is an error."""

    def __init__(self, case: str = "box"):
        self.observation_space, self.action_space = CASES[case]

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        self.observation_space.seed(seed)
        return self.observation_space.sample(), {}

    def step(self, action):
        if not self.action_space.contains(action):
            raise ValueError(f"action {action!r} is outside {self.action_space}")
        self.t += 1
        return self.observation_space.sample(), 1.0, self.t >= 6, False, {}


for _case in CASES:
    gym.register(f"GatoMinariSpaces-{_case}-v0", entry_point=f"{__name__}:SpaceEnv", kwargs={"case": _case})


def stack(space, values):
    """One episode's values of ``space`` as Minari's EpisodeBuffer holds them: Dict and Tuple of per-leaf lists."""
    if isinstance(space, spaces.Dict):
        return {k: stack(s, [v[k] for v in values]) for k, s in space.spaces.items()}
    if isinstance(space, spaces.Tuple):
        return tuple(stack(s, [v[i] for v in values]) for i, s in enumerate(space.spaces))
    return list(values) if isinstance(space, spaces.Text) else np.asarray(values)


def write_minari(case: str, episodes: int = 4) -> str:
    """A Minari dataset of random-action episodes of ``case``'s env, written by Minari; its id."""
    env_id, dataset_id = f"GatoMinariSpaces-{case}-v0", f"spaces/{case}-random-v0"
    env = gym.make(env_id)
    env.action_space.seed(0)
    buffers = []
    for seed in range(episodes):
        obs, _ = env.reset(seed=seed)
        steps = {"observations": [obs], "actions": [], "rewards": [], "terminations": [], "truncations": []}
        done = False
        while not done:
            action = env.action_space.sample()
            obs, reward, terminated, truncated, _ = env.step(action)
            for key, value in zip(steps, (obs, action, reward, terminated, truncated)):
                steps[key].append(value)
            done = terminated or truncated
        buffers.append(EpisodeBuffer(
            id=seed, seed=seed, observations=stack(env.observation_space, steps["observations"]),
            actions=stack(env.action_space, steps["actions"]), rewards=steps["rewards"],
            terminations=steps["terminations"], truncations=steps["truncations"], infos={}))
    minari.create_dataset_from_buffers(dataset_id, buffers, env=env_id, algorithm_name="random", author="tests",
                                       author_email="tests@example.com", code_permalink="none")
    env.close()
    return dataset_id


# --------------------------------------------------------------------------- every space, read and decoded


def _cases(prefixes):
    """The cases named so; the unicode-charset Text (gymnasium takes seconds to build one) marked slow."""
    return [pytest.param(c, marks=pytest.mark.slow) if c.endswith("-5") else c
            for c in CASES if c.startswith(prefixes)]


@pytest.mark.parametrize("case", _cases(("obs-", "action-")))
def test_every_minari_space_encodes_and_its_actions_decode_into_the_space(case):
    """Each of Minari's 13 test spaces, as the observation and as the action of a real Minari dataset: the
    task reads it, and the dataset's own action tokens decode to actions of the space (equal where exact)."""
    from gato.tasks.control_task import ControlTask

    task = ControlTask(case, None, write_minari(case, episodes=2), context_len=512, vocab=None)
    codec = task.codec
    first = codec.obs_tokens + 1
    tokens = task.episodes.steps[:, first:]
    decoded = codec.decode_actions(tokens)
    actions = task.raw.actions[0]
    n = len(task.episodes.steps)
    assert tokens.shape == (n, codec.action_tokens) and n == sum(task.episodes.lengths) == 12
    for i in range(n):  # (not via batch_space: gymnasium builds a Text of the unicode charset in seconds)
        action = _item(codec.action_space, decoded, i)
        assert codec.action_space.contains(action), f"{case}: step {i} decoded to {action!r}"
    for f in codec.action_fields:  # the first episode's discrete values and strings come back exactly
        original, back = _leaf(actions, f.path), _leaf(decoded, f.path)
        if f.kind in ("discrete", "text"):
            expected = [x.decode() if isinstance(x, bytes) else x for x in np.asarray(original).tolist()]
            assert list(np.asarray(back)[: len(expected)].tolist()) == expected, f.name


def _item(space, batch, i):
    """Action i of a batch decoded for ``space``, as the env takes it."""
    if isinstance(space, spaces.Dict):
        return {k: _item(s, batch[k], i) for k, s in space.spaces.items()}
    if isinstance(space, spaces.Tuple):
        return tuple(_item(s, batch[j], i) for j, s in enumerate(space.spaces))
    return batch[i]


def _leaf(value, path):
    for p in path:
        value = value[p]
    return value


# --------------------------------------------------------------------------- through the command line

TINY_FLAGS = ["--embed_dim", "32", "--layers", "1", "--heads", "2", "--resid_mid_channels", "8",
              "--sequence_length", "256", "--batch_size", "4", "--warmup_steps", "2", "--dropout", "0"]


# What `gato inspect` must say of each env's dataset (its "read as" column and the tokens per timestep).
LAYOUT = {
    "box": ["continuous x3 (mu-law)", "continuous x2 (scaled by bounds)", "tokens per timestep: 6"],
    "multi-dim-box": ["image 3x3x3 -> 1x1 patches", "continuous x8 (scaled by bounds)", "tokens per timestep: 10"],
    "tuple-discrete-box": ['action[1]', "discrete (5 values)", "tokens per timestep: 5"],
    "dict": ['action["component_2"]["subcomponent_2"]', "tokens per timestep: 7"],
    "tuple": ["obs[1][1]", "tokens per timestep: 6"],
    "text": ["text (10 tokens, generated within its charset)"],
    "text-accents": ["generated within its charset"],
    "combo": ['obs[1][1]["component_3"]', 'obs[1][1]["component_2"]["subcomponent_2"][1]'],
    "scalar": ["Box(-1.0, 4.0, (), float32)", "continuous x1 (mu-law)", "tokens per timestep: 5"],
    "large-image": ["image 1x128x128, mean-pooled 4x4 to 32x32 (max_patches 64) -> 8x8 patches",
                    "tokens per timestep: 66"],
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(ENVS))
def test_minari_env_spaces_inspect_train_eval_act(case, tmp_path, capsys):
    dataset_id = write_minari(case)
    assert main(["inspect", dataset_id]) == 0
    layout = capsys.readouterr().out
    for expected in LAYOUT[case]:
        assert expected in layout, f"{expected!r} not in\n{layout}"

    run_dir = tmp_path / "runs"
    assert main(["train", "--control_datasets", dataset_id, "--training_steps", "2", "--max_minutes", "0",
                 "--eval_episodes", "1", "--eval_envs", "1", "--save_dir", str(run_dir), "--exp_name", case,
                 *TINY_FLAGS]) == 0
    checkpoint = run_dir / case / "checkpoint"
    out = tmp_path / "eval.json"
    assert main(["eval", str(checkpoint), "--episodes", "2", "--envs", "2", "--out", str(out)]) == 0
    results = json.loads(out.read_text())["results"][f"spaces/{case}-random"]
    assert results["episodes"] == 2 and results["mean_episode_len"] == 6  # every action accepted by the env

    from gato.policy.gato_policy import GatoPolicy
    from gato.tasks.registry import load_tasks

    policy = GatoPolicy.from_pretrained(checkpoint)
    task = load_tasks(checkpoint, policy.vocab)[0]
    agent, env = Agent(policy, task, deterministic=False), task.make_env()
    obs, _ = env.reset(seed=7)
    done = False
    while not done:  # sampled, so any token the masks allow can come out
        action = agent.act(obs)
        assert env.action_space.contains(action), action
        obs, _, terminated, truncated, _ = env.step(action)
        done = terminated or truncated
    env.close()


@pytest.mark.slow
def test_max_image_patches_bounds_every_image_and_the_checkpoint_keeps_it(tmp_path, capsys):
    dataset_id = write_minari("large-image", episodes=2)
    assert main(["inspect", dataset_id, "--max_image_patches", "16"]) == 0
    assert "mean-pooled 8x8 to 16x16 (max_patches 16) -> 4x4 patches" in capsys.readouterr().out
    run_dir = tmp_path / "runs"
    assert main(["train", "--control_datasets", dataset_id, "--max_image_patches", "16", "--training_steps", "1",
                 "--max_minutes", "0", "--eval_episodes", "1", "--eval_envs", "1", "--save_dir", str(run_dir),
                 "--exp_name", "bounded", *TINY_FLAGS]) == 0

    from gato.tasks.registry import load_tasks, task_specs

    checkpoint = run_dir / "bounded" / "checkpoint"
    assert task_specs(checkpoint)[0]["field_overrides"] == {"": {"kind": "image", "max_patches": 16}}
    task = load_tasks(checkpoint)[0]  # rebuilt from the spec alone: pooled the same way
    assert task.tokens_per_timestep == 16 + 1 + 1 and task.codec.obs_fields[0].pool == 8


@pytest.mark.parametrize("charset", ["01", "éa b"])
def test_text_action_tokens_are_generated_within_the_charset(tiny_policy, charset):
    """Sampled from an untrained policy, every token of a Text action is one the charset allows (the masks
    act in generation, not only in decoding); without the masks the same draws leave the charset."""
    import torch

    from gato.agent import observation_stream
    from gato.codec import SpaceCodec

    policy = tiny_policy()
    action_space = spaces.Text(8, min_length=2, charset=charset)
    codec = SpaceCodec(spaces.Discrete(4), action_space, policy.vocab, policy.patch_size)
    stream = observation_stream(codec, np.arange(64) % 4, 64, None, policy.device)
    ranges = torch.as_tensor(codec.action_ranges)
    masks = [torch.as_tensor(m) for m in codec.action_masks]
    allowed = np.stack(codec.action_masks)  # (K, text ids)

    def sample(with_masks):
        return policy.generate(policy.new_cache(), stream, ranges, codec.obs_tokens + 1, deterministic=False,
                               generator=torch.Generator().manual_seed(0), masks=masks if with_masks else None).numpy()

    tokens = sample(True)
    assert allowed[np.arange(codec.action_tokens), tokens].all()
    pad = policy.vocab.tokenizer.pad_id
    for row, text in zip(tokens, codec.decode_actions(tokens)):
        ends = np.flatnonzero(row == pad)
        raw = policy.vocab.tokenizer.decode(row[: ends[0]] if len(ends) else row)
        assert action_space.contains(text)
        if charset.isascii():  # one byte a character: what the model wrote is the action (padded to min_length)
            assert set(raw) <= set(charset) and text.startswith(raw[: action_space.max_length])
        else:  # the charset's bytes may pair into a character outside it, which decoding drops
            assert set(policy.vocab.tokenizer.decode(row).encode()) <= set(charset.encode()) | set(b"\xef\xbf\xbd")
    assert not allowed[np.arange(codec.action_tokens), sample(False)].all()  # the test can fail
