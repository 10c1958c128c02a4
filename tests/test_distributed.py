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
trainer.close()
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


# Runs in each process: trains several runs one after the other and records, per run, what every process decided
# (step, clock, evaluations, DAgger rounds), the tokens it trained on, and on the main process the logged tokens/s
# with the training time each was logged at and how many checkpoints were written.
GRID_WORKER = """
import json, sys
from gato.training.arguments import TrainingArgs
from gato.training.run import build_trainer

out, runs = sys.argv[1], json.loads(sys.argv[2])
for i, flags in enumerate(runs):
    trainer = build_trainer(TrainingArgs(**flags))
    rank = trainer.accelerator.process_index
    tokens, logged, saves = [], [], []
    step, log, save = trainer.train_step, trainer.accelerator.log, trainer.save
    def recording_step():
        result = step()
        tokens.append(result["tokens"])
        return result
    def recording_log(values, step=None, **kw):
        if "train/tokens_per_s" in values:
            logged.append([step, values["train/tokens_per_s"], trainer.train_seconds])
        return log(values, step=step, **kw)
    def recording_save():
        saves.append(trainer.step)
        return save()
    trainer.train_step, trainer.accelerator.log, trainer.save = recording_step, recording_log, recording_save
    results = trainer.train()
    with open(f"{out}/run{i}_rank{rank}.json", "w") as f:
        json.dump({"step": trainer.step, "seconds": trainer.train_seconds, "dagger": trainer.dagger_rounds_done,
                   "last_eval_step": trainer.last_eval_step, "eval": results, "tokens": tokens, "logged": logged,
                   "saves": saves}, f)
trainer.close()  # the last run ends the process group, as `gato train` does
"""

GRID_BASE = {"embed_dim": 32, "layers": 1, "heads": 2, "continuous_tokens": 64, "discrete_tokens": 64,
             "sequence_length": 64, "batch_size": 8, "eval_episodes": 2, "eval_envs": 1, "report_to": ["none"],
             "control_datasets": ["cartpole/scripted-v0"], "dagger_episodes": [2], "save_every_minutes": 0,
             "log_every": 1}
GRID = [
    # the issue's run: the last step is an evaluation step
    {"training_steps": 20, "max_minutes": 0, "log_eval_freq": 20},
    # evaluations every 7 steps, a DAgger round, one checkpoint at the end only, logs every 3 steps
    {"training_steps": 21, "max_minutes": 0, "log_eval_freq": 7, "save_mode": "last", "dagger_rounds": 1,
     "log_every": 3},
    # a time budget: evaluations at its fifths, two DAgger rounds and state saves all decided by the clock
    {"training_steps": 10**6, "max_minutes": 0.04, "log_eval_freq": 0, "save_every_minutes": 0.004,
     "dagger_rounds": 2, "log_every": 5, "save_mode": "last"},
    # evaluations at each fifth of the steps, DAgger twice, state every 4 steps
    {"training_steps": 15, "max_minutes": 0, "log_eval_freq": 0, "dagger_rounds": 2, "save_every_steps": 4,
     "log_every": 2},
    # a time budget the steps end first: no evaluation before the end, state saved by the clock
    {"training_steps": 12, "max_minutes": 30, "log_eval_freq": 0, "save_every_minutes": 0.0005, "log_every": 4},
]


@pytest.fixture(scope="module")
def cartpole_expert_root(tmp_path_factory):
    """A Minari root holding ``cartpole/scripted-v0`` (4 expert episodes of at most 60 steps): its expert can
    label states, so DAgger rounds collect real corrections."""
    from gato.data.recipes import generate

    root = tmp_path_factory.mktemp("expert_minari")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MINARI_DATASETS_PATH", str(root))
        generate("cartpole", 4, reference_episodes=2, workers=1, progress=False, max_episode_steps=60)
    return root


def torchrun(args: list[str], root, timeout: int = 300) -> subprocess.CompletedProcess:
    """``args`` run by two torchrun processes (gloo) reading the Minari ``root``."""
    env = {**os.environ, "MINARI_DATASETS_PATH": str(root), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "--no_python", sys.executable, *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.slow
def test_processes_agree_on_every_decision_over_a_grid_of_runs(cartpole_expert_root, tmp_path):
    runs = [{**GRID_BASE, **flags, "save_dir": str(tmp_path / "runs"), "exp_name": f"run{i}"}
            for i, flags in enumerate(GRID)]
    run = torchrun(["-c", GRID_WORKER, str(tmp_path), json.dumps(runs)], cartpole_expert_root)
    assert run.returncode == 0, run.stderr[-3000:]
    for i, flags in enumerate(runs):
        ranks = [json.loads((tmp_path / f"run{i}_rank{r}.json").read_text()) for r in (0, 1)]
        decided = [{k: r[k] for k in ("step", "seconds", "dagger", "last_eval_step", "eval")} for r in ranks]
        assert decided[0] == decided[1], (i, decided)
        main = ranks[0]
        assert main["step"] == flags["training_steps"] or main["seconds"] >= flags["max_minutes"] * 60, i
        assert main["last_eval_step"] == main["step"]  # the run ends evaluated, once
        if flags["max_minutes"]:  # a round's own time counts: on a busy machine it can use up the budget
            assert main["dagger"] <= flags.get("dagger_rounds", 0), i
        else:
            assert main["dagger"] == flags.get("dagger_rounds", 0), i
        assert ranks[1]["saves"] == [] and ranks[1]["logged"] == []  # only the main process writes and logs
        # one checkpoint, of the last step; with save_mode last it is written once
        run_dir = tmp_path / "runs" / flags["exp_name"]
        assert sorted(p.name for p in run_dir.iterdir() if p.is_dir()) == ["checkpoint", "state"], i
        history = json.loads((run_dir / "checkpoint" / "history.json").read_text())
        evals = [e["step"] for e in history if "eval" in e]
        assert evals[-1] == main["step"] and len(evals) == len(set(evals)), (i, evals)
        assert main["saves"] == ([main["step"]] if flags.get("save_mode") == "last" else evals), i
        assert json.loads((run_dir / "state" / "state.json").read_text())["processes"] == 2
        # logged tokens/s: both processes' tokens of the window over the training time it took
        assert len(main["logged"]) == main["step"] // flags["log_every"], i
        previous_step, previous_seconds = 0, 0.0
        for step, rate, seconds in main["logged"]:
            tokens = sum(sum(r["tokens"][previous_step:step]) for r in ranks)
            assert rate == pytest.approx(tokens / (seconds - previous_seconds), rel=1e-12), (i, step)
            previous_step, previous_seconds = step, seconds


@pytest.mark.slow
def test_the_issues_two_process_run_exits_cleanly(cartpole_expert_root, tmp_path):
    """The command of issue 26, whose last step is an evaluation step, through the CLI."""
    run = torchrun(["-m", "gato.cli", "train", "--control_datasets", "cartpole/scripted-v0", "--embed_dim", "32",
                    "--layers", "1", "--heads", "2", "--sequence_length", "128", "--batch_size", "8",
                    "--training_steps", "20", "--max_minutes", "0", "--log_eval_freq", "20", "--eval_episodes", "4",
                    "--save_dir", str(tmp_path / "runs"), "--exp_name", "issue", "--report_to", "none"],
                   cartpole_expert_root)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "normalised score" in run.stdout
    history = json.loads((tmp_path / "runs" / "issue" / "checkpoint" / "history.json").read_text())
    assert [e["step"] for e in history if "eval" in e] == [20]
