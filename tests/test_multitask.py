"""One model over several domains: task tokens, the batch mix, and the score table."""

from __future__ import annotations

import json
from argparse import Namespace

import numpy as np
import pytest
import torch

from gato.data.recipes import generate
from gato.evaluation.scores import interquartile_mean, score_rows, summary
from gato.tasks.control_task import ControlTask

TINY_FLAGS = ["--embed_dim", "32", "--layers", "2", "--heads", "2", "--resid_mid_channels", "8",
              "--continuous_tokens", "64", "--discrete_tokens", "64", "--sequence_length", "64", "--batch_size", "8"]


@pytest.fixture
def recipe_datasets():
    """CartPole (discrete actions) and Pendulum (a continuous action) expert data."""
    for name in ("cartpole", "pendulum"):
        generate(name, 2, reference_episodes=2, workers=1, progress=False, max_episode_steps=60)
    return ["cartpole/scripted-v0", "pendulum/scripted-v0"]


def test_task_token_leads_every_observation(recipe_datasets, tiny_policy):
    model = tiny_policy(context_len=64)
    task = ControlTask("pendulum", None, recipe_datasets[1], 64, Namespace(patch_size=4), task_id=5,
                       vocab=model.vocab)
    batch = task.sample_batch(16, model.vocab, 64, np.random.default_rng(0))
    S = task.codec_for(model.vocab).tokens_per_step
    assert task.codec.layout()[0] == {"field": "task", "space": "", "read as": "task id 5", "tokens": 1}
    real = batch.tokens != model.vocab.pad
    starts = batch.tokens[:, ::S][real[:, ::S]]
    assert (starts == model.vocab.task(5)).all()
    assert not batch.targets[batch.tokens == model.vocab.task(5)].any()  # never a target
    with pytest.raises(ValueError, match="task id 64 is outside"):
        model.vocab.task(64)


def test_batches_mix_tasks_by_weight_without_leaking_targets(recipe_datasets, babyai_dataset, tiny_policy):
    from accelerate import Accelerator

    from gato.training.arguments import TrainingArgs
    from gato.training.trainer import Trainer, make_optimizer

    model = tiny_policy(context_len=64)
    tasks = [ControlTask(d, None, d, 64, Namespace(patch_size=4), task_id=i, pack_windows=True, vocab=model.vocab)
             for i, d in enumerate(recipe_datasets)]
    tasks.append(ControlTask("babyai", None, babyai_dataset, 64, Namespace(patch_size=4), task_id=2,
                             vocab=model.vocab))
    args = TrainingArgs(save_dir="unused", save_model=False)
    trainer = Trainer(model=model, optimizer=make_optimizer(model, args), scheduler=None,
                      accelerator=Accelerator(cpu=True), tasks=tasks, exp_name="mix", args=args,
                      task_weights=[2, 1, 1])
    v = model.vocab
    rows = {0: 0, 1: 0, 2: 0}
    for _ in range(20):
        batch = trainer.sample_batch(100)
        for tokens, targets in zip(batch.tokens, batch.targets):
            ids = tokens[(tokens >= v.task_offset) & (tokens < v.task_offset + v.task_tokens)] - v.task_offset
            assert len(set(ids.tolist())) == 1, "a row holds one task only"
            task_id = int(ids[0])
            rows[task_id] += 1
            ranges = tasks[task_id].codec_for(v).action_ranges
            low, high = ranges[:, 0].min(), ranges[:, 1].max()
            assert ((tokens[targets] >= low) & (tokens[targets] < high)).all(), "targets stay in the task's actions"
    shares = np.array([rows[i] for i in range(3)]) / sum(rows.values())
    np.testing.assert_allclose(shares, [0.5, 0.25, 0.25], atol=0.04)
    _, loss = model(batch.to_torch())
    assert torch.isfinite(loss)


def test_interquartile_mean_drops_the_outer_quarters():
    assert interquartile_mean([0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 100.0]) == pytest.approx(1.0)
    assert interquartile_mean([1, 2, 3, 4]) == pytest.approx(2.5)
    assert interquartile_mean([0.2, 0.9, 0.7]) == pytest.approx(0.6)  # under 4 values nothing is dropped
    assert np.isnan(interquartile_mean([]))


def test_score_rows_and_summary():
    results = {
        "a": {"episodes": 5.0, "mean_return": 10.0, "std_return": 1.0, "success_rate": 1.0,
              "expert_return": 10.0, "random_return": 0.0, "normalized_score": 1.0},
        "b": {"episodes": 5.0, "mean_return": 5.0, "std_return": 2.0, "success_rate": 1.0,
              "expert_return": 20.0, "random_return": 0.0, "normalized_score": 0.25},
        "c": {"episodes": 5.0, "mean_return": 0.0, "std_return": 0.0, "success_rate": 0.0},
    }
    rows = score_rows(results)
    assert rows[1] == {"task": "b", "episodes": 5, "return": "5.00 +- 2.00", "expert": 20.0, "random": 0.0,
                       "normalized": 0.25, "success": 1.0}
    assert rows[2]["normalized"] == ""
    assert summary(results) == {"tasks_scored": 2, "mean_normalized_score": 0.625, "iqm_normalized_score": 0.625}


@pytest.mark.slow
def test_multitask_train_then_score_table_json_chart_and_videos(recipe_datasets, tmp_path, capsys):
    from gato.cli import main

    run_dir = tmp_path / "runs"
    assert main(["train", "--control_datasets", *recipe_datasets, "--task_weights", "1", "3",
                 "--training_steps", "3", "--max_minutes", "0", "--eval_episodes", "2", "--eval_envs", "2",
                 "--save_dir", str(run_dir), "--exp_name", "mt", *TINY_FLAGS]) == 0
    checkpoint = run_dir / "mt" / "checkpoint"
    specs = json.loads((checkpoint / "tasks.json").read_text())
    assert [s["task_id"] for s in specs] == [0, 1]
    capsys.readouterr()

    out = tmp_path / "scores" / "eval.json"
    assert main(["eval", str(checkpoint), "--episodes", "3", "--envs", "3", "--out", str(out),
                 "--video", str(tmp_path / "videos")]) == 0
    printed = capsys.readouterr().out
    assert "normalised score over 2 tasks: mean" in printed and "IQM" in printed
    header = next(line for line in printed.splitlines() if line.startswith("task"))
    for column in ("episodes", "return", "expert", "random", "normalized"):
        assert column in header
    report = json.loads(out.read_text())
    assert set(report["results"]) == {"cartpole/scripted", "pendulum/scripted"}
    for m in report["results"].values():
        assert m["episodes"] == 3 and {"expert_return", "random_return", "normalized_score"} <= set(m)
    scores = [m["normalized_score"] for m in report["results"].values()]
    assert report["summary"]["mean_normalized_score"] == pytest.approx(np.mean(scores))
    assert out.with_suffix(".png").stat().st_size > 0
    for name, video in report["videos"].items():
        gif = tmp_path / "videos" / (name.replace("/", "_") + ".gif")
        assert video["path"] == str(gif) and gif.read_bytes()[:6] in (b"GIF89a", b"GIF87a")

    one = tmp_path / "one.json"
    assert main(["eval", str(checkpoint), "--tasks", "pendulum/scripted", "--episodes", "2", "--out", str(one)]) == 0
    assert set(json.loads(one.read_text())["results"]) == {"pendulum/scripted"}
    assert main(["eval", str(checkpoint), "--tasks", "pong"]) == 2
    err = capsys.readouterr().err
    assert "no task named pong in this checkpoint; its tasks: cartpole/scripted pendulum/scripted" in err
