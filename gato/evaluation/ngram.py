"""Count-based baselines for language modelling: what a model's held-out perplexity must beat.

Both are fitted on training token ids only and score held-out ids (token-weighted perplexity =
exp(mean negative log-likelihood)):

- unigram, add-one smoothed: p(w) = (c(w) + 1) / (N + V);
- bigram interpolated with that unigram: p(w | v) = lam * c(v, w) / c(v) + (1 - lam) * p(w), with
  the MLE term replaced by p(w) where v was never seen. ``lam`` is chosen on the training ids
  alone: counts from their first 90%, the weight that best predicts the last 10%, then counts
  refitted on all of them. The held-out ids never choose anything.

Bigram counts are kept sparse (sorted pair keys), so a 50k vocabulary costs only its pairs seen.
"""

from __future__ import annotations

import numpy as np

LAMBDAS = np.linspace(0.0, 0.99, 100)
"""Interpolation weights tried for the bigram term."""

TUNE_SHARE = 0.1
"""Share of the training ids (their end) that chooses the interpolation weight."""


class NgramBaselines:
    """Unigram and interpolated bigram models over ids in [0, vocab_size); see the module docstring."""

    def __init__(self, train_ids, vocab_size: int, lam: float | None = None):
        ids = _as_ids(train_ids, vocab_size, "train_ids")
        if len(ids) < 2:
            raise ValueError(f"n-gram baselines need at least 2 training tokens, got {len(ids)}; give the task "
                             "more training text")
        self.vocab_size = int(vocab_size)
        if lam is None and len(ids) < 3:
            lam = 0.0  # too few ids to set any aside for choosing the weight
        if lam is None:
            cut = max(2, min(len(ids) - 1, int(round(len(ids) * (1 - TUNE_SHARE)))))
            lam = _best_lambda(NgramBaselines(ids[:cut], vocab_size, lam=0.0), ids[cut - 1:])
        self.lam = float(lam)
        self._unigram_counts = np.bincount(ids, minlength=vocab_size).astype(np.float64)
        self._n = float(len(ids))
        keys, counts = np.unique(ids[:-1] * self.vocab_size + ids[1:], return_counts=True)
        self._pair_keys, self._pair_counts = keys, counts.astype(np.float64)
        self._context_counts = np.bincount(ids[:-1], minlength=vocab_size).astype(np.float64)

    def unigram_nll(self, targets) -> np.ndarray:
        """-log p(w) for each id (nats)."""
        targets = np.asarray(targets, dtype=np.int64)
        return -np.log((self._unigram_counts[targets] + 1.0) / (self._n + self.vocab_size))

    def _bigram_mle(self, prev: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """c(v, w) / c(v) for each pair, and whether v was seen as a context."""
        keys = prev * self.vocab_size + targets
        at = np.searchsorted(self._pair_keys, keys)
        found = at < len(self._pair_keys)
        found[found] = self._pair_keys[at[found]] == keys[found]
        pair = np.where(found, self._pair_counts[np.minimum(at, len(self._pair_keys) - 1)], 0.0)
        context = self._context_counts[prev]
        return pair / np.maximum(context, 1.0), context > 0

    def bigram_nll(self, prev, targets, lam: float | None = None) -> np.ndarray:
        """-log p(w | v) for each (prev v, target w) pair (nats), interpolated with weight ``lam``
        (default: the fitted one)."""
        prev, targets = np.asarray(prev, dtype=np.int64), np.asarray(targets, dtype=np.int64)
        lam = self.lam if lam is None else lam
        unigram = np.exp(-self.unigram_nll(targets))
        mle, seen = self._bigram_mle(prev, targets)
        return -np.log(lam * np.where(seen, mle, unigram) + (1.0 - lam) * unigram)


def _best_lambda(model: NgramBaselines, tune_ids: np.ndarray) -> float:
    """The weight in LAMBDAS whose bigram best predicts ``tune_ids[1:]`` from ``tune_ids[:-1]``."""
    unigram = np.exp(-model.unigram_nll(tune_ids[1:]))
    mle, seen = model._bigram_mle(tune_ids[:-1], tune_ids[1:])
    mle = np.where(seen, mle, unigram)
    nll = [-np.log(lam * mle + (1.0 - lam) * unigram).sum() for lam in LAMBDAS]
    return float(LAMBDAS[int(np.argmin(nll))])


def _as_ids(ids, vocab_size: int, what: str) -> np.ndarray:
    ids = np.asarray(ids, dtype=np.int64).reshape(-1)
    if len(ids) and (ids.min() < 0 or ids.max() >= vocab_size):
        raise ValueError(f"{what} holds ids outside [0, {vocab_size}); pass the tokenizer's vocab_size")
    return ids


def ngram_perplexities(train_ids, heldout_ids, vocab_size: int) -> dict:
    """Held-out perplexities of the unigram and the bigram baseline fitted on ``train_ids``: both
    score the same tokens, ``heldout_ids[1:]`` (each with its predecessor as the bigram's context)."""
    heldout = _as_ids(heldout_ids, vocab_size, "heldout_ids")
    if len(heldout) < 2:
        raise ValueError(f"held-out perplexity needs at least 2 held-out tokens, got {len(heldout)}")
    model = NgramBaselines(train_ids, vocab_size)
    return {
        "unigram_perplexity": float(np.exp(model.unigram_nll(heldout[1:]).mean())),
        "bigram_perplexity": float(np.exp(model.bigram_nll(heldout[:-1], heldout[1:]).mean())),
    }
