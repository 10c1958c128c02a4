"""The resumable state of a training run (``runs/NAME/state``), saved and loaded without pickle.

What ``Accelerator.save_state`` would save, in formats that cannot run code when loaded: the weights as
safetensors, the optimizer's state dict through ``torch.save`` read back with ``torch.load(weights_only=True)``
(tensors and numbers only), and everything else as JSON: the scheduler's state dict, the step, the training
seconds spent, the learning curve and every random generator (Python ``random``, NumPy's global one, the
trainer's own ``numpy.random.Generator``; torch's CPU and CUDA states go in a safetensors file). Accelerate's own
``save_state`` pickles the RNG states and its ``load_state`` reads them with ``weights_only=False`` (and skips
them silently when that fails), so it is not used. The episodes DAgger added to a task's data are saved too
(``gato.data.episode_file``).

On several processes each one's generators and DAgger episodes differ: they are gathered to the main process,
which alone writes, one file per process (``rng_{rank}``, ``added_{rank}_{task}``); a run resumes on as many
processes as it was saved from. The directory is written whole under a temporary name and swapped in with
:func:`gato.atomic.replace_dir`, so a kill at any instant leaves the previous state or the new one.

A sharded model (``--fsdp``) is saved as the same files from full state dicts that every process gathers to
rank 0 (the optimizer's keyed by parameter name), and loaded back by broadcasting from rank 0
(``gato.training.sharding``).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import torch
from accelerate.utils import gather_object
from safetensors.torch import load_file, load_model, save_file, save_model

from gato.atomic import replacing_dir, resolve_dir
from gato.data.episode_file import load_episodes, save_episodes
from gato.tasks.task import CollectsCorrections

STATE_DIR = "state"
STATE_FILE = "state.json"
MODEL_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.pt"
ARGS_FILE = "training_args.json"


class ResumeError(ValueError):
    """A run that cannot be resumed (no saved state, or a state this version cannot continue exactly)."""


def _rng_file(process_index: int) -> str:
    return f"rng_{process_index}.safetensors"


def _added_file(process_index: int, task_index: int) -> str:
    return f"added_{process_index}_{task_index}.safetensors"


def capture_rngs(trainer) -> dict:
    """The JSON-able states of the Python, NumPy global and trainer generators."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {"python": [version, list(internal), gauss],
            "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)],
            "trainer": trainer.rng.bit_generator.state}


def restore_rngs(trainer, states: dict) -> None:
    """Set the generators to what :func:`capture_rngs` returned."""
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    trainer.rng.bit_generator.state = states["trainer"]


def _process_state(trainer) -> dict:
    """What differs between processes: generators and the episodes DAgger added to each task."""
    torch_rngs = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        torch_rngs.update({f"cuda{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    added = {i: task.added_episodes for i, task in enumerate(trainer.tasks)
             if isinstance(task, CollectsCorrections) and len(task.added_episodes)}
    return {"rngs": capture_rngs(trainer), "torch": torch_rngs, "added": added}


def save_state(trainer, args_dict: dict) -> Path | None:
    """Write ``trainer``'s resumable state to ``run_dir/state`` atomically. Every process calls it; the main
    process writes and returns the directory (the others return None)."""
    acc = trainer.accelerator
    local = _process_state(trainer)
    processes = gather_object([local]) if acc.num_processes > 1 else [local]
    full = None
    if getattr(trainer, "sharded", False):  # --fsdp: the shards gathered, rank 0 holds the whole
        from gato.training.sharding import full_state

        full = full_state(trainer.model, trainer.optimizer)
    if not acc.is_main_process:
        return None
    target = trainer.run_dir / STATE_DIR
    with replacing_dir(target) as tmp:
        _write_state(trainer, args_dict, processes, tmp, full)
    return target


def _write_state(trainer, args_dict: dict, processes: list[dict], tmp: Path, full: tuple | None = None) -> None:
    """The state's files, written into the directory ``tmp``; ``full``: a sharded model's full model and optimizer
    state dicts (the optimizer's keyed by parameter name)."""
    if full is None:
        save_model(trainer.policy, str(tmp / MODEL_FILE))
        torch.save(trainer.optimizer.state_dict(), tmp / OPTIMIZER_FILE)
    else:
        save_file({k: v.contiguous() for k, v in full[0].items()}, str(tmp / MODEL_FILE))
        torch.save(full[1], tmp / OPTIMIZER_FILE)
    for rank, process in enumerate(processes):
        save_file(process["torch"], str(tmp / _rng_file(rank)))
        for task_index, episodes in process["added"].items():
            save_episodes(episodes, tmp / _added_file(rank, task_index))
    state = {"step": trainer.step, "train_seconds": trainer.train_seconds, "processes": len(processes),
             "dagger_rounds_done": trainer.dagger_rounds_done, "last_eval_seconds": trainer.last_eval_seconds,
             "last_eval_step": trainer.last_eval_step,
             "last_state_seconds": trainer.train_seconds, "history": trainer.history,
             "scheduler": trainer.scheduler.state_dict() if trainer.scheduler is not None else None,
             "rngs": [process["rngs"] for process in processes]}
    (tmp / STATE_FILE).write_text(json.dumps(state))
    (tmp / ARGS_FILE).write_text(json.dumps(args_dict, indent=2))


def state_dir(path: str | Path) -> Path:
    """The state directory of run directory ``path`` (or ``path`` itself when it is one)."""
    path = Path(path)
    directory = path if (resolve_dir(path) / STATE_FILE).exists() else resolve_dir(path / STATE_DIR)
    if not (directory / STATE_FILE).is_file():
        raise ResumeError(f"{path}: no saved training state ({STATE_DIR}/{STATE_FILE}); a run saves one every "
                          "--save_every_minutes and at each evaluation (with --save_model true)")
    return directory


def saved_args(path: str | Path) -> dict:
    """The TrainingArgs (as a dict) that the run in ``path`` was started with."""
    return json.loads((state_dir(path) / ARGS_FILE).read_text())


def load_state(trainer, path: str | Path) -> None:
    """Restore ``trainer`` (built from the saved arguments, on as many processes) to the state saved in ``path``."""
    directory = state_dir(path)
    state = json.loads((directory / STATE_FILE).read_text())
    acc = trainer.accelerator
    saved_processes = state.get("processes", 1)
    if saved_processes != acc.num_processes:
        raise ResumeError(f"{path} was saved by {saved_processes} process(es) and this run has {acc.num_processes}: "
                          f"each process's data stream continues from its own state; resume with "
                          f"{saved_processes} process(es)")
    rank = acc.process_index
    device = acc.device
    if getattr(trainer, "sharded", False):  # --fsdp: rank 0 reads the full state, each process keeps its shard
        from gato.training.sharding import load_full_state

        main = acc.is_main_process
        load_full_state(trainer.model, trainer.optimizer, load_file(str(directory / MODEL_FILE)) if main else {},
                        torch.load(directory / OPTIMIZER_FILE, weights_only=True) if main else {})
        trainer._unsharded = None
    else:
        load_model(trainer.policy, str(directory / MODEL_FILE), device=str(device))
        trainer.optimizer.load_state_dict(torch.load(directory / OPTIMIZER_FILE, map_location=device,
                                                     weights_only=True))
    if trainer.scheduler is not None and state["scheduler"] is not None:
        trainer.scheduler.load_state_dict(state["scheduler"])
    torch_rngs = load_file(str(directory / _rng_file(rank)))
    torch.set_rng_state(torch_rngs["cpu"])
    cuda = [torch_rngs[k] for k in sorted(torch_rngs) if k.startswith("cuda")]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    restore_rngs(trainer, state["rngs"][rank])
    for task_index, task in enumerate(trainer.tasks):
        added = directory / _added_file(rank, task_index)
        if added.is_file():
            task.add_episodes(load_episodes(added))
    trainer.step = state["step"]
    trainer.train_seconds = state["train_seconds"]
    trainer.dagger_rounds_done = state["dagger_rounds_done"]
    trainer.last_eval_seconds = state["last_eval_seconds"]
    trainer.last_state_seconds = state["last_state_seconds"]
    trainer.history = state["history"]
    # older states lack it: the main process's history (saved whole, read by every process) says the same
    trainer.last_eval_step = state.get("last_eval_step", max((e["step"] for e in trainer.history if "eval" in e),
                                                              default=-1))
