"""The one generation driver (gato.data.generation.generate_many): several sources in one pool of real worker
processes, the datasets it writes equal to those made one at a time, and the BabyAI bot's replan-loop guard."""

from __future__ import annotations

import signal

import minari
import numpy as np
import pytest

from gato.data import generation
from gato.data.babyai import REPLAN_SUBGOAL_LIMIT, _bot, babyai_job, generate_babyai
from gato.data.generation import DatasetJob, EpisodeDropped, generate_many
from gato.data.recipes import RECIPES, _RecipeSource
from gato.envs import make_env, play_episode

LOOPING_SEEDS = (4, 7)
"""UnlockToUnlock seeds among 0-8 on which minigrid 3.2.0's bot loops in replan (the others it solves)."""


class _Deadline(BaseException):
    pass


def _within(seconds: float):
    """Fail a test that would otherwise hang (an unguarded replan loop never returns)."""

    def fire(signum, frame):
        raise _Deadline(f"still running after {seconds}s")

    signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)


def _episodes(dataset_id: str):
    dataset = minari.load_dataset(dataset_id)
    seeds = [int(m["seed"]) for m in dataset.storage.get_episode_metadata(range(dataset.total_episodes))]
    return seeds, [np.asarray(e.actions) for e in dataset.iterate_episodes()], dataset.storage.metadata


def test_a_looping_bot_step_drops_the_episode_and_solved_ones_pass_the_guard():
    env = make_env("BabyAI-UnlockToUnlock-v0")
    _within(20.0)
    try:
        for seed in range(9):
            act = generation.acting_after_reset(lambda: _bot(env, seed, 0.0))  # noqa: B023 (called in the loop)
            if seed in LOOPING_SEEDS:
                with pytest.raises(EpisodeDropped, match=f"over {REPLAN_SUBGOAL_LIMIT} subgoals") as dropped:
                    play_episode(env, act, seed)
                assert dropped.value.reason == "replan_loop"
            else:
                assert play_episode(env, act, seed).total > 0
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    env.close()


@pytest.mark.slow
def test_two_sources_share_one_pool_and_write_what_each_makes_alone(monkeypatch):
    """A BabyAI level (with bot loops to drop) and the CartPole recipe (clean expert references) in one pool of two
    workers: both written, each dataset episode for episode the one made alone, its drops counted with their
    reason, and one pool started for both."""
    started = []
    start_pool = generation._start_pool
    monkeypatch.setattr(generation, "_start_pool", lambda workers, sources: started.append(len(sources))
                        or start_pool(workers, sources))
    cartpole = _RecipeSource(RECIPES["cartpole"], 60, 0.1)
    jobs = [babyai_job("UnlockToUnlock", 7, reference_episodes=3),
            DatasetJob(cartpole, 3, "test/cartpole-v0", reference_episodes=2)]
    unlock, pole = generate_many(jobs, workers=2, progress=False)
    assert started == [2]  # one pool, told both sources

    assert unlock.episodes_written == 7 and unlock.attempts == 9
    assert unlock.skip_reasons == {"replan_loop": len(LOOPING_SEEDS)}
    seeds, actions, meta = _episodes(unlock.dataset_id)
    assert seeds == [s for s in range(9) if s not in LOOPING_SEEDS]
    assert meta["skip_reasons"] == {"replan_loop": 2} and meta["num_random_episodes"] == 3
    assert pole.episodes_written == 3 and pole.attempts == 3 and not pole.skip_reasons
    pole_seeds, pole_actions, pole_meta = _episodes("test/cartpole-v0")
    assert pole_seeds == [0, 1, 2] and pole_meta["num_expert_episodes"] == 2  # clean expert references
    assert pole.expert_mean_return > pole.random_mean_return

    alone = generate_babyai("UnlockToUnlock", 7, dataset_id="test/unlock-alone-v0", workers=1, reference_episodes=3,
                            progress=False)
    assert (alone.episodes_written, alone.attempts, alone.skip_reasons) == (7, 9, unlock.skip_reasons)
    assert alone.random_mean_return == unlock.random_mean_return
    alone_seeds, alone_actions, _ = _episodes("test/unlock-alone-v0")
    assert alone_seeds == seeds and all(np.array_equal(a, b) for a, b in zip(alone_actions, actions))
    pole_alone = generation.generate(cartpole, 3, dataset_id="test/cartpole-alone-v0", workers=1,
                                     reference_episodes=2, progress=False)
    assert pole_alone.expert_mean_return == pole.expert_mean_return
    assert all(np.array_equal(a, b) for a, b in zip(_episodes("test/cartpole-alone-v0")[1], pole_actions))


def test_jobs_are_all_checked_before_any_episode_is_played(monkeypatch):
    monkeypatch.setattr(generation, "_start_pool", lambda *a: pytest.fail("a pool was started"))
    job = babyai_job("GoToRedBall", 2)
    with pytest.raises(ValueError, match="given twice"):
        generate_many([job, job], progress=False)
    with pytest.raises(ValueError, match="episodes must be a positive int"):
        generate_many([job, DatasetJob(job.source, 0, "test/none-v0")], progress=False)
    assert generate_many([], progress=False) == []
