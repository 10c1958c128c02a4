"""The byte-level BPE tokenizer trained offline (gato.text_tokenizer.train_bpe) and HFTokenizer's ids.

Every string encodes and decodes back (hypothesis, derandomized, plus a varied non-ASCII corpus);
training is deterministic; the saved directory is what ``load_tokenizer`` and ``Vocab`` read;
a tokenizer with its own ``<|endoftext|>`` keeps it as eos_id, one without gets one added.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gato.text_tokenizer import DEFAULT_BPE_VOCAB, EOT, HFTokenizer, load_tokenizer, train_bpe
from gato.vocab import Vocab

CORPUS = [
    "The quick brown fox jumps over the lazy dog.\n",
    "def f(x):\n    return x ** 2  # square\n\tTabs\r\nand CRLF",
    "Héllo wörld, ça va? Ünïcödé façade naïve.",
    "日本語のテキスト、中文文本，한국어 텍스트。",
    "Emoji 🙂🚀 and symbols ∑∫√≤≥ — “quotes” «guillemets»",
    "  leading and trailing spaces  ",
    "pick up the red ball; go to the green key; open the blue door",
] * 20


@pytest.fixture(scope="module")
def bpe(tmp_path_factory):
    return train_bpe(iter(CORPUS), 400, tmp_path_factory.mktemp("bpe"))


def test_round_trip_on_a_varied_corpus(bpe):
    for text in CORPUS[:7] + ["never seen: Ωμέγα ☃ \x00\x7f \U0010ffff", "", " ", "\n\n"]:
        ids = bpe.encode(text)
        assert all(0 <= i < bpe.vocab_size and i not in (bpe.pad_id, bpe.eos_id) for i in ids)
        assert bpe.decode(ids) == text


@settings(max_examples=200, derandomize=True, deadline=None)
@given(st.text())
def test_round_trip_on_any_string(bpe, text):
    assert bpe.decode(bpe.encode(text)) == text


def test_merges_shorten_the_text_it_was_trained_on(bpe):
    text = CORPUS[0] + CORPUS[6]
    assert len(bpe.encode(text)) < 0.6 * len(text.encode("utf-8"))


def test_training_is_deterministic(tmp_path):
    first = train_bpe(CORPUS, 350, tmp_path / "a")
    second = train_bpe(list(CORPUS), 350, tmp_path / "b")
    assert (tmp_path / "a" / "tokenizer.json").read_bytes() == (tmp_path / "b" / "tokenizer.json").read_bytes()
    assert first.encode(CORPUS[2]) == second.encode(CORPUS[2])


def test_saved_directory_is_what_load_tokenizer_and_vocab_read(bpe):
    loaded = load_tokenizer(bpe.name)
    assert isinstance(loaded, HFTokenizer)
    assert loaded.encode(CORPUS[3]) == bpe.encode(CORPUS[3])
    vocab = Vocab(tokenizer_name=bpe.name)
    # its own <|endoftext|> is the eos id; one pad id is added after the 400 trained ids
    assert vocab.text_tokens == 401 == bpe.vocab_size
    assert bpe.eos_id == bpe._tok.token_to_id(EOT) and bpe.pad_id == 400
    assert vocab.discrete_offset == 401


def test_end_of_text_is_only_ever_the_eos_id(bpe):
    ids = bpe.encode(f"a {EOT} b")  # the literal string is text, never the eos token
    assert bpe.eos_id not in ids
    assert bpe.decode(ids) == f"a {EOT} b"
    assert bpe.decode(bpe.encode("a") + [bpe.eos_id, bpe.pad_id] + bpe.encode("b")) == "ab"


def test_a_tokenizer_without_end_of_text_gets_one_added(tmp_path, bpe):
    spec = json.loads(Path(bpe.name, "tokenizer.json").read_text())
    spec["added_tokens"] = []
    spec["model"]["vocab"]["<|unused|>"] = spec["model"]["vocab"].pop(EOT)
    (tmp_path / "tokenizer.json").write_text(json.dumps(spec))
    plain = HFTokenizer(tmp_path)
    size = plain._tok.get_vocab_size()
    assert (plain.eos_id, plain.pad_id, plain.vocab_size) == (size, size + 1, size + 2)
    assert plain.decode(plain.encode("hello") + [plain.eos_id]) == "hello"


def test_too_small_a_vocabulary_is_refused(tmp_path):
    with pytest.raises(ValueError, match="at least 257"):
        train_bpe(CORPUS, 100, tmp_path)


def test_default_vocabulary_is_cpu_sized():
    assert 1024 <= DEFAULT_BPE_VOCAB <= 8192
