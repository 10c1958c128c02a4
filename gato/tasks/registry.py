"""Rebuild tasks from their JSON specs (as saved next to a checkpoint)."""

from __future__ import annotations

from gato.tasks.control_task import ControlTask

TASK_TYPES = {"control": ControlTask}
"""Spec "type" -> task class with a ``from_spec(spec, vocab=None)`` constructor. New task kinds register here."""


def build_task(spec: dict, vocab=None):
    """The task described by ``spec`` (its "type" selects the class), its data encoded for
    ``vocab`` (a policy's ``policy.vocab``; None: the default vocabulary)."""
    kind = spec.get("type")
    if kind not in TASK_TYPES:
        raise ValueError(f"unknown task type {kind!r} in a task spec; known: {sorted(TASK_TYPES)}")
    return TASK_TYPES[kind].from_spec(spec, vocab=vocab)
