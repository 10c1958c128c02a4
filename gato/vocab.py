"""The shared token vocabulary: one id space for text, discrete values and continuous bins.

Layout (ids are contiguous, in this order)::

    [0, text)                      text tokens (the tokenizer's ids, its pad id included)
    [discrete_offset, +discrete)   discrete values 0..discrete_tokens-1
    [continuous_offset, +cont.)    bins of continuous values in [-1, 1]
    [task_offset, +task_tokens)    task ids: in multi-task training each timestep starts with its task's token
                                   (64 by default, as every checkpoint before PolicyConfig.task_tokens;
                                   ``gato train`` reserves one per control dataset when a run has more)
    separator                      Gato's '|' between a timestep's observation and its action
    pad                            fills a sequence after its last real token

Image patches take a position in the sequence too, but are embedded from pixels, so their id
there is ``pad`` and never looked up.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gato.text_tokenizer import load_tokenizer


@dataclass(frozen=True)
class Vocab:
    """Token id layout plus the continuous-value transform (mu-law with ``mu`` and ``M``)."""

    tokenizer_name: str | None = None
    discrete_tokens: int = 1024
    continuous_tokens: int = 1024
    mu: float = 100.0
    M: float = 256.0
    task_tokens: int = 64
    tokenizer: object = field(default=None, compare=False, repr=False)

    def __post_init__(self):
        if self.tokenizer is None:
            object.__setattr__(self, "tokenizer", load_tokenizer(self.tokenizer_name))
        for name in ("discrete_tokens", "continuous_tokens"):
            if getattr(self, name) < 2:
                raise ValueError(f"{name} must be at least 2, got {getattr(self, name)}")
        if isinstance(self.task_tokens, bool) or not isinstance(self.task_tokens, int) or self.task_tokens < 1:
            raise ValueError(f"task_tokens must be a positive int (task ids reserved), got {self.task_tokens!r}")

    @property
    def text_tokens(self) -> int:
        """Size of the text range (the tokenizer's vocabulary)."""
        return self.tokenizer.vocab_size

    @property
    def discrete_offset(self) -> int:
        """First id of the discrete range."""
        return self.text_tokens

    @property
    def continuous_offset(self) -> int:
        """First id of the continuous range."""
        return self.text_tokens + self.discrete_tokens

    @property
    def task_offset(self) -> int:
        """First id of the task-id range."""
        return self.continuous_offset + self.continuous_tokens

    def task(self, task_id: int) -> int:
        """The token of task ``task_id``."""
        if not 0 <= task_id < self.task_tokens:
            raise ValueError(f"task id {task_id} is outside the vocabulary's {self.task_tokens} task tokens; a "
                             f"model for more tasks needs PolicyConfig(task_tokens={task_id + 1}) or more")
        return self.task_offset + task_id

    @property
    def separator(self) -> int:
        """Id of the separator placed before each action."""
        return self.task_offset + self.task_tokens

    @property
    def pad(self) -> int:
        """Id that fills sequences (and patch positions); never a training target."""
        return self.separator + 1

    @property
    def size(self) -> int:
        """Number of ids in the whole vocabulary (the model's output width)."""
        return self.pad + 1
