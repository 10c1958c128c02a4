"""A suite of BabyAI levels scored as one: per level success, normalised score and episodes; then the domain's
mean, median and interquartile mean (IQM) with 95% bootstrap confidence intervals computed by ``rliable``
(Agarwal et al. 2021, the library the field reports these with), and a per-level bar chart.

Point estimates are rliable's ``aggregate_mean``, ``aggregate_median`` and ``aggregate_iqm`` over a
``(runs, levels)`` matrix of per-level normalised scores. The intervals are rliable's
``get_interval_estimates`` (percentile bootstrap): with several runs (seeds) a stratified bootstrap over the
runs of each level; with one run (one checkpoint) there are no runs to resample, so the levels are resampled
(``task_bootstrap``): the interval then says how much the aggregate depends on which levels make the suite.
rliable draws its resamples from numpy's global generator; :func:`aggregate` seeds it and puts it back.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from gato.data.babyai_suites import level_of, suite_levels

REPS = 10_000
"""Bootstrap resamples (rliable's default is 50,000: ~20 s for 39 levels on this CPU against ~3 s; the bounds
move by under 0.005)."""

AGGREGATES = ("mean", "median", "iqm")
"""The aggregates reported, in order."""


class MissingExtraError(ImportError):
    """An optional dependency (an extra of pyproject.toml) that a feature needs is not installed."""


def rliable_modules():
    """``(rliable.library, rliable.metrics)``; MissingExtraError naming the fix when the ``eval`` extra is absent."""
    try:
        from rliable import library, metrics
    except ImportError as e:
        raise MissingExtraError(f"suite scores and IQM use rliable, which is not installed ({e}); install the "
                                "eval extra: pip install -e \".[eval]\"") from None
    return library, metrics


def _aggregate_fn(metrics):
    return lambda x: np.array([metrics.aggregate_mean(x), metrics.aggregate_median(x), metrics.aggregate_iqm(x)])


def aggregate(scores, reps: int = REPS, seed: int = 0, confidence: float = 0.95) -> dict:
    """Mean, median and IQM of ``scores`` (``(runs, levels)``, or one run's ``(levels,)``) with their bootstrap
    confidence intervals, as rliable computes them (see the module docstring for which bootstrap).

    Returns ``{"mean": {"value", "low", "high"}, "median": ..., "iqm": ..., "runs", "levels", "reps",
    "confidence", "bootstrap"}``.
    """
    library, metrics = rliable_modules()
    scores = np.asarray(scores, dtype=np.float64)
    scores = scores[None, :] if scores.ndim == 1 else scores
    if scores.ndim != 2 or scores.size == 0 or not np.isfinite(scores).all():
        raise ValueError(f"suite scores must be a finite (runs, levels) matrix, got shape {scores.shape}")
    by_levels = scores.shape[0] == 1
    state = np.random.get_state()
    np.random.seed(seed)  # rliable's StratifiedBootstrap draws its indices from numpy's global generator
    try:
        with warnings.catch_warnings():  # arch's notice that random_state will change: not ours to act on
            warnings.simplefilter("ignore", FutureWarning)
            points, intervals = library.get_interval_estimates(
                {"run": scores}, _aggregate_fn(metrics), reps=reps, confidence_interval_size=confidence,
                task_bootstrap=by_levels)
    finally:
        np.random.set_state(state)
    point, (low, high) = points["run"], intervals["run"]
    out = {name: {"value": float(point[i]), "low": float(low[i]), "high": float(high[i])}
           for i, name in enumerate(AGGREGATES)}
    out.update(runs=int(scores.shape[0]), levels=int(scores.shape[1]), reps=int(reps), confidence=confidence,
               bootstrap="levels resampled (one run)" if by_levels else "stratified over runs")
    return out


def level_rows(results: dict, suite: str | None = None) -> tuple[list[dict], list[str]]:
    """Per level of ``results`` (``{task name: metrics}``): its success rate, normalised score (with a 95% normal
    interval from the episodes' spread) and episodes, in the suite's order; and the suite's levels that have no
    result. Only BabyAI tasks with a normalised score count; ``suite`` (``jat``, ``all``) keeps its levels only."""
    by_level = {level_of(name): (name, m) for name, m in results.items()
                if level_of(name) is not None and "normalized_score" in m}
    order = suite_levels(suite) if suite else sorted(by_level)
    rows = []
    for level in order:
        if level not in by_level:
            continue
        name, m = by_level[level]
        rows.append({"level": level, "task": name, "success": float(m.get("success_rate", math.nan)),
                     "normalized": float(m["normalized_score"]), "error": _half_width(m),
                     "episodes": int(m["episodes"])})
    missing = [level for level in order if level not in by_level]
    return rows, missing


def _half_width(m: dict) -> float:
    """1.96 standard errors of the normalised score: the returns' std over sqrt(episodes), in expert-random units."""
    span = m.get("expert_return", math.nan) - m.get("random_return", math.nan)
    n = m.get("episodes", 0)
    if not n or not span or not math.isfinite(span):
        return math.nan
    return float(1.96 * m.get("std_return", math.nan) / math.sqrt(n) / abs(span))


def is_suite(results: dict) -> bool:
    """Whether ``results`` hold several scored BabyAI levels (``gato eval`` then reports them as a suite)."""
    return len(level_rows(results)[0]) >= 2


def suite_report(results: dict, suite: str | None = None, reps: int = REPS, seed: int = 0) -> dict:
    """The suite's per-level rows, the levels missing from it, and the aggregate (:func:`aggregate`) over the
    levels present: what ``eval.json`` keeps under ``"suite"``."""
    rows, missing = level_rows(results, suite)
    if not rows:
        raise ValueError("no BabyAI level with a normalised score among the results"
                         + (f" for suite {suite!r}" if suite else "") + "; a suite needs babyai/LEVEL-bot datasets "
                         "with reference returns (`gato data babyai --levels ...` writes them)")
    report = {"suite": suite or "levels evaluated", "levels": rows, "missing": missing,
              "aggregate": aggregate([r["normalized"] for r in rows], reps=reps, seed=seed)}
    return report


def format_suite(report: dict) -> str:
    """The per-level table and the aggregate lines of a :func:`suite_report`, as text."""
    from gato.table import format_table

    table = format_table([{"level": r["level"], "success": r["success"],
                           "normalized": f"{r['normalized']:.3f} +- {r['error']:.3f}", "episodes": r["episodes"]}
                          for r in report["levels"]])
    agg = report["aggregate"]
    lines = [table, "", f"{agg['levels']} levels ({report['suite']}), {agg['runs']} run(s); 95% CI by rliable, "
             f"{agg['reps']:,} bootstrap resamples, {agg['bootstrap']}:"]
    lines += [f"  {name:<6} {agg[name]['value']:.3f}  [{agg[name]['low']:.3f}, {agg[name]['high']:.3f}]"
              for name in AGGREGATES]
    if report["missing"]:
        lines.append(f"not in this checkpoint ({len(report['missing'])}): {', '.join(report['missing'])}")
    return "\n".join(lines)


def report_suite(results: dict, chart_path, suite: str | None = None) -> dict | None:
    """What ``gato eval`` does for a suite: print the table and aggregate, draw the chart at ``chart_path``
    (atomically); returns the report for eval.json, or None when ``results`` are no suite and none was asked for
    (or, not asked for, rliable is missing: a note says so)."""
    from gato import atomic
    from gato.evaluation.plots import plot_suite

    if suite is None and not is_suite(results):
        return None
    try:
        report = suite_report(results, suite)
    except MissingExtraError as e:
        if suite is not None:  # asked for: the clear error
            raise
        print(f"\n(several BabyAI levels: the suite aggregate is skipped: {e})")  # the per-task table stands
        return None
    print("\n" + format_suite(report))
    with atomic.replacing(chart_path) as tmp:
        plot_suite(report, tmp)
    report["chart"] = str(chart_path)
    print(f"suite chart: {chart_path}")
    return report
