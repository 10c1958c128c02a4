"""Seed blocks: data, evaluation, DAgger corrections and reference episodes never share a seed."""

from __future__ import annotations

import itertools

import pytest

from gato import seeds


def test_blocks_are_pairwise_disjoint_and_fit_every_seeded_library():
    for a, b in itertools.combinations(seeds.BLOCKS, 2):
        assert a.stop <= b.start or b.stop <= a.start, (a.name, b.name)
    assert seeds.BLOCKS == tuple(sorted(seeds.BLOCKS, key=lambda block: block.start))
    assert seeds.DATA.start == 0 and seeds.EVALUATION.start == 1_000_000  # the seeds datasets and scores use
    assert seeds.REFERENCE.start == 1_000_000_000  # data seed + 1,000,000,000 + j, as the recipes and BabyAI play
    assert all(0 <= block.start < block.stop <= 2**31 - 1 for block in seeds.BLOCKS)


@pytest.mark.parametrize("processes", [1, 2, 8])
def test_every_round_and_process_within_limits_stays_in_the_correction_block(processes):
    rounds = len(seeds.CORRECTIONS) // seeds.CORRECTION_ROUND_SEEDS // processes
    played = []
    for r in (0, 1, 4, 5, rounds - 1):  # round 5 (3 on two processes) once reached the evaluation seeds
        for p in range(processes):
            block = seeds.correction_seeds(r * processes + p, seeds.CORRECTION_ROUND_SEEDS)
            assert block.start in seeds.CORRECTIONS and block.stop <= seeds.CORRECTIONS.stop
            played.append(block)
    played.sort(key=lambda block: block.start)
    assert all(a.stop <= b.start for a, b in zip(played, played[1:]))  # no two rounds or processes share a seed


def test_correction_seeds_past_their_block_are_refused():
    last = len(seeds.CORRECTIONS) // seeds.CORRECTION_ROUND_SEEDS - 1
    assert seeds.correction_seeds(last, 10).stop <= seeds.CORRECTIONS.stop
    with pytest.raises(seeds.SeedBlockError, match=rf"round index {last + 1} .* run fewer rounds or processes"):
        seeds.correction_seeds(last + 1, 10)
    with pytest.raises(seeds.SeedBlockError, match="round index -1"):
        seeds.correction_seeds(-1, 10)
    with pytest.raises(seeds.SeedBlockError, match="fewer --dagger_episodes"):
        seeds.correction_seeds(0, seeds.CORRECTION_ROUND_SEEDS + 1)


def test_a_block_gives_only_its_own_seeds():
    block = seeds.EVALUATION
    assert block.take(3) == range(1_000_000, 1_000_003)
    assert block.take(2, first=block.stop - 2) == range(block.stop - 2, block.stop)
    with pytest.raises(seeds.SeedBlockError, match=r"evaluation block \[1,000,000, 2,000,000\)"):
        block.take(len(block) + 1)
    with pytest.raises(seeds.SeedBlockError):
        block.take(1, first=0)  # a data seed
    assert isinstance(seeds.SeedBlockError("x"), ValueError)  # the command line prints it in one line


def test_evaluation_refuses_more_episodes_than_its_block_holds(cartpole_dataset, tiny_policy):
    from gato.tasks.control_task import ControlTask

    policy = tiny_policy(context_len=64)
    task = ControlTask("cartpole", None, cartpole_dataset, 64, vocab=policy.vocab)
    with pytest.raises(seeds.SeedBlockError, match="evaluation"):
        task.evaluate(policy, len(seeds.EVALUATION) + 1)
    with pytest.raises(seeds.SeedBlockError, match="evaluation"):
        task.evaluate(policy, 2, seed=seeds.CORRECTIONS.start)


def test_generation_refuses_data_seeds_that_reach_the_evaluation_block():
    from gato.data.recipes import generate

    with pytest.raises(seeds.SeedBlockError, match="data block"):
        generate("cartpole", 5, seed=seeds.EVALUATION.start - 3, progress=False)
