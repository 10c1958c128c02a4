"""Tests for the offline BabyAI-bot -> Minari recipe (gato.data.babyai) and gato.data.writer."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import minari
import numpy as np
import pytest

from gato.data.babyai import babyai_levels, generate_babyai
from gato.data.writer import local_dataset_exists, write_dataset


@pytest.fixture(autouse=True)
def minari_root(tmp_path, monkeypatch):
    """Every test writes into its own throwaway Minari root."""
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    return tmp_path / "minari"


def test_generate_goto_red_ball_roundtrip():
    report = generate_babyai(
        "GoToRedBall", 6, workers=2, reference_episodes=20, progress=False
    )
    assert report.dataset_id == "babyai/GoToRedBall-bot-v0"
    assert report.episodes_written == 6
    assert report.expert_mean_return > report.random_mean_return

    dataset = minari.load_dataset(report.dataset_id)
    assert dataset.total_episodes == 6
    space = dataset.observation_space
    assert list(space.spaces) == ["direction", "image", "mission"]
    assert isinstance(space["mission"], gym.spaces.Text)

    seeds = [m["seed"] for m in dataset.storage.get_episode_metadata(range(6))]
    assert len(set(seeds)) == 6  # distinct, deterministic reset seeds
    for episode in dataset.iterate_episodes():
        steps = len(episode.actions)
        missions = episode.observations["mission"]
        assert len(missions) == steps + 1
        assert all(isinstance(m, str) and m.startswith("go to") for m in missions)
        assert episode.observations["image"].shape == (steps + 1, 7, 7, 3)
        assert episode.observations["image"].dtype == np.uint8
        assert episode.observations["direction"].shape == (steps + 1,)
        assert episode.rewards.sum() > 0
        assert episode.terminations[-1]

    meta = dataset.storage.metadata
    assert meta["ref_max_score"] == pytest.approx(report.expert_mean_return)
    assert meta["ref_min_score"] == pytest.approx(report.random_mean_return)
    assert meta["ref_max_score"] > meta["ref_min_score"]
    assert meta["expert_std_return"] >= 0 and meta["random_std_return"] >= 0
    assert meta["jpeg_encoding"] is False
    assert "BabyAIBot" in meta["description"]
    # minari's own normaliser reads the stored reference scores.
    assert minari.get_normalized_score(dataset, np.array([meta["ref_max_score"]]))[0] == pytest.approx(1.0)


def test_unknown_level_and_bad_counts_raise():
    with pytest.raises(ValueError, match="Unknown BabyAI level 'GoToNowhere'.*GoTo"):
        generate_babyai("GoToNowhere", 1, progress=False)
    with pytest.raises(ValueError, match="episodes must be a positive int"):
        generate_babyai("GoToRedBall", 0, progress=False)
    levels = babyai_levels()
    assert "GoToLocal" in levels and "GoToRedBall" in levels


def test_data_block_end_caps_the_spare_attempts():
    # 3 episodes from 3 seeds before the data block ends: no spare attempts (they would replay evaluation
    # seeds), but the request itself fits, as a million episodes from seed 0 must.
    from gato.data.babyai import babyai_job
    from gato.seeds import DATA, EVALUATION

    assert babyai_job("GoToLocal", 3, seed=DATA.stop - 3).max_attempts == 3
    assert babyai_job("GoToLocal", 3, seed=DATA.stop - 7).max_attempts == 7
    assert babyai_job("GoToLocal", 3).max_attempts == 9
    assert babyai_job("GoToLocal", DATA.stop).max_attempts == DATA.stop
    report = generate_babyai("GoToLocal", 3, seed=DATA.stop - 3, reference_episodes=0, progress=False)
    assert report.episodes_written + sum(report.skip_reasons.values()) == 3
    dataset = minari.load_dataset(report.dataset_id)
    seeds = [m["seed"] for m in dataset.storage.get_episode_metadata(range(dataset.total_episodes))]
    assert all(seed < EVALUATION.start for seed in seeds)
    with pytest.raises(ValueError, match="leave the data block"):
        generate_babyai("GoToLocal", 4, seed=DATA.stop - 3, progress=False)


def test_bot_errors_and_timeouts_are_skipped(minari_root):
    # The bot raises on KeyInBox: every attempt is skipped, nothing written, no crash. (A budget far above an
    # episode's time: on a loaded machine a 1 s one turned some of these errors into timeouts.)
    with pytest.warns(RuntimeWarning, match="solved none"):
        report = generate_babyai(
            "KeyInBox", 2, workers=2, episode_timeout_s=10.0, reference_episodes=0, progress=False
        )
    assert report.episodes_written == 0
    assert report.episodes_skipped == report.attempts == 6
    assert all(reason.startswith("error:") for reason in report.skip_reasons)
    assert not local_dataset_exists(report.dataset_id)

    # A tiny budget makes the per-episode alarm fire: attempts are abandoned, the pool survives.
    with pytest.warns(RuntimeWarning, match="solved none"):
        report = generate_babyai(
            "GoToRedBall", 2, workers=2, episode_timeout_s=1e-5, reference_episodes=0, progress=False
        )
    assert report.skip_reasons == {"timeout": 6}


def _tiny_episode():
    obs = {"direction": 0, "image": np.zeros((7, 7, 3), np.uint8), "mission": "go to the red ball"}
    return {
        "seed": 3,
        "observations": [obs, dict(obs, direction=1)],
        "actions": [1],
        "rewards": [0.5],
        "terminations": [True],
        "truncations": [False],
    }


_TINY_OBS_SPACE = gym.spaces.Dict(
    {
        "direction": gym.spaces.Discrete(4),
        "image": gym.spaces.Box(0, 255, (7, 7, 3), np.uint8),
        "mission": gym.spaces.Text(max_length=64, charset="abcdefghijklmnopqrstuvwxyz ,"),
    }
)


def test_writer_overwrite_metadata_and_text():
    kwargs = dict(
        env_id=None,
        observation_space=_TINY_OBS_SPACE,
        action_space=gym.spaces.Discrete(7),
        ref_min_score=0.0,
        ref_max_score=1.0,
        extra_metadata={"expert_std_return": 0.1},
    )
    write_dataset("tests/tiny-v0", [_tiny_episode()], **kwargs)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_dataset("tests/tiny-v0", [_tiny_episode()], **kwargs)
    dataset = write_dataset("tests/tiny-v0", [_tiny_episode()] * 2, overwrite=True, **kwargs)
    assert dataset.total_episodes == 2

    loaded = minari.load_dataset("tests/tiny-v0")
    episode = next(loaded.iterate_episodes())
    assert episode.observations["mission"] == ["go to the red ball"] * 2
    assert list(episode.observations["direction"]) == [0, 1]
    meta = loaded.storage.metadata
    # Without an env spec minari drops ref scores; the writer stores them itself.
    assert (meta["ref_min_score"], meta["ref_max_score"], meta["expert_std_return"]) == (0.0, 1.0, 0.1)

    with pytest.raises(ValueError, match="minari's own keys"):
        write_dataset("tests/other-v0", [_tiny_episode()], **{**kwargs, "extra_metadata": {"total_steps": 1}})
    bad = _tiny_episode()
    bad["observations"][0]["mission"] = "Go To X!"  # outside the Text charset
    with pytest.raises(ValueError, match="not in the dataset observation_space"):
        write_dataset("tests/other-v0", [bad], **kwargs)
    assert not local_dataset_exists("tests/other-v0")


def test_generate_existing_id_without_overwrite_raises():
    generate_babyai("GoToRedBall", 1, reference_episodes=2, workers=1, progress=False)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        generate_babyai("GoToRedBall", 1, reference_episodes=2, workers=1, progress=False)
    report = generate_babyai(
        "GoToRedBall", 2, reference_episodes=2, workers=1, overwrite=True, progress=False
    )
    assert minari.load_dataset(report.dataset_id).total_episodes == 2


def test_writer_import_does_not_pull_jax():
    # jax is not installed here, so also record import *attempts*, not just sys.modules.
    code = (
        "import sys\n"
        "tried = []\n"
        "class Spy:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'jax': tried.append(name)\n"
        "sys.meta_path.insert(0, Spy())\n"
        "import gato.data.writer, gato.data.babyai\n"
        "print('jax' in sys.modules, tried)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert out.stdout.strip() == "False []"


def test_noisy_bot_records_the_moves_it_took_and_still_succeeds():
    """With noise the recorded actions are the ones executed (the data stays a valid
    trajectory: replaying them reproduces the episode) and the bot recovers to succeed."""
    clean = generate_babyai("GoToLocal", 8, dataset_id="test/clean-v0", workers=1, reference_episodes=0,
                            progress=False)
    noisy = generate_babyai("GoToLocal", 8, dataset_id="test/noisy-v0", workers=1, reference_episodes=0,
                            progress=False, noise=0.5)
    assert noisy.episodes_written == clean.episodes_written == 8
    episodes = list(minari.load_dataset("test/noisy-v0").iterate_episodes())
    clean_eps = list(minari.load_dataset("test/clean-v0").iterate_episodes())
    assert sum(len(e.actions) for e in episodes) > sum(len(e.actions) for e in clean_eps)
    assert all(e.rewards.sum() > 0 for e in episodes)
    env = gym.make("BabyAI-GoToLocal-v0")
    for ep, seed in zip(episodes, (m["seed"] for m in minari.load_dataset("test/noisy-v0").storage
                                   .get_episode_metadata(range(8)))):
        env.reset(seed=int(seed))
        for t, action in enumerate(ep.actions):
            obs, *_ = env.step(int(action))
            assert np.array_equal(obs["image"], ep.observations["image"][t + 1])


def _first_episode_then(action):
    """A stand-in for minari's HDF5Storage.update_episodes: writes the first episode, then ``action()``."""
    from minari.dataset._storages.hdf5_storage import HDF5Storage

    update = HDF5Storage.update_episodes

    def first_then(self, episodes):
        update(self, list(episodes)[:1])
        action()

    return first_then


def test_write_failing_midway_leaves_the_previous_dataset_or_none(minari_root, monkeypatch):
    from minari.dataset._storages.hdf5_storage import HDF5Storage

    kwargs = dict(env_id=None, observation_space=_TINY_OBS_SPACE, action_space=gym.spaces.Discrete(7))
    write_dataset("tests/tiny-v0", [_tiny_episode()], **kwargs)

    def disk_full():
        raise OSError("disk full")

    monkeypatch.setattr(HDF5Storage, "update_episodes", _first_episode_then(disk_full))
    for dataset_id, overwrite in (("tests/tiny-v0", True), ("tests/new-v0", False)):
        with pytest.raises(OSError, match="disk full"):
            write_dataset(dataset_id, [_tiny_episode()] * 3, overwrite=overwrite, **kwargs)
    assert not local_dataset_exists("tests/new-v0")
    assert minari.load_dataset("tests/tiny-v0").total_episodes == 1  # the previous one, untouched
    assert [p.name for p in minari_root.iterdir()] == ["tests"]  # no staging folder left behind


def test_write_killed_midway_leaves_the_previous_dataset_or_none(minari_root):
    """SIGKILL while the hdf5 file is half written: under the id there is the previous dataset or none."""
    code = (
        "import os, signal, sys\n"
        "import gymnasium as gym, numpy as np\n"
        "from minari.dataset._storages.hdf5_storage import HDF5Storage\n"
        "from gato.data.writer import write_dataset\n"
        "sys.path.insert(0, 'tests')\n"
        "from test_data_babyai import _first_episode_then\n"
        "if sys.argv[2] == 'kill':\n"
        "    HDF5Storage.update_episodes = _first_episode_then(lambda: os.kill(os.getpid(), signal.SIGKILL))\n"
        "episode = {'observations': [np.zeros(2, np.float32)] * 2, 'actions': [0], 'rewards': [1.0],\n"
        "           'terminations': [True], 'truncations': [False]}\n"
        "space = gym.spaces.Box(-1, 1, (2,), np.float32)\n"
        "write_dataset(sys.argv[1], [episode] * int(sys.argv[3]), env_id=None, overwrite=True,\n"
        "              observation_space=space, action_space=gym.spaces.Discrete(2))\n"
    )

    def write(dataset_id: str, how: str, episodes: int) -> int:
        return subprocess.run([sys.executable, "-c", code, dataset_id, how, str(episodes)],
                              cwd=Path(__file__).resolve().parents[1], env={**os.environ}).returncode

    assert write("tests/box-v0", "write", 1) == 0
    assert write("tests/box-v0", "kill", 3) == -signal.SIGKILL
    assert write("tests/fresh-v0", "kill", 3) == -signal.SIGKILL
    assert not local_dataset_exists("tests/fresh-v0")
    assert minari.load_dataset("tests/box-v0").total_episodes == 1
    assert list(minari.list_local_datasets()) == ["tests/box-v0"]  # the killed writes' leftovers are hidden
