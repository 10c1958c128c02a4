"""Text tokenizers: a built-in one that needs no download, and local Hugging Face ones.

``WordByteTokenizer`` (control-only runs): ids 0..255 are raw bytes, then come the special
tokens, then two ids per known word: the word with one leading space (" red") and without
("red"), so the encoding is lossless: ``decode(encode(s)) == s`` for every string. Words outside
the list cost one id per byte. The list covers BabyAI's mission grammar and common English,
which keeps BabyAI missions at one token per word instead of one per character.

``HFTokenizer`` reads a local ``tokenizer.json``; ``train_bpe`` trains a byte-level BPE one
offline (for runs with language, caption or VQA tasks)."""

from __future__ import annotations

import re
from pathlib import Path

_WORDS = """
a about above after again against all also an and any are around as at away back ball be
before behind below between blue box but by can carry close closed color colour come could
do does done door down drop each east empty end every find first for forward from front get
give go goal going green grey gray has have he her here him his hold how i if in into is it
its key large last left lift like locked look make me more move must my near new next no north
not now object of off on one only open or other our out over pick place put red right room
same see she should side small so some south start step stop take than that the their them
then there these they this three to toggle top turn two under unlock up us use wall was we
west what when where which while who will with without yellow you your purple lava door key
""".split()

_WORD_RE = re.compile(r" ?[A-Za-z]+|.", re.DOTALL)


class WordByteTokenizer:
    """Lossless tokenizer with a built-in vocabulary; see the module docstring."""

    name = "word-byte-v1"

    def __init__(self, words: list[str] | None = None):
        words = list(dict.fromkeys(words if words is not None else _WORDS))
        self.pad_id = 256
        self.eos_id = 257
        forms = [f for w in words for f in (" " + w, w)]
        self._word_ids = {f: 258 + i for i, f in enumerate(forms)}
        self._id_words = {i: f for f, i in self._word_ids.items()}
        self.vocab_size = 258 + len(forms)

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (no padding, no end-of-text token)."""
        ids: list[int] = []
        for piece in _WORD_RE.findall(text):
            word_id = self._word_ids.get(piece)
            if word_id is not None:
                ids.append(word_id)
            else:
                ids.extend(piece.encode("utf-8"))
        return ids

    def decode(self, ids) -> str:
        """Inverse of :meth:`encode`; pad and end-of-text ids are dropped."""
        out = bytearray()
        for i in (int(x) for x in ids):
            if i < 256:
                out.append(i)
            elif i in self._id_words:
                out.extend(self._id_words[i].encode("utf-8"))
        return out.decode("utf-8", errors="replace")


EOT = "<|endoftext|>"
"""The end-of-text token of GPT-2's tokenizer and of those :func:`train_bpe` makes."""

DEFAULT_BPE_VOCAB = 2048
"""Vocabulary size :func:`train_bpe` is meant to be called with (special tokens included).

Gato used a 32k SentencePiece vocabulary for a model ~10x wider; ours is 128 wide and its text
is ~465k characters of Python docs (``pydoc_data.topics.topics``) plus short captions and
questions. The token table (tied with the output head) costs 128 x V parameters and V x 128
multiply-adds per predicted token, and a rare merge gets too few examples to learn. Measured on
``pydoc_data.topics.topics`` (tokens per character: trained on all of it / on 90% of the topics,
scored on the other 10%; ids seen fewer than 20 times in all of it):

    V=1024: 0.342 / 0.380, 228 rare ids      V=2048: 0.277 / 0.312, 832 rare ids
    V=4096: 0.241 / 0.279, 3284 rare ids     V=8192: 0.224 / 0.259, 7523 rare ids

(UTF-8 bytes: 1.0; the built-in WordByteTokenizer: 0.85.) Doubling to 4096 shortens the text by
only ~11% while 80% of its ids are rare, so 2048.
"""


def train_bpe(texts, vocab_size: int, directory) -> HFTokenizer:
    """Train a byte-level BPE tokenizer (GPT-2's scheme) on ``texts`` (an iterable of strings),
    save it as ``directory/tokenizer.json`` and return it loaded (``load_tokenizer(directory)``
    reads it too).

    Byte-level: every string encodes (its UTF-8 bytes are the alphabet, nothing is unknown) and
    ``decode(encode(s)) == s``. ``vocab_size`` counts the 256 bytes and ``<|endoftext|>`` (the
    end-of-text id); :class:`HFTokenizer` adds a pad id after them. Deterministic: the same texts
    give the same tokenizer.json. Offline; for ``DEFAULT_BPE_VOCAB``'s reasons see its docstring.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    if vocab_size < len(alphabet) + 1:
        raise ValueError(f"a byte-level BPE vocabulary needs at least {len(alphabet) + 1} ids (256 bytes and "
                         f"{EOT}), got vocab_size={vocab_size}; use e.g. {DEFAULT_BPE_VOCAB}")
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)  # no added space: lossless
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=alphabet, special_tokens=[EOT],
                                  show_progress=False)
    tokenizer.train_from_iterator(texts, trainer)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(directory / "tokenizer.json"))
    return HFTokenizer(directory)


class HFTokenizer:
    """A Hugging Face ``tokenizers`` tokenizer read from a local directory (tokenizer.json).

    If it has its own ``<|endoftext|>`` (GPT-2's, :func:`train_bpe`'s), that is ``eos_id``, so
    a pretrained model's end of text stays its own; otherwise an end-of-text id is added. A pad
    id is always added last. Special-token text inside a string is encoded as plain text: an
    end of text comes only from ``eos_id``.
    """

    def __init__(self, directory: str | Path):
        from tokenizers import Tokenizer  # optional dependency, only for local HF tokenizers

        path = Path(directory) / "tokenizer.json"
        self._tok = Tokenizer.from_file(str(path))
        self._tok.encode_special_tokens = True
        self.name = str(directory)
        size = self._tok.get_vocab_size()
        own_eos = self._tok.token_to_id(EOT)
        self.eos_id = own_eos if own_eos is not None else size
        self.pad_id = size + (own_eos is None)
        self.vocab_size = self.pad_id + 1

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``."""
        return self._tok.encode(text, add_special_tokens=False).ids

    def decode(self, ids) -> str:
        """Text of ``ids``; pad and end-of-text ids are dropped."""
        return self._tok.decode([int(i) for i in ids if int(i) not in (self.pad_id, self.eos_id)],
                                skip_special_tokens=False)


def load_tokenizer(name: str | None):
    """The tokenizer named ``name``: None or "word-byte" for the built-in one, or a local
    directory holding a Hugging Face ``tokenizer.json``. Never touches the network."""
    if name in (None, "", "word-byte", WordByteTokenizer.name):
        return WordByteTokenizer()
    path = Path(name)
    if (path / "tokenizer.json").is_file():
        return HFTokenizer(path)
    raise ValueError(
        f"tokenizer {name!r} is not a local directory with a tokenizer.json, and neko-gato never "
        "downloads at run time. Pass tokenizer_model_name=None for the built-in tokenizer, or a "
        "directory saved with tokenizer.save_pretrained(...)."
    )

