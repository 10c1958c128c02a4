"""Sharded training (``--fsdp``): torch's FSDP2 (``fully_shard``) over every process, on CPU (gloo) or GPUs.

Each transformer block is one shard group and the rest of the policy (embedding, patch encoder, final norm)
the root group: a process holds ``1/N`` of every parameter, gradient and optimizer moment, and gathers one
block's full weights only while that block runs. The parameters become DTensors.

Why not Accelerate's FSDP: with ``cpu=True`` Accelerate 1.15 wraps the model in DDP without a word, and FSDP1's
full state dict with CPU offload segfaults in torch 2.13. So the policy is sharded here and never handed to
``accelerator.prepare``; Accelerate still starts the process group and runs the trackers. The optimizer must be
made after :func:`shard` (it holds the sharded parameters).

Whole-model views, for what needs one process's full copy:

- :func:`full_state` / :func:`load_full_state`: the resumable state (``gato.training.state``) as full state dicts,
  held by rank 0 on the CPU, and loaded back by broadcasting from rank 0;
- :func:`unsharded_copy`: a plain policy with the full weights on every process, for evaluation, DAgger and the
  checkpoint (``GatoPolicy.save_pretrained``).
"""

from __future__ import annotations

import torch
from torch import nn


def is_sharded(model: nn.Module) -> bool:
    """Whether ``model`` was sharded by :func:`shard` (FSDP2)."""
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def shard(model: nn.Module, device: torch.device, num_processes: int, bf16: bool = False) -> nn.Module:
    """Shard ``model`` (a GatoPolicy) in place over ``num_processes`` processes: each transformer block, then the
    root. ``bf16`` (GPUs): parameters are gathered and used in bfloat16, gradients reduced in float32, and the
    sharded parameters the optimizer steps stay float32. Needs the process group started (Accelerate does)."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    mesh = init_device_mesh(device.type, (num_processes,))
    precision = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if bf16 else \
        MixedPrecisionPolicy()
    for block in model.transformer.blocks:
        fully_shard(block, mesh=mesh, mp_policy=precision)
    fully_shard(model, mesh=mesh, mp_policy=precision)
    return model


def reduce_unused(model: nn.Module, any_process_used_all: bool) -> None:
    """Before a step's backward: whether parameters this process did not use (the patch encoder, in a step whose
    rows here have no image) take part in the gradient reduction with zeros. They must when another process used
    them, else the processes reduce different tensors and hang; when no process used them they keep no
    gradient at all, as with DDP (AdamW then leaves them untouched, as an unsharded run does)."""
    model.set_reduce_scatter_unused_params(any_process_used_all)


def _options(**kw):
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, **kw)


def full_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> tuple[dict, dict]:
    """The model's and the optimizer's full state dicts, on rank 0's CPU (other ranks get empty dicts). Every
    process must call it: the shards are gathered. The optimizer's is keyed by parameter name."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

    options = _options(cpu_offload=True)
    return get_model_state_dict(model, options=options), get_optimizer_state_dict(model, optimizer, options=options)


def load_full_state(model: nn.Module, optimizer: torch.optim.Optimizer, model_state: dict,
                    optimizer_state: dict) -> None:
    """Load full state dicts that rank 0 holds (the others pass empty dicts) into the sharded ``model`` and its
    ``optimizer``: rank 0 broadcasts, each process keeps its shard."""
    from torch.distributed.checkpoint.state_dict import set_model_state_dict, set_optimizer_state_dict

    set_model_state_dict(model, model_state, options=_options(broadcast_from_rank0=True))
    # strict=False: a parameter that never had a gradient (the patch encoder in a run without images) has no AdamW
    # state in the saved optimizer, as in the one it was saved from; the model's load above stays strict.
    set_optimizer_state_dict(model, optimizer, optimizer_state, options=_options(broadcast_from_rank0=True,
                                                                                 strict=False))


def unsharded_copy(model: nn.Module) -> nn.Module:
    """A plain (unsharded) policy with ``model``'s full weights, on every process (every one must call it).

    Evaluation and DAgger run on such a copy rather than on the sharded model: a sharded forward pass gathers
    each block from every process, so all of them would have to run the same forward passes in lock step,
    while each plays its own share of the episodes, which end at different times. The copy costs one full model
    per process while it lives (the trainer drops it at the next training step); sharding is for the training
    memory (gradients and AdamW's moments), which evaluation does not need."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict
    from torch.distributed.fsdp import FSDPModule

    state = get_model_state_dict(model, options=_options())  # full tensors on every process
    plain_class = next(c for c in type(model).__mro__ if not issubclass(c, FSDPModule))  # fully_shard subclassed it
    copy = plain_class(model.config, device=next(iter(state.values())).device)
    copy.load_state_dict(state)
    return copy.eval()
