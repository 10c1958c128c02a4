"""BabyAI and Meta-World in one model, each domain's aggregate side by side; and the cost of sharing the model.

Makes the missing data (BabyAI bot episodes per level, ``benchmarks/babyai_suite.py``'s way; Meta-World scripted
episodes per task, ``benchmarks/metaworld.py``'s way), trains ONE GatoPolicy on every level and task with the real
Trainer for ``--steps`` optimizer steps (each timestep led by its task token), evaluates every task at each fifth
of the steps and at the end, and reports per domain the mean, median and IQM of the normalised score and the mean
success with 95% bootstrap CIs from rliable (``gato eval``'s domain reports). With ``--compare`` it makes three
runs at the same ``--steps``: BabyAI alone, Meta-World alone, both together: the issue's "cost of adding MT50 to
the BabyAI suite in one model, against each alone, at equal steps" is ``cost_of_sharing`` in the JSON (together
minus alone, per domain; in the together run each domain gets about its share of the rows, by
``--task_sampling``; give every run ``--train_args "--loss_weighting tasks"``: with the default per-token loss a
Meta-World row predicts ~10x BabyAI's action tokens, and the shared model never learnt BabyAI, docs/EXPERIMENTS.md
2026-12-08). The three runs can also go in three processes side by side (``--runs babyai``, ``--runs
metaworld``, ``--runs both``, each with its own ``--out``), joined afterwards by ``--merge``; a run killed with its
session continues from its last saved state with the same command and ``--resume``. ``cost_along_the_curve`` compares
the runs at every step where both evaluated during training (each point keeps its per-task scores), so runs stopped
before their final evaluation still give an equal-steps comparison.

``--sequence_length`` sets the context; the JSON records each domain's tokens per timestep and the timesteps a
context holds (``gato inspect`` shows a dataset's layout: a Meta-World observation is one position, a BabyAI
mission is read once per window).

    python benchmarks/domains.py --compare --steps 20000             # JAT's 39 levels and MT50, three runs
    python benchmarks/domains.py --levels GoTo Pickup --tasks mt10 --steps 5000
    python benchmarks/domains.py --quick --compare                    # 2 levels + 2 tasks, tiny: checks the script
    python benchmarks/domains.py --runs babyai --out A.json ... &      # the three runs in three processes,
    python benchmarks/domains.py --merge A.json M.json B.json --out C.json   # then their side-by-side and cost

Writes ``--out`` (JSON, atomically, after the data, after each evaluation and at the end: a killed run keeps what
it measured), per run and domain the chart ``<out>_<run>_<domain>.png``, and the side-by-side chart
``<out>_domains.png``; prints the final JSON on stdout.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shlex
import sys
import time
from pathlib import Path
from types import SimpleNamespace

_HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(_HERE))
import _common as C  # noqa: E402
import babyai_suite  # noqa: E402

# benchmarks/metaworld.py shares the package's name: with this folder on sys.path, `import metaworld` (here and in
# the spawned data workers, which inherit sys.path) would import that script. It is loaded by path instead.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
_spec = importlib.util.spec_from_file_location("metaworld_benchmark", _HERE / "metaworld.py")
metaworld_benchmark = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(metaworld_benchmark)

RUNS = {"both": ("babyai", "metaworld"), "babyai": ("babyai",), "metaworld": ("metaworld",)}
"""The runs of ``--compare`` and the domains each trains on (without ``--compare``: ``both`` only)."""
QUICK = {"levels": ["GoToObjS4", "GoToLocalS5N2"], "tasks": ["reach-v3", "push-v3"], "babyai_episodes": ["20"],
         "metaworld_episodes": 3, "max_episode_steps": 60, "reference_episodes": 2, "steps": 12,
         "sequence_length": 256, "eval_episodes": 2, "final_episodes": 3,
         "train_args": "--embed_dim 32 --layers 1 --heads 2 --resid_mid_channels 8 --batch_size 4 --warmup_steps 2"}
"""``--quick``: two small levels, two tasks of 60 steps, a tiny model for a few steps: checks the script."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--levels", nargs="+", default=["jat"], help="BabyAI: a suite (jat, all) or level names")
    parser.add_argument("--tasks", nargs="+", default=["mt50"], help="Meta-World: mt10, mt50 or task names")
    parser.add_argument("--babyai_episodes", nargs="+", default=["5000"],
                        help="bot episodes per level: N, LEVEL=N pairs with a default, or a JSON file")
    parser.add_argument("--metaworld_episodes", type=int, default=100, help="scripted demonstrations per task")
    parser.add_argument("--max_episode_steps", type=int, default=None,
                        help="Meta-World episodes shorter than 500 steps (data and evaluation; only for new data)")
    parser.add_argument("--reference_episodes", type=int, default=50,
                        help="Meta-World clean-expert and random episodes per task for its references")
    parser.add_argument("--steps", type=int, default=20000, help="optimizer steps of every run (equal steps)")
    parser.add_argument("--minutes", type=float, default=0.0,
                        help="a training-time cap per run (0: none); a run it stops early is marked, since the "
                             "comparison is at equal steps")
    parser.add_argument("--compare", action="store_true",
                        help="three runs at --steps: BabyAI alone, Meta-World alone, both in one model")
    parser.add_argument("--runs", nargs="+", choices=list(RUNS), default=None,
                        help="the runs to make (default: all three with --compare, else both)")
    parser.add_argument("--resume", action="store_true",
                        help="continue --out's runs from their last saved state (a killed session): the same "
                             "command, with --resume added; finished runs are kept, not repeated")
    parser.add_argument("--merge", nargs="+", metavar="JSON", default=None,
                        help="no training: join the runs of these JSONs (written by --runs in separate processes) "
                             "into --out, with their side-by-side chart and cost of sharing (runs not finished: "
                             "along their curve points only)")
    parser.add_argument("--sequence_length", type=int, default=1024,
                        help="context in tokens (1024: ~22 Meta-World timesteps, ~78 BabyAI ones)")
    parser.add_argument("--task_sampling", default="uniform", help="uniform, data or expert_gap (gato train's)")
    parser.add_argument("--eval_episodes", type=int, default=10, help="episodes per task at each fifth of the steps")
    parser.add_argument("--final_episodes", type=int, default=50, help="episodes per task at the end")
    parser.add_argument("--seed", type=int, default=0, help="training seed (the same for every run)")
    parser.add_argument("--workers", type=int, default=2, help="processes making the data")
    parser.add_argument("--data_dir", default=None, help="Minari folder to use/keep (default: a temporary one)")
    parser.add_argument("--out", default="runs/benchmarks/domains.json", help="JSON written as the run goes")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--train_args", default="", help="extra `gato train` flags, e.g. '--embed_dim 192'")
    parser.add_argument("--quick", action="store_true", help="2 levels + 2 tasks, few short episodes, a tiny model, "
                        f"{QUICK['steps']} steps: checks the script (~2 minutes with --compare)")
    args = parser.parse_args()
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
    if args.steps <= 0:
        parser.error("--steps must be positive: every run trains that many steps")

    out = Path(args.out)
    if args.merge:
        C.emit(merge(args.merge, out))
        return
    runs = args.runs or (list(RUNS) if args.compare else ["both"])
    folder, created = C.use_data_dir(args.data_dir)
    C.set_threads(args.threads)
    record = {"command": " ".join(sys.argv), "args": vars(args), "machine": C.machine_info("cpu"),
              "started": time.strftime("%Y-%m-%d %H:%M:%S"), "runs": {}}
    C.carry_over(record, out, args.resume, "runs")  # finished runs and the points of the one killed stay
    try:
        record["data"] = make_data(args, {domain for run in runs for domain in RUNS[run]})
        write(out, record)
        for run in runs:
            if "final" not in record["runs"].get(run, {}):
                train_run(run, args, record, out)
            finish(record, out)
    finally:
        C.cleanup(folder, created)
    C.emit(record)


def finish(record: dict, out: Path) -> None:
    """The side-by-side rows of the runs finished so far, the cost of sharing where a domain has both its runs,
    and the chart; written to ``out``."""
    record["side_by_side"] = side_by_side(record)
    record["cost_of_sharing"] = cost_of_sharing(record)
    record["cost_along_the_curve"] = cost_along_the_curve(record)
    if record["side_by_side"]:
        record["png"] = str(plot_side_by_side(record["side_by_side"], out.with_name(out.stem + "_domains.png")))
    write(out, record)


def merge(paths: list[str], out: Path) -> dict:
    """One record of the runs in ``paths`` (JSONs of this script, one or more runs each, made with the same
    steps and data): their side by side and cost of sharing, written to ``out``."""
    record = {"merged": paths, "runs": {}}
    for path in paths:
        try:
            part = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as error:
            sys.exit(f"--merge: cannot read {path} ({error}); give the JSONs that --out wrote")
        for run, entry in part.get("runs", {}).items():
            if "final" not in entry:
                C.log(f"--merge: run {run!r} in {path} has no final evaluation yet: only its curve points are "
                      "compared (finish it with --resume for the final side by side)")
            if run in record["runs"]:
                sys.exit(f"--merge: run {run!r} is in two of the JSONs; give each run once")
            record["runs"][run] = {**entry, "from": path}
        record.setdefault("data", {}).update(part.get("data") or {})  # each process made its runs' domains
        for key in ("machine", "args"):
            record.setdefault(key, part.get(key))
    steps = {entry["steps"] for entry in record["runs"].values() if "final" in entry}
    if len(steps) > 1:
        C.log(f"--merge: the runs stopped at different steps ({sorted(steps)}): not an equal-steps comparison")
    finish(record, out)
    return record


def write(out: Path, record: dict) -> None:
    """The record so far, atomically (a kill leaves the previous version or this one)."""
    from gato import atomic

    out.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_json(out, record)


def make_data(args, domains: set[str]) -> dict:
    """The data of ``domains`` (what exists in the folder is kept), through the two domain benchmarks' own code:
    a process making only the BabyAI run does not wait for Meta-World's episodes."""
    from gato.data.experts.metaworld import resolve_tasks

    data = {}
    if "babyai" in domains:
        data["babyai"] = babyai_suite.make_data(SimpleNamespace(levels=args.levels, episodes=args.babyai_episodes,
                                                                workers=args.workers))
    if "metaworld" in domains:
        tasks = metaworld_benchmark.make_data(
            resolve_tasks(args.tasks), SimpleNamespace(episodes=args.metaworld_episodes, workers=args.workers,
                                                       max_episode_steps=args.max_episode_steps),
            quick=args.quick, reference_episodes=args.reference_episodes)
        data["metaworld"] = {"tasks": tasks, "total_episodes": sum(t["episodes"] for t in tasks.values())}
    return data


def datasets_of(record: dict, domain: str) -> list[str]:
    """The dataset ids of a domain that have data."""
    from gato.data.babyai_suites import dataset_id
    from gato.data.experts.metaworld import dataset_id_for

    if domain == "babyai":
        return [dataset_id(level) for level, got in record["data"]["babyai"]["levels"].items() if got["episodes"]]
    return [dataset_id_for(task) for task, got in record["data"]["metaworld"]["tasks"].items() if got["episodes"]]


def train_run(run: str, args, record: dict, out: Path) -> None:
    """Train one model on the run's domains for ``--steps``; per domain, the aggregates at each evaluation and at
    the end, each domain's chart, all in ``record["runs"][run]``."""
    from gato.cli import build_parser, format_domain
    from gato.data.suites import member_of
    from gato.evaluation.suite import REPS, domain_report, draw_chart
    from gato.training.arguments import TrainingArgs
    from gato.training.run import build_trainer

    datasets = [d for domain in RUNS[run] for d in datasets_of(record, domain)]
    ns = build_parser().parse_args([
        "train", "--control_datasets", *datasets, "--training_steps", str(args.steps), "--max_minutes",
        str(args.minutes), "--sequence_length", str(args.sequence_length), "--eval_episodes", str(args.eval_episodes),
        "--task_sampling", args.task_sampling, "--seed", str(args.seed), "--save_dir", str(out.parent),
        "--exp_name", f"{out.stem}-{run}", "--report_to", "none",
        # Meta-World's scripted policies act on the observation alone: a clean action history is copied instead
        # (benchmarks/metaworld.py); BabyAI's bot remembers what it saw, so its history stays clean.
        "--action_history_noise", *["1" if member_of(d) and member_of(d)[0] == "metaworld" else "0" for d in datasets],
        *shlex.split(args.train_args)])
    train_args = TrainingArgs.from_namespace(ns)
    resume = C.resume_from(train_args, args.resume and C.has_saved_state(train_args))  # one never saved: afresh
    entry = record["runs"][run] = {"domains": list(RUNS[run]), "datasets": datasets,
                                   "points": record["runs"].get(run, {}).get("points", []) if resume else [],
                                   "train_args": train_args.to_dict()}

    def point(results: dict, trainer, reps: int) -> dict:
        reports = {d: domain_report(results, d, reps=reps) for d in RUNS[run]}  # a domain of one task too
        entry["points"].append({"step": trainer.step, "minutes": round(trainer.train_seconds / 60, 2), "domains": {
            d: {"normalized": r["aggregate"], "success": r.get("success"),
                "tasks": {row["name"]: row["normalized"] for row in r["rows"]}} for d, r in reports.items()}})
        write(out, record)
        C.log(f"[{run}] step {trainer.step}: " + "; ".join(
            f"{d} normalised {r['aggregate']['mean']['value']:.3f}, success "
            f"{r['success']['mean']['value'] if 'success' in r else float('nan'):.3f}" for d, r in reports.items()))
        return reports

    with C.stdout_to_stderr():
        trainer = build_trainer(train_args)
        per_task = {t.name: t.tokens_per_timestep for t in trainer.tasks}
        entry["tokens_per_timestep"] = tokens_by_domain(per_task, args.sequence_length, member_of)
        record.setdefault("tokens_per_timestep", {}).update(entry["tokens_per_timestep"])
        wall = C.train_recording(trainer, lambda results, trainer: point(results, trainer, reps=2000), resume)
        entry.update(steps=trainer.step, reached_steps=trainer.step >= args.steps,
                     train_minutes=round(trainer.train_seconds / 60, 2),
                     wall_minutes_training=wall)
        final = {task.name: task.evaluate(trainer.policy, args.final_episodes, n_envs=train_args.eval_envs,
                                          promptless_eval=True, progress=True) for task in trainer.tasks}
        reports = point(final, trainer, reps=REPS)
    for domain, report in reports.items():
        draw_chart(report, out.with_name(f"{out.stem}_{run}_{domain}.png"))
        C.log(f"\n[{run}] {domain}\n" + format_domain(report))
    entry.update(final=reports, results=final, checkpoint=str(trainer.run_dir / "checkpoint"))
    if not entry["reached_steps"]:
        C.log(f"[{run}] stopped by --minutes at step {trainer.step} of {args.steps}: not an equal-steps comparison")


def tokens_by_domain(per_task: dict, sequence_length: int, member_of) -> dict:
    """Per domain: tokens per timestep (mean over its tasks, and per task) and the whole timesteps a context holds."""
    import numpy as np

    out = {}
    for name, tokens in per_task.items():
        domain = (member_of(name) or ("other",))[0]
        out.setdefault(domain, {"per_task": {}})["per_task"][name] = int(tokens)
    for d in out.values():
        d["mean"] = float(np.mean(list(d["per_task"].values())))
        d["timesteps_per_context"] = int(sequence_length // d["mean"])
    return out


def side_by_side(record: dict) -> list[dict]:
    """One row per (domain, run) with a final report: the normalised mean, IQM and success mean with their CIs."""
    rows = []
    for domain in ("babyai", "metaworld"):
        for run, entry in record["runs"].items():
            report = entry.get("final", {}).get(domain)
            if report is None:
                continue
            agg, success = report["aggregate"], report.get("success")
            rows.append({"domain": domain, "run": run, "tasks": agg["tasks"], "steps": entry["steps"],
                         "normalized_mean": agg["mean"], "normalized_iqm": agg["iqm"],
                         "success_mean": success["mean"] if success else None})
    return rows


def cost_of_sharing(record: dict) -> dict:
    """Per domain: its mean normalised score and mean success alone and in the shared model, at equal steps, and
    together minus alone (negative: sharing the model cost that much)."""
    rows = {(r["domain"], r["run"]): r for r in record["side_by_side"]}
    out = {}
    for domain in ("babyai", "metaworld"):
        alone, together = rows.get((domain, domain)), rows.get((domain, "both"))
        if alone is None or together is None:
            continue
        out[domain] = {key: {"alone": alone[key]["value"], "together": together[key]["value"],
                             "together_minus_alone": together[key]["value"] - alone[key]["value"]}
                       for key in ("normalized_mean", "normalized_iqm", "success_mean") if alone[key]}
    return out


def cost_along_the_curve(record: dict) -> dict:
    """Per domain, at each step where its alone run and the shared run both evaluated during training: the mean
    normalised score of each and together minus alone; where the points carry per-task scores, also the mean and
    standard error of the per-task differences (a run killed before its final evaluation still compares)."""
    import numpy as np

    def by_step(entry: dict, domain: str) -> dict:
        curve = {}
        for point in entry.get("points", []):  # the first point of a step: training's own (a final repeats it)
            if domain in point["domains"]:
                curve.setdefault(point["step"], point["domains"][domain])
        return curve

    out = {}
    for domain in ("babyai", "metaworld"):
        alone, together = (by_step(record["runs"].get(run, {}), domain) for run in (domain, "both"))
        rows = []
        for step in sorted(set(alone) & set(together)):
            a, t = alone[step], together[step]
            row = {"step": step, "alone": a["normalized"]["mean"]["value"],
                   "together": t["normalized"]["mean"]["value"]}
            row["together_minus_alone"] = row["together"] - row["alone"]
            names = sorted(set(a.get("tasks", {})) & set(t.get("tasks", {})))
            if len(names) > 1:
                diffs = np.array([t["tasks"][n] - a["tasks"][n] for n in names])
                row["per_task"] = {"tasks": len(names), "mean": float(diffs.mean()),
                                   "standard_error": float(diffs.std(ddof=1) / np.sqrt(len(names)))}
            rows.append(row)
        if rows:
            out[domain] = rows
    return out


def plot_side_by_side(rows: list[dict], path: Path) -> Path:
    """Per domain, each run's mean normalised score and mean success with their 95% CIs, as grouped bars."""
    import numpy as np

    from gato.evaluation.plots import pyplot, save_figure

    plt = pyplot()
    domains = list(dict.fromkeys(r["domain"] for r in rows))
    runs = list(dict.fromkeys(r["run"] for r in rows))
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.8), sharey=True)
    for ax, key, label in ((axes[0], "normalized_mean", "mean normalised score"), (axes[1], "success_mean",
                                                                                  "mean success rate")):
        width = 0.8 / max(1, len(runs))
        for i, run in enumerate(runs):
            cells = [next((r[key] for r in rows if r["domain"] == d and r["run"] == run and r[key]), None)
                     for d in domains]
            x = np.arange(len(domains)) + (i - (len(runs) - 1) / 2) * width
            values = [c["value"] if c else np.nan for c in cells]
            errors = [[c["value"] - c["low"] if c else 0 for c in cells], [c["high"] - c["value"] if c else 0
                                                                          for c in cells]]
            ax.bar(x, values, width=width, yerr=errors, capsize=3, label="both domains" if run == "both"
                   else f"{run} alone")
        ax.set_xticks(np.arange(len(domains)), domains)
        ax.axhline(1.0, color="k", lw=0.6, ls="--")
        ax.set_title(label + " (95% CI)", fontsize=10)
    axes[0].legend(fontsize=8)
    steps = sorted({r["steps"] for r in rows})
    fig.suptitle(f"one model per run, {', '.join(map(str, steps))} steps", fontsize=10)
    return save_figure(fig, path)


if __name__ == "__main__":
    main()
