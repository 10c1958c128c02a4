"""Cached rollouts: several environments at once, one cached transformer step per token.

Each round resets a Gymnasium vector env, feeds the (optional) prompt once, then at every
env step feeds only the new tokens (the previous action's last token, the observation, the
separator) through the key/value cache and generates the action tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np
import torch

from gato.codec import SpaceCodec


@dataclass
class RolloutResult:
    """Per-episode returns and lengths."""

    returns: list = field(default_factory=list)
    lengths: list = field(default_factory=list)


def observation_stream(codec: SpaceCodec, obs, n: int, pending: torch.Tensor | None, device) -> dict:
    """Stream chunk for one env step of n envs: [pending action token] + observation + separator."""
    tok, raw_patches = codec.encode_observations(obs, n)
    S, n_obs = codec.tokens_per_step, codec.obs_tokens
    tokens = np.concatenate([tok, np.full((n, 1), codec.vocab.separator)], axis=1)
    pos = np.arange(n_obs + 1)
    is_patch = np.concatenate([codec.obs_is_patch, [False]])
    if pending is not None:
        tokens = np.concatenate([pending.cpu().numpy()[:, None], tokens], axis=1)
        pos = np.concatenate([[S - 1], pos])
        is_patch = np.concatenate([[False], is_patch])
    patches = codec.normalize_patches(raw_patches)
    return {
        "tokens": torch.from_numpy(tokens).to(device),
        "in_step_pos": torch.from_numpy(np.tile(pos, (n, 1))).to(device),
        "patch_mask": torch.from_numpy(np.tile(is_patch, (n, 1))).to(device),
        "patches": torch.from_numpy(patches.reshape((n * patches.shape[1],) + patches.shape[2:])).to(device),
        "patch_rowcol": torch.from_numpy(np.tile(codec.patch_rowcol, (n, 1))).to(device),
    }


@torch.inference_mode()
def rollout(policy, codec: SpaceCodec, make_env, n_episodes: int, *, n_envs: int = 8,
            deterministic: bool = True, prompt=None, seed: int = 1_000_000, use_cache: bool = True,
            progress: bool = False, frames: list | None = None, observer=None) -> RolloutResult:
    """Run ``n_episodes`` episodes of ``make_env()`` envs with ``policy``.

    ``prompt(n)`` returns a stream dict (n rows, one length) fed before each round, or None.
    Episode i uses seed ``seed + i``. ``use_cache=False`` re-runs the whole context at every
    step instead (how NEKO evaluates; kept to measure the cache against). With ``frames`` (a
    list), ``render()`` of the first env is appended to it at every step of its first episode.
    ``observer`` (optional) sees every round: ``observer.reset(envs)`` after each reset,
    ``observer.before_step(obs, actions, live)`` before each env step (the envs still in the
    observed state) and ``observer.after_step(rewards, finished)`` after it.
    """
    was_training = policy.training
    policy.eval()
    device = policy.device
    n_envs = max(1, min(n_envs, n_episodes))
    envs = gym.vector.SyncVectorEnv([make_env for _ in range(n_envs)])
    ranges = torch.as_tensor(codec.action_ranges)
    result = RolloutResult()
    bar = _progress(n_episodes, progress)
    gen = torch.Generator(device=device).manual_seed(seed)
    try:
        episode = 0
        while episode < n_episodes:
            obs, _ = envs.reset(seed=[seed + episode + i for i in range(n_envs)])
            returns = np.zeros(n_envs)
            lengths = np.zeros(n_envs, dtype=np.int64)
            done = np.zeros(n_envs, dtype=bool)
            context = _Context(policy, use_cache)
            if prompt is not None:
                context.feed(prompt(n_envs))
            pending = None
            if frames is not None and episode == 0:
                frames.append(envs.envs[0].render())
            if observer is not None:
                observer.reset(envs)
            while not done.all():
                chunk = observation_stream(codec, obs, n_envs, pending, device)
                act_tokens = context.generate(chunk, ranges, codec.obs_tokens + 1, deterministic, gen)
                actions = codec.decode_actions(act_tokens.cpu().numpy())
                live = ~done
                if observer is not None:
                    observer.before_step(obs, actions, live)
                obs, reward, terminated, truncated, _ = envs.step(actions)
                returns[live] += reward[live]
                lengths[live] += 1
                finished = live & (terminated | truncated)
                done |= finished
                if observer is not None:
                    observer.after_step(reward, finished)
                if frames is not None and episode == 0 and live[0]:
                    frames.append(envs.envs[0].render())
                pending = act_tokens[:, -1]
            take = min(n_envs, n_episodes - episode)
            result.returns += returns[:take].tolist()
            result.lengths += lengths[:take].tolist()
            episode += take
            if bar is not None:
                bar.update(take)
    finally:
        envs.close()
        if bar is not None:
            bar.close()
        policy.train(was_training)
    return result


class _Context:
    """The policy's view of a rollout: a KV cache, or (use_cache=False) the whole stream so
    far, re-run from scratch at every generated token."""

    def __init__(self, policy, use_cache: bool):
        self.policy = policy
        self.cache = policy.new_cache() if use_cache else None
        self.history: list[dict] = []

    def feed(self, chunk: dict) -> None:
        if self.cache is not None:
            self.policy.extend(self.cache, chunk)
        else:
            self.history.append(chunk)

    def generate(self, chunk, ranges, first_pos, deterministic, gen):
        if self.cache is not None:
            return self.policy.generate(self.cache, chunk, ranges, first_pos, deterministic, gen)
        from gato.policy.gato_policy import single_token_stream

        self.history.append(chunk)
        out = []
        for j in range(len(ranges)):
            cache = self.policy.new_cache()  # fresh every time: the full context is recomputed
            stream = _concat_streams(self.history, self.policy.context_len)
            out.append(self.policy.generate(cache, stream, ranges[j : j + 1], first_pos + j, deterministic, gen))
            if j + 1 < len(ranges):
                self.history.append(single_token_stream(out[-1][:, 0], first_pos + j, self.policy.device))
        return torch.cat(out, dim=1)


def _concat_streams(chunks: list[dict], context_len: int) -> dict:
    """One stream of the last ``context_len`` tokens of ``chunks``. In a rollout every row
    has the same layout, so each row holds the same number of patches."""
    B = chunks[0]["tokens"].shape[0]
    stream = {k: torch.cat([c[k] for c in chunks], dim=1) for k in ("tokens", "in_step_pos", "patch_mask")}
    # Patches are ordered row-major over (B, T): regroup them by row before joining chunks.
    with_patches = [c for c in chunks if c["patches"].shape[0]] or chunks[:1]
    patches = torch.cat([c["patches"].reshape((B, -1) + c["patches"].shape[1:]) for c in with_patches], dim=1)
    rowcol = torch.cat([c["patch_rowcol"].reshape(B, -1, 2) for c in with_patches], dim=1)
    cut = max(0, stream["tokens"].shape[1] - context_len)
    dropped = int(stream["patch_mask"][0, :cut].sum())
    stream = {k: v[:, cut:] for k, v in stream.items()}
    stream["patches"] = patches[:, dropped:].reshape((-1,) + patches.shape[2:])
    stream["patch_rowcol"] = rowcol[:, dropped:].reshape(-1, 2)
    return stream


def _progress(total: int, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="evaluating", unit="episode")
