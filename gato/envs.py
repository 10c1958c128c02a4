"""Gymnasium environments: make one from any id an installed package registers, play one episode.

Gymnasium registers its own environments on import; plugins (minigrid's BabyAI and MiniGrid
levels, ale_py's ``ALE/...``) register theirs only when their package is imported. ``make_env``
imports the installed ones on a miss, so an env id works wherever one is accepted.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field

import gymnasium as gym

ENV_PLUGINS = ("minigrid", "ale_py")
"""Packages whose import registers more env ids (tried in order when an id is not found)."""

METAWORLD_ENV_ID = "gato/MetaWorld-v0"
if METAWORLD_ENV_ID not in gym.registry:
    # Meta-World registers its envs through lambdas, which an env spec (and so a Minari dataset) cannot
    # name. This id's entry point is a "module:function" string: a dataset's spec remakes the env with
    # `gym.make(spec)`, and nothing heavy is imported until an env is made (needs the 'metaworld' extra).
    gym.register(METAWORLD_ENV_ID, entry_point="gato.data.experts.metaworld:make_metaworld_env",
                 max_episode_steps=500, kwargs={"task": "reach-v3"})


class UnknownEnvError(ValueError):
    """An env id that no installed package registers."""


def register_plugins(until: str | None = None) -> list[str]:
    """Import the installed packages of :data:`ENV_PLUGINS` in order (stopping once ``until``, an env id, is
    registered: ale_py alone takes a noticeable part of a second); returns the names imported."""
    loaded = []
    for name in ENV_PLUGINS:
        if until is not None and until in gym.registry:
            break
        if importlib.util.find_spec(name) is None:
            continue
        module = importlib.import_module(name)
        if name == "ale_py":
            gym.register_envs(module)  # ale_py registers its ids through this call
        loaded.append(name)
    return loaded


def is_env_id(env_id: str) -> bool:
    """Whether ``env_id`` names a registered environment (plugins included)."""
    if env_id in gym.registry:
        return True
    register_plugins(until=env_id)
    return env_id in gym.registry


def make_env(env_id, **kwargs) -> gym.Env:
    """``gym.make(env_id, **kwargs)``, trying the env plugins when the id is unknown.
    ``env_id`` may also be an ``EnvSpec``. Raises :class:`UnknownEnvError` naming what to install."""
    if isinstance(env_id, str) and not is_env_id(env_id):
        raise UnknownEnvError(
            f"{env_id!r} is not a registered Gymnasium env id, even with the installed plugins imported "
            f"({', '.join(ENV_PLUGINS)}). Check the spelling, or install the package that registers it "
            "(e.g. `pip install -e \".[atari]\"` for ALE/...)."
        )
    return gym.make(env_id, **kwargs)


@dataclass
class Episode:
    """One played episode. ``total`` and ``length`` always; ``success`` whether ``info["success"]``
    was true at any step (Meta-World's measure; None for an env whose info has no "success"); the
    per-step lists only when recorded (``observations`` holds T + 1 entries, the reset observation first)."""

    seed: int | None
    total: float = 0.0
    length: int = 0
    success: bool | None = None
    observations: list = field(default_factory=list)
    actions: list = field(default_factory=list)
    rewards: list = field(default_factory=list)
    terminations: list = field(default_factory=list)
    truncations: list = field(default_factory=list)

    def as_dict(self) -> dict:
        """The layout ``gato.data.writer.write_dataset`` takes."""
        return {"seed": self.seed, "observations": self.observations, "actions": self.actions,
                "rewards": self.rewards, "terminations": self.terminations, "truncations": self.truncations}


def play_episode(env: gym.Env, act: Callable, seed: int | None = None, *, record: bool = False,
                 execute: Callable | None = None) -> Episode:
    """Reset ``env`` (and its action space's sampler) with ``seed`` and play to the episode's end.

    ``act(obs)`` gives each step's action; ``execute(action)`` (optional) gives the action the
    env really executes (a perturbed one), while the recorded action stays ``act``'s. With
    ``record``, the episode's observations, actions, rewards and end flags are kept.
    """
    obs, _ = env.reset(seed=seed)
    env.action_space.seed(seed)
    episode = Episode(seed)
    if record:
        episode.observations.append(obs)
    done = False
    while not done:
        action = act(obs)
        obs, reward, terminated, truncated, info = env.step(action if execute is None else execute(action))
        if "success" in info:
            episode.success = bool(episode.success or info["success"])
        done = terminated or truncated
        episode.total += float(reward)
        episode.length += 1
        if record:
            episode.observations.append(obs)
            episode.actions.append(action)
            episode.rewards.append(float(reward))
            episode.terminations.append(bool(terminated))
            episode.truncations.append(bool(truncated))
    return episode
