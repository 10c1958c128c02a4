"""One model on control, text, captions and VQA: every metric against training minutes on a CPU.

The default policy (TrainingArgs defaults: 4 layers, 128 wide, context 256) is trained by the real Trainer on
BabyAI GoToLocal bot data and scripted CartPole (control), the Python reference documentation (text/pydoc),
easy-vqa's shape/colour captions (captions/shapes) and easy-vqa's questions (vqa/easy-vqa), all made offline
(`gato data`), mixed by ``--text_prop``, ``--caption_prop`` and ``--vqa_prop`` (control gets the rest), each task's
loss weighing its share of the rows (``--loss_weighting tasks``, this script's default; the trainer's is tokens). It is
evaluated every ``--eval_every`` training minutes (evaluation time is not training time) and at the end on
held-out data only: GoToLocal and CartPole on unseen seeds, the text's held-out documents, the test images'
captions and the test questions, each metric beside its baseline on the same examples.

    python benchmarks/multimodal.py --minutes 60                    # the issue's run (targets in TARGETS)
    python benchmarks/multimodal.py --minutes 60 --control_only     # the same control tasks alone, same length
    python benchmarks/multimodal.py --quick                         # 2 minutes: checks the script works

Prints one JSON object (curves, final metrics, targets, machine) and writes a PNG of the curves.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

from gato.policy.config import PolicyConfig  # noqa: E402

CONTROL = ["babyai/GoToLocal-bot-v0", "cartpole/scripted-v0"]
LANGUAGE = {"text": "text/pydoc", "caption": "captions/shapes", "vqa": "vqa/easy-vqa"}
TARGETS = {  # the issue's: (task, metric, at least / at most, value)
    "vqa_accuracy": ("vqa/easy-vqa", "accuracy", ">=", 0.95),
    "vqa_colour_shape": ("vqa/easy-vqa", "accuracy_colour_shape", ">=", 0.90),
    "caption_exact_match": ("captions/shapes", "exact_match", ">=", 0.90),
    "caption_shuffled": ("captions/shapes", "shuffled_exact_match", "<=", 0.10),
    "gotolocal": ("babyai/GoToLocal-bot", "normalized_score", ">=", 0.9),
    "cartpole": ("cartpole/scripted", "normalized_score", ">=", 0.9),
}


def make_data(control_only: bool) -> None:
    """Every dataset of the run, made offline where missing (BabyAI and CartPole by their experts)."""
    from gato.data.catalogue import ensure_dataset
    from gato.data.corpora import data_root
    from gato.data.default_corpora import make_default

    for dataset_id in CONTROL:
        ensure_dataset(dataset_id, 5000, progress=False)
    for name in ([] if control_only else LANGUAGE.values()):
        if not (data_root() / name).exists():
            C.log(f"making {name} ...")
            make_default(name, progress=False)


def final_evaluation(trainer, episodes: int, examples: int) -> dict:
    """Held-out metrics of every task after training: larger than the intermediate evaluations."""
    results = {}
    for task in trainer.tasks:
        if hasattr(task, "eval_examples"):
            task.eval_examples = examples
        C.log(f"final evaluation of {task.name} ...")
        results[task.name] = task.evaluate(trainer.policy, episodes, n_envs=16)
    return results


def check_targets(final: dict, control_only: bool) -> dict:
    """Each target of TARGETS that applies to this run: its value and whether it was met."""
    out = {}
    for key, (task, metric, how, bound) in TARGETS.items():
        if task in final and metric in final[task]:
            value = final[task][metric]
            out[key] = {"value": value, "target": f"{how} {bound}",
                        "met": value >= bound if how == ">=" else value <= bound}
    text = final.get(LANGUAGE["text"])
    if text and not control_only:
        out["text_below_bigram"] = {"value": text["perplexity"], "target": f"< {text['bigram_perplexity']:.2f}",
                                    "met": text["perplexity"] < text["bigram_perplexity"]}
    return out


def plot(history: list, png: Path, title: str) -> Path:
    """One panel per kind of metric, against training minutes."""
    from gato.evaluation.plots import pyplot, save_figure

    plt = pyplot()
    panels = [("control: normalised score", [(t, "normalized_score") for t in ("babyai/GoToLocal-bot",
                                                                                "cartpole/scripted")]),
              ("VQA accuracy", [("vqa/easy-vqa", m) for m in ("accuracy", "accuracy_colour_shape",
                                                               "question_only_accuracy")]),
              ("captions", [("captions/shapes", m) for m in ("exact_match", "shuffled_exact_match")]),
              ("text perplexity", [("text/pydoc", m) for m in ("perplexity", "bigram_perplexity")])]
    evals = [h for h in history if "eval" in h]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6))
    for ax, (name, series) in zip(axes, panels):
        for task, metric in series:
            points = [(h["minutes"], h["eval"][task][metric]) for h in evals if metric in h["eval"].get(task, {})]
            if points:
                ax.plot(*zip(*points), marker="o", ms=3, label=f"{task.split('/')[-1]} {metric}",
                        ls="--" if "shuffled" in metric or "only" in metric or "bigram" in metric else "-")
        ax.set(title=name, xlabel="training minutes")
        if "perplexity" in name:
            ax.set_yscale("log")
        if ax.lines:
            ax.legend(fontsize=7)
    fig.suptitle(title)
    return save_figure(fig, png)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=60.0, help="training budget")
    parser.add_argument("--eval_every", type=float, default=10.0, help="training minutes between evaluations")
    parser.add_argument("--text_prop", type=float, default=0.15)
    parser.add_argument("--caption_prop", type=float, default=0.15)
    parser.add_argument("--vqa_prop", type=float, default=0.3)
    parser.add_argument("--control_weights", type=float, nargs=2, default=[2.0, 1.0],
                        help="GoToLocal and CartPole's split of the control share")
    parser.add_argument("--control_only", action="store_true", help="the control tasks alone (the comparison)")
    parser.add_argument("--image_summary", action="store_true", help="add the whole-image CNN summary to patches")
    parser.add_argument("--image_summary_pooled", action="store_true",
                        help="the summary's max-pooled read too (see PolicyConfig.image_summary_pooled)")
    parser.add_argument("--image_channel_pad", type=float, default=PolicyConfig.image_channel_pad,
                        help="value of an image's missing channels (see PolicyConfig.image_channel_pad)")
    parser.add_argument("--image_size", type=int, default=32, help="side the caption and VQA images are resized to")
    parser.add_argument("--loss_weighting", choices=["tokens", "tasks"], default="tasks",
                        help="tasks: each task's mean loss weighs its share of rows (see TrainingArgs)")
    parser.add_argument("--eval_episodes", type=int, default=50, help="episodes / examples per intermediate eval")
    parser.add_argument("--final_episodes", type=int, default=200, help="control episodes at the end")
    parser.add_argument("--final_examples", type=int, default=2000, help="caption and VQA test examples at the end")
    parser.add_argument("--data_dir", default=None, help="Minari folder to use/keep (default: a temporary one)")
    parser.add_argument("--out", default="runs/benchmarks", help="folder for the run's outputs and the PNG")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--quick", action="store_true", help="2 minutes, small evaluations")
    args = parser.parse_args()
    if args.quick:
        args.minutes, args.eval_every, args.eval_episodes, args.final_episodes, args.final_examples = 2, 1, 8, 16, 64

    from gato.training.arguments import TrainingArgs
    from gato.training.run import build_trainer

    folder, created = C.use_data_dir(args.data_dir)
    C.set_threads(args.threads)
    props = {} if args.control_only else {
        "text_datasets": [LANGUAGE["text"]], "text_prop": args.text_prop,
        "caption_datasets": [LANGUAGE["caption"]], "caption_prop": args.caption_prop,
        "vqa_datasets": [LANGUAGE["vqa"]], "vqa_prop": args.vqa_prop, "image_size": args.image_size}
    name = "multimodal-control-only" if args.control_only else "multimodal"
    try:
        with C.stdout_to_stderr():
            make_data(args.control_only)
            train_args = TrainingArgs(control_datasets=CONTROL, max_minutes=args.minutes,
                                      eval_every_minutes=args.eval_every, eval_episodes=args.eval_episodes,
                                      save_dir=args.out, exp_name=name, save_mode="last",
                                      task_weights=args.control_weights, image_summary=args.image_summary,
                                      image_summary_pooled=args.image_summary_pooled,
                                      image_channel_pad=args.image_channel_pad,
                                      loss_weighting=args.loss_weighting, **props)
            train_args.validate()
            trainer = build_trainer(train_args)
            for task in trainer.tasks:  # intermediate evaluations: a sample of each test split
                if hasattr(task, "eval_examples"):
                    task.eval_examples = 4 * args.eval_episodes
            trainer.train()
            final = final_evaluation(trainer, args.final_episodes, args.final_examples)
    finally:
        C.cleanup(folder, created)
    trainer.history.append({"step": trainer.step, "minutes": trainer.train_seconds / 60, "eval": final})
    png = plot(trainer.history, Path(args.out) / f"{name}_curves.png",
               f"{name}: {trainer.train_seconds / 60:.0f} CPU training minutes, {trainer.step} steps")
    C.emit({"benchmark": name, "train_minutes": round(trainer.train_seconds / 60, 2), "steps": trainer.step,
            "weights": dict(zip([t.name for t in trainer.tasks], trainer.weights.tolist())),
            "curve": [{"minutes": round(h["minutes"], 2), "step": h["step"], **h["eval"]}
                      for h in trainer.history if "eval" in h],
            "final": final, "targets": check_targets(final, args.control_only), "png": str(png),
            "machine": C.machine_info("cpu")})


if __name__ == "__main__":
    main()
