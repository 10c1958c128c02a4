"""Assemble a run from TrainingArgs: data, tasks, policy, optimizer, accelerator, trainer."""

from __future__ import annotations

import re
import time
import warnings
from pathlib import Path

from gato.data.catalogue import ensure_dataset
from gato.training.arguments import TrainingArgs
from gato.training.sampling import control_weights, mix


def task_name(dataset_id: str) -> str:
    """A short task name: the id without its version (``babyai/GoToLocal-bot``, ``cartpole/scripted``)."""
    return re.sub(r"-v\d+$", "", dataset_id)


TOKENIZER_DIR = "tokenizer"
"""Where a run with text keeps the BPE trained for it (runs/NAME/tokenizer; its checkpoints carry a copy)."""


def build_language_tasks(args: TrainingArgs) -> list:
    """The text, caption and VQA tasks of ``args`` (``--text_datasets`` ...), in that order, not yet encoded: the
    run's tokenizer is trained on their text (:func:`train_run_tokenizer`), then ``encode_for`` encodes them."""
    from gato.tasks.registry import task_class

    tasks = []
    for kind, datasets in args.mixture().items():
        cls = task_class(kind)
        image = {} if kind == "text" else {"image_size": args.image_size, "patch_size": args.patch_size}
        tasks += [cls.from_source(_source_name(kind, source), source, args.sequence_length, encode=False, **image)
                  for source in datasets]
    return tasks


def _source_name(kind: str, source: str) -> str:
    """A task name for a dataset: a default's own name, or the kind and the last part of a local path."""
    return source if "/" in source and not Path(source).exists() else f"{kind}/{Path(source).name}"


def train_run_tokenizer(tasks: list, run_dir: Path, vocab_size: int) -> str:
    """Train the run's byte-level BPE on the training text of its text, caption and VQA ``tasks`` into
    ``run_dir/tokenizer``; returns that directory (a ``tokenizer_model_name``). Deterministic: a resumed run
    trains the same one."""
    from gato.text_tokenizer import train_bpe

    def texts():
        for task in tasks:
            yield from task.training_texts()

    directory = run_dir / TOKENIZER_DIR
    train_bpe(texts(), vocab_size, directory)
    return str(directory)


def build_tasks(args: TrainingArgs, vocab=None) -> list:
    """One ControlTask per dataset in ``args.control_datasets``, encoded for ``vocab`` (the
    policy's ``policy.vocab``; None: the default vocabulary). The text, caption and VQA tasks come from
    :func:`build_language_tasks`.

    With several datasets, task ``i`` gets task id ``i``: each of its timesteps starts with that
    task's token, so the model always knows which task it acts in (see ``ControlTask``).
    """
    from gato.tasks.control_task import ControlTask

    tasks = []
    multi = len(args.control_datasets) > 1
    for i, dataset_id in enumerate(args.control_datasets):
        ensure_dataset(dataset_id, args.data_episodes)
        tasks.append(ControlTask(
            task_name(dataset_id), None, dataset_id, args.sequence_length,
            patch_size=args.patch_size,
            vocab=vocab,
            training_prompt_len_proportion=args.prompt_len_proportion,
            share_prompt_episodes=not args.unique_prompt_episodes,
            top_k_prompting=args.top_k or None,
            prompt_ep_proportion=args.prompt_ep_proportion,
            prompt_type=args.prompt_type,
            field_overrides=args.overrides() or None,
            eval_envs=args.eval_envs,
            pack_windows=args.pack_sequences,
            task_id=i if multi else None,
            action_history_noise=args.history_noise(i),
            max_image_patches=args.max_image_patches or None,
            constant_text=args.constant_text,
            window_sampling=args.window_sampling,
            episode_prefix=args.episode_prefix,
        ))
    return tasks


def build_policy(args: TrainingArgs, device, tokenizer: str | None = None):
    """A GatoPolicy with the model flags of ``args`` (``args.policy_config()``); ``tokenizer``: a tokenizer
    directory replacing ``--tokenizer_model_name`` (a run's trained BPE)."""
    import dataclasses

    from gato.policy.gato_policy import GatoPolicy

    config = args.policy_config()
    # one task token per control dataset: a run of more tasks than the default reserves grows the vocabulary
    if len(args.control_datasets) > config.task_tokens:
        config = dataclasses.replace(config, task_tokens=len(args.control_datasets))
    if tokenizer:
        config = dataclasses.replace(config, tokenizer_model_name=tokenizer)
    return GatoPolicy(config, device=device, pretrained_lm=args.pretrained_lm or None)


class MissingTrackerError(ImportError):
    """A ``--report_to`` tracker whose package is not installed."""


def check_trackers(names: list[str]) -> list[str]:
    """``names`` (``TrainingArgs.trackers()``), after checking that each one's package is installed: Accelerate
    itself would drop a missing one silently (a debug message), and the run would log nowhere.
    ``all`` means the installed ones and needs none in particular."""
    from accelerate.tracking import get_available_trackers

    available = {str(t) for t in get_available_trackers()}
    missing = [n for n in names if n != "all" and n not in available]
    if missing:
        raise MissingTrackerError(f"--report_to {' '.join(missing)}: not installed; pip install "
                                  f"{' '.join(missing)} (or choose another tracker, or none)")
    return names


BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")
"""/proc/cpuinfo flags of bfloat16 instructions: x86's AVX-512 BF16 and AMX, Arm's BF16."""


def read_cpuinfo() -> str | None:
    """The text of /proc/cpuinfo; None where there is no such file (not Linux)."""
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return None


def cpu_has_bf16(cpuinfo: str | None = None) -> bool | None:
    """Whether this CPU computes in bfloat16 natively, from the flags in ``cpuinfo`` (default: /proc/cpuinfo);
    None where there is none (not Linux): unknown."""
    cpuinfo = read_cpuinfo() if cpuinfo is None else cpuinfo
    if cpuinfo is None:
        return None
    flags = {flag for line in cpuinfo.splitlines() if line.split(":")[0].strip() in ("flags", "Features")
             for flag in line.split(":", 1)[1].split()}
    return any(flag in flags for flag in BF16_CPU_FLAGS)


def warn_if_emulated_bf16(mixed_precision: str, device_type: str, cpuinfo: str | None = None) -> None:
    """Warn when ``--mixed_precision bf16`` would run on a CPU without bfloat16 instructions: autocast then
    emulates them, and a training step is several times slower than float32, not faster."""
    if mixed_precision == "bf16" and device_type == "cpu" and cpu_has_bf16(cpuinfo) is False:
        warnings.warn("--mixed_precision bf16 on a CPU without bfloat16 instructions (no "
                      f"{', '.join(BF16_CPU_FLAGS)} in /proc/cpuinfo): autocast emulates them and a training step "
                      "runs several times slower than float32 (`python benchmarks/throughput.py --configs small "
                      "--mixed_precision no bf16` compares the two on this machine); leave the flag out", stacklevel=3)


LOSS_SHARE_RATIO = 4.0
"""Predicted tokens a row, most over fewest among the control tasks, from which a per-token loss is warned about."""


def warn_if_loss_unbalanced(tasks: list, context_len: int, loss_weighting: str) -> None:
    """Warn when, under the per-token loss, one control task predicts many times the action tokens a row of
    another: the few-token task then gets a sliver of the gradient. A BabyAI level (one action token a timestep,
    ~14 a row) beside Meta-World (4, ~144) was never learnt that way; ``--loss_weighting tasks`` learnt it."""
    if loss_weighting != "tokens":
        return
    per_row = {t.name: t.codec.timesteps_in(context_len) * len(t.codec.action_ranges)
               for t in tasks if getattr(t, "codec", None) is not None}
    if len(per_row) < 2:
        return
    most, fewest = max(per_row, key=per_row.get), min(per_row, key=per_row.get)
    if per_row[most] >= LOSS_SHARE_RATIO * per_row[fewest]:
        warnings.warn(f"the loss is per predicted token and {most} predicts ~{per_row[most]} action tokens a "
                      f"training row against {fewest}'s ~{per_row[fewest]}: a row of {fewest} weighs "
                      f"~{per_row[most] / per_row[fewest]:.0f}x less; `--loss_weighting tasks` gives each task its "
                      "share of the rows (docs/EXPERIMENTS.md, 2026-12-08)", stacklevel=3)


def build_trainer(args: TrainingArgs, tasks=None):
    """A ready Trainer for ``args`` (tasks built from ``args`` unless given)."""
    import torch
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs, DistributedType, ProjectConfiguration

    from gato.training.schedule import warmup_cosine
    from gato.training.trainer import LOGS_DIR, Trainer, make_optimizer

    # The run's name first: the trackers' folder (runs/NAME/logs) is fixed when the Accelerator is made.
    names = [t.name for t in tasks] if tasks is not None else [task_name(d) for d in args.control_datasets] + [
        _source_name(kind, d) for kind, datasets in args.mixture().items() for d in datasets]
    exp_name = args.exp_name or "-".join(names)[:60] + time.strftime("-%Y%m%d-%H%M%S")
    run_dir = Path(args.save_dir) / exp_name
    # Without a GPU, cpu=True: Accelerate then runs `torchrun`/`accelerate launch` processes as one multi-CPU job
    # (with cpu=False it would treat each process as a separate single-process run).
    cpu = args.device == "cpu" or not (torch.cuda.is_available() or torch.backends.mps.is_available())
    # find_unused_parameters: a batch uses only some modules (no patch encoder without images), and DDP must not
    # wait for the gradients of the others.
    accelerator = Accelerator(mixed_precision=args.mixed_precision, cpu=cpu,
                              kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
                              log_with=check_trackers(args.trackers()) or None,
                              project_config=ProjectConfiguration(project_dir=str(run_dir),
                                                                  logging_dir=str(run_dir / LOGS_DIR)))
    warn_if_emulated_bf16(args.mixed_precision, accelerator.device.type)
    if accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED):
        raise ValueError(f"{accelerator.distributed_type.value} from Accelerate's config is not used: shard with "
                         "`gato train --fsdp` (torch FSDP2), launched by torchrun or `accelerate launch --multi_gpu`")
    if args.fsdp and accelerator.num_processes < 2:
        raise ValueError("--fsdp shards the model over processes and this run has one: launch it with "
                         "`torchrun --nproc_per_node N .venv/bin/gato train --fsdp ...` (N >= 2), or drop --fsdp")
    if args.device not in ("", "cpu") and torch.device(args.device) != accelerator.device:
        raise ValueError(f"--device {args.device}: accelerate chose {accelerator.device}; select GPUs with "
                         "CUDA_VISIBLE_DEVICES (or `accelerate launch`) and leave --device empty")
    weights = None
    language = [] if tasks is not None else build_language_tasks(args)
    tokenizer = None
    if language and not args.pretrained_lm and not args.tokenizer_model_name:
        if accelerator.is_main_process:  # one process writes it, the others read it
            train_run_tokenizer(language, run_dir, args.bpe_vocab)
        accelerator.wait_for_everyone()
        tokenizer = str(run_dir / TOKENIZER_DIR)
    # The policy before the control tasks: its initialisation then follows the seed alone, whatever making the
    # tasks draws (the text tasks draw nothing).
    torch.manual_seed(args.seed)
    model = build_policy(args, accelerator.device, tokenizer)
    if tasks is None:
        for task in language:
            task.encode_for(model.vocab)
        control = build_tasks(args, model.vocab)
        tasks = control + language
        weights = args.mixture_weights(control_weights(args.task_sampling, control, args.task_weights))
    warn_if_loss_unbalanced(tasks, args.sequence_length, args.loss_weighting)
    if args.fsdp:  # before the optimizer, which must hold the sharded parameters
        from gato.training.sharding import shard

        shard(model, accelerator.device, accelerator.num_processes,
              bf16=accelerator.device.type == "cuda" and args.mixed_precision == "bf16")
    optimizer = make_optimizer(model, args)
    trainer = Trainer(model=model, optimizer=optimizer, scheduler=None, accelerator=accelerator, tasks=tasks,
                      exp_name=exp_name, args=args, task_weights=weights)
    if args.task_sampling == "expert_gap" and weights is not None:
        shares = weights[len(control):]  # the language tasks keep their --*_prop shares
        trainer.reweight = lambda results: mix(control_weights("expert_gap", control, last_eval=results), shares)
    trainer.scheduler = warmup_cosine(optimizer, args.warmup_steps, args.training_steps, args.learning_rate,
                                      args.init_lr, args.min_factor, args.max_minutes * 60,
                                      clock=lambda: trainer.train_seconds)
    return trainer
