"""Exact resume: a run killed (SIGKILL, a real process) and resumed ends bit for bit where an unbroken run ends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from gato.cli import main

STEPS = 8
FLAGS = ["--control_datasets", "test/cartpole-random-v0", "--embed_dim", "32", "--layers", "1", "--heads", "2",
         "--dropout", "0.1", "--patch_size", "4", "--resid_mid_channels", "8", "--continuous_tokens", "64",
         "--discrete_tokens", "64", "--sequence_length", "64", "--batch_size", "4", "--warmup_steps", "2",
         "--training_steps", str(STEPS), "--max_minutes", "0", "--log_every", "1", "--eval_episodes", "1",
         "--eval_envs", "1", "--log_eval_freq", "100", "--report_to", "none", "--device", "cpu",
         "--save_every_minutes", "0", "--save_every_steps", str(STEPS // 4)]

# Runs `gato train` in this process and SIGKILLs it during the third directory swap, the third state save (step 6;
# no checkpoint is written before the end), after the new state's files are written and before they are swapped
# in: the state on disk is then the one of step 4 (STEPS / 2).
KILLER = """
import os, signal, sys
import gato.atomic as atomic
real, calls = atomic.replace_dir, []
def replace_dir(new, target):
    calls.append(new)
    if len(calls) == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    real(new, target)
atomic.replace_dir = replace_dir
from gato.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _weights(run_dir):
    return load_file(str(run_dir / "checkpoint" / "model.safetensors"))


def _losses(run_dir):
    history = json.loads((run_dir / "checkpoint" / "history.json").read_text())
    return [(h["step"], h["loss"]) for h in history if "loss" in h]


def _kill_and_resume(runs, flags):
    """An unbroken run and a run SIGKILLed during its step-6 state save, then resumed: (unbroken, resumed) dirs."""
    assert main(["train", *flags, "--save_dir", str(runs), "--exp_name", "unbroken"]) == 0
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    killed = subprocess.run([sys.executable, "-c", KILLER, "train", *flags, "--save_dir", str(runs),
                             "--exp_name", "killed"], env=env, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    # The kill came during a state write: the previous state (step 4) is the one in place, whole.
    state = json.loads((runs / "killed" / "state" / "state.json").read_text())
    assert state["step"] == STEPS // 2
    assert not (runs / "killed" / "checkpoint").exists()
    assert main(["train", "--resume", str(runs / "killed")]) == 0
    return runs / "unbroken", runs / "killed"


def _assert_identical(unbroken, resumed):
    a, b = _weights(unbroken), _weights(resumed)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert _losses(resumed) == _losses(unbroken)
    assert [s for s, _ in _losses(unbroken)] == list(range(1, STEPS + 1))


@pytest.mark.slow
def test_a_run_killed_mid_way_and_resumed_ends_bitwise_equal_to_an_unbroken_run(cartpole_dataset, tmp_path,
                                                                                 session_minari_root, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(session_minari_root))
    _assert_identical(*_kill_and_resume(tmp_path / "runs", FLAGS))


@pytest.mark.slow
def test_a_dagger_run_resumes_with_the_episodes_its_rounds_added(babyai_dataset, tmp_path, session_minari_root,
                                                                 monkeypatch):
    """The DAgger round at step 4 (1/2 of the run) adds bot-labelled BabyAI episodes (Dict observations with
    mission strings) before the step-4 state is saved; the resumed run must train on them too."""
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(session_minari_root))
    flags = [*FLAGS, "--control_datasets", babyai_dataset.spec.dataset_id, "--sequence_length", "128",
             "--dagger_rounds", "1", "--dagger_episodes", "2"]
    unbroken, resumed = _kill_and_resume(tmp_path / "runs", flags)
    state = json.loads((resumed / "state" / "state.json").read_text())
    assert state["dagger_rounds_done"] == 1
    assert list((resumed / "state").glob("added_0_0.safetensors"))
    _assert_identical(unbroken, resumed)


def test_resume_refuses_a_flag_that_differs_from_the_saved_run_and_a_run_without_state(tmp_path, capsys):
    from gato.training.arguments import TrainingArgs

    run = tmp_path / "runs" / "r"
    (run / "state").mkdir(parents=True)
    (run / "state" / "state.json").write_text("{}")
    (run / "state" / "training_args.json").write_text(json.dumps(TrainingArgs(batch_size=4).to_dict()))
    assert main(["train", "--resume", str(run), "--batch_size", "8"]) == 2
    err = capsys.readouterr().err
    assert "--resume continues" in err and "drop --batch_size" in err
    assert main(["train", "--resume", str(tmp_path / "nothing")]) == 2
    assert "no saved training state" in capsys.readouterr().err


def test_resume_from_the_state_folder_continues_the_run_it_belongs_to(tmp_path, capsys):
    """--resume runs/NAME/state is the run runs/NAME (its outputs stay there), not a run named "state"."""
    from gato.cli import build_parser, resumed_args
    from gato.training.arguments import TrainingArgs

    run = tmp_path / "runs" / "r"
    (run / "state").mkdir(parents=True)
    (run / "state" / "state.json").write_text("{}")
    (run / "state" / "training_args.json").write_text(json.dumps(TrainingArgs(batch_size=4).to_dict()))
    args = resumed_args(build_parser().parse_args(["train", "--resume", str(run / "state")]))
    assert (args.save_dir, args.exp_name, args.batch_size) == (str(run.parent), "r", 4)
    assert (args.constant_text, args.film_carry) == ("window", True)
    # a run saved before missions were read once per window goes on with the mission in every timestep
    old = {k: v for k, v in TrainingArgs(batch_size=4).to_dict().items() if k not in ("constant_text", "film_carry")}
    (run / "state" / "training_args.json").write_text(json.dumps(old))
    args = resumed_args(build_parser().parse_args(["train", "--resume", str(run / "state")]))
    assert (args.constant_text, args.film_carry) == ("step", False)
