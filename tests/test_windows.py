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


def test_an_episode_prefix_keeps_training_windows_in_each_episodes_first_timesteps(cartpole_dataset):
    """With ``episode_prefix=6`` every row lies in its episode's first 6 timesteps, and episodes are drawn by the
    part of them trained on (here equal parts: about equally often); without it, rows reach beyond."""
    from gato.tasks.control_task import ControlTask
    from gato.vocab import Vocab

    ends, drawn = {}, {}
    for prefix in (0, 6):
        task = ControlTask("cartpole", gym.make("CartPole-v1"), cartpole_dataset, 24, Namespace(patch_size=4),
                           episode_prefix=prefix)
        episodes, S = task.episodes, task.tokens_per_timestep
        assert episodes.lengths.min() > 6  # so the prefix cuts every episode
        batch = task.sample_batch(800, Vocab(), 24, np.random.default_rng(2))
        episode_of = np.repeat(np.arange(len(episodes.lengths)), episodes.lengths)
        last, counts = [], np.zeros(len(episodes.lengths))
        for r in batch.tokens:
            row = r[r != Vocab().pad].reshape(-1, S)
            lo = int(np.flatnonzero((episodes.steps == row[0]).all(1))[0])
            last.append(lo + len(row) - 1 - episodes.starts[episode_of[lo]])  # the row's last timestep, in its episode
            counts[episode_of[lo]] += 1
        ends[prefix], drawn[prefix] = max(last), counts / counts.sum()
    assert ends[6] == 5 and ends[0] > 5
    share = 1 / len(drawn[6])
    assert np.abs(drawn[6] - share).max() < 0.5 * share  # ~equal; by length (11-25 timesteps) without the prefix
    lengths = task.episodes.lengths
    assert np.corrcoef(drawn[0], lengths)[0, 1] > 0.5


def test_an_episode_prefix_is_checked_and_kept_in_the_tasks_spec(cartpole_dataset, session_minari_root,
                                                                  monkeypatch):
    from gato.tasks.control_task import ControlTask
    from gato.training.arguments import TrainingArgs

    with pytest.raises(ValueError, match="--episode_prefix must be >= 0"):
        TrainingArgs(episode_prefix=-1).validate()
    with pytest.raises(ValueError, match="episode_prefix must be >= 0"):
        WindowSampler(episode_prefix=-5)
    task = ControlTask("cartpole", None, cartpole_dataset, 24, episode_prefix=8)
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(session_minari_root))
    for with_data in (True, False):  # rebuilt from its dataset, and from the spec alone (a checkpoint's task)
        rebuilt = ControlTask.from_spec(task.spec(), vocab=task.codec.vocab, with_data=with_data)
        assert rebuilt.windows.episode_prefix == 8
