"""The learning curve stays readable for a suite: tasks unnamed under their mean past LEGEND_TASKS."""

from __future__ import annotations

import numpy as np

from gato.evaluation import plots


def _history(tasks: int) -> list[dict]:
    rng = np.random.default_rng(0)
    return [{"minutes": m, "step": 10 * m, "loss": 1.0 / (m + 1)} for m in range(3)] + [
        {"minutes": m, "step": 10 * m,
         "eval": {f"task{i}": {"success_rate": float(rng.random())} for i in range(tasks)}} for m in (1, 2)]


def _drawn(monkeypatch, tmp_path, tasks: int):
    figures = []
    save = plots.save_figure
    monkeypatch.setattr(plots, "save_figure", lambda fig, path: (figures.append(fig), save(fig, path))[1])
    history = _history(tasks)
    path = plots.plot_learning_curve(history, tmp_path / "curve.png", metric="success_rate")
    assert path.stat().st_size > 0
    return history, figures[0].axes[1]


def test_a_few_tasks_are_named_one_by_one(monkeypatch, tmp_path):
    _, ax = _drawn(monkeypatch, tmp_path, 3)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["task0", "task1", "task2"]


def test_a_suite_is_drawn_under_its_mean(monkeypatch, tmp_path):
    tasks = plots.LEGEND_TASKS + 2
    history, ax = _drawn(monkeypatch, tmp_path, tasks)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [f"mean of {tasks} tasks"]
    mean = [line for line in ax.get_lines() if line.get_label() == f"mean of {tasks} tasks"][0]
    expected = [np.mean([m["success_rate"] for m in h["eval"].values()]) for h in history if "eval" in h]
    np.testing.assert_allclose(mean.get_ydata(), expected)
