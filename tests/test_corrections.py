"""DAgger: an expert (the BabyAI bot, a recipe's expert) labels the states a policy reaches;
the labels join the task's data."""

from argparse import Namespace

import gymnasium as gym
import numpy as np
import pytest


def _fresh_babyai_task(dataset):
    from gato.tasks.control_task import ControlTask

    # its own task: collecting corrections changes the task's data
    return ControlTask("babyai", gym.make("BabyAI-GoToRedBall-v0"), dataset, context_len=128,
                       args=Namespace(patch_size=4), eval_envs=2)


@pytest.mark.slow
def test_bot_labels_the_policys_states_and_they_join_the_data(babyai_dataset, tiny_policy):
    from minigrid.utils.baby_ai_bot import BabyAIBot

    from gato.seeds import CORRECTIONS

    task = _fresh_babyai_task(babyai_dataset)
    model = tiny_policy()
    codec = task.encode_for(model.vocab)
    before_eps, before_rows = len(task.raw), len(task.episodes.steps)

    stats = task.collect_corrections(model, 4)

    assert stats["episodes"] >= 4 and stats["steps"] > 0 and 0.0 <= stats["disagreement"] <= 1.0
    new = task.raw.actions[before_eps:]
    assert len(new) == stats["episodes"] and sum(len(a) for a in new) == stats["steps"]
    assert len(task.episodes.lengths) == before_eps + stats["episodes"]
    assert len(task.episodes.steps) == before_rows + stats["steps"]  # encoded with the same codec
    assert task.codec is codec

    # the first label of episode 0 is the bot's own first action in that level
    env = gym.make("BabyAI-GoToRedBall-v0")
    obs, _ = env.reset(seed=CORRECTIONS.start)  # round 0 plays the block's first seeds
    assert new[0][0] == int(BabyAIBot(env.unwrapped).replan())
    first = task.raw.observations[before_eps]
    np.testing.assert_array_equal(first["image"][0], obs["image"])
    assert first["mission"][0] == obs["mission"]

    # the policy's own actions are its history, the bot's are the targets
    taken = task.raw.taken[before_eps:]
    assert task.raw.taken[:before_eps] == [None] * before_eps
    assert any((t != a).any() for t, a in zip(taken, new))  # the untrained policy strays somewhere
    enc, lo = task.episodes, task.episodes.starts[before_eps]
    np.testing.assert_array_equal(enc.inputs[:lo], enc.steps[:lo])  # demonstrations: as they are
    np.testing.assert_array_equal(enc.inputs[lo:, :-1], enc.steps[lo:, :-1])  # same observations
    taken_all = np.concatenate(taken)
    np.testing.assert_array_equal(enc.inputs[lo:, -1:], codec.encode_actions(taken_all, len(taken_all)))
    batch = task.sample_batch(64, model.vocab, 128, np.random.default_rng(0))
    differ = batch.inputs != batch.tokens
    assert differ.any() and batch.targets[differ].all()  # only action positions differ


def test_a_recipes_expert_labels_the_policys_states(tiny_policy):
    from gato.data.experts.classic import PendulumExpert
    from gato.data.recipes import generate
    from gato.seeds import correction_seeds
    from gato.tasks.control_task import ControlTask
    from gato.tasks.corrections import collect_corrections

    generate("pendulum", 2, reference_episodes=0, workers=1, progress=False, max_episode_steps=30)
    model = tiny_policy(context_len=64)
    task = ControlTask("pendulum", None, "pendulum/scripted-v0", 64, patch_size=4, eval_envs=2, vocab=model.vocab)
    before = len(task.raw)

    stats = collect_corrections(task, model, 2, round_index=3)

    assert stats["episodes"] == 2 and stats["steps"] == 2 * 30  # the recorded env keeps its 30-step limit
    labels = task.raw.actions[before]
    assert labels.dtype == np.float32 and labels.shape == (30, 1)
    env = gym.make("Pendulum-v1")
    obs, _ = env.reset(seed=correction_seeds(3, 1).start)
    np.testing.assert_array_equal(labels[0], PendulumExpert(env)(obs))  # the expert's action, not the policy's
    np.testing.assert_array_equal(task.raw.observations[before][0], obs)


def test_tasks_without_an_advising_expert_collect_nothing(cartpole_task, tiny_policy):
    assert cartpole_task.collect_corrections(tiny_policy(), 2) is None


@pytest.mark.slow
def test_trainer_runs_dagger_rounds_within_its_budget(babyai_dataset, tmp_path):
    from gato.training.arguments import TrainingArgs
    from gato.training.run import build_trainer

    task = _fresh_babyai_task(babyai_dataset)
    args = TrainingArgs(training_steps=6, max_minutes=0, batch_size=4, embed_dim=32, layers=1, heads=2,
                        resid_mid_channels=8, sequence_length=128, dagger_rounds=2, dagger_episodes=2,
                        eval_episodes=2, eval_envs=2, save_dir=str(tmp_path), save_model=False, device="cpu")
    trainer = build_trainer(args, tasks=[task])
    episodes_before = len(task.raw)
    trainer.train()
    rounds = [h for h in trainer.history if "corrections" in h]
    assert [h["step"] for h in rounds] == [2, 4]  # at 1/3 and 2/3 of the steps
    added = sum(h["corrections"]["babyai"]["episodes"] for h in rounds)
    assert added >= 4 and len(task.raw) == episodes_before + added


@pytest.mark.slow
def test_dagger_episodes_are_given_once_or_per_dataset(babyai_dataset, tmp_path):
    import argparse

    import pytest

    from gato.training.arguments import TrainingArgs
    from gato.training.run import build_trainer

    def parse(*flags):
        parser = argparse.ArgumentParser()
        TrainingArgs.add_arguments(parser)
        return TrainingArgs.from_namespace(parser.parse_args(["--control_datasets", "a/x-v0", "b/y-v0", *flags]))

    assert [parse().dagger_episodes_for(i) for i in (0, 1)] == [1000, 1000]
    assert [parse("--dagger_episodes", "0", "32").dagger_episodes_for(i) for i in (0, 1)] == [0, 32]
    assert TrainingArgs(dagger_episodes=5).dagger_episodes_for(1) == 5  # one number from Python
    with pytest.raises(ValueError, match="--dagger_episodes needs one number >= 0, or one per dataset"):
        parse("--dagger_episodes", "1", "2", "3")
    with pytest.raises(ValueError, match="--dagger_episodes needs one number"):
        parse("--dagger_episodes")

    # 0 episodes: the task is left as it is
    task = _fresh_babyai_task(babyai_dataset)
    args = TrainingArgs(training_steps=4, max_minutes=0, batch_size=4, embed_dim=32, layers=1, heads=2,
                        resid_mid_channels=8, sequence_length=128, dagger_rounds=1, dagger_episodes=0,
                        eval_episodes=2, eval_envs=2, save_dir=str(tmp_path), save_model=False, device="cpu")
    episodes_before = len(task.raw)
    trainer = build_trainer(args, tasks=[task])
    trainer.train()
    assert len(task.raw) == episodes_before
    assert [h["corrections"] for h in trainer.history if "corrections" in h] == [{}]
