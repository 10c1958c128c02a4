"""CaptionTask and VQATask: exact loss masks, no answer leaking into the image, split evaluation, training."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from gato.batch import Batch
from gato.codec import VocabMismatchError
from gato.images import ImageSizeError
from gato.language import pack_examples
from gato.tasks.caption_task import (
    CaptionTask,
    shuffled_images,
    word_f1,
)
from gato.tasks.image_text import EmptyDatasetError, ExampleTooLongError, exact_match
from gato.tasks.vqa_task import VQATask
from gato.vocab import Vocab

COLOURS = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255), "yellow": (255, 255, 0),
           "purple": (128, 0, 160), "grey": (128, 128, 128)}


def square(rgb, size: int = 8) -> Image.Image:
    """A filled square of colour ``rgb`` in the middle of a black image."""
    pixels = np.zeros((size, size, 3), np.uint8)
    pixels[size // 4: 3 * size // 4, size // 4: 3 * size // 4] = rgb
    return Image.fromarray(pixels)


def caption_rows():
    return [{"image": square(rgb), "caption": f"a {name} square"} for name, rgb in COLOURS.items()]


def vqa_rows():
    rows = [{"image": square(rgb), "question": "what color is the shape?", "answer": name, "kind": "colour"}
            for name, rgb in COLOURS.items()]
    rows += [{"image": square(rgb), "question": "is there a shape?", "answer": "yes", "kind": "yes/no"}
             for rgb in COLOURS.values()]
    return rows


def test_caption_loss_mask_is_exactly_the_caption_and_eos(tiny_policy):
    policy = tiny_policy()
    vocab = policy.vocab
    task = CaptionTask("captions", [{"image": square(COLOURS["red"]), "caption": "red"}], caption_rows(), 64,
                       image_size=8, vocab=vocab)
    batch = task.sample_batch(2, vocab, 16, np.random.default_rng(0))
    red, eos, pad, sep = vocab.tokenizer.encode("red"), vocab.tokenizer.eos_id, vocab.pad, vocab.separator
    assert len(red) == 1  # one example: 4 patches, separator, "red", eos = 7 tokens; two fit a 16-token row
    example = [pad] * 4 + [sep] + red + [eos]
    assert batch.tokens.shape == (2, 16)
    assert batch.tokens[0].tolist() == example * 2 + [pad, pad]
    assert batch.targets[0].nonzero()[0].tolist() == [5, 6, 12, 13]
    assert batch.patch_mask[0].nonzero()[0].tolist() == [0, 1, 2, 3, 7, 8, 9, 10]
    assert batch.in_step_pos[0].tolist() == list(range(7)) * 2 + [0, 0]
    assert batch.segment_ids[0].tolist() == [0] * 7 + [1] * 7 + [2, 2]
    assert batch.patches.shape == (16, 3, 4, 4) and batch.patch_rowcol[:4].tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]]
    logits, loss = policy(batch.to_torch())
    assert logits.shape == (8, vocab.size) and torch.isfinite(loss)  # the model predicts the 8 target tokens


def test_vqa_loss_mask_is_exactly_the_answer_and_eos(tiny_policy):
    vocab = tiny_policy().vocab
    row = {"image": square(COLOURS["blue"]), "question": "what color?", "answer": "blue", "kind": "colour"}
    task = VQATask("vqa", [row], [row], 64, image_size=8, vocab=vocab)
    batch = task.sample_batch(1, vocab, 64, np.random.default_rng(0))
    q, a = vocab.tokenizer.encode("what color?"), vocab.tokenizer.encode("blue")
    example = [vocab.pad] * 4 + q + [vocab.separator] + a + [vocab.tokenizer.eos_id]
    n = len(example)
    assert batch.tokens[0, :n].tolist() == example
    first = 4 + len(q) + 1
    assert batch.targets[0, :n].nonzero()[0].tolist() == list(range(first, n))  # the answer and eos
    assert len(range(first, n)) == len(a) + 1


def test_mixed_with_a_control_batch(tiny_policy, cartpole_task):
    policy = tiny_policy()
    rng = np.random.default_rng(0)
    task = VQATask("vqa", vqa_rows(), vqa_rows(), 64, image_size=8, vocab=policy.vocab)
    batch = Batch.concat([task.sample_batch(3, policy.vocab, 64, rng),
                          cartpole_task.sample_batch(2, policy.vocab, 64, rng)], policy.config.image_channel_pad)
    assert batch.tokens.shape == (5, 64) and batch.segment_ids is not None
    assert batch.patches.shape[0] == batch.patch_mask.sum()
    logits, loss = policy(batch.to_torch())
    assert torch.isfinite(loss) and len(logits) == batch.targets[:, 1:].sum()
    loss.backward()


@pytest.mark.parametrize("pad", [0.0, -1.0])
def test_a_picture_reads_the_same_beside_a_grid_of_more_channels(tiny_policy, babyai_task, pad):
    """The trainer pads a picture's missing channels with the policy's ``image_channel_pad`` when it shares a
    batch with BabyAI's one-hot grids (which have more channels): its rows' outputs equal those of a batch of
    pictures alone."""
    from accelerate import Accelerator

    from gato.training.arguments import TrainingArgs
    from gato.training.trainer import Trainer, make_optimizer

    policy = tiny_policy(image_channel_pad=pad)
    vqa = VQATask("vqa", vqa_rows(), vqa_rows(), 128, image_size=8, vocab=policy.vocab)
    args = TrainingArgs(save_dir="unused", save_model=False)
    trainer = Trainer(model=policy, optimizer=make_optimizer(policy, args), scheduler=None,
                      accelerator=Accelerator(cpu=True), tasks=[vqa, babyai_task], exp_name="mix", args=args,
                      task_weights=[1, 1])
    trainer.rng = np.random.default_rng(3)
    mixed = trainer.sample_batch(6)
    rows = int(np.random.default_rng(3).multinomial(6, trainer.weights)[0])  # the VQA rows come first
    n = int(mixed.patch_mask[:rows].sum())
    assert 0 < rows < 6 and mixed.patches.shape[1] > 3
    assert (mixed.patches[:n, 3:] == pad).all()
    row_fields = {k: None if getattr(mixed, k) is None else getattr(mixed, k)[:rows]
                  for k in ("tokens", "in_step_pos", "patch_mask", "targets", "segment_ids", "inputs", "loss_weights")}
    alone = Batch(**row_fields, patches=mixed.patches[:n, :3], patch_rowcol=mixed.patch_rowcol[:n])
    with torch.no_grad():
        both = policy.hidden_states(mixed.to_torch())[:rows]
        torch.testing.assert_close(both, policy.hidden_states(alone.to_torch()))


def _hidden(policy, example) -> torch.Tensor:
    batch = pack_examples([[example]], len(example), policy.vocab.pad)
    with torch.no_grad():
        return policy.hidden_states(batch.to_torch())[0]


@pytest.mark.parametrize("kind", ["caption", "vqa"])
def test_answer_never_reaches_the_image(tiny_policy, kind):
    policy = tiny_policy()
    with torch.no_grad():  # a FiLM that really conditions (it starts as the identity)
        torch.nn.init.normal_(policy.embedding.patches.film[1].weight, 0.0, 1.0)
    vocab, eos = policy.vocab, policy.vocab.tokenizer.eos_id
    rows = vqa_rows() if kind == "vqa" else caption_rows()
    task = (VQATask if kind == "vqa" else CaptionTask)("t", rows, rows, 64, image_size=8, vocab=vocab)
    prompt = task.prompt(task.test, 0)
    sep = len(prompt) - 1
    a = _hidden(policy, prompt.answered(vocab.tokenizer.encode("red"), eos))
    b = _hidden(policy, prompt.answered(vocab.tokenizer.encode("green square please"), eos))
    torch.testing.assert_close(a[: sep + 1], b[: sep + 1], rtol=0, atol=1e-6)
    assert (a[sep + 1] - b[sep + 1]).abs().max() > 1e-3
    if kind == "vqa":  # the question, before the separator, does reach the patches
        other = task.prompt(task.test, 6).answered(vocab.tokenizer.encode("red"), eos)  # same image, other question
        assert (other.patches == prompt.patches).all()
        assert (_hidden(policy, other)[:4] - a[:4]).abs().max() > 1e-3


def test_split_evaluation_summarises_to_evaluate(tiny_policy):
    policy = tiny_policy()
    for task in (VQATask("vqa", vqa_rows(), vqa_rows(), 64, image_size=8, vocab=policy.vocab),
                 CaptionTask("cap", caption_rows(), caption_rows(), 64, image_size=8, vocab=policy.vocab)):
        whole = task.evaluate(policy, 5, deterministic=True, n_envs=3)
        parts = task.evaluate_part(policy, 5, 0, 2) + task.evaluate_part(policy, 5, 1, 2)
        assert sorted(r["index"] for r in parts) == [0, 1, 2, 3, 4]
        assert task.summarize(parts) == whole and whole["examples"] == 5
        assert all(isinstance(v, float) for v in whole.values())
    assert {"exact_match", "word_f1", "shuffled_exact_match", "shuffled_word_f1"} <= set(whole)


def test_vqa_baselines_and_metric_names(tiny_policy):
    policy = tiny_policy()
    task = VQATask("vqa", vqa_rows(), vqa_rows(), 64, image_size=8, vocab=policy.vocab)
    assert task.majority_answer == "yes"
    assert task.question_answers == {"what color is the shape?": "red", "is there a shape?": "yes"}
    metrics = task.evaluate(policy, 100)
    assert metrics["examples"] == 12
    assert metrics["majority_accuracy"] == 0.5 and metrics["majority_accuracy_colour_shape"] == 0.0
    assert metrics["question_only_accuracy"] == pytest.approx(7 / 12)
    assert metrics["question_only_accuracy_colour_shape"] == pytest.approx(1 / 6)
    assert {"accuracy", "accuracy_colour_shape", "accuracy_colour", "accuracy_yes_no"} <= set(metrics)
    assert VQATask("vqa", vqa_rows(), vqa_rows(), 64, image_size=8, vocab=policy.vocab,
                   eval_examples=3).evaluate(policy, 100)["examples"] == 3


def test_vocab_mismatch_spec_and_training_texts(tiny_policy):
    policy = tiny_policy()
    task = VQATask("vqa", vqa_rows(), vqa_rows(), 64, image_size=8)  # the default vocabulary
    with pytest.raises(VocabMismatchError, match="encode_for"):
        task.sample_batch(2, policy.vocab, 64)
    with pytest.raises(VocabMismatchError):
        task.evaluate(policy, 2)
    assert task.encode_for(policy.vocab) is task
    assert len(task.sample_batch(2, policy.vocab, 64)) == 2
    unencoded = VQATask("vqa", vqa_rows(), vqa_rows(), 64, image_size=8, encode=False)
    with pytest.raises(VocabMismatchError, match="not encoded yet"):
        unencoded.sample_batch(2, policy.vocab, 64)
    assert len(unencoded.encode_for(policy.vocab).sample_batch(2, policy.vocab, 64)) == 2
    assert task.spec() == {"type": "vqa", "name": "vqa", "source": None, "context_len": 64, "image_size": 8,
                           "patch_size": 4, "eval_examples": None}
    with pytest.raises(ValueError, match="from_source"):
        VQATask.from_spec(task.spec())
    assert task.training_texts()[:2] == ["what color is the shape?"] * 2 and "purple" in task.training_texts()
    with pytest.raises(ValueError, match="patch_size=8"):
        task.evaluate(tiny_policy(patch_size=8), 2)


def test_clear_errors(tiny_policy):
    vocab = tiny_policy().vocab
    with pytest.raises(ImageSizeError, match="not a multiple"):
        CaptionTask("c", caption_rows(), caption_rows(), 64, image_size=10, vocab=vocab)
    with pytest.raises(ExampleTooLongError, match=r"example 0 of the train split .* takes 75 tokens .*context_len 64"):
        CaptionTask("c", caption_rows(), caption_rows(), 64, image_size=32, vocab=vocab)  # 64 patches + text
    with pytest.raises(EmptyDatasetError, match="test split"):
        CaptionTask("c", caption_rows(), [], 64, image_size=8, vocab=vocab)
    with pytest.raises(ValueError, match="lacks the column"):
        VQATask("v", caption_rows(), caption_rows(), 64, image_size=8, vocab=vocab)


@pytest.mark.slow
def test_datasets_input_and_shared_images(tiny_policy):
    import datasets

    vocab = tiny_policy().vocab
    rows = vqa_rows()
    data = datasets.Dataset.from_dict({k: [r[k] for r in rows] for k in ("image", "question", "answer", "kind")})
    task = VQATask("v", data, data, 64, image_size=8, vocab=vocab)
    assert len(task.train) == 12 and len(task.train.pixels) == 6  # each picture kept once
    np.testing.assert_array_equal(task.train.pixels[task.train.image_of[7]], np.asarray(square(COLOURS["green"])))


def test_metrics_helpers():
    assert word_f1("A red square.", "the red square") == 1.0
    assert word_f1("red", "red square") == pytest.approx(2 / 3)
    assert word_f1("", "") == 1.0 and word_f1("blue", "") == 0.0 and word_f1("blue", "red") == 0.0
    assert exact_match(" Red ", "red") == 1.0 and exact_match("red.", "red") == 0.0
    for n in range(2, 9):
        other = shuffled_images(n)
        assert sorted(other.tolist()) == list(range(n)) and (other != np.arange(n)).all()


def _train(policy, task, steps: int = 300):
    """AdamW on ``task``'s batches, one thread (a tiny model: threads only contend, 8 s instead of 80 on a busy
    machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        optimizer = torch.optim.AdamW(policy.parameters(), lr=3e-3)
        rng = np.random.default_rng(0)
        for _ in range(steps):
            _, loss = policy(task.sample_batch(8, policy.vocab, 64, rng).to_torch())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        return task.evaluate(policy, 12)
    finally:
        torch.set_num_threads(threads)


@pytest.mark.slow
def test_vqa_training_reads_the_image(tiny_policy):
    policy = tiny_policy().train()
    metrics = _train(policy, VQATask("vqa", vqa_rows(), vqa_rows(), 64, image_size=8, vocab=policy.vocab))
    assert metrics["accuracy"] >= 0.9, metrics
    assert metrics["accuracy_colour_shape"] >= metrics["question_only_accuracy_colour_shape"] + 0.6, metrics
    assert metrics["accuracy"] > metrics["majority_accuracy"] + 0.3


@pytest.mark.slow
def test_caption_training_reads_the_image(tiny_policy):
    policy = tiny_policy().train()
    metrics = _train(policy, CaptionTask("cap", caption_rows(), caption_rows(), 64, image_size=8, vocab=policy.vocab))
    assert metrics["exact_match"] >= 5 / 6 and metrics["word_f1"] >= 0.9, metrics
    # another example's image: the caption of that image's colour, so the colour word is wrong
    assert metrics["shuffled_exact_match"] <= 1 / 6 and metrics["shuffled_word_f1"] < 0.8, metrics


def test_default_vocab_is_built_when_none():
    task = CaptionTask("c", caption_rows(), caption_rows(), 64, image_size=8)
    assert task.vocab == Vocab()


@pytest.mark.slow
def test_from_source_and_spec_round_trip(tiny_policy, tmp_path, no_network):
    import datasets

    vocab = tiny_policy().vocab
    rows = vqa_rows()
    columns = {k: [r[k] for r in rows] for k in ("image", "question", "answer", "kind")}
    split = datasets.Dataset.from_dict(columns)
    datasets.DatasetDict({"train": split, "test": split.select(range(4))}).save_to_disk(str(tmp_path / "vqa"))
    task = VQATask.from_source("shapes-vqa", str(tmp_path / "vqa"), 64, vocab=vocab, image_size=8, eval_examples=3)
    assert (len(task.train), len(task.test)) == (12, 4)
    spec = task.spec()
    assert spec == {"type": "vqa", "name": "shapes-vqa", "source": str(tmp_path / "vqa"), "context_len": 64,
                    "image_size": 8, "patch_size": 4, "eval_examples": 3}
    again = VQATask.from_spec(spec, vocab=vocab)
    assert again.spec() == spec and again.test.columns == task.test.columns
    np.testing.assert_array_equal(again.train.pixels, task.train.pixels)
    assert again.evaluate(tiny_policy(), 10) == task.evaluate(tiny_policy(), 10)
