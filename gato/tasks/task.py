"""The Task protocol: all that the trainer and the evaluation command know about a task."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from gato.batch import Batch
from gato.vocab import Vocab


@runtime_checkable
class Task(Protocol):
    """A task owns its data and its evaluation.

    ``name`` identifies it in logs and tables; ``sample_batch`` draws training streams of at
    most ``context_len`` tokens in the policy's vocabulary ``vocab`` (a task encoded for
    another one raises rather than re-encoding behind the caller's back); ``evaluate`` runs the
    policy and returns metrics; ``spec`` is a JSON-able description from which ``gato eval``
    rebuilds the task. A task may also offer ``collect_corrections(model, n_episodes,
    round_index)`` (DAgger: expert labels on the policy's own rollouts, added to its data;
    ``ControlTask`` has it, see ``gato.tasks.corrections``), which the trainer calls when
    ``--dagger_rounds`` asks for it.
    """

    name: str

    def sample_batch(self, batch_size: int, vocab: Vocab, context_len: int, rng: np.random.Generator) -> Batch:
        """A batch of ``batch_size`` streams padded to ``context_len``."""
        ...

    def evaluate(self, model, n_iterations: int, **kwargs) -> dict:
        """Run ``model`` and return metrics (floats) by name."""
        ...

    def spec(self) -> dict:
        """JSON-able description that rebuilds this task (see gato.tasks.registry)."""
        ...
