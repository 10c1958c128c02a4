"""Baselines a policy's returns are compared with, on the very episodes it is scored on."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from gato.envs import play_episode
from gato.seeds import EVALUATION


def random_returns(make_env: Callable, n_episodes: int, seed: int = EVALUATION.start) -> np.ndarray:
    """Returns of a uniform-random policy in ``make_env()`` (e.g. ``task.make_env``), episode i
    with seed ``seed + i`` (the action sampler seeded alike), as ``ControlTask.evaluate`` seeds
    them: a policy is compared with chance episode by episode rather than with a dataset's
    reference mean from other seeds."""
    env = make_env()
    try:
        return np.asarray([play_episode(env, lambda _: env.action_space.sample(), seed + i).total
                           for i in range(n_episodes)])
    finally:
        env.close()
