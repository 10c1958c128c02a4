"""Rebuild tasks from their JSON specs, as a checkpoint saves them (``tasks.json``)."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

from gato.tasks.task import TASKS_FILE

TASK_TYPES = {"control": "gato.tasks.control_task:ControlTask", "text": "gato.tasks.text_task:TextTask",
              "caption": "gato.tasks.caption_task:CaptionTask", "vqa": "gato.tasks.vqa_task:VQATask"}
"""Spec "type" -> "module:class" of a task class with a ``from_spec(spec, vocab=None)`` constructor (imported
when a spec of that type is read). New task kinds register here."""


def build_task(spec: dict, vocab=None):
    """The task described by ``spec`` (its "type" selects the class), its data encoded for
    ``vocab`` (a policy's ``policy.vocab``; None: the default vocabulary)."""
    kind = spec.get("type")
    if kind not in TASK_TYPES:
        raise ValueError(f"unknown task type {kind!r} in a task spec; known: {sorted(TASK_TYPES)}")
    module, name = TASK_TYPES[kind].split(":")
    return getattr(importlib.import_module(module), name).from_spec(spec, vocab=vocab)


def task_specs(checkpoint) -> list[dict]:
    """The task specs a checkpoint directory saved (its ``tasks.json``)."""
    path = Path(checkpoint) / TASKS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: this checkpoint does not say which tasks it was trained on "
                                "(`gato train` and Trainer.save write it)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e}); the checkpoint is damaged") from None


def load_tasks(checkpoint, vocab=None, names=None) -> list:
    """The tasks a checkpoint was trained on (or those of them named in ``names``), their data
    encoded for ``vocab`` (the checkpoint's policy's ``policy.vocab``). Their datasets must be local."""
    specs = task_specs(checkpoint)
    known = [spec.get("env_name") or spec.get("name", "?") for spec in specs]
    unknown = sorted(set(names or []) - set(known))
    if unknown:
        raise ValueError(f"no task named {' '.join(unknown)} in this checkpoint; its tasks: {' '.join(known)}")
    return [build_task(spec, vocab) for spec, name in zip(specs, known) if not names or name in names]
