"""Meta-World: seeded envs remade from a dataset's spec, the scripted-policy datasets with their
references and success rates, success counted in rollouts, and a two-task model trained, evaluated
and reloaded. Real envs, real Minari datasets in the test's own root."""

from __future__ import annotations

import json

import gymnasium as gym
import minari
import numpy as np
import pytest

pytest.importorskip("metaworld")

from gato.data.episodes import recommended_overrides  # noqa: E402
from gato.data.experts.metaworld import (  # noqa: E402
    ENV_ID,
    MetaWorldExpert,
    dataset_id_for,
    generate_metaworld,
    resolve_tasks,
)
from gato.envs import play_episode  # noqa: E402
from gato.evaluation.rollout import _play_round  # noqa: E402

TASKS = ["reach-v3", "push-v3"]
STEPS = 80  # both scripted policies succeed within ~70 steps; Meta-World's own horizon is 500


def test_task_lists_come_from_metaworld_and_unknown_tasks_are_named():
    import metaworld.env_dict

    assert resolve_tasks("mt10") == list(metaworld.env_dict.MT10_V3) and len(resolve_tasks("mt10")) == 10
    assert len(resolve_tasks(["mt50", "reach-v3"])) == 50  # duplicates dropped
    with pytest.raises(ValueError, match="unknown Meta-World task 'reach'.*mt10, mt50"):
        resolve_tasks(["reach"])


def test_the_command_names_an_unknown_task_and_lists_metaworld(capsys):
    from gato.cli import main

    assert main(["data", "metaworld", "--tasks", "reach-v3", "reachy-v3", "--episodes", "1"]) == 2
    assert "unknown Meta-World task 'reachy-v3'" in capsys.readouterr().err  # before any episode is played
    assert main(["data", "list"]) == 0
    assert "metaworld/TASK-scripted-v0" in capsys.readouterr().out


def test_the_reset_seed_alone_fixes_the_goal_and_the_spec_remakes_the_env():
    env = gym.make(ENV_ID, task="reach-v3", max_episode_steps=STEPS)
    first, _ = env.reset(seed=5)
    env.reset(seed=6)
    again, _ = env.reset(seed=5)  # whatever came before
    other, _ = gym.make(env.spec).reset(seed=5)  # another env, made from the spec alone (as a dataset's)
    np.testing.assert_array_equal(first, again)
    np.testing.assert_array_equal(first, other)
    assert not np.allclose(first[36:], env.reset(seed=6)[0][36:])  # another seed, another goal
    assert first[36:].any() and env.observation_space.contains(first)  # the goal is observed, inside its bounds
    assert json.loads(env.spec.to_json())["entry_point"] == "gato.data.experts.metaworld:make_metaworld_env"


class _Acting:
    """Stands in for a trained agent in ``_play_round``: per env, the scripted policy or random actions."""

    def __init__(self, envs, expert: bool):
        self.envs, self.experts = envs, [MetaWorldExpert(e) for e in envs.envs] if expert else None

    def act_batch(self, obs):
        if self.experts is None:
            return np.stack([e.action_space.sample() for e in self.envs.envs])
        return np.stack([expert(o) for expert, o in zip(self.experts, obs)])


def test_rollouts_count_success_at_any_step_as_single_episodes_do():
    make = lambda: gym.make(ENV_ID, task="reach-v3", max_episode_steps=STEPS)  # noqa: E731
    seeds = [1_000_000, 1_000_001]
    single = make()
    expected = [play_episode(single, MetaWorldExpert(single), s).success for s in seeds]
    assert expected == [True, True]
    for expert, want in ((True, expected), (False, [False, False])):
        envs = gym.vector.SyncVectorEnv([make, make])
        obs, _ = envs.reset(seed=seeds)
        envs.action_space.seed(0)
        returns, lengths, successes = _play_round(_Acting(envs, expert), envs, obs, None, None)
        assert successes == want and list(lengths) == [STEPS, STEPS] and (returns > 0).all()
        envs.close()
    cartpole = gym.vector.SyncVectorEnv([lambda: gym.make("CartPole-v1")])
    obs, _ = cartpole.reset(seed=0)
    assert _play_round(_Acting(cartpole, False), cartpole, obs, None, None)[2] == [None]  # no "success" in its info


@pytest.mark.slow
def test_two_task_datasets_train_evaluate_with_success_and_reload(tmp_path, capsys):
    from gato.policy.gato_policy import GatoPolicy
    from gato.tasks.registry import load_tasks
    from gato.training.arguments import TrainingArgs
    from gato.training.run import build_trainer

    reports = generate_metaworld(TASKS, 3, reference_episodes=2, workers=2, progress=False,
                                 max_episode_steps=STEPS)
    assert [r.dataset_id for r in reports] == [dataset_id_for(t) for t in TASKS]
    for report in reports:
        dataset = minari.load_dataset(report.dataset_id)
        meta = dataset.storage.metadata
        assert meta["total_episodes"] == 3 and meta["total_steps"] == 3 * STEPS
        assert meta["ref_max_score"] > meta["ref_min_score"]  # clean expert over uniform random
        assert meta["expert_success_rate"] == 1.0 and meta["random_success_rate"] == 0.0
        assert 0.0 <= meta["demo_success_rate"] <= 1.0 and meta["action_noise"] == 0.1
        assert recommended_overrides(meta) == {"": "vector"}
        assert not report.expert_fails
        env = dataset.recover_environment()  # from the stored spec: a string entry point, not a lambda
        assert env.spec.max_episode_steps == STEPS and env.spec.kwargs["task"] == report.task
        # DART: the executed actions were perturbed, the stored ones are the policy's for each stored state
        episode = next(dataset.iterate_episodes())
        expert = MetaWorldExpert(env)
        np.testing.assert_allclose(episode.actions[:20], [expert(o) for o in episode.observations[:20]], atol=1e-6)
        obs, _ = env.reset(seed=0)  # the first demonstration replayed with its stored actions leaves its path:
        # the env executed perturbed ones
        np.testing.assert_array_equal(obs, episode.observations[0])
        for action in episode.actions[:20]:
            obs = env.step(action)[0]
        assert not np.allclose(obs, episode.observations[20])
    with pytest.raises(FileExistsError, match="--overwrite"):
        generate_metaworld(TASKS[:1], 1, reference_episodes=1, progress=False)

    args = TrainingArgs(control_datasets=[dataset_id_for(t) for t in TASKS], training_steps=3, max_minutes=0,
                        batch_size=4, embed_dim=32, layers=1, heads=2, resid_mid_channels=8, sequence_length=128,
                        warmup_steps=1, eval_episodes=2, eval_envs=2, save_dir=str(tmp_path), exp_name="mw",
                        save_model=True, device="cpu")
    trainer = build_trainer(args)
    # the observation read as one position, as the datasets recommend: task token, observation, separator, 4 actions
    assert [task.tokens_per_timestep for task in trainer.tasks] == [7, 7]
    trainer.train()
    final = trainer.history[-1]["eval"]  # the trainer's own evaluation, per task
    assert set(final) == {task.name for task in trainer.tasks}
    assert all({"success_rate", "normalized_score"} <= set(m) for m in final.values())
    policy = GatoPolicy.from_pretrained(tmp_path / "mw" / "checkpoint")
    tasks = load_tasks(tmp_path / "mw" / "checkpoint", policy.vocab)
    assert [t.dataset_id for t in tasks] == [dataset_id_for(t) for t in TASKS]
    assert [task.tokens_per_timestep for task in tasks] == [7, 7]  # reloaded, read the same way
    for task in tasks:
        records = task.evaluate_part(policy, 2, 0, 1, promptless_eval=True)
        assert all(isinstance(r["success"], bool) for r in records)  # from info["success"], not the return
        metrics = task.summarize(records)
        assert metrics["success_rate"] == np.mean([r["success"] for r in records])
        assert {"normalized_score", "expert_return", "random_return"} <= set(metrics)
        assert metrics["mean_episode_len"] == STEPS
        again = task.evaluate(policy, 2, promptless_eval=True)  # reproducible: the seed fixes the goal
        assert again["mean_return"] == pytest.approx(metrics["mean_return"])


@pytest.mark.slow
def test_a_dataset_gato_train_makes_on_the_spot_has_the_success_rates(monkeypatch):
    """``gato train`` makes a missing dataset through the catalogue; for Meta-World that must be
    ``gato data metaworld``'s path, which records the success rates (the generic recipe driver did not)."""
    from gato.data.catalogue import ensure_dataset
    from gato.data.experts.metaworld import MAKER

    monkeypatch.setattr(MAKER, "reference_episodes", 2)  # the size of the test, not the code path
    monkeypatch.setattr(MAKER, "max_episode_steps", STEPS)
    dataset_id = dataset_id_for("reach-v3")
    report = ensure_dataset(dataset_id, babyai_episodes=7, recipe_episodes=2, progress=False)
    assert report.dataset_id == dataset_id and report.episodes_written == 2
    assert report.expert_mean_return > report.random_mean_return and report.seconds > 0
    meta = minari.load_dataset(dataset_id).storage.metadata
    assert meta["total_episodes"] == 2 and meta["total_steps"] == 2 * STEPS
    assert meta["expert_success_rate"] == 1.0 and meta["random_success_rate"] == 0.0
    assert 0.0 <= meta["demo_success_rate"] <= 1.0 and meta["metaworld_task"] == "reach-v3"
    assert meta["ref_max_score"] == pytest.approx(report.expert_mean_return)
    assert ensure_dataset(dataset_id, babyai_episodes=7, recipe_episodes=2, progress=False) is None  # exists
