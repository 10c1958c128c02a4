"""Suites of every domain: which domain a task is in, and a checkpoint over BabyAI levels and Meta-World tasks
evaluated with one aggregate per domain (normalised score and success rate), each what rliable computes on the
same scores. Real envs, real Minari datasets in the test's own root."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gato.cli import main
from gato.data.suites import SUITES, domain_of, member_of, suite_domain, suite_members

LEVELS = ("GoToObjS4", "GoToLocalS5N2")
TASKS = ("reach-v3", "push-v3")
STEPS = 80  # Meta-World episodes capped as tests/test_metaworld.py does (both scripted policies succeed by ~70)
TINY_FLAGS = ["--embed_dim", "32", "--layers", "1", "--heads", "2", "--resid_mid_channels", "8",
              "--sequence_length", "128", "--batch_size", "4", "--warmup_steps", "1"]


def test_a_task_name_or_dataset_id_maps_to_its_domain():
    assert member_of("babyai/GoToLocal-bot-v0") == member_of("babyai/GoToLocal-bot") == ("babyai", "GoToLocal")
    assert member_of("metaworld/reach-v3-scripted-v0") == ("metaworld", "reach-v3")
    assert domain_of("metaworld/push-v3-scripted") == "metaworld"
    assert domain_of("cartpole/scripted") is None and domain_of("text/tiny") is None
    assert {suite: suite_domain(suite) for suite in SUITES} == {"jat": "babyai", "all": "babyai",
                                                              "mt10": "metaworld", "mt50": "metaworld"}
    assert len(suite_members("jat")) == 39
    with pytest.raises(ValueError, match="mt10, mt50"):
        suite_domain("mt20")


def test_metaworld_suites_are_metaworlds_own_lists():
    pytest.importorskip("metaworld")
    from metaworld.env_dict import MT10_V3, MT50_V3

    assert suite_members("mt10") == list(MT10_V3)
    assert suite_members("mt50") == list(MT50_V3) and len(suite_members("mt50")) == 50


def _results(domain_scores: dict) -> dict:
    return {name: {"normalized_score": s, "success_rate": s > 0.5, "episodes": 4, "mean_return": s,
                   "std_return": 0.1, "expert_return": 1.0, "random_return": 0.0} for name, s in domain_scores.items()}


def test_domains_are_reported_from_two_tasks_or_when_a_suite_names_them():
    pytest.importorskip("rliable")
    from gato.evaluation.suite import domain_reports

    results = _results({"babyai/GoToLocal-bot": 0.9, "babyai/OpenDoor-bot": 0.4,
                        "metaworld/reach-v3-scripted": 0.7, "CartPole-v1": 1.0})
    reports = domain_reports(results, reps=200)
    assert list(reports) == ["babyai"]  # one Meta-World task is no suite
    assert [r["name"] for r in reports["babyai"]["rows"]] == ["GoToLocal", "OpenDoor"]
    assert reports["babyai"]["success"]["mean"]["value"] == pytest.approx(0.5)
    reports = domain_reports(_results({"babyai/GoToLocal-bot": 0.9, "babyai/GoToObjS4-bot": 0.2}), ["jat"], reps=200)
    assert [r["name"] for r in reports["babyai"]["rows"]] == ["GoToLocal"]  # GoToObjS4 is no JAT level
    assert reports["babyai"]["outside_suite"] == ["GoToObjS4"] and len(reports["babyai"]["missing"]) == 38
    with pytest.raises(ValueError, match="one suite per domain"):
        domain_reports(results, ["jat", "all"], reps=200)


@pytest.mark.slow
def test_a_two_domain_checkpoint_evaluates_with_one_aggregate_per_domain(tmp_path, capsys):
    """Two BabyAI levels and two Meta-World tasks train a few steps as one model; `gato eval --suite mt10` prints a
    table and aggregates per domain, and eval.json holds, per domain, the normalised and success aggregates rliable
    computes on the same per-task scores, the MT10 tasks not trained listed, and a chart."""
    pytest.importorskip("metaworld")
    from rliable import library, metrics

    from gato.data.babyai import generate_babyai
    from gato.data.experts.metaworld import dataset_id_for, generate_metaworld
    from gato.evaluation.suite import REPS

    for level in LEVELS:
        generate_babyai(level, 8, workers=1, reference_episodes=6, progress=False)
    generate_metaworld(list(TASKS), 2, reference_episodes=2, workers=2, progress=False, max_episode_steps=STEPS)
    runs = tmp_path / "runs"
    datasets = [f"babyai/{level}-bot-v0" for level in LEVELS] + [dataset_id_for(t) for t in TASKS]
    # the per-token loss: a Meta-World row predicts ~10x BabyAI's action tokens, which `gato train` says
    with pytest.warns(UserWarning, match="predicts ~72 action tokens a training row.*--loss_weighting tasks"):
        assert main(["train", "--control_datasets", *datasets, "--training_steps", "2", "--max_minutes", "0",
                     "--eval_episodes", "1", "--eval_envs", "1", "--save_dir", str(runs), "--exp_name", "two",
                     "--report_to", "none", *TINY_FLAGS]) == 0
    checkpoint = str(runs / "two" / "checkpoint")
    babyai_tasks = [f"babyai/{level}-bot" for level in LEVELS]
    capsys.readouterr()
    # a suite of a domain the (selected) tasks lack: said before any episode is played
    assert main(["eval", checkpoint, "--tasks", *babyai_tasks, "--suite", "mt10",
                 "--out", str(tmp_path / "x.json")]) == 2
    assert "--suite mt10: no Meta-World task among the tasks evaluated" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()

    out_json = tmp_path / "eval.json"
    assert main(["eval", checkpoint, "--episodes", "3", "--envs", "3", "--suite", "mt10",
                 "--out", str(out_json)]) == 0
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines()]
    for name in (*LEVELS, *TASKS):
        assert any(r[:1] == [name] and r[-1] == "3" for r in rows), out  # a row per level and task
    assert "2 BabyAI levels (levels evaluated)" in out and "2 Meta-World tasks (mt10)" in out
    written = json.loads(out_json.read_text())
    domains = written["domains"]
    assert list(domains) == ["babyai", "metaworld"]
    assert [r["name"] for r in domains["metaworld"]["rows"]] == list(TASKS)  # MT10's order
    assert len(domains["metaworld"]["missing"]) == 8 and "pick-place-v3" in domains["metaworld"]["missing"]
    assert [r["level"] for r in written["suite"]["levels"]] == sorted(LEVELS)  # the BabyAI key of before
    fn = lambda x: np.array([metrics.aggregate_mean(x), metrics.aggregate_median(x), metrics.aggregate_iqm(x)])  # noqa: E731
    for domain, report in domains.items():
        assert (tmp_path / f"eval_{domain}.png").stat().st_size > 0 and report["chart"].endswith(f"eval_{domain}.png")
        for row in report["rows"]:  # the rows are the evaluation's own numbers
            m = written["results"][row["task"]]
            assert row["normalized"] == m["normalized_score"] and row["success"] == m["success_rate"]
            assert row["episodes"] == 3
        for key, column in (("aggregate", "normalized"), ("success", "success")):
            scores = np.array([[r[column] for r in report["rows"]]])
            np.random.seed(0)
            points, intervals = library.get_interval_estimates({"x": scores}, fn, reps=REPS, task_bootstrap=True)
            for i, name in enumerate(("mean", "median", "iqm")):
                agg = report[key][name]
                assert agg["value"] == pytest.approx(points["x"][i]), (domain, key, name)
                assert [agg["low"], agg["high"]] == pytest.approx(intervals["x"][:, i]), (domain, key, name)
            assert report[key]["mean"]["value"] == pytest.approx(np.mean(scores))
    # Meta-World's success is info["success"] at any step, as each task's evaluation counted it
    assert domains["metaworld"]["success"]["mean"]["value"] == pytest.approx(
        np.mean([written["results"][f"metaworld/{t}-scripted"]["success_rate"] for t in TASKS]))
