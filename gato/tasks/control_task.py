"""ControlTask: one Gymnasium environment and its offline Minari dataset.

It owns the data (episodes encoded by a codec fitted to them, see ``gato.data.episodes.fit_codec``,
kept on disk, read a few rows at a time, and built once per dataset and codec: ``gato.data.episode_store``), the
sampling of training windows with Gato/NEKO prompting (``gato.tasks.windows``), and evaluation in the
environment. Usage, as in the user's notebook::

    task = ControlTask("babyai", env, minari.load_dataset("babyai/GoToLocal-bot-v0"),
                       context_len=512, args=Namespace(patch_size=4))
    task.evaluate(GatoPolicy(), n_iterations=10)

What else uses a task lives beside what it belongs to: the random baseline in
``gato.evaluation.baselines``, GIF recording in ``gato.evaluation.video``, DAgger collection in
``gato.tasks.corrections``.
"""

from __future__ import annotations

import copy
import dataclasses
import warnings
from typing import TYPE_CHECKING

import numpy as np

from gato import envs, seeds
from gato.codec import SpaceCodec, VocabMismatchError, space_mismatch, tokens_per_space
from gato.codec_io import codec_to_dict
from gato.data.episode_store import EpisodeStore, StoreUnavailableError, store_root
from gato.data.episodes import DataStats, EncodedEpisodes, RawEpisodes, demonstration_seeds, fit_codec, load_minari
from gato.evaluation.rollout import rollout
from gato.tasks import defaults
from gato.tasks.windows import WindowSampler

if TYPE_CHECKING:
    from gato.batch import Batch
    from gato.vocab import Vocab

__all__ = ["ContextTooShortError", "ControlTask", "DataRequiredError", "EvaluationTask", "SpaceMismatchError",
           "tokens_per_space"]


class ContextTooShortError(ValueError):
    """The context cannot hold a single timestep."""


class SpaceMismatchError(ValueError):
    """The dataset's spaces are not the environment's."""


class ControlTask:
    """A control task: train on a Minari dataset, evaluate in its environment.

    Args:
        env_name: the task's name in logs and score tables.
        env: a Gymnasium env (its spec is used to make evaluation copies), or None to
            recover it from the dataset.
        dataset: a MinariDataset or a local dataset id.
        context_len: tokens per training sequence.
        args: anything with ``patch_size`` (only that attribute is read; the notebook's form).
        patch_size: side of the square image patches (default: ``args.patch_size``, else 4).
        vocab: the vocabulary the episodes are encoded for (default ``Vocab()``): the policy's,
            ``policy.vocab``. :meth:`encode_for` re-encodes them for another one.
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
            (see ``gato.batch.corrupt_action_inputs``).
        window_sampling: "fit" (default): a training window is a whole context of timesteps, anywhere in its
            episode; "even": every timestep of an episode is in a window equally often, windows cut at the
            episode's ends (see ``WindowSampler.window_bounds``).
        episode_prefix: train on each episode's first this many timesteps only (0, default: all of them). For
            episodes that run on after their goal is reached (Meta-World's hold the goal to step 500), so that
            training windows are not mostly the holding.
        max_image_patches: the most patches each image takes, unless its field override says
            otherwise (a larger one is pooled; None: ``gato.codec.DEFAULT_MAX_PATCHES``).
        constant_text: "window" (default): a string observation that never changes within an episode
            (BabyAI's mission) is laid out in the first timestep of each window only, so a context holds
            more timesteps; "step": in every timestep (see ``gato.data.episodes.fit_codec``).
        store: where the encoded episodes are kept (see ``gato.data.episode_store.store_root``):
            None (default) or True: files on disk read with pread, under ``$GATO_STORE_PATH`` if set
            (``off``: in memory), else inside the dataset's folder; a path: under it; False: in memory,
            read and encoded at every start. A store is built once per dataset and codec; later starts
            read neither the dataset's episodes nor re-encode them. A folder that cannot be written
            falls back to memory, with a warning.

    Attributes: ``codec`` (the fitted :class:`SpaceCodec`), ``episodes`` (the
    :class:`EncodedEpisodes` it encoded, read from disk when stored), ``stats`` (the
    dataset's :class:`DataStats`, which the codec is fitted to with the added episodes'), ``store``
    (the :class:`EpisodeStore`, or None in memory), ``added_episodes`` (DAgger's, in memory beside the
    store), ``raw`` (every episode as read: reads the whole dataset when stored), ``env``.
    """

    def __init__(self, env_name, env, dataset, context_len, args=None, *, patch_size=None, vocab=None,
                 training_prompt_len_proportion=defaults.PROMPT_LEN_PROPORTION,
                 share_prompt_episodes=defaults.SHARE_PROMPT_EPISODES, top_k_prompting=defaults.TOP_K_PROMPTING,
                 prompt_ep_proportion=defaults.PROMPT_EP_PROPORTION, prompt_type=defaults.PROMPT_TYPE,
                 field_overrides=None, eval_envs=defaults.EVAL_ENVS,
                 pack_windows=False, task_id=None, action_history_noise=0.0, max_image_patches=None, store=None,
                 constant_text="window", window_sampling=defaults.WINDOW_SAMPLING,
                 episode_prefix=defaults.EPISODE_PREFIX):
        if isinstance(dataset, str):
            # the data file is opened only if the episodes must be read (no store yet, or no store at all)
            dataset = load_minari(dataset, open_data=False)
        self.name = env_name
        self.dataset_id = dataset.spec.dataset_id
        self.context_len = int(context_len)
        self.patch_size = int(patch_size if patch_size is not None else getattr(args, "patch_size", 4))
        self.constant_text = constant_text
        self.windows = WindowSampler(training_prompt_len_proportion, share_prompt_episodes, top_k_prompting,
                                     prompt_ep_proportion, prompt_type, pack_windows, action_history_noise,
                                     window_sampling, episode_prefix)
        self.eval_envs = eval_envs
        metadata = dataset.storage.metadata
        self.ref_min_score = metadata.get("ref_min_score")
        self.ref_max_score = metadata.get("ref_max_score")
        self.expert_name = metadata.get("algorithm_name")
        self.env = env if env is not None else dataset.recover_environment()
        self._check_spaces(dataset)
        self._dataset = dataset
        self.added_episodes = RawEpisodes([], [], [], [])  # by add_episodes (DAgger), after the dataset's
        root = store_root(dataset, store)
        self.store = None if root is None else EpisodeStore(dataset, self.dataset_id, root)
        self._raw = None if self.store is not None else RawEpisodes.read(dataset, self.dataset_id)
        self.stats = None if self._raw is None else DataStats.of(self._raw,
                                                                 DataStats.leaves_of(dataset.observation_space,
                                                                                     dataset.action_space))
        self._encode(vocab, field_overrides, metadata, task_id, max_image_patches)

    def _check_spaces(self, dataset) -> None:
        for kind, theirs, ours in (("observation", dataset.observation_space, self.env.observation_space),
                                   ("action", dataset.action_space, self.env.action_space)):
            problem = space_mismatch(theirs, ours, "obs" if kind == "observation" else "action")
            if problem:
                raise SpaceMismatchError(
                    f"the {kind} space of dataset {self.dataset_id!r} does not match env {self.name!r} "
                    f"(dataset vs env at {problem}). Pass the env the dataset was recorded in "
                    f"(dataset.recover_environment()) or regenerate the dataset."
                )

    # -- data ----------------------------------------------------------------------------

    def _encode(self, vocab, overrides, metadata, task_id, max_patches=None) -> None:
        """Fit the codec for ``vocab`` to the data's statistics, make it the task's and encode every episode
        with it: open (or build) its store, or encode in memory; added episodes are encoded in memory."""
        def make_codec(stats: DataStats) -> SpaceCodec:
            if len(self.added_episodes):  # they count, as when the codec is fitted to all episodes at once
                stats = copy.deepcopy(stats)
                stats.update(self.added_episodes, DataStats.leaves_of(self._dataset.observation_space,
                                                                      self._dataset.action_space))
            codec = fit_codec(stats, self.env.observation_space, self.env.action_space, vocab=vocab,
                              patch_size=self.patch_size, overrides=overrides, metadata=metadata, task_id=task_id,
                              max_patches=max_patches, constant_text=self.constant_text)
            if codec.tokens_per_step > self.context_len:
                raise ContextTooShortError(
                    f"context_len {self.context_len} cannot hold one timestep of {self.name!r}, which takes "
                    f"{codec.tokens_per_step} tokens; use context_len >= {codec.tokens_per_step} "
                    f"(see `gato inspect {self.dataset_id}`)."
                )
            return codec

        if self.store is not None:
            try:
                codec, episodes = self.store.load(make_codec)
            except StoreUnavailableError as e:
                warnings.warn(f"{e.strerror}; keeping the episodes of {self.dataset_id!r} in memory", stacklevel=3)
                self.store = None
                self._raw = RawEpisodes.read(self._dataset, self.dataset_id)
            else:
                self.stats = self.store.stats
        if self.store is None:
            if self.stats is None:
                self.stats = DataStats.of(self._raw, DataStats.leaves_of(self._dataset.observation_space,
                                                                         self._dataset.action_space))
            codec = make_codec(self.stats)
            episodes = EncodedEpisodes.encode(self._raw, codec, self.dataset_id)
        if len(self.added_episodes):
            episodes = episodes.concat(EncodedEpisodes.encode(self.added_episodes, codec, self.dataset_id))
        self.episodes, self.codec = episodes, codec

    @property
    def raw(self) -> RawEpisodes:
        """Every episode as read, the added ones last. With a store this reads the whole dataset: for
        inspection and tests, not for training."""
        raw = RawEpisodes([], [], [], [])
        raw.extend(self._raw if self._raw is not None else RawEpisodes.read(self._dataset, self.dataset_id))
        raw.extend(self.added_episodes)
        return raw

    def encode_for(self, vocab: Vocab) -> SpaceCodec:
        """Re-fit the codec for ``vocab`` (text budgets follow its tokenizer; fields are read as
        before) and re-encode every episode with it, unless they already are; returns the codec."""
        if vocab != self.codec.vocab:
            self._encode(vocab, self.codec.overrides, None, self.codec.task_id)
        return self.codec

    def codec_for(self, vocab: Vocab) -> SpaceCodec:
        """The task's codec, once checked to be for ``vocab`` (a policy's); it never re-encodes:
        a policy of another vocabulary needs :meth:`encode_for` first."""
        if vocab != self.codec.vocab:
            raise VocabMismatchError(
                f"task {self.name!r} is encoded for {self.codec.vocab}, but the policy uses {vocab}; re-encode "
                "it first with `task.encode_for(policy.vocab)` (or build it with vocab=policy.vocab)"
            )
        return self.codec

    def add_episodes(self, raw: RawEpisodes) -> None:
        """Append episodes (in the dataset's spaces) to the training data, encoded with the
        current codec so that the token layout the model learns stays the same. They are kept in
        ``added_episodes`` too (a training state saves them: see ``gato.training.state``)."""
        self.episodes = self.episodes.concat(EncodedEpisodes.encode(raw, self.codec, self.dataset_id))
        self.added_episodes.extend(raw)

    def collect_corrections(self, policy, n_episodes: int, round_index: int = 0) -> dict | None:
        """DAgger round ``round_index``: expert labels on ``n_episodes`` of the policy's own
        episodes join the data (the Task protocol's optional hook; see
        ``gato.tasks.corrections.collect_corrections``). None if the dataset's expert cannot label."""
        from gato.tasks.corrections import collect_corrections

        return collect_corrections(self, policy, n_episodes, round_index)

    @property
    def tokens_per_timestep(self) -> int:
        """Tokens one timestep takes: observation, separator, action."""
        return self.codec.tokens_per_step

    def sample_batch(self, batch_size: int, vocab: Vocab, context_len: int | None = None,
                     rng: np.random.Generator | None = None) -> Batch:
        """``batch_size`` rows of training windows of whole timesteps, padded to the context.

        Windows start at a random timestep of an episode drawn in proportion to its length;
        a share ``prompt_ep_proportion`` of them is preceded by a prompt taking
        ``training_prompt_len_proportion`` of the context. With ``pack_windows``, each row
        holds as many windows as fit, each attending only to itself (same gradients as one
        window per row, without computing on padding). ``vocab`` must be the one the episodes
        are encoded for (see :meth:`codec_for`).
        """
        rng = rng or np.random.default_rng()
        context_len = min(context_len or self.context_len, self.context_len)
        return self.windows.sample_batch(self.episodes, self.codec_for(vocab), batch_size, context_len, rng)

    # -- evaluation ----------------------------------------------------------------------

    def eval_prompt(self, codec: SpaceCodec, rng: np.random.Generator, context_len: int, device="cpu"):
        """A function n -> prompt stream: the last steps of top-k episodes (NEKO's eval prompt)."""
        return self.windows.eval_prompt(self.episodes, codec, rng, min(self.context_len, context_len), device)

    def evaluate(self, model, n_iterations: int, deterministic: bool = True, promptless_eval: bool = False,
                 n_envs: int | None = None, seed: int = seeds.EVALUATION.start, use_cache: bool = True,
                 progress: bool = False, compact: bool = True, starts: str = seeds.EVALUATION.name) -> dict:
        """Run ``model`` (a bare GatoPolicy; an Accelerate-wrapped one is unwrapped) for
        ``n_iterations`` episodes (episode i: seed ``seed + i``, all in ``gato.seeds.EVALUATION``; with
        ``starts="data"``, the seed of the dataset's episode i instead, a start seen in training: see
        :data:`gato.seeds.STARTS`) and return mean_return, std_return, mean_episode_len, success_rate (share of episodes
        whose env reported ``info["success"]`` at some step, for envs that report it; else of episodes
        with positive return) and, when the dataset has reference returns,
        normalized_score = (return - random) / (expert - random). ``use_cache`` and ``compact``: see
        :func:`gato.evaluation.rollout.rollout`."""
        return self.summarize(self.evaluate_part(model, n_iterations, 0, 1, deterministic=deterministic,
                                                 promptless_eval=promptless_eval, n_envs=n_envs, seed=seed,
                                                 use_cache=use_cache, progress=progress, compact=compact,
                                                 starts=starts))

    def evaluate_part(self, model, n_iterations: int, part: int, parts: int, deterministic: bool = True,
                      promptless_eval: bool = False, n_envs: int | None = None, seed: int = seeds.EVALUATION.start,
                      use_cache: bool = True, progress: bool = False, compact: bool = True,
                      starts: str = seeds.EVALUATION.name) -> list[dict]:
        """Process ``part`` of ``parts``' share of :meth:`evaluate`: episodes part, part + parts, ... of the
        ``n_iterations``; one record (seed, return, length) per episode, for :meth:`summarize`."""
        model = getattr(model, "module", model)
        codec = self.codec_for(model.vocab)  # its patch size is checked against the model's by the agent
        if starts not in seeds.STARTS:
            raise ValueError(f"starts must be one of {', '.join(seeds.STARTS)}, not {starts!r}")
        if starts == seeds.DATA.name:
            episode_seeds = demonstration_seeds(self.dataset_id, n_iterations)
        else:
            episode_seeds = seeds.EVALUATION.take(n_iterations, first=seed)  # refuses seeds outside its block
        prompt = None if promptless_eval else self.eval_prompt(codec, np.random.default_rng(seed), model.context_len,
                                                               model.device)
        result = rollout(model, codec, self.make_env, n_iterations, n_envs=n_envs or self.eval_envs,
                         deterministic=deterministic, prompt=prompt, seed=episode_seeds, use_cache=use_cache,
                         progress=progress, part=(part, parts), compact=compact)
        records = [{"seed": s, "return": r, "length": n}
                   for s, r, n in zip(result.seeds, result.returns, result.lengths)]
        for record, success in zip(records, result.successes):
            if success is not None:  # the env reports info["success"] (Meta-World)
                record["success"] = success
        return records

    def summarize(self, records: list[dict]) -> dict:
        """The metrics of :meth:`evaluate` from the episode records of every part."""
        records = sorted(records, key=lambda r: r["seed"])
        returns = np.asarray([r["return"] for r in records], dtype=np.float64)
        metrics = {
            "episodes": float(len(returns)),
            "mean_return": float(returns.mean()),
            "std_return": float(returns.std()),
            "mean_episode_len": float(np.mean([r["length"] for r in records])),
            # the env's own info["success"] where every episode reported one (Meta-World), else a positive return
            "success_rate": float(np.mean([r["success"] for r in records]) if all("success" in r for r in records)
                                  else (returns > 0).mean()),
        }
        low, high = self.ref_min_score, self.ref_max_score
        if low is not None and high is not None and high != low:
            metrics["expert_return"] = float(high)
            metrics["random_return"] = float(low)
            metrics["normalized_score"] = float((returns.mean() - low) / (high - low))
        return metrics

    def make_env(self, **kwargs):
        """A new copy of the task's env, as evaluation steps it: made from the env's spec (with
        ``kwargs``, e.g. ``render_mode="rgb_array"``), or deep-copied if it has no spec."""
        if self.env.spec is not None:
            return envs.make_env(self.env.spec, **kwargs)
        if kwargs:
            raise ValueError(f"the env of task {self.name!r} has no spec to make it with {kwargs}; "
                             "give the task an env made by gym.make")
        return copy.deepcopy(self.env)

    def spec(self) -> dict:
        """JSON-able description; ``gato.tasks.registry.build_task`` rebuilds the task from it. Besides what
        rebuilds it from its dataset, it holds all that acting and scoring need without the data: the codec
        (``gato.codec_io``), the env's spec (Gymnasium's ``EnvSpec.to_json``; None when its kwargs are not
        JSON-able) and the dataset's reference returns."""
        env_spec = None
        if self.env.spec is not None:
            try:
                env_spec = self.env.spec.to_json()
            except ValueError:  # kwargs that JSON cannot hold (a callable): the task then needs its dataset
                env_spec = None
        return {
            "type": "control",
            "env_name": self.name,
            "dataset_id": self.dataset_id,
            "context_len": self.context_len,
            "patch_size": self.patch_size,
            **dataclasses.asdict(self.windows),
            "field_overrides": {k: v if isinstance(v, (str, dict)) else v.to_dict()
                                for k, v in self.codec.overrides.items()},
            "eval_envs": self.eval_envs,
            "task_id": self.codec.task_id,
            "constant_text": self.constant_text,
            "codec": codec_to_dict(self.codec),
            "env_spec": env_spec,
            "reference": {"ref_min_score": self.ref_min_score, "ref_max_score": self.ref_max_score,
                          "algorithm_name": self.expert_name},
        }

    @classmethod
    def from_spec(cls, spec: dict, vocab: Vocab | None = None, with_data: bool | None = None) -> ControlTask:
        """Rebuild a task from :meth:`spec`, encoded for ``vocab``. ``with_data``: True reads the dataset
        (it must be local: training, prompted evaluation); False builds an :class:`EvaluationTask` from the
        saved codec, env spec and reference returns, with no data at all; None (default): False when the spec
        holds them (checkpoints saved since they do), else True."""
        spec = dict(spec)
        spec.pop("type", None)
        saved = {key: spec.pop(key, None) for key in ("codec", "env_spec", "reference")}
        if with_data is None:
            with_data = saved["codec"] is None or saved["env_spec"] is None
        if not with_data:
            return EvaluationTask.from_saved(spec, saved, vocab)
        name, dataset_id, context_len = spec.pop("env_name"), spec.pop("dataset_id"), spec.pop("context_len")
        spec.setdefault("constant_text", "step")  # saved before a mission was read once per window
        return cls(name, None, dataset_id, context_len, vocab=vocab, **spec)


class DataRequiredError(ValueError):
    """Something only a task holding its episodes can do (train, prompt), asked of an EvaluationTask."""


class EvaluationTask(ControlTask):
    """A ControlTask rebuilt from a checkpoint without its dataset: it acts and evaluates (promptless) in a
    fresh env, through the codec the checkpoint saved, and scores against the saved reference returns. It
    holds no episodes, so sampling, prompts and DAgger raise :class:`DataRequiredError` naming the dataset.
    Build it with ``ControlTask.from_spec(spec, vocab, with_data=False)``."""

    @classmethod
    def from_saved(cls, spec: dict, saved: dict, vocab: Vocab | None) -> EvaluationTask:
        """The task of ``spec`` (its ``codec``, ``env_spec`` and ``reference`` popped into ``saved``)."""
        from gymnasium.envs.registration import EnvSpec

        from gato.codec_io import codec_from_dict

        if saved["codec"] is None or saved["env_spec"] is None:
            raise DataRequiredError(f"task {spec.get('env_name')!r} was saved without its codec or env spec; "
                                    f"it needs its dataset {spec.get('dataset_id')!r}")
        task = cls.__new__(cls)  # no dataset to read: the attributes an evaluation reads are set here
        task.name = spec["env_name"]
        task.dataset_id = spec["dataset_id"]
        task.context_len = int(spec["context_len"])
        task.patch_size = int(spec.get("patch_size", 4))
        task.constant_text = spec.get("constant_text", "step")
        names = {f.name for f in dataclasses.fields(WindowSampler)}
        task.windows = WindowSampler(**{k: v for k, v in spec.items() if k in names})
        task.eval_envs = spec.get("eval_envs", defaults.EVAL_ENVS)
        reference = saved["reference"] or {}
        task.ref_min_score = reference.get("ref_min_score")
        task.ref_max_score = reference.get("ref_max_score")
        task.expert_name = reference.get("algorithm_name")
        task.env = envs.make_env(EnvSpec.from_json(saved["env_spec"]))
        task.codec = codec_from_dict(saved["codec"], vocab, task.env.observation_space, task.env.action_space)
        task._raw = task._dataset = task.store = task.stats = task.episodes = task.added_episodes = None
        return task

    @property
    def raw(self):
        """Refused: there are no episodes to read (:class:`DataRequiredError`)."""
        raise self._no_data("read its episodes")

    def _no_data(self, what: str):
        return DataRequiredError(
            f"task {self.name!r} was loaded from a checkpoint without its dataset, so it cannot {what}; it acts "
            f"and evaluates without prompts. Make dataset {self.dataset_id!r} local and load the task with "
            "with_data=True (`gato eval` does when given --prompt)")

    def evaluate(self, model, n_iterations: int, deterministic: bool = True, promptless_eval: bool = True,
                 **options) -> dict:
        """:meth:`ControlTask.evaluate`, promptless by default (a prompt needs the dataset's episodes)."""
        return super().evaluate(model, n_iterations, deterministic, promptless_eval, **options)

    def evaluate_part(self, model, n_iterations: int, part: int, parts: int, deterministic: bool = True,
                      promptless_eval: bool = True, **options) -> list[dict]:
        """:meth:`ControlTask.evaluate_part`, promptless by default; asking for a prompt is refused."""
        if not promptless_eval:
            raise self._no_data("prompt with an expert episode")
        return super().evaluate_part(model, n_iterations, part, parts, deterministic, True, **options)

    def sample_batch(self, *args, **kwargs):
        """Refused: there are no episodes to sample (:class:`DataRequiredError`)."""
        raise self._no_data("sample training windows")

    def eval_prompt(self, *args, **kwargs):
        """Refused: prompts are cut from the dataset's episodes (:class:`DataRequiredError`)."""
        raise self._no_data("prompt with an expert episode")

    def add_episodes(self, raw) -> None:
        """Refused: the task holds no data to add to (:class:`DataRequiredError`)."""
        raise self._no_data("add episodes")

    def collect_corrections(self, *args, **kwargs):
        """Refused: DAgger adds to the dataset (:class:`DataRequiredError`)."""
        raise self._no_data("collect corrections")

    def encode_for(self, vocab: Vocab) -> SpaceCodec:
        """The codec, when ``vocab`` is the one it was saved for (text budgets were measured in that
        vocabulary's tokens, and there is no data to measure them again)."""
        return self.codec_for(vocab)
