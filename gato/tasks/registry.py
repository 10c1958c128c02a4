"""Rebuild tasks from their JSON specs, as a checkpoint saves them (``tasks.json``), and an agent acting in one."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

from gato.agent import Agent
from gato.policy.gato_policy import TASKS_FILE, GatoPolicy

TASK_TYPES = {"control": "gato.tasks.control_task:ControlTask", "text": "gato.tasks.text_task:TextTask",
              "caption": "gato.tasks.caption_task:CaptionTask", "vqa": "gato.tasks.vqa_task:VQATask"}
"""Spec "type" -> "module:class" of a task class with a ``from_spec(spec, vocab=None)`` constructor (imported
when a spec of that type is read or a run has that kind). The one registry of task kinds: new ones register
here."""


def task_class(kind: str):
    """The task class of ``kind`` (a spec's "type", or a kind of ``--*_datasets``: text, caption, vqa), imported
    now: the text and image tasks need the text extra only when a run has them."""
    if kind not in TASK_TYPES:
        raise ValueError(f"unknown task type {kind!r} in a task spec; known: {sorted(TASK_TYPES)}")
    module, name = TASK_TYPES[kind].split(":")
    return getattr(importlib.import_module(module), name)


class DatasetNeededError(FileNotFoundError):
    """A checkpoint saved before checkpoints carried their codecs, whose dataset is not local."""


def build_task(spec: dict, vocab=None, with_data: bool | None = None):
    """The task described by ``spec`` (its "type" selects the class), its data encoded for
    ``vocab`` (a policy's ``policy.vocab``; None: the default vocabulary). ``with_data`` (control tasks):
    see ``ControlTask.from_spec``; None: without data when the spec holds a saved codec."""
    kind = spec.get("type")
    cls = task_class(kind)
    if kind == "control":
        return cls.from_spec(spec, vocab=vocab, with_data=with_data)
    return cls.from_spec(spec, vocab=vocab)


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


def task_names(specs: list[dict]) -> list[str]:
    """Each spec's task name (a control task's ``env_name``, a language task's ``name``)."""
    return [spec.get("env_name") or spec.get("name", "?") for spec in specs]


def load_tasks(checkpoint, vocab=None, names=None, with_data: bool | None = None) -> list:
    """The tasks a checkpoint was trained on (or those of them named in ``names``), encoded for ``vocab``
    (the checkpoint's policy's ``policy.vocab``). Control tasks saved with their codec act and evaluate
    with no dataset on disk (``with_data=True`` reads it anyway, e.g. to prompt); language tasks and
    control tasks of older checkpoints need their data local, and a missing dataset of the latter raises
    :class:`DatasetNeededError` naming it."""
    specs = task_specs(checkpoint)
    known = task_names(specs)
    unknown = sorted(set(names or []) - set(known))
    if unknown:
        raise ValueError(f"no task named {' '.join(unknown)} in this checkpoint; its tasks: {' '.join(known)}")
    return [_build_saved(checkpoint, spec, vocab, with_data) for spec, name in zip(specs, known)
            if not names or name in names]


def _build_saved(checkpoint, spec: dict, vocab, with_data: bool | None):
    """build_task, with the error that an old checkpoint's missing dataset deserves."""
    from gato.data.catalogue import remake_command
    from gato.data.episodes import DatasetNotFoundError

    try:
        return build_task(spec, vocab, with_data)
    except DatasetNotFoundError:
        if spec.get("type") != "control" or spec.get("codec") is not None:
            raise
        dataset = spec.get("dataset_id")
        raise DatasetNeededError(
            f"checkpoint {checkpoint} was saved before checkpoints carried their codecs, so its task "
            f"{spec.get('env_name')!r} still needs its dataset {dataset!r}, which is not local. Make it "
            f"with {remake_command(dataset)}, or point MINARI_DATASETS_PATH at the folder that holds it; "
            "a checkpoint saved by this version of neko-gato needs no dataset."
        ) from None


def load_agent(checkpoint, task: str | None = None, *, device="cpu", deterministic: bool = True,
               **options) -> Agent:
    """An :class:`Agent` of the policy saved in ``checkpoint`` acting in its control task named ``task``
    (None: its only one), with no dataset on disk: the task is rebuilt from the codec, env spec and reference
    returns the checkpoint saved (:func:`load_tasks`). ``agent.task.make_env()`` makes a fresh
    env; ``agent.task.evaluate(agent.policy, n)`` scores it. ``options``: the Agent's ``use_cache`` and
    ``generator``. A checkpoint saved before checkpoints carried their codecs still needs its dataset
    (``DatasetNeededError`` names it)."""
    specs = task_specs(checkpoint)
    control = [name for spec, name in zip(specs, task_names(specs)) if spec.get("type") == "control"]
    if task is None:
        if len(control) != 1:
            raise ValueError(f"checkpoint {checkpoint} has control tasks {' '.join(control) or '(none)'}; "
                             "name one with task=NAME (--task NAME)")
        task = control[0]
    elif task not in control:
        raise ValueError(f"no control task named {task!r} in checkpoint {checkpoint}; its control tasks: "
                         f"{' '.join(control) or '(none)'}")
    policy = GatoPolicy.from_pretrained(checkpoint, device=device)
    (loaded,) = load_tasks(checkpoint, policy.vocab, names=[task])
    return Agent(policy, loaded, deterministic=deterministic, **options)
