"""A policy started from a local GPT-2 (pretrained_lm), LoRA on it, and tokenizers saved inside checkpoints.

A tiny GPT-2 and a tiny byte-level BPE are built here with ``transformers`` and ``tokenizers``: nothing downloads.
"""

from __future__ import annotations

import shutil

import pytest
import torch

from gato.policy.config import PolicyConfig
from gato.policy.gato_policy import CheckpointError, GatoPolicy

CORPUS = ["the red ball is next to the blue box", "open the door and pick up the key",
          "go to the green ball", "put the grey key next to the purple box"] * 20
N_POSITIONS = 64


def tiny_bpe(directory):
    """A byte-level BPE with GPT-2's "<|endoftext|>" special token, saved as directory/tokenizer.json."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=320, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS, trainer)
    directory.mkdir(parents=True, exist_ok=True)
    tok.save(str(directory / "tokenizer.json"))
    return tok


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory):
    """A tiny GPT-2 (random weights, norms perturbed, a non-default epsilon) with its tokenizer.json."""
    from transformers import GPT2Config, GPT2LMHeadModel

    directory = tmp_path_factory.mktemp("gpt2-tiny")
    tok = tiny_bpe(directory)
    eos = tok.token_to_id("<|endoftext|>")
    torch.manual_seed(0)
    config = GPT2Config(n_layer=2, n_head=2, n_embd=32, n_positions=N_POSITIONS, vocab_size=tok.get_vocab_size(),
                        layer_norm_epsilon=1e-3, bos_token_id=eos, eos_token_id=eos)
    model = GPT2LMHeadModel(config)
    with torch.no_grad():  # norms away from (1, 0), so a wrong epsilon or a skipped norm shows
        for name, p in model.named_parameters():
            if "ln_" in name:
                p.add_(torch.randn_like(p) * 0.2)
    model.save_pretrained(str(directory))
    return directory


def text_stream(ids: list[list[int]]) -> dict:
    """A pure text stream (B, T): every position a target, in-timestep positions 0, 1, 2, ..."""
    tokens = torch.tensor(ids)
    B, T = tokens.shape
    return {"tokens": tokens, "in_step_pos": torch.arange(T).repeat(B, 1),
            "patch_mask": torch.zeros(B, T, dtype=torch.bool), "patches": torch.zeros(0, 3, 4, 4),
            "patch_rowcol": torch.zeros(0, 2, dtype=torch.long), "targets": torch.ones(B, T, dtype=torch.bool)}


def text_ids(tokenizer, n_rows=2, length=40) -> list[list[int]]:
    ids = tokenizer.encode(" ".join(CORPUS[:8]))
    return [ids[i : i + length] for i in range(0, n_rows * 3, 3)]


def gpt2_logits(directory, ids) -> torch.Tensor:
    from transformers import GPT2LMHeadModel

    model = GPT2LMHeadModel.from_pretrained(str(directory), local_files_only=True).eval()
    with torch.no_grad():
        return model(torch.tensor(ids)).logits


def policy_logits(policy, stream) -> torch.Tensor:
    with torch.no_grad():
        return policy.logits(policy.hidden_states(stream))


@pytest.mark.slow
def test_step_zero_text_logits_are_gpt2s(gpt2_dir, no_network):
    from tokenizers import Tokenizer

    policy = GatoPolicy(pretrained_lm=str(gpt2_dir), context_len=N_POSITIONS).eval()
    # the tokenizer is the directory's: text ids are GPT-2's ids
    theirs = Tokenizer.from_file(str(gpt2_dir / "tokenizer.json"))
    sentence = "pick up the red key next to the door"
    assert policy.vocab.tokenizer.encode(sentence) == theirs.encode(sentence, add_special_tokens=False).ids
    assert policy.config.positions == "learned" and policy.config.max_positions == N_POSITIONS
    assert policy.config.layer_norm_eps == 1e-3 and policy.config.tokenizer_model_name == str(gpt2_dir)
    ids = text_ids(policy.vocab.tokenizer)
    n = theirs.get_vocab_size()
    ours = policy_logits(policy, text_stream(ids))
    torch.testing.assert_close(ours[..., :n], gpt2_logits(gpt2_dir, ids), atol=1e-4, rtol=1e-4)
    # the loss path sees the same logits
    logits, loss = policy(text_stream(ids))
    torch.testing.assert_close(logits[:, :n], ours[:, :-1].reshape(-1, ours.shape[-1])[:, :n])
    assert torch.isfinite(loss)


@pytest.mark.slow
def test_packed_text_segments_each_start_at_position_zero(gpt2_dir, no_network):
    policy = GatoPolicy(pretrained_lm=str(gpt2_dir), context_len=N_POSITIONS).eval()
    ids = text_ids(policy.vocab.tokenizer, n_rows=2, length=20)
    alone = [policy_logits(policy, text_stream([row])) for row in ids]
    packed = text_stream([ids[0] + ids[1]])
    packed["in_step_pos"] = torch.tensor([list(range(20)) * 2])
    packed["segment_ids"] = torch.tensor([[0] * 20 + [1] * 20])
    with torch.no_grad():
        together = policy.logits(policy.transformer(
            policy.embedding(packed["tokens"], packed["in_step_pos"], packed["patch_mask"], packed["patches"],
                             packed["patch_rowcol"]), segment_ids=packed["segment_ids"]))
    torch.testing.assert_close(together[:, :20], alone[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(together[:, 20:], alone[1], atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_cached_and_uncached_agree_while_the_context_slides(gpt2_dir, no_network):
    """Learned positions number the current context from 0; a slide re-runs the kept tokens."""
    context = 16
    policy = GatoPolicy(pretrained_lm=str(gpt2_dir), context_len=context).eval()
    ids = torch.tensor(text_ids(policy.vocab.tokenizer, n_rows=2, length=40))
    cache = policy.new_cache()
    fed, chunks = 0, [3, 1, 5, 7, 1, 1, 4, 2, 6, 1, 1, 3, 5]
    for size in chunks:
        chunk = text_stream(ids[:, fed : fed + size].tolist())
        fed += size
        cached = policy.extend(cache, chunk)
        window = text_stream(ids[:, max(0, fed - context) : fed].tolist())
        with torch.no_grad():
            uncached = policy.hidden_states(window)[:, -1]
        torch.testing.assert_close(cached, uncached, atol=1e-5, rtol=1e-5)
        assert cache.length == min(fed, context)
    assert fed > 2 * context


@pytest.mark.slow  # builds the tiny GPT-2 (transformers' import)
def test_context_longer_than_gpt2_positions_is_refused(gpt2_dir, no_network):
    with pytest.raises(ValueError, match="n_positions"):
        GatoPolicy(pretrained_lm=str(gpt2_dir), context_len=N_POSITIONS + 1)
    with pytest.raises(ValueError, match="max_positions"):
        PolicyConfig(positions="learned", max_positions=16, context_len=32)
    with pytest.raises(ValueError, match="rope"):
        PolicyConfig(positions="absolute")


@pytest.mark.slow  # builds the tiny GPT-2 (transformers' import)
def test_gpt2_without_its_tokenizer_is_refused(gpt2_dir, tmp_path, no_network):
    shutil.copytree(gpt2_dir, tmp_path / "lm")
    (tmp_path / "lm" / "tokenizer.json").unlink()
    with pytest.raises(ValueError, match="tokenizer.json"):
        GatoPolicy(pretrained_lm=str(tmp_path / "lm"), context_len=32)
    shutil.copy(gpt2_dir / "tokenizer.json", tmp_path / "lm")
    with pytest.raises(ValueError, match="own tokenizer"):
        GatoPolicy(pretrained_lm=str(tmp_path / "lm"), context_len=32, tokenizer_model_name=str(gpt2_dir))


@pytest.mark.slow
def test_gpt2_policy_checkpoint_loads_without_the_gpt2_directory(gpt2_dir, tmp_path, no_network):
    shutil.copytree(gpt2_dir, tmp_path / "lm")
    policy = GatoPolicy(pretrained_lm=str(tmp_path / "lm"), context_len=32).eval()
    policy.save_pretrained(tmp_path / "ckpt")
    shutil.rmtree(tmp_path / "lm")
    assert (tmp_path / "ckpt" / "tokenizer.json").read_text() == (gpt2_dir / "tokenizer.json").read_text()
    loaded = GatoPolicy.from_pretrained(tmp_path / "ckpt").eval()
    assert loaded.config == policy.config and loaded.vocab == policy.vocab
    own, back = policy.state_dict(), loaded.state_dict()
    assert own.keys() == back.keys() and all(torch.equal(own[k], back[k]) for k in own)
    stream = text_stream(text_ids(policy.vocab.tokenizer, length=30))
    assert torch.equal(policy_logits(policy, stream), policy_logits(loaded, stream))


def test_a_run_tokenizer_is_saved_inside_the_checkpoint(tmp_path, no_network):
    tok = tiny_bpe(tmp_path / "bpe")
    policy = GatoPolicy(embed_dim=32, layers=1, heads=2, context_len=32, tokenizer_model_name=str(tmp_path / "bpe"))
    sentence = "the purple door"
    assert policy.vocab.tokenizer.encode(sentence) == tok.encode(sentence, add_special_tokens=False).ids
    policy.save_pretrained(tmp_path / "ckpt")
    shutil.rmtree(tmp_path / "bpe")  # config.json's tokenizer_model_name now names nothing
    loaded = GatoPolicy.from_pretrained(tmp_path / "ckpt")
    assert loaded.config.tokenizer_model_name == str(tmp_path / "bpe") and loaded.vocab == policy.vocab
    assert loaded.vocab.tokenizer.encode(sentence) == policy.vocab.tokenizer.encode(sentence)
    assert loaded.vocab.text_tokens == policy.vocab.text_tokens
    # re-saving the loaded policy, into a new directory and over its own, keeps the tokenizer
    for target in (tmp_path / "again", tmp_path / "ckpt"):
        loaded.save_pretrained(target)
        assert GatoPolicy.from_pretrained(target).vocab.tokenizer.encode(sentence) == tok.encode(sentence).ids
    # the built-in tokenizer writes no tokenizer.json
    GatoPolicy(embed_dim=32, layers=1, heads=2, context_len=32).save_pretrained(tmp_path / "plain")
    assert not (tmp_path / "plain" / "tokenizer.json").exists()


def mixed_stream(policy, length=24) -> dict:
    """One text row and one control-like row (task token, image patches, discrete and continuous values,
    separator, action targets): every kind of embedding row is used."""
    v = policy.vocab
    g = torch.Generator().manual_seed(0)
    text = text_stream(text_ids(v.tokenizer, n_rows=1, length=length))
    control = [v.task(3)] + [v.pad] * 4 + [v.discrete_offset + 5, v.continuous_offset + 700, v.separator,
                                           v.discrete_offset + 2, v.continuous_offset + 100]
    control = (control * 3)[:length]
    patch_mask = torch.tensor([[t == v.pad for t in control]])
    step = 10
    targets = torch.tensor([[i % step >= 8 for i in range(length)]])
    n_patches = int(patch_mask.sum())
    return {
        "tokens": torch.cat([text["tokens"], torch.tensor([control])]),
        "in_step_pos": torch.cat([text["in_step_pos"], torch.tensor([[i % step for i in range(length)]])]),
        "patch_mask": torch.cat([text["patch_mask"], patch_mask]),
        "targets": torch.cat([text["targets"], targets]),
        "patches": torch.rand(n_patches, 3, 4, 4, generator=g) * 2 - 1,
        "patch_rowcol": torch.tensor([[i // 2 % 2, i % 2] for i in range(n_patches)]),
    }


def train_steps(policy, stream, steps=3):
    policy.train()
    optimizer = torch.optim.AdamW(policy.optimizer_groups(0.1), lr=1e-2)
    for _ in range(steps):
        optimizer.zero_grad()
        _, loss = policy(stream)
        loss.backward()
        optimizer.step()
    return policy.eval()


@pytest.mark.slow
def test_lora_trains_only_adapters_and_new_embeddings(gpt2_dir, no_network):
    torch.manual_seed(0)
    plain = GatoPolicy(pretrained_lm=str(gpt2_dir), context_len=32).eval()
    torch.manual_seed(0)  # the same new rows: LoRA's own initialisation draws last
    policy = GatoPolicy(pretrained_lm=str(gpt2_dir), context_len=32, lora_r=4, lora_alpha=8, lora_dropout=0.1)
    stream = text_stream(text_ids(plain.vocab.tokenizer, length=30))
    # adapters start as the identity (lora_B = 0): step 0 is GPT-2's function still
    torch.testing.assert_close(policy_logits(policy.eval(), stream), policy_logits(plain, stream))
    trainable = {name for name, p in policy.named_parameters() if p.requires_grad}
    assert {n for n in trainable if n.startswith("transformer.")} == {
        n for n, _ in policy.named_parameters() if "lora_" in n}
    assert "embedding.tokens.trainable" in trainable and "embedding.tokens.frozen" not in trainable
    assert "transformer.wpe.weight" not in trainable and "embedding.patches.out.weight" in trainable
    assert policy.embedding.tokens.frozen.shape[0] == policy.vocab.text_tokens

    before = {k: v.clone() for k, v in policy.state_dict().items()}
    train_steps(policy, mixed_stream(policy))
    after = policy.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    frozen = {n for n, p in policy.named_parameters() if not p.requires_grad}
    assert frozen and not changed & frozen  # base weights, text rows, GPT-2's positions: bitwise equal
    assert {n for n in frozen if "base_layer" in n}  # the adapted linears' own weights are among them
    assert {n for n in changed if "lora_A" in n} and {n for n in changed if "lora_B" in n}
    assert "embedding.tokens.trainable" in changed and "embedding.patches.out.weight" in changed
    # the tied head still reads the whole table: text rows first, then the new ones
    assert torch.equal(policy.embedding.tokens.weight[: policy.vocab.text_tokens], before["embedding.tokens.frozen"])


@pytest.mark.slow
def test_lora_policy_round_trips_without_the_gpt2_directory(gpt2_dir, tmp_path, no_network):
    shutil.copytree(gpt2_dir, tmp_path / "lm")
    policy = GatoPolicy(pretrained_lm=str(tmp_path / "lm"), context_len=32, lora_r=4)
    train_steps(policy, mixed_stream(policy), steps=2)
    policy.save_pretrained(tmp_path / "ckpt")
    shutil.rmtree(tmp_path / "lm")
    loaded = GatoPolicy.from_pretrained(tmp_path / "ckpt").eval()
    assert loaded.config == policy.config and loaded.config.lora_r == 4
    own, back = policy.state_dict(), loaded.state_dict()
    assert own.keys() == back.keys() and all(torch.equal(own[k], back[k]) for k in own)
    assert [n for n, p in loaded.named_parameters() if p.requires_grad] == \
        [n for n, p in policy.named_parameters() if p.requires_grad]
    stream = mixed_stream(policy)
    assert torch.equal(policy(stream)[0], loaded(stream)[0])
    with pytest.raises(CheckpointError):  # a LoRA checkpoint does not load into a plain model
        GatoPolicy.from_pretrained(tmp_path / "ckpt", lora_r=0)


@pytest.mark.slow
def test_gato_train_with_pretrained_lm_and_lora_on_text_only(gpt2_dir, tmp_path, no_network, capsys):
    """The CLI path: a text-only run (no control task) from a local GPT-2 with NEKO's LoRA flags; GPT-2's own
    weights stay as they were and the checkpoint evaluates without the GPT-2 directory."""
    import json

    from safetensors.torch import load_file

    from gato.cli import main

    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"text": t}) + "\n" for t in CORPUS))
    runs = tmp_path / "runs"
    assert main(["train", "--pretrained_lm", str(gpt2_dir), "--lora", "--lora_r", "8", "--control_datasets",
                 "--text_datasets", str(corpus), "--text_prop", "1", "--sequence_length", "32", "--batch_size", "4",
                 "--training_steps", "4", "--max_minutes", "0", "--eval_episodes", "2", "--report_to", "none",
                 "--device", "cpu", "--save_dir", str(runs), "--exp_name", "lora"]) == 0
    checkpoint = runs / "lora" / "checkpoint"
    config = json.loads((checkpoint / "config.json").read_text())
    assert (config["lora_r"], config["lora_alpha"], config["positions"]) == (8, 32.0, "learned")
    assert (checkpoint / "tokenizer.json").read_text() == (gpt2_dir / "tokenizer.json").read_text()
    ours, theirs = load_file(str(checkpoint / "model.safetensors")), load_file(str(gpt2_dir / "model.safetensors"))
    pairs = [(f"transformer.blocks.{i}.{norm}.weight", f"transformer.h.{i}.{norm}.weight")
             for i in range(2) for norm in ("ln_1", "ln_2")]
    assert all(torch.equal(ours[a], theirs[b]) for a, b in pairs)  # GPT-2's own weights did not train
    capsys.readouterr()
    assert main(["eval", str(checkpoint), "--out", str(tmp_path / "e.json")]) == 0
    assert "perplexity" in capsys.readouterr().out
