"""Where training windows fall in their episodes (``WindowSampler.window_bounds``, ``--window_sampling``)."""

from argparse import Namespace

import gymnasium as gym
import numpy as np
import pytest

from gato.tasks.windows import WindowSampler


def coverage(sampling: str, length: int, room: int, draws: int = 40_000) -> np.ndarray:
    """How many of ``draws`` windows hold each timestep of an episode of ``length``."""
    sampler, rng = WindowSampler(window_sampling=sampling), np.random.default_rng(0)
    counts = np.zeros(length)
    for _ in range(draws):
        start, k = sampler.window_bounds(length, room, rng)
        assert 1 <= k <= room and 0 <= start and start + k <= length
        counts[start : start + k] += 1
    return counts


def test_even_windows_hold_every_timestep_equally_often():
    counts = coverage("even", 60, 12)
    assert counts.max() / counts.min() < 1.1
    # "fit": the first timestep is in 1 start of 49, a middle one in 12
    fit = coverage("fit", 60, 12)
    assert fit[30] / fit[0] > 8


@pytest.mark.parametrize("sampling", ["fit", "even"])
def test_an_episode_that_fits_is_one_whole_window(sampling):
    sampler, rng = WindowSampler(window_sampling=sampling), np.random.default_rng(0)
    assert {sampler.window_bounds(9, 12, rng) for _ in range(50)} == {(0, 9)}


def test_an_unknown_window_sampling_is_refused():
    with pytest.raises(ValueError, match="window_sampling must be one of"):
        WindowSampler(window_sampling="uniform")


def test_even_windows_of_a_real_task_are_runs_of_its_episodes_and_start_them_more_often(cartpole_dataset):
    """Each row is consecutive timesteps of one episode; more rows begin at an episode's first timestep."""
    from gato.tasks.control_task import ControlTask
    from gato.vocab import Vocab

    firsts = {}
    for sampling in ("fit", "even"):
        task = ControlTask("cartpole", gym.make("CartPole-v1"), cartpole_dataset, 24, Namespace(patch_size=4),
                           window_sampling=sampling)
        episodes, S = task.episodes, task.tokens_per_timestep
        batch = task.sample_batch(600, Vocab(), 24, np.random.default_rng(1))
        rows = [r[r != Vocab().pad].reshape(-1, S) for r in batch.tokens]
        episode_of = np.repeat(np.arange(len(episodes.lengths)), episodes.lengths)
        begins = 0
        for row in rows:
            lo = int(np.flatnonzero((episodes.steps == row[0]).all(1))[0])
            assert (episodes.steps[lo : lo + len(row)] == row).all()
            assert episode_of[lo] == episode_of[lo + len(row) - 1]  # never across two episodes
            begins += lo in set(episodes.starts[:-1].tolist())
        firsts[sampling] = begins / len(rows)
    # 4 timesteps a context, episodes of 11-25: "fit" begins 1 window in ~14 at step 0, "even" ~3 in 17
    assert firsts["even"] > 1.8 * firsts["fit"]


def test_the_choice_is_checked_and_kept_in_the_tasks_spec(cartpole_dataset, session_minari_root, monkeypatch):
    from gato.tasks.control_task import ControlTask
    from gato.training.arguments import TrainingArgs

    with pytest.raises(ValueError, match="--window_sampling must be fit or even"):
        TrainingArgs(window_sampling="uniform").validate()
    task = ControlTask("cartpole", None, cartpole_dataset, 24, window_sampling="even")
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(session_minari_root))  # from_spec loads the dataset by id
    assert ControlTask.from_spec(task.spec(), vocab=task.codec.vocab).windows.window_sampling == "even"
