"""The Task protocol: all that the trainer and the evaluation command know about a task."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from gato.batch import Batch
from gato.vocab import Vocab


@runtime_checkable
class Task(Protocol):
    """A task owns its data and its evaluation: all that the trainer and ``gato eval`` call.

    ``name`` identifies it in logs and tables; ``sample_batch`` draws training streams of at
    most ``context_len`` tokens in the policy's vocabulary ``vocab`` (a task encoded for
    another one raises rather than re-encoding behind the caller's back); ``evaluate`` runs the
    policy and returns metrics; on several processes each plays its share with ``evaluate_part``
    and the gathered records become the metrics by ``summarize`` (so ``evaluate`` is
    ``summarize(evaluate_part(..., 0, 1))``); ``spec`` is a JSON-able description from which
    ``gato eval`` rebuilds the task (its ``"type"`` names the class in ``gato.tasks.registry``).
    A task may also collect corrections (:class:`CollectsCorrections`).
    """

    name: str

    def sample_batch(self, batch_size: int, vocab: Vocab, context_len: int, rng: np.random.Generator) -> Batch:
        """A batch of ``batch_size`` streams padded to ``context_len``."""
        ...

    def evaluate(self, model, n_iterations: int, **kwargs) -> dict:
        """Run ``model`` and return metrics (floats) by name."""
        ...

    def evaluate_part(self, model, n_iterations: int, part: int, parts: int, **kwargs) -> list:
        """Process ``part`` of ``parts``' share of an ``evaluate`` of ``n_iterations``: JSON-able records."""
        ...

    def summarize(self, records: list) -> dict:
        """The metrics of every process's ``evaluate_part`` records, gathered."""
        ...

    def spec(self) -> dict:
        """JSON-able description that rebuilds this task (see gato.tasks.registry)."""
        ...


@runtime_checkable
class CollectsCorrections(Protocol):
    """The optional capability of a task whose data can grow by DAgger (``ControlTask``; see
    ``gato.tasks.corrections``): the trainer calls ``collect_corrections`` when ``--dagger_rounds`` asks for it,
    and a training state saves ``added_episodes`` (what the rounds added, per process)."""

    added_episodes: object

    def collect_corrections(self, policy, n_episodes: int, round_index: int = 0) -> dict | None:
        """Expert labels on ``n_episodes`` of the policy's own episodes join the data; counts, or None when
        the data's expert cannot label states."""
        ...
