"""Scripted expert and environment factory for Atari Breakout.

The expert reads the emulator RAM (ball x/y, paddle x) and predicts where the
ball will reach the paddle row by cloning the emulator state, running the game
forward with NOOPs and restoring the state exactly. It then picks, among
NOOP/RIGHT/LEFT, the action whose simulated agent step (``frame_skip`` frames,
again clone/run/restore) leaves the paddle closest to that landing point, and
presses FIRE whenever no ball is in play (episode start, after a life loss).

RAM layout used (measured on ale-py 0.12.1, ``ALE/Breakout-v5``):

* ``ram[99]``: ball x, ``ram[101]``: ball y (0 while no ball is in play);
* ``ram[72]``: paddle x (55..191), in the same units as the ball x;
* ``ram[108]``: half the paddle width (8, then 6 once the ball has reached the
  top wall and the paddle shrinks from 16 to 12 pixels); a ball at x hits the
  paddle at p when ``0 <= x - p <= width``, so ``x - p == ram[108]`` is mid-paddle;
* ``ram[77]``, ``ram[84]``: change exactly when a brick is hit (score);
* the ball turns back upwards off the paddle at y = 177..179.

The ball can fall into a periodic path that hits no bricks (the episode then
runs to ALE's 108000-frame cap with a frozen score). When the score has not
changed for a while, the expert shifts where on the paddle it catches the ball,
which changes the rebound angle and breaks the loop.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

__all__ = ["BREAKOUT_DESCRIPTION", "BreakoutExpert", "LaunchBall", "make_breakout_env"]

ENV_ID = "ALE/Breakout-v5"
FRAME_SKIP = 4
SCREEN_SIZE = 84
STACK_SIZE = 4
NOOP_MAX = 30
# Sticky actions off: the expert's lookahead then simulates exactly the step the
# env will take, and stored actions are the actions that were really executed.
REPEAT_ACTION_PROBABILITY = 0.0

BREAKOUT_DESCRIPTION = (
    "Atari Breakout (ALE/Breakout-v5 from ale-py, minimal action set "
    "NOOP/FIRE/RIGHT/LEFT, sticky actions disabled: repeat_action_probability=0). "
    "The base emulator runs with frameskip=1; gymnasium's AtariPreprocessing "
    f"repeats each action for {FRAME_SKIP} frames, max-pools the last two, "
    f"converts to greyscale and resizes to {SCREEN_SIZE}x{SCREEN_SIZE} (up to "
    f"{NOOP_MAX} random no-ops at reset, no life-loss termination), "
    f"FrameStackObservation stacks the last {STACK_SIZE} frames, giving "
    f"observations of shape ({STACK_SIZE}, {SCREEN_SIZE}, {SCREEN_SIZE}) stored "
    "losslessly as uint8, and LaunchBall presses FIRE by itself whenever no ball is "
    "in play (after reset and after each lost life, like the FireReset wrappers of "
    "common Atari set-ups), so neither the expert nor a policy has to. Actions come "
    "from a scripted expert that reads the "
    "ball and paddle positions from the emulator RAM, predicts where the ball "
    "will reach the paddle by cloning the emulator state, simulating ahead and "
    "restoring it exactly, and moves the paddle under that point; when the score stalls it "
    "shifts where on the paddle it catches the ball to break repeating rallies."
)

# RAM addresses (see module docstring).
_RAM_PADDLE_X = 72
_RAM_BALL_X = 99
_RAM_BALL_Y = 101
_RAM_HALF_PADDLE = 108
_RAM_SCORE = (77, 84)

_NOOP, _FIRE, _RIGHT, _LEFT = 0, 1, 2, 3
# Ball y at and below which it is level with the paddle (it bounces at 177..179).
_PADDLE_Y = 176
# Agent steps without a score change (ball in play) before the catch point on
# the paddle is shifted; a rally paddle -> bricks -> paddle is ~30..100 steps.
_STALL_STEPS = 100
# Successive shifts of the catch point from mid-paddle, in units of ball x;
# clamped so the ball still lands >= 2 units inside the (possibly shrunk) paddle.
_NUDGES = (0, -4, 4, -6, 6, -2, 2)
# Longest ball flight (frames) the landing prediction simulates; a slow ball
# going from the paddle to the top wall and back takes well under this.
_MAX_LOOKAHEAD_FRAMES = 600


def make_breakout_env(
    render_mode: str | None = None, max_episode_steps: int | None = None
) -> gym.Env:
    """Make the Breakout env used for the offline dataset and for evaluation.

    ``ALE/Breakout-v5`` with ``frameskip=1`` and sticky actions off in the base
    env, wrapped in ``AtariPreprocessing(frame_skip=4, screen_size=84,
    grayscale_obs=True, noop_max=30)``, ``FrameStackObservation(stack_size=4)`` and
    :class:`LaunchBall` (FIRE whenever no ball is in play).
    Observations are ``Box(0, 255, (4, 84, 84), uint8)``, actions ``Discrete(4)``.
    The wrappers are recorded in ``env.spec.additional_wrappers`` so the env can
    be rebuilt from ``env.spec`` (e.g. by Minari).

    ``max_episode_steps`` is in agent steps but is enforced as a TimeLimit of
    ``4 * max_episode_steps`` emulator frames on the base env (so
    ``env.spec.max_episode_steps`` reads 4x): gymnasium rebuilds a spec's
    TimeLimit directly around the base env, so a TimeLimit outside the Atari
    wrappers would not survive the round trip. Frames spent on reset no-ops
    count too, so truncation may come up to 8 agent steps early. ``None``
    keeps only ALE's own 108000-frame cap.
    """
    import ale_py

    gym.register_envs(ale_py)
    env = gym.make(
        ENV_ID,
        frameskip=1,
        repeat_action_probability=REPEAT_ACTION_PROBABILITY,
        render_mode=render_mode,
        max_episode_steps=None
        if max_episode_steps is None
        else max_episode_steps * FRAME_SKIP,
    )
    env = gym.wrappers.AtariPreprocessing(
        env,
        noop_max=NOOP_MAX,
        frame_skip=FRAME_SKIP,
        screen_size=SCREEN_SIZE,
        terminal_on_life_loss=False,
        grayscale_obs=True,
        grayscale_newaxis=False,
        scale_obs=False,
    )
    env = gym.wrappers.FrameStackObservation(env, stack_size=STACK_SIZE)
    return LaunchBall(env)


class LaunchBall(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Presses FIRE by itself while no ball is in play (after reset, after a lost life).

    Why: launching is one FIRE per life among thousands of steps, on frames that look like
    the frames before and after it, so a cloned policy never learns it and waits forever.
    Common Atari set-ups (the FireReset wrappers of baselines, SB3, CleanRL) take the same
    step. The FIRE steps' frames and rewards are folded into the step that lost the ball.
    """

    MAX_PRESSES = 8  # the ball is in play after the first press; a bound against surprises

    def __init__(self, env: gym.Env):
        """Wrap an env made as in :func:`make_breakout_env` (its base is ALE Breakout)."""
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.Wrapper.__init__(self, env)

    def _ball_in_play(self) -> bool:
        return int(self.env.unwrapped.ale.getRAM()[_RAM_BALL_Y]) != 0

    def _launch(self, obs, reward, terminated, truncated, info):
        for _ in range(self.MAX_PRESSES):
            if terminated or truncated or self._ball_in_play():
                break
            obs, r, terminated, truncated, info = self.env.step(_FIRE)
            reward += r
        return obs, reward, terminated, truncated, info

    def reset(self, **kwargs):
        """Reset, then launch the first ball."""
        obs, info = self.env.reset(**kwargs)
        obs, _, _, _, info = self._launch(obs, 0.0, False, False, info)
        return obs, info

    def step(self, action):
        """Step, then launch a new ball if this step lost one."""
        return self._launch(*self.env.step(action))


class BreakoutExpert:
    """Scripted Breakout paddle controller with an emulator-state lookahead.

    Reads ball and paddle positions from the RAM of the env's emulator; when no
    ball is in play it presses FIRE. Otherwise it predicts the ball's x where it
    reaches the paddle row (clone state, run NOOP frames, restore state), and
    returns the action among NOOP/RIGHT/LEFT whose simulated agent step brings
    the paddle nearest the aim point. Every simulation ends with an exact
    ``restoreState`` (RNG included), so the real episode is not disturbed. The
    landing prediction is cached and only recomputed when the ball changes
    direction, which keeps a full episode to a few seconds of CPU.
    """

    def __init__(self, env: gym.Env):
        """Bind to ``env`` (made by :func:`make_breakout_env`); reads its emulator."""
        base = env.unwrapped
        self._ale = base.ale
        # Agent actions index the minimal action set; ale.act wants ALE actions.
        self._action_set = list(base._action_set)
        self._frame_skip = FRAME_SKIP
        self.reset()

    def reset(self, seed: int | None = None) -> None:
        """Forget the cached landing prediction; call after every ``env.reset``. ``seed`` picks
        where on the paddle this episode catches the ball: the game itself barely depends on the
        reset seed (no sticky actions), so without it most seeds replay one episode."""
        self._bias = int(np.random.default_rng(seed).integers(-3, 4)) if seed is not None else 0
        self._landing_x: int | None = None
        self._last_ball: tuple[int, int] | None = None
        self._last_dir: tuple[int, int] | None = None
        self._score: tuple[int, ...] | None = None
        self._stall = 0
        self._nudge = 0

    def __call__(self, obs=None) -> int:
        """Return the action for the current env state (``obs`` is not used)."""
        ram = self._ale.getRAM()
        ball_x, ball_y = int(ram[_RAM_BALL_X]), int(ram[_RAM_BALL_Y])
        score = tuple(int(ram[i]) for i in _RAM_SCORE)
        if score != self._score:
            self._score, self._stall, self._nudge = score, 0, 0
        elif ball_y != 0:
            self._stall += 1
            if self._stall % _STALL_STEPS == 0:
                self._nudge += 1
        if ball_y == 0:
            # No ball in play: launch one, and drop any stale prediction.
            self._landing_x, self._last_ball, self._last_dir = None, None, None
            return _FIRE

        direction = None
        if self._last_ball is not None:
            direction = (
                int(np.sign(ball_x - self._last_ball[0])),
                int(np.sign(ball_y - self._last_ball[1])),
            )
        # The ball's flight between bounces is deterministic and already part of
        # the last simulation; re-predict only when something changed it.
        if self._landing_x is None or direction != self._last_dir:
            self._landing_x = self._predict_landing_x()
        self._last_ball, self._last_dir = (ball_x, ball_y), direction

        target_x = self._landing_x if self._landing_x is not None else ball_x
        half = min(max(int(ram[_RAM_HALF_PADDLE]), 4), 8)
        max_shift = half - 2  # keeps the catch point >= 2 units from either end
        shift = max(-max_shift, min(max_shift, _NUDGES[self._nudge % len(_NUDGES)] + self._bias))
        return self._steer(target_x - half - shift)

    def _predict_landing_x(self) -> int | None:
        """Ball x when it next comes down to the paddle row, or None if it doesn't."""
        ale = self._ale
        state = ale.cloneState(include_rng=True)
        noop = self._action_set[_NOOP]
        lives = ale.lives()
        prev_y = int(ale.getRAM()[_RAM_BALL_Y])
        landing = None
        try:
            for _ in range(_MAX_LOOKAHEAD_FRAMES):
                ale.act(noop)
                ram = ale.getRAM()
                y = int(ram[_RAM_BALL_Y])
                if y == 0 or ale.lives() != lives or ale.game_over():
                    break
                if y >= _PADDLE_Y and y > prev_y:
                    landing = int(ram[_RAM_BALL_X])
                    break
                prev_y = y
        finally:
            ale.restoreState(state)
        return landing

    def _steer(self, paddle_target: int) -> int:
        """Action among NOOP/RIGHT/LEFT whose next agent step ends nearest the target.

        Simulating the step instead of thresholding the distance accounts for
        the paddle's acceleration, so it neither overshoots nor oscillates.
        """
        ale = self._ale
        paddle_x = int(ale.getRAM()[_RAM_PADDLE_X])
        state = ale.cloneState(include_rng=True)
        errors = {}
        try:
            for action in (_NOOP, _RIGHT, _LEFT):
                for _ in range(self._frame_skip):
                    ale.act(self._action_set[action])
                errors[action] = abs(int(ale.getRAM()[_RAM_PADDLE_X]) - paddle_target)
                ale.restoreState(state)
        finally:
            ale.restoreState(state)
        if len(set(errors.values())) == 1 and paddle_x != paddle_target:
            # No action moves the paddle within one step: ALE's paddle input has
            # run past the edge the game clamps at (x 55..191), and must be
            # wound back for several steps before the paddle moves again.
            return _RIGHT if paddle_x < paddle_target else _LEFT
        return min(errors, key=errors.__getitem__)  # ties keep NOOP (first)
