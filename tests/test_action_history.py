"""Corrupted action history: inputs hide some past actions, targets stay the expert's."""

from argparse import Namespace

import gymnasium as gym
import numpy as np
import pytest
import torch


def _task(dataset, noise):
    from conftest import tiny_vocab

    from gato.tasks.control_task import ControlTask

    return ControlTask("cartpole", gym.make("CartPole-v1"), dataset, context_len=64, args=Namespace(patch_size=4),
                       pack_windows=True, action_history_noise=noise, vocab=tiny_vocab())


def test_only_action_inputs_change_and_only_within_their_range(cartpole_dataset, tiny_policy):
    model = tiny_policy(context_len=64)
    task = _task(cartpole_dataset, 0.5)
    codec = task.codec_for(model.vocab)
    batch = task.sample_batch(16, model.vocab, 64, np.random.default_rng(0))
    clean = _task(cartpole_dataset, 0.0).sample_batch(16, model.vocab, 64, np.random.default_rng(0))
    np.testing.assert_array_equal(batch.tokens, clean.tokens)  # same windows, clean targets
    assert clean.inputs is None and batch.inputs is not None

    is_action = batch.in_step_pos == codec.obs_tokens + 1
    changed = batch.inputs != batch.tokens
    assert not changed[~is_action].any()  # observations, separators, padding untouched
    lo, hi = codec.action_ranges[0]
    assert ((batch.inputs[is_action] >= lo) & (batch.inputs[is_action] < hi)).all()
    # CartPole has 2 actions: a replaced token differs half the time, so ~25% of actions change
    assert 0.15 < changed[is_action].mean() < 0.35


def test_the_model_embeds_the_corrupted_inputs_and_scores_the_clean_targets(cartpole_dataset, tiny_policy):
    import torch.nn.functional as F

    model = tiny_policy(context_len=64)
    batch = _task(cartpole_dataset, 1.0).sample_batch(8, model.vocab, 64, np.random.default_rng(1))
    stream = batch.to_torch()
    clean_stream = {k: v for k, v in stream.items() if k != "input_tokens"}
    with torch.no_grad():
        noisy, clean = model.hidden_states(stream), model.hidden_states(clean_stream)
        logits, loss = model(stream)
    row, first = (stream["input_tokens"] != stream["tokens"]).nonzero()[0].tolist()
    torch.testing.assert_close(noisy[row, :first], clean[row, :first], atol=0, rtol=0)
    assert not torch.allclose(noisy[row, first], clean[row, first])  # the corrupted id is what is embedded
    targets = stream["tokens"][:, 1:][stream["targets"][:, 1:]]  # ... and the clean ids are what is scored
    torch.testing.assert_close(loss, F.cross_entropy(logits, targets))


@pytest.mark.parametrize("noise", [-0.1, 1.5])
def test_noise_outside_0_1_is_refused(cartpole_dataset, noise):
    with pytest.raises(ValueError, match="action_history_noise"):
        _task(cartpole_dataset, noise)


def test_noise_is_given_once_or_per_dataset():
    import argparse

    from gato.training.arguments import TrainingArgs

    def parse(*flags):
        parser = argparse.ArgumentParser()
        TrainingArgs.add_arguments(parser)
        return TrainingArgs.from_namespace(parser.parse_args(["--control_datasets", "a/x-v0", "b/y-v0", *flags]))

    assert [parse().history_noise(i) for i in (0, 1)] == [0.0, 0.0]
    assert [parse("--action_history_noise", "0.3").history_noise(i) for i in (0, 1)] == [0.3, 0.3]
    assert [parse("--action_history_noise", "0", "1").history_noise(i) for i in (0, 1)] == [0.0, 1.0]
    assert TrainingArgs(action_history_noise=0.3).history_noise(1) == 0.3  # one value from Python
    with pytest.raises(ValueError, match="--action_history_noise needs one value, or one per dataset"):
        parse("--action_history_noise", "0", "0.5", "1")
