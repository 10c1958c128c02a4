"""CaptionTask: describe an image in words (what it shares with VQATask is in :mod:`gato.tasks.image_text`).

Usage::

    task = CaptionTask.from_source("captions", "captions/shapes", context_len=256, vocab=policy.vocab)
    task.evaluate(policy, n_iterations=200)  # exact_match, word_f1, shuffled_exact_match, ...
"""

from __future__ import annotations

import re
import string
from collections import Counter

import numpy as np

from gato.language import Example, caption_prompt
from gato.tasks.image_text import ImageTextTask, Split, exact_match, mean_of

SHUFFLE_SEED = 0
"""Seed of the fixed permutation that gives each caption another example's image (shuffled metrics)."""


def _words(text: str) -> list[str]:
    """SQuAD's answer normalisation: lower case, no punctuation, no articles, split on whitespace."""
    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    return re.sub(r"\b(a|an|the)\b", " ", text).split()


def word_f1(prediction: str, reference: str) -> float:
    """SQuAD-style token F1 of two strings (1.0 when both normalise to nothing)."""
    pred, ref = _words(prediction), _words(reference)
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if not common:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def shuffled_images(n: int, seed: int = SHUFFLE_SEED) -> np.ndarray:
    """For each of ``n`` examples, another example whose image it is shown instead: a fixed permutation with no
    fixed point (one cycle through a random order); the identity when n < 2."""
    order = np.random.default_rng(seed).permutation(n)
    other = np.arange(n)
    if n > 1:
        other[order] = np.roll(order, -1)
    return other


class CaptionTask(ImageTextTask):
    """Caption images: rows {"image", "caption"}; stream [image patches, separator, caption, eos].

    Args: name (logs and tables), train and test (datasets.Dataset, dict of columns or list of rows),
    context_len; keywords image_size (default ``gato.images.IMAGE_SIZE``: images are resized to that square,
    RGB), patch_size (4), vocab (the policy's; default ``Vocab()``), encode (False: no text encoded until
    ``encode_for``), eval_examples (test examples evaluated; default: evaluate's n_iterations), source (the name
    ``from_source`` read, kept in the spec).

    Metrics: exact_match (after strip and lower case), word_f1 (SQuAD-style token F1), and the same with
    each caption's image swapped for another example's (shuffled_exact_match, shuffled_word_f1): far below
    the first two when the model reads the image.
    """

    kind = "caption"
    loader = "load_captions"
    columns = ("caption",)
    target_column = "caption"

    def prompt(self, split: Split, i: int, image: int | None = None) -> Example:
        """[patches, separator] of example ``i`` (or of image ``image``)."""
        image = split.image_of[i] if image is None else image
        return caption_prompt(self.vocab, self.patches(split, image), self.rowcol)

    def evaluate_part(self, model, n_iterations: int, part: int, parts: int, use_cache: bool = True,
                      **kwargs) -> list[dict]:
        """Records {index, prediction, reference, exact_match, word_f1, shuffled_...} of this part's examples."""
        n = self.eval_count(n_iterations)
        indices = list(range(part, n, parts))
        other = shuffled_images(n)
        split = self.test
        prompts = [self.prompt(split, i) for i in indices]
        prompts += [self.prompt(split, i, image=split.image_of[other[i]]) for i in indices]
        texts = self.generate(model, prompts, use_cache)
        records = []
        for k, i in enumerate(indices):
            ref, pred, shuffled = split.columns["caption"][i], texts[k], texts[len(indices) + k]
            records.append({"index": i, "prediction": pred, "reference": ref, "exact_match": exact_match(pred, ref),
                            "word_f1": word_f1(pred, ref), "shuffled_prediction": shuffled,
                            "shuffled_exact_match": exact_match(shuffled, ref),
                            "shuffled_word_f1": word_f1(shuffled, ref)})
        return records

    def summarize(self, records: list[dict]) -> dict:
        """exact_match, word_f1, shuffled_exact_match, shuffled_word_f1 (means) and examples (count)."""
        records = sorted(records, key=lambda r: r["index"])
        metrics = {"examples": float(len(records))}
        if records:
            for key in ("exact_match", "word_f1", "shuffled_exact_match", "shuffled_word_f1"):
                metrics[key] = mean_of(records, key)
        return metrics
