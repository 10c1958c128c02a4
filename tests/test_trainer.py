"""Trainer: its progress bar counts the budget that really stops the run."""

import io

import pytest


@pytest.mark.parametrize("max_minutes", [30.0, 0.0])
def test_progress_bar_counts_training_minutes_under_a_time_budget_else_steps(tiny_policy, tmp_path, max_minutes):
    from accelerate import Accelerator

    from gato.training.arguments import TrainingArgs
    from gato.training.trainer import Trainer, make_optimizer

    model = tiny_policy()
    args = TrainingArgs(training_steps=20000, max_minutes=max_minutes, save_dir=str(tmp_path), save_model=False)
    trainer = Trainer(model=model, optimizer=make_optimizer(model, args), scheduler=None,
                      accelerator=Accelerator(cpu=True), tasks=[object()], exp_name="bar", args=args)
    out = io.StringIO()
    bar = trainer.progress_bar(file=out)
    trainer.step, trainer.train_seconds = 40, 90.0
    bar.update(trainer._progress() - bar.n)
    bar.close()
    if max_minutes:
        assert bar.total == 30.0 and bar.n == 1.5
        assert "1.5/30 training min" in out.getvalue()
    else:
        assert bar.total == 20000 and bar.n == 40
        assert "40/20000" in out.getvalue()


TINY_ARGS = dict(embed_dim=32, layers=1, heads=2, dropout=0.0, patch_size=4, resid_mid_channels=8,
                 continuous_tokens=64, discrete_tokens=64, sequence_length=64, batch_size=4, warmup_steps=1,
                 training_steps=4, max_minutes=0, log_every=2, eval_episodes=1, eval_envs=1, save_model=False,
                 device="cpu")


def _train(cartpole_task, tmp_path, **kw):
    from gato.training.arguments import TrainingArgs
    from gato.training.run import build_trainer

    args = TrainingArgs(**{**TINY_ARGS, "save_dir": str(tmp_path / "runs"), "exp_name": "tb", **kw})
    args.validate()
    trainer = build_trainer(args, tasks=[cartpole_task])
    trainer.train()
    return trainer


@pytest.mark.slow
def test_tensorboard_by_default_logs_train_and_eval_scalars_and_the_args_under_runs_name_logs(cartpole_task,
                                                                                           tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    trainer = _train(cartpole_task, tmp_path)
    logs = tmp_path / "runs" / "tb" / "logs" / "neko-gato"
    assert trainer.run_dir / "logs" / "neko-gato" == logs
    assert list(logs.glob("events.out.tfevents.*"))
    events = EventAccumulator(str(logs))
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    assert {"train/loss", "train/lr", "train/tokens_per_s", "eval/cartpole/mean_return"} <= scalars
    assert [e.step for e in events.Scalars("train/loss")] == [2, 4]
    losses = [h["loss"] for h in trainer.history if "loss" in h]
    assert [e.value for e in events.Scalars("train/loss")] == pytest.approx(losses, rel=1e-6)
    assert events.Scalars("eval/cartpole/mean_return")[-1].step == 4
    # The run's arguments, flattened to scalars (lists as text), are the hparams.
    hparams = next(logs.glob("*/hparams.yml")).read_text()
    assert "learning_rate: 0.001" in hparams and "report_to: '[''tensorboard'']'" in hparams


@pytest.mark.slow
@pytest.mark.parametrize("report_to", ["none", []])
def test_report_to_none_or_empty_logs_nothing(cartpole_task, tmp_path, report_to):
    trainer = _train(cartpole_task, tmp_path, report_to=report_to)
    assert trainer.accelerator.trackers == []
    assert not (tmp_path / "runs" / "tb" / "logs").exists()
    assert [h["step"] for h in trainer.history if "loss" in h] == [2, 4]  # it trained all the same


@pytest.mark.parametrize("report_to, message", [
    ("tensorbored", "--report_to tensorbored: unknown tracker; choose from all, aim, tensorboard, wandb"),
    (["none", "tensorboard"], "--report_to none cannot be combined"),
])
def test_report_to_unknown_tracker_is_a_clear_error(report_to, message):
    from gato.training.arguments import TrainingArgs

    with pytest.raises(ValueError) as caught:
        TrainingArgs(report_to=report_to).validate()
    assert str(caught.value).startswith(message)


def test_report_to_a_tracker_that_is_not_installed_names_the_install_before_anything_runs(capsys, tmp_path):
    """Accelerate would drop it silently and the run would log nowhere. (comet_ml: a tracker Accelerate knows
    that no extra of this project installs.)"""
    from gato.cli import main

    # The dataset is missing too: the tracker is checked first, before data, policy or training.
    assert main(["train", "--report_to", "comet_ml", "--control_datasets", "nobody/missing-v0",
                 "--save_dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "--report_to comet_ml: not installed; pip install comet_ml" in err
    assert "Traceback" not in err and "missing-v0" not in err and len(err.strip().splitlines()) == 1
    assert not any(tmp_path.iterdir())


@pytest.mark.slow
def test_report_to_wandb_offline_writes_the_run_into_the_run_directory(cartpole_task, tmp_path, monkeypatch):
    """wandb in offline mode (the 'wandb' extra; no network): its run lands in the run directory."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    trainer = _train(cartpole_task, tmp_path, report_to=["tensorboard", "wandb"])
    assert list((trainer.run_dir / "wandb").glob("offline-run-*"))
    assert list((trainer.run_dir / "logs" / "neko-gato").glob("events.out.tfevents.*"))


@pytest.mark.slow
def test_trackers_are_closed_after_train_and_a_second_train_logs_on(cartpole_task, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    trainer = _train(cartpole_task, tmp_path)
    assert trainer.accelerator.trackers == []
    trainer.args.training_steps = 6
    trainer.train()
    logs = tmp_path / "runs" / "tb" / "logs" / "neko-gato"
    steps = []
    for events_file in sorted(logs.glob("events.out.tfevents.*")):
        events = EventAccumulator(str(events_file))
        events.Reload()
        steps += [e.step for e in events.Scalars("train/loss")]
    assert sorted(steps) == [2, 4, 6]


def test_loss_weighting_tasks_gives_each_task_its_share_of_rows_however_many_tokens_it_predicts(
        tiny_policy, cartpole_task, babyai_task, tmp_path):
    import numpy as np
    import torch
    import torch.nn.functional as F
    from accelerate import Accelerator

    from gato.training.arguments import TrainingArgs
    from gato.training.trainer import Trainer, make_optimizer

    model = tiny_policy(context_len=64)  # the CartPole task's rows
    losses = {}
    for weighting in ("tasks", "tokens"):
        args = TrainingArgs(loss_weighting=weighting, batch_size=8, save_dir=str(tmp_path), save_model=False)
        trainer = Trainer(model=model, optimizer=make_optimizer(model, args), scheduler=None,
                          accelerator=Accelerator(cpu=True), tasks=[cartpole_task, babyai_task], exp_name="w",
                          args=args)
        trainer.rng = np.random.default_rng(3)
        rows = np.random.default_rng(3).multinomial(8, trainer.weights)  # the draw sample_batch makes first
        batch = trainer.sample_batch(8)
        assert (batch.loss_weights is None) == (weighting == "tokens")
        stream = batch.to_torch()
        with torch.no_grad():
            logits, losses[weighting] = model(stream)
            per_target = F.cross_entropy(logits, stream["tokens"][:, 1:][stream["targets"][:, 1:]], reduction="none")
        row_of_target = np.nonzero(batch.targets[:, 1:])[0]
        task_of_row = np.repeat([0, 1], rows)
        means = [float(per_target[torch.from_numpy(task_of_row[row_of_target] == k)].mean()) for k in (0, 1)]
    assert rows.min() > 0
    assert float(losses["tasks"]) == pytest.approx(sum(n / 8 * m for n, m in zip(rows, means)), rel=1e-5)
    assert float(losses["tokens"]) == pytest.approx(float(per_target.mean()), rel=1e-5)
    # CartPole rows predict an action every few tokens, BabyAI rows one per grid: the two weightings differ
    assert abs(float(losses["tasks"]) - float(losses["tokens"])) > 1e-3


X86_FLAGS = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f {extra}\nbugs\t\t: spectre_v1\n"
ARM_FEATURES = "processor\t: 0\nFeatures\t: fp asimd sve {extra}\n"


@pytest.mark.parametrize("cpuinfo, native", [
    (X86_FLAGS.format(extra=""), False),  # AVX-512 without its BF16 extension (this project's AMD dev machine)
    (X86_FLAGS.format(extra="avx512_bf16"), True),
    (X86_FLAGS.format(extra="amx_bf16 amx_tile"), True),
    (ARM_FEATURES.format(extra=""), False),
    (ARM_FEATURES.format(extra="bf16 i8mm"), True),
])
def test_bf16_on_a_cpu_without_its_instructions_warns_that_it_is_slower(cpuinfo, native, recwarn):
    from gato.training.run import cpu_has_bf16, warn_if_emulated_bf16

    assert cpu_has_bf16(cpuinfo) is native
    warn_if_emulated_bf16("bf16", "cpu", cpuinfo)
    warn_if_emulated_bf16("no", "cpu", cpuinfo)  # float32: nothing to say
    warn_if_emulated_bf16("bf16", "cuda", cpuinfo)  # the GPU's bf16 is not the CPU's
    messages = [str(w.message) for w in recwarn]
    assert messages == ([] if native else [messages[0]])
    assert native or "--mixed_precision bf16 on a CPU without bfloat16 instructions" in messages[0]


def test_gato_train_with_bf16_on_such_a_cpu_warns_before_training(cartpole_task, tmp_path, monkeypatch):
    from accelerate.state import AcceleratorState

    from gato.training import run

    monkeypatch.setattr(run, "cpu_has_bf16", lambda cpuinfo=None: False)
    # Accelerate keeps one precision per process: reset before and after, so each test here starts clean.
    AcceleratorState._reset_state(reset_partial_state=True)
    try:
        with pytest.warns(UserWarning, match="autocast emulates them"):
            _train(cartpole_task, tmp_path, mixed_precision="bf16", training_steps=1, report_to="none")
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)


def test_a_per_token_loss_is_not_warned_about_for_tasks_within_4x(babyai_step_task, cartpole_task, recwarn):
    """BabyAI with its mission in every timestep fits 21 timesteps a row, CartPole 42, one action token each: 2x,
    not warned about (a Meta-World task beside BabyAI levels is: tests/test_domains.py)."""
    from gato.training.run import warn_if_loss_unbalanced

    for weighting in ("tokens", "tasks"):
        warn_if_loss_unbalanced([babyai_step_task, cartpole_task], 256, weighting)
    assert not recwarn.list
