"""Training windows of whole timesteps drawn from encoded episodes, with Gato/NEKO prompts.

A window is a run of consecutive timesteps of one episode. A prompt is a run of timesteps of the
same or another episode placed before it (its start, its end, or anywhere), so that the model
learns to act in the way a demonstration shows; in prompted evaluation the last timesteps of
top-return episodes play that part.

Drawing a window costs the same at any number of episodes: the episode comes from a binary search of
the precomputed length CDF (``EncodedEpisodes.length_cdf``; the same draw as ``rng.choice`` with
length-proportional weights) and prompt pools from the precomputed return order; only the rows drawn
are read, so episodes kept on disk (``gato.data.episode_store``) are read a few rows at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gato.batch import Batch, StepLayout, corrupt_action_inputs, pack
from gato.codec import SpaceCodec
from gato.data.episodes import EncodedEpisodes
from gato.tasks import defaults

PROMPT_TYPES = ("start", "end", "uniform")


@dataclass(frozen=True)
class WindowSampler:
    """How a task draws its training windows and prompts (``ControlTask``'s arguments of the
    same names, where each is described)."""

    training_prompt_len_proportion: float = defaults.PROMPT_LEN_PROPORTION
    share_prompt_episodes: bool = defaults.SHARE_PROMPT_EPISODES
    top_k_prompting: int | None = defaults.TOP_K_PROMPTING
    prompt_ep_proportion: float = defaults.PROMPT_EP_PROPORTION
    prompt_type: str = defaults.PROMPT_TYPE
    pack_windows: bool = False
    action_history_noise: float = 0.0
    window_sampling: str = defaults.WINDOW_SAMPLING
    episode_prefix: int = defaults.EPISODE_PREFIX

    def __post_init__(self):
        if self.prompt_type not in PROMPT_TYPES:
            raise ValueError(f"prompt_type must be one of {PROMPT_TYPES}, got {self.prompt_type!r}")
        if self.window_sampling not in defaults.WINDOW_SAMPLINGS:
            raise ValueError(f"window_sampling must be one of {defaults.WINDOW_SAMPLINGS}, "
                             f"got {self.window_sampling!r}")
        if not 0.0 <= self.prompt_ep_proportion <= 1.0 or not 0.0 < self.training_prompt_len_proportion < 1.0:
            raise ValueError("prompt_ep_proportion must be in [0, 1] and training_prompt_len_proportion in (0, 1)")
        if self.episode_prefix < 0:
            raise ValueError(f"episode_prefix must be >= 0 (0: whole episodes), got {self.episode_prefix}")
        if not 0.0 <= self.action_history_noise <= 1.0:
            raise ValueError(f"action_history_noise must be in [0, 1], got {self.action_history_noise}")

    def sample_batch(self, episodes: EncodedEpisodes, codec: SpaceCodec, batch_size: int, context_len: int,
                     rng: np.random.Generator) -> Batch:
        """``batch_size`` rows of windows of ``episodes`` (encoded by ``codec``), padded to ``context_len``."""
        # a prompt leaves room for at least one whole timestep of the window
        prompt_steps = min(codec.timesteps_in(context_len - codec.tokens_per_step),
                           codec.timesteps_in(int(context_len * self.training_prompt_len_proportion)))
        pool = self._prompt_pool(episodes)
        rows, row, used = [], [], 0
        while len(rows) < batch_size:
            unit = self._sample_unit(episodes, codec, context_len, prompt_steps, pool, rng)
            tokens = sum(codec.window_tokens(len(t)) for t, _, _ in unit)
            if row and used + tokens > context_len:  # the packed row is full
                rows.append(row)
                row, used = [], 0
            row.append(unit)
            used += tokens
            if not self.pack_windows:  # one window per row: close it now, sample nothing extra
                rows.append(row)
                row, used = [], 0
        batch = pack(rows, StepLayout.of(codec), context_len, codec.vocab.pad)
        if self.action_history_noise:
            batch.inputs = corrupt_action_inputs(batch, codec.obs_tokens + 1, codec.action_ranges,
                                                 self.action_history_noise, rng)
        return batch

    def _sample_unit(self, episodes, codec, context_len, prompt_steps, pool, rng) -> list:
        """One window of at most ``context_len`` tokens, with a prompt before it or not: a list of segments,
        each a (steps, normalised patches, inputs) triple of consecutive timesteps (see :func:`timesteps`),
        each laid out from a whole first timestep (see ``StepLayout.run``)."""
        lengths = episodes.lengths
        # episode in proportion to its length (of it that is trained on): rng.choice(E, p=lengths / total)'s draw,
        # without its O(E) CDF
        e = int(episodes.prefix_cdf(self.episode_prefix).searchsorted(rng.random(), side="right"))
        segments, room = [], context_len
        if prompt_steps > 0 and rng.random() < self.prompt_ep_proportion:
            p = e if self.share_prompt_episodes else int(pool[rng.integers(0, len(pool))])  # rng.choice(pool)
            k = min(prompt_steps, lengths[p])
            segments.append(timesteps(episodes, codec, p, self._prompt_start(lengths[p], k, rng), k))
            room -= codec.window_tokens(k)
        length = int(lengths[e]) if not self.episode_prefix else min(int(lengths[e]), self.episode_prefix)
        start, k = self.window_bounds(length, codec.timesteps_in(room), rng)
        segments.append(timesteps(episodes, codec, e, start, k))
        return segments

    def window_bounds(self, length: int, room: int, rng) -> tuple[int, int]:
        """(start, timesteps) of a window of an episode of ``length`` timesteps, at most ``room`` of them.

        "fit": a whole window, anywhere it fits. An episode's first (and last) ``room - 1`` timesteps are then in
        fewer windows than the rest: its first timestep in one start of ``length - room + 1``, though every
        evaluation episode begins there, from an empty context. "even": the window may reach over either end of
        the episode and is cut there, so every timestep is in a window equally often and a share of the windows
        begin where the episode does, as in evaluation; the cut windows are shorter (packing fills the row)."""
        k = min(length, room)
        if self.window_sampling == "fit" or length <= room:
            return int(rng.integers(0, length - k + 1)), k
        start = int(rng.integers(1 - k, length))
        first = max(start, 0)
        return first, min(start + k, length) - first

    def _prompt_pool(self, episodes: EncodedEpisodes) -> np.ndarray:
        """Episodes a prompt may come from: all, or the ``top_k_prompting`` of highest return."""
        order = episodes.return_order
        return order[: self.top_k_prompting] if self.top_k_prompting else order

    def _prompt_start(self, length: int, k: int, rng) -> int:
        if self.prompt_type == "start":
            return 0
        if self.prompt_type == "end":
            return length - k
        return int(rng.integers(0, length - k + 1))

    def eval_prompt(self, episodes: EncodedEpisodes, codec: SpaceCodec, rng: np.random.Generator, context_len: int,
                    device="cpu"):
        """A function n -> prompt stream: the last steps of top-k episodes (NEKO's eval prompt),
        ``training_prompt_len_proportion`` of ``context_len``."""
        steps = max(1, codec.timesteps_in(int(context_len * self.training_prompt_len_proportion)))
        pool = self._prompt_pool(episodes)
        lengths = episodes.lengths
        k = int(min(steps, lengths[pool].max()))
        pool = pool[lengths[pool] >= k]
        layout = StepLayout.of(codec)

        def make(n: int) -> dict:
            chosen = rng.choice(pool, size=n)
            samples = [[[timesteps(episodes, codec, e, lengths[e] - k, k)]] for e in chosen]
            stream = pack(samples, layout, codec.window_tokens(k), codec.vocab.pad).to_torch(device)
            stream.pop("targets")
            # a prompt shows the expert's actions, also where a corrected episode's policy took others
            stream.pop("input_tokens", None)
            return stream
        return make


def timesteps(episodes: EncodedEpisodes, codec: SpaceCodec, episode: int, start: int, k: int) -> tuple:
    """Timesteps ``start .. start + k - 1`` of ``episode``: its token rows, normalised patches
    and inputs (None: as the rows), the segment :func:`gato.batch.pack` takes."""
    lo = episodes.starts[episode] + start
    inputs = None if episodes.inputs is None else episodes.inputs[lo : lo + k]
    return episodes.steps[lo : lo + k], codec.normalize_patches(episodes.patches[lo : lo + k]), inputs
