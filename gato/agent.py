"""Agent: a GatoPolicy acting in Gymnasium environments, one env step at a time.

The one place where an observation becomes tokens and predicted tokens become an action::

    agent = Agent(policy, task)       # or a SpaceCodec, a Gymnasium env, (observation_space, action_space)
    agent = load_agent("runs/NAME/checkpoint", task="GoToLocal")  # gato.tasks.registry: from a checkpoint, no data
    env = agent.task.make_env()
    obs, _ = env.reset(seed=0)
    agent.reset()
    done = False
    while not done:
        obs, reward, terminated, truncated, _ = env.step(agent.act(obs))
        done = terminated or truncated

At every env step only the new tokens go through the policy's key/value cache: the previous
action's last token (generated, not fed yet), the observation and the separator. Then the
action's tokens are generated one by one, each restricted to its range of ids. When the
context is full the oldest tokens are dropped (RoPE keeps the others valid), so an episode may
run for any number of steps. A codec that reads a field once per window (BabyAI's mission) lays it
out in the context's first timestep only, as in training; when such a context is full it starts
again from the recent timesteps that fill half of it, the first laid out whole, so the
mission is never dropped.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector.utils import batch_space, concatenate, create_empty_array, iterate

from gato.batch import StepLayout, pack
from gato.codec import SpaceCodec, VocabMismatchError

REFILL = 0.5
"""Share of the context a window-laid-out agent refills with recent timesteps when its context is full. Each refill
re-feeds that share at once, so less is cheaper: on 16 long BabyAI levels a half took 1.40x less time than three
quarters, with the same scores (docs/EXPERIMENTS.md, 2026-12-07)."""


class Agent:
    """Acts with ``policy`` in the environments of ``source``.

    Args:
        policy: a GatoPolicy (put in eval mode: acting never uses dropout).
        source: what says how observations and actions are tokenised: a task (anything with a
            ``codec``, e.g. a ControlTask encoded for the policy's vocabulary), a SpaceCodec,
            a Gymnasium env or an (observation_space, action_space) pair (the last two get a
            codec of the policy's vocabulary and patch size).
        deterministic: argmax actions (True) or actions sampled from the policy's distribution.
        use_cache: False re-runs the whole context at every generated token (how NEKO acts;
            kept to measure the cache against). Same actions, up to float round-off.
        generator: the torch.Generator that sampled actions draw from (default: torch's global one).
    """

    def __init__(self, policy, source, *, deterministic: bool = True, use_cache: bool = True,
                 generator: torch.Generator | None = None):
        self.policy = policy
        self.codec = codec_of(policy, source)
        self.task = source if hasattr(source, "make_env") else None  # a task makes the envs it acts in
        self.deterministic = deterministic
        self.use_cache = use_cache
        self.generator = generator
        self._ranges = torch.as_tensor(self.codec.action_ranges)  # (K, 2) id range of each action token
        masks = getattr(self.codec, "action_masks", None) or [None] * len(self._ranges)
        # None when no token is restricted within its range (the common case: nothing to mask)
        self._masks = None if all(m is None for m in masks) else [
            None if m is None else torch.as_tensor(m) for m in masks]
        self._one_action_space = batch_space(self.codec.action_space, 1)
        # a codec with fields read once per window restarts its context instead of dropping its oldest tokens
        self._layout = StepLayout.of(self.codec)
        self._windowed = self._layout.in_later is not None
        self.reset()

    @torch.inference_mode()
    def reset(self, n_envs: int = 1, prompt: dict | None = None) -> None:
        """Start new episodes in ``n_envs`` envs: an empty context, then ``prompt`` (optional; a
        stream dict of n_envs rows, e.g. a ControlTask's eval_prompt(...)(n_envs)) fed once."""
        self.policy.eval()
        self.n_envs = n_envs
        self._cache = self.policy.new_cache() if self.use_cache else self.policy.new_cache(cached=False)
        self._pending: torch.Tensor | None = None  # (n_envs,) last action token, fed with the next observation
        self._fed = 0  # tokens in the context
        self._opening = True  # windowed: the next timestep opens a window (laid out whole)
        self._recent: list = []  # windowed: the last timesteps' (tokens (n, S), normalised patches)
        if prompt is not None:
            self.policy.extend(self._cache, prompt)
            self._fed = prompt["tokens"].shape[1]

    @torch.inference_mode()
    def keep_envs(self, rows) -> None:
        """Act from now on for the envs ``rows`` only (indices into the current ones, in order; the others'
        episodes have ended): their rows of the context are kept, the rest no longer cost a forward pass."""
        rows = np.asarray(rows, dtype=np.int64)
        if rows.ndim != 1 or (len(rows) and not (0 <= rows.min() and rows.max() < self.n_envs)):
            raise ValueError(f"keep_envs takes indices of the agent's {self.n_envs} envs, got {rows.tolist()}")
        index = torch.from_numpy(rows)
        self._cache.keep_rows(index)
        if self._pending is not None:
            self._pending = self._pending[index.to(self._pending.device)]
        self._recent = [(step[rows], patches[rows]) for step, patches in self._recent]
        self.n_envs = len(rows)

    def act(self, obs):
        """One env's action (as ``env.step`` takes it) for its observation (as the env returns it)."""
        if self.n_envs != 1:
            raise ValueError(f"act() is for one env, but the agent was reset for {self.n_envs}; "
                             "use act_batch(obs) for a vector env, or agent.reset() for one env")
        space = self.codec.observation_space
        actions = self.act_batch(concatenate(space, [obs], create_empty_array(space, 1)))
        return next(iter(iterate(self._one_action_space, actions)))

    @torch.inference_mode()
    def act_batch(self, obs):
        """Actions of ``n_envs`` envs, batched as a Gymnasium vector env takes them (e.g. an
        (n_envs,) array for Discrete, (n_envs, d) for a Box of shape (d,)), for their
        observations batched as a vector env returns them."""
        tok, patches = encoded_observations(self.codec, obs, self.n_envs)
        # this step feeds the pending token, a later timestep's observation and separator, and K - 1 actions
        if self._windowed and self._fed and self._fed + self.codec.tokens_per_later_step - 1 + int(
                self._pending is not None) > self.policy.context_len:
            self._refill()
        chunk = step_stream(self.codec, tok, patches, self._pending, self.policy.device,
                            whole=self._opening or not self._windowed)
        tokens = self._generate(chunk)  # (n_envs, K)
        if self._windowed:
            self._opening = False
            self._fed += chunk["tokens"].shape[1] + len(self._ranges) - 1
            step = np.concatenate([tok, np.full((self.n_envs, 1), self.codec.vocab.separator),
                                   tokens.cpu().numpy()], axis=1)
            self._recent = (self._recent + [(step, patches)])[-self.codec.timesteps_in(self.policy.context_len):]
        self._pending = tokens[:, -1]
        return self.codec.decode_actions(tokens.cpu().numpy())

    def _refill(self) -> None:
        """A new context holding the latest timesteps that fit ``REFILL`` of it, the first laid out whole (the
        window a training row shows); the last action's tokens are in it, so nothing is pending."""
        keep = max(0, min(len(self._recent), self.codec.timesteps_in(int(self.policy.context_len * REFILL))))
        self._cache = self.policy.new_cache(cached=self.use_cache)
        self._pending, self._fed, self._opening = None, 0, not keep
        if not keep:
            return
        steps = np.stack([s for s, _ in self._recent[-keep:]], axis=1)  # (n, keep, S)
        patches = np.stack([p for _, p in self._recent[-keep:]], axis=1)
        rows = [[[(steps[b], patches[b], None)]] for b in range(self.n_envs)]
        stream = pack(rows, self._layout, self.codec.window_tokens(keep), self.codec.vocab.pad).to_torch(
            self.policy.device)
        stream.pop("targets")
        self.policy.extend(self._cache, stream)
        self._fed = stream["tokens"].shape[1]

    def _generate(self, chunk: dict) -> torch.Tensor:
        """(n_envs, K) action tokens following ``chunk``, with the cache or re-running the context."""
        first_pos = self.codec.obs_tokens + 1  # the action's place in its timestep, after the separator
        return self.policy.generate(self._cache, chunk, self._ranges, first_pos, self.deterministic,
                                    self.generator, self._masks)


def codec_of(policy, source) -> SpaceCodec:
    """The codec an agent of ``policy`` acts through in ``source`` (see :class:`Agent`)."""
    if isinstance(source, gym.Env):
        source = (source.observation_space, source.action_space)
    if isinstance(source, tuple) and len(source) == 2 and all(isinstance(s, gym.Space) for s in source):
        return SpaceCodec(source[0], source[1], policy.vocab, policy.patch_size)
    codec = source if isinstance(source, SpaceCodec) else getattr(source, "codec", None)
    if not isinstance(codec, SpaceCodec):
        raise ValueError(f"an agent acts in a task (with a codec), a SpaceCodec, a Gymnasium env or an "
                        f"(observation_space, action_space) pair, not {type(source).__name__}")
    if codec.vocab != policy.vocab:
        raise VocabMismatchError(
            f"the codec's vocabulary {codec.vocab} is not the policy's {policy.vocab}: its tokens would mean "
            "other things to the policy. Encode the task for the policy first: task.encode_for(policy.vocab)."
        )
    if codec.patches_per_step and codec.patch_size != policy.patch_size:
        raise ValueError(f"the codec cuts images into {codec.patch_size}-pixel patches but the policy reads "
                         f"{policy.patch_size}-pixel ones; build the task with patch_size={policy.patch_size}")
    return codec


def observation_stream(codec: SpaceCodec, obs, n: int, pending: torch.Tensor | None, device) -> dict:
    """Stream chunk of one env step of n envs: [pending action token] + observation + separator.

    ``obs`` is batched as a Gymnasium vector env returns it; ``pending`` (n,) or None. Returns
    ``tokens``, ``in_step_pos``, ``patch_mask`` (n, T), ``patches`` (n * patches_per_step, C, P, P)
    and ``patch_rowcol`` (n * patches_per_step, 2) on ``device``.
    """
    return step_stream(codec, *encoded_observations(codec, obs, n), pending, device)


def encoded_observations(codec: SpaceCodec, obs, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Tokens (n, obs_tokens) and normalised patches (n, patches_per_step, C, P, P) of ``n`` envs' observations,
    batched as a Gymnasium vector env returns them."""
    tok, raw_patches = codec.encode_observations(obs, n)
    if len(tok) != n:
        raise ValueError(f"got {len(tok)} observations for {n} envs; reset the agent with n_envs={len(tok)}")
    return tok, codec.normalize_patches(raw_patches)


def step_stream(codec: SpaceCodec, tok: np.ndarray, patches: np.ndarray, pending: torch.Tensor | None, device,
                whole: bool = True) -> dict:
    """:func:`observation_stream` of encoded observations: tokens (n, obs_tokens) and normalised patches
    (n, patches_per_step, C, P, P). ``whole`` False leaves out the fields read once per window (a timestep
    after a window's first)."""
    n = len(tok)
    S, n_obs = codec.tokens_per_step, codec.obs_tokens
    tokens = np.concatenate([tok, np.full((n, 1), codec.vocab.separator)], axis=1)
    pos = np.arange(n_obs + 1)
    is_patch = np.concatenate([codec.obs_is_patch, [False]])
    if not whole:
        keep = np.concatenate([~codec.obs_once, [True]])
        tokens, pos, is_patch = tokens[:, keep], pos[keep], is_patch[keep]
    if pending is not None:
        tokens = np.concatenate([pending.cpu().numpy()[:, None], tokens], axis=1)
        pos = np.concatenate([[S - 1], pos])
        is_patch = np.concatenate([[False], is_patch])
    return {
        "tokens": torch.from_numpy(tokens).to(device),
        "in_step_pos": torch.from_numpy(np.tile(pos, (n, 1))).to(device),
        "patch_mask": torch.from_numpy(np.tile(is_patch, (n, 1))).to(device),
        "patches": torch.from_numpy(patches.reshape((n * patches.shape[1],) + patches.shape[2:])).to(device),
        "patch_rowcol": torch.from_numpy(np.tile(codec.patch_rowcol, (n, 1))).to(device),
    }
