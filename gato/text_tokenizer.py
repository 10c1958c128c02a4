"""A text tokenizer that needs no download: a fixed word list with a UTF-8 byte fallback.

Ids 0..255 are raw bytes, then come the special tokens, then two ids per known word: the word
with one leading space (" red") and without ("red"), so the encoding is lossless:
``decode(encode(s)) == s`` for every string. Words outside the list cost one id per byte.
The list covers BabyAI's mission grammar and common English, which keeps BabyAI missions at
one token per word instead of one per character.
"""

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


class HFTokenizer:
    """A Hugging Face ``tokenizers`` tokenizer read from a local directory (tokenizer.json)."""

    def __init__(self, directory: str | Path):
        from tokenizers import Tokenizer  # optional dependency, only for local HF tokenizers

        path = Path(directory) / "tokenizer.json"
        self._tok = Tokenizer.from_file(str(path))
        self.name = str(directory)
        self.vocab_size = self._tok.get_vocab_size() + 2
        self.pad_id = self.vocab_size - 2
        self.eos_id = self.vocab_size - 1

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``."""
        return self._tok.encode(text, add_special_tokens=False).ids

    def decode(self, ids) -> str:
        """Text of ``ids``; pad and end-of-text ids are dropped."""
        return self._tok.decode([int(i) for i in ids if int(i) < self.pad_id])


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

