"""Shared fixtures: throwaway Minari roots, tiny datasets rolled out in real envs, tiny models.

Every test gets its own empty ``MINARI_DATASETS_PATH`` (minari reads it at call time). The
session-scoped datasets are written once into a separate root; the MinariDataset objects keep
their absolute path, so they stay readable whatever a test sets the variable to.
"""

from __future__ import annotations

import socket
from argparse import Namespace

import gymnasium as gym
import pytest


def rollout_episodes(env_id: str, n_episodes: int, max_steps: int, seed: int = 0, policy=None):
    """Episodes (dicts for gato.data.writer.write_dataset) of a policy (default: uniform random
    actions) in ``env_id``, cut to ``max_steps`` steps (marked truncated); episode i: seed + i."""
    from gato.envs import play_episode

    env = gym.make(env_id, max_episode_steps=max_steps)
    act = policy or (lambda _: env.action_space.sample())
    episodes = [play_episode(env, act, seed + i, record=True).as_dict() for i in range(n_episodes)]
    env.close()
    return episodes


def write_episodes(dataset_id: str, env_id: str, episodes, validate: bool = True):
    """write_dataset with the env's own spaces."""
    from gato.data.writer import write_dataset

    env = gym.make(env_id)
    try:
        return write_dataset(dataset_id, episodes, env_id=env_id, observation_space=env.observation_space,
                             action_space=env.action_space, validate=validate, author="tests",
                             author_email="tests@example.com", description="test data",
                             algorithm_name="random", code_permalink="none")
    finally:
        env.close()


@pytest.fixture(autouse=True)
def minari_root(tmp_path, monkeypatch):
    """Every test reads and writes its own empty Minari root (and text/image data root, GATO_DATASETS_PATH)."""
    root = tmp_path / "minari"
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    monkeypatch.setenv("GATO_DATASETS_PATH", str(tmp_path / "gato-datasets"))
    return root


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a network connection fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("the code under test tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


@pytest.fixture(scope="session")
def session_minari_root(tmp_path_factory):
    return tmp_path_factory.mktemp("session_minari")


@pytest.fixture(scope="session")
def cartpole_dataset(session_minari_root):
    """5 random CartPole-v1 episodes of at most 25 steps."""
    import minari

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MINARI_DATASETS_PATH", str(session_minari_root))
        write_episodes("test/cartpole-random-v0", "CartPole-v1", rollout_episodes("CartPole-v1", 5, 25))
        return minari.load_dataset("test/cartpole-random-v0")


@pytest.fixture(scope="session")
def babyai_dataset(session_minari_root):
    """4 BabyAI-bot episodes of GoToRedBall (Dict obs with a 7x7x3 image and a mission)."""
    import minari

    from gato.data.babyai import generate_babyai

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MINARI_DATASETS_PATH", str(session_minari_root))
        report = generate_babyai("GoToRedBall", 4, workers=1, reference_episodes=0, progress=False)
        assert report.episodes_written == 4
        return minari.load_dataset(report.dataset_id)


@pytest.fixture(scope="session")
def cartpole_task(cartpole_dataset):
    from gato.tasks.control_task import ControlTask

    return ControlTask("cartpole", gym.make("CartPole-v1"), cartpole_dataset, context_len=64,
                       args=Namespace(patch_size=4), eval_envs=1, vocab=tiny_vocab())


@pytest.fixture(scope="session")
def babyai_task(babyai_dataset):
    from gato.tasks.control_task import ControlTask

    return ControlTask("babyai", gym.make("BabyAI-GoToRedBall-v0"), babyai_dataset, context_len=128,
                       args=Namespace(patch_size=4), eval_envs=1, vocab=tiny_vocab())


@pytest.fixture(scope="session")
def babyai_step_task(babyai_dataset):
    """``babyai_task`` with the mission in every timestep (``constant_text="step"``) instead of once per window."""
    from gato.tasks.control_task import ControlTask

    return ControlTask("babyai", gym.make("BabyAI-GoToRedBall-v0"), babyai_dataset, context_len=128,
                       args=Namespace(patch_size=4), eval_envs=1, vocab=tiny_vocab(), constant_text="step")


def tiny_vocab():
    """The vocabulary of the ``tiny_policy`` models, which the session tasks are encoded for."""
    from gato.vocab import Vocab

    return Vocab(discrete_tokens=TINY["discrete_tokens"], continuous_tokens=TINY["continuous_tokens"])


TINY = dict(embed_dim=32, layers=2, heads=2, dropout=0.0, patch_size=4, resid_mid_channels=8,
            continuous_tokens=64, discrete_tokens=64, context_len=128)


@pytest.fixture
def tiny_policy():
    """A factory of tiny GatoPolicies in eval mode (seeded, so two calls give equal weights)."""
    import torch

    from gato.policy.gato_policy import GatoPolicy

    def make(seed: int = 0, **overrides):
        torch.manual_seed(seed)
        kwargs = dict(TINY)
        kwargs.update(overrides)
        return GatoPolicy(**kwargs).eval()

    return make


@pytest.fixture
def data():
    """Helpers to roll out episodes in real envs and write them as Minari datasets."""
    return Namespace(rollout=rollout_episodes, write=write_episodes)
