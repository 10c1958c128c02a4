"""A domain's tasks scored as one (BabyAI levels, Meta-World tasks; :mod:`gato.data.suites` says which task is in
which domain): per task success, normalised score and episodes; then the domain's mean, median and interquartile
mean (IQM) with 95% bootstrap confidence intervals computed by ``rliable`` (Agarwal et al. 2021, the library the
field reports these with), of the normalised scores and, beside them, of the success rates (Meta-World's own
measure); and a per-task bar chart (:func:`gato.evaluation.plots.plot_suite`).

Point estimates are rliable's ``aggregate_mean``, ``aggregate_median`` and ``aggregate_iqm`` over a
``(runs, tasks)`` matrix of per-task scores. The intervals are rliable's
``get_interval_estimates`` (percentile bootstrap): with several runs (seeds) a stratified bootstrap over the
runs of each task; with one run (one checkpoint) there are no runs to resample, so the tasks are resampled
(``task_bootstrap``): the interval then says how much the aggregate depends on which tasks make the suite.
rliable draws its resamples from numpy's global generator; :func:`aggregate` seeds it and puts it back.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from gato.data.suites import DOMAINS, SUITES, member_of, suite_domain, suite_members

__all__ = ["AGGREGATES", "REPS", "SUITES", "MissingExtraError", "aggregate", "aggregate_lines", "babyai_suite_view",
           "domain_report", "domain_reports", "domain_rows", "domains_present", "draw_chart", "rliable_modules",
           "table_rows"]

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
    """Mean, median and IQM of ``scores`` (``(runs, tasks)``, or one run's ``(tasks,)``) with their bootstrap
    confidence intervals, as rliable computes them (see the module docstring for which bootstrap).

    Returns ``{"mean": {"value", "low", "high"}, "median": ..., "iqm": ..., "runs", "tasks", "levels" (the same
    count, under its name from BabyAI-only reports), "reps", "confidence", "bootstrap"}``.
    """
    library, metrics = rliable_modules()
    scores = np.asarray(scores, dtype=np.float64)
    scores = scores[None, :] if scores.ndim == 1 else scores
    if scores.ndim != 2 or scores.size == 0 or not np.isfinite(scores).all():
        raise ValueError(f"suite scores must be a finite (runs, tasks) matrix, got shape {scores.shape}")
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
    out.update(runs=int(scores.shape[0]), tasks=int(scores.shape[1]), levels=int(scores.shape[1]), reps=int(reps),
               confidence=confidence, bootstrap="tasks resampled (one run)" if by_levels else "stratified over runs")
    return out


def domain_rows(results: dict, domain: str, suite: str | None = None) -> tuple[list[dict], list[str]]:
    """The rows of ``domain``'s tasks among ``results`` (``{task name: metrics}``) that have a normalised score: per
    task its short name (``name``: the level, the Meta-World task), task name, success rate, normalised score (with
    a 95% normal interval from the episodes' spread, ``error``) and episodes, in the suite's order (``suite``: only
    its members) or by name; and the suite's members that have no result."""
    found = {}
    for name, m in results.items():
        member = member_of(name)
        if member is not None and member[0] == domain and "normalized_score" in m:
            found[member[1]] = (name, m)
    order = suite_members(suite) if suite else sorted(found)
    rows = [{"name": short, "task": found[short][0], "success": float(found[short][1].get("success_rate", math.nan)),
             "normalized": float(found[short][1]["normalized_score"]), "error": _half_width(found[short][1]),
             "episodes": int(found[short][1]["episodes"])} for short in order if short in found]
    return rows, [short for short in order if short not in found]


def _half_width(m: dict) -> float:
    """1.96 standard errors of the normalised score: the returns' std over sqrt(episodes), in expert-random units."""
    span = m.get("expert_return", math.nan) - m.get("random_return", math.nan)
    n = m.get("episodes", 0)
    if not n or not span or not math.isfinite(span):
        return math.nan
    return float(1.96 * m.get("std_return", math.nan) / math.sqrt(n) / abs(span))


def domains_present(results: dict) -> dict[str, int]:
    """``{domain: scored tasks}`` for every domain with a task among ``results`` that has a normalised score, in
    :data:`gato.data.suites.DOMAINS` order."""
    counts = {d: len(domain_rows(results, d)[0]) for d in DOMAINS}
    return {d: n for d, n in counts.items() if n}


def domain_report(results: dict, domain: str, suite: str | None = None, reps: int = REPS, seed: int = 0) -> dict:
    """One domain's report: what ``eval.json`` keeps under ``"domains"`` -> the domain's name.

    ``{"domain", "suite"`` (its name, or "levels/tasks evaluated"), ``"unit"`` ("level", "task"), ``"rows"``
    (:func:`domain_rows`), ``"missing"`` (the suite's members not evaluated), ``"outside_suite"`` (the domain's
    tasks evaluated but left out of the suite), ``"aggregate"`` (:func:`aggregate` of
    the normalised scores), ``"success"`` (:func:`aggregate` of the success rates; absent when a task has none)``}``.
    Both aggregates use the same resamples (the same ``seed``), so their intervals are paired."""
    if suite is not None and suite_domain(suite) != domain:
        raise ValueError(f"suite {suite!r} is a {DOMAINS[suite_domain(suite)]['label']} suite, not {domain}'s")
    rows, missing = domain_rows(results, domain, suite)
    if not rows:
        raise ValueError(f"no {DOMAINS[domain]['label']} task with a normalised score among the results"
                         + (f" for suite {suite!r}" if suite else "") + "; its datasets need reference returns "
                         "(`gato data babyai --levels ...` and `gato data metaworld --tasks ...` write them)")
    words = DOMAINS[domain]
    outside = sorted({r["name"] for r in domain_rows(results, domain)[0]} - {r["name"] for r in rows})
    report = {"domain": domain, "suite": suite or f"{words['units']} evaluated", "unit": words["unit"], "rows": rows,
              "missing": missing, "outside_suite": outside,
              "aggregate": aggregate([r["normalized"] for r in rows], reps=reps, seed=seed)}
    success = [r["success"] for r in rows]
    if all(math.isfinite(s) for s in success):
        report["success"] = aggregate(success, reps=reps, seed=seed)
    return report


def domain_reports(results: dict, suites: list[str] | tuple[str, ...] | None = None, reps: int = REPS,
                   seed: int = 0) -> dict[str, dict]:
    """The reports (:func:`domain_report`) of ``results``, by domain: every domain named by one of ``suites``
    (restricted to that suite), and every other domain with at least two scored tasks (one task is no suite).

    Raises ValueError for two suites of one domain or a suite none of whose tasks was evaluated, and
    :class:`MissingExtraError` without rliable."""
    asked: dict[str, str] = {}
    for suite in suites or ():
        domain = suite_domain(suite)
        if domain in asked:
            raise ValueError(f"--suite {asked[domain]} and {suite} are both {DOMAINS[domain]['label']} suites: "
                             "name one suite per domain")
        asked[domain] = suite
    present = domains_present(results)
    return {d: domain_report(results, d, asked.get(d), reps=reps, seed=seed) for d in DOMAINS
            if d in asked or present.get(d, 0) >= 2}


def babyai_suite_view(report: dict) -> dict:
    """A BabyAI domain report in the layout ``eval.json`` kept under ``"suite"`` before domains existed
    (``{"suite", "levels": [{"level", "task", "success", "normalized", "error", "episodes"}], "missing",
    "aggregate", "chart"}``), so readers of that key keep working."""
    levels = [{"level": r["name"], **{k: v for k, v in r.items() if k != "name"}} for r in report["rows"]]
    return {"suite": report["suite"], "levels": levels, "missing": report["missing"],
            "aggregate": report["aggregate"], **({"chart": report["chart"]} if "chart" in report else {})}


def aggregate_lines(report: dict) -> list[str]:
    """The aggregate lines of a :func:`domain_report`: mean, median and IQM of the normalised score and of the
    success rate, each with its 95% interval, then the suite's members that were not evaluated."""
    agg, success, words = report["aggregate"], report.get("success"), DOMAINS[report["domain"]]
    lines = [f"{agg['tasks']} {words['label']} {words['units']} ({report['suite']}), {agg['runs']} run(s); 95% CI by "
             f"rliable, {agg['reps']:,} bootstrap resamples, {agg['bootstrap']}:",
             f"  {'':<6} {'normalised':<26}" + (" success" if success else "")]
    for name in AGGREGATES:
        cell = f"{agg[name]['value']:.3f}  [{agg[name]['low']:.3f}, {agg[name]['high']:.3f}]"
        if success:
            cell = f"{cell:<26} {success[name]['value']:.3f}  [{success[name]['low']:.3f}, {success[name]['high']:.3f}]"
        lines.append(f"  {name:<6} {cell}")
    if report["missing"]:
        lines.append(f"not evaluated ({len(report['missing'])}): {', '.join(report['missing'])}")
    if report.get("outside_suite"):
        lines.append(f"evaluated, outside {report['suite']} and its aggregate ({len(report['outside_suite'])}): "
                     f"{', '.join(report['outside_suite'])}")
    return lines


def table_rows(report: dict) -> list[dict]:
    """The per-task rows of a :func:`domain_report` for a text table: the level or task, success, normalised score
    +- its 95% half-width, episodes."""
    return [{report["unit"]: r["name"], "success": r["success"],
             "normalized": f"{r['normalized']:.3f} +- {r['error']:.3f}", "episodes": r["episodes"]}
            for r in report["rows"]]


def draw_chart(report: dict, path) -> str:
    """The domain's chart (:func:`gato.evaluation.plots.plot_suite`) written atomically at ``path``; its path is
    also kept in the report (``"chart"``)."""
    from gato import atomic
    from gato.evaluation.plots import plot_suite

    with atomic.replacing(path) as tmp:
        plot_suite(report, tmp)
    report["chart"] = str(path)
    return str(path)

