"""The resumable state of a training run (``runs/NAME/state``), saved and loaded without pickle.

What ``Accelerator.save_state`` would save, in formats that cannot run code when loaded: the weights as
safetensors, the optimizer's state dict through ``torch.save`` read back with ``torch.load(weights_only=True)``
(tensors and numbers only), and everything else as JSON: the scheduler's state dict, the step, the training
seconds spent, the learning curve and every random generator (Python ``random``, NumPy's global one, the
trainer's own ``numpy.random.Generator``; torch's CPU and CUDA states go in a safetensors file). Accelerate's own
``save_state`` pickles the RNG states and its ``load_state`` reads them with ``weights_only=False`` (and skips
them silently when that fails), so it is not used; file names carry the process index as Accelerate's do.

The directory is written whole under a temporary name and swapped in with :func:`gato.atomic.replace_dir`, so a
kill at any instant leaves the previous state or the new one.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, load_model, save_file, save_model

from gato.atomic import replacing_dir, resolve_dir

STATE_DIR = "state"
STATE_FILE = "state.json"
MODEL_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.pt"
ARGS_FILE = "training_args.json"


class ResumeError(ValueError):
    """A run that cannot be resumed (no saved state, or a state this version cannot continue exactly)."""


def _rng_file(process_index: int) -> str:
    return f"rng_{process_index}.safetensors"


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


def save_state(trainer, args_dict: dict) -> Path:
    """Write ``trainer``'s resumable state to ``run_dir/state`` atomically; returns that directory."""
    target = trainer.run_dir / STATE_DIR
    with replacing_dir(target) as tmp:
        _write_state(trainer, args_dict, tmp)
    return target


def _write_state(trainer, args_dict: dict, tmp: Path) -> None:
    """The state's files, written into the directory ``tmp``."""
    save_model(trainer.policy, str(tmp / MODEL_FILE))
    torch.save(trainer.optimizer.state_dict(), tmp / OPTIMIZER_FILE)
    torch_rngs = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        torch_rngs.update({f"cuda{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    save_file(torch_rngs, str(tmp / _rng_file(trainer.accelerator.process_index)))
    state = {"step": trainer.step, "train_seconds": trainer.train_seconds,
             "dagger_rounds_done": trainer.dagger_rounds_done, "last_eval_seconds": trainer.last_eval_seconds,
             "last_state_seconds": trainer.train_seconds, "history": trainer.history,
             "scheduler": trainer.scheduler.state_dict() if trainer.scheduler is not None else None,
             "rngs": capture_rngs(trainer)}
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
    """Restore ``trainer`` (built from the saved arguments) to the state saved in ``path``."""
    directory = state_dir(path)
    state = json.loads((directory / STATE_FILE).read_text())
    if state["dagger_rounds_done"]:
        raise ResumeError(f"{path}: the run did {state['dagger_rounds_done']} DAgger round(s); resuming such a run "
                          "is not supported yet (the corrected episodes are not saved): start it again")
    device = trainer.accelerator.device
    load_model(trainer.policy, str(directory / MODEL_FILE), device=str(device))
    trainer.optimizer.load_state_dict(torch.load(directory / OPTIMIZER_FILE, map_location=device,
                                                 weights_only=True))
    if trainer.scheduler is not None and state["scheduler"] is not None:
        trainer.scheduler.load_state_dict(state["scheduler"])
    torch_rngs = load_file(str(directory / _rng_file(trainer.accelerator.process_index)))
    torch.set_rng_state(torch_rngs["cpu"])
    cuda = [torch_rngs[k] for k in sorted(torch_rngs) if k.startswith("cuda")]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    restore_rngs(trainer, state["rngs"])
    trainer.step = state["step"]
    trainer.train_seconds = state["train_seconds"]
    trainer.dagger_rounds_done = state["dagger_rounds_done"]
    trainer.last_eval_seconds = state["last_eval_seconds"]
    trainer.last_state_seconds = state["last_state_seconds"]
    trainer.history = state["history"]
