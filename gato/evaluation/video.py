"""Rollout videos: what a person would rather watch than read."""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

import numpy as np

from gato.evaluation.rollout import rollout
from gato.seeds import EVALUATION


def record_video(policy, task, path: str | Path, deterministic: bool = True, seed: int = EVALUATION.start) -> dict:
    """Play one promptless episode of ``task`` (a ``ControlTask``; seed ``seed``) with ``policy``,
    rendered with ``render_mode="rgb_array"``, and write it as a GIF at ``path``; returns the
    episode's return and length and the path."""
    headless_rendering()
    policy = getattr(policy, "module", policy)
    codec = task.codec_for(policy.vocab)
    make = partial(task.make_env, render_mode="rgb_array") if task.env.spec is not None else task.make_env
    frames: list = []
    result = rollout(policy, codec, make, 1, n_envs=1, deterministic=deterministic, seed=seed, frames=frames)
    write_gif(frames, path, fps=int(task.env.metadata.get("render_fps") or 30))
    return {"return": result.returns[0], "length": result.lengths[0], "path": str(path)}


def play(agent, n_episodes: int, video_dir: str | Path | None = None, seed: int = EVALUATION.start,
         progress: bool = True) -> list[dict]:
    """Play ``n_episodes`` episodes of ``agent.task`` (an Agent made for a task, e.g. by
    ``gato.tasks.registry.load_agent``) one env step at a time, episode i on seed ``seed + i`` (the seeds
    ``gato eval`` plays); with ``video_dir``, each episode is rendered and written as a GIF there.
    Returns one record per episode: seed, return, length and the GIF's path (or None)."""
    if agent.task is None:
        raise ValueError("play needs an agent made for a task (it makes the envs): gato.tasks.registry.load_agent or "
                         "Agent(policy, task)")
    task = agent.task
    render = video_dir is not None
    if render:
        headless_rendering()
    env = task.make_env(render_mode="rgb_array") if render else task.make_env()
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n_episodes, desc=f"playing {task.name}", unit="episode")
    records = []
    try:
        for i in range(n_episodes):
            obs, _ = env.reset(seed=seed + i)
            agent.reset()
            frames = [env.render()] if render else None
            total, length, done = 0.0, 0, False
            while not done:
                obs, reward, terminated, truncated, _ = env.step(agent.act(obs))
                total += float(reward)
                length += 1
                done = terminated or truncated
                if render:
                    frames.append(env.render())
            gif = None
            if render:
                gif = str(write_gif(frames, Path(video_dir) / f"{task.name.replace('/', '_')}_{seed + i}.gif",
                                    fps=int(env.metadata.get("render_fps") or 30)))
            records.append({"seed": seed + i, "return": total, "length": length, "path": gif})
            if bar is not None:
                bar.set_postfix(last_return=f"{total:.3f}")
                bar.update(1)
    finally:
        env.close()
        if bar is not None:
            bar.close()
    return records


def write_gif(frames: list, path: str | Path, fps: int = 30, max_frames: int = 1500) -> Path:
    """Write RGB frames (H, W, 3) uint8 as an animated GIF (``imageio``, the 'video' extra).

    Episodes longer than ``max_frames`` keep every k-th frame so the file stays small.
    """
    try:
        import imageio.v2 as imageio
    except ImportError as err:
        raise ImportError('writing videos needs imageio: `.venv/bin/pip install -e ".[video]"`') from err
    if not frames:
        raise ValueError(f"no frames to write to {path}: the environment rendered nothing")
    stride = max(1, -(-len(frames) // max_frames))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    imageio.mimsave(path, [np.asarray(f, dtype=np.uint8) for f in frames[::stride]], duration=1000 * stride / fps,
                    loop=0)
    return path


def headless_rendering() -> None:
    """Render without a screen: MuJoCo through EGL and pygame (Box2D, classic control) to a dummy
    display, unless the user chose otherwise."""
    os.environ.setdefault("MUJOCO_GL", "egl")
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
