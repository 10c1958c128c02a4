"""Rollouts: episodes of several environments at once, played by an :class:`gato.agent.Agent`.

Each round resets a Gymnasium vector env and the agent (which feeds the optional prompt once),
then steps every env with the agent's batched actions until all of the round's episodes end.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector.utils import batch_space, concatenate, create_empty_array, iterate

from gato import seeds
from gato.agent import Agent
from gato.codec import SpaceCodec


@dataclass
class RolloutResult:
    """Per-episode returns, lengths, seeds and successes: whether ``info["success"]`` was true at any
    step (Meta-World's measure), None for an episode whose env never reported "success"."""

    returns: list = field(default_factory=list)
    lengths: list = field(default_factory=list)
    seeds: list = field(default_factory=list)
    successes: list = field(default_factory=list)


@torch.inference_mode()
def rollout(policy, codec: SpaceCodec, make_env, n_episodes: int, *, n_envs: int = 8,
            deterministic: bool = True, prompt=None, seed: int | Sequence[int] = seeds.EVALUATION.start,
            use_cache: bool = True, progress: bool = False, frames: list | None = None, observer=None,
            part: tuple[int, int] = (0, 1), compact: bool = True) -> RolloutResult:
    """Run ``n_episodes`` episodes of ``make_env()`` envs with ``policy``.

    ``prompt(n)`` returns a stream dict (n rows, one length) fed before each round, or None.
    Episode i uses seed ``seed + i``, or ``seed[i]`` where ``seed`` is a sequence of seeds. ``part`` = (p, k)
    plays only the episodes i = p, p + k, p + 2k, ... (process p of k plays its share; with argmax actions each
    episode's result does not depend on which process plays it). ``use_cache=False`` re-runs the whole context at
    every step instead (how NEKO evaluates; kept to measure the cache against). With ``frames`` (a
    list), ``render()`` of the first env is appended to it at every step of its first episode.
    ``observer`` (optional) sees every round: ``observer.reset(envs)`` after each reset,
    ``observer.before_step(obs, actions, live)`` before each env step (the envs still in the
    observed state) and ``observer.after_step(rewards, finished)`` after it. An env whose step
    info has "success" gets each episode's success counted (``RolloutResult.successes``).
    ``compact`` (default): the agent acts only for the envs whose counted episode is still running (an env
    whose episode ended, or a short last round's spare env, repeats an action, uncounted, without a forward
    pass); False: every env of the round is acted for until the round's last episode ends (kept to measure
    against; with argmax actions the episodes are the same, up to float round-off).
    """
    was_training = policy.training
    index, parts = part
    if isinstance(seed, Sequence):
        if len(seed) < n_episodes:
            raise ValueError(f"{n_episodes} episodes asked for, {len(seed)} seeds given")
        episode_seeds = [int(s) for s in seed[index:n_episodes:parts]]
        seed = int(seed[0]) if len(seed) else 0  # the generator's seed
    else:
        episode_seeds = [seed + i for i in range(index, n_episodes, parts)]
    n_envs = max(1, min(n_envs, len(episode_seeds)))
    generator = torch.Generator(device=policy.device).manual_seed(seed + index)
    envs = gym.vector.SyncVectorEnv([make_env for _ in range(n_envs)])
    result = RolloutResult()
    bar = _progress(len(episode_seeds), progress)
    try:
        agent = Agent(policy, codec, deterministic=deterministic, use_cache=use_cache, generator=generator)
        for first in range(0, len(episode_seeds), n_envs):
            round_seeds = episode_seeds[first:first + n_envs]
            take = len(round_seeds)
            # a short last round: the spare envs play (uncounted) episodes after the last seed
            round_seeds += [episode_seeds[-1] + 1 + i for i in range(n_envs - take)]
            obs, _ = envs.reset(seed=round_seeds)
            agent.reset(n_envs, None if prompt is None else prompt(n_envs))
            returns, lengths, successes = _play_round(agent, envs, obs, frames if first == 0 else None, observer,
                                                      take if compact else None)
            result.returns += returns[:take].tolist()
            result.lengths += lengths[:take].tolist()
            result.successes += successes[:take]
            result.seeds += round_seeds[:take]
            if bar is not None:
                bar.update(take)
    finally:
        envs.close()
        if bar is not None:
            bar.close()
        policy.train(was_training)
    return result


def _play_round(agent: Agent, envs: gym.vector.SyncVectorEnv, obs, frames: list | None, observer,
                counted: int | None = None):
    """Step all envs with the agent's actions until each has ended one episode (an env whose
    episode ended keeps stepping, uncounted, until the others end). ``counted``: the first
    ``counted`` envs play the counted episodes and the agent acts for those still running only
    (see :func:`rollout`'s ``compact``); None: for every env. Returns the episodes'
    returns (n_envs,), lengths (n_envs,) and successes (a list: True/False where the env reports
    ``info["success"]``, else None)."""
    n = envs.num_envs
    returns, lengths, done = np.zeros(n), np.zeros(n, dtype=np.int64), np.zeros(n, dtype=bool)
    reported, succeeded = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
    if counted is not None:
        done[counted:] = True  # a short last round's spare envs: not played
    acting = np.arange(n)  # the envs the agent acts for, in its rows' order
    actions = None
    if frames is not None:
        frames.append(envs.envs[0].render())
    if observer is not None:
        observer.reset(envs)
    while not done.all():
        live = ~done
        if counted is None:
            actions = agent.act_batch(obs)
        else:
            if len(acting) > live.sum():
                keep = np.flatnonzero(live[acting])
                agent.keep_envs(keep)
                acting = acting[keep]
            actions = _with_rows(envs, actions, acting, agent.act_batch(_rows(envs, obs, acting)))
        if observer is not None:
            observer.before_step(obs, actions, live)
        obs, reward, terminated, truncated, info = envs.step(actions)
        returns[live] += reward[live]
        lengths[live] += 1
        if "success" in info:  # a vector env's info: values per env, "_success" marks the envs that gave one
            has = live & np.asarray(info["_success"], dtype=bool)
            reported |= has
            succeeded |= has & np.asarray(info["success"], dtype=bool)
        finished = live & (terminated | truncated)
        done |= finished
        if observer is not None:
            observer.after_step(reward, finished)
        if frames is not None and live[0]:
            frames.append(envs.envs[0].render())
    return returns, lengths, [bool(s) if r else None for r, s in zip(reported, succeeded)]


def _rows(envs: gym.vector.VectorEnv, obs, rows: np.ndarray):
    """The observations of envs ``rows``, batched as the vector env batches them."""
    if len(rows) == envs.num_envs:
        return obs
    space = envs.single_observation_space
    items = list(iterate(envs.observation_space, obs))
    return concatenate(space, [items[i] for i in rows], create_empty_array(space, len(rows)))


def _with_rows(envs: gym.vector.VectorEnv, last, rows: np.ndarray, actions):
    """Every env's action: ``actions`` for envs ``rows``; each other env repeats its ``last`` action (the first
    acting env's where it has none), which nothing counts but the env must be given."""
    if len(rows) == envs.num_envs:
        return actions
    space = envs.single_action_space
    new = list(iterate(batch_space(space, len(rows)), actions))
    items = [new[0]] * envs.num_envs if last is None else list(iterate(envs.action_space, last))
    for row, action in zip(rows, new):
        items[row] = action
    return concatenate(space, items, create_empty_array(space, envs.num_envs))


def _progress(total: int, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="evaluating", unit="episode")
