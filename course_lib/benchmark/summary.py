"""Reading a benchmark table: means and intervals over seeds, normalised scores, response
discrimination, and the comparison of a live slice with a committed table."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from course_lib.benchmark.runner import KEY_COLUMNS
from course_lib.metrics import metric_info, normalised_scores, response_discrimination

HEADLINE_METRICS = ("r2_mean_all", "delta_pearson_top100", "e_distance")
"""One metric each for the means, the response and the distribution; see :mod:`course_lib.metrics`."""


def with_normalised_scores(results: pd.DataFrame) -> pd.DataFrame:
    """``results`` plus the baseline-normalised rows (``<metric>_norm_identity``, ``_norm_mean_shift``)
    of every model, held-out type, variant and seed (:func:`course_lib.metrics.normalised_scores`).

    A benchmark table holds the ingredients: the noise-ceiling rows and every model's ``_matched``
    rows, the baselines' included.
    """
    extra = normalised_scores(results)
    return pd.concat([results, extra], ignore_index=True) if len(extra) else results


def summarise(
    results: pd.DataFrame,
    *,
    metrics: Iterable[str] = HEADLINE_METRICS,
    by: Sequence[str] = ("model", "variant"),
) -> pd.DataFrame:
    """Mean and standard deviation over seeds of the per-seed mean over held-out cell types.

    Returns one row per ``by`` group and metric, with columns ``mean``, ``sd`` (across seeds, ddof=1;
    NaN for one seed) and ``n_seeds``.
    """
    metrics = list(metrics)
    selected = results[results["metric"].isin(metrics)]
    per_seed = selected.groupby([*by, "metric", "seed"], observed=True)["value"].mean()
    summary = per_seed.groupby([*by, "metric"], observed=True).agg(mean="mean", sd="std", n_seeds="count")
    return summary.reset_index()


def seed_intervals(
    results: pd.DataFrame,
    *,
    metrics: Iterable[str] = HEADLINE_METRICS,
    by: Sequence[str] = ("model", "variant"),
    confidence: float = 0.95,
) -> pd.DataFrame:
    """:func:`summarise` plus a t interval over seeds: mean ± t_(n−1) · sd / sqrt(n), n the seeds.

    Seeds are the independent repeats (each retrains every model), so the interval describes the
    uncertainty of the mean over training runs. Adds ``ci_low`` and ``ci_high`` (NaN for one seed).
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), not {confidence}.")
    summary = summarise(results, metrics=metrics, by=by)
    n_seeds = summary["n_seeds"].to_numpy(dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        quantile = stats.t.ppf(0.5 + confidence / 2.0, np.where(n_seeds > 1, n_seeds - 1, np.nan))
        half = quantile * summary["sd"].to_numpy(dtype=float) / np.sqrt(n_seeds)
    summary["ci_low"], summary["ci_high"] = summary["mean"] - half, summary["mean"] + half
    return summary


def label_by_setting(results: pd.DataFrame, parameter: str, labels: Mapping[Any, str]) -> pd.DataFrame:
    """``results`` with each model named after its value of one hyperparameter: ``"<model>, <label>"``.

    A grid with several settings of one model (e.g. scGen with and without BatchNorm in its decoder)
    then reads as several models in every summary and figure. ``labels`` maps the values (as in the
    ``hyperparameters`` JSON) to the label; rows without ``parameter`` keep their model name.
    """
    values = results["hyperparameters"].map(lambda settings: json.loads(settings).get(parameter, _MISSING))
    unknown = sorted({str(value) for value in values if value is not _MISSING and value not in labels})
    if unknown:
        raise KeyError(
            f"labels has no entry for {parameter}={unknown}; it labels {sorted(map(str, labels))}."
        )
    named = [
        model if value is _MISSING else f"{model}, {labels[value]}"
        for model, value in zip(results["model"], values, strict=True)
    ]
    return results.assign(model=named)


_MISSING = object()
"""Marks a row whose hyperparameters do not hold the parameter being labelled."""


def rank_models(
    results: pd.DataFrame, *, metrics: Iterable[str], models: Sequence[str] | None = None
) -> pd.DataFrame:
    """The models ranked on each metric (1 = best, in the metric's better direction).

    Each model's score is :func:`summarise`'s mean (over seeds of the mean over held-out types), so
    every model is ranked on the same types and seeds; ``models`` restricts the ranking. Returns one
    row per model and one column per metric, with the ranks (<NA> where a model has no score);
    ``attrs["scores"]`` holds the means.
    """
    summary = summarise(results, metrics=metrics, by=("model",))
    means = summary.pivot(index="model", columns="metric", values="mean")
    if models is not None:
        means = means.loc[[model for model in models if model in means.index]]
    means = means[[metric for metric in metrics if metric in means.columns]]
    ranks = pd.DataFrame(
        {
            metric: means[metric].rank(ascending=not metric_info(metric).higher_is_better, method="min")
            for metric in means
        },
        index=means.index,
    ).astype("Int64")  # a model without a score on a metric gets no rank (<NA>)
    ranks.attrs["scores"] = means
    return ranks


def types_beating(
    results: pd.DataFrame, baseline: str, *, metrics: Iterable[str] = HEADLINE_METRICS
) -> pd.DataFrame:
    """On how many held-out types each model's mean over seeds beats ``baseline``'s, per metric.

    "Beats" is strictly better in the metric's better direction; a type where either has no score
    does not count. Returns one row per model other than ``baseline`` and one column per metric;
    ``attrs["n_types"]`` holds the number of types both were scored on, per metric.
    """
    metrics = list(metrics)
    means = summarise(results, metrics=metrics, by=("model", "cell_type"))
    if baseline not in set(means["model"]):
        models = sorted(set(means["model"]))
        raise KeyError(f"results has no rows of the baseline {baseline!r}; it holds {models}.")
    counts, n_types = {}, {}
    for metric in metrics:
        table = means[means["metric"] == metric].pivot(index="cell_type", columns="model", values="mean")
        table = table.dropna(subset=[baseline])
        sign = 1.0 if metric_info(metric).higher_is_better else -1.0
        gains = table.drop(columns=baseline).sub(table[baseline], axis=0) * sign
        counts[metric] = (gains > 0).sum()
        n_types[metric] = len(table)
    beating = pd.DataFrame(counts).astype(int)
    beating.attrs["n_types"] = n_types
    return beating


def compare_results(
    live: pd.DataFrame, committed: pd.DataFrame, *, metrics: Iterable[str] = HEADLINE_METRICS
) -> pd.DataFrame:
    """The grid points of ``live`` beside the same points of ``committed``: difference = live - committed.

    Rows are matched on :data:`KEY_COLUMNS` and the metric, so a committed value is shown only for the
    same model, held-out type, variant, seed and hyperparameters (epochs included), and only when both
    tables were computed from the same data and data settings (their provenance ``setup``: data hash,
    ``fraction``, genes, ...). Otherwise ``committed`` is NaN; ``attrs["same_setup"]`` says which case
    applies. Same seed, data and thread count give the same numbers. Another thread count changes the
    order of floating-point sums: a baseline's scores move in about the eighth digit, a trained model's
    by up to a few hundredths (training amplifies the differences; on the committed table, scPRAM moved
    by up to 0.075 between one and two threads).
    """
    setups = [table.attrs.get("provenance", {}).get("setup") for table in (live, committed)]
    same_setup = setups[0] is not None and setups[0] == setups[1]
    columns = [*KEY_COLUMNS, "metric"]
    metrics = list(metrics)
    left = live.loc[live["metric"].isin(metrics), [*columns, "value"]].rename(columns={"value": "live"})
    right = committed.loc[committed["metric"].isin(metrics), [*columns, "value"]]
    right = right.rename(columns={"value": "committed"})
    if not same_setup:  # values of another data setup are not the same grid points
        right = right.iloc[0:0]
    merged = left.merge(right, on=columns, how="left")
    merged["difference"] = merged["live"] - merged["committed"]
    merged.attrs["same_setup"] = same_setup
    return merged.drop(columns="hyperparameters").reset_index(drop=True)


__all__ = [
    "HEADLINE_METRICS",
    "compare_results",
    "label_by_setting",
    "rank_models",
    "response_discrimination",
    "seed_intervals",
    "summarise",
    "types_beating",
    "with_normalised_scores",
]
