"""Starting a GatoPolicy from a local Hugging Face GPT-2 directory (``GatoPolicy(pretrained_lm=DIR)``).

What comes from GPT-2: the blocks and final norm, the token embeddings (the text rows of our table: text
ids are GPT-2's ids, as the tokenizer is the directory's own tokenizer.json), the learned absolute
positions (``wpe``, added at the input; RoPE is off) and the layer-norm epsilon. The output head stays
tied to the token table, as GPT-2's is, so at step 0 the policy's logits over the text ids on pure text
are GPT-2's. Everything is read from local files (safetensors: nothing unpickled); nothing downloads.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

GPT2_ACTIVATIONS = ("gelu_new", "gelu_pytorch_tanh")
"""GPT-2 activations equal to ours ('gelu' is GELU's tanh approximation)."""


class PretrainedLMError(ValueError):
    """A pretrained_lm directory that is missing, incomplete or not a GPT-2 we can reproduce."""


def read_gpt2_config(path) -> dict:
    """The config.json of a local GPT-2 directory, after checking the directory holds all we read and the model
    computes what our blocks compute (activation, attention scaling); PretrainedLMError names what is wrong."""
    directory = Path(path)
    if not (directory / "config.json").is_file():
        raise PretrainedLMError(
            f"pretrained_lm {str(path)!r} is not a local directory with a config.json. neko-gato never "
            "downloads at run time: save a GPT-2 checkpoint with save_pretrained(dir) (and its tokenizer with "
            "tokenizer.save_pretrained(dir)) on a machine with internet and pass that directory."
        )
    config = json.loads((directory / "config.json").read_text())
    if config.get("model_type") != "gpt2":
        raise PretrainedLMError(f"pretrained_lm {path}: only GPT-2 checkpoints are supported, "
                                f"got {config.get('model_type')!r}")
    if not (directory / "model.safetensors").is_file():
        raise PretrainedLMError(f"pretrained_lm {path}: model.safetensors is missing (pytorch_model.bin is not "
                                "read: it would need unpickling); re-save with save_pretrained(dir, "
                                "safe_serialization=True)")
    if not (directory / "tokenizer.json").is_file():
        raise PretrainedLMError(f"pretrained_lm {path}: tokenizer.json is missing (the policy reads text with "
                                "GPT-2's own tokenizer); save it there with tokenizer.save_pretrained(dir)")
    activation = config.get("activation_function", "gelu_new")
    if activation not in GPT2_ACTIVATIONS:
        raise PretrainedLMError(f"pretrained_lm {path}: activation_function {activation!r} is not supported "
                                f"(only {', '.join(GPT2_ACTIVATIONS)}, the tanh GELU our blocks compute)")
    if not config.get("scale_attn_weights", True) or config.get("scale_attn_by_inverse_layer_idx", False):
        raise PretrainedLMError(f"pretrained_lm {path}: only GPT-2's standard attention scaling (1/sqrt(head "
                                "size)) is supported")
    if config.get("n_inner") not in (None, 4 * config["n_embd"]):
        raise PretrainedLMError(f"pretrained_lm {path}: n_inner {config['n_inner']} is not 4 * n_embd, the MLP "
                                "width our blocks have")
    if not config.get("tie_word_embeddings", True):
        raise PretrainedLMError(f"pretrained_lm {path}: its output head is not tied to its token embeddings; ours "
                                "is (the head shares the token table), so its text logits could not be kept")
    return config


def gpt2_fields(path, config: dict) -> dict:
    """The PolicyConfig fields a GPT-2 (``config``: :func:`read_gpt2_config`) sets: its sizes, positions,
    layer-norm epsilon, activation and tokenizer (the directory itself)."""
    return {
        "embed_dim": config["n_embd"], "layers": config["n_layer"], "heads": config["n_head"],
        "positions": "learned", "max_positions": config.get("n_positions", 1024),
        "layer_norm_eps": float(config.get("layer_norm_epsilon", 1e-5)), "activation_fn": "gelu",
        "tokenizer_model_name": str(path),
    }


def load_gpt2(policy, path) -> None:
    """Copy a GPT-2 directory's weights into ``policy`` (built with :func:`gpt2_fields`): blocks (its Conv1D
    weights are stored transposed), final norm, positions, and its token embeddings into the first rows of
    the token table (rows beyond the tokenizer's text range are dropped: no text id reaches them). The
    in-timestep position table is zeroed, so pure text starts as GPT-2 computes it."""
    from safetensors.torch import load_file

    src = {k.removeprefix("transformer."): v for k, v in load_file(str(Path(path) / "model.safetensors")).items()}
    transformer = policy.transformer
    names = {"ln_1": "ln_1", "attn.c_attn": "attn.qkv", "attn.c_proj": "attn.proj", "ln_2": "ln_2",
             "mlp.c_fc": "mlp.fc", "mlp.c_proj": "mlp.proj"}
    with torch.no_grad():
        for i, block in enumerate(transformer.blocks):
            params = dict(block.named_parameters())
            for theirs, ours in names.items():
                for kind in ("weight", "bias"):
                    w = src[f"h.{i}.{theirs}.{kind}"]
                    if kind == "weight" and theirs.startswith(("attn", "mlp")):
                        w = w.t()
                    params[f"{ours}.{kind}"].copy_(w)
        transformer.ln_f.weight.copy_(src["ln_f.weight"])
        transformer.ln_f.bias.copy_(src["ln_f.bias"])
        transformer.wpe.weight.copy_(src["wpe.weight"][: transformer.wpe.num_embeddings])
        rows = min(src["wte.weight"].shape[0], policy.vocab.text_tokens)
        policy.embedding.tokens.weight[:rows].copy_(src["wte.weight"][:rows])
        if policy.embedding.in_step is not None:
            policy.embedding.in_step.weight.zero_()
