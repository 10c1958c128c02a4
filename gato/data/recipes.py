"""Data recipes: an environment plus an expert that plays it, written as a local Minari dataset.

``gato data list`` shows them; ``gato data NAME --episodes N`` runs one. BabyAI (any level,
the BabyAI bot) lives in :mod:`gato.data.babyai`; the recipes here share one driver,
:func:`generate`, which plays the expert for ``N`` episodes (seeds ``seed .. seed+N-1``) and a
uniform-random policy for the reference return (seeds from ``seed + 10**9``), in worker
processes, and records both means and spreads in the dataset's metadata (``ref_max_score`` /
``ref_min_score`` for ``minari.get_normalized_score``).

Deterministic experts visit a narrow band of states, and a cloned policy that drifts out of it
has never seen how to come back. With ``action_noise`` > 0 the env executes a perturbed action
while the dataset records the expert's own choice for the state (DART, Laskey et al. 2017): the
data then shows recoveries. The expert reference return is then measured on separate, clean
expert episodes.

Environments and experts are named by ``"module:attribute"`` strings, so listing the recipes
imports nothing heavy and a missing optional dependency (box2d, mujoco, ale-py,
stable-baselines3) is reported with the extra that installs it.
"""

from __future__ import annotations

import collections
import dataclasses
import importlib
import importlib.util
import multiprocessing
import time
import warnings
from typing import Any

import gymnasium as gym
import numpy as np

from gato.data.babyai import GenerationReport, mean_std

__all__ = ["RECIPES", "MissingDependencyError", "Recipe", "generate", "recipe_for_dataset"]

_REFERENCE_SEED_OFFSET = 1_000_000_000


class MissingDependencyError(ImportError):
    """A recipe needs an optional package that is not installed."""


@dataclasses.dataclass(frozen=True)
class Recipe:
    """How to make one expert dataset.

    Attributes:
        name: the recipe's name on the command line.
        env_id: Gymnasium id the env is made from (with ``env_kwargs``), unless ``make_env``.
        expert: ``"module:Class"``; ``Class(env)`` is the expert, ``expert(obs)`` an action,
            ``expert.reset(seed=...)`` is called after every ``env.reset(seed=...)``.
        summary: one line for ``gato data list``.
        expert_kind: names the dataset: ``<name>/<expert_kind>-v0``.
        episodes: default number of expert episodes.
        env_kwargs: keyword arguments of ``gym.make``.
        make_env: ``"module:function"`` building the env (wrappers and all) instead of
            ``gym.make(env_id, **env_kwargs)``.
        requires: importable modules the recipe needs, with the pip extra that installs them.
        extra: that extra's name.
        prepare: ``"module:function"`` run once in the parent before workers start (e.g. train
            and cache an expert), called with ``env_id``.
        reference_episodes: random-policy episodes for the reference return.
        env_note: ``"module:STRING"`` saying how observations are made, for the dataset description.
        max_episode_steps: cap on episode length (None: the env's own limit).
        action_noise: perturbation of the executed actions while recording (the stored action is
            the expert's): discrete, a uniformly random action with this probability; Box,
            Gaussian noise of this std times half the bound range, clipped to the bounds.
        field_overrides: how gato should read the observations by default, stored in the
            dataset's metadata (``gato_field_overrides``; ``ControlTask`` applies it).
    """

    name: str
    env_id: str
    expert: str
    summary: str
    expert_kind: str = "scripted"
    episodes: int = 100
    env_kwargs: dict = dataclasses.field(default_factory=dict)
    make_env: str | None = None
    requires: tuple[str, ...] = ()
    extra: str | None = None
    prepare: str | None = None
    reference_episodes: int = 100
    env_note: str | None = None
    field_overrides: dict = dataclasses.field(default_factory=dict)
    max_episode_steps: int | None = None
    action_noise: float = 0.0

    @property
    def dataset_id(self) -> str:
        """Default Minari id, e.g. ``cartpole/scripted-v0``."""
        return f"{self.name}/{self.expert_kind}-v0"

    def check_dependencies(self) -> None:
        """Raise :class:`MissingDependencyError` naming the extra if a needed module is missing."""
        missing = [m for m in self.requires if importlib.util.find_spec(m) is None]
        if missing:
            raise MissingDependencyError(
                f"recipe {self.name!r} needs {', '.join(missing)}: install it with "
                f"`.venv/bin/pip install -e \".[{self.extra}]\"` (or the 'all' extra)."
            )

    def build_env(self, render_mode: str | None = None, max_episode_steps: int | None = None) -> gym.Env:
        """A fresh environment of this recipe (``max_episode_steps`` shortens its episodes)."""
        self.check_dependencies()
        if self.make_env:
            return _resolve(self.make_env)(render_mode=render_mode, max_episode_steps=max_episode_steps)
        return gym.make(self.env_id, render_mode=render_mode, max_episode_steps=max_episode_steps, **self.env_kwargs)


RECIPES: dict[str, Recipe] = {r.name: r for r in (
    Recipe("cartpole", "CartPole-v1", "gato.data.experts.classic:CartPoleExpert",
           "CartPole-v1, linear balance controller (500 every episode)", episodes=100, action_noise=0.1),
    Recipe("lunarlander", "LunarLander-v3", "gato.data.experts.classic:LunarLanderExpert",
           "LunarLander-v3, gymnasium's lunar_lander.heuristic (~240, crashes now and then)", "heuristic",
           episodes=300, requires=("Box2D",), extra="box2d", action_noise=0.1),
    Recipe("lunarlander-continuous", "LunarLander-v3", "gato.data.experts.classic:LunarLanderExpert",
           "LunarLander-v3 continuous=True, the same heuristic (~285)", "heuristic", episodes=300,
           env_kwargs={"continuous": True}, requires=("Box2D",), extra="box2d", action_noise=0.2),
    Recipe("pendulum", "Pendulum-v1", "gato.data.experts.classic:PendulumExpert",
           "Pendulum-v1, energy swing-up + PD balance (~-150)", episodes=300, action_noise=0.2),
    Recipe("invertedpendulum", "InvertedPendulum-v5", "gato.data.experts.ppo:PPOExpert",
           "InvertedPendulum-v5, SB3 PPO trained here once and cached (1000)", "ppo", episodes=60,
           requires=("mujoco", "stable_baselines3"), extra="mujoco,experts",
           prepare="gato.data.experts.ppo:train_ppo_expert", action_noise=0.1),
    Recipe("breakout", "ALE/Breakout-v5", "gato.data.experts.breakout:BreakoutExpert",
           "ALE/Breakout-v5, 84x84 grey, 4-frame stack; RAM controller with emulator lookahead (~440)",
           episodes=10, make_env="gato.data.experts.breakout:make_breakout_env",
           requires=("ale_py", "cv2"), extra="atari", reference_episodes=20,
           env_note="gato.data.experts.breakout:BREAKOUT_DESCRIPTION",
           # 84x84 -> 28x28: 49 patches, not 441; max keeps the 1-2 pixel ball bright
           field_overrides={"": {"kind": "image", "pool": 3, "pool_mode": "max"}},
           max_episode_steps=4000),  # the expert can circle for ALE's 27,000 steps without scoring
)}
"""The built-in recipes by name (BabyAI is separate: it takes a level)."""


def recipe_for_dataset(dataset_id: str) -> Recipe | None:
    """The recipe whose default dataset id is ``dataset_id``, if any."""
    return next((r for r in RECIPES.values() if r.dataset_id == dataset_id), None)


def _resolve(ref: str):
    module, attr = ref.split(":")
    return getattr(importlib.import_module(module), attr)


# --------------------------------------------------------------------------- workers

_WORKER: dict[tuple, tuple[gym.Env, Any]] = {}


def _worker_init() -> None:
    warnings.filterwarnings("ignore")


def _perturb(action, space: gym.Space, noise: float, rng: np.random.Generator):
    """The action the env executes when recording with ``noise`` (see ``Recipe.action_noise``)."""
    if noise <= 0:
        return action
    if isinstance(space, gym.spaces.Box):
        half = (space.high - space.low) / 2
        return np.clip(action + rng.normal(0.0, noise, space.shape) * half, space.low, space.high).astype(space.dtype)
    return space.sample() if rng.random() < noise else action


def play_out(env: gym.Env, obs, act) -> float:
    """Play ``env`` from observation ``obs`` (just reset) to the episode's end, choosing each
    action with ``act(obs)``; returns the total reward."""
    total, done = 0.0, False
    while not done:
        obs, reward, terminated, truncated, _ = env.step(act(obs))
        total += float(reward)
        done = terminated or truncated
    return total


def _play(job: tuple[str, str, int, int | None, float]) -> tuple[int, Any]:
    """One episode of ``job = (recipe, kind, seed, max_episode_steps, action_noise)``: for kind
    "demo" the episode dict, for "expert" (clean) and "random" the return."""
    name, kind, seed, max_steps, noise = job
    if (name, max_steps) not in _WORKER:
        env = RECIPES[name].build_env(max_episode_steps=max_steps)
        _WORKER[name, max_steps] = (env, _resolve(RECIPES[name].expert)(env))
    env, expert = _WORKER[name, max_steps]
    obs, _ = env.reset(seed=seed)
    env.action_space.seed(seed)
    expert.reset(seed=seed)
    if kind != "demo":
        return seed, play_out(env, obs, (lambda _: env.action_space.sample()) if kind == "random" else expert)
    rng = np.random.default_rng(seed)
    episode = {"seed": seed, "observations": [obs], "actions": [], "rewards": [], "terminations": [],
               "truncations": []}
    done = False
    while not done:
        action = expert(obs)
        obs, reward, terminated, truncated, _ = env.step(_perturb(action, env.action_space, noise, rng))
        episode["observations"].append(obs)
        episode["actions"].append(action)
        episode["rewards"].append(float(reward))
        episode["terminations"].append(bool(terminated))
        episode["truncations"].append(bool(truncated))
        done = terminated or truncated
    return seed, episode


# --------------------------------------------------------------------------- driver


def generate(recipe: str | Recipe, episodes: int | None = None, *, dataset_id: str | None = None, seed: int = 0,
             workers: int = 2, reference_episodes: int | None = None, overwrite: bool = False,
             progress: bool = True, max_episode_steps: int | None = None,
             action_noise: float | None = None) -> GenerationReport:
    """Play ``recipe``'s expert for ``episodes`` episodes and write them as a Minari dataset.

    Episode ``i`` uses ``env.reset(seed=seed + i)``; every episode is written (none is filtered,
    so the reference is the expert's true return). A uniform-random policy plays
    ``reference_episodes`` episodes for the reference return.
    ``max_episode_steps`` (default: the recipe's) cuts episodes short (recorded in the env spec).
    ``action_noise`` (default: the recipe's) perturbs the executed actions (``Recipe.action_noise``);
    then clean expert episodes, on the reference seeds, give the expert's return. Workers are
    spawned processes, so a script calling this needs an ``if __name__ == "__main__":`` guard.

    Raises:
        KeyError: unknown recipe name. MissingDependencyError: its optional packages are missing.
        FileExistsError: the dataset exists and ``overwrite`` is False. ValueError: bad counts.
    """
    from tqdm.auto import tqdm

    from gato.data.writer import local_dataset_exists, validate_dataset_id, write_dataset

    start = time.perf_counter()
    if isinstance(recipe, str):
        if recipe not in RECIPES:
            raise ValueError(f"unknown recipe {recipe!r}; known: babyai, {', '.join(RECIPES)} (see `gato data list`)")
        recipe = RECIPES[recipe]
    recipe.check_dependencies()
    episodes = recipe.episodes if episodes is None else episodes
    max_episode_steps = max_episode_steps or recipe.max_episode_steps
    reference_episodes = recipe.reference_episodes if reference_episodes is None else reference_episodes
    if episodes <= 0 or workers <= 0 or reference_episodes < 0:
        raise ValueError(f"need episodes > 0, workers > 0 and reference_episodes >= 0 "
                         f"(got {episodes}, {workers}, {reference_episodes})")
    dataset_id = dataset_id or recipe.dataset_id
    validate_dataset_id(dataset_id)
    if local_dataset_exists(dataset_id) and not overwrite:
        raise FileExistsError(f"Minari dataset {dataset_id!r} already exists; pass --overwrite to replace it "
                              "or choose another --dataset_id.")
    if recipe.prepare:
        _resolve(recipe.prepare)(recipe.env_id)
    probe = recipe.build_env(max_episode_steps=max_episode_steps)
    env_spec, observation_space, action_space = probe.spec, probe.observation_space, probe.action_space
    probe.close()

    noise = recipe.action_noise if action_noise is None else float(action_noise)
    refs = [seed + _REFERENCE_SEED_OFFSET + j for j in range(reference_episodes)]
    jobs = [(recipe.name, "random", s, max_episode_steps, 0.0) for s in refs]
    if noise > 0:  # the recorded episodes are perturbed: measure the clean expert apart
        jobs += [(recipe.name, "expert", s, max_episode_steps, 0.0) for s in refs]
    jobs += [(recipe.name, "demo", seed + i, max_episode_steps, noise) for i in range(episodes)]
    returns: dict[str, list] = {"random": [], "expert": [], "demo": []}
    pool = multiprocessing.get_context("spawn").Pool(min(workers, len(jobs)), initializer=_worker_init)
    bar = tqdm(total=len(jobs), desc=f"{recipe.name} expert + random", unit="ep", disable=not progress)
    try:
        # Ordered results: demonstrations come back in seed order.
        results = pool.imap(_play, jobs, chunksize=max(1, min(8, len(jobs) // (8 * workers))))
        for (_, kind, *_), (_, payload) in zip(jobs, results):
            returns[kind].append(payload)
            bar.update(1)
    finally:
        bar.close()
        pool.terminate()
        pool.join()

    written = returns["demo"]
    demo_returns = [sum(ep["rewards"]) for ep in written]
    expert_returns = returns["expert"] if noise > 0 else demo_returns
    expert_mean, expert_std = mean_std(expert_returns)
    random_mean, random_std = mean_std(returns["random"])
    have_refs = bool(returns["random"]) and bool(expert_returns)
    noise_note = (
        f"While recording, the env executed the expert's action perturbed (action_noise={noise}: "
        + ("Gaussian noise of that std times half the action range" if isinstance(action_space, gym.spaces.Box)
           else "a uniformly random action with that probability")
        + ") and the dataset stores the expert's own action for each state (DART-style data, showing "
        f"recoveries); these episodes return {np.mean(demo_returns):.3f} on average. "
        if noise > 0 else "")
    description = (
        f"{recipe.summary}. {episodes} expert episodes ({recipe.expert}), episode i played from "
        f"env.reset(seed={seed}+i); observations stored losslessly. " + noise_note
        + (_resolve(recipe.env_note) + " " if recipe.env_note else "")
        + (f"ref_max_score = mean return of the {'clean ' if noise > 0 else ''}expert ({expert_mean:.3f} +- "
           f"{expert_std:.3f} over {len(expert_returns)} episodes); ref_min_score = mean return of a uniform-random "
           f"policy over {len(returns['random'])} episodes ({random_mean:.3f} +- {random_std:.3f})."
           if have_refs else "No reference scores were computed.")
    )
    extra = {
        "recipe": recipe.name,
        "expert_mean_return": expert_mean,
        "expert_std_return": expert_std,
        "num_expert_episodes": len(expert_returns),
        "action_noise": noise,
        "demo_mean_return": float(np.mean(demo_returns)),
        "generator": {"recipe": recipe.name, "expert": recipe.expert, "seed": seed},
    }
    if recipe.field_overrides:
        extra["gato_field_overrides"] = recipe.field_overrides
    if have_refs:
        extra.update(random_mean_return=random_mean, random_std_return=random_std,
                     num_random_episodes=len(returns["random"]))
    write_dataset(
        dataset_id, written, env_id=env_spec, observation_space=observation_space, action_space=action_space,
        ref_min_score=random_mean if have_refs else None, ref_max_score=expert_mean if have_refs else None,
        num_episodes_average_score=len(returns["random"]) if have_refs else None, description=description,
        algorithm_name=recipe.expert, extra_metadata=extra, jpeg_encoding=False, overwrite=overwrite,
    )
    return GenerationReport(
        dataset_id=dataset_id, episodes_written=len(written), episodes_skipped=0,
        skip_reasons=collections.Counter(), expert_mean_return=expert_mean,
        expert_std_return=expert_std, random_mean_return=random_mean, random_std_return=random_std,
        seconds=time.perf_counter() - start, env_id=recipe.env_id, attempts=len(written),
    )

