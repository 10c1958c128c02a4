"""Seed blocks: which environment seeds each use of an environment plays.

An episode is fixed by its env seed, so a policy scored on seeds it was trained on is scored on
episodes it has seen. Every use below owns one half-open block of seeds, and the blocks do not
overlap, so data, evaluation and DAgger corrections never share an episode by construction. All
seeds stay below 2**31 (what every seeded library here accepts).
"""

from __future__ import annotations

from dataclasses import dataclass


class SeedBlockError(ValueError):
    """A request for seeds that would leave their block (and so meet another use's episodes)."""


@dataclass(frozen=True)
class SeedBlock:
    """The seeds ``[start, stop)`` reserved for one use, and why it needs them."""

    name: str
    start: int
    stop: int
    why: str

    def __len__(self) -> int:
        return self.stop - self.start

    def __contains__(self, seed: int) -> bool:
        return self.start <= seed < self.stop

    def take(self, n: int, first: int | None = None) -> range:
        """The ``n`` seeds ``first, first + 1, ...`` (``first``: the block's start); raises
        :class:`SeedBlockError` if any of them falls outside the block."""
        first = self.start if first is None else int(first)
        if n < 0 or first not in self or first + n > self.stop:
            raise SeedBlockError(
                f"{n} {self.name} seeds from {first:,} leave the {self.name} block [{self.start:,}, {self.stop:,}), "
                f"which holds {len(self):,} seeds ({self.why}); ask for fewer episodes, or start inside the block"
            )
        return range(first, first + n)


DATA = SeedBlock("data", 0, 1_000_000, "the expert episodes written to datasets: `gato data --seed S` "
                 "(default 0) plays S, S + 1, ...")
EVALUATION = SeedBlock("evaluation", 1_000_000, 2_000_000, "the episodes a policy is scored on, episode i "
                       "with seed start + i, unseen in any training data")
CORRECTIONS = SeedBlock("corrections", 2_000_000, 1_000_000_000, "the policy's own rollouts that an expert "
                        "labels for training (DAgger): one slice of CORRECTION_ROUND_SEEDS per round and process")
REFERENCE = SeedBlock("reference", 1_000_000_000, 2_000_000_000, "the random and clean-expert episodes that "
                      "measure a dataset's reference returns: data seed + start + j")
BLOCKS = (DATA, EVALUATION, CORRECTIONS, REFERENCE)
"""Every block, in seed order."""

STARTS = (EVALUATION.name, DATA.name)
"""Where evaluation episodes start, named by the block of their seeds: ``"evaluation"`` (the default), seeds no
dataset was made from, so every start is unseen (for Meta-World, goals and object places the data never showed);
``"data"``, the seeds of the dataset's own episodes, starts the model trained on: how Meta-World's MT10/MT50 score a
policy (on the 50 goals it trained on), and, beside the default, how much of a score is generalisation to new
starts."""

CORRECTION_ROUND_SEEDS = 100_000
"""Seeds of one DAgger round on one process."""


def correction_seeds(round_index: int, n: int) -> range:
    """The first ``n`` seeds of DAgger round ``round_index``'s own slice of :data:`CORRECTIONS`.

    ``round_index`` numbers rounds across processes (round * processes + process), so no two
    rounds or processes replay an episode. Raises :class:`SeedBlockError` when the round's
    slice cannot hold ``n`` seeds or lies past the block's end.
    """
    rounds = len(CORRECTIONS) // CORRECTION_ROUND_SEEDS
    if not 0 <= round_index < rounds:
        raise SeedBlockError(f"DAgger round index {round_index} (round * processes + process) must be in "
                             f"[0, {rounds}): the corrections block holds {rounds} rounds of "
                             f"{CORRECTION_ROUND_SEEDS:,} seeds; run fewer rounds or processes")
    if not 0 <= n <= CORRECTION_ROUND_SEEDS:
        raise SeedBlockError(f"a DAgger round plays at most {CORRECTION_ROUND_SEEDS:,} seeds, not {n:,}; "
                             "ask for fewer --dagger_episodes")
    return CORRECTIONS.take(n, CORRECTIONS.start + round_index * CORRECTION_ROUND_SEEDS)
