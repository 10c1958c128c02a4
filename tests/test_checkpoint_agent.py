"""A checkpoint is a complete agent: it acts, evaluates and plays with no dataset on disk.

One tiny model is trained (build_trainer, a real BabyAI-bot dataset), saved, and its actions and
evaluation recorded with the data present; then the datasets folder goes and a fresh process loads the
checkpoint alone. Older checkpoints (task specs without a codec) name the dataset they still need.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SEEDS = [1_000_000, 1_000_001]
SAMPLING_SEED = 7

# What a process measures of a checkpoint's agent: its argmax and seeded sampled actions over whole
# episodes of fresh envs, and a stochastic evaluation (varied returns, not a constant policy's).
MEASURE = """
import json, sys, torch
from gato.agent import Agent
from gato.tasks.registry import load_agent

def actions(agent, seeds, sampling_seed):
    out = []
    env = agent.task.make_env()
    for seed in seeds:
        obs, _ = env.reset(seed=seed)
        agent.reset()
        if agent.generator is not None:
            agent.generator.manual_seed(sampling_seed)
        done, taken = False, []
        while not done:
            action = agent.act(obs)
            taken.append(int(action))
            obs, _, terminated, truncated, _ = env.step(action)
            done = terminated or truncated
        out.append(taken)
    return out

def measure(policy, task, seeds, sampling_seed):
    greedy = actions(Agent(policy, task), seeds, sampling_seed)
    sampled = actions(Agent(policy, task, deterministic=False, generator=torch.Generator().manual_seed(0)), seeds,
                      sampling_seed)
    evaluation = task.evaluate(policy, 4, deterministic=False, promptless_eval=True, n_envs=2)
    return {"greedy": greedy, "sampled": sampled, "evaluation": evaluation, "codec_tokens": task.codec.tokens_per_step}

if __name__ == "__main__":
    checkpoint, name = sys.argv[1], sys.argv[2]
    agent = load_agent(checkpoint, task=name)
    print(json.dumps(measure(agent.policy, agent.task, SEEDS, SAMPLING_SEED)))
""".replace(
    "SEEDS", repr(SEEDS)).replace("SAMPLING_SEED", repr(SAMPLING_SEED))


def _measure_module(tmp: Path) -> Path:
    path = tmp / "measure_agent.py"
    path.write_text(MEASURE)
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny model trained and saved on a 4-episode GoToRedBall dataset; what its agent does with the data
    present; then the datasets folder is moved away (kept in ``backup`` for the old-format test)."""
    from gato.training.arguments import TrainingArgs
    from gato.training.run import build_trainer

    root = tmp_path_factory.mktemp("checkpoint_agent")
    minari_dir, backup = root / "minari", root / "minari-backup"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MINARI_DATASETS_PATH", str(minari_dir))
        from gato.data.babyai import generate_babyai

        report = generate_babyai("GoToRedBall", 4, workers=1, reference_episodes=4, progress=False)
        args = TrainingArgs(embed_dim=32, layers=1, heads=2, dropout=0.0, patch_size=4, resid_mid_channels=8,
                            continuous_tokens=64, discrete_tokens=64, sequence_length=64, batch_size=4,
                            warmup_steps=1, training_steps=3, max_minutes=0, log_every=3, log_eval_freq=3,
                            eval_episodes=2, eval_envs=1, save_model=True, device="cpu", report_to="none",
                            control_datasets=[report.dataset_id], save_dir=str(root / "runs"), exp_name="tiny")
        args.validate()
        trainer = build_trainer(args)
        trainer.train()
        checkpoint = trainer.run_dir / "checkpoint"
        task = trainer.tasks[0]
        assert type(task).__name__ == "ControlTask" and task.episodes is not None  # built from its dataset
        sys.path.insert(0, str(_measure_module(root).parent))
        try:
            import measure_agent
        finally:
            sys.path.pop(0)
        from gato.policy.gato_policy import GatoPolicy

        with_data = measure_agent.measure(GatoPolicy.from_pretrained(checkpoint), task, SEEDS, SAMPLING_SEED)
    shutil.move(str(minari_dir), str(backup))
    return {"checkpoint": checkpoint, "task": task.name, "dataset_id": report.dataset_id, "with_data": with_data,
            "backup": backup, "root": root, "history": trainer.history}


@pytest.mark.slow
def test_a_fresh_process_without_datasets_acts_and_evaluates_as_with_them(trained, tmp_path):
    env = {**os.environ, "MINARI_DATASETS_PATH": str(tmp_path / "no-datasets-here"), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, str(trained["root"] / "measure_agent.py"), str(trained["checkpoint"]),
                          trained["task"]], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert not (tmp_path / "no-datasets-here").exists()  # nothing was read, nothing made
    without = json.loads(out.stdout.strip().splitlines()[-1])
    with_data = trained["with_data"]
    assert without["codec_tokens"] == with_data["codec_tokens"]
    assert without["greedy"] == with_data["greedy"]
    assert without["sampled"] == with_data["sampled"]
    assert without["evaluation"] == with_data["evaluation"]
    assert "normalized_score" in without["evaluation"]  # the reference returns came with the checkpoint
    # the sampled episodes are not one repeated action: the comparison says something about the policy
    assert len({a for episode in with_data["sampled"] for a in episode}) > 1


@pytest.mark.slow
def test_gato_eval_and_play_need_no_dataset(trained, tmp_path, capsys):
    from gato.cli import main

    checkpoint = str(trained["checkpoint"])
    assert main(["eval", checkpoint, "--episodes", "2", "--envs", "1", "--out", str(tmp_path / "eval.json")]) == 0
    result = json.loads((tmp_path / "eval.json").read_text())["results"][trained["task"]]
    assert result["episodes"] == 2.0 and "normalized_score" in result
    capsys.readouterr()
    assert main(["play", checkpoint, "--episodes", "2", "--video", str(tmp_path / "videos")]) == 0
    printed = capsys.readouterr().out
    gifs = sorted((tmp_path / "videos").glob("*.gif"))
    assert [g.name for g in gifs] == [f"babyai_GoToRedBall-bot_{s}.gif" for s in SEEDS]
    assert all(g.read_bytes()[:6] == b"GIF89a" for g in gifs)
    assert "mean return" in printed and str(gifs[0]) in printed
    # play uses eval's seeds with argmax actions: its mean return is eval's
    mean = float(printed.split("mean return ")[1].split()[0])
    assert mean == pytest.approx(result["mean_return"], abs=1e-3)


@pytest.mark.slow
def test_gato_eval_can_start_episodes_where_the_datas_own_started(trained, tmp_path, capsys, monkeypatch):
    import numpy as np

    from gato.cli import main
    from gato.data.episodes import demonstration_seeds, load_minari
    from gato.policy.gato_policy import GatoPolicy
    from gato.seeds import DATA
    from gato.tasks.registry import load_tasks

    checkpoint, dataset_id = str(trained["checkpoint"]), trained["dataset_id"]
    out = tmp_path / "eval.json"
    # the starts are read from the dataset: without it, an error naming it
    assert main(["eval", checkpoint, "--episodes", "2", "--envs", "1", "--starts", "data", "--out", str(out)]) == 2
    assert dataset_id in capsys.readouterr().err and not out.exists()

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(trained["backup"]))
    starts = demonstration_seeds(dataset_id, 4)
    assert len(set(starts)) == 4 and all(s in DATA for s in starts)
    with pytest.raises(ValueError, match="which holds 4"):
        demonstration_seeds(dataset_id, 5)
    policy = GatoPolicy.from_pretrained(checkpoint)
    task = load_tasks(checkpoint, policy.vocab)[0]
    env = task.make_env()
    for seed, episode in zip(starts, load_minari(dataset_id).iterate_episodes()):  # each seed replays its start
        obs, _ = env.reset(seed=seed)
        assert np.array_equal(obs["image"], episode.observations["image"][0])
        assert obs["direction"] == episode.observations["direction"][0]
        assert obs["mission"] == episode.observations["mission"][0]

    records = task.evaluate_part(policy, 3, 0, 1, n_envs=2, starts="data")
    assert sorted(r["seed"] for r in records) == starts[:3]
    assert main(["eval", checkpoint, "--episodes", "3", "--envs", "2", "--starts", "data", "--out", str(out)]) == 0
    assert "starts seen in training" in capsys.readouterr().out
    saved = json.loads(out.read_text())
    assert saved["starts"] == "data" and saved["results"][trained["task"]]["episodes"] == 3.0
    assert saved["results"][trained["task"]] == task.summarize(records)


@pytest.mark.slow
def test_the_checkpoint_folder_is_a_hub_model_repo_with_its_evaluation_in_the_card(trained, no_network):
    from huggingface_hub import ModelCard
    from huggingface_hub.repocard_data import model_index_to_eval_results

    folder = trained["checkpoint"]
    assert {"config.json", "model.safetensors", "README.md"} <= {p.name for p in folder.iterdir()}
    card = ModelCard.load(folder / "README.md")  # a local path: read offline
    assert card.data.library_name == "neko-gato"
    assert "BabyAI-GoToRedBall-v0" in card.data.tags
    name, results = model_index_to_eval_results(card.data.to_dict()["model-index"])
    last = [h for h in trained["history"] if "eval" in h][-1]["eval"][trained["task"]]
    values = {r.metric_type: r.metric_value for r in results}
    assert name == "tiny"
    assert values["normalized_score"] == pytest.approx(last["normalized_score"], abs=1e-4)
    assert values["mean_reward"] == f"{last['mean_return']:.2f} +/- {last['std_return']:.2f}"


def _old_format(trained, tmp_path) -> Path:
    """A copy of the checkpoint whose tasks.json is as checkpoints were written before they carried codecs."""
    old = tmp_path / "old-checkpoint"
    shutil.copytree(trained["checkpoint"], old)
    specs = json.loads((old / "tasks.json").read_text())
    for spec in specs:
        for key in ("codec", "env_spec", "reference"):
            spec.pop(key)
    (old / "tasks.json").write_text(json.dumps(specs))
    return old


@pytest.mark.slow
def test_an_old_checkpoint_names_the_dataset_it_still_needs(trained, tmp_path, capsys, monkeypatch):
    from gato.cli import main

    old = _old_format(trained, tmp_path)
    assert main(["eval", str(old), "--episodes", "1", "--envs", "1", "--out", str(tmp_path / "e.json")]) == 2
    message = capsys.readouterr().err
    assert trained["dataset_id"] in message and "gato data babyai --level GoToRedBall" in message
    assert "saved before checkpoints carried their codecs" in message
    # with its dataset local again it loads as before, from the data
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(trained["backup"]))
    from gato.tasks.registry import load_agent

    agent = load_agent(old, task=trained["task"])
    assert agent.task.episodes is not None
    assert agent.task.codec.tokens_per_step == trained["with_data"]["codec_tokens"]


@pytest.mark.slow
def test_a_task_without_data_refuses_to_sample_naming_its_dataset(trained):
    import numpy as np

    from gato.tasks.control_task import DataRequiredError
    from gato.tasks.registry import load_agent

    agent = load_agent(trained["checkpoint"])  # its only task
    with pytest.raises(DataRequiredError, match=trained["dataset_id"]):
        agent.task.sample_batch(2, agent.policy.vocab, rng=np.random.default_rng(0))


def test_a_codec_round_trips_through_json_with_its_key_order_overrides_and_text_budgets():
    from collections import OrderedDict

    import numpy as np
    from gymnasium import spaces

    from gato.codec import SpaceCodec
    from gato.codec_io import codec_from_dict, codec_to_dict
    from gato.vocab import Vocab

    vocab = Vocab(discrete_tokens=64, continuous_tokens=64)
    obs_space = spaces.Dict(OrderedDict([  # not sorted: the token order follows this order
        ("z", spaces.Box(-1.0, 1.0, (3,), np.float32)),
        ("frame", spaces.Box(0, 255, (12, 12, 3), np.uint8)),
        ("a", spaces.Tuple((spaces.Discrete(5, start=2), spaces.Text(20)))),
    ]))
    action_space = spaces.Tuple((spaces.MultiDiscrete([3, 4]), spaces.Box(-2.0, 2.0, (2,), np.float32)))
    overrides = {"frame": {"kind": "image", "pool": 2, "pool_mode": "max", "low": 0.0, "high": 6.0, "one_hot": True}}
    codec = SpaceCodec(obs_space, action_space, vocab, 4, overrides, {"a.1": 7}, task_id=3)
    saved = json.loads(json.dumps(codec_to_dict(codec)))  # through real JSON text
    again = codec_from_dict(saved, vocab)
    assert list(again.observation_space.spaces) == ["z", "frame", "a"]
    assert again.layout() == codec.layout() and again.tokens_per_step == codec.tokens_per_step
    obs_space.seed(0)
    batch = [obs_space.sample() for _ in range(3)]
    stacked = {"z": np.stack([b["z"] for b in batch]), "frame": np.stack([b["frame"] % 7 for b in batch]),
               "a": (np.array([b["a"][0] for b in batch]), tuple(b["a"][1] for b in batch))}
    for x, y in zip(codec.encode_observations(stacked, 3), again.encode_observations(stacked, 3)):
        np.testing.assert_array_equal(x, y)
    tokens = np.array([[vocab.discrete_offset + 2, vocab.discrete_offset + 1, vocab.continuous_offset + 9,
                        vocab.continuous_offset + 50]])
    for x, y in zip(codec.decode_actions(tokens), again.decode_actions(tokens)):
        np.testing.assert_array_equal(x, y)
    # a vocabulary other than the saved one is refused: the tokens would mean other things
    from gato.codec import VocabMismatchError

    with pytest.raises(VocabMismatchError, match="discrete_tokens"):
        codec_from_dict(saved, Vocab(discrete_tokens=128, continuous_tokens=64))


def test_every_set_field_spec_field_is_saved_by_name():
    import dataclasses

    from gato.codec import FieldSpec
    from gato.codec_io import field_spec_from_dict, field_spec_to_dict

    values = {"kind": "image", "low": 0.0, "high": 3.0, "channels_first": True, "tokens": 4, "one_hot": True,
              "pool": 2, "pool_mode": "max"}
    spec = FieldSpec(**{f.name: values.get(f.name) for f in dataclasses.fields(FieldSpec)})
    saved = field_spec_to_dict(spec)
    assert set(saved) == {f.name for f in dataclasses.fields(FieldSpec) if getattr(spec, f.name) is not None}
    assert field_spec_from_dict(saved) == spec
