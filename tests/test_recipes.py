"""Data recipes: each plays its real expert in its real env into a real Minari dataset."""

from __future__ import annotations

from argparse import Namespace

import minari
import numpy as np
import pytest

from gato.cli import main
from gato.data.recipes import RECIPES, MissingDependencyError, Recipe, generate
from gato.tasks.control_task import ControlTask

# (episodes, max_episode_steps): enough for the expert to show, short enough for CI.
SIZES = {
    "cartpole": (3, None),
    "lunarlander": (3, None),
    "lunarlander-continuous": (3, None),
    "pendulum": (3, None),
    "invertedpendulum": (2, None),  # trains the PPO expert once per session (~15 s)
    "breakout": (1, 400),
}


@pytest.fixture(scope="session", autouse=True)
def expert_cache(tmp_path_factory):
    """Trained experts are cached in a session folder, never in the user's home."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GATO_CACHE_DIR", str(tmp_path_factory.mktemp("gato-cache")))
        yield


def test_every_recipe_is_tested():
    assert set(SIZES) == set(RECIPES)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SIZES))
def test_recipe_writes_expert_data_that_beats_random(name, capsys):
    episodes, max_steps = SIZES[name]
    report = generate(name, episodes, reference_episodes=3, workers=1, progress=False, max_episode_steps=max_steps)
    recipe = RECIPES[name]
    assert report.dataset_id == recipe.dataset_id and report.episodes_written == episodes

    dataset = minari.load_dataset(recipe.dataset_id)
    meta = dataset.storage.metadata
    assert dataset.total_episodes == episodes
    assert meta["ref_max_score"] == pytest.approx(report.expert_mean_return)
    assert meta["ref_min_score"] == pytest.approx(report.random_mean_return)
    assert {"expert_std_return", "random_std_return", "recipe"} <= set(meta)
    assert report.expert_mean_return > report.random_mean_return

    # The env is recovered with its kwargs and wrappers, and episode 0 starts where seed 0 starts:
    # observations are stored exactly (Atari frames losslessly, not JPEG).
    env = dataset.recover_environment()
    assert env.observation_space == dataset.observation_space and env.action_space == dataset.action_space
    first = next(dataset.iterate_episodes([0]))
    obs, _ = env.reset(seed=0)
    np.testing.assert_array_equal(first.observations[0], obs)

    task = ControlTask(name, None, recipe.dataset_id, 256, Namespace(patch_size=4))
    assert task.tokens_per_timestep <= 64  # Breakout's 84x84 frames are pooled (metadata override)
    # `gato inspect` reads the dataset as training does, recommended overrides included.
    assert main(["inspect", recipe.dataset_id]) == 0
    assert f"tokens per timestep: {task.tokens_per_timestep}" in capsys.readouterr().out


def test_continuous_lander_keeps_its_kwargs():
    generate("lunarlander-continuous", 1, reference_episodes=1, workers=1, progress=False)
    env = minari.load_dataset("lunarlander-continuous/heuristic-v0").recover_environment()
    assert env.spec.kwargs["continuous"] is True and env.action_space.shape == (2,)


def test_breakout_launches_the_ball_by_itself_and_keeps_it_through_the_spec():
    import gymnasium as gym

    from gato.data.experts.breakout import make_breakout_env

    env = gym.make(make_breakout_env(max_episode_steps=2000).spec)  # as evaluation rebuilds it
    assert env.spec.additional_wrappers[-1].name == "LaunchBall"
    ball_y = lambda: int(env.unwrapped.ale.getRAM()[101])  # noqa: E731
    env.reset(seed=0)
    assert ball_y() != 0
    lives, lost = 5, 0
    for _ in range(2000):  # NOOP only, never FIRE: every life is lost, each new ball is launched for us
        _, _, terminated, truncated, info = env.step(0)
        if info["lives"] < lives:
            lives, lost = info["lives"], lost + 1
            assert terminated or ball_y() != 0
        if terminated or truncated:
            break
    assert terminated and lost == 5


def test_missing_dependency_names_the_extra():
    recipe = Recipe("needs-missing", "CartPole-v1", "gato.data.experts.classic:CartPoleExpert", "test",
                    requires=("surely_not_installed_module",), extra="box2d")
    with pytest.raises(MissingDependencyError, match=r'pip install -e "\.\[box2d\]"'):
        generate(recipe, 1, progress=False)


def test_unknown_recipe_and_taken_id_are_clear_errors():
    with pytest.raises(ValueError, match="unknown recipe 'cartpol'.*gato data list"):
        generate("cartpol", 1)
    generate("cartpole", 1, reference_episodes=0, workers=1, progress=False)
    with pytest.raises(FileExistsError, match="--overwrite"):
        generate("cartpole", 1, workers=1, progress=False)


def test_data_list_shows_every_recipe(capsys):
    from gato.cli import main

    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    for recipe in RECIPES.values():
        assert recipe.name in out and recipe.dataset_id in out


def test_noisy_recording_stores_the_experts_own_actions():
    """With action_noise the env runs perturbed actions, but every stored action is what the
    expert chose in the stored state; the reference return comes from clean expert episodes."""
    import gymnasium as gym

    from gato.data.experts.classic import PendulumExpert

    report = generate("pendulum", 2, reference_episodes=2, workers=1, progress=False, action_noise=0.3,
                      max_episode_steps=50)
    dataset = minari.load_dataset("pendulum/scripted-v0")
    meta = dataset.storage.metadata
    assert meta["action_noise"] == 0.3 and meta["ref_max_score"] == pytest.approx(report.expert_mean_return)
    assert meta["demo_mean_return"] != pytest.approx(report.expert_mean_return)
    expert = PendulumExpert(gym.make("Pendulum-v1"))
    for episode in dataset.iterate_episodes():
        chosen = np.stack([expert(obs) for obs in episode.observations[:-1]])
        np.testing.assert_allclose(chosen, episode.actions, rtol=0, atol=1e-6)
        # ... and the states really were perturbed: replaying the stored actions diverges.
        env = gym.make("Pendulum-v1", max_episode_steps=50)
        obs, _ = env.reset(seed=int(episode.id))
        replay = [obs] + [env.step(a)[0] for a in episode.actions]
        assert not np.allclose(np.stack(replay), episode.observations, atol=1e-4)
