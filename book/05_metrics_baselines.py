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
# # Metrics and baselines: what a good score means
#
# :::{admonition} Learning objectives
# :class: note
# After this chapter you can
# - say, for each metric of `course_lib.metrics`, which property of a prediction it measures and which it ignores;
# - explain, with a formula, why predicting no response at all earns a high R² of means;
# - tell apart metrics of the means, of the *changes* from control, and of whole distributions, and say why the change metrics are the honest test of a perturbation model;
# - put every model next to the identity and mean-shift baselines before reading its scores;
# - read a table and two figures that score scGen, scPRAM and both baselines on the same held-out cells.
# :::
#
# Chapters 3 and 4 ended with tables in which every model, including one that does nothing, scored well on some metric.
# That is not a flaw of those models; it is a property of the metrics.
# Published comparisons of perturbation models disagree with each other largely because they score with different metrics and different baselines {cite}`gavriilidis2024,ahlmanneltze2025`.
# This chapter takes the metrics apart one by one, on the same held-out CD4 T cells as before, so that a number in a table, ours or anyone's, can be read for what it is.

# %% [markdown]
# ## The evaluation set and the three families of metrics
#
# For a held-out cell type there are three groups of cells: the real control cells (`ctrl`), the real stimulated cells that no model saw (`stim`), and the predicted cells (`pred`).
# For gene $g$, write $c_g$, $y_g$ and $\hat y_g$ for the mean log-normalised expression of the three groups.
# Every metric of the course compares `pred` with `stim`, and each looks through a different window:
#
# | family | metric (name in the tables) | compares | ignores |
# |---|---|---|---|
# | means | R² of means (`r2_mean_*`), Pearson r of means, MSE of means | $\hat y$ with $y$, gene by gene | how cells vary; whether the *change* from control is right |
# | changes | delta R² (`delta_r2_*`), delta Pearson r (`delta_pearson_*`) | $\hat y - c$ with $y - c$ | how cells vary; delta Pearson also ignores the size of the change |
# | distributions | energy distance (`e_distance`) | whole cells, in a PCA of ctrl + stim | genes outside the leading components |
# | | mean-variance KDE distance (`mv_kde`) | the cloud of per-gene (mean, variance) points | which gene is which |
# | | DEG Jaccard (`deg_jaccard_top100`) | the 100 genes most induced in stim and in pred | how much each gene changes |
#
# The suffix `_all` means all 2,000 genes, `_top100` the 100 genes most up-regulated in `stim` against `ctrl` (Wilcoxon rank-sum test).
# The R² is the coefficient of determination,
#
# $$
# R^2(y, \hat y) = 1 - \frac{\sum_g (y_g - \hat y_g)^2}{\sum_g (y_g - \bar y)^2},
# $$
#
# with $\bar y$ the average over genes; the papers of scGen and scPRAM report the squared Pearson correlation instead, which `course_lib` keeps under its own name (`r2_pearson2_mean_*`).
# The energy distance between two sets of cells $X$ and $Y$ is $E = 2\,\mathbb{E}\lVert X - Y\rVert - \mathbb{E}\lVert X - X'\rVert - \mathbb{E}\lVert Y - Y'\rVert$ {cite}`szekely2013`; it is zero only when the two distributions are equal, and it is measured in a PCA fitted on the real cells alone so that no prediction shapes the space it is judged in.
# The docstrings of `course_lib.metrics` give every formula in full.

# %% tags=["parameters"]
fraction = 1.0  # share of cells kept per (condition, cell type); the test suite uses a small value
n_epochs = 10  # passes over the training cells, for scGen and scPRAM
n_seeds = 1  # not used here (one seed suffices to read the metrics); chapter 6 repeats runs over seeds
seed = 0
cell_type = "CD4 T cells"  # the held-out cell type

# %% [markdown]
# ## Four predictions of the same cells
#
# We prepare the data as in chapters 3 and 4 (the stimulated CD4 T cells hidden, the genes chosen without them), train scGen and scPRAM, and ask both baselines.
# Training runs quietly here; chapters 3 and 4 show the loss curves.

# %%
# %matplotlib inline
import numpy as np
import pandas as pd

from course_lib import plotting
from course_lib.datasets import kang2018
from course_lib.experiment import held_out_split
from course_lib.metrics import (
    METRICS,
    energy_distances,
    evaluate,
    response_share,
    scaled_response_scores,
    top_degs,
)
from course_lib.models import IdentityBaseline, MeanShiftBaseline, Scgen, Scpram

counts = kang2018()
train, ctrl, truth = held_out_split(counts, cell_type, fraction=fraction, seed=seed)
models = {"identity": IdentityBaseline, "mean_shift": MeanShiftBaseline, "scgen": Scgen, "scpram": Scpram}
predictions = {
    name: cls(train, seed=seed).train(n_epochs=n_epochs, verbose=False).predict(target=cell_type)
    for name, cls in models.items()
}
results = evaluate(ctrl, truth, predictions, seed=seed, verbose=False)
shown = ["r2_mean_all", "r2_mean_top100", "delta_pearson_all", "delta_pearson_top100", "delta_r2_all",
         "delta_r2_top100", "e_distance", "mv_kde", "deg_jaccard_top100"]
table = results.pivot(index="metric", columns="model", values="value").loc[shown, list(models)]
table.round(3)

# %% [markdown]
# The same table, read as a ranking: for each metric, 1 marks the best of the four predictions in the metric's own direction (higher R² and correlations, lower distances).

# %%
better_high = np.array([METRICS[name].higher_is_better for name in shown])
ranks = table.mul(np.where(better_high, -1, 1), axis=0).rank(axis=1, method="min").astype(int)
ranks

# %% [markdown]
# No model wins every row, and the identity baseline, which predicts nothing, is not last everywhere.
# The rest of the chapter explains the table row by row.

# %% [markdown]
# ## Why R² of means rewards doing nothing
#
# The identity baseline returns the control cells, so its predicted means are the control means, $\hat y = c$.
# Put that into the R² of means:
#
# $$
# R^2_{\text{identity}} = 1 - \frac{\sum_g (y_g - c_g)^2}{\sum_g (y_g - \bar y)^2} = 1 - S .
# $$
#
# The numerator is the size of the real response, the denominator the spread of the genes' mean expression.
# Genes differ from each other far more than interferon changes them: a ribosomal gene is expressed a hundred times more than a transcription factor in both conditions.
# So $S$ is small, and the R² of doing nothing is large.
# `response_share` computes $S$; the identity's R² of means in the table is exactly $1 - S$ (up to the bootstrap).

# %%
degs = top_degs(truth, ctrl, n_top=100)
for genes, scope in [(None, "all"), (degs, "top100")]:
    share = response_share(ctrl, truth, genes=genes)
    print(f"{scope:>6} genes: S = {share:.3f}, so the identity scores R² of means = {1 - share:.3f} "
          f"(table: {table.loc[f'r2_mean_{scope}', 'identity']:.3f})")

# %% [markdown]
# On all genes the identity scores high; on the 100 most induced genes, where the response *is* the signal, $S$ is much larger and the identity's R² drops far below its all-gene value (it can even turn negative, which means worse than predicting the average of these genes for every one of them).
# The mean-expression scatter shows the same from the identity baseline's point of view: most genes sit on the diagonal because they do not respond, and only the outlined interferon-induced genes fall below it.

# %%
plotting.mean_expression_scatter(ctrl, truth, predictions["identity"], model="identity")

# %% [markdown]
# :::{admonition} A high R² of means on all genes is the floor, not the goal
# :class: warning
# Read an R² of means on all genes only next to the identity baseline's on the same cells.
# A model that reaches, say, 0.9 where the identity reaches nearly as much has learnt little about the perturbation.
# The original tutorial, like the scGen and scPRAM papers, reported R² of means without this baseline.
# :::

# %% [markdown]
# ## The change metrics, and what they miss
#
# The change (delta) metrics subtract the control means first, so that only the response is compared: delta Pearson r correlates $\hat y - c$ with $y - c$, and delta R² is the R² of the same two vectors.
# For the identity baseline $\hat y - c = 0$, a vector without any variation, so its delta correlation is 0 by definition: it has no response to correlate.
# (In the table it is close to, not exactly, 0: the bootstrap resamples the predicted cells, and the resampled means wobble around the control means.)
#
# To see what each metric rewards, take an idealised family of predictions that scale the true mean response by a factor $a$, $\hat y = c + a\,(y - c)$.
# At $a = 0$ this is the identity baseline, at $a = 1$ the truth, and at $a = 1.5$ a prediction that overshoots every gene by half.
# `scaled_response_scores` scores the whole family, on all genes and on the top 100 genes.

# %%
scales = np.linspace(0, 2, 41)
scaled = [scaled_response_scores(ctrl, truth, scales, genes=genes) for genes in (None, degs)]
curves = scaled[0].loc[scaled[0]["metric"].isin(["r2_mean_all", "delta_pearson_all", "delta_r2_all"])]
curves = pd.concat([curves, scaled[1].loc[scaled[1]["metric"] == "r2_mean_top100"]])
plotting.metric_curves(curves, xlabel="scale a of the true response (ŷ = c + a (y − c))",
                       marks={0.0: "identity", 1.0: "truth"},
                       title="Scores of predictions that scale the true response")

# %% [markdown]
# Three lessons in one figure:
#
# - **R² of means on all genes** starts high at $a = 0$ and rises only a little to 1 at $a = 1$: it barely separates no response from the right response.
#   On the top 100 genes it falls steeply away from $a = 1$, so it does see the response there.
# - **Delta Pearson r** jumps from 0 to 1 as soon as $a > 0$ and stays there: it checks the *direction* of the response (which genes go up, which down, in what proportion) and is blind to its size.
#   A model that predicts a tenth of the true response, or ten times it, gets a perfect correlation.
# - **Delta R²** peaks at $a = 1$ and falls on both sides: it is the only one of the three that demands the right size, and it punishes an overshoot as much as an undershoot.
#
# This is why the course reports delta Pearson r *and* delta R², and why "high correlation of changes" is necessary but not sufficient.

# %% [markdown]
# ## Means against changes, for the four predictions
#
# The figure places each prediction by its R² of means (horizontal) and its delta Pearson r (vertical), both on all genes, with the bootstrap intervals as whiskers.

# %%
plotting.metric_scatter(results, x_metric="r2_mean_all", y_metric="delta_pearson_all",
                        title="Means against changes, all genes: one point per prediction")

# %% [markdown]
# Along the horizontal axis the four predictions lie in a narrow band, the identity baseline included: on all genes the R² of means hardly separates doing nothing from predicting the response.
# Along the vertical axis the identity baseline sits at zero, whatever its R² of means, and every prediction that moves the cells in the right direction sits above it.
# The second figure repeats the comparison on the 100 most induced genes, where the R² of means no longer favours the identity baseline.

# %%
plotting.metric_scatter(results, x_metric="r2_mean_top100", y_metric="delta_pearson_top100",
                        title="Means against changes, top 100 DEGs: one point per prediction")

# %%
print(table.loc[["delta_pearson_all", "delta_pearson_top100", "delta_r2_top100"]].round(3).to_string())

# %% [markdown]
# The mean-shift baseline is the bar that matters here.
# It knows nothing about CD4 T cells; it adds the average response of the other cell types to every control cell.
# A deep model whose change metrics are not clearly above the mean-shift baseline's has not learnt anything that an average would not give; the table above shows on this split where scGen and scPRAM stand against it.
# Recent benchmarks of perturbation models found that deep models often fail exactly this test {cite}`ahlmanneltze2025`.

# %% [markdown]
# ## Distribution metrics: the cells, not only their means
#
# Two predictions with the same means can look very different as cells: one may keep the cell-to-cell variation and the many zeros of droplet data, the other may return smooth, averaged profiles.
# Three metrics look beyond the means.
#
# **Energy distance.** The cells are projected onto the first 30 principal components of the real control and stimulated cells, and the energy distance compares the two clouds of points.
# The heat map gives it for every pair of groups; the row of the stimulated cells is the one that scores the models, and the distance between control and stimulated cells sets the scale: a prediction farther from `stimulated` than `control` is has moved its cells the wrong way.

# %%
plotting.energy_distance_heatmap(energy_distances(ctrl, truth, predictions, seed=seed),
                                 title=f"Energy distance in the PCA of real {cell_type}")

# %% [markdown]
# **Mean-variance KDE distance.** Every gene gives a point (mean, variance) in `stim` and in `pred`; the metric compares the two densities of points.
# It sees whether the prediction has realistic variances for its means, a property of droplet data that a decoder returning expected values tends to lose.
# Because most genes barely respond, it is dominated by the unchanged genes, so the identity baseline, whose cells are real cells, does well on it.
#
# **DEG Jaccard.** The 100 genes most up-regulated in `pred` against `ctrl` are compared with the 100 most up-regulated in `stim` against `ctrl`: $J = |A \cap B| / |A \cup B|$.
# It asks whether a model induces the right genes, whatever the size of their change.
# Because it runs a Wilcoxon test on the predicted cells, it also depends on their spread: a prediction whose cells are all alike turns small shifts into significant ones.

# %%
table.loc[["e_distance", "mv_kde", "deg_jaccard_top100"]].round(3)

# %% [markdown]
# :::{admonition} Which metrics the course reports first
# :class: note
# Chapters 6 to 8 summarise each run with three headline metrics, one per family: R² of means on all genes (with the identity baseline beside it), delta Pearson r on the top 100 genes, and the energy distance.
# The full tables keep every metric, and every figure shows both baselines.
# :::

# %% [markdown]
# ## Key take-aways
#
# - Every metric sees one aspect of a prediction: the means, the changes from control, or the distribution of cells; none sees them all.
# - The identity baseline's R² of means equals $1 - S$, one minus the size of the response relative to the spread of gene means; on all genes $S$ is small, so doing nothing scores high.
# - Delta metrics remove the control means and compare responses: the identity scores 0 correlation; delta Pearson r checks the direction of the response, delta R² also its size.
# - Distribution metrics (energy distance, mean-variance KDE, DEG overlap) catch predictions whose means are right but whose cells are not realistic.
# - A model's scores mean something only next to the identity and mean-shift baselines, on the same cells.

# %% [markdown]
# ## Exercises
#
# **1. The squared Pearson correlation.**
# The scGen and scPRAM papers report "R²" as the squared Pearson correlation of the means.
# Compare `r2_pearson2_mean_all` with `r2_mean_all` for the four predictions in `results`.
# For which kind of prediction do the two differ most, and why?
#
# :::{dropdown} Solution
# ```python
# results.pivot(index="metric", columns="model", values="value").loc[["r2_mean_all", "r2_pearson2_mean_all"]]
# ```
# The squared correlation ignores offset and scale: a prediction $\hat y = a y + b$ scores 1 for any $a > 0$ and any $b$.
# The two agree when the predicted means lie along the diagonal, and differ most for a prediction that is systematically too high or too low, or over- or under-scaled.
# The squared correlation is never below the coefficient of determination of the best linear rescaling of the prediction, so it flatters every model, the identity baseline included.
# :::
#
# **2. A response that is half right.**
# Build a prediction that adds only half of the mean-shift baseline's shift, `ctrl.X + 0.5 * delta` with `delta = predictions["mean_shift"].uns["delta"]`, and score it next to the mean-shift baseline.
# Which metrics notice the difference?
#
# :::{dropdown} Solution
# ```python
# half = predictions["mean_shift"].copy()
# half.X = predictions["identity"].X + 0.5 * half.uns["delta"]  # the control cells, dense
# scores = evaluate(ctrl, truth, {"mean_shift": predictions["mean_shift"], "half_shift": half}, seed=seed)
# scores.pivot(index="metric", columns="model", values="value").loc[shown]
# ```
# The delta Pearson correlations are identical (the shift is the same vector, scaled), while delta R², the R² of means on the top 100 genes and the energy distance all get worse: the half shift leaves the cells between control and stimulated.
# :::
#
# **3. Another held-out type.**
# Run the chapter with `cell_type = "CD14+ Monocytes"`.
# Is the identity baseline's R² of means still high, and is $S$ larger or smaller than for CD4 T cells?
#
# :::{dropdown} Solution
# ```bash
# python -m course_lib.book execute book/05_metrics_baselines.py monocytes.ipynb --parameters '{"cell_type": "CD14+ Monocytes"}'
# ```
# Monocytes respond to interferon more strongly than any other type (chapter 2), so $S$ is larger and the identity's R² of means lower than for CD4 T cells.
# The gap between the identity baseline and the models is larger too, but it is still the change and distribution metrics that separate the models from each other.
# :::

# %% [markdown]
# ## References
#
# ```{bibliography}
# :filter: docname in docnames
# ```
