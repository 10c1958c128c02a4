"""TrainingArgs: every knob of a run, with NEKO's field names, each documented where declared.

The defaults are the main job (``gato train`` with no flags): a 4-layer, 128-wide policy
trained by behaviour cloning on BabyAI GoToLocal bot data for about 20 minutes on a laptop CPU.
Every field becomes a ``gato train`` flag whose help is its ``help`` metadata; the model flags take their
defaults (and most of their help) from :class:`gato.policy.config.PolicyConfig`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from dataclasses import dataclass, field

import numpy as np

from gato.images import IMAGE_SIZE
from gato.policy.config import PolicyConfig
from gato.tasks import defaults
from gato.text_tokenizer import DEFAULT_BPE_VOCAB


def _f(default, help: str, **kw):
    if isinstance(default, list):
        return field(default_factory=lambda d=default: list(d), metadata={"help": help, **kw})
    return field(default=default, metadata={"help": help, **kw})


def _model(policy_field: str, help: str = "", negate: bool = False):
    """The flag of PolicyConfig field ``policy_field``: its default (negated for a ``disable_`` flag; None is the
    empty string on the command line) and, unless ``help`` is given, its help come from PolicyConfig."""
    source = PolicyConfig.__dataclass_fields__[policy_field]
    default = (not source.default) if negate else "" if source.default is None else source.default
    return _f(default, help or source.metadata["help"], policy_field=policy_field, negate=negate)


@dataclass
class TrainingArgs:
    """Arguments of a training run (see each field's help)."""

    # data and tasks
    control_datasets: list = _f(["babyai/GoToLocal-bot-v0"],
                                "Minari dataset ids to train on (local; `gato data` makes them)")
    task_weights: list = _f([], "sampling weight per dataset, in order (default: uniform over tasks)")
    task_sampling: str = _f("uniform", "how often each control dataset is sampled: uniform (or --task_weights), "
                                       "data (by its timesteps) or expert_gap (by 1 - its normalised score at the "
                                       "last evaluation, floored; see gato/training/sampling.py)")
    loss_weighting: str = _f("tokens", "tokens: every predicted token weighs the same in the loss (Gato, NEKO), so a "
                                       "task that predicts many tokens per row (text) outweighs one that predicts "
                                       "few (an answer, an action); tasks: each task's mean loss weighs its share "
                                       "of the batch's rows")
    data_episodes: int = _f(5000, "episodes to generate when a default BabyAI dataset is missing")
    field_overrides: str = _f("", 'JSON {field path: kind or spec} applied to every control task, '
                                  'e.g. {"image": "discrete"}')
    max_image_patches: int = _f(0, "the most patches an observation image takes (a larger one is pooled), unless "
                                   "its field override sets pool or max_patches; 0: the default, 64")
    constant_text: str = _f("window", "window: a text observation that never changes within an episode (BabyAI's "
                                      "mission) is laid out in the first timestep of each window only; step: in "
                                      "every timestep (longer timesteps, fewer in a context)")
    window_sampling: str = _f(defaults.WINDOW_SAMPLING,
                              "fit: a training window is a whole context of timesteps anywhere in its episode, so an "
                              "episode's first timesteps are trained on least; even: every timestep equally often, "
                              "windows cut at the episode's ends")
    episode_prefix: int = _f(defaults.EPISODE_PREFIX,
                             "train on each episode's first N timesteps only (0: all): for episodes that go on "
                             "after their goal is reached (Meta-World's hold it to step 500), so that training "
                             "windows are not mostly the holding")
    # words and pictures: NEKO's flags; each *_prop is that kind's share of the rows of a batch, control gets the rest
    text_datasets: list = _f([], "text corpora for language modelling: text/pydoc (`gato data text` makes it) or "
                                 "local paths (a save_to_disk folder, parquet/jsonl/txt files)")
    caption_datasets: list = _f([], "image-caption data: captions/shapes (`gato data captions`) or local paths "
                                    "(save_to_disk, imagefolder with metadata.jsonl, webdataset shards, ...)")
    vqa_datasets: list = _f([], "visual question answering data: vqa/easy-vqa (`gato data vqa`) or local paths "
                                "(save_to_disk, an OK-VQA folder, ...)")
    text_prop: float = _f(0.0, "share of each batch's rows from the text datasets")
    caption_prop: float = _f(0.0, "share of each batch's rows from the caption datasets")
    vqa_prop: float = _f(0.0, "share of each batch's rows from the VQA datasets")
    image_size: int = _f(IMAGE_SIZE, "side in pixels that caption and VQA images are resized to (a multiple of "
                                     "patch_size)")
    bpe_vocab: int = _f(DEFAULT_BPE_VOCAB, "size of the BPE tokenizer trained on the run's text when it has text, "
                                           "caption or VQA datasets (gato.text_tokenizer.DEFAULT_BPE_VOCAB says why)")
    # model: a GPT-2 to start from, then one flag per PolicyConfig field, its default and help taken from there
    # (policy_config() turns them into one)
    pretrained_lm: str = _f("", "local Hugging Face GPT-2 checkpoint directory: its blocks, token embeddings, learned "
                                "positions and tokenizer start the model (sets embed_dim, layers, heads)")
    lora: bool = _f(False, "with --pretrained_lm: train LoRA adapters (peft) and the new embeddings, not GPT-2's "
                           "weights")
    lora_r: int = _f(8, "LoRA rank (with --lora; NEKO: 8)")
    lora_alpha: float = _model("lora_alpha")
    lora_dropout: float = _model("lora_dropout")
    embed_dim: int = _model("embed_dim")
    layers: int = _model("layers")
    heads: int = _model("heads")
    dropout: float = _model("dropout")
    activation_fn: str = _model("activation_fn")
    positions: str = _model("positions")
    max_positions: int = _model("max_positions")
    layer_norm_eps: float = _model("layer_norm_eps")
    sequence_length: int = _model("context_len", "context length in tokens (training windows and rollouts)")
    disable_inner_pos_encoding: bool = _model("use_pos_encoding", "turn off the in-timestep position encodings",
                                              negate=True)
    flash: bool = _model("flash")
    pad_seq: bool = _model("pad_seq")
    # model: the vocabulary
    tokenizer_model_name: str = _model("tokenizer_model_name", "local tokenizer directory (tokenizer.json); empty: "
                                       "the built-in tokenizer")
    mu: float = _model("mu")
    M: float = _model("M")
    discrete_tokens: int = _model("discrete_tokens")
    continuous_tokens: int = _model("continuous_tokens")
    task_tokens: int = _model("task_tokens", "task-id tokens reserved (raised to the number of --control_datasets "
                                             "when a run has more)")
    value_embedding: bool = _model("value_embedding")
    # model: images
    disable_patch_pos_encoding: bool = _model("use_patch_pos_encoding", "turn off the patch row/column position "
                                              "encodings", negate=True)
    patch_size: int = _model("patch_size")
    resid_mid_channels: int = _model("resid_mid_channels")
    image_channels: int = _model("image_channels")
    image_channel_pad: float = _model("image_channel_pad")
    image_summary: bool = _model("image_summary")
    image_summary_pooled: bool = _model("image_summary_pooled")
    text_film: bool = _model("text_film")
    film_carry: bool = _model("film_carry")
    pack_sequences: bool = _f(True, "pack several training windows per row (attention kept inside each)")
    # optimisation
    training_steps: int = _f(20000, "optimizer steps (a time budget may stop earlier)")
    max_minutes: float = _f(20.0, "wall-clock budget for training in minutes (0: none); the schedule follows it")
    batch_size: int = _f(32, "sequences per optimizer step (across accumulation steps)")
    gradient_accumulation_steps: int = _f(1, "micro-batches per optimizer step")
    learning_rate: float = _f(1e-3, "peak learning rate")
    init_lr: float = _f(1e-5, "learning rate at the start of warm-up")
    warmup_steps: int = _f(100, "linear warm-up steps")
    min_factor: float = _f(0.1, "final learning rate as a fraction of the peak (cosine decay)")
    weight_decay: float = _f(0.01, "AdamW weight decay")
    beta_1: float = _f(0.9, "AdamW beta1")
    beta_2: float = _f(0.95, "AdamW beta2")
    adam_eps: float = _f(1e-8, "AdamW epsilon")
    grad_norm_clip: float = _f(1.0, "clip the gradient norm to this")
    disable_grad_clip: bool = _f(False, "do not clip gradients")
    mixed_precision: str = _f("no", "accelerate mixed precision: no, bf16 or fp16")
    seed: int = _f(0, "random seed")
    device: str = _f("", "device (empty: accelerate's choice; 'cpu' forces the CPU)")
    fsdp: bool = _f(False, "shard parameters, gradients and optimizer state over the processes (torch FSDP2; "
                           "launch with torchrun, 2+ processes); DDP otherwise")
    # beyond plain behaviour cloning (see docs/ARCHITECTURE.md)
    action_history_noise: list = _f([], "probability that an action token of a training input is replaced by a "
                                        "random one (against copying the last action): one value for every dataset "
                                        "or one per dataset (default: 0)")
    dagger_rounds: int = _f(0, "times during training that tasks whose expert can label states (the BabyAI bot, "
                               "the recipes' experts) add labelled rollouts of the policy (on GoToLocal it lowered "
                               "success; see docs/ARCHITECTURE.md)")
    dagger_episodes: list = _f([1000], "policy episodes labelled in each DAgger round: one number for every "
                                       "dataset or one per dataset (0: that one is not corrected)")
    # prompting (NEKO's names)
    prompt_ep_proportion: float = _f(defaults.PROMPT_EP_PROPORTION, "share of training windows preceded by a prompt "
                                                                     "(NEKO: 0.25)")
    prompt_len_proportion: float = _f(defaults.PROMPT_LEN_PROPORTION, "share of the context a prompt takes")
    unique_prompt_episodes: bool = _f(not defaults.SHARE_PROMPT_EPISODES, "prompt from another episode instead of "
                                                                          "the window's own")
    prompt_type: str = _f(defaults.PROMPT_TYPE, "part of the prompt episode used: start, end or uniform")
    top_k: int = _f(defaults.TOP_K_PROMPTING or 0, "take prompt episodes from the k best by return (0: all)")
    # evaluation and logging
    eval_episodes: int = _f(50, "episodes per task at each evaluation")
    eval_envs: int = _f(defaults.EVAL_ENVS, "environments stepped together in evaluation")
    eval_mode: str = _f("deterministic", "deterministic (argmax) or stochastic (sampled) actions")
    promptless_eval: bool = _f(True, "evaluate without a prompt")
    log_eval_freq: int = _f(0, "evaluate every N steps (0: by --eval_every_minutes)")
    eval_every_minutes: float = _f(0.0, "evaluate every N training minutes (0: at each fifth of the budget)")
    log_every: int = _f(20, "write training metrics every N steps")
    report_to: list = _f(["tensorboard"], "Accelerate trackers for the metrics: tensorboard (in runs/NAME/logs), "
                                          "wandb, comet_ml, aim, mlflow, clearml, dvclive, all, ...; none: no logs")
    # saving
    save_model: bool = _f(True, "save the policy")
    save_mode: str = _f("checkpoint", "checkpoint: save at every evaluation; last: only at the end")
    save_every_minutes: float = _f(5.0, "save the resumable state (runs/NAME/state; `gato train --resume`) every "
                                        "N training minutes (0: only at evaluations)")
    save_every_steps: int = _f(0, "also save the resumable state every N steps (0: never by steps)")
    save_dir: str = _f("runs", "folder for checkpoints, logs and plots")
    exp_name: str = _f("", "run name (default: derived from the datasets and time)")

    def policy_config(self) -> PolicyConfig:
        """The PolicyConfig that the model flags describe (the one place they become one)."""
        values = {}
        for f in dataclasses.fields(self):
            name = f.metadata.get("policy_field")
            if name is None:
                continue
            value = getattr(self, f.name)
            if f.metadata["negate"]:
                value = not value
            elif value == "" and PolicyConfig.__dataclass_fields__[name].default is None:
                value = None
            values[name] = value
        return PolicyConfig(**values, lora_r=self.lora_r if self.lora else 0)

    def to_dict(self) -> dict:
        """JSON-able copy."""
        return dataclasses.asdict(self)

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """One flag per field, ``--name``; booleans take true/false."""
        for f in dataclasses.fields(cls):
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            help_ = f"{f.metadata['help']} (default: {default})"
            if isinstance(default, bool):
                parser.add_argument(f"--{f.name}", type=_bool, nargs="?", const=True, default=default, help=help_)
            elif isinstance(default, list):
                parser.add_argument(f"--{f.name}", nargs="*", default=default, help=help_,
                                    type=float if f.name in _FLOAT_LISTS else int if f.name in _INT_LISTS else str)
            else:
                parser.add_argument(f"--{f.name}", type=type(default), default=default, help=help_)

    @classmethod
    def from_namespace(cls, ns: argparse.Namespace) -> TrainingArgs:
        """The fields of ``ns`` that belong to TrainingArgs."""
        names = {f.name for f in dataclasses.fields(cls)}
        args = cls(**{k: v for k, v in vars(ns).items() if k in names})
        args.validate()
        return args

    def validate(self) -> None:
        """Raise ValueError for values that cannot work, naming the flag."""
        checks = [
            (self.eval_mode in ("deterministic", "stochastic"), "--eval_mode must be deterministic or stochastic"),
            (self.save_mode in ("checkpoint", "last"), "--save_mode must be checkpoint or last"),
            (self.prompt_type in ("start", "end", "uniform"), "--prompt_type must be start, end or uniform"),
            (self.mixed_precision in ("no", "bf16", "fp16"), "--mixed_precision must be no, bf16 or fp16"),
            (not (self.fsdp and self.mixed_precision == "fp16"),
             "--fsdp computes in bf16 (--mixed_precision bf16) or float32 (no), not fp16"),
            (self.loss_weighting in ("tokens", "tasks"), "--loss_weighting must be tokens or tasks"),
            (self.batch_size >= self.gradient_accumulation_steps >= 1,
             "--batch_size must be at least --gradient_accumulation_steps (>= 1)"),
            (not self.task_weights or len(self.task_weights) == len(self.control_datasets),
             "--task_weights needs one weight per dataset in --control_datasets"),
            (self.task_sampling in ("uniform", "data", "expert_gap"),
             "--task_sampling must be uniform, data or expert_gap"),
            (self.constant_text in ("window", "step"), "--constant_text must be window or step"),
            (self.window_sampling in defaults.WINDOW_SAMPLINGS,
             f"--window_sampling must be {' or '.join(defaults.WINDOW_SAMPLINGS)}"),
            (self.episode_prefix >= 0, "--episode_prefix must be >= 0 (0: whole episodes)"),
            (not self.task_weights or self.task_sampling == "uniform",
             f"--task_weights are explicit weights: drop them or --task_sampling {self.task_sampling}"),
            (len(self.action_history_noise) in (0, 1, len(self.control_datasets)),
             "--action_history_noise needs one value, or one per dataset in --control_datasets"),
            (len(self.dagger_episodes) in {1, len(self.control_datasets)} - {0} and min(self.dagger_episodes) >= 0,
             "--dagger_episodes needs one number >= 0, or one per dataset in --control_datasets"),
            (self.training_steps > 0, "--training_steps must be positive"),
            (self.lora_r > 0, "--lora_r must be positive"),
            (not self.lora or self.pretrained_lm, "--lora adapts a pretrained model: give --pretrained_lm DIR"),
            *self._mixture_checks(),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        self.trackers()

    def _mixture_checks(self) -> list[tuple[bool, str]]:
        props = {"text": self.text_prop, "caption": self.caption_prop, "vqa": self.vqa_prop}
        checks = [(0 <= sum(props.values()) <= 1 and min(props.values()) >= 0,
                   "--text_prop, --caption_prop and --vqa_prop are shares of a batch: each >= 0, together <= 1")]
        for kind, prop in props.items():
            given = bool(getattr(self, f"{kind}_datasets"))
            checks.append((given == (prop > 0), f"--{kind}_datasets and --{kind}_prop go together: give both "
                                                f"(e.g. --{kind}_prop 0.2) or neither"))
        checks.append((bool(self.control_datasets) or sum(props.values()) == 1,
                       "without --control_datasets the shares --text_prop, --caption_prop, --vqa_prop must add to 1"))
        checks.append((not self.control_datasets or sum(props.values()) < 1,
                       "the shares --text_prop, --caption_prop, --vqa_prop leave nothing for --control_datasets: "
                       "lower them or pass --control_datasets with no value"))
        return checks

    def mixture(self) -> dict[str, list[str]]:
        """{kind: datasets} of the text, caption and VQA datasets (kinds without datasets left out)."""
        kinds = {"text": self.text_datasets, "caption": self.caption_datasets, "vqa": self.vqa_datasets}
        return {kind: list(datasets) for kind, datasets in kinds.items() if datasets}

    def mixture_weights(self, control=None) -> list[float]:
        """Sampling weight of every task in build order: control datasets (by ``control``, else --task_weights, else
        equally) share what the *_prop flags leave; each kind's share is split equally among its datasets."""
        if control is None:
            control = self.task_weights or [1.0] * len(self.control_datasets)
        control = np.asarray(control, float)
        rest = 1.0 - self.text_prop - self.caption_prop - self.vqa_prop
        weights = list(control / control.sum() * rest) if len(control) else []
        for kind, datasets in self.mixture().items():
            weights += [getattr(self, f"{kind}_prop") / len(datasets)] * len(datasets)
        return weights

    def __post_init__(self):
        if isinstance(self.action_history_noise, (int, float)):  # one value given from Python
            self.action_history_noise = [float(self.action_history_noise)]
        if isinstance(self.dagger_episodes, int):
            self.dagger_episodes = [self.dagger_episodes]
        if isinstance(self.report_to, str):  # one name, or several joined by commas, given from Python
            self.report_to = [self.report_to]

    def trackers(self) -> list[str]:
        """The Accelerate ``log_with`` names of ``--report_to`` (commas split, lower case); [] for none or empty.

        Raises ValueError for a name Accelerate does not know, naming the choices. Whether the tracker's package is
        installed is checked where the trackers start (``gato.training.run.check_trackers``)."""
        from accelerate.utils import LoggerType

        names = [n.strip().lower() for item in self.report_to for n in str(item).split(",") if n.strip()]
        choices = [*LoggerType.list(), "none"]
        unknown = [n for n in names if n not in choices]
        if unknown:
            raise ValueError(f"--report_to {' '.join(unknown)}: unknown tracker; choose from {', '.join(choices)}")
        if "none" in names and len(names) > 1:
            raise ValueError("--report_to none cannot be combined with other trackers")
        return list(dict.fromkeys(n for n in names if n != "none"))

    def history_noise(self, i: int) -> float:
        """The action-history noise of dataset ``i``."""
        return float(_for_dataset(self.action_history_noise, i, 0.0))

    def dagger_episodes_for(self, i: int) -> int:
        """Episodes to correct per DAgger round for dataset ``i``."""
        return int(_for_dataset(self.dagger_episodes, i, 0))

    def overrides(self) -> dict:
        """The parsed --field_overrides JSON."""
        if not self.field_overrides:
            return {}
        try:
            return json.loads(self.field_overrides)
        except json.JSONDecodeError as e:
            raise ValueError(f"--field_overrides is not valid JSON ({e}): {self.field_overrides!r}") from None


_FLOAT_LISTS = ("task_weights", "action_history_noise")
_INT_LISTS = ("dagger_episodes",)


def _for_dataset(values: list, i: int, default):
    """Dataset ``i``'s entry of a flag given once for every dataset or once per dataset."""
    return values[i] if len(values) > 1 else values[0] if values else default


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "y", "on"):
        return True
    if text.lower() in ("0", "false", "no", "n", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
