"""ImageTextTask: what CaptionTask and VQATask share.

An image-and-text task keeps its splits in memory once read: each distinct picture once, as resized
uint8 pixels (:mod:`gato.images`), and each example's text as ids of its vocabulary. Training rows
pack several examples, each attending only to itself; only the caption (or answer) and its eos are
targets (layouts in :mod:`gato.language`). Evaluation generates greedily with the KV cache on the
first examples of the test split.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from gato.codec import not_encoded_for
from gato.images import IMAGE_SIZE, check_sizes, patch_grid, pixel_patches, to_pixels
from gato.language import Example, decode, generate_ids, pack_examples

if TYPE_CHECKING:
    from gato.batch import Batch
    from gato.vocab import Vocab


class EmptyDatasetError(ValueError):
    """A split with no examples."""


class ExampleTooLongError(ValueError):
    """An example whose tokens exceed the task's context."""


class Split:
    """One split in memory: ``pixels`` (U, S, S, 3) uint8 of its distinct images, ``image_of`` (n,) the image
    of each example, ``columns`` its text columns (name -> list of str), ``ids`` the encoded ones."""

    def __init__(self, data, columns: tuple[str, ...], optional: dict, image_size: int, label: str):
        images, self.columns = _read_columns(data, columns, optional, label)
        if not images:
            raise EmptyDatasetError(f"{label} has no examples; give it at least one row")
        self.image_of = np.zeros(len(images), np.int64)
        seen: dict[bytes, int] = {}
        pixels = []
        for i, image in enumerate(_progress(images, f"reading {label}")):
            p = to_pixels(image, image_size)
            key = p.tobytes()
            if key not in seen:
                seen[key] = len(pixels)
                pixels.append(p)
            self.image_of[i] = seen[key]
        self.pixels = np.stack(pixels)
        self.ids: dict[str, list[np.ndarray]] = {}

    def __len__(self) -> int:
        return len(self.image_of)

    def encode(self, vocab, names: tuple[str, ...]) -> None:
        """Encode the text columns ``names`` with ``vocab``'s tokenizer."""
        encode = vocab.tokenizer.encode
        self.ids = {name: [np.asarray(encode(t), np.int64) for t in self.columns[name]] for name in names}


def _read_columns(data, names, optional, label) -> tuple[list, dict]:
    """(images, {name: list of str}) of a datasets.Dataset, a dict of columns or a list of row dicts."""
    if hasattr(data, "column_names"):  # a datasets.Dataset: columns without decoding row by row
        have = set(data.column_names)
        get = (lambda name: list(data[name]))  # noqa: E731
    elif isinstance(data, dict):
        have = set(data)
        get = (lambda name: list(data[name]))  # noqa: E731
    else:
        rows = list(data)
        have = set(rows[0]) if rows else {"image", *names}
        get = (lambda name: [row[name] for row in rows])  # noqa: E731
    missing = sorted({"image", *names} - have)
    if missing:
        raise ValueError(f"{label} lacks the column(s) {missing}; it needs image, {', '.join(names)}")
    images = get("image")
    columns = {name: [str(v) for v in get(name)] for name in names}
    for name, default in optional.items():
        columns[name] = [str(v) for v in get(name)] if name in have else [default] * len(images)
    return images, columns


def _progress(items, desc: str):
    """``items``, with a progress bar when there are many."""
    if len(items) < 2000:
        return items
    from tqdm import tqdm

    return tqdm(items, desc=desc, unit="image", leave=False)


class ImageTextTask:
    """What CaptionTask and VQATask share: data in memory, packed training rows, split evaluation, specs.

    A subclass sets ``kind`` (its spec type), ``loader`` (its function in ``gato.data.corpora``),
    ``columns`` (the text columns beside "image", all encoded, each example's tokens being its patches, these
    texts, the separator and eos), ``optional`` (other text columns and their default), ``target_column`` (the
    text predicted), and writes :meth:`prompt`, :meth:`evaluate_part` and :meth:`summarize`.
    """

    kind = ""
    loader = ""
    columns: tuple[str, ...] = ()
    optional: dict = {}
    target_column = ""

    def __init__(self, name: str, train, test, context_len: int, *, image_size: int = IMAGE_SIZE, patch_size: int = 4,
                 vocab: Vocab | None = None, encode: bool = True, eval_examples: int | None = None,
                 source: str | None = None):
        from gato.vocab import Vocab

        check_sizes(image_size, patch_size)
        self.name, self.context_len, self.source = name, int(context_len), source
        self.image_size, self.patch_size, self.eval_examples = int(image_size), int(patch_size), eval_examples
        self.rowcol = patch_grid(image_size, patch_size)
        self.train = Split(train, self.columns, self.optional, image_size, f"the train split of task {name!r}")
        self.test = Split(test, self.columns, self.optional, image_size, f"the test split of task {name!r}")
        self.vocab = None
        if encode:  # False: until encode_for (a run whose tokenizer is still to be trained on this text)
            self.encode_for(vocab if vocab is not None else Vocab())

    # -- data ----------------------------------------------------------------------------

    @classmethod
    def from_source(cls, name: str, source: str, context_len: int, vocab: Vocab | None = None, **kw):
        """The task on the "train" and "test" splits of ``source`` (a default name such as "captions/shapes"
        or a local path), read by ``gato.data.corpora``."""
        from gato.data import corpora

        load = getattr(corpora, cls.loader)
        return cls(name, load(source, "train"), load(source, "test"), context_len, vocab=vocab, source=source, **kw)

    def encode_for(self, vocab: Vocab):
        """Re-encode the text for ``vocab`` (a policy's) unless it already is; returns the task. Raises
        ExampleTooLongError if an example no longer fits the context."""
        if vocab != self.vocab:
            for split in (self.train, self.test):
                split.encode(vocab, self.columns)
            self.vocab = vocab
            for label, split in (("train", self.train), ("test", self.test)):
                lengths = self.example_lengths(split)
                worst = int(np.argmax(lengths))
                if lengths[worst] > self.context_len:
                    raise ExampleTooLongError(
                        f"example {worst} of the {label} split of task {self.name!r} takes {lengths[worst]} tokens "
                        f"({len(self.rowcol)} of them image patches), more than context_len {self.context_len}: "
                        "raise context_len, or use fewer patches (a larger patch_size or a smaller image_size)")
            self.longest = int(self.example_lengths(self.train).max())
            self.max_target = max(len(t) for t in self.train.ids[self.target_column]) + 1
        return self

    def example_lengths(self, split: Split) -> np.ndarray:
        """(n,) tokens of each training example of ``split``: patches, the text before the separator, the
        separator, the target text and eos."""
        text = [len(split.ids[c][i]) for c in self.columns for i in range(len(split))]
        return len(self.rowcol) + 2 + np.asarray(text, np.int64).reshape(len(self.columns), -1).sum(0)

    def check_vocab(self, vocab: Vocab) -> None:
        """Raise VocabMismatchError unless the task is encoded for ``vocab``."""
        if vocab != self.vocab:
            raise not_encoded_for(f"task {self.name!r}", self.vocab, vocab)

    def patches(self, split: Split, image: int) -> np.ndarray:
        """(N, 3, P, P) normalised patches of image ``image`` of ``split``."""
        return pixel_patches(split.pixels[image], self.patch_size)

    def prompt(self, split: Split, i: int, image: int | None = None) -> Example:
        """The prompt of example ``i`` of ``split`` (with image ``image`` of the split instead of its own)."""
        raise NotImplementedError

    def example(self, split: Split, i: int) -> Example:
        """Example ``i`` of ``split`` for training: its prompt, then its target text and eos as targets."""
        return self.prompt(split, i).answered(split.ids[self.target_column][i], self.vocab.tokenizer.eos_id)

    def sample_batch(self, batch_size: int, vocab: Vocab, context_len: int | None = None,
                     rng: np.random.Generator | None = None) -> Batch:
        """``batch_size`` rows of ``context_len`` tokens (at most the task's), each packing as many training
        examples (drawn uniformly) as fit; each example attends only to itself."""
        self.check_vocab(vocab)
        rng = rng or np.random.default_rng()
        length = min(context_len or self.context_len, self.context_len)
        if self.longest > length:
            raise ExampleTooLongError(f"task {self.name!r} has examples of {self.longest} tokens, which do not fit "
                                      f"context_len {length}; raise it")
        rows, row, used = [], [], 0
        while len(rows) < batch_size:
            ex = self.example(self.train, int(rng.integers(len(self.train))))
            if row and used + len(ex) > length:  # the row is full
                rows.append(row)
                row, used = [], 0
            row.append(ex)
            used += len(ex)
        return pack_examples(rows, length, vocab.pad)

    def training_texts(self) -> list[str]:
        """The train split's text (what a BPE for this task is trained on)."""
        return [t for c in self.columns for t in self.train.columns[c]]

    # -- evaluation ----------------------------------------------------------------------

    def eval_count(self, n_iterations: int) -> int:
        """How many test examples evaluation reads: ``eval_examples`` if set, else ``n_iterations``, at most all."""
        n = self.eval_examples if self.eval_examples is not None else n_iterations
        return max(0, min(int(n), len(self.test)))

    def generate(self, model, prompts: list[Example], use_cache: bool = True) -> list[str]:
        """Greedy answers to ``prompts`` (stripped), up to the longest train target plus eos."""
        model = getattr(model, "module", model)
        self.check_vocab(model.vocab)
        if model.patch_size != self.patch_size:
            raise ValueError(f"task {self.name!r} cuts {self.patch_size}-pixel patches but the policy reads "
                             f"{model.patch_size}-pixel ones; build the task with patch_size={model.patch_size}")
        if not prompts:
            return []
        room = min(self.max_target, model.context_len - max(len(p) for p in prompts))
        ids = generate_ids(model, prompts, max(room, 1), use_cache=use_cache)
        return [decode(self.vocab, row).strip() for row in ids]

    def evaluate(self, model, n_iterations: int, **kwargs) -> dict:
        """Metrics on the test split's first examples (see :meth:`eval_count`); control-only keywords
        (deterministic, promptless_eval, n_envs, ...) are accepted and ignored; ``use_cache`` is read."""
        return self.summarize(self.evaluate_part(model, n_iterations, 0, 1, **kwargs))

    def evaluate_part(self, model, n_iterations: int, part: int, parts: int, **kwargs) -> list[dict]:
        """Records of the evaluation examples part, part + parts, ... (for :meth:`summarize`)."""
        raise NotImplementedError

    def summarize(self, records: list[dict]) -> dict:
        """Metrics from the records of every part."""
        raise NotImplementedError

    # -- specs ---------------------------------------------------------------------------

    def spec(self) -> dict:
        """JSON-able description; :meth:`from_spec` rebuilds the task from it (its source must be local)."""
        return {"type": self.kind, "name": self.name, "source": self.source, "context_len": self.context_len,
                "image_size": self.image_size, "patch_size": self.patch_size, "eval_examples": self.eval_examples}

    @classmethod
    def from_spec(cls, spec: dict, vocab: Vocab | None = None):
        """Rebuild a task from :meth:`spec`, encoded for ``vocab``."""
        spec = dict(spec)
        spec.pop("type", None)
        name, source, context_len = spec.pop("name"), spec.pop("source"), spec.pop("context_len")
        if source is None:
            raise ValueError(f"task {name!r} was built from data in memory and its spec names no source to read it "
                             f"again from; build it with {cls.__name__}.from_source")
        return cls.from_source(name, source, context_len, vocab=vocab, **spec)


def mean_of(records: list[dict], key: str) -> float:
    return float(sum(r[key] for r in records) / len(records))


def exact_match(prediction: str, reference: str) -> float:
    """1.0 when the strings are equal after strip and lower case."""
    return float(prediction.strip().lower() == reference.strip().lower())
