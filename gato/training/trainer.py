"""Trainer: behaviour cloning over any set of tasks, on Hugging Face Accelerate.

The trainer knows the Task protocol only (``sample_batch``, ``evaluate``, ``spec``, ``name``):
it mixes tasks in each batch by weight, steps the optimizer, logs to the Accelerate trackers, evaluates
(by default at each fifth of the ``max_minutes`` training-time budget; ``eval_every_minutes``
sets another period, ``log_eval_freq`` a period in steps; without a time budget, at each fifth
of ``training_steps``) and once more at the end, and saves checkpoints atomically.

On N processes (``accelerate launch`` or ``torchrun``): ``batch_size`` is the global batch, each process samples
``batch_size / N`` rows of its own (its generator is seeded by its rank) and DDP averages the gradients; the
training clock is rank 0's, shared at every step and after each DAgger round, so every process takes the same
decisions (learning rate, evaluation, DAgger, saving, stopping); evaluation episodes are split across the
processes and gathered; only the main process writes files and logs. With ``--fsdp`` the model is sharded
instead of replicated (``gato.training.sharding``); evaluation, DAgger and saving then use a gathered copy.
"""

from __future__ import annotations

import contextlib
import math
import time
from pathlib import Path

import numpy as np
import torch
from accelerate.utils import broadcast_object_list, gather_object

from gato.batch import Batch
from gato.evaluation.scores import headline
from gato.policy.gato_policy import TASKS_FILE
from gato.tasks.task import CollectsCorrections
from gato.training.arguments import TrainingArgs

ARGS_FILE = "training_args.json"
LOGS_DIR = "logs"  # the trackers' folder in the run directory (TensorBoard: logs/PROJECT_NAME/events.out.tfevents.*)
PROJECT_NAME = "neko-gato"  # the trackers' project (wandb, comet_ml, mlflow); each run is named by exp_name
HISTORY_FILE = "history.json"


class Trainer:
    """Train ``model`` on ``tasks``; the keyword names are NEKO's.

    Args:
        model: a GatoPolicy.
        optimizer, scheduler: a torch optimizer and LR scheduler (stepped once per optimizer
            step; see ``gato.training.schedule.warmup_cosine``).
        accelerator: an ``accelerate.Accelerator`` (one process or many). Metrics go to its trackers
            (``log_with``; TensorBoard writes under its ``logging_dir``); ``gato.training.run.build_trainer``
            makes one from ``--report_to``. Without ``log_with`` nothing is logged.
        tasks: objects following ``gato.tasks.task.Task``.
        exp_name: run name; outputs go to ``args.save_dir/exp_name``.
        args: TrainingArgs (or any object with its fields).
        task_weights: sampling weight per task (default ``args.task_weights``, else uniform).
    """

    def __init__(self, model, optimizer, scheduler, accelerator, tasks, exp_name, args, task_weights=None):
        self.accelerator = accelerator
        from gato.training.sharding import is_sharded

        # A model sharded with FSDP2 (``--fsdp``, gato.training.sharding) is used as it is: Accelerate's prepare
        # would wrap it again, and it reduces its own gradients.
        self.sharded = is_sharded(model)
        self.model, self.optimizer = (model, optimizer) if self.sharded else accelerator.prepare(model, optimizer)
        self._unsharded = None  # the sharded model's full copy, while the weights stay as they are
        self.scheduler = scheduler
        self.tasks = list(tasks)
        if not self.tasks:
            raise ValueError("Trainer needs at least one task")
        self.exp_name = exp_name
        self.args = args
        weights = np.asarray(task_weights or getattr(args, "task_weights", None) or [1.0] * len(self.tasks), float)
        if len(weights) != len(self.tasks) or (weights < 0).any() or weights.sum() <= 0:
            raise ValueError(f"task_weights {weights.tolist()} must be {len(self.tasks)} non-negative numbers, "
                             "not all zero")
        self.weights = weights / weights.sum()
        # {task: metrics} of an evaluation -> new task weights (--task_sampling expert_gap; see gato/training/run.py)
        self.reweight = None
        self.run_dir = Path(args.save_dir) / exp_name
        self.rng = np.random.default_rng(getattr(args, "seed", 0) + 1000 * accelerator.process_index)
        self.history: list[dict] = []
        self.train_seconds = 0.0
        self.step = 0
        self.dagger_rounds_done = 0
        self.last_eval_seconds = 0.0  # training time at the last evaluation (saved with the state)
        self.last_eval_step = -1  # step of the last evaluation, on every process (saved with the state)
        self.last_state_seconds = 0.0  # training time at the last state save

    def _args_dict(self) -> dict:
        """The run's arguments as a JSON-able dict (TrainingArgs, or any object with its fields)."""
        return self.args.to_dict() if hasattr(self.args, "to_dict") else dict(vars(self.args))

    @property
    def policy(self):
        """The bare policy (unwrapped from Accelerate/DDP; with ``--fsdp`` the sharded one, whose parameters are
        DTensors: use :meth:`plain_policy` to run or save it)."""
        return self.model if self.sharded else self.accelerator.unwrap_model(self.model)

    def plain_policy(self):
        """The policy with full weights on this process, for evaluation, DAgger and the checkpoint: the bare
        policy, or with ``--fsdp`` an unsharded copy (gathered from every process: all of them must call this;
        kept until the next training step changes the weights)."""
        if not self.sharded:
            return self.policy
        if self._unsharded is None:
            from gato.training.sharding import unsharded_copy

            self._unsharded = unsharded_copy(self.model)
        return self._unsharded

    def sample_batch(self, batch_size: int) -> Batch:
        """A batch mixing tasks by weight: each sequence's task is drawn independently. With
        ``loss_weighting="tasks"`` each task's targets share its fraction of the rows as loss weight."""
        counts = self.rng.multinomial(batch_size, self.weights)
        policy = self.policy
        parts = [task.sample_batch(int(n), policy.vocab, policy.context_len, self.rng)
                 for task, n in zip(self.tasks, counts) if n]
        if getattr(self.args, "loss_weighting", "tokens") == "tasks":
            for part in parts:
                predicted = max(int(part.targets[:, 1:].sum()), 1)  # the first column is never predicted
                part.loss_weights = part.targets.astype(np.float32) * np.float32(len(part) / batch_size / predicted)
        return Batch.concat(parts, policy.config.image_channel_pad)

    def micro_batch_size(self) -> int:
        """Rows each process samples per micro-batch: the global ``batch_size`` split over the processes and the
        ``gradient_accumulation_steps``."""
        args, n = self.args, self.accelerator.num_processes
        accum = max(1, args.gradient_accumulation_steps)
        if args.batch_size % (n * accum):
            raise ValueError(f"--batch_size {args.batch_size} is the global batch: it must divide into {n} "
                             f"process(es) x {accum} accumulation step(s); use a multiple of {n * accum}")
        return args.batch_size // (n * accum)

    def train_step(self) -> dict:
        """One optimizer step over ``gradient_accumulation_steps`` micro-batches."""
        args = self.args
        accum = max(1, args.gradient_accumulation_steps)
        micro = self.micro_batch_size()
        self.model.train()
        self._unsharded = None  # the weights change
        total_loss, tokens = 0.0, 0
        batches = [self.sample_batch(micro) for _ in range(accum)]
        if self.sharded:
            self._share_unused(batches)
        for i, batch in enumerate(batches):
            stream = batch.to_torch(self.accelerator.device)
            # gradients are averaged across processes once, at the last micro-batch
            last = i + 1 == accum
            if self.sharded:
                self.model.set_requires_gradient_sync(last)
            with self.accelerator.no_sync(self.model) if not (last or self.sharded) else contextlib.nullcontext():
                with self.accelerator.autocast():
                    _, loss = self.model(stream)
                self.accelerator.backward(loss / accum)
            total_loss += float(loss.detach()) / accum
            tokens += int((batch.tokens != self.policy.vocab.pad).sum() + batch.patch_mask.sum())
        if not args.disable_grad_clip:
            if self.sharded:  # over DTensors: the norm is the whole model's, reduced across the shards
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), args.grad_norm_clip)
            else:
                self.accelerator.clip_grad_norm_(self.model.parameters(), args.grad_norm_clip)
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return {"loss": total_loss, "tokens": tokens}

    def _share_unused(self, batches: list[Batch]) -> None:
        """With ``--fsdp``: whether any process's rows this step have images, so that all of them reduce the same
        gradients (see ``gato.training.sharding.reduce_unused``); a process's rows are drawn on their own."""
        from gato.training.sharding import reduce_unused

        mine = float(any(batch.patch_mask.any() for batch in batches))
        flag = torch.tensor([mine], dtype=torch.float64, device=self.accelerator.device)
        reduce_unused(self.model, bool(self.accelerator.reduce(flag, reduction="sum").item() > 0))

    def evaluate(self) -> dict:
        """Evaluate every task; returns {task name: metrics} on every process. On several processes each task is
        split across them (``evaluate_part``, gathered for ``summarize``: see the Task protocol)."""
        acc = self.accelerator
        options = {"deterministic": self.args.eval_mode == "deterministic",
                   "promptless_eval": self.args.promptless_eval, "n_envs": getattr(self.args, "eval_envs", None)}
        results = {}
        policy = self.plain_policy()
        for task in self.tasks:
            if acc.num_processes > 1:
                part = task.evaluate_part(policy, self.args.eval_episodes, acc.process_index,
                                          acc.num_processes, **options)
                results[task.name] = task.summarize(gather_object(part))
            elif acc.is_main_process:
                results[task.name] = task.evaluate(policy, n_iterations=self.args.eval_episodes, **options)
        if acc.num_processes > 1:
            shared = [results]
            broadcast_object_list(shared, from_process=0)
            results = shared[0]
        return results

    def _eval_due(self, last_eval_seconds: float) -> bool:
        args = self.args
        if args.log_eval_freq:
            return self.step % args.log_eval_freq == 0
        every = getattr(args, "eval_every_minutes", 0) * 60 or args.max_minutes * 60 / 5
        if every:
            return self.train_seconds - last_eval_seconds >= every
        return self.step % max(1, args.training_steps // 5) == 0

    def _dagger_due(self) -> bool:
        """Rounds are spread evenly: round k at k / (rounds + 1) of the budget (time, else steps)."""
        rounds = getattr(self.args, "dagger_rounds", 0)
        if self.dagger_rounds_done >= rounds:
            return False
        at = (self.dagger_rounds_done + 1) / (rounds + 1)
        if self.args.max_minutes:
            return self.train_seconds >= at * self.args.max_minutes * 60
        return self.step >= at * self.args.training_steps

    def collect_corrections(self, bar=None) -> dict:
        """One DAgger round: every task that can (``CollectsCorrections``, gato.tasks.task) adds
        expert-labelled rollouts of the current policy to its data. The time it takes counts
        as training time: it is part of what the policy costs to train."""
        t0 = time.monotonic()
        results = {}
        n = self.accelerator.num_processes
        policy = self.plain_policy()
        for i, task in enumerate(self.tasks):
            episodes = self.args.dagger_episodes_for(i)
            if not isinstance(task, CollectsCorrections) or episodes == 0:
                continue
            round_index = self.dagger_rounds_done * n + self.accelerator.process_index  # unique across processes
            stats = task.collect_corrections(policy, episodes, round_index=round_index)
            if stats is not None:
                results[task.name] = stats
        self.dagger_rounds_done += 1
        self.train_seconds += time.monotonic() - t0
        self._share_clock()  # each process spent its own time: take rank 0's, as after a step
        self.history.append({"step": self.step, "minutes": self.train_seconds / 60, "corrections": results})
        if results and self.accelerator.is_main_process:
            summary = "  ".join(f"{name}: +{s['episodes']} episodes, model != expert on {s['disagreement']:.0%} "
                                "of steps" for name, s in results.items())
            say = bar.write if bar is not None else print
            say(f"step {self.step} DAgger round {self.dagger_rounds_done}: {summary}")
        return results

    def progress_bar(self, **kw):
        """A ``tqdm`` bar of the budget that stops the run: minutes of training time with ``max_minutes`` (its
        ETA then counts evaluations and DAgger rounds in too), else steps. ``training_steps`` can still end a
        timed run first; the bar then stops short. ``kw`` goes to tqdm."""
        from tqdm.auto import tqdm

        if self.args.max_minutes:
            return tqdm(total=self.args.max_minutes, desc=f"training {self.exp_name}", dynamic_ncols=True,
                        bar_format="{l_bar}{bar}| {n:.1f}/{total:g} training min [{elapsed}<{remaining}{postfix}]",
                        initial=self._progress(), **kw)
        return tqdm(total=self.args.training_steps, desc=f"training {self.exp_name}", unit="step",
                    dynamic_ncols=True, initial=self._progress(), **kw)

    def _progress(self) -> float:
        """How far along the bar's budget is: training minutes with ``max_minutes``, else steps."""
        return min(self.train_seconds / 60, self.args.max_minutes) if self.args.max_minutes else self.step

    def _out_of_time(self) -> bool:
        budget = self.args.max_minutes * 60
        return bool(budget) and self.train_seconds >= budget

    def train(self, resume_from=None) -> dict:
        """Run to ``training_steps`` or the time budget; returns the last evaluation. The trackers start
        here and are closed at the end, also when training fails (what was logged is kept).

        ``resume_from``: a run directory (or its ``state`` folder) whose saved state this trainer, built from
        that run's saved arguments, continues exactly: weights, optimizer, scheduler, step, training time,
        random generators and learning curve (see ``gato.training.state``)."""
        if resume_from is not None:
            from gato.training.state import load_state

            load_state(self, resume_from)
            self._reweight(next((h["eval"] for h in reversed(self.history) if "eval" in h), None))
        self.start_trackers()
        try:
            return self._train()
        finally:
            self.finish_trackers()

    def finish_trackers(self) -> None:
        """What ``accelerator.end_training()`` does, less its ``destroy_process_group()``: callers still evaluate
        after ``train`` (the CLI, the benchmarks; ``evaluate`` waits for every process), and ``train`` may run
        again. Whoever made the Accelerator ends the process group."""
        for tracker in self.accelerator.trackers:
            tracker.finish()
        self.accelerator.trackers.clear()

    def close(self) -> None:
        """End the run's processes cleanly; the trainer cannot train after it. It drops the trainer's model and
        optimizer (a sharded or DDP model holds the process group) and destroys the process group. Left to the
        interpreter's exit, the model could be freed after the group's gloo threads, and a process that had
        finished its work aborted ("terminate called without an active exception": about one FSDP run in four
        on this 2-core CPU before this existed)."""
        import torch.distributed as dist

        self.model = self.optimizer = self.scheduler = None
        self.accelerator.free_memory()  # Accelerate's references to them too; collects the garbage
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()

    def start_trackers(self) -> None:
        """Start the accelerator's trackers (main process), with the run's arguments as their config."""
        config = {k: v if isinstance(v, (bool, int, float, str)) else str(v) for k, v in self._args_dict().items()}
        # Name the run where a tracker takes a name (the project groups runs); wandb keeps its files in the run.
        names = {"wandb": {"name": self.exp_name, "dir": str(self.run_dir)}, "mlflow": {"run_name": self.exp_name}}
        used = {str(t) for t in self.accelerator.log_with}
        if "wandb" in used and self.accelerator.is_main_process:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        self.accelerator.init_trackers(PROJECT_NAME, config=config,
                                       init_kwargs={k: v for k, v in names.items() if k in used})

    def _train(self) -> dict:
        args = self.args
        main = self.accelerator.is_main_process
        bar = self.progress_bar(disable=not main)
        # Every decision below (log, evaluate, DAgger, save, stop) reads only what every process holds alike: the
        # step, the shared clock and counters that all of them update. The history is the main process's alone.
        window_tokens, window_start = 0, self.train_seconds
        last = {}
        while self.step < args.training_steps and not self._out_of_time():
            t0 = time.monotonic()
            out = self.train_step()
            self.train_seconds += time.monotonic() - t0
            finite = self._share_clock(out["loss"])
            self.step += 1
            window_tokens += out["tokens"]
            bar.update(self._progress() - bar.n)
            if not finite:
                raise FloatingPointError(f"loss became {out['loss']} at step {self.step}; lower --learning_rate "
                                         "or enable gradient clipping")
            if self.step % args.log_every == 0:
                out, window_tokens = self._across_processes(out, window_tokens)
                rate = window_tokens / max(1e-9, self.train_seconds - window_start)
                window_tokens, window_start = 0, self.train_seconds  # on every process: each sums its own window
                if main:
                    lr = self.optimizer.param_groups[0]["lr"]
                    self.accelerator.log({"train/loss": out["loss"], "train/lr": float(lr),
                                          "train/tokens_per_s": rate}, step=self.step)
                    where = {"step": self.step} if args.max_minutes else {"min": f"{self.train_seconds / 60:.1f}"}
                    bar.set_postfix(loss=f"{out['loss']:.3f}", tok_s=f"{rate:,.0f}", **where)
                    self.history.append({"step": self.step, "minutes": self.train_seconds / 60, "loss": out["loss"]})
            evaluated = self._eval_due(self.last_eval_seconds)
            if evaluated:
                last = self._evaluate_and_save(bar)
            if self._dagger_due():
                self.collect_corrections(bar)
            if evaluated or self._state_due():
                self.save_state()  # at the end of the step, so that a resumed run repeats nothing
        bar.close()
        if self.last_eval_step != self.step:
            last = self._evaluate_and_save(None, final=True)
        elif args.save_mode != "checkpoint" and args.save_model:
            self._save_checkpoint()  # the last step's evaluation did not save (save_mode last): the end does
        return last

    def _share_clock(self, loss: float = 0.0) -> bool:
        """Every process takes rank 0's training time: the schedule, evaluations, DAgger rounds, saves and the
        end of the run all follow it, so the processes never disagree about what comes next. Returns whether
        the loss is finite on every process (in the same reduction), so that all of them stop together."""
        if self.accelerator.num_processes == 1:
            return math.isfinite(loss)
        clock = self.train_seconds if self.accelerator.is_main_process else 0.0
        both = torch.tensor([clock, loss], dtype=torch.float64, device=self.accelerator.device)
        clock, total = self.accelerator.reduce(both, reduction="sum").tolist()
        self.train_seconds = clock
        return math.isfinite(total)

    def _across_processes(self, out: dict, window_tokens: int) -> tuple[dict, int]:
        """The loss averaged and the tokens summed over the processes (for logging)."""
        if self.accelerator.num_processes == 1:
            return out, window_tokens
        both = torch.tensor([out["loss"], float(window_tokens)], dtype=torch.float64, device=self.accelerator.device)
        loss, tokens = self.accelerator.reduce(both, reduction="sum").tolist()
        return {**out, "loss": loss / self.accelerator.num_processes}, int(tokens)

    def _reweight(self, results: dict | None) -> None:
        """Task weights from an evaluation's results, when the run's sampling follows them (``reweight``)."""
        if self.reweight is not None and results:
            weights = np.asarray(self.reweight(results), float)
            self.weights = weights / weights.sum()

    def _evaluate_and_save(self, bar, final: bool = False) -> dict:
        # on every process: the end of the run asks whether the last step was evaluated
        self.last_eval_step, self.last_eval_seconds = self.step, self.train_seconds
        results = self.evaluate()
        self._reweight(results)
        if self.accelerator.is_main_process:
            # float(): a tracker may skip numpy scalars (TensorBoard's takes Python int and float only)
            self.accelerator.log({f"eval/{name}/{key}": float(value) for name, metrics in results.items()
                                  for key, value in metrics.items()}, step=self.step)
            self.history.append({"step": self.step, "minutes": self.train_seconds / 60, "eval": results})
            summary = "  ".join(f"{n}: {headline(m)}" for n, m in results.items())
            line = f"step {self.step} ({self.train_seconds / 60:.1f} min)  {summary}"
            (bar.write if bar is not None else print)(line)
        if self.args.save_model and (final or self.args.save_mode == "checkpoint"):
            self._save_checkpoint()
        self.accelerator.wait_for_everyone()
        return results

    def _save_checkpoint(self) -> None:
        """The checkpoint, written by the main process (every process calls this: with ``--fsdp`` the full weights
        are gathered first)."""
        self.plain_policy()
        if self.accelerator.is_main_process:
            self.save()

    def _state_due(self) -> bool:
        """Whether ``save_every_minutes`` of training time (or ``save_every_steps``) passed since the last save."""
        every_steps = getattr(self.args, "save_every_steps", 0)
        if every_steps and self.step % every_steps == 0:
            return True
        every = getattr(self.args, "save_every_minutes", 0) * 60
        return bool(every) and self.train_seconds - self.last_state_seconds >= every

    def save_state(self) -> Path | None:
        """Save the resumable state to ``run_dir/state`` atomically (with ``save_model``; every process takes
        part, the main one writes); ``gato train --resume`` continues from it."""
        self.last_state_seconds = self.train_seconds
        directory = None
        if getattr(self.args, "save_model", True):
            from gato.training.state import save_state

            directory = save_state(self, self._args_dict())
        self.accelerator.wait_for_everyone()
        return directory

    def save(self) -> Path:
        """Write the checkpoint (policy, task specs, args, history) and the learning curve."""
        directory = self.run_dir / "checkpoint"
        self.plain_policy().save_pretrained(directory, extra={
            TASKS_FILE: [task.spec() for task in self.tasks],
            ARGS_FILE: self._args_dict(),
            HISTORY_FILE: self.history,
        })
        from gato.evaluation.plots import plot_learning_curve

        plot_learning_curve(self.history, self.run_dir / "learning_curve.png", title=self.exp_name)
        return directory


def make_optimizer(model, args: TrainingArgs) -> torch.optim.Optimizer:
    """AdamW over the policy's own parameter groups (:meth:`GatoPolicy.optimizer_groups`: weight decay on
    matrices only, not on norms, biases or position tables)."""
    return torch.optim.AdamW(model.optimizer_groups(args.weight_decay), lr=args.learning_rate,
                             betas=(args.beta_1, args.beta_2), eps=args.adam_eps)
