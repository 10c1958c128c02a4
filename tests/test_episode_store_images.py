"""How the episode store keeps images and reads rows (gato.data.episode_store): a one-hot grid's patches packed to
bits and unpacked when read, byte for byte what the in-memory path encodes; rows read from the files, never mapped
into the process."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces

from gato.data import episode_store
from gato.data.episode_store import FileRows, StoredPatches, patch_fields
from gato.data.writer import write_dataset
from gato.tasks.control_task import ControlTask
from gato.vocab import Vocab

VOCAB = dict(discrete_tokens=64, continuous_tokens=64)
# keys sorted, as gymnasium orders a Dict: the codec's image fields are depth, frame, grid
SPACE = spaces.Dict({
    "grid": spaces.Box(0, 255, (7, 7, 3), np.uint8),  # BabyAI's symbolic grid: small ids, read one-hot
    "frame": spaces.Box(0, 255, (64, 64), np.uint8),  # pooled 8x8 below: its patches are smaller than it
    "depth": spaces.Box(0.0, 1.0, (9, 10), np.float32),  # float, 1 channel: padded to the grid's channels
    "direction": spaces.Discrete(4),
    "mission": spaces.Text(40, charset="abcdefghijklmnopqrstuvwxyz "),
})
OVERRIDES = {"frame": {"kind": "image", "pool": 8}}


class GridEnv(gym.Env):
    """Observations of SPACE with a grid of ids below 11 (as BabyAI's), 3 actions; ends after 5 to 12 steps."""

    observation_space, action_space = SPACE, spaces.Discrete(3)

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.t, self.length = 0, int(self.np_random.integers(5, 13))
        return self._obs(), {}

    def _obs(self):
        rng = self.np_random
        return {"grid": rng.integers(0, 11, (7, 7, 3), dtype=np.uint8),
                "frame": rng.integers(0, 256, (64, 64), dtype=np.uint8),
                "depth": rng.random((9, 10), dtype=np.float32), "direction": int(rng.integers(0, 4)),
                "mission": "go to " + "abcdefghij"[: int(rng.integers(1, 11))]}

    def step(self, action):
        self.t += 1
        return self._obs(), float(self.t == self.length), self.t >= self.length, False, {}


@pytest.fixture
def grid_id():
    """A 9-episode dataset of GridEnv (its episodes of several lengths)."""
    env, episodes = GridEnv(), []
    for seed in range(9):
        obs, _ = env.reset(seed=seed)
        ep = {"seed": seed, "observations": [obs], "actions": [], "rewards": [], "terminations": [], "truncations": []}
        done = False
        while not done:
            action = int(env.np_random.integers(0, 3))
            obs, reward, terminated, truncated, _ = env.step(action)
            for key, value in zip(("observations", "actions", "rewards", "terminations", "truncations"),
                                  (obs, action, reward, terminated, truncated)):
                ep[key].append(value)
            done = terminated or truncated
        episodes.append(ep)
    write_dataset("test/grid-v0", episodes, env_id=None, observation_space=SPACE, action_space=env.action_space)
    return "test/grid-v0"


def grid_task(dataset_id, store=None) -> ControlTask:
    return ControlTask("grid", GridEnv(), dataset_id, context_len=512, patch_size=4, vocab=Vocab(**VOCAB),
                       field_overrides=OVERRIDES, store=store, pack_windows=True)


def same_array(stored, expected) -> None:
    assert stored.dtype == expected.dtype and stored.shape == expected.shape
    assert stored.tobytes() == expected.tobytes()


@pytest.mark.parametrize("pack", [True, False], ids=["bits", "bytes"])
def test_store_reads_back_exactly_the_in_memory_rows(grid_id, monkeypatch, pack):
    monkeypatch.setattr(episode_store, "PACK_BITS", pack)
    memory, stored = grid_task(grid_id, store=False), grid_task(grid_id)
    assert stored.store.built and memory.store is None
    fields = [f.path[0] for f, _ in patch_fields(stored.codec)]
    assert fields == ["depth", "frame", "grid"] and stored.codec.image_channels == 33  # 3 channels x 11 ids
    assert "one-hot" in dict(zip(fields, (f.describe() for f, _ in patch_fields(stored.codec))))["grid"]
    forms = json.loads((stored.store.path / "meta.json").read_text())["images"]
    assert [f["form"] for f in forms] == ["patches", "patches", "bits" if pack else "patches"]
    assert [f["dtype"] for f in forms] == ["<f4", "|u1", "|u1"]  # each field's own, joined as float32 when read
    mem = memory.episodes
    assert isinstance(stored.episodes.patches, StoredPatches) and isinstance(stored.episodes.steps, FileRows)
    same_array(np.asarray(stored.episodes.patches), mem.patches)  # float32: the grid's 0/1 beside depth
    np.testing.assert_array_equal(np.asarray(stored.episodes.steps), mem.steps)
    rng = np.random.default_rng(0)
    for lo, hi in [(0, 0), (0, 1), (len(mem.steps) - 3, len(mem.steps))] + [
            tuple(sorted(rng.integers(0, len(mem.steps) + 1, 2))) for _ in range(40)]:
        same_array(stored.episodes.patches[lo:hi], mem.patches[lo:hi])
        same_array(stored.episodes.steps[lo:hi].astype(np.int64), mem.steps[lo:hi])
    for a, b in zip(*[[t.sample_batch(8, t.codec.vocab, rng=np.random.default_rng(1)) for _ in range(3)]
                      for t in (memory, stored)]):
        for name in ("tokens", "patches", "targets"):
            same_array(getattr(b, name), getattr(a, name))

    grid = FileRows(stored.store.path / "image-2.npy")
    grid_bytes = (grid.path.stat().st_size - grid.offset) / len(mem.steps)
    assert grid_bytes == 4 * 33 * 4 * 4 // (8 if pack else 1)  # 4 patches of 33 channels of 4 x 4, bits or bytes


def test_babyai_store_keeps_the_grid_as_bits(babyai_task_store):
    """A real BabyAI dataset: its one-hot grid's patches stored 8 to a byte, read back as the in-memory path's."""
    stored, memory = babyai_task_store
    meta = json.loads((stored.store.path / "meta.json").read_text())
    assert meta["images"] == [{"form": "bits", "dtype": "|u1"}]
    rows = FileRows(stored.store.path / "image-0.npy")
    patch_bytes = memory.episodes.patches[0].nbytes  # 4 patches x (3 x values seen) channels x 4 x 4, uint8
    assert rows.shape == (meta["steps"], patch_bytes // 8) and rows.dtype == np.uint8
    same_array(np.asarray(stored.episodes.patches), memory.episodes.patches)
    for a, b in zip(*[[t.sample_batch(8, t.codec.vocab, rng=np.random.default_rng(4)) for _ in range(3)]
                      for t in (memory, stored)]):
        same_array(b.patches, a.patches)


@pytest.fixture
def babyai_task_store(minari_root):
    from gato.data.babyai import generate_babyai

    report = generate_babyai("GoToRedBall", 4, workers=1, reference_episodes=0, progress=False)
    make = lambda store: ControlTask("babyai", None, report.dataset_id, context_len=128, patch_size=4,  # noqa: E731
                                     vocab=Vocab(**VOCAB), store=store)
    return make(None), make(False)


def test_rows_are_read_not_mapped_and_pickle_as_their_path(grid_id):
    """Sampling from a store maps none of its files (a mapped page a batch touched would stay in RSS), and a
    pickled task (a worker process's copy) reads the same rows from the files again."""
    stored = grid_task(grid_id)
    for _ in range(20):
        stored.sample_batch(8, stored.codec.vocab, rng=np.random.default_rng(2))
    maps = Path("/proc/self/maps").read_text()
    assert str(stored.store.path) not in maps
    copy = pickle.loads(pickle.dumps(stored.episodes))
    assert copy.steps._fd != stored.episodes.steps._fd
    same_array(copy.patches[3:17], stored.episodes.patches[3:17])
    same_array(copy.steps[3:17], stored.episodes.steps[3:17])
    # a file cut short after it was opened: an error that says what to do, not a short array
    path = stored.store.path / "steps.npy"
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size - 10)
    with pytest.raises(OSError, match="rebuild the store"):
        stored.episodes.steps[len(stored.episodes.steps) - 2 :]
