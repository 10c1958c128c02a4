"""ControlTask: one Gymnasium environment and its offline Minari dataset.

It owns the data (episodes read once, encoded by a :class:`SpaceCodec`), the sampling of
training windows with Gato/NEKO prompting, and evaluation in the environment. Usage, as in the
user's notebook::

    task = ControlTask("babyai", env, minari.load_dataset("babyai/GoToLocal-bot-v0"),
                       context_len=512, args=Namespace(patch_size=4))
    task.evaluate(GatoPolicy(), n_iterations=10)
"""

from __future__ import annotations

import copy
from functools import partial

import gymnasium as gym
import numpy as np

from gato.codec import SpaceCodec, UnsupportedSpaceError, space_mismatch, tokens_per_space  # noqa: F401 (re-export)
from gato.data.batch import Batch, StepLayout, corrupt_action_inputs, pack
from gato.data.episodes import EncodedEpisodes, RawEpisodes, load_minari, reading_overrides
from gato.data.recipes import play_out
from gato.evaluation.rollout import rollout
from gato.vocab import Vocab

PROMPT_TYPES = ("start", "end", "uniform")
EVAL_SEED = 1_000_000
"""First seed of evaluation episodes; data recipes use seeds below it, so they never overlap."""
CORRECTION_SEED = 500_000
"""First seed of the policy rollouts that an expert labels (DAgger), apart from data and evaluation."""


class ContextTooShortError(ValueError):
    """The context cannot hold a single timestep."""


class SpaceMismatchError(ValueError):
    """The dataset's spaces are not the environment's."""


def _make_env_from_spec(spec):
    return gym.make(spec)


class ControlTask:
    """A control task: train on a Minari dataset, evaluate in its environment.

    Args:
        env_name: the task's name in logs and score tables.
        env: a Gymnasium env (its spec is used to make evaluation copies), or None to
            recover it from the dataset.
        dataset: a MinariDataset or a local dataset id.
        context_len: tokens per training sequence.
        args: anything with ``patch_size`` (only that attribute is read).
        training_prompt_len_proportion: share of the context a prompt takes, in training
            and in prompted evaluation.
        share_prompt_episodes: prompt a training window with the end (or start, ...) of its
            own episode (True) or of another episode (False).
        top_k_prompting: take prompt episodes only from the k highest-return episodes.
        prompt_ep_proportion: share of training windows that get a prompt.
        prompt_type: which part of the prompt episode: "start", "end" or "uniform".
        field_overrides: {dotted field path: FieldSpec | kind | dict}, e.g.
            ``{"image": "discrete"}``. Defaults to what the dataset's metadata recommends
            (key ``gato_field_overrides``), if anything. Integer images with small values
            are read one-hot over the values seen (see ``RawEpisodes.image_ranges``)
            unless an override names them.
        eval_envs: environments stepped together in evaluation.
        pack_windows: put as many training windows in a row as fit (each attends only to
            itself), instead of one window per row and padding.
        task_id: in multi-task training, the id whose task token starts each observation
            (``Vocab.task``), so the model knows which task it acts in; None: no task token.
        action_history_noise: probability that an action token of a training input is replaced
            by a random one of its range (targets stay clean); fights copying the last action
            (see ``gato.data.batch.corrupt_action_inputs``).
    """

    def __init__(self, env_name, env, dataset, context_len, args, training_prompt_len_proportion=0.5,
                 share_prompt_episodes=True, top_k_prompting=None, prompt_ep_proportion=0.0,
                 prompt_type="end", field_overrides=None, eval_envs=8, pack_windows=False, task_id=None,
                 action_history_noise=0.0):
        if isinstance(dataset, str):
            dataset = load_minari(dataset)
        self.name = env_name
        self.dataset_id = dataset.spec.dataset_id
        self.context_len = int(context_len)
        self.patch_size = int(getattr(args, "patch_size", 4))
        if prompt_type not in PROMPT_TYPES:
            raise ValueError(f"prompt_type must be one of {PROMPT_TYPES}, got {prompt_type!r}")
        if not 0.0 <= prompt_ep_proportion <= 1.0 or not 0.0 < training_prompt_len_proportion < 1.0:
            raise ValueError("prompt_ep_proportion must be in [0, 1] and training_prompt_len_proportion in (0, 1)")
        self.prompt_len_proportion = training_prompt_len_proportion
        self.share_prompt_episodes = share_prompt_episodes
        self.top_k_prompting = top_k_prompting
        self.prompt_ep_proportion = prompt_ep_proportion
        self.prompt_type = prompt_type
        self.eval_envs = eval_envs
        self.pack_windows = pack_windows
        self.task_id = task_id
        if not 0.0 <= action_history_noise <= 1.0:
            raise ValueError(f"action_history_noise must be in [0, 1], got {action_history_noise}")
        self.action_history_noise = action_history_noise
        metadata = dataset.storage.metadata
        self.ref_min_score = metadata.get("ref_min_score")
        self.ref_max_score = metadata.get("ref_max_score")
        self.expert_name = metadata.get("algorithm_name")

        if env is None:
            env = dataset.recover_environment()
        self.env = env
        self.observation_space = env.observation_space
        self.action_space = env.action_space
        for kind, ours, theirs in (("observation", env.observation_space, dataset.observation_space),
                                   ("action", env.action_space, dataset.action_space)):
            problem = space_mismatch(theirs, ours, "obs" if kind == "observation" else "action")
            if problem:
                raise SpaceMismatchError(
                    f"the {kind} space of dataset {self.dataset_id!r} does not match env {env_name!r} "
                    f"(dataset vs env at {problem}). Pass the env the dataset was recorded in "
                    f"(dataset.recover_environment()) or regenerate the dataset."
                )
        self._make_env = partial(_make_env_from_spec, env.spec) if env.spec is not None else partial(copy.deepcopy, env)

        self.raw = RawEpisodes.read(dataset, self.dataset_id)
        self.field_overrides = reading_overrides(dataset, self.raw, self.patch_size, field_overrides)
        self._encoded: tuple[Vocab, SpaceCodec, EncodedEpisodes] | None = None
        self.codec_for(Vocab())  # the default vocabulary: checks the spaces and the context now

    # -- data ----------------------------------------------------------------------------

    def codec_for(self, vocab: Vocab) -> SpaceCodec:
        """The codec for ``vocab`` (episodes are re-encoded when the vocabulary changes)."""
        if self._encoded is None or self._encoded[0] != vocab:
            probe = SpaceCodec(self.observation_space, self.action_space, vocab, self.patch_size, self.field_overrides)
            budget = self.raw.text_budget(probe.obs_fields, vocab.tokenizer)
            codec = SpaceCodec(self.observation_space, self.action_space, vocab, self.patch_size,
                               self.field_overrides, budget, self.task_id)
            if codec.tokens_per_step > self.context_len:
                raise ContextTooShortError(
                    f"context_len {self.context_len} cannot hold one timestep of {self.name!r}, which takes "
                    f"{codec.tokens_per_step} tokens; use context_len >= {codec.tokens_per_step} "
                    f"(see `gato inspect {self.dataset_id}`)."
                )
            self._encoded = (vocab, codec, EncodedEpisodes.encode(self.raw, codec, self.dataset_id))
        return self._encoded[1]

    def add_episodes(self, raw: RawEpisodes) -> None:
        """Append episodes (in the dataset's spaces) to the training data, encoded with the
        current codec so that the token layout the model learns stays the same."""
        self.raw.extend(raw)
        if self._encoded is not None:
            vocab, codec, encoded = self._encoded
            self._encoded = (vocab, codec, encoded.concat(EncodedEpisodes.encode(raw, codec, self.dataset_id)))

    def collect_corrections(self, model, n_episodes: int, round_index: int = 0) -> dict | None:
        """DAgger: run ``model`` for ``n_episodes`` episodes (argmax actions, no prompt) while the
        dataset's expert labels every state it reaches, and add them to the training data.

        Round ``r`` (``round_index``) plays seeds ``CORRECTION_SEED + r * 100_000`` on. Returns counts
        (episodes, steps, share of steps where the model's action differed from the expert's),
        or None when the dataset's expert cannot label states (see
        ``gato.data.corrections.advisor_for``)."""
        from gato.data.corrections import advisor_for

        advisor = advisor_for(self.expert_name)
        if advisor is None:
            return None
        model = getattr(model, "module", model)
        codec = self.codec_for(model.vocab)
        rollout(model, codec, self._make_env, n_episodes, n_envs=self.eval_envs,
                seed=CORRECTION_SEED + round_index * 100_000, observer=advisor)
        raw = advisor.episodes()
        if len(raw):
            self.add_episodes(raw)
        return {"episodes": len(raw), "steps": advisor.steps,
                "disagreement": advisor.disagreements / max(1, advisor.steps),
                "expert_errors": advisor.expert_errors, "total_episodes": len(self.raw)}

    @property
    def codec(self) -> SpaceCodec:
        """The codec of the vocabulary the episodes are currently encoded for."""
        return self._encoded[1]

    @property
    def episodes(self) -> EncodedEpisodes:
        """The encoded episodes for the current codec."""
        return self._encoded[2]

    @property
    def tokens_per_timestep(self) -> int:
        """Tokens one timestep takes: observation, separator, action."""
        return self.codec.tokens_per_step

    def _rows(self, codec: SpaceCodec, episode: int, start: int, k: int):
        ep = self.episodes
        lo = ep.starts[episode] + start
        inputs = None if ep.inputs is None else ep.inputs[lo : lo + k]
        return ep.steps[lo : lo + k], codec.normalize_patches(ep.patches[lo : lo + k]), inputs

    def _prompt_episode_pool(self) -> np.ndarray:
        order = np.argsort(-self.episodes.returns, kind="stable")
        return order[: self.top_k_prompting] if self.top_k_prompting else order

    def _prompt_start(self, length: int, k: int, rng) -> int:
        if self.prompt_type == "start":
            return 0
        if self.prompt_type == "end":
            return length - k
        return int(rng.integers(0, length - k + 1))

    def sample_batch(self, batch_size: int, vocab: Vocab, context_len: int | None = None,
                     rng: np.random.Generator | None = None) -> Batch:
        """``batch_size`` rows of training windows of whole timesteps, padded to the context.

        Windows start at a random timestep of an episode drawn in proportion to its length;
        a share ``prompt_ep_proportion`` of them is preceded by a prompt taking
        ``training_prompt_len_proportion`` of the context. With ``pack_windows``, each row
        holds as many windows as fit, each attending only to itself (same gradients as one
        window per row, without computing on padding).
        """
        rng = rng or np.random.default_rng()
        context_len = min(context_len or self.context_len, self.context_len)
        codec = self.codec_for(vocab)
        S = codec.tokens_per_step
        max_steps = context_len // S
        prompt_steps = min(max_steps - 1, int(context_len * self.prompt_len_proportion) // S)
        lengths = self.episodes.lengths
        weights = lengths / lengths.sum()
        pool = self._prompt_episode_pool()
        rows, row, used = [], [], 0
        while len(rows) < batch_size:
            unit = self._sample_unit(codec, max_steps, prompt_steps, weights, pool, rng)
            steps = sum(len(t) for t, _, _ in unit)
            if row and used + steps > max_steps:  # the packed row is full
                rows.append(row)
                row, used = [], 0
            row.append(unit)
            used += steps
            if not self.pack_windows:  # one window per row: close it now, sample nothing extra
                rows.append(row)
                row, used = [], 0
        batch = pack(rows, StepLayout.of(codec), context_len, vocab.pad)
        if self.action_history_noise:
            batch.inputs = corrupt_action_inputs(batch, codec.obs_tokens + 1, codec.action_ranges,
                                                 self.action_history_noise, rng)
        return batch

    def _sample_unit(self, codec, max_steps, prompt_steps, weights, pool, rng) -> list:
        """One window (a list of (tokens, patches) segments), with a prompt before it or not."""
        lengths = self.episodes.lengths
        e = int(rng.choice(len(lengths), p=weights))
        segments, room = [], max_steps
        if prompt_steps > 0 and rng.random() < self.prompt_ep_proportion:
            p = e if self.share_prompt_episodes else int(rng.choice(pool))
            k = min(prompt_steps, lengths[p])
            segments.append(self._rows(codec, p, self._prompt_start(lengths[p], k, rng), k))
            room -= k
        k = min(lengths[e], room)
        segments.append(self._rows(codec, e, int(rng.integers(0, lengths[e] - k + 1)), k))
        return segments

    # -- evaluation ----------------------------------------------------------------------

    def eval_prompt(self, codec: SpaceCodec, rng: np.random.Generator, context_len: int, device="cpu"):
        """A function n -> prompt stream: the last steps of top-k episodes (NEKO's eval prompt)."""
        S = codec.tokens_per_step
        steps = max(1, int(min(self.context_len, context_len) * self.prompt_len_proportion) // S)
        pool = self._prompt_episode_pool()
        lengths = self.episodes.lengths
        k = int(min(steps, lengths[pool].max()))
        pool = pool[lengths[pool] >= k]
        layout = StepLayout.of(codec)

        def make(n: int) -> dict:
            chosen = rng.choice(pool, size=n)
            samples = [[[self._rows(codec, e, lengths[e] - k, k)]] for e in chosen]
            stream = pack(samples, layout, k * S, codec.vocab.pad).to_torch(device)
            stream.pop("targets")
            # a prompt shows the expert's actions, also where a corrected episode's policy took others
            stream.pop("input_tokens", None)
            return stream
        return make

    def evaluate(self, model, n_iterations: int, deterministic: bool = True, promptless_eval: bool = False,
                 n_envs: int | None = None, seed: int = EVAL_SEED, use_cache: bool = True,
                 progress: bool = False) -> dict:
        """Run ``model`` (a bare GatoPolicy; an Accelerate-wrapped one is unwrapped) for
        ``n_iterations`` episodes and return mean_return, std_return, mean_episode_len,
        success_rate (share of episodes with positive return) and, when the dataset has
        reference returns, normalized_score = (return - random) / (expert - random)."""
        model = getattr(model, "module", model)
        codec = self.codec_for(model.vocab)
        if codec.patches_per_step and model.patch_size != self.patch_size:
            raise ValueError(f"the model's patch_size {model.patch_size} differs from the task's {self.patch_size}")
        prompt = None if promptless_eval else self.eval_prompt(codec, np.random.default_rng(seed), model.context_len, model.device)
        result = rollout(model, codec, self._make_env, n_iterations, n_envs=n_envs or self.eval_envs,
                         deterministic=deterministic, prompt=prompt, seed=seed, use_cache=use_cache,
                         progress=progress)
        returns = np.asarray(result.returns, dtype=np.float64)
        metrics = {
            "episodes": float(len(returns)),
            "mean_return": float(returns.mean()),
            "std_return": float(returns.std()),
            "mean_episode_len": float(np.mean(result.lengths)),
            "success_rate": float((returns > 0).mean()),
        }
        if self.ref_min_score is not None and self.ref_max_score is not None and self.ref_max_score != self.ref_min_score:
            metrics["expert_return"] = float(self.ref_max_score)
            metrics["random_return"] = float(self.ref_min_score)
            metrics["normalized_score"] = float((returns.mean() - self.ref_min_score) / (self.ref_max_score - self.ref_min_score))
        return metrics

    def random_returns(self, n_episodes: int, seed: int = EVAL_SEED) -> np.ndarray:
        """Returns of a uniform-random policy on the seeds :meth:`evaluate` uses (episode i:
        ``seed + i``), to compare a policy with chance episode by episode rather than with the
        dataset's reference mean."""
        env = self._make_env()
        returns = []
        try:
            for i in range(n_episodes):
                obs, _ = env.reset(seed=seed + i)
                env.action_space.seed(seed + i)
                returns.append(play_out(env, obs, lambda _: env.action_space.sample()))
        finally:
            env.close()
        return np.asarray(returns)

    def record_video(self, model, path, deterministic: bool = True, seed: int = EVAL_SEED) -> dict:
        """Play one promptless episode (seed ``seed``) with ``render_mode="rgb_array"`` and write it
        as a GIF at ``path``; returns the episode's return and length."""
        from gato.evaluation.video import headless_rendering, write_gif

        headless_rendering()
        model = getattr(model, "module", model)
        codec = self.codec_for(model.vocab)
        spec = self.env.spec
        make = partial(gym.make, spec, render_mode="rgb_array") if spec is not None else self._make_env
        frames: list = []
        result = rollout(model, codec, make, 1, n_envs=1, deterministic=deterministic, seed=seed, frames=frames)
        write_gif(frames, path, fps=int(self.env.metadata.get("render_fps") or 30))
        return {"return": result.returns[0], "length": result.lengths[0], "path": str(path)}

    def spec(self) -> dict:
        """JSON-able description; ``gato.tasks.registry.build_task`` rebuilds the task from it."""
        return {
            "type": "control",
            "env_name": self.name,
            "dataset_id": self.dataset_id,
            "context_len": self.context_len,
            "patch_size": self.patch_size,
            "training_prompt_len_proportion": self.prompt_len_proportion,
            "share_prompt_episodes": self.share_prompt_episodes,
            "top_k_prompting": self.top_k_prompting,
            "prompt_ep_proportion": self.prompt_ep_proportion,
            "prompt_type": self.prompt_type,
            "field_overrides": {k: v if isinstance(v, (str, dict)) else v.to_dict() for k, v in self.field_overrides.items()},
            "eval_envs": self.eval_envs,
            "pack_windows": self.pack_windows,
            "task_id": self.task_id,
            "action_history_noise": self.action_history_noise,
        }

    @classmethod
    def from_spec(cls, spec: dict) -> "ControlTask":
        """Rebuild a task from :meth:`spec` (the dataset must be available locally)."""
        from argparse import Namespace

        spec = dict(spec)
        spec.pop("type", None)
        name, dataset_id = spec.pop("env_name"), spec.pop("dataset_id")
        context_len, patch_size = spec.pop("context_len"), spec.pop("patch_size")
        return cls(name, None, dataset_id, context_len, Namespace(patch_size=patch_size), **spec)
