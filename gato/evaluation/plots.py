"""Pictures a person would rather look at than read: learning curves and score bars."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend."""
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    return plt


LEGEND_TASKS = 10
"""Most tasks a learning curve names one by one; with more, each is a faint line under their bold mean."""


def plot_learning_curve(history: list[dict], path: str | Path, title: str = "", metric: str = "") -> Path:
    """Training loss and each task's evaluation score against training minutes, as a PNG. The
    score is ``metric`` (an evaluation key such as "success_rate") when given, else the
    normalised score where the task has reference returns, else the success rate. More than
    :data:`LEGEND_TASKS` tasks (a suite) are drawn unnamed, with their mean."""
    plt = pyplot()
    fig, (ax_loss, ax_eval) = plt.subplots(1, 2, figsize=(11, 4))
    losses = [(h["minutes"], h["loss"]) for h in history if "loss" in h]
    if losses:
        ax_loss.plot(*zip(*losses), lw=1)
    ax_loss.set(xlabel="training minutes", ylabel="loss (action tokens)", yscale="log", title="training loss")
    evals = [h for h in history if "eval" in h]
    names = sorted({n for h in evals for n in h["eval"]})
    many = len(names) > LEGEND_TASKS

    def value(metrics: dict) -> float:
        return metrics[metric] if metric else _score(metrics)

    for name in names:
        pts = [(h["minutes"], value(h["eval"][name])) for h in evals if name in h["eval"]]
        if many:
            ax_eval.plot(*zip(*pts), color="tab:grey", lw=0.6, alpha=0.4)
        else:
            ax_eval.plot(*zip(*pts), marker="o", label=name)
    if many:
        means = [(h["minutes"], np.nanmean([value(m) for m in h["eval"].values()])) for h in evals]
        ax_eval.plot(*zip(*means), color="tab:blue", lw=2.5, marker="o", label=f"mean of {len(names)} tasks")
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


def score_colour(score: float) -> str:
    """Green from 0.9 of the expert, orange from 0.75 (the suites' floor), red below."""
    return "tab:green" if score >= 0.9 else "tab:orange" if score >= 0.75 else "tab:red"


def plot_suite(report: dict, path: str | Path, title: str = "") -> Path:
    """Horizontal bars of each task's normalised score (95% error bars from its episodes) in a domain report
    (``gato.evaluation.suite.domain_report``: BabyAI levels, Meta-World tasks), its success rate as a black mark on
    the same row, and the aggregate mean and IQM with their intervals as shaded bands (the mean success and its
    interval in the title): names stay readable with 50 tasks."""
    plt = pyplot()
    rows = report["rows"]
    names = [r["name"] for r in rows]
    scores = [r["normalized"] for r in rows]
    errors = [0.0 if r["error"] != r["error"] else r["error"] for r in rows]  # NaN: no bar
    fig, ax = plt.subplots(figsize=(7, 1.2 + 0.28 * len(rows)))
    y = list(range(len(rows)))[::-1]  # the suite's first task at the top
    ax.barh(y, scores, xerr=errors, color=[score_colour(s) for s in scores], ecolor="k", capsize=2, height=0.7)
    for yi, s, e in zip(y, scores, errors):
        ax.text(max(s, 0) + e + 0.02, yi, f"{s:.2f}", va="center", fontsize=8)  # right of the error bar
    success = report.get("success")
    if success:
        ax.scatter([r["success"] for r in rows], y, marker="|", s=120, color="k", zorder=3, label="success rate")
    ax.set_yticks(y, names, fontsize=8)
    ax.set_ylim(-0.6, len(rows) - 0.4)
    agg = report["aggregate"]
    for name, colour in (("mean", "tab:blue"), ("iqm", "tab:purple")):
        a = agg[name]
        ax.axvspan(a["low"], a["high"], color=colour, alpha=0.15)
        ax.axvline(a["value"], color=colour, lw=1, label=f"{name} {a['value']:.3f} [{a['low']:.3f}, {a['high']:.3f}]")
    ax.axvline(1.0, color="k", lw=0.8, ls="--")
    ax.set_xlim(min(0.0, min(scores, default=0.0)) - 0.05, max(1.3, max(scores, default=1.0) + 0.25))
    from gato.data.suites import DOMAINS

    words = DOMAINS.get(report.get("domain", "babyai"), DOMAINS["babyai"])
    default = f"{agg['tasks']} {words['label']} {words['units']}: median {agg['median']['value']:.3f}"
    if success:
        m = success["mean"]
        default += f", success {m['value']:.2f} [{m['low']:.2f}, {m['high']:.2f}]"
    ax.set(xlabel="normalised score (bars; expert = 1, random = 0)" + (", success rate (|)" if success else ""),
           title=title or default)
    ax.legend(loc="lower right", fontsize=8)
    return save_figure(fig, path)


def plot_score_against_length(levels: dict[str, dict], path: str | Path, title: str = "") -> Path:
    """Each level's normalised score against its demonstrations' mean length in timesteps (log scale), with a
    line to the 90th percentile and the context's reach as a grey band, as a PNG: whether the levels that fail are
    the ones whose episodes outrun the context. ``levels``: name -> ``{"normalized", "mean_steps", "p90_steps",
    "timesteps_in_context"}``."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, r in levels.items():
        colour = score_colour(r["normalized"])
        ax.plot([r["mean_steps"], r["p90_steps"]], [r["normalized"]] * 2, color=colour, lw=1, alpha=0.5)
        ax.scatter([r["mean_steps"]], [r["normalized"]], color=colour, s=18, zorder=3)
        if r["normalized"] < 0.9:  # only the levels worth a look are named: 39 names would overlap
            ax.annotate(name, (r["mean_steps"], r["normalized"]), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")
    reach = [r["timesteps_in_context"] for r in levels.values()]
    if reach:
        span = f"{min(reach)}" if min(reach) == max(reach) else f"{min(reach)}-{max(reach)}"
        ax.axvspan(min(reach) - 0.5, max(reach) + 0.5, color="grey", alpha=0.2,
                   label=f"timesteps a context holds ({span})")
        ax.legend(loc="best", fontsize=8)
    ax.set_xscale("log")
    from matplotlib.ticker import ScalarFormatter

    ax.xaxis.set_major_formatter(ScalarFormatter())  # 10, 100 rather than 10^1, 10^2
    ax.axhline(1.0, color="k", lw=0.8, ls="--")
    ax.set(xlabel="demonstration length in timesteps (dot: mean; line: to the 90th percentile)",
           ylabel="normalised score", title=title or "score against episode length")
    return save_figure(fig, path)


def plot_suite_curves(points: list[dict], path: str | Path, title: str = "") -> Path:
    """The suite's aggregate (mean, median, IQM with their intervals) against training minutes, as a PNG.
    ``points``: ``{"minutes": m, "aggregate": gato.evaluation.suite.aggregate(...)}`` in time order."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    minutes = [p["minutes"] for p in points]
    for name in ("mean", "median", "iqm"):
        values = [p["aggregate"][name] for p in points]
        ax.plot(minutes, [v["value"] for v in values], marker="o", label=name)
        ax.fill_between(minutes, [v["low"] for v in values], [v["high"] for v in values], alpha=0.15)
    ax.axhline(1.0, color="k", lw=0.6, ls="--")
    ax.set(xlabel="training minutes", ylabel="normalised score", title=title or "suite aggregate (95% CI)")
    ax.legend()
    return save_figure(fig, path)
