"""The Task protocol declares what the trainer calls, and the one registry of task kinds serves specs and runs."""

import inspect

import pytest

from gato.tasks.registry import TASK_TYPES, task_class
from gato.tasks.task import CollectsCorrections, Task

REQUIRED = ("sample_batch", "evaluate", "evaluate_part", "summarize", "spec")


def test_the_protocol_names_every_method_the_trainer_calls():
    for method in REQUIRED:
        assert callable(getattr(Task, method, None)), method
    assert callable(getattr(CollectsCorrections, "collect_corrections", None))


@pytest.mark.parametrize("kind", sorted(TASK_TYPES))
def test_every_registered_kind_implements_the_protocol(kind):
    cls = task_class(kind)
    for method in REQUIRED:
        assert callable(getattr(cls, method, None)), f"{cls.__name__} lacks {method}"
    assert {"part", "parts"} <= set(inspect.signature(cls.evaluate_part).parameters)
    assert callable(getattr(cls, "from_spec", None)), f"{cls.__name__} cannot be rebuilt from its spec"
    # corrections are the control task's alone: the trainer skips the others
    assert hasattr(cls, "collect_corrections") == (kind == "control")


def test_an_unknown_kind_is_named_with_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown task type 'nope'.*control"):
        task_class("nope")
