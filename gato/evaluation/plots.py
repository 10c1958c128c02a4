"""Pictures a person would rather look at than read: learning curves and score bars."""

from __future__ import annotations

from pathlib import Path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    return plt


def plot_learning_curve(history: list[dict], path: str | Path, title: str = "") -> Path:
    """Training loss and each task's success rate against training minutes, as a PNG."""
    plt = _pyplot()
    fig, (ax_loss, ax_eval) = plt.subplots(1, 2, figsize=(11, 4))
    losses = [(h["minutes"], h["loss"]) for h in history if "loss" in h]
    if losses:
        ax_loss.plot(*zip(*losses), lw=1)
    ax_loss.set(xlabel="training minutes", ylabel="loss (action tokens)", yscale="log", title="training loss")
    evals = [h for h in history if "eval" in h]
    for name in sorted({n for h in evals for n in h["eval"]}):
        pts = [(h["minutes"], h["eval"][name].get("success_rate", float("nan"))) for h in evals if name in h["eval"]]
        ax_eval.plot(*zip(*pts), marker="o", label=name)
    ax_eval.set(xlabel="training minutes", ylabel="success rate", ylim=(-0.02, 1.02), title="evaluation")
    if evals:
        ax_eval.legend()
    fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
