"""TextTask (language modelling beside control) and the n-gram baselines of gato.evaluation.ngram.

Streams: windows of the training stream only, every position a target, no patches, and a batch
that joins a control batch. Evaluation: a random tiny policy is near-uniform over the text ids,
its parts add up to the whole, its mode is restored; the baselines match a hand computation and
score the same tokens. A few dozen real training steps lower held-out perplexity.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import tiny_vocab

from gato.batch import Batch
from gato.codec import VocabMismatchError
from gato.evaluation.ngram import NgramBaselines, ngram_perplexities
from gato.tasks.text_task import TextTask, TextTaskError, token_stream
from gato.vocab import Vocab

COLOURS, THINGS = ("red", "green", "blue", "yellow"), ("ball", "box", "key", "door")


def sentences(seed: int, n: int) -> list[str]:
    """Documents of a tiny grammar: structured text where the next word is mostly predictable."""
    rng = np.random.default_rng(seed)
    return [" ".join(f"go to the {rng.choice(COLOURS)} {rng.choice(THINGS)} and pick up the {rng.choice(THINGS)}."
                     for _ in range(rng.integers(1, 4))) for _ in range(n)]


@pytest.fixture(scope="module")
def task():
    return TextTask("grammar", sentences(0, 60), sentences(1, 12), context_len=32, vocab=tiny_vocab())


# -- the n-gram baselines ----------------------------------------------------------------


def test_ngram_numbers_match_a_hand_computation():
    model = NgramBaselines([0, 1, 0, 1, 2], vocab_size=4, lam=0.5)
    # add-one unigram: counts 2, 2, 1, 0 of N=5 over V=4 -> (c + 1) / 9
    assert np.exp(-model.unigram_nll([0, 1, 2, 3])) == pytest.approx([3 / 9, 3 / 9, 2 / 9, 1 / 9])
    # p(1|0) = .5 * 2/2 + .5 * 3/9; p(2|1) = .5 * 1/2 + .5 * 2/9; context 3 never seen: the unigram
    assert np.exp(-model.bigram_nll([0, 1, 3], [1, 2, 2])) == pytest.approx([2 / 3, 13 / 36, 2 / 9])
    assert np.exp(-model.bigram_nll([0], [1], lam=0.0)) == pytest.approx([3 / 9])


def test_ngram_perplexities_score_heldout_tokens_after_the_first():
    train, heldout = [0, 1, 0, 1, 2, 0, 1, 0, 1, 2], [0, 1, 2]
    model = NgramBaselines(train, 4)
    result = ngram_perplexities(train, heldout, 4)
    assert result["unigram_perplexity"] == pytest.approx(math.sqrt(14 / 5 * 14 / 3))  # counts 4, 4, 2, 0: (c + 1) / 14
    by_hand = np.exp(model.bigram_nll([0, 1], [1, 2]).mean())
    assert result["bigram_perplexity"] == pytest.approx(by_hand)


def test_interpolation_weight_is_chosen_on_training_ids_only():
    rng = np.random.default_rng(0)
    structured = np.tile([3, 1, 4, 1, 5, 9, 2, 6], 200)
    assert NgramBaselines(structured, 10).lam > 0.9  # the bigram is (nearly) always right
    noise = rng.integers(0, 50, 3000)
    assert NgramBaselines(noise, 50).lam < 0.5  # pair counts of iid noise overfit
    # the weight is the one fitted on the training ids, whatever the held-out ids are
    for heldout in (noise[:20], structured[:20]):
        by_hand = np.exp(NgramBaselines(noise, 50).bigram_nll(heldout[:-1], heldout[1:]).mean())
        assert ngram_perplexities(noise, heldout, 50)["bigram_perplexity"] == pytest.approx(by_hand)


def test_bigram_beats_unigram_on_structured_text(task):
    result = ngram_perplexities(task.train_ids, task.heldout_ids, task.vocab.text_tokens)
    assert result["bigram_perplexity"] < 0.5 * result["unigram_perplexity"]


def test_ngram_refuses_ids_outside_the_vocabulary():
    with pytest.raises(ValueError, match="vocab_size"):
        ngram_perplexities([0, 1, 7], [0, 1], 4)


# -- streams ------------------------------------------------------------------------------


def test_documents_are_joined_with_eos_between_them():
    vocab = tiny_vocab()
    tok = vocab.tokenizer
    ids = token_stream(["go to", "the ball"], tok)
    assert ids.tolist() == tok.encode("go to") + [tok.eos_id] + tok.encode("the ball")


def test_every_position_is_a_target_and_there_are_no_patches(task):
    batch = task.sample_batch(8, task.vocab, 32, np.random.default_rng(0))
    assert batch.tokens.shape == (8, 32) and batch.targets.all() and not batch.patch_mask.any()
    assert (batch.in_step_pos == np.arange(32)).all()
    assert batch.patches.shape == (0, 1, 1, 1) and batch.patches.dtype == np.float32
    assert batch.patch_rowcol.shape == (0, 2) and batch.segment_ids is None and batch.inputs is None
    assert (batch.tokens < task.vocab.text_tokens).all()


def test_windows_come_from_the_training_stream_only(task):
    batch = task.sample_batch(64, task.vocab, 32, np.random.default_rng(1))
    train = np.lib.stride_tricks.sliding_window_view(task.train_ids, 32)
    heldout = np.lib.stride_tricks.sliding_window_view(task.heldout_ids, 32)
    for row in batch.tokens:
        assert (train == row).all(1).any()
        assert not (heldout == row).all(1).any()
    starts = {int(np.flatnonzero((train == row).all(1))[0]) for row in batch.tokens}
    assert len(starts) > 32  # random offsets, not a few fixed ones


def test_a_stream_shorter_than_the_context_is_padded_and_the_padding_is_no_target():
    vocab = tiny_vocab()
    task = TextTask("short", ["go to the ball"], ["the box"], context_len=32, vocab=vocab)
    batch = task.sample_batch(2, vocab, None, np.random.default_rng(0))
    n = len(task.train_ids)
    assert n < 32 and (batch.tokens[:, :n] == task.train_ids).all() and (batch.tokens[:, n:] == vocab.pad).all()
    assert batch.targets[:, :n].all() and not batch.targets[:, n:].any()


def test_a_batch_joins_a_control_batch_and_trains(task, cartpole_task, tiny_policy):
    rng = np.random.default_rng(0)
    vocab = tiny_vocab()
    text = task.sample_batch(3, vocab, 32, rng)
    control = cartpole_task.sample_batch(2, vocab, 32, rng)
    policy = tiny_policy()
    joined = Batch.concat([control, text], policy.config.image_channel_pad)
    assert joined.tokens.shape == (5, 32) and joined.targets[2:].all()
    _, loss = policy(joined.to_torch())
    assert torch.isfinite(loss)


def test_a_task_built_unencoded_says_so_until_encode_for():
    vocab = tiny_vocab()
    task = TextTask("grammar", sentences(0, 5), sentences(1, 2), context_len=32, encode=False)
    assert task.vocab is None and not hasattr(task, "train_ids")
    with pytest.raises(VocabMismatchError, match="not encoded yet.*encode_for"):
        task.sample_batch(2, vocab, 32, np.random.default_rng(0))
    task.encode_for(vocab)
    assert task.sample_batch(2, vocab, 32, np.random.default_rng(0)).tokens.shape == (2, 32)


def test_another_vocabulary_raises_until_the_task_is_encoded_for_it(tiny_policy):
    vocab = tiny_vocab()
    task = TextTask("grammar", sentences(0, 5), sentences(1, 2), context_len=32, vocab=vocab)
    other = Vocab(discrete_tokens=32, continuous_tokens=32)
    with pytest.raises(VocabMismatchError, match="encode_for"):
        task.sample_batch(2, other, 32, np.random.default_rng(0))
    with pytest.raises(VocabMismatchError):
        task.evaluate(tiny_policy(discrete_tokens=32, continuous_tokens=32), 1)
    ids = task.train_ids
    task.encode_for(other)
    assert task.train_ids is ids  # same tokenizer: the text ids stay
    assert task.sample_batch(2, other, 32, np.random.default_rng(0)).tokens.shape == (2, 32)


def test_unusable_tasks_are_refused_with_the_fix():
    with pytest.raises(TextTaskError, match="no held-out text"):
        TextTask("empty", ["go to the ball"], [], context_len=32, vocab=tiny_vocab())
    with pytest.raises(TextTaskError, match="context_len >= 2"):
        TextTask("tiny", ["go"], ["to"], context_len=1, vocab=tiny_vocab())


# -- evaluation ---------------------------------------------------------------------------


def test_a_random_policy_is_near_uniform_over_the_text_ids(task, tiny_policy):
    metrics = task.evaluate(tiny_policy(), 100, deterministic=True, promptless_eval=False, n_envs=4)
    text_tokens = task.vocab.text_tokens
    assert math.isfinite(metrics["perplexity"]) and 0.8 * text_tokens < metrics["perplexity"] < 1.25 * text_tokens
    assert metrics["loss"] == pytest.approx(math.log(metrics["perplexity"]))
    windows = task.heldout_windows(32)
    assert metrics["windows"] == len(windows) and metrics["tokens"] == sum(b - a - 1 for a, b in windows)
    assert metrics["bigram_perplexity"] < metrics["unigram_perplexity"] < metrics["perplexity"]
    assert 0 < metrics["bigram_bits_per_byte"] < metrics["bits_per_byte"]


def test_baselines_score_exactly_the_tokens_the_model_predicts(task, tiny_policy):
    metrics = task.evaluate(tiny_policy(), 3)
    base = NgramBaselines(task.train_ids, task.vocab.text_tokens)
    windows = [task.heldout_ids[a:b] for a, b in task.heldout_windows(32)[:3]]
    unigram = np.concatenate([base.unigram_nll(w[1:]) for w in windows])
    bigram = np.concatenate([base.bigram_nll(w[:-1], w[1:]) for w in windows])
    assert metrics["tokens"] == len(unigram) == 93
    assert metrics["unigram_perplexity"] == pytest.approx(np.exp(unigram.mean()))
    assert metrics["bigram_perplexity"] == pytest.approx(np.exp(bigram.mean()))


def test_parts_add_up_to_the_whole_and_the_mode_is_restored(task, tiny_policy):
    model = tiny_policy(dropout=0.5).train()
    whole = task.evaluate(model, 5)
    assert model.training  # restored; and dropout was off inside, so the parts agree with the whole
    parts = task.evaluate_part(model, 5, 0, 2) + task.evaluate_part(model, 5, 1, 2)
    assert sorted(r["window"] for r in parts) == [0, 1, 2, 3, 4]
    assert task.summarize(parts) == pytest.approx(whole)


def test_eval_windows_overrides_n_iterations(tiny_policy):
    task = TextTask("grammar", sentences(0, 5), sentences(1, 12), context_len=32, vocab=tiny_vocab(), eval_windows=2)
    assert task.evaluate(tiny_policy(), 50)["windows"] == 2


def test_spec_round_trip_through_a_saved_corpus(tmp_path, no_network):
    import datasets

    path = tmp_path / "grammar"
    datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": sentences(0, 30)}),
                          "test": datasets.Dataset.from_dict({"text": sentences(1, 5)})}).save_to_disk(str(path))
    task = TextTask.from_source("grammar", path, 32, vocab=tiny_vocab(), eval_windows=4)
    spec = task.spec()
    assert spec == {"type": "text", "name": "grammar", "source": str(path), "context_len": 32, "eval_windows": 4,
                    "eval_batch_size": 16}
    again = TextTask.from_spec(spec, vocab=tiny_vocab())
    assert again.spec() == spec and (again.train_ids == task.train_ids).all()
    assert again.training_texts() == sentences(0, 30)


def test_a_spec_of_in_memory_text_cannot_rebuild_it(task):
    assert task.spec()["source"] is None
    with pytest.raises(TextTaskError, match="from_source"):
        TextTask.from_spec(task.spec())


@pytest.mark.slow
def test_a_few_dozen_training_steps_lower_heldout_perplexity(task, tiny_policy):
    model = tiny_policy().train()
    before = task.evaluate(model, 100)["perplexity"]
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    rng = np.random.default_rng(0)
    for _ in range(20):
        _, loss = model(task.sample_batch(16, task.vocab, 32, rng).to_torch())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = task.evaluate(model, 100)
    assert after["perplexity"] < 0.1 * before  # ~600 (uniform over the text ids) -> ~25
