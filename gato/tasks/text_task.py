"""TextTask: language modelling on a text corpus, beside control in one model.

Documents are tokenised with the policy's tokenizer (``vocab.tokenizer``) and joined, with the
end-of-text id (``eos_id``) between two documents, into one training stream and one held-out
stream, as GPT-2 did: a document shorter than a window is never padded on its own, a window simply
runs on into the next document across the end-of-text token, and a long document spans several
windows.

Training (``sample_batch``): windows of ``context_len`` tokens of the training stream at uniformly
random offsets; one window is one "timestep" (``in_step_pos`` 0..L-1), every position is a target
(the policy predicts each next token), there are no patches.

Evaluation (``evaluate``): teacher-forced, token-weighted held-out perplexity,
exp(total NLL / predicted tokens), over the first ``n_iterations`` non-overlapping windows of the
held-out stream. Each window predicts its tokens 1..L-1 from the ones before them (its first token
is context only: one token in L goes unscored, and no token is scored twice). The model's
distribution is renormalised over the text ids ``[0, vocab.text_tokens)``, the same support as the
unigram and bigram baselines (``gato.evaluation.ngram``, fitted on the training stream), which
score exactly the same tokens.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import torch

from gato.batch import Batch, Run, pack_runs
from gato.codec import not_encoded_for
from gato.evaluation.ngram import NgramBaselines
from gato.vocab import Vocab

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["TextTask", "TextTaskError", "token_stream", "windows_batch"]


class TextTaskError(ValueError):
    """A text task that cannot be built as asked (no documents, too short a context, no source)."""


def token_stream(texts: Iterable[str], tokenizer) -> np.ndarray:
    """The documents ``texts`` tokenised and joined with ``tokenizer.eos_id`` between two of them (int64)."""
    ids: list[int] = []
    for i, text in enumerate(texts):
        if i:
            ids.append(tokenizer.eos_id)
        ids.extend(tokenizer.encode(text))
    return np.asarray(ids, dtype=np.int64)


def windows_batch(windows: list[np.ndarray], length: int, pad_id: int) -> Batch:
    """A Batch of token windows (each at most ``length`` long), one window a row and a timestep:
    in_step_pos 0, 1, ..., every real token a target, no patches, right-padded with ``pad_id``
    (:func:`gato.batch.pack_runs`)."""
    none, no_rowcol = np.zeros((0, 1, 1, 1), np.float32), np.zeros((0, 2), np.int64)
    return pack_runs([[[Run(np.asarray(w, np.int64), np.arange(len(w)), np.zeros(len(w), bool), np.ones(len(w), bool),
                            none, no_rowcol)]] for w in windows], length, pad_id)


class TextTask:
    """Language modelling on documents; see the module docstring for the streams and the metrics.

    Args:
        name: the task's name in logs and score tables.
        train_texts, heldout_texts: the documents (lists of strings) of the two splits.
        context_len: tokens per training window (and per evaluation window, capped by the model's).
        vocab: the vocabulary (the policy's, ``policy.vocab``) whose tokenizer encodes the text
            (default ``Vocab()``); :meth:`encode_for` re-encodes for another one.
        encode: False leaves the text unencoded until :meth:`encode_for` (a run whose tokenizer is
            still to be trained on this text).
        source: the corpus it was read from (``gato.data.corpora.load_text``'s source), which
            :meth:`spec` records so :meth:`from_spec` can read it again; None for in-memory text.
        eval_windows: held-out windows that :meth:`evaluate` scores, whatever ``n_iterations``
            says; None: ``n_iterations`` of them. Never more than the held-out stream holds.
        eval_batch_size: windows per forward pass in evaluation.

    Attributes: ``train_ids``, ``heldout_ids`` (the two token streams), ``vocab``.
    """

    def __init__(self, name: str, train_texts, heldout_texts, context_len: int, *, vocab: Vocab | None = None,
                 encode: bool = True, source=None, eval_windows: int | None = None, eval_batch_size: int = 16):
        self.name = name
        self.context_len = int(context_len)
        if self.context_len < 2:
            raise TextTaskError(f"text task {name!r}: context_len {self.context_len} cannot hold a token and its "
                                "successor; use context_len >= 2")
        self.train_texts, self.heldout_texts = list(train_texts), list(heldout_texts)
        for split, texts in (("training", self.train_texts), ("held-out", self.heldout_texts)):
            if not any(texts):
                raise TextTaskError(f"text task {name!r} has no {split} text; give it non-empty documents "
                                    "(a corpus with a train and a test split)")
        self.source = None if source is None else str(source)
        self.eval_windows = eval_windows
        self.eval_batch_size = int(eval_batch_size)
        self.vocab = None
        if encode:
            self.encode_for(vocab if vocab is not None else Vocab())

    @classmethod
    def from_source(cls, name: str, source, context_len: int, vocab: Vocab | None = None, **kwargs) -> TextTask:
        """The task of a local corpus: its "train" and "test" splits as ``gato.data.corpora.load_text`` reads
        them (``source``: a default name such as "text/pydoc" or a local path)."""
        from gato.data.corpora import load_text  # datasets is imported only on the text path

        train, heldout = (load_text(source, split)["text"] for split in ("train", "test"))
        return cls(name, train, heldout, context_len, vocab=vocab, source=source, **kwargs)

    # -- data ----------------------------------------------------------------------------

    def encode_for(self, vocab: Vocab) -> Vocab:
        """Make ``vocab`` the task's, tokenising the documents again unless its tokenizer is the one
        they are encoded with (the other parts of a vocabulary do not change text ids); returns it."""
        if self.vocab is None or _tokenizer_key(vocab) != _tokenizer_key(self.vocab):
            tokenizer = vocab.tokenizer
            self.train_ids = token_stream(self.train_texts, tokenizer)
            self.heldout_ids = token_stream(self.heldout_texts, tokenizer)
            self._baselines = None
            for split, ids in (("training", self.train_ids), ("held-out", self.heldout_ids)):
                if len(ids) < 2:
                    raise TextTaskError(f"text task {self.name!r}: its {split} text makes {len(ids)} token(s), "
                                        "fewer than the 2 a prediction needs; give it more text")
        self.vocab = vocab
        return vocab

    def _check(self, vocab: Vocab) -> None:
        if vocab != self.vocab:
            raise not_encoded_for(f"text task {self.name!r}", self.vocab, vocab)

    def training_texts(self) -> list[str]:
        """The training documents (a run trains its tokenizer on every text task's)."""
        return list(self.train_texts)

    def sample_batch(self, batch_size: int, vocab: Vocab, context_len: int | None = None,
                     rng: np.random.Generator | None = None) -> Batch:
        """``batch_size`` windows of the training stream at uniformly random offsets (the whole stream,
        padded, if it is shorter than the context). ``vocab`` must be the task's (see :meth:`encode_for`)."""
        self._check(vocab)
        rng = rng or np.random.default_rng()
        length = min(context_len or self.context_len, self.context_len)
        width = min(length, len(self.train_ids))
        starts = rng.integers(0, len(self.train_ids) - width + 1, size=batch_size)
        return windows_batch(list(self.train_ids[starts[:, None] + np.arange(width)]), length, vocab.pad)

    # -- evaluation ----------------------------------------------------------------------

    def baselines(self) -> NgramBaselines:
        """The unigram and bigram baselines fitted on the training stream (over the text ids)."""
        if self._baselines is None:
            self._baselines = NgramBaselines(self.train_ids, self.vocab.text_tokens)
        return self._baselines

    def heldout_windows(self, length: int) -> list[tuple[int, int]]:
        """(start, stop) of the non-overlapping held-out windows of ``length`` tokens, in order; the last
        may be shorter, and one of a single token (nothing to predict) is left out."""
        n = len(self.heldout_ids)
        return [(s, min(s + length, n)) for s in range(0, n, length) if min(s + length, n) - s >= 2]

    def evaluate(self, model, n_iterations: int, **kwargs) -> dict:
        """Held-out perplexity of ``model`` and of the baselines on the same tokens (see :meth:`summarize`).
        Control-only options (deterministic, promptless_eval, n_envs, ...) are accepted and ignored."""
        return self.summarize(self.evaluate_part(model, n_iterations, 0, 1, **kwargs))

    def evaluate_part(self, model, n_iterations: int, part: int, parts: int, **kwargs) -> list[dict]:
        """Windows part, part + parts, ... of the first ``n_iterations`` held-out windows (``eval_windows``
        if set), scored teacher-forced on the model's device, without gradients, in eval mode (the model's
        mode is restored after). One record per window: NLL sums (nats) of the model and the baselines,
        the tokens predicted and their UTF-8 bytes."""
        del kwargs  # control-only options
        model = getattr(model, "module", model)
        self._check(model.vocab)
        length = min(self.context_len, model.context_len)
        count = self.eval_windows if self.eval_windows is not None else n_iterations
        spans = list(enumerate(self.heldout_windows(length)[:count]))[part::parts]
        records = []
        training = model.training
        model.eval()
        try:
            for first in range(0, len(spans), self.eval_batch_size):
                chunk = spans[first:first + self.eval_batch_size]
                windows = [self.heldout_ids[start:stop] for _, (start, stop) in chunk]
                for (index, _), window, nll in zip(chunk, windows, _model_nll(model, windows, length)):
                    records.append(self._record(index, window, nll))
        finally:
            model.train(training)
        return records

    def _record(self, index: int, window: np.ndarray, nll: float) -> dict:
        baselines = self.baselines()
        predicted = window[1:]
        return {
            "window": index,
            "tokens": len(predicted),
            "nll": nll,
            "unigram_nll": float(baselines.unigram_nll(predicted).sum()),
            "bigram_nll": float(baselines.bigram_nll(window[:-1], predicted).sum()),
            # partial UTF-8 characters at a window's edges count as one replacement character: a few bytes
            "bytes": len(self.vocab.tokenizer.decode(predicted).encode("utf-8")),
        }

    def summarize(self, records: list[dict]) -> dict:
        """Metrics from every part's window records: perplexity, loss (mean NLL per token, nats),
        bits_per_byte (comparable across tokenizers), tokens and windows scored, and the baselines'
        unigram_perplexity, bigram_perplexity and bigram_bits_per_byte on the same tokens."""
        tokens = sum(r["tokens"] for r in records)
        if not tokens:
            raise TextTaskError(f"text task {self.name!r}: no held-out token was scored; evaluate at least one "
                                "window (n_iterations >= 1) of a non-empty held-out split")
        total = {key: sum(r[key] for r in records) for key in ("nll", "unigram_nll", "bigram_nll", "bytes")}
        per_byte = math.log(2) * max(total["bytes"], 1)
        return {
            "perplexity": math.exp(total["nll"] / tokens),
            "loss": total["nll"] / tokens,
            "bits_per_byte": total["nll"] / per_byte,
            "tokens": float(tokens),
            "windows": float(len(records)),
            "unigram_perplexity": math.exp(total["unigram_nll"] / tokens),
            "bigram_perplexity": math.exp(total["bigram_nll"] / tokens),
            "bigram_bits_per_byte": total["bigram_nll"] / per_byte,
        }

    # -- specs ---------------------------------------------------------------------------

    def spec(self) -> dict:
        """JSON-able description; :meth:`from_spec` (``gato.tasks.registry``) rebuilds the task from it."""
        return {"type": "text", "name": self.name, "source": self.source, "context_len": self.context_len,
                "eval_windows": self.eval_windows, "eval_batch_size": self.eval_batch_size}

    @classmethod
    def from_spec(cls, spec: dict, vocab: Vocab | None = None) -> TextTask:
        """Rebuild a task from :meth:`spec`, encoded for ``vocab``, reading its corpus again (it must be local)."""
        spec = dict(spec)
        spec.pop("type", None)
        name, source, context_len = spec.pop("name"), spec.pop("source"), spec.pop("context_len")
        if source is None:
            raise TextTaskError(f"text task {name!r} was built from in-memory documents, so its spec cannot "
                                "rebuild it; build it from a corpus with TextTask.from_source(name, source, ...)")
        return cls.from_source(name, source, context_len, vocab=vocab, **spec)


def _tokenizer_key(vocab: Vocab) -> tuple:
    return vocab.tokenizer_name, vocab.text_tokens


def _model_nll(model, windows: list[np.ndarray], length: int) -> list[float]:
    """Per window, the model's summed NLL (nats) of tokens 1.. given the ones before, over the text ids."""
    text_tokens = model.vocab.text_tokens
    stream = windows_batch(windows, length, model.vocab.pad).to_torch(model.device)
    with torch.no_grad():
        logits = model.logits(model.hidden_states(stream)[:, :-1])[..., :text_tokens].float()
        targets = stream["tokens"][:, 1:]
        scored = stream["targets"][:, 1:]
        logp = torch.log_softmax(logits, dim=-1).gather(-1, targets.clamp(max=text_tokens - 1).unsqueeze(-1))
        return (-logp.squeeze(-1) * scored).sum(dim=1).tolist()
