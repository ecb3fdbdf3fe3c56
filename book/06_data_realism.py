# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Data realism: when the stimulated cells are few
#
# :::{admonition} Learning objectives
# :class: note
# After this chapter you can
# - build an imbalanced version of a perturbation data set that keeps every control cell and an exact share of each type's stimulated cells;
# - say which step of scGen, scPRAM and the mean-shift baseline the imbalance touches;
# - read a benchmark table with several seeds, and report a mean with an interval over seeds instead of a single run;
# - compare each model on balanced and imbalanced data, per held-out cell type, and judge whether a difference exceeds the spread between seeds;
# - state which model loses most under imbalance, from the stored numbers, and check that verdict against a published one;
# - re-run one slice of the benchmark yourself and set it next to the stored results.
# :::
#
# The Kang 2018 data are unusually tidy: control and interferon-stimulated cells were captured in about equal numbers, from the same donors, in one experiment {cite}`kang2018`.
# Real perturbation screens rarely are: a treatment kills cells, a condition is sequenced less deeply, or the perturbed sample is simply smaller.
# The tutorial this course grew out of asked how scGen and scPRAM cope when the stimulated cells are scarce; from single runs it concluded that scPRAM degrades substantially.
# This chapter repeats that experiment with several seeds, both baselines and CellOT (chapter 9), so that a difference can be told apart from noise, and it reaches its own verdict from the stored numbers.

# %% [markdown]
# ## The imbalanced variant
#
# `course_lib.preprocessing.imbalance` keeps every control cell and draws, without replacement and with a fixed seed, exactly 20% of the stimulated cells of every cell type.
# The proportions between cell types stay as they were; only the ratio of stimulated to control cells changes, from about one to one to about one to five.
# The held-out experiment is then the same as before: the stimulated cells of the target type are hidden, the genes are chosen on the training cells, and the hidden cells are the truth.
# The truth is *all* stimulated cells of the target type in both variants (`course_lib.experiment.held_out_split` takes them before the imbalance thins the rest): the variant changes what a model learns from, not what it is scored against.
# Scoring the imbalanced variant against only the 20% of the target's cells that were kept would mix two effects, a model that learnt from fewer cells and a noisier truth; with the full truth, any difference between the variants is the model's.

# %% tags=["parameters"]
fraction = 1.0  # share of cells kept per (condition, cell type); the test suite uses a small value
n_epochs = 10  # passes over the training cells in the live slice
n_seeds = 1  # seeds of the live slice (the stored benchmark has three)
cell_type = "CD4 T cells"  # the held-out cell type of the live slice
live_models = ["scpram"]  # deep models of the live slice; add "scgen" for both (about a minute more)
check_claims = True  # check that the prose below matches the outputs (the small test profile turns this off)

# %%
# %matplotlib inline
import tempfile
from pathlib import Path

import pandas as pd
from IPython.display import Markdown, display

from course_lib import plotting
from course_lib.benchmark import (
    HEADLINE_METRICS,
    BenchmarkGrid,
    compare_results,
    load_results,
    run_benchmark,
    seed_intervals,
)
from course_lib.datasets import kang2018
from course_lib.metrics import CEILING, metric_info
from course_lib.models import BASELINES, MODELS
from course_lib.preprocessing import imbalance, subsample

plotting.use_course_style()

all_cells = kang2018()
counts = subsample(all_cells, fraction, seed=0) if fraction < 1 else all_cells
variants = {"balanced": counts, "imbalanced": imbalance(counts, stim_fraction=0.2, seed=0)}
cells = pd.concat(
    {name: data.obs.groupby(["cell_type", "condition"], observed=True).size().unstack() for name, data in variants.items()},
    axis=1,
)
cells

# %% [markdown]
# ## Where the imbalance enters each model
#
# The query cells, the control cells of the held-out type, are the same in both variants, and so is the truth; but the 2,000 genes are chosen on each variant's training cells, so the two variants score different genes, and even the identity baseline, which predicts the same cells, can score differently.
# The identity's change between the variants is therefore the yardstick: what a model loses beyond it comes from learning with fewer stimulated cells.
# Every other prediction draws its response from the stimulated training cells, and each does so differently:
#
# - **scGen and the mean-shift baseline** average over a pool of stimulated cells that is balanced by cell type with replacement, so a fifth as many distinct cells are drawn over and over again; the mean is noisier, but an average of a few hundred cells per type is still a good average.
#   scGen's VAE also sees five times fewer stimulated cells while it learns its latent space, so the stimulated state is less well represented there.
# - **scPRAM** solves, for every training cell type, an optimal-transport problem with uniform weights between that type's controls and its stimulated cells; with five controls per stimulated cell, each stimulated cell must receive the mass of about five controls, so the pairs, and with them the perturbation vectors $\delta_j$, repeat and reach across more distant cells.
#   Its attention then averages these vectors.
# - **CellOT** learns one transport map from all training controls to all stimulated training cells; with a fifth of the target cells, the map is fitted to a sparser picture of the stimulated state.
#
# Which of these effects matters is an empirical question, and a single run cannot answer it: retraining with another seed moves every metric a little, and the difference between the variants must be larger than that to mean anything.

# %% [markdown]
# ## The stored benchmark
#
# `python -m course_lib.benchmark` runs the full leave-one-cell-type-out benchmark: both variants, every eligible held-out type, scGen, scPRAM, CellOT and both baselines, three seeds each, with ten epochs of training (2,000 steps for CellOT), and the noise ceiling of chapter 5 for every held-out type.
# That takes hours on a laptop, so the course ships the results as a table with a provenance record (package versions, data hashes, the grid, dates, run time, the machine's load).
# `load_results` reads both.

# %%
stored = load_results("../data/benchmark/kang2018_loto.csv")
runs = stored.attrs["provenance"]["runs"]
coverage = stored.groupby(["cell_type", "variant", "model"], observed=True)["seed"].nunique()
coverage.unstack(["variant", "model"]).fillna(0).astype(int)

# %% tags=["remove-input"]
trained = stored[~stored["model"].isin([*BASELINES, CEILING])]
trained = trained.drop_duplicates(["model", "cell_type", "variant", "seed"])["model"].value_counts()
hours = sum(run["wall_seconds"] or 0 for run in runs) / 3600
finished = runs[-1]["finished"]
Markdown(
    f"The table above counts the seeds per held-out type, variant and model. It holds {len(stored):,} rows "
    f"from {len(runs)} run(s) of the benchmark: {trained.sum()} trained models "
    f"({', '.join(f'{n} of {model}' for model, n in trained.items())}) in {hours:.1f} hours of wall-clock "
    f"time on a {runs[-1]['cpu_count']}-core CPU; the last run "
    + (f"finished on {finished[:10]}." if finished else "has not finished, so this is a partial table.")
)

# %% [markdown]
# A fair comparison of the two variants uses only the held-out types that both variants cover, so the cell below keeps those (or all types, with a note, if the table does not yet hold any type in both).

# %%
types_per_variant = stored[stored["model"] != CEILING].groupby("variant")["cell_type"].unique()
shared = sorted(set.intersection(*(set(types) for types in types_per_variant)))
if len(types_per_variant) < 2 or not shared:
    print("The table does not yet cover both variants on a common cell type; showing what it holds.")
    shared = sorted(stored["cell_type"].unique())
comparable = stored[stored["cell_type"].isin(shared)]
print(f"held-out types compared: {', '.join(shared)}")

# %% [markdown]
# ## Balanced against imbalanced, with intervals over seeds
#
# For each model and variant, `seed_intervals` averages every metric over the held-out types within each seed, and then reports the mean over seeds with a 95% t interval, $\bar m \pm t_{n-1}\, s / \sqrt{n}$, where $s$ is the standard deviation between the $n$ seeds.
# Seeds are the right unit for the interval: each seed retrains every model from scratch, so the spread between seeds is the spread a reader would see by running the benchmark again.
# With three seeds the $t$ quantile is large (4.3), so only clear differences get intervals that do not overlap.
# The three headline metrics of chapter 5 stand for the means, the changes and the distributions.

# %%
overall = seed_intervals(comparable, metrics=HEADLINE_METRICS, by=("model", "variant"))
overall["mean [95% interval]"] = [
    f"{row.mean:.3f} [{row.ci_low:.3f}, {row.ci_high:.3f}]" for row in overall.itertuples(index=False)
]
overall.pivot(index=["model", "variant"], columns="metric", values="mean [95% interval]")

# %% [markdown]
# The same, per held-out cell type: one panel per model, one row per type, one marker per variant, whiskers for the interval over seeds (none where the table has a single seed).

# %%
per_type = seed_intervals(comparable, metrics=HEADLINE_METRICS, by=("model", "variant", "cell_type"))
for metric in HEADLINE_METRICS:
    display(plotting.interval_dots(per_type, metric=metric))

# %% [markdown]
# The table below prints the difference, imbalanced minus balanced, of each model's mean over seeds, so that the direction of every change can be read without the figures.
# A difference counts as clear when the two variants' 95% intervals over seeds do not overlap.

# %%
means = overall.pivot(index=["model", "metric"], columns="variant", values="mean")
both_variants = {"balanced", "imbalanced"} <= set(means.columns)
if both_variants:
    change = (means["imbalanced"] - means["balanced"]).unstack("metric")
    display(change.round(3))
else:
    print(f"the stored table holds only {', '.join(means.columns)}: no difference to show yet.")

# %% [markdown]
# ## The verdict

# %% tags=["remove-input"]
bounds = overall.set_index(["model", "metric", "variant"])[["ci_low", "ci_high"]]


def loss_of(model, metric):
    """How much worse the imbalanced variant scores, in the metric's better direction."""
    return change.loc[model, metric] * (-1 if metric_info(metric).higher_is_better else 1)


def clear(model, metric):
    """Whether the two variants' intervals over seeds do not overlap."""
    low, high = bounds.loc[(model, metric, "balanced")], bounds.loc[(model, metric, "imbalanced")]
    return bool(low.ci_high < high.ci_low or high.ci_high < low.ci_low)


deep = [model for model in ("scgen", "scpram", "cellot") if both_variants and model in change.index]
if len(deep) >= 2 and {"scgen", "scpram"} <= set(deep):
    lines = []
    for metric in HEADLINE_METRICS:
        parts = [
            f"{MODELS[model].label} {change.loc[model, metric]:+.3f}{' (clear)' if clear(model, metric) else ''}"
            for model in [*deep, "mean_shift"]
        ]
        lines.append(f"- {metric_info(metric).label}, {'higher' if metric_info(metric).higher_is_better else 'lower'} is better: {', '.join(parts)}.")
    scgen_worse = [metric for metric in HEADLINE_METRICS if loss_of("scgen", metric) > loss_of("scpram", metric)]
    clear_losses = [(model, metric) for model in deep for metric in HEADLINE_METRICS
                    if clear(model, metric) and loss_of(model, metric) > 0]
    identity_moves = ", ".join(f"{metric_info(metric).label} {change.loc['identity', metric]:+.3f}" for metric in HEADLINE_METRICS)
    verdict = (
        f"scGen loses more than scPRAM under imbalance on {len(scgen_worse)} of the {len(HEADLINE_METRICS)} headline metrics"
        + (f" ({', '.join(metric_info(metric).label for metric in scgen_worse)})" if scgen_worse else "")
        + f", and scPRAM more than scGen on the other {len(HEADLINE_METRICS) - len(scgen_worse)}. "
        + (
            "Clear losses, with intervals that do not overlap: "
            + ", ".join(f"{MODELS[model].label} on {metric_info(metric).label}" for model, metric in clear_losses) + ". "
            if clear_losses else
            "No model's loss is clear: every pair of intervals overlaps, so with three seeds the imbalance costs each model "
            "less than the spread between its own training runs. "
        )
        + ("The original tutorial concluded from single runs that scPRAM degrades substantially; "
           + ("these numbers agree that it degrades, and the intervals say by how much."
              if ("scpram", "e_distance") in clear_losses or any(model == "scpram" for model, _ in clear_losses)
              else "these numbers do not support a substantial loss for scPRAM, nor for any other model.")
           )
        + f" For comparison, the identity baseline, which learns nothing, moves by {identity_moves}: the genes differ between the variants."
    )
    display(Markdown(
        f"On the stored benchmark, over the {len(shared)} held-out type(s) that both variants cover ({', '.join(shared)}), "
        "the imbalanced variant changes each model's mean over held-out types and seeds as follows "
        "(imbalanced minus balanced; *clear* marks a change whose intervals do not overlap):\n\n"
        + "\n".join(lines) + "\n\n" + verdict
    ))
else:
    display(Markdown("The stored table does not yet hold scGen and scPRAM in both variants, so this chapter cannot state a verdict yet."))

# %% [markdown]
# Where the imbalance enters each model was described above; the numbers say which of those effects is large enough to see against the spread between seeds.
# A loss that stays inside the intervals is not a finding, however plausible its mechanism.

# %% [markdown]
# ## A live slice of the benchmark
#
# To see that the table is not magic, we re-run one slice of it: the held-out type of the parameters cell, both variants, the deep models of `live_models` (scPRAM, the model whose transport step the imbalance touches most; add `"scgen"` in the parameters cell to run both) and the baselines, with `n_seeds` seeds.
# `run_benchmark` does exactly what the full benchmark does, here writing to a temporary file instead of the course's table.
# It trains quietly; with the learner parameters it takes a few minutes on a laptop CPU.

# %%
grid = BenchmarkGrid(models=tuple(live_models), cell_types=(cell_type,), seeds=tuple(range(n_seeds)),
                     n_epochs=n_epochs, fraction=fraction)
with tempfile.TemporaryDirectory() as folder:
    live = run_benchmark(all_cells, grid, results_path=Path(folder) / "slice.csv", verbose=False)
live_table = live[live["metric"].isin(HEADLINE_METRICS)].pivot_table(
    index=["model", "variant"], columns="metric", values="value")
live_table.round(3)

# %% [markdown]
# The figure places every prediction of the slice by its R² of means and its change correlation on the top 100 genes, one colour per model and one marker per variant.

# %%
plotting.metric_scatter(live, x_metric="r2_mean_all", y_metric="delta_pearson_top100", marker="variant",
                        title=f"Live slice, {cell_type} held out: balanced and imbalanced")

# %% [markdown]
# Set the live numbers next to the stored ones.
# `compare_results` matches every live value with the stored value of the same grid point (model, held-out type, variant, seed and hyperparameters, epochs included), and only when both tables were computed from the same data and data settings; otherwise the stored column stays empty.

# %%
comparison = compare_results(live, stored)
comparison.pivot_table(index=["model", "variant", "seed"], columns="metric",
                       values=["live", "committed", "difference"]).round(4)

# %% [markdown]
# The deep models' numbers depend on the number of CPU threads that trained them, because floating-point sums are added in another order; the provenance records the threads of every run, so each stored value can be compared with the live one from the same number of threads.

# %%
import torch

run_threads = {run["run_id"]: run["torch_threads"] for run in runs}
matched = comparison.dropna(subset=["committed"]).merge(
    stored[["model", "cell_type", "variant", "seed", "metric", "run_id"]], how="left")
matched["same_threads"] = matched["run_id"].map(run_threads) == torch.get_num_threads()
matched.groupby(["model", "variant", "same_threads"])["difference"].agg(lambda d: d.abs().max()).rename("largest |difference|")

# %% tags=["remove-input"]
if matched.empty:
    display(Markdown(
        "No live value has a stored counterpart: the slice ran with other settings than the stored benchmark "
        f"(here {n_epochs} epochs on {fraction:.0%} of the cells; the benchmark uses 10 epochs on all cells), "
        "so its numbers are not the same grid points. Run the chapter with the learner parameters to reproduce the table."
    ))
else:
    same = matched[matched["same_threads"]]
    other = matched[~matched["same_threads"]]
    sentences = [f"{len(matched)} of the slice's {len(comparison)} values have a stored counterpart."]
    if len(same):
        largest = same["difference"].abs().max()
        sentences.append(
            f"The {len(same)} computed with as many threads as this session ({torch.get_num_threads()}) differ by at most {largest:.1e}"
            + (": the slice reproduces them exactly." if largest == 0 else ".")
        )
    if len(other):
        sentences.append(
            f"The {len(other)} computed with another number of threads differ by up to {other['difference'].abs().max():.3f}, "
            "the size of a difference that the thread count alone makes; it is smaller than the spread between seeds only where the intervals above say so."
        )
    display(Markdown(" ".join(sentences)))

# %% tags=["remove-cell"]
if check_claims:
    assert len(matched) == len(comparison), "every live value has a stored counterpart"
    assert (matched.loc[matched["same_threads"], "difference"].abs() < 1e-9).all(), "the slice reproduces them exactly"

# %% [markdown]
# :::{admonition} What the experiment can and cannot say
# :class: note
# Scoring both variants against the same, full truth isolates what the models lose by learning from fewer stimulated cells.
# It does not say how well a model would do in a screen where the held-out condition itself is scarce: there the truth is small too, and every score, the baselines' included, becomes noisier (exercise 3 measures by how much).
# The imbalance is also the same for every cell type here; a real screen may lose some types more than others.
# :::

# %% [markdown]
# ## Key take-aways
#
# - Perturbed cells are often scarcer than controls; an imbalanced variant that keeps every control and an exact, seeded share of each type's stimulated cells tests whether a model copes.
# - The imbalance reaches each model through a different step: the resampled pools of scGen and the mean-shift baseline, the transport pairs of scPRAM, the fitted map of CellOT; scoring both variants against the same, full truth makes every difference the model's.
# - Read a published verdict as a hypothesis: with seeds, baselines and intervals, this chapter's stored benchmark gives its own answer to which model copes with scarce stimulated cells.
# - A benchmark reports means over seeds with intervals; a difference between variants means something only when it is larger than the spread between seeds.
# - Stored benchmark results come with their provenance, and any slice of them can be re-run with `run_benchmark`.

# %% [markdown]
# ## Exercises
#
# **1. A harsher imbalance.**
# Build a split that keeps only 5% of the stimulated cells, hold out CD4 T cells, and score scGen and the mean-shift baseline against the identity.
#
# :::{dropdown} Solution
# ```python
# from course_lib.experiment import held_out_split
# from course_lib.metrics import evaluate
# from course_lib.models import IdentityBaseline, MeanShiftBaseline, Scgen
#
# split = held_out_split(all_cells, cell_type, variant="imbalanced", stim_fraction=0.05, fraction=fraction, seed=0)
# models = {"identity": IdentityBaseline, "mean_shift": MeanShiftBaseline, "scgen": Scgen}
# predictions = {name: cls(split.train, seed=0).train(n_epochs=n_epochs, verbose=False).predict(target=cell_type)
#                for name, cls in models.items()}
# evaluate(split.query, split.truth, predictions, verbose=False).pivot(index="metric", columns="model", values="value")
# ```
# With 5% of the stimulated cells, the smallest types keep only a handful, and the balanced pools repeat them many times; the truth is still every stimulated CD4 T cell, so the scores stay comparable with the 20% variant.
# :::
#
# **2. How much do the seeds disagree?**
# From the stored table, compute for each model and variant the standard deviation between seeds of the change correlation on the top 100 genes, per held-out type.
# Which model is the least stable?
#
# :::{dropdown} Solution
# ```python
# per_type[per_type["metric"] == "delta_pearson_top100"].pivot_table(
#     index="cell_type", columns=["model", "variant"], values="sd").round(3)
# ```
# The baselines are almost perfectly stable: the identity has no randomness at all, and the mean shift varies only through the resampled pools.
# The deep models vary more, because each seed draws new initial weights, minibatches and validation cells; with ten epochs, training has not converged, which adds to the spread.
# :::
#
# **3. A scarce truth.**
# In a real screen the held-out condition is scarce too, so the truth is small.
# Score the identity baseline and scPRAM of the imbalanced split against only the stimulated CD4 T cells that the imbalance kept, and compare with the scores against all of them.
#
# :::{dropdown} Solution
# ```python
# from course_lib.experiment import held_out_split
# from course_lib.metrics import evaluate
# from course_lib.models import IdentityBaseline, Scpram
#
# split = held_out_split(all_cells, cell_type, variant="imbalanced", fraction=fraction, seed=0)
# scarce_truth = split.truth[split.truth.obs_names.isin(variants["imbalanced"].obs_names)]
# predictions = {name: cls(split.train, seed=0).train(n_epochs=n_epochs, verbose=False).predict(target=cell_type)
#                for name, cls in {"identity": IdentityBaseline, "scpram": Scpram}.items()}
# scores = {truth_name: evaluate(split.query, truth, predictions, verbose=False).set_index(["model", "metric"])["value"]
#           for truth_name, truth in {"all stimulated": split.truth, "kept 20%": scarce_truth}.items()}
# pd.DataFrame(scores).loc[(slice(None), list(HEADLINE_METRICS)), :].round(3)
# ```
# Against a fifth of the real cells, the real means are noisier and the energy distance of every prediction, the identity's included, changes although the predictions are the same: part of any difference measured that way comes from the test set, not from the model.
# This is why the course scores both variants against the full truth.
# :::

# %% [markdown]
# ## References
#
# ```{bibliography}
# :filter: docname in docnames
# ```
