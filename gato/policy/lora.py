"""LoRA on the policy's transformer through ``peft`` (``PolicyConfig.lora_r > 0``).

Adapters go on every attention and MLP linear layer (``qkv``, ``proj``, ``fc``). Then every base weight of
the transformer (blocks, norms, learned positions) and the text rows of the token table are frozen with
``requires_grad=False`` (so AdamW's decoupled weight decay leaves them alone too): what trains is the
adapters and everything the language model did not have (the non-text rows of the token table, the value
embedding, the patch encoder, the in-timestep and patch position tables). A checkpoint holds the base
weights and the adapters unmerged (``...qkv.base_layer.weight``, ``...qkv.lora_A.default.weight``): config.json
rebuilds the same modules, so it loads without the GPT-2 directory.
"""

from __future__ import annotations

from torch import nn

LORA_TARGETS = ["qkv", "proj", "fc"]
"""Names of the transformer's linear layers that get adapters (attention and MLP)."""


def add_lora(policy, r: int, alpha: float, dropout: float) -> None:
    """Inject LoRA adapters (rank ``r``) into ``policy.transformer`` and freeze what LoRA keeps fixed."""
    from peft import LoraConfig, inject_adapter_in_model  # heavy: imported only when LoRA is on

    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(LORA_TARGETS),
                        bias="none")
    inject_adapter_in_model(config, policy.transformer)
    for name, p in policy.transformer.named_parameters():
        p.requires_grad_("lora_" in name)
    policy.embedding.freeze_rows(policy.vocab.text_tokens)


def trainable_parameter_names(model: nn.Module) -> list[str]:
    """Names of the parameters that train (``requires_grad``), in order."""
    return [name for name, p in model.named_parameters() if p.requires_grad]
