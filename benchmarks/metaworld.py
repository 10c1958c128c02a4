"""Meta-World in one model: success rate and normalised score per task after a CPU training budget.

Makes the missing scripted-policy datasets (``gato data metaworld``: at most ``--episodes``
demonstrations per task, DART noise, references and success rates per task), trains one
GatoPolicy on all the tasks with the real Trainer (each timestep led by its task token) for
``--minutes`` of training, then evaluates every task on ``--eval_episodes`` episodes whose seeds
(1,000,000+) draw goals the data never showed. A task's success is Meta-World's: ``info["success"]``
at any step of the 500-step episode; its normalised score is 1 at the scripted policy's return, 0 at
a uniform-random policy's.

    python benchmarks/metaworld.py --tasks mt10 --data_dir runs/mw-data    # 60 min: mean success >= 0.9
    python benchmarks/metaworld.py --tasks mt50 --data_dir runs/mw-data    # 120 min: normalised, success >= 0.8
    python benchmarks/metaworld.py --tasks reach-v3 push-v3 --quick     # checks the script (~2 min)

Writes ``<out>/metaworld-<tag>.json`` (or ``--json``) as it goes (data, then training, then each task's final
evaluation), the per-task chart (success and normalised score) and the learning curves, and
prints the final JSON on stdout. Beside the plain means (``summary``, what the targets read), ``domain`` holds
``gato eval``'s Meta-World report: mean, median and IQM of the normalised score and of the success rate with 95%
bootstrap CIs from rliable, and its chart (``metaworld_domain.png``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(_HERE))
import _common as C  # noqa: E402

# This file's name is the package's: with its folder on sys.path, `import metaworld` (here and in the
# spawned data workers, which inherit sys.path) would import this script instead of Meta-World.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

TARGETS = {"mt10": {"minutes": 60, "mean_success_rate": 0.9},
           "mt50": {"minutes": 120, "mean_success_rate": 0.8, "mean_normalized_score": 0.8}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=["mt10"], help="mt10, mt50 or Meta-World task names")
    parser.add_argument("--episodes", type=int, default=100, help="demonstrations per task (when data is made)")
    parser.add_argument("--minutes", type=float, default=None,
                        help="training budget, evaluation excluded (default: the target's, mt10 60, mt50 120; else 60)")
    parser.add_argument("--reference_episodes", type=int, default=50,
                        help="clean-expert and random reference episodes per task (when data is made; 4 with --quick)")
    parser.add_argument("--eval_episodes", type=int, default=50, help="final evaluation episodes per task")
    parser.add_argument("--eval_every", type=float, default=0.0,
                        help="minutes between intermediate evaluations (10 episodes a task; 0: each fifth)")
    parser.add_argument("--max_episode_steps", type=int, default=None,
                        help="shorter episodes than Meta-World's 500 (data and evaluation; only for new data)")
    parser.add_argument("--data_dir", default=None, help="Minari folder to use/keep (default: a temporary one)")
    parser.add_argument("--out", default="runs/benchmarks", help="folder for the JSON, charts and the run")
    parser.add_argument("--json", default=None,
                        help="where the JSON goes, written as the run goes (default: <out>/metaworld-<tag>.json)")
    parser.add_argument("--workers", type=int, default=2, help="processes making the data")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--action_history_noise", type=float, default=1.0,
                        help="share of the action tokens of a training input replaced by random ones (`gato train "
                             "--action_history_noise`). The scripted policies act on the current observation alone; "
                             "with a clean history (0) a 45-minute MT10 model copied its own first action for the "
                             "whole episode")
    parser.add_argument("--train_args", default="", help="extra `gato train` flags, e.g. '--embed_dim 192'")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out from its last saved state (a killed session): the same "
                             "command, with --resume added")
    parser.add_argument("--quick", action="store_true",
                        help="4 short episodes a task, 0.5 minute, 2 evaluation episodes: checks the script works")
    args = parser.parse_args()

    from gato.data.experts.metaworld import resolve_tasks

    tasks = resolve_tasks(args.tasks)
    target = TARGETS.get(args.tasks[0].lower()) if len(args.tasks) == 1 else None
    args.minutes = args.minutes or (target["minutes"] if target else 60.0)
    tag = "-".join(args.tasks) if len(args.tasks) <= 2 else f"{len(tasks)}tasks"
    if args.quick:
        args.episodes, args.minutes, args.eval_episodes, args.reference_episodes = min(args.episodes, 4), 0.5, 2, 4
        args.max_episode_steps = args.max_episode_steps or 100
        tag += "-quick"
    out_json = Path(args.json) if args.json else Path(args.out) / f"metaworld-{tag}.json"
    folder, created = C.use_data_dir(args.data_dir)
    C.set_threads(args.threads)
    result = {"tasks": tasks, "command": " ".join(sys.argv), "machine": C.machine_info("cpu"),
              "target": dict(target) if target else None,
              "started": time.strftime("%Y-%m-%d %H:%M:%S"), "curve": []}
    C.carry_over(result, out_json, args.resume, "curve")  # the points the killed run had measured
    try:
        result["data"] = make_data(tasks, args, quick=args.quick, reference_episodes=args.reference_episodes)
        save(out_json, result)
        run(tasks, args, result, out_json)
    finally:
        C.cleanup(folder, created)
    if result["target"]:
        target, final = result["target"], result["summary"]
        target["met"] = bool(result["train_minutes"] <= target["minutes"] * 1.02 and all(
            final[key] >= value for key, value in target.items() if key.startswith("mean_")))
    save(out_json, result)
    C.emit(result)


def save(path: Path, result: dict) -> None:
    """The JSON so far, written atomically (a killed run keeps what it had measured), with the load average now
    (the machine may be shared: a slow phase shows why)."""
    import os
    import time

    from gato.atomic import write_json

    if hasattr(os, "getloadavg"):
        result.setdefault("load_avg_at_saves", []).append(
            {"utc": time.strftime("%H:%M:%S", time.gmtime()), "load_1_5_15": [round(x, 2) for x in os.getloadavg()]})

    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, result)


def make_data(tasks: list[str], args, quick: bool, reference_episodes: int | None = None) -> dict:
    """Make the missing datasets (``args``: ``episodes``, ``workers``, ``max_episode_steps``; reference episodes 50, 4
    when ``quick``, or ``reference_episodes``); every task's references (returns and success rates) from its
    metadata. Also used by ``benchmarks/domains.py``."""
    import minari

    from gato.data.experts.metaworld import dataset_id_for, generate_metaworld, summary_rows

    with C.stdout_to_stderr():
        reports = generate_metaworld(tasks, args.episodes, workers=args.workers, skip_existing=True,
                                     max_episode_steps=args.max_episode_steps,
                                     reference_episodes=reference_episodes or (4 if quick else 50))
    made = {r.task for r in reports}
    if reports:
        from gato.table import format_table

        C.log(format_table(summary_rows(reports)))
    data = {}
    for task in tasks:
        meta = minari.load_dataset(dataset_id_for(task)).storage.metadata
        data[task] = {"made_now": task in made, "episodes": meta["total_episodes"], "steps": meta["total_steps"],
                      **{key: meta.get(key) for key in ("ref_max_score", "ref_min_score", "expert_success_rate",
                                                        "random_success_rate", "demo_success_rate", "action_noise")}}
        if (meta.get("expert_success_rate") or 0.0) < 0.95:
            C.log(f"{task}: the scripted policy succeeds on only {meta.get('expert_success_rate')} of clean episodes")
    return data


def run(tasks: list[str], args, result: dict, out_json: Path) -> None:
    """Train one model on every task, then evaluate each (JSON saved at each evaluation and after each task)."""
    import shlex

    import numpy as np

    from gato.cli import build_parser, print_scores
    from gato.data.experts.metaworld import dataset_id_for
    from gato.evaluation.plots import plot_learning_curve
    from gato.training.arguments import TrainingArgs
    from gato.training.run import build_trainer

    ns = build_parser().parse_args([
        "train", "--control_datasets", *[dataset_id_for(t) for t in tasks], "--max_minutes", str(args.minutes),
        "--eval_every_minutes", str(args.eval_every), "--eval_episodes", "2" if args.quick else "10",
        "--save_dir", args.out, "--exp_name", f"metaworld-{len(tasks)}tasks",
        "--action_history_noise", str(args.action_history_noise), *shlex.split(args.train_args)])
    train_args = TrainingArgs.from_namespace(ns)
    resume = C.resume_from(train_args, args.resume)
    with C.stdout_to_stderr():
        trainer = build_trainer(train_args)
        lengths = {t.name: float(np.mean(t.episodes.lengths)) for t in trainer.tasks}
        result["tokens_per_timestep"] = {t.name: t.tokens_per_timestep for t in trainer.tasks}
        result["mean_episode_steps"] = lengths
        result["train_args"] = train_args.to_dict()
        C.train_recording(trainer, lambda results, trainer: point(results, trainer, result, out_json), resume)
        result.update(train_minutes=round(trainer.train_seconds / 60, 2), steps=trainer.step)
        save(out_json, result)
        final = result["final"] = {}
        for task in trainer.tasks:
            final[task.name] = task.evaluate(trainer.policy, args.eval_episodes, n_envs=train_args.eval_envs,
                                             promptless_eval=True, progress=True)
            C.log(f"{task.name}: success {final[task.name]['success_rate']:.2f}, "
                  f"normalised {final[task.name].get('normalized_score', float('nan')):.2f}")
            save(out_json, result)
        print_scores(final)
    result["summary"] = {
        "mean_success_rate": float(np.mean([m["success_rate"] for m in final.values()])),
        "mean_normalized_score": float(np.mean([m.get("normalized_score", np.nan) for m in final.values()])),
    }
    from gato.cli import format_domain
    from gato.evaluation.suite import domain_report, draw_chart

    result["domain"] = domain_report(final, "metaworld")
    draw_chart(result["domain"], trainer.run_dir / "metaworld_domain.png")
    C.log("\n" + format_domain(result["domain"]))
    trainer.history.append({"step": trainer.step, "minutes": trainer.train_seconds / 60, "eval": final})
    pngs = [plot_learning_curve(trainer.history, trainer.run_dir / "metaworld_success_curve.png",
                                title="Meta-World: success vs CPU training minutes", metric="success_rate"),
            plot_learning_curve(trainer.history, trainer.run_dir / "metaworld_normalized_curve.png",
                                title="Meta-World: normalised score vs CPU training minutes"),
            plot_tasks(final, trainer.run_dir / "metaworld_tasks.png")]
    result["png"] = [str(p) for p in pngs]
    result["checkpoint"] = str(trainer.run_dir / "checkpoint")


def point(results: dict, trainer, result: dict, out_json: Path) -> None:
    """One evaluation during training: a point of the curve, on disk at once (a killed session keeps it)."""
    import numpy as np

    result["curve"].append({"minutes": round(trainer.train_seconds / 60, 2), "step": trainer.step, **{
        name: {key: m.get(key) for key in ("success_rate", "normalized_score")} for name, m in results.items()}})
    save(out_json, result)
    C.log(f"{trainer.train_seconds / 60:.1f} min, step {trainer.step}: mean success "
          f"{np.mean([m['success_rate'] for m in results.values()]):.3f}, mean normalised "
          f"{np.nanmean([m.get('normalized_score', np.nan) for m in results.values()]):.3f}")


def plot_tasks(final: dict, path: Path) -> Path:
    """Per task, its success rate and normalised score side by side."""
    import numpy as np

    from gato.evaluation.plots import pyplot, save_figure

    plt = pyplot()
    names = list(final)
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.45 * len(names) + 2), 4))
    for shift, key, label in ((-0.2, "success_rate", "success rate"), (0.2, "normalized_score", "normalised score")):
        ax.bar(x + shift, [final[n].get(key, np.nan) for n in names], width=0.4, label=label)
    ax.axhline(1.0, color="k", lw=0.6, ls="--")
    short = [n.removeprefix("metaworld/").removesuffix("-scripted") for n in names]
    ax.set_xticks(x, short, rotation=60, ha="right", fontsize=8)
    mean_success = np.mean([final[n]["success_rate"] for n in names])
    mean_norm = np.nanmean([final[n].get("normalized_score", np.nan) for n in names])
    ax.set_ylabel("per task")
    ax.set_title(f"Meta-World, one model: mean success {mean_success:.2f}, mean normalised {mean_norm:.2f}",
                 fontsize=10)
    ax.legend(loc="lower right")
    return save_figure(fig, path)


if __name__ == "__main__":
    main()
