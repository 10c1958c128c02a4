"""Scripted experts for Gymnasium's classic-control and Box2D environments.

Each expert is built from its env (``Expert(env)``), told when an episode starts
(``reset()``) and asked for an action per observation (``expert(obs)``).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np


class CartPoleExpert:
    """CartPole-v1 balance controller: push towards where the pole is falling.

    A linear rule on angle, angular velocity and (weakly) cart velocity, which keeps the cart
    from drifting off the track over 500 steps.
    """

    def __init__(self, env: gym.Env):
        self.env = env

    def reset(self, seed: int | None = None) -> None:
        """Stateless: nothing to reset."""

    def __call__(self, obs) -> int:
        x, x_dot, theta, theta_dot = (float(v) for v in obs)
        return int(theta + 0.5 * theta_dot + 0.01 * x + 0.1 * x_dot > 0.0)


class LunarLanderExpert:
    """Gymnasium's own ``lunar_lander.heuristic`` (discrete or continuous, as the env is)."""

    def __init__(self, env: gym.Env):
        from gymnasium.envs.box2d.lunar_lander import heuristic

        self.env = env
        self._heuristic = heuristic

    def reset(self, seed: int | None = None) -> None:
        """Stateless: nothing to reset."""

    def __call__(self, obs):
        action = self._heuristic(self.env.unwrapped, np.asarray(obs, dtype=np.float64))
        if isinstance(self.env.action_space, gym.spaces.Box):
            return np.clip(np.asarray(action, dtype=np.float32), -1.0, 1.0)
        return int(action)


class PendulumExpert:
    """Pendulum-v1 swing-up and balance.

    Far from upright it pumps energy: the pendulum obeys theta'' = 15 sin(theta) + 3 u, so
    E = theta'^2 / 2 + 15 cos(theta) grows at rate 3 u theta' and equals 15 at rest upright;
    torque along theta' while E < 15 swings it up. Near upright a PD law holds it there
    (the torque limit of 2 can only hold small angles, hence the switch).
    """

    def __init__(self, env: gym.Env):
        self.env = env
        self.max_torque = float(env.action_space.high[0])

    def reset(self, seed: int | None = None) -> None:
        """Stateless: nothing to reset."""

    def __call__(self, obs) -> np.ndarray:
        cos_t, sin_t, theta_dot = (float(v) for v in obs)
        theta = np.arctan2(sin_t, cos_t)
        energy = 0.5 * theta_dot**2 + 15.0 * cos_t
        if cos_t > 0.85 and abs(energy - 15.0) < 4.0:
            u = -(12.0 * theta + 2.5 * theta_dot)
        else:
            u = (1.0 if theta_dot >= 0 else -1.0) * self.max_torque * np.sign(15.0 - energy)
        return np.array([np.clip(u, -self.max_torque, self.max_torque)], dtype=np.float32)
