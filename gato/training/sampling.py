"""How often each control task of a run is sampled (``--task_sampling``): the one place the rules live.

- ``uniform``: every control task alike (or ``--task_weights``, explicit numbers, when given);
- ``data``: in proportion to the task's timesteps (a level with twice the data is seen twice as often);
- ``expert_gap``: in proportion to how far the task was from its expert at the last evaluation,
  ``max(1 - score, EXPERT_GAP_FLOOR)`` with ``score`` the normalised score (else the success rate) clipped
  to [0, 1]; uniform until the first evaluation. The floor keeps a solved task in the mix (it would be
  forgotten otherwise).

The control tasks share what ``--text_prop``/``--caption_prop``/``--vqa_prop`` leave (``TrainingArgs.mixture_weights``).
"""

from __future__ import annotations

import numpy as np

TASK_SAMPLING = ("uniform", "data", "expert_gap")
"""The choices of ``--task_sampling``."""

EXPERT_GAP_FLOOR = 0.05
"""Smallest expert gap a task is sampled by: a task at its expert keeps 5% of a far-off task's rate."""


def control_weights(mode: str, tasks: list, explicit: list[float] | None = None,
                    last_eval: dict | None = None) -> np.ndarray:
    """Unnormalised sampling weights of the control ``tasks`` under ``mode`` (see the module docstring).
    ``explicit``: ``--task_weights`` (uniform mode only); ``last_eval``: ``{task name: metrics}`` of the last
    evaluation (expert_gap)."""
    if mode not in TASK_SAMPLING:
        raise ValueError(f"--task_sampling {mode!r}: choose one of {', '.join(TASK_SAMPLING)}")
    if mode == "uniform":
        return np.asarray(explicit or [1.0] * len(tasks), float)
    if mode == "data":
        return np.asarray([float(np.sum(task.episodes.lengths)) for task in tasks])
    if not last_eval:
        return np.ones(len(tasks))
    return np.asarray([max(1.0 - _score(last_eval.get(task.name, {})), EXPERT_GAP_FLOOR) for task in tasks])


def _score(metrics: dict) -> float:
    """A task's normalised score (else success rate) clipped to [0, 1]; 0 when it was not evaluated."""
    value = metrics.get("normalized_score", metrics.get("success_rate", 0.0))
    return float(np.clip(value, 0.0, 1.0)) if np.isfinite(value) else 0.0


def mix(control: np.ndarray, shares: list[float]) -> np.ndarray:
    """The run's task weights: ``control`` normalised to the control share (``1 - sum(shares)``), then the
    language tasks' ``shares`` in build order."""
    control = np.asarray(control, float)
    rest = 1.0 - float(np.sum(shares))
    head = control / control.sum() * rest if len(control) else np.zeros(0)
    return np.concatenate([head, np.asarray(shares, float)])
