"""Pictures a person would rather look at than read: learning curves and score bars."""

from __future__ import annotations

from pathlib import Path


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend."""
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    return plt


def plot_learning_curve(history: list[dict], path: str | Path, title: str = "", metric: str = "") -> Path:
    """Training loss and each task's evaluation score against training minutes, as a PNG. The
    score is ``metric`` (an evaluation key such as "success_rate") when given, else the
    normalised score where the task has reference returns, else the success rate."""
    plt = pyplot()
    fig, (ax_loss, ax_eval) = plt.subplots(1, 2, figsize=(11, 4))
    losses = [(h["minutes"], h["loss"]) for h in history if "loss" in h]
    if losses:
        ax_loss.plot(*zip(*losses), lw=1)
    ax_loss.set(xlabel="training minutes", ylabel="loss (action tokens)", yscale="log", title="training loss")
    evals = [h for h in history if "eval" in h]
    for name in sorted({n for h in evals for n in h["eval"]}):
        pts = [(h["minutes"], h["eval"][name][metric] if metric else _score(h["eval"][name]))
               for h in evals if name in h["eval"]]
        ax_eval.plot(*zip(*pts), marker="o", label=name)
    ylabel = metric.replace("_", " ") if metric else "normalised score (else success rate)"
    ax_eval.set(xlabel="training minutes", ylabel=ylabel, title="evaluation")
    ax_eval.axhline(1.0, color="k", lw=0.6, ls="--")
    if evals:
        ax_eval.legend()
    fig.suptitle(title)
    return save_figure(fig, path)


def save_figure(fig, path: str | Path) -> Path:
    """Write ``fig`` as a PNG at ``path`` (folders made as needed) and free it."""
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    pyplot().close(fig)
    return path


def _score(metrics: dict) -> float:
    return metrics.get("normalized_score", metrics.get("success_rate", float("nan")))
