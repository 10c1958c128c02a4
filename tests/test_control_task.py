"""ControlTask's construction and encoding: patch_size, the notebook's ``args``, the vocabulary
its episodes are encoded for (re-encoding is an explicit call), fresh envs, the random baseline."""

from __future__ import annotations

from argparse import Namespace

import gymnasium as gym
import numpy as np
import pytest

from gato.codec import VocabMismatchError
from gato.tasks.control_task import ControlTask
from gato.vocab import Vocab

TINY_VOCAB = Vocab(discrete_tokens=64, continuous_tokens=64)


def test_patch_size_is_a_keyword_and_the_notebooks_args_still_work(babyai_dataset):
    env = gym.make("BabyAI-GoToRedBall-v0")
    assert ControlTask("babyai", env, babyai_dataset, context_len=128, args=Namespace(patch_size=4)).patch_size == 4
    assert ControlTask("babyai", env, babyai_dataset, 128, Namespace(patch_size=7)).patch_size == 7
    task = ControlTask("babyai", None, babyai_dataset, 128, patch_size=7)
    assert task.patch_size == 7 and task.codec.patches_per_step == 1  # the 7x7 grid in one patch
    assert ControlTask("babyai", None, babyai_dataset, 128).patch_size == 4  # args is optional


def test_another_vocabulary_needs_an_explicit_encode_for(cartpole_dataset, tiny_policy, session_minari_root,
                                                         monkeypatch):
    model = tiny_policy(context_len=64)
    assert model.vocab == TINY_VOCAB
    task = ControlTask("cartpole", None, cartpole_dataset, 64)
    assert task.codec.vocab == Vocab()
    rng = np.random.default_rng(0)
    for call in (lambda: task.sample_batch(2, model.vocab, 64, rng), lambda: task.evaluate(model, 1),
                 lambda: task.codec_for(model.vocab)):
        with pytest.raises(VocabMismatchError, match=r"`task\.encode_for\(policy\.vocab\)`"):
            call()
    episodes = task.episodes

    codec = task.encode_for(model.vocab)
    assert task.codec is codec and codec.vocab == model.vocab and task.episodes is not episodes
    assert task.encode_for(model.vocab) is codec and task.codec_for(model.vocab) is codec  # nothing to redo
    built = ControlTask("cartpole", None, cartpole_dataset, 64, vocab=model.vocab)
    np.testing.assert_array_equal(task.episodes.steps, built.episodes.steps)
    same = [t.sample_batch(4, model.vocab, 64, np.random.default_rng(1)) for t in (task, built)]
    np.testing.assert_array_equal(same[0].tokens, same[1].tokens)
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(session_minari_root))  # from_spec loads the dataset by id
    rebuilt = ControlTask.from_spec(task.spec(), vocab=model.vocab)
    assert rebuilt.codec.layout() == codec.layout()


def test_a_spec_keeps_where_the_mission_is_laid_out(babyai_task, session_minari_root, monkeypatch):
    """A task rebuilt from its spec, with or without its data, lays the mission out as it was trained; a spec
    saved before missions were read once per window had it in every timestep."""
    from gato.tasks.control_task import ControlTask

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(session_minari_root))  # from_spec loads the dataset by id
    spec = babyai_task.spec()
    assert spec["constant_text"] == "window"
    for with_data in (True, False):
        rebuilt = ControlTask.from_spec(spec, vocab=babyai_task.codec.vocab, with_data=with_data)
        assert rebuilt.codec.layout() == babyai_task.codec.layout() and rebuilt.codec.obs_once.any()
        assert rebuilt.spec()["constant_text"] == "window"
    old = {k: v for k, v in spec.items() if k != "constant_text"}
    old["field_overrides"] = {k: v for k, v in old["field_overrides"].items() if k != "mission"}
    rebuilt = ControlTask.from_spec(old, vocab=babyai_task.codec.vocab, with_data=True)
    assert not rebuilt.codec.obs_once.any() and rebuilt.codec.tokens_per_step == babyai_task.codec.tokens_per_step


def test_make_env_gives_a_fresh_env_of_the_tasks_spec(cartpole_task):
    env = cartpole_task.make_env()
    assert env is not cartpole_task.env and env.spec.id == "CartPole-v1"
    rendering = cartpole_task.make_env(render_mode="rgb_array")
    assert rendering.render_mode == "rgb_array"
    for e in (env, rendering):
        e.close()


def test_random_returns_replay_the_evaluation_seeds(cartpole_task):
    """The chance baseline plays episode i with seed + i (its sampler seeded alike), every time."""
    from gato.envs import play_episode
    from gato.evaluation.baselines import random_returns
    from gato.seeds import EVALUATION

    first = random_returns(cartpole_task.make_env, 4, seed=7)
    assert np.array_equal(first, random_returns(cartpole_task.make_env, 4, seed=7))
    assert np.array_equal(first[1:], random_returns(cartpole_task.make_env, 3, seed=8))
    env = gym.make("CartPole-v1")
    assert first[2] == play_episode(env, lambda _: env.action_space.sample(), 9).total
    default = random_returns(cartpole_task.make_env, 1)
    assert default[0] == play_episode(env, lambda _: env.action_space.sample(), EVALUATION.start).total


def test_evaluate_refuses_a_model_whose_patches_are_another_size(babyai_task, tiny_policy):
    model = tiny_policy(patch_size=3)
    with pytest.raises(ValueError, match="4-pixel patches but the policy reads 3-pixel ones"):
        babyai_task.evaluate(model, 1)
