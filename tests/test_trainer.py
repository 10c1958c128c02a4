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
