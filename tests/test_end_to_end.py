"""End to end: data -> inspect -> train -> checkpoint -> eval, through the real command line,
and the notebook's Python workflow (ControlTask, GatoPolicy, Trainer by keyword, evaluate)."""

from __future__ import annotations

import json
from argparse import Namespace

import gymnasium as gym
import numpy as np
import pytest
import torch

from gato.cli import main

TINY_FLAGS = ["--embed_dim", "32", "--layers", "1", "--heads", "2", "--resid_mid_channels", "8",
              "--sequence_length", "64", "--batch_size", "4", "--warmup_steps", "2", "--dropout", "0"]


@pytest.mark.slow
def test_command_line_data_inspect_train_eval(tmp_path, capsys):
    assert main(["data", "babyai", "--level", "GoToRedBall", "--episodes", "6", "--workers", "1"]) == 0
    dataset_id = "babyai/GoToRedBall-bot-v0"

    assert main(["inspect", dataset_id, "--context_len", "64"]) == 0
    out = capsys.readouterr().out
    assert 'obs["mission"]' in out and "tokens per timestep: 12" in out
    assert 'tokens per later timestep of a window: 7 (obs["mission"] read once per window)' in out
    assert "timesteps in a 64-token context: 8" in out  # 12 + 7 x 7
    assert main(["inspect", dataset_id, "--context_len", "64", "--constant_text", "step"]) == 0
    out = capsys.readouterr().out
    assert "later timestep" not in out and "timesteps in a 64-token context: 5" in out

    run_dir = tmp_path / "runs"
    assert main(["train", "--control_datasets", dataset_id, "--training_steps", "4", "--max_minutes", "0",
                 "--eval_episodes", "2", "--eval_envs", "2", "--save_dir", str(run_dir), "--exp_name", "e2e",
                 *TINY_FLAGS]) == 0
    checkpoint = run_dir / "e2e" / "checkpoint"
    assert sorted(p.name for p in checkpoint.iterdir()) == [
        "README.md", "config.json", "history.json", "model.safetensors", "tasks.json", "training_args.json"]
    assert (run_dir / "e2e" / "learning_curve.png").stat().st_size > 0
    assert list((run_dir / "e2e" / "logs" / "neko-gato").glob("events.out.tfevents.*"))
    printed = capsys.readouterr().out
    assert "babyai/GoToRedBall-bot" in printed and "normalized" in printed

    out_json = tmp_path / "eval.json"
    assert main(["eval", str(checkpoint), "--episodes", "2", "--envs", "2", "--out", str(out_json)]) == 0
    results = json.loads(out_json.read_text())["results"]["babyai/GoToRedBall-bot"]
    assert results["episodes"] == 2
    assert {"mean_return", "mean_episode_len", "success_rate", "normalized_score"} <= set(results)

    # The same checkpoint evaluated from Python, deterministically, gives the same numbers.
    from gato.policy.gato_policy import GatoPolicy
    from gato.tasks.registry import load_tasks

    policy = GatoPolicy.from_pretrained(checkpoint)
    task = load_tasks(checkpoint, policy.vocab)[0]
    again = task.evaluate(policy, 2, n_envs=2, promptless_eval=True)
    assert again["mean_return"] == pytest.approx(results["mean_return"])


def test_command_line_reports_user_errors_in_one_line(capsys):
    assert main(["train", "--control_datasets", "nobody/missing-v0", "--training_steps", "1"]) == 2
    err = capsys.readouterr().err
    assert "missing-v0" in err and "Traceback" not in err


@pytest.mark.slow
def test_notebook_workflow_trains_and_evaluates(babyai_dataset, tmp_path):
    """The notebook, cell by cell: a Dict-space BabyAI dataset, ControlTask with its
    signature, GatoPolicy with its keywords, Trainer by keyword in the notebook's order."""
    from accelerate import Accelerator

    from gato.policy.gato_policy import GatoPolicy
    from gato.tasks.control_task import ControlTask, tokens_per_space
    from gato.training.arguments import TrainingArgs
    from gato.training.schedule import warmup_cosine
    from gato.training.trainer import Trainer, make_optimizer

    env = gym.make(babyai_dataset.spec.env_spec)
    args = Namespace(patch_size=4)
    control = ControlTask("playground_env_name", env, babyai_dataset, 64, args,
                          training_prompt_len_proportion=0.5, share_prompt_episodes=True, top_k_prompting=None)
    assert tokens_per_space(env.observation_space["image"]) == 4
    torch.manual_seed(0)  # the loss threshold below is checked for these initial weights
    model = GatoPolicy(device="cpu", embed_dim=32, layers=1, heads=2, dropout=0.0, mu=100, M=256, patch_size=4,
                       resid_mid_channels=8, continuous_tokens=64, discrete_tokens=64, context_len=64,
                       use_patch_pos_encoding=True, use_pos_encoding=True, activation_fn="geglu",
                       pretrained_lm=None, flash=False, tokenizer_model_name=None, pad_seq=False)
    control.encode_for(model.vocab)  # the task was read for the default vocabulary; this model's is smaller
    before = control.evaluate(model, n_iterations=2)  # a bare policy: no trainer, no .module
    assert set(before) >= {"mean_return", "mean_episode_len", "success_rate"}

    targs = TrainingArgs(training_steps=30, max_minutes=0, batch_size=8, learning_rate=3e-3, warmup_steps=1,
                         eval_episodes=2, eval_envs=2, save_dir=str(tmp_path), save_model=True, log_every=5)
    optimizer = make_optimizer(model, targs)
    scheduler = warmup_cosine(optimizer, 1, 30, 3e-3, 1e-5, 0.1)
    trainer = Trainer(model=model, optimizer=optimizer, scheduler=scheduler, accelerator=Accelerator(cpu=True),
                      tasks=[control], exp_name="notebook", args=targs)
    first = trainer.train_step()["loss"]
    trainer.train()
    losses = [h["loss"] for h in trainer.history if "loss" in h]
    assert losses[-1] < first * 0.6, (first, losses)  # it learns the bot's actions
    assert (tmp_path / "notebook" / "checkpoint" / "model.safetensors").is_file()


def test_multitask_batches_mix_tasks_by_weight(babyai_task, cartpole_task, tiny_policy):
    """Each sequence comes from one task; the weights set the mix; targets stay inside each
    task's own action tokens."""
    from accelerate import Accelerator

    from gato.training.arguments import TrainingArgs
    from gato.training.trainer import Trainer, make_optimizer

    model = tiny_policy(context_len=64)
    args = TrainingArgs(batch_size=400, save_dir="unused", save_model=False)
    trainer = Trainer(model=model, optimizer=make_optimizer(model, args), scheduler=None,
                      accelerator=Accelerator(cpu=True), tasks=[babyai_task, cartpole_task], exp_name="mix",
                      args=args, task_weights=[3, 1])
    batch = trainer.sample_batch(400)
    has_patches = batch.patch_mask.any(1)  # only BabyAI sequences hold image patches
    assert 0.65 < has_patches.mean() < 0.85
    v = model.vocab
    babyai_targets = batch.tokens[has_patches][batch.targets[has_patches]]
    cartpole_targets = batch.tokens[~has_patches][batch.targets[~has_patches]]
    assert ((babyai_targets >= v.discrete_offset) & (babyai_targets < v.discrete_offset + 7)).all()
    assert ((cartpole_targets >= v.discrete_offset) & (cartpole_targets < v.discrete_offset + 2)).all()
    _, loss = model(batch.to_torch())
    assert torch.isfinite(loss)


def test_prompted_windows_hold_a_prompt_and_a_window(babyai_dataset):
    from gato.tasks.control_task import ControlTask
    from gato.vocab import Vocab

    task = ControlTask("babyai", None, babyai_dataset, 120, Namespace(patch_size=4), prompt_ep_proportion=1.0,
                       training_prompt_len_proportion=0.5, share_prompt_episodes=False, prompt_type="end",
                       constant_text="step")
    batch = task.sample_batch(8, Vocab(), 120, np.random.default_rng(0))
    S = task.tokens_per_timestep
    steps = ((batch.tokens != Vocab().pad) | batch.patch_mask).sum(1) / S
    assert task.episodes.lengths.min() >= 5  # so every prompt and every window is full
    # a prompt of int(120 * 0.5) // S steps, then a window filling the rest of the context
    assert (steps == (120 // 2) // S + (120 // S - (120 // 2) // S)).all()
    assert batch.targets.sum() == 8 * steps[0]  # every timestep's action, prompt ones included

    # the mission read once per window: the prompt and the window each open with a whole timestep
    task = ControlTask("babyai", None, babyai_dataset, 120, Namespace(patch_size=4), prompt_ep_proportion=1.0,
                       training_prompt_len_proportion=0.5, share_prompt_episodes=False, prompt_type="end")
    codec = task.codec
    batch = task.sample_batch(8, Vocab(), 120, np.random.default_rng(0))
    mission_place = int(np.flatnonzero(codec.obs_once)[0])
    for b in range(8):
        real = (batch.tokens[b] != Vocab().pad) | batch.patch_mask[b]
        starts = np.flatnonzero(real & (batch.in_step_pos[b] == 0))
        whole = int((real & (batch.in_step_pos[b] == mission_place)).sum())
        assert whole == 2 and len(starts) == batch.targets[b].sum()  # one action token a timestep
        assert real.sum() == 2 * S + (len(starts) - 2) * codec.tokens_per_later_step <= 120
        assert len(starts) > 120 // S  # more timesteps than the mission in every one allows


def test_symbolic_grid_is_fitted_one_hot_and_saved_in_the_spec(babyai_task):
    """BabyAI's grid holds small ids in a Box(0, 255): the task reads it one-hot over the
    values it saw, and the spec (what `gato eval` rebuilds from) carries that choice."""
    spec = babyai_task.spec()["field_overrides"]["image"]
    assert spec["kind"] == "image" and spec["one_hot"] is True and spec["low"] == 0 and 4 <= spec["high"] < 16
    image = babyai_task.codec.obs_fields[1]
    assert image.channels == 3 * (int(spec["high"]) + 1)

