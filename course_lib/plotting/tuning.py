"""Figures of a hyperparameter search (:mod:`course_lib.tuning`): the trials, a grid's heat map and
the parameter importances."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from course_lib.metrics import METRICS
from course_lib.plotting.style import colors_for, heatmap, new_figure, styled
from course_lib.tuning import TuningResult, param_importances


def _title(result: TuningResult) -> str:
    """What was searched and what it was scored on, for a figure title."""
    leak = " (the test type: optimistic)" if result.scored_on_test else ""
    return f"{result.model}, {result.search.search} search scored on {result.scored_type}{leak}"


@styled
def tuning_history(result: TuningResult) -> Figure:
    """The objective of every complete trial and the best so far; pruned and failed trials as crosses.

    Optuna's own history plot leaves pruned trials out; here they show what the budget spent on them.
    """
    figure, ((axes,),) = new_figure(panel_size=(6.0, 4.0))
    trials = result.trials
    complete = trials[trials["state"] == "complete"]
    info = METRICS[result.objective_metric]
    best = complete["value"].cummax() if info.higher_is_better else complete["value"].cummin()
    color = colors_for([result.model])[result.model]
    axes.plot(complete["trial"], complete["value"], "o", color=color, label="complete trial")
    axes.step(complete["trial"], best, where="post", color="black", label="best so far")
    stopped = trials[trials["state"] != "complete"]
    if len(stopped):
        heights = np.full(len(stopped), 0.03)  # in axes coordinates: along the bottom edge
        axes.plot(stopped["trial"], heights, "x", color="grey", transform=axes.get_xaxis_transform())
        axes.plot([], [], "x", color="grey", label="pruned or failed trial")
    axes.set(xlabel="trial", ylabel=info.label, title=_title(result))
    axes.legend()
    return figure


@styled
def tuning_grid(result: TuningResult) -> Figure:
    """The objective of a two-parameter grid as an annotated heat map (rows: the first parameter)."""
    names = list(result.search.space)
    if len(names) != 2:
        raise ValueError(
            f"tuning_grid shows a grid of two parameters; this search has {len(names)}: {names}."
        )
    figure, ((axes,),) = new_figure(panel_size=(5.0, 4.0))
    table = result.trials.pivot_table(index=names[0], columns=names[1], values="value")
    label = METRICS[result.objective_metric].label
    heatmap(axes, table, colorbar_label=label, annotate=True, fmt="{:.3f}")
    axes.set(xlabel=names[1], ylabel=names[0], title=_title(result))
    return figure


@styled
def tuning_importances(result: TuningResult, *, seed: int = 0) -> Figure:
    """:func:`course_lib.tuning.param_importances` as horizontal bars, the most important on top."""
    importances = param_importances(result, seed=seed).sort_values()
    figure, ((axes,),) = new_figure(panel_size=(5.0, 1.2 + 0.4 * len(importances)))
    axes.barh(importances.index, importances.to_numpy(), color=colors_for([result.model])[result.model])
    axes.set(xlabel="share of the objective's variance (fANOVA)", ylabel="parameter", title=_title(result))
    return figure
