"""The score tables of a multi-task evaluation: for control tasks, per-task returns against the expert and random
references, the normalised score, and its mean and interquartile mean over tasks; for text, caption and VQA tasks,
each metric beside its baseline on the same examples."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np


def interquartile_mean(values) -> float:
    """Mean of the middle 50% of ``values``, as rliable's ``aggregate_iqm`` computes it (a 25% trimmed mean):
    robust to one task far off the others. NaN for no values; MissingExtraError without the ``eval`` extra."""
    from gato.evaluation.suite import rliable_modules

    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return math.nan
    return float(rliable_modules()[1].aggregate_iqm(x[None, :]))


LANGUAGE_METRICS = [
    # (metric, its baselines): text perplexity (lower is better), VQA accuracy, caption exact match and word F1
    ("perplexity", ["unigram_perplexity", "bigram_perplexity"]),
    ("bits_per_byte", ["bigram_bits_per_byte"]),
    ("accuracy", ["majority_accuracy", "question_only_accuracy"]),
    ("accuracy_colour_shape", ["majority_accuracy_colour_shape", "question_only_accuracy_colour_shape"]),
    ("exact_match", ["shuffled_exact_match"]),
    ("word_f1", ["shuffled_word_f1"]),
]


def headline(metrics: dict) -> str:
    """A task's evaluation in a few words, for progress lines: the control score (or success) and return, VQA
    accuracy, caption exact match, or text perplexity."""
    if "mean_return" in metrics:
        score = (f"score {metrics['normalized_score']:.2f}" if "normalized_score" in metrics
                 else f"success {metrics['success_rate']:.2f}")
        return f"{score} return {metrics['mean_return']:.2f}"
    for key, label in (("accuracy", "accuracy"), ("exact_match", "exact match"), ("perplexity", "perplexity")):
        if key in metrics:
            return f"{label} {metrics[key]:.3g}"
    return ""


def language_rows(results: dict) -> list[dict]:
    """One row per metric of the text, caption and VQA tasks of ``{task: metrics}``, with its baselines."""
    rows = []
    for name, m in results.items():
        for metric, baselines in LANGUAGE_METRICS:
            if metric in m:
                rows.append({"task": name, "metric": metric, "value": _num(m[metric], 3),
                             "baselines": ", ".join(f"{b}: {m[b]:.3f}" for b in baselines if b in m)})
    return rows


def score_rows(results: dict) -> list[dict]:
    """One table row per control task of ``{task: metrics}`` (as ``ControlTask.evaluate`` returns them)."""
    rows = []
    for name, m in results.items():
        if "mean_return" not in m:
            continue
        rows.append({
            "task": name,
            "episodes": int(m["episodes"]),
            "return": f"{m['mean_return']:.2f} +- {m['std_return']:.2f}",
            "expert": _num(m.get("expert_return")),
            "random": _num(m.get("random_return")),
            "normalized": _num(m.get("normalized_score"), 3),
            "success": _num(m.get("success_rate"), 3),
        })
    return rows


def summary(results: dict) -> dict:
    """Mean and interquartile mean of the normalised scores of the tasks that have one. Without the ``eval``
    extra (rliable) the IQM is NaN and ``iqm_unavailable`` says how to get it: a training run still ends well."""
    from gato.evaluation.suite import MissingExtraError

    scores = [m["normalized_score"] for m in results.values() if "normalized_score" in m]
    out = {"tasks_scored": len(scores), "mean_normalized_score": float(np.mean(scores)) if scores else math.nan}
    try:
        out["iqm_normalized_score"] = interquartile_mean(scores)
    except MissingExtraError as e:
        out.update(iqm_normalized_score=math.nan, iqm_unavailable=str(e))
    return out


def plot_scores(results: dict, path: str | Path, title: str = "") -> Path:
    """Bar chart of each task's normalised score (expert = 1, random = 0), as a PNG."""
    from gato.evaluation.plots import pyplot, save_figure

    plt = pyplot()
    names = [n for n, m in results.items() if "normalized_score" in m]
    scores = [results[n]["normalized_score"] for n in names]
    fig, ax = plt.subplots(figsize=(max(5.0, 1.1 * len(names) + 2), 4))
    bars = ax.bar(range(len(names)), scores, color=["tab:green" if s >= 0.9 else "tab:orange" for s in scores])
    ax.bar_label(bars, labels=[f"{s:.2f}" for s in scores], padding=2)
    ax.axhline(1.0, color="k", lw=0.8, ls="--", label="expert")
    ax.axhline(0.0, color="grey", lw=0.8, label="random")
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
    s = summary(results)
    iqm = "" if "iqm_unavailable" in s else f", IQM {s['iqm_normalized_score']:.2f}"
    ax.set(ylabel="normalised score", title=title or f"mean {s['mean_normalized_score']:.2f}{iqm}")
    ax.set_ylim(min(0.0, min(scores, default=0.0)) - 0.1, max(1.1, max(scores, default=1.0) + 0.15))
    ax.legend(loc="lower right")
    return save_figure(fig, path)


def _num(value, digits: int = 2):
    return "" if value is None else round(float(value), digits)
