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
# - re-run one slice of the benchmark yourself and set it next to the stored results.
# :::
#
# The Kang 2018 data are unusually tidy: control and interferon-stimulated cells were captured in about equal numbers, from the same donors, in one experiment {cite}`kang2018`.
# Real perturbation screens rarely are: a treatment kills cells, a condition is sequenced less deeply, or the perturbed sample is simply smaller.
# The tutorial this course grew out of asked how scGen and scPRAM cope when the stimulated cells are scarce, and found in single runs that the answer depends on the model and on the metric.
# This chapter repeats that experiment with several seeds and both baselines, so that a difference can be told apart from noise.

# %% [markdown]
# ## The imbalanced variant
#
# `course_lib.preprocessing.imbalance` keeps every control cell and draws, without replacement and with a fixed seed, exactly 20% of the stimulated cells of every cell type.
# The proportions between cell types stay as they were; only the ratio of stimulated to control cells changes, from about one to one to about one to five.
# The held-out experiment is then the same as before: the stimulated cells of the target type are hidden, the genes are chosen on the training cells, and the hidden cells are the truth.
# In the imbalanced variant the truth is the 20% of the target's stimulated cells that were kept, which is still enough to score against for every eligible type.

# %% tags=["parameters"]
fraction = 1.0  # share of cells kept per (condition, cell type); the test suite uses a small value
n_epochs = 10  # passes over the training cells in the live slice
n_seeds = 1  # seeds of the live slice (the stored benchmark has three)
cell_type = "CD4 T cells"  # the held-out cell type of the live slice
live_models = ["scpram"]  # deep models of the live slice; add "scgen" for both (about a minute more)

# %%
# %matplotlib inline
import tempfile
from pathlib import Path

import pandas as pd
from IPython.display import display

from course_lib import plotting
from course_lib.benchmark import (
    HEADLINE_METRICS,
    BenchmarkGrid,
    load_results,
    run_benchmark,
    seed_intervals,
)
from course_lib.datasets import kang2018
from course_lib.preprocessing import imbalance, subsample

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
# The query cells, the control cells of the held-out type, are the same in both variants, so the identity baseline predicts exactly the same cells.
# Every other prediction draws its response from the stimulated training cells, and each does so differently:
#
# - **scGen and the mean-shift baseline** average over a pool of stimulated cells that is balanced by cell type with replacement, so a fifth as many distinct cells are drawn over and over again; the mean is noisier, but an average of a few hundred cells per type is still a good average.
#   scGen's VAE also sees five times fewer stimulated cells while it learns its latent space, so the stimulated state is less well represented there.
# - **scPRAM** solves an optimal-transport problem with uniform weights between all reference controls and all stimulated cells; with five controls per stimulated cell, each stimulated cell must receive the mass of about five controls, and the pairs, and so the perturbation vectors $\delta_j$, repeat and stretch across more distant cells.
#   Its attention then averages these vectors.
#
# Which of these effects matters is an empirical question, and a single run cannot answer it: retraining with another seed moves every metric a little, and the difference between the variants must be larger than that to mean anything.

# %% [markdown]
# ## The stored benchmark
#
# `python -m course_lib.benchmark` runs the full leave-one-cell-type-out benchmark: both variants, every eligible held-out type, scGen, scPRAM and both baselines, three seeds each, with ten epochs of training.
# It trains 84 models and took about 47 minutes on a 2-core CPU, so the course ships its results as a table with a provenance record (package versions, data hashes, the grid, dates, run time).
# `load_results` reads both; the first cell lists what the table holds.

# %%
stored = load_results("../data/benchmark/kang2018_loto.csv")
runs = stored.attrs["provenance"]["runs"]
print(f"{len(stored):,} rows from {len(runs)} run(s); last run started {runs[-1]['started']}, "
      f"finished {runs[-1]['finished'] or 'not yet (a partial table)'}")
coverage = stored.groupby(["cell_type", "variant", "model"], observed=True)["seed"].nunique()
coverage.unstack(["variant", "model"]).fillna(0).astype(int)

# %% [markdown]
# The table above counts the seeds per held-out type, variant and model.
# A fair comparison of the two variants uses only the held-out types that both variants cover, so the cell below keeps those (or all types, with a note, if the table does not yet hold any type in both).

# %%
types_per_variant = stored.groupby("variant")["cell_type"].unique()
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
# Read the figures model by model, and against the baselines.
#
# - The **identity baseline** predicts the same cells in both variants; its scores move only because the truth it is scored against is a fifth of the stimulated cells, which makes the real means noisier and can change the energy distance markedly (compare the identity's rows in the live table below).
#   That movement is the part of any difference that comes from the smaller test set, not from the model.
# - The **mean-shift baseline** and **scGen** rely on average shifts; compare how far their markers move between the variants with how far the identity's move.
# - **scPRAM**'s per-cell vectors come from the transport pairs, which the imbalance changes most; watch whether its change correlation and energy distance suffer more than scGen's, as the original tutorial reported from single runs.
#
# The table below prints the difference, imbalanced minus balanced, of each model's mean over seeds, so that the direction of every change can be read without the figure.

# %%
means = overall.pivot(index=["model", "metric"], columns="variant", values="mean")
if {"balanced", "imbalanced"} <= set(means.columns):
    display((means["imbalanced"] - means["balanced"]).unstack("metric").round(3))
else:
    print(f"the stored table holds only {', '.join(means.columns)}: no difference to show yet.")

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
# Set the live numbers next to the stored ones for the same held-out type.
# They agree closely only when the slice runs with the benchmark's settings (all cells, ten epochs) and the same seeds; with the small settings of a quick test run they differ, and the comparison shows by how much.

# %%
same_type = stored[(stored["cell_type"] == cell_type) & stored["metric"].isin(HEADLINE_METRICS)]
stored_means = same_type.pivot_table(index=["model", "variant"], columns="metric", values="value")
pd.concat({"live": live_table, "stored (mean over seeds)": stored_means}, axis=1).round(3)

# %% [markdown]
# :::{admonition} What the experiment can and cannot say
# :class: note
# The imbalanced variant changes two things at once: the models see fewer stimulated cells, and they are scored against fewer real stimulated cells.
# The identity baseline isolates the second effect, which is why it belongs in this comparison even though it predicts nothing.
# A cleaner design would score both variants against the same, full set of held-out stimulated cells; exercise 3 builds it.
# :::

# %% [markdown]
# ## Key take-aways
#
# - Perturbed cells are often scarcer than controls; an imbalanced variant that keeps every control and an exact, seeded share of each type's stimulated cells tests whether a model copes.
# - The imbalance reaches each model through a different step: the resampled pools of scGen and the mean-shift baseline, the transport pairs of scPRAM; the identity baseline shows what the smaller test set alone does to the scores.
# - A benchmark reports means over seeds with intervals; a difference between variants means something only when it is larger than the spread between seeds.
# - Stored benchmark results come with their provenance, and any slice of them can be re-run with `run_benchmark`.

# %% [markdown]
# ## Exercises
#
# **1. A harsher imbalance.**
# Build a variant that keeps only 5% of the stimulated cells, hold out CD4 T cells, and score scGen and the mean-shift baseline against the identity.
#
# :::{dropdown} Solution
# ```python
# from course_lib.metrics import evaluate
# from course_lib.models import IdentityBaseline, MeanShiftBaseline, Scgen
# from course_lib.preprocessing import holdout, holdout_mask, preprocess
#
# harsh = imbalance(counts, stim_fraction=0.05, seed=0)
# adata = preprocess(harsh, fit_on=~holdout_mask(harsh, cell_type))
# train, truth = holdout(adata, cell_type)
# ctrl = train[(train.obs["cell_type"] == cell_type) & (train.obs["condition"] == "control")]
# models = {"identity": IdentityBaseline, "mean_shift": MeanShiftBaseline, "scgen": Scgen}
# predictions = {name: cls(train, seed=0).train(n_epochs=n_epochs, verbose=False).predict(target=cell_type)
#                for name, cls in models.items()}
# evaluate(ctrl, truth, predictions, verbose=False).pivot(index="metric", columns="model", values="value")
# ```
# With 5% of the stimulated cells, the smallest types keep only a handful, and the balanced pools repeat them many times.
# The truth itself shrinks to a few dozen cells, so the bootstrap intervals widen: compare them with the 20% variant before reading differences.
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
# **3. Score both variants against the same truth.**
# Train scGen on the imbalanced data with CD4 T cells held out, but score its prediction against *all* stimulated CD4 T cells of the balanced data.
# How does this change the comparison?
#
# :::{dropdown} Solution
# The two variants must share the genes, so select them on the training cells of the imbalanced variant and preprocess the full data with that selection:
# ```python
# from course_lib.metrics import evaluate
# from course_lib.models import Scgen
# from course_lib.preprocessing import holdout, holdout_mask, preprocess
#
# harsh = variants["imbalanced"]
# genes = preprocess(harsh, fit_on=~holdout_mask(harsh, cell_type)).var_names
# full = preprocess(counts[:, genes], fit_on=~holdout_mask(counts, cell_type), n_top_genes=len(genes))
# train, _ = holdout(full[full.obs_names.isin(harsh.obs_names)], cell_type)
# _, truth = holdout(full, cell_type)
# ctrl = train[(train.obs["cell_type"] == cell_type) & (train.obs["condition"] == "control")]
# prediction = Scgen(train, seed=0).train(n_epochs=n_epochs, verbose=False).predict(target=cell_type)
# evaluate(ctrl, truth, {"scgen_imbalanced": prediction}, verbose=False)
# ```
# Now only the training data differ between the variants, and the identity baseline scores the same in both: any remaining difference is the model's.
# :::

# %% [markdown]
# ## References
#
# ```{bibliography}
# :filter: docname in docnames
# ```
