"""BabyAI as a suite: data for many levels in one command, many tasks in one model (task tokens past 64, sampling
weights), and the suite's score with rliable's confidence intervals."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gato.agent import Agent
from gato.cli import main
from gato.data.babyai_suites import JAT_LEVELS, episode_counts, level_of, resolve_levels, suite_levels

TINY_FLAGS = ["--embed_dim", "32", "--layers", "1", "--heads", "2", "--resid_mid_channels", "8",
              "--sequence_length", "64", "--batch_size", "4", "--warmup_steps", "2"]


# ----------------------------------------------------------------------------- catalogue


def test_jat_suite_is_39_registered_levels_and_all_leaves_out_what_the_bot_cannot_solve():
    from gato.data.babyai import babyai_levels
    from gato.data.babyai_suites import BOT_UNSOLVED

    assert len(JAT_LEVELS) == len(set(JAT_LEVELS)) == 39
    assert set(JAT_LEVELS) <= set(babyai_levels())
    every = suite_levels("all")
    assert set(JAT_LEVELS) <= set(every) and not set(BOT_UNSOLVED) & set(every)
    assert len(every) == len(babyai_levels()) - len(BOT_UNSOLVED)
    assert resolve_levels(["jat"]) == list(JAT_LEVELS)
    assert resolve_levels(["BabyAI-GoToLocal-v0", "OpenDoor", "GoToLocal"]) == ["GoToLocal", "OpenDoor"]
    with pytest.raises(ValueError, match="did you mean GoToLocal"):
        resolve_levels(["GoToLocl"])
    assert level_of("babyai/GoToLocal-bot-v0") == level_of("babyai/GoToLocal-bot") == "GoToLocal"
    assert level_of("cartpole/scripted") is None


def test_episode_counts_per_level():
    levels = ["GoTo", "BossLevel", "GoToLocal"]
    assert episode_counts(["7"], levels) == {"GoTo": 7, "BossLevel": 7, "GoToLocal": 7}
    assert episode_counts(["GoTo=8", "BossLevel=20", "default=5"], levels) == {"GoTo": 8, "BossLevel": 20,
                                                                                 "GoToLocal": 5}
    assert episode_counts(["GoTo=8", "3"], levels)["GoToLocal"] == 3
    assert episode_counts(None, levels, default=4) == dict.fromkeys(levels, 4)
    with pytest.raises(ValueError, match="not among the levels"):
        episode_counts(["Pickup=3"], levels)
    with pytest.raises(ValueError, match="positive count"):
        episode_counts(["GoTo=many"], levels)


def test_counts_from_a_json_file(tmp_path):
    path = tmp_path / "counts.json"
    path.write_text(json.dumps({"GoTo": 9, "default": 2}))
    assert episode_counts([str(path)], ["GoTo", "Open"]) == {"GoTo": 9, "Open": 2}


# ----------------------------------------------------------------------------- data


@pytest.mark.slow
def test_suite_data_three_levels_with_a_failing_one_reported_and_resumed(capsys):
    """Two small levels are written with their references; KeyCorridor (fetch a key from another room, ~110 bot
    steps) cannot finish within an 8-step bound, so its episodes are dropped as truncated, it is reported, and the
    command fails; a second run keeps the written levels and, with --allow_short, accepts the short one."""
    import minari

    args = ["data", "babyai", "--levels", "GoToObjS4", "OpenRedDoor", "KeyCorridor", "--episodes", "4",
            "KeyCorridor=3", "--max_steps", "8", "--workers", "1"]
    assert main(args) == 1
    captured = capsys.readouterr()
    table = {line.split()[0]: line for line in captured.out.splitlines() if line.split()[:1] in (
        ["GoToObjS4"], ["OpenRedDoor"], ["KeyCorridor"])}
    assert "written" in table["GoToObjS4"] and "4/4" in table["GoToObjS4"]
    assert "written" in table["OpenRedDoor"] and "4/4" in table["OpenRedDoor"]
    assert "SHORT" in table["KeyCorridor"] and "0/3" in table["KeyCorridor"] and "truncated 9" in table["KeyCorridor"]
    assert "KeyCorridor 0/3" in captured.err and "--allow_short" in captured.err
    for level in ("GoToObjS4", "OpenRedDoor"):
        dataset = minari.load_dataset(f"babyai/{level}-bot-v0")
        meta = dataset.storage.metadata
        assert dataset.total_episodes == 4
        assert meta["num_random_episodes"] == 100 and np.isfinite(meta["ref_min_score"])
        assert meta["ref_max_score"] > meta["ref_min_score"]
        assert meta["generator"]["max_steps"] == 8
    assert "babyai/KeyCorridor-bot-v0" not in minari.list_local_datasets()

    assert main([*args, "--allow_short"]) == 0
    out = capsys.readouterr().out
    assert "kept as they were (2): GoToObjS4, OpenRedDoor" in out
    assert "0/3" in out and "SHORT" in out


# ----------------------------------------------------------------------------- many tasks


def test_a_checkpoint_with_64_task_tokens_loads_and_acts_the_same(tmp_path, tiny_policy):
    """A config.json written before PolicyConfig.task_tokens existed (no such key) rebuilds the same vocabulary and
    the same outputs."""
    import torch

    from gato.codec import SpaceCodec
    from gato.envs import make_env
    from gato.policy.gato_policy import GatoPolicy

    model = tiny_policy()
    model.save_pretrained(tmp_path / "ckpt")
    config_path = tmp_path / "ckpt" / "config.json"
    config = json.loads(config_path.read_text())
    assert config.pop("task_tokens") == 64
    config_path.write_text(json.dumps(config))  # as a checkpoint from before the field
    loaded = GatoPolicy.from_pretrained(tmp_path / "ckpt")
    assert loaded.vocab == model.vocab and loaded.vocab.separator == model.vocab.task_offset + 64
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))
    env = make_env("BabyAI-GoToLocal-v0")
    codec = SpaceCodec(env.observation_space, env.action_space, model.vocab, task_id=5)  # a multi-task timestep
    actions = []
    for policy in (model, loaded):
        agent, taken = Agent(policy, codec), []
        agent.reset()
        obs, _ = env.reset(seed=7)
        for _ in range(6):
            action = agent.act(obs)
            taken.append(int(action))
            obs, *_ = env.step(action)
        actions.append(taken)
    assert actions[0] == actions[1]
    env.close()


def test_a_run_of_more_tasks_than_64_reserves_a_token_for_each():
    from gato.training.arguments import TrainingArgs
    from gato.training.run import build_policy

    args = TrainingArgs(control_datasets=[f"babyai/L{i}-bot-v0" for i in range(70)], embed_dim=32, layers=1,
                        heads=2, resid_mid_channels=8)
    policy = build_policy(args, "cpu")
    assert policy.config.task_tokens == policy.vocab.task_tokens == 70
    assert policy.vocab.task(69) == policy.vocab.task_offset + 69
    with pytest.raises(ValueError, match="task_tokens=71"):
        policy.vocab.task(70)
    assert build_policy(TrainingArgs(embed_dim=32, layers=1, heads=2), "cpu").vocab.task_tokens == 64


class _Task:
    def __init__(self, name, lengths):
        self.name = name
        self.episodes = type("E", (), {"lengths": np.asarray(lengths)})()


def test_task_sampling_rules():
    from gato.training.sampling import EXPERT_GAP_FLOOR, control_weights, mix

    tasks = [_Task("a", [5, 5]), _Task("b", [30]), _Task("c", [20, 20])]
    assert control_weights("uniform", tasks).tolist() == [1, 1, 1]
    assert control_weights("uniform", tasks, explicit=[1, 2, 3]).tolist() == [1, 2, 3]
    assert control_weights("data", tasks).tolist() == [10, 30, 40]
    assert control_weights("expert_gap", tasks).tolist() == [1, 1, 1]  # before any evaluation
    last = {"a": {"normalized_score": 1.2}, "b": {"normalized_score": 0.4}, "c": {"success_rate": 0.9}}
    assert control_weights("expert_gap", tasks, last_eval=last) == pytest.approx([EXPERT_GAP_FLOOR, 0.6, 0.1])
    weights = mix(control_weights("data", tasks), [0.2])
    assert weights == pytest.approx([0.1, 0.3, 0.4, 0.2])
    with pytest.raises(ValueError, match="uniform, data, expert_gap"):
        control_weights("greedy", tasks)


def test_task_sampling_flag_is_checked():
    from gato.training.arguments import TrainingArgs

    with pytest.raises(ValueError, match="--task_sampling must be"):
        TrainingArgs(task_sampling="greedy").validate()
    with pytest.raises(ValueError, match="explicit weights"):
        TrainingArgs(control_datasets=["a", "b"], task_weights=[1, 2], task_sampling="data").validate()


# ----------------------------------------------------------------------------- suite score


def test_aggregate_is_rliables():
    from rliable import library, metrics

    from gato.evaluation.suite import aggregate

    scores = np.random.default_rng(1).uniform(0.3, 1.0, size=7)
    got = aggregate(scores, reps=500, seed=3)
    np.random.seed(3)
    fn = lambda x: np.array([metrics.aggregate_mean(x), metrics.aggregate_median(x), metrics.aggregate_iqm(x)])  # noqa: E731
    points, intervals = library.get_interval_estimates({"x": scores[None]}, fn, reps=500, task_bootstrap=True)
    for i, name in enumerate(("mean", "median", "iqm")):
        assert got[name]["value"] == pytest.approx(points["x"][i])
        assert [got[name]["low"], got[name]["high"]] == pytest.approx(intervals["x"][:, i])
        assert got[name]["low"] <= got[name]["value"] <= got[name]["high"]
    assert got["mean"]["low"] < got["mean"]["high"]  # the levels differ, so the interval is not a point
    runs = np.random.default_rng(2).uniform(size=(3, 4))
    several = aggregate(runs, reps=300, seed=0)
    np.random.seed(0)
    _, intervals = library.get_interval_estimates({"x": runs}, fn, reps=300)
    assert [several["iqm"]["low"], several["iqm"]["high"]] == pytest.approx(intervals["x"][:, 2])
    assert several["bootstrap"] == "stratified over runs"


@pytest.mark.slow
def test_two_level_model_eval_prints_the_suite_and_its_aggregate(tmp_path, capsys):
    """Two BabyAI levels train a few steps as one model; `gato eval` prints a row per level, the aggregate with its
    95% interval, writes it into eval.json with the chart, and the aggregate is what rliable computes."""
    from rliable import library, metrics

    from gato.data.babyai import generate_babyai
    from gato.evaluation.suite import REPS

    for level in ("GoToObjS4", "GoToLocalS5N2"):
        generate_babyai(level, 12, workers=1, reference_episodes=10, progress=False)
    runs = tmp_path / "runs"
    assert main(["train", "--control_datasets", "babyai/GoToObjS4-bot-v0", "babyai/GoToLocalS5N2-bot-v0",
                 "--task_sampling", "data", "--training_steps", "3", "--max_minutes", "0", "--eval_episodes", "2",
                 "--eval_envs", "2", "--save_dir", str(runs), "--exp_name", "two", "--report_to", "none",
                 *TINY_FLAGS]) == 0
    capsys.readouterr()
    out_json = tmp_path / "eval.json"
    assert main(["eval", str(runs / "two" / "checkpoint"), "--episodes", "6", "--envs", "3",
                 "--out", str(out_json)]) == 0
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines()]
    assert any(r[:1] == ["GoToObjS4"] and r[-1] == "6" for r in rows)
    assert any(r[:1] == ["GoToLocalS5N2"] and r[-1] == "6" for r in rows)
    for name in ("mean", "median", "iqm"):
        assert any(r[:1] == [name] and r[2].startswith("[") for r in rows), out
    written = json.loads(out_json.read_text())
    saved = written["suite"]  # the layout before domains, kept for its readers
    assert [r["level"] for r in saved["levels"]] == ["GoToLocalS5N2", "GoToObjS4"]
    assert (tmp_path / "eval_babyai.png").stat().st_size > 0 and saved["chart"].endswith("eval_babyai.png")
    assert list(written["domains"]) == ["babyai"]
    assert written["domains"]["babyai"]["aggregate"] == saved["aggregate"]
    scores = np.array([[r["normalized"] for r in saved["levels"]]])
    np.random.seed(0)
    fn = lambda x: np.array([metrics.aggregate_mean(x), metrics.aggregate_median(x), metrics.aggregate_iqm(x)])  # noqa: E731
    points, intervals = library.get_interval_estimates({"x": scores}, fn, reps=REPS, task_bootstrap=True)
    for i, name in enumerate(("mean", "median", "iqm")):
        agg = saved["aggregate"][name]
        assert agg["value"] == pytest.approx(points["x"][i])
        assert [agg["low"], agg["high"]] == pytest.approx(intervals["x"][:, i])


@pytest.mark.slow
def test_sampling_modes_in_a_built_run(tmp_path):
    """--task_sampling data weighs the levels by their timesteps; expert_gap re-weighs them after an evaluation."""
    from gato.data.babyai import generate_babyai
    from gato.training.arguments import TrainingArgs
    from gato.training.run import build_trainer
    from gato.training.sampling import EXPERT_GAP_FLOOR

    for level, n in (("GoToObjS4", 6), ("OpenRedDoor", 12)):
        generate_babyai(level, n, workers=1, reference_episodes=2, progress=False)
    common = dict(control_datasets=["babyai/GoToObjS4-bot-v0", "babyai/OpenRedDoor-bot-v0"], embed_dim=32, layers=1,
                  heads=2, resid_mid_channels=8, sequence_length=64, save_dir=str(tmp_path), report_to=[])
    trainer = build_trainer(TrainingArgs(task_sampling="data", exp_name="data", **common))
    steps = [float(np.sum(t.episodes.lengths)) for t in trainer.tasks]
    assert trainer.weights == pytest.approx(np.array(steps) / sum(steps))
    trainer = build_trainer(TrainingArgs(task_sampling="expert_gap", exp_name="gap", **common))
    assert trainer.weights == pytest.approx([0.5, 0.5])  # nothing evaluated yet
    trainer._reweight({"babyai/GoToObjS4-bot": {"normalized_score": 1.0},
                       "babyai/OpenRedDoor-bot": {"normalized_score": 0.5}})
    assert trainer.weights == pytest.approx(np.array([EXPERT_GAP_FLOOR, 0.5]) / (EXPERT_GAP_FLOOR + 0.5))


def test_without_rliable_the_error_names_the_extra(monkeypatch, tmp_path, capsys):
    import sys

    from gato.cli import report_domains
    from gato.evaluation.scores import interquartile_mean, summary
    from gato.evaluation.suite import MissingExtraError

    monkeypatch.setitem(sys.modules, "rliable", None)  # as if the eval extra were not installed
    with pytest.raises(MissingExtraError, match=r'pip install -e "\.\[eval\]"'):
        interquartile_mean([0.1, 0.5])
    results = {f"babyai/{level}-bot": {"normalized_score": 0.5, "success_rate": 0.5, "episodes": 4.0}
               for level in ("GoToLocal", "OpenDoor")}
    s = summary(results)  # a training run still ends with its table
    assert s["mean_normalized_score"] == 0.5 and np.isnan(s["iqm_normalized_score"])
    assert "[eval]" in s["iqm_unavailable"]
    assert report_domains(results, tmp_path / "c.json") == {}  # not asked for: a note, the per-task table stands
    assert "domain aggregate is skipped" in capsys.readouterr().out
    with pytest.raises(MissingExtraError):
        report_domains(results, tmp_path / "c.json", ["jat"])
