"""Two real CPU processes (torchrun, gloo) train one model: DDP keeps them equal, each samples its own batches,
evaluation is split across them and gathered, only the main process writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

# Runs in each process: records the batches it trained on, its final parameters and the gathered evaluation.
WORKER = """
import hashlib, json, sys
import torch
from gato.training.arguments import TrainingArgs
from gato.training.run import build_trainer

out, flags = sys.argv[1], json.loads(sys.argv[2])
trainer = build_trainer(TrainingArgs(**flags))
batches, sample = [], trainer.sample_batch
def recording(n):
    batch = sample(n)
    batches.append(hashlib.sha1(batch.tokens.tobytes()).hexdigest())
    return batch
trainer.sample_batch = recording
results = trainer.train()
params = hashlib.sha1(b"".join(p.detach().numpy().tobytes() for p in trainer.policy.parameters())).hexdigest()
rank = trainer.accelerator.process_index
with open(f"{out}/rank{rank}.json", "w") as f:
    json.dump({"processes": trainer.accelerator.num_processes, "batches": batches, "params": params,
               "eval": results, "rows": trainer.micro_batch_size()}, f)
"""

FLAGS = {"embed_dim": 32, "layers": 1, "heads": 2, "patch_size": 4, "resid_mid_channels": 8,
         "continuous_tokens": 64, "discrete_tokens": 64, "sequence_length": 64, "batch_size": 8,
         "training_steps": 4, "max_minutes": 0, "log_every": 1, "eval_episodes": 5, "eval_envs": 1,
         "log_eval_freq": 100, "report_to": ["none"], "save_every_minutes": 0, "save_every_steps": 2,
         "control_datasets": ["test/cartpole-random-v0"], "exp_name": "ddp"}


@pytest.mark.slow
def test_two_processes_train_one_model_and_split_evaluation(cartpole_dataset, session_minari_root, tmp_path,
                                                            monkeypatch):
    from gato.policy.gato_policy import GatoPolicy
    from gato.tasks.registry import load_tasks

    flags = {**FLAGS, "save_dir": str(tmp_path / "runs")}
    env = {**os.environ, "MINARI_DATASETS_PATH": str(session_minari_root), "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          "--no_python", sys.executable, "-c", WORKER, str(tmp_path),
                          json.dumps(flags)], env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["processes"] for r in ranks] == [2, 2]
    assert [r["rows"] for r in ranks] == [4, 4]  # the global batch of 8, split
    assert ranks[0]["params"] == ranks[1]["params"]  # gradients were averaged: one model
    assert len(ranks[0]["batches"]) == 4 and not set(ranks[0]["batches"]) & set(ranks[1]["batches"])
    assert ranks[0]["eval"] == ranks[1]["eval"]

    # The gathered evaluation is the one-process evaluation of the saved model, episode seeds and all.
    checkpoint = tmp_path / "runs" / "ddp" / "checkpoint"
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(session_minari_root))
    policy = GatoPolicy.from_pretrained(checkpoint)
    [task] = load_tasks(checkpoint, policy.vocab)
    alone = task.evaluate(policy, n_iterations=5, n_envs=1)
    assert ranks[0]["eval"]["test/cartpole-random"] == pytest.approx(alone, abs=0, rel=0)
    assert alone["episodes"] == 5.0
    # Only the main process wrote: one state, one checkpoint, holding both processes' generators.
    state = json.loads((tmp_path / "runs" / "ddp" / "state" / "state.json").read_text())
    assert state["processes"] == 2 and len(state["rngs"]) == 2
    assert sorted(p.name for p in (tmp_path / "runs" / "ddp" / "state").glob("rng_*")) == [
        "rng_0.safetensors", "rng_1.safetensors"]
