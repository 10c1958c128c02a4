"""Data recipes: an environment plus an expert that plays it, written as a local Minari dataset.

``gato data list`` shows them; ``gato data NAME --episodes N`` runs one. BabyAI (any level,
the BabyAI bot) lives in :mod:`gato.data.babyai`. Both are sources of one driver,
:func:`gato.data.generation.generate`: :func:`generate` here plays the expert for ``N`` episodes
(seeds ``seed .. seed+N-1``) and a uniform-random policy for the reference return (seeds from
``seed + 10**9``), in worker processes, and records both means and spreads in the dataset's
metadata (``ref_max_score`` / ``ref_min_score`` for ``minari.get_normalized_score``).

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

import dataclasses
import importlib
import importlib.util
from typing import Any

import gymnasium as gym
import numpy as np

from gato.data.generation import DEMO, EXPERT, RANDOM, Collected, DatasetMaker, GenerationReport, acting_after_reset
from gato.data.generation import generate as generate_from
from gato.envs import Episode, play_episode

__all__ = ["MAKER", "RECIPES", "MissingDependencyError", "Recipe", "RecipeMaker", "generate", "recipe_for_dataset"]


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
        dataset: the default dataset id, when not ``<name>/<expert_kind>-v0`` (Meta-World's
            ``metaworld/<task>-scripted-v0``).
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
    dataset: str | None = None

    @property
    def dataset_id(self) -> str:
        """Default Minari id, e.g. ``cartpole/scripted-v0``."""
        return self.dataset or f"{self.name}/{self.expert_kind}-v0"

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
    """The built-in recipe whose default dataset id is ``dataset_id``, if any (Meta-World's tasks are
    ``gato.data.experts.metaworld``'s; :func:`gato.data.catalogue.maker_for` knows every plug-in)."""
    return next((r for r in RECIPES.values() if r.dataset_id == dataset_id), None)


def _resolve(ref: str):
    module, attr = ref.split(":")
    return getattr(importlib.import_module(module), attr)


# --------------------------------------------------------------------------- source


def _perturb(action, space: gym.Space, noise: float, rng: np.random.Generator):
    """The action the env executes when recording with ``noise`` > 0 (see ``Recipe.action_noise``)."""
    if isinstance(space, gym.spaces.Box):
        half = (space.high - space.low) / 2
        return np.clip(action + rng.normal(0.0, noise, space.shape) * half, space.low, space.high).astype(space.dtype)
    return space.sample() if rng.random() < noise else action


def _reset(expert, seed: int):
    """``expert``, reset for the episode of ``seed``."""
    expert.reset(seed=seed)
    return expert


@dataclasses.dataclass(frozen=True)
class _RecipeSource:
    """A recipe's expert demonstrations (a :class:`gato.data.generation.Source`)."""

    recipe: Recipe
    max_episode_steps: int | None
    noise: float
    episode_timeout_s = None
    skips_failures = False  # every episode is written, so the reference is the expert's true return

    @property
    def env_id(self) -> str:
        """The recipe's Gymnasium id."""
        return self.recipe.env_id

    @property
    def label(self) -> str:
        """Progress bar name."""
        return f"{self.recipe.name} expert + random"

    @property
    def expert(self) -> str:
        """The expert, for warnings."""
        return f"The {self.recipe.name} expert"

    @property
    def clean_expert_reference(self) -> bool:
        """With action noise the recorded episodes are perturbed: the expert is measured apart."""
        return self.noise > 0

    def prepare(self) -> tuple[Any, gym.Space, gym.Space]:
        """Run the recipe's ``prepare`` (e.g. train its expert); the env's spec (kwargs and wrappers) and spaces."""
        if self.recipe.prepare:
            _resolve(self.recipe.prepare)(self.recipe.env_id)
        probe = self.recipe.build_env(max_episode_steps=self.max_episode_steps)
        env_spec, observation_space, action_space = probe.spec, probe.observation_space, probe.action_space
        probe.close()
        return env_spec, observation_space, action_space

    def player(self):
        """Plays the expert (demonstrations perturbed by the noise, clean references) and uniform-random references."""
        env = self.recipe.build_env(max_episode_steps=self.max_episode_steps)
        expert = _resolve(self.recipe.expert)(env)

        def play(kind: str, seed: int) -> Episode:
            if kind == RANDOM:
                return play_episode(env, lambda _: env.action_space.sample(), seed)
            act = acting_after_reset(lambda: _reset(expert, seed))
            if kind == EXPERT or self.noise <= 0:
                return play_episode(env, act, seed, record=kind == DEMO)
            rng = np.random.default_rng(seed)
            return play_episode(env, act, seed, record=True,
                                execute=lambda action: _perturb(action, env.action_space, self.noise, rng))

        return play

    def succeeded(self, episode: Episode) -> bool:
        """Every episode is kept."""
        return True

    def metadata(self, collected: Collected, action_space: gym.Space) -> dict[str, Any]:
        """Description, expert name and the extra keys (returns, noise, field overrides)."""
        recipe, noise, demo_returns = self.recipe, self.noise, collected.demo_returns
        (expert_mean, expert_std), (random_mean, random_std) = collected.expert_stats, collected.random_stats
        noise_note = (
            f"While recording, the env executed the expert's action perturbed (action_noise={noise}: "
            + ("Gaussian noise of that std times half the action range" if isinstance(action_space, gym.spaces.Box)
               else "a uniformly random action with that probability")
            + ") and the dataset stores the expert's own action for each state (DART-style data, showing "
            f"recoveries); these episodes return {np.mean(demo_returns):.3f} on average. "
            if noise > 0 else "")
        description = (
            f"{recipe.summary}. {len(collected.demos)} expert episodes ({recipe.expert}), episode i played from "
            f"env.reset(seed={collected.seed}+i); observations stored losslessly. " + noise_note
            + (_resolve(recipe.env_note) + " " if recipe.env_note else "")
            + (f"ref_max_score = mean return of the {'clean ' if noise > 0 else ''}expert ({expert_mean:.3f} +- "
               f"{expert_std:.3f} over {len(collected.expert_returns)} episodes); ref_min_score = mean return of a "
               f"uniform-random policy over {len(collected.random_returns)} episodes ({random_mean:.3f} +- "
               f"{random_std:.3f})." if collected.have_refs else "No reference scores were computed.")
        )
        extra = {
            "recipe": recipe.name, "expert_mean_return": expert_mean, "expert_std_return": expert_std,
            "num_expert_episodes": len(collected.expert_returns), "action_noise": noise,
            "demo_mean_return": float(np.mean(demo_returns)),
            "generator": {"recipe": recipe.name, "expert": recipe.expert, "seed": collected.seed},
        }
        if recipe.field_overrides:
            extra["gato_field_overrides"] = recipe.field_overrides
        if collected.have_refs:
            extra.update(random_mean_return=random_mean, random_std_return=random_std,
                         num_random_episodes=len(collected.random_returns))
        return {"description": description, "algorithm_name": recipe.expert, "extra_metadata": extra}


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
    The driver is :func:`gato.data.generation.generate`.

    Raises:
        ValueError: unknown recipe name, bad counts. MissingDependencyError: its optional packages
        are missing. FileExistsError: the dataset exists and ``overwrite`` is False.
    """
    if isinstance(recipe, str):
        if recipe not in RECIPES:
            raise ValueError(f"unknown recipe {recipe!r}; known: babyai, {', '.join(RECIPES)} (see `gato data list`)")
        recipe = RECIPES[recipe]
    recipe.check_dependencies()
    noise = recipe.action_noise if action_noise is None else float(action_noise)
    source = _RecipeSource(recipe, max_episode_steps or recipe.max_episode_steps, noise)
    return generate_from(source, recipe.episodes if episodes is None else episodes,
                         dataset_id=dataset_id or recipe.dataset_id, seed=seed, workers=workers,
                         reference_episodes=recipe.reference_episodes if reference_episodes is None
                         else reference_episodes, overwrite=overwrite, progress=progress)


class RecipeMaker(DatasetMaker):
    """Recipes in the catalogue (gato.data.catalogue): each recipe's default dataset id, its expert's episodes.
    ``recipe_of`` finds the recipe of an id (the built-in ones: :func:`recipe_for_dataset`)."""

    def __init__(self, name: str, recipe_of, rows):
        self.name, self._recipe_of, self._rows = name, recipe_of, rows

    def owns(self, dataset_id: str) -> bool:
        return self._recipe_of(dataset_id) is not None

    def default_episodes(self, dataset_id: str) -> int | None:
        return self._recipe_of(dataset_id).episodes

    def describe(self, dataset_id: str) -> str:
        return f"{self._recipe_of(dataset_id).name} expert"

    def make(self, dataset_id: str, episodes: int, progress: bool = True) -> GenerationReport:
        return generate(self._recipe_of(dataset_id), episodes, progress=progress)

    def command(self, dataset_id: str) -> str:
        return f"`gato data {self._recipe_of(dataset_id).name} --overwrite`"

    def list_rows(self) -> list[dict]:
        return self._rows()


MAKER = RecipeMaker("recipes", recipe_for_dataset, lambda: [
    {"recipe": r.name, "dataset id": r.dataset_id, "extra": r.extra or "", "what": r.summary}
    for r in RECIPES.values()])
"""The built-in recipes, as :mod:`gato.data.catalogue` lists them."""
