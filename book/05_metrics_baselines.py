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
# - read a score against the noise ceiling, the score of a replicate of the real cells, and say why the course compares the two at half size;
# - read baseline-normalised scores, on which 0 is a baseline and 1 a replicate, against both baselines;
# - tell the part of a predicted response that every cell type shares from the part that is specific to the held-out type;
# - read the tables and figures that score scGen, scPRAM and both baselines on the same held-out cells.
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
# | | type-specific Pearson r and R² (`specific_pearson_*`, `specific_r2_*`) | $\hat y - c - s$ with $y - c - s$, where $s$ is the response that every cell type shares | the shared response itself |
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
check_claims = True  # check that the prose below matches the outputs (the small test profile turns this off)

# %% [markdown]
# ## Four predictions of the same cells
#
# We prepare the data as in chapters 3 and 4 (the stimulated CD4 T cells hidden, the genes chosen without them), train scGen and scPRAM, and ask both baselines.
# Training runs quietly here; chapters 3 and 4 show the loss curves.

# %%
# %matplotlib inline
import numpy as np
import pandas as pd
from IPython.display import Markdown, display

from course_lib import plotting
from course_lib.datasets import kang2018
from course_lib.experiment import held_out_split
from course_lib.metrics import (
    CEILING,
    METRICS,
    energy_distances,
    evaluate,
    metric_info,
    response_share,
    scaled_response_scores,
    top_degs,
)
from course_lib.models import IdentityBaseline, MeanShiftBaseline, Scgen, Scpram
from course_lib.plotting.metrics import normalised_score_heatmap

counts = kang2018()
train, ctrl, truth = held_out_split(counts, cell_type, fraction=fraction, seed=seed)
models = {"identity": IdentityBaseline, "mean_shift": MeanShiftBaseline, "scgen": Scgen, "scpram": Scpram}
predictions = {
    name: cls(train, seed=seed).train(n_epochs=n_epochs, verbose=False).predict(target=cell_type)
    for name, cls in models.items()
}
shared = predictions["mean_shift"].uns["delta"]  # s, the response every type shares (see "The type-specific response")
results = evaluate(ctrl, truth, predictions, seed=seed, shared_response=shared, verbose=False)
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
# The black point (`noise_ceiling`) is what a replicate of the real cells scores; a section below explains it.
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
# ## The noise ceiling: what a replicate scores
#
# No model can be expected to reproduce the real stimulated cells exactly, because those cells are themselves a sample: had the experiment been run again, a new set of stimulated cells of the same type would differ from the first by chance.
# The best score the data allow is the score of such a replicate, and the data already hold one, in a way.
# Split the real stimulated cells at random into two halves, A and B, and score A as if it were a prediction of B, with every metric.
# Repeat with 20 different random splits (seeded, so the same every time) and average: that is the *noise ceiling*, the score of a perfect model that suffers only from sampling noise {cite}`roohani2025`.
# `evaluate` computes it for every metric and reports it as the model `noise_ceiling`; `course_lib.metrics.noise_ceiling` computes it on its own.
#
# A half holds half as many cells as the whole, and that changes the metrics:
#
# - **Means** of fewer cells are noisier: the means of one half differ from those of the other by chance, and the more so the fewer cells each half holds.
# - **The top DEGs** of fewer cells are less stable: the Wilcoxon ranking of half the cells puts a partly different set of genes in its top 100, so two halves of the same cells share fewer than 100 induced genes, and the DEG overlap and Jaccard index of the ceiling fall short of their maximum.
# - **The energy distance** of two groups of the same cells is not 0. Its within-group terms $\mathbb{E}\lVert X - X'\rVert$ average over all pairs of cells, including each cell paired with itself at distance 0; with $n$ cells a share $1/n$ of the pairs are such zeros, so the within-group terms come out too small, and the distance too large, by about $\mathbb{E}\lVert X - X'\rVert / n + \mathbb{E}\lVert Y - Y'\rVert / m$. The smaller the groups, the larger this bias.
#
# So the ceiling, computed with half-size groups, cannot be set against a model's score computed with all the cells: the model would be judged on the easier, full-size scale.
# The course keeps the comparison fair by scoring every prediction at the same size as well: in each split, the prediction is subsampled to the size of half A and scored against the same half B, and the scores are averaged over the same 20 splits.
# These *matched* scores are the rows `<metric>_matched` of `results`; model, baselines and replicate then meet the same truth with groups of the same size.
# The full-size scores of the tables above stay the headline numbers.
#
# The figure shows the matched scores as bars and the noise ceiling as a dashed line, with a grey band over the central 95% of the 20 splits (no whiskers: each bar is the mean over the splits).
# The ceiling's rows carry the metric's own name, so the cell relabels them to be drawn on the panels of the matched scores.

# %%
ceiling_shown = ["r2_mean_all", "delta_pearson_top100", "delta_r2_top100", "e_distance", "mv_kde",
                 "deg_overlap_top100"]
matched_shown = [f"{name}_matched" for name in ceiling_shown]
matched = results[results["model"].isin(list(models)) & results["metric"].isin(matched_shown)]
ceiling = results[(results["model"] == CEILING) & results["metric"].isin(ceiling_shown)]
plotting.metric_bars(pd.concat([matched, ceiling.assign(metric=ceiling["metric"] + "_matched")]),
                     metrics=matched_shown)

# %% tags=["remove-input"]
wide = results.pivot(index="metric", columns="model", values="value")
names = {"identity": "the identity baseline", "mean_shift": "the mean-shift baseline", "scgen": "scGen",
         "scpram": "scPRAM"}
replicate = wide[CEILING]
energy = wide["mean_shift"]
chance = 100 * 100 / ctrl.n_vars
close = replicate["r2_mean_all"] > 0.95 and replicate["delta_pearson_top100"] > 0.95
reached = [
    f"{names[name]} on `{metric}`"
    for metric in ceiling_shown
    for name in models
    if (wide.loc[f"{metric}_matched", name] >= replicate[metric]) == metric_info(metric).higher_is_better
]
display(Markdown(
    f"Two random halves of the real stimulated {cell_type} agree {'closely' if close else 'only in part'} on their means "
    f"and changes: an R² of means of {replicate['r2_mean_all']:.3f} on all genes and a change correlation of "
    f"{replicate['delta_pearson_top100']:.3f} on the top 100 DEGs. "
    f"They share {replicate['deg_overlap_top100']:.0f} of their 100 most induced genes (DEG Jaccard index "
    f"{replicate['deg_jaccard_top100']:.2f}), and their energy distance is {replicate['e_distance']:.3f}, not 0: "
    "two halves of the same cells have a true distance of 0, so this is the bias of half-size groups, plus chance. "
    f"A perfect model would do no better at half size: a DEG overlap is read against {replicate['deg_overlap_top100']:.0f}, "
    f"not 100, and an energy distance against {replicate['e_distance']:.3f}, not 0.\n\n"
    + (f"The bias is small next to a prediction's distance from the truth, but it shows: the mean-shift baseline's "
       f"energy distance is {energy['e_distance']:.3f} with all cells and {energy['e_distance_matched']:.3f} at half size. "
       if energy["e_distance_matched"] > energy["e_distance"] else
       f"Next to a prediction's distance from the truth the bias is small: the mean-shift baseline's energy distance "
       f"is {energy['e_distance']:.3f} with all cells and {energy['e_distance_matched']:.3f} at half size, where the "
       "chance differences between scoring against all the stimulated cells and against one half of them outweigh "
       "the bias. ")
    + f"Half size changes the DEG overlap too: the identity baseline shares "
    f"{wide.loc['deg_overlap_top100', 'identity']:.0f} induced genes with "
    f"the truth at full size, where its prediction *is* the control cells and so induces nothing, and "
    f"{wide.loc['deg_overlap_top100_matched', 'identity']:.1f} at half size, where a random half of the control cells "
    f"differs from all of them by chance; two random sets of 100 of the {ctrl.n_vars:,} genes share "
    f"{chance:.0f} genes on average.\n\n"
    + (f"No prediction reaches the ceiling on any of the {len(ceiling_shown)} metrics: the gap between a bar and the "
       "dashed line is what is left for a better model to gain."
       if not reached else
       f"Only {' and '.join(reached)} {'reaches' if len(reached) == 1 else 'reach'} the ceiling; everywhere else "
       "the gap between a bar and the dashed line is what is left for a better model to gain.")
))

# %% tags=["remove-cell"]
if check_claims:
    assert replicate["deg_overlap_top100"] < 100, "two halves of the same cells share fewer than 100 induced genes"
    assert replicate["e_distance"] > 0, "The energy distance of two groups of the same cells is not 0."

# %% [markdown]
# ## Normalised scores: between doing nothing and a replicate
#
# The raw scores of different metrics live on different scales: an R² of 0.9 may be poor, an energy distance of 0.9 good, and a DEG overlap of 20 excellent or dismal depending on what a replicate reaches.
# A *baseline-normalised* score puts every metric on one scale, from a baseline to the noise ceiling {cite}`roohani2025`.
# With $m$, $i$ and $r$ the matched scores of the model, of the identity baseline and of the replicate (the ceiling),
#
# $$
# \text{normalised score} = \frac{m - i}{r - i} .
# $$
#
# It is 0 for a prediction no better than predicting no change, 1 for one as good as a replicate, and negative for one worse than doing nothing.
# It can exceed 1, for a prediction that scores better than a second sample of real cells would (for instance one less noisy than real cells on a metric of means), but that is rare.
# For a metric where lower is better the numerator and the denominator change sign together, so the ratio needs no turning: 1 is always the replicate.
# The same formula with the mean-shift baseline in place of the identity asks a harder question: does the model predict more than the average response of the other cell types?
# `evaluate` reports both, as `<metric>_norm_identity` and `<metric>_norm_mean_shift`, from the matched scores only (`course_lib.metrics.normalised_scores` computes them, and `course_lib.benchmark.with_normalised_scores` adds them to a stored benchmark table).
#
# One consequence of the formula: the R² of means, the MSE of means, delta R² and the type-specific R² on the same genes are all one sum of squared errors, $\sum_g (y_g - \hat y_g)^2$, rescaled against a fixed truth, so on the normalised scale they become the same number (up to the small differences that averaging over the splits leaves).
# The figure therefore shows only the R² of means, standing for all four; its flattering score for the identity baseline, the problem of the first section, is exactly what the normalisation subtracts.
# The heat maps give the normalised scores of the four predictions side by side: against the identity baseline above, against the mean-shift baseline below; the colours stop at ±1, the numbers do not.

# %%
norm_shown = ["r2_mean_all", "r2_mean_top100", "delta_pearson_all", "delta_pearson_top100",
              "specific_pearson_top100", "e_distance", "mv_kde", "deg_jaccard_top100"]
normalised_score_heatmap(results, metrics=norm_shown, models=list(models),
                         title=f"Normalised scores, {cell_type} held out")

# %% tags=["remove-cell"]
if check_claims:
    for genes in ("all", "top100"):
        for name in models:
            same = [wide.loc[f"{metric}_{genes}_norm_identity", name]
                    for metric in ("r2_mean", "mse_mean", "delta_r2", "specific_r2")]
            assert max(same) - min(same) <= 0.05 * max(1.0, abs(np.mean(same))), (
                "the R² of means, the MSE of means, delta R² and the type-specific R² on the same genes "
                "become the same number on the normalised scale (up to small differences)")

# %% tags=["remove-input"]
def listed(metrics):
    """The metric names as a readable list."""
    quoted = [f"`{metric}`" for metric in metrics]
    return " and ".join([", ".join(quoted[:-1]), quoted[-1]] if len(quoted) > 1 else quoted) or "none of them"


def above(model, reference):
    """The metrics of the figure on which ``model`` scores above 0 against ``reference``."""
    return [metric for metric in norm_shown if wide.loc[f"{metric}_norm_{reference}", model] > 0]


between = [metric for metric in norm_shown if 0 < wide.loc[f"{metric}_norm_identity", "mean_shift"] < 1]
lines = [
    f"Against the identity, the mean-shift baseline lies between doing nothing and a replicate on {len(between)} "
    f"of the {len(norm_shown)} metrics ({listed(between)}); on delta Pearson r of the top 100 DEGs it covers "
    f"{wide.loc['delta_pearson_top100_norm_identity', 'mean_shift']:.2f} of the way from no change to a replicate."
]
below = [metric for metric in norm_shown if wide.loc[f"{metric}_norm_identity", "mean_shift"] < 0]
if below:
    lines.append(f"It falls below the identity (a negative score) on {listed(below)}: there, doing nothing is the "
                 "better prediction.")
for model in ("scgen", "scpram"):
    lines.append(
        f"{names[model]} scores above 0 against the identity on {len(above(model, 'identity'))} of the "
        f"{len(norm_shown)} metrics and above 0 against the mean-shift baseline on "
        f"{len(above(model, 'mean_shift'))} ({listed(above(model, 'mean_shift'))})."
    )
display(Markdown("\n".join(f"- {line}" for line in lines)))

# %% [markdown]
# The lower heat map is the one to read before any claim that a model has learnt the perturbation: a negative score there means that the average response of the other cell types, added to the control cells, would have been the better prediction on that metric.
# Because every metric now shares one scale, the rows can also be compared with each other: a model close to 1 on the change correlation and far below 0 on the energy distance predicts the right direction of change with unrealistic cells.

# %% [markdown]
# ## The type-specific response: beyond what every cell type shares
#
# Interferon induces a core of genes in every immune cell type: the interferon-stimulated genes go up in T cells, B cells and monocytes alike.
# The mean-shift baseline predicts exactly that core: it adds $s$, the mean response of the other cell types, to the control cells.
# Delta Pearson r rewards the core, so a high delta Pearson r may say only that a model has learnt what every type does.
# To see what a prediction says beyond it, subtract the shared response from both sides and correlate what remains {cite}`vinastorne2025`:
#
# $$
# r_{\text{specific}} = \operatorname{corr}_g\big(\hat y_g - c_g - s_g,\; y_g - c_g - s_g\big) .
# $$
#
# `evaluate` reports it, and its R² (`specific_r2_*`, which like delta R² also demands the right size), when it is given $s$ as `shared_response`; at the start of the chapter we passed the mean-shift baseline's own shift, `predictions["mean_shift"].uns["delta"]`.
#
# Two predictions have a fixed place on this scale.
# The mean-shift baseline predicts $\hat y - c = s$, so $\hat y - c - s = 0$ and it scores 0 by construction (near 0 in the figure, because the bootstrap resamples its cells).
# The identity baseline predicts $\hat y - c = 0$, so $\hat y - c - s = -s$: it says that the held-out type responds *less* than the others along the shared direction.
# If the held-out type does respond more weakly than the average type, the identity scores above 0; if more strongly, below 0.
# Every weakened copy of the shared response, $c + a\,s$ with $0 \le a < 1$, scores exactly what the identity scores, and every amplified copy ($a > 1$) the same value with the opposite sign, since a correlation ignores the size of a vector but not its sign.
# So a model shows type-specific knowledge only where its specific correlation clears both the mean-shift baseline's 0 and the size of the identity's value: the score that a mere rescaled copy of the shared response earns.
#
# The figure places each prediction by its change correlation (horizontal) and its type-specific correlation (vertical), on the top 100 DEGs.

# %%
plotting.metric_scatter(results, x_metric="delta_pearson_top100", y_metric="specific_pearson_top100",
                        title="The whole change and its type-specific part, top 100 DEGs")

# %% tags=["remove-cell"]
if check_claims:
    for genes in ("all", "top100"):
        assert abs(wide.loc[f"specific_pearson_{genes}", "mean_shift"]) < 0.15, (
            "The mean-shift baseline scores 0 by construction (near 0 in the figure, because the bootstrap "
            "resamples its cells).")

# %% tags=["remove-input"]
bounds = results.set_index(["model", "metric"])[["ci_low", "ci_high"]]
specific = wide.loc["specific_pearson_top100"]
weaker = specific["identity"] > 0
rescaled = abs(specific["identity"])  # the score of any rescaled copy of the shared response
id_low, id_high = bounds.loc[("identity", "specific_pearson_top100")]
rescaled_low, rescaled_high = (id_low, id_high) if weaker else (-id_high, -id_low)
lines = [
    f"The mean-shift baseline, which predicts nothing but the shared response, reaches a change correlation of "
    f"{wide.loc['delta_pearson_top100', 'mean_shift']:.2f} on the top 100 DEGs, "
    f"{wide.loc['delta_pearson_top100_norm_identity', 'mean_shift']:.2f} of the way from the identity to a "
    "replicate: that is how much of delta Pearson r the shared response alone earns. Its type-specific correlation "
    f"is {specific['mean_shift']:.2f}, zero up to the bootstrap.",
    f"The identity baseline's type-specific correlation is {specific['identity']:.2f}: the {cell_type} respond "
    f"{'more weakly' if weaker else 'more strongly'} than the average of the other types along the shared direction, "
    f"so a{' weakened' if weaker else 'n amplified'} copy of the shared response already earns "
    f"{rescaled:.2f} here.",
]
for model in ("scgen", "scpram"):
    low, high = bounds.loc[(model, "specific_pearson_top100")]
    overlap = low <= rescaled_high and rescaled_low <= high
    lines.append(
        f"{names[model]}: change correlation {wide.loc['delta_pearson_top100', model]:.2f}, type-specific "
        f"correlation {specific[model]:.2f} (interval {low:.2f} to {high:.2f}), "
        f"{'above' if specific[model] > rescaled else 'below'} the {rescaled:.2f} of a rescaled shared response"
        + (" (the intervals overlap)." if overlap else ".")
    )
display(Markdown("\n".join(f"- {line}" for line in lines)))

# %% [markdown]
# The black point is again the replicate, at the top right.
# A deep model that had learnt only the shared response, at whatever strength, would sit at the height of the mean-shift baseline, of the identity, or of the identity's mirror image below 0, never above all three.
# Height above all three is the evidence that a model has learnt something particular to the held-out type; a high change correlation alone is not.

# %% [markdown]
# ## Key take-aways
#
# - Every metric sees one aspect of a prediction: the means, the changes from control, or the distribution of cells; none sees them all.
# - The identity baseline's R² of means equals $1 - S$, one minus the size of the response relative to the spread of gene means; on all genes $S$ is small, so doing nothing scores high.
# - Delta metrics remove the control means and compare responses: the identity scores 0 correlation; delta Pearson r checks the direction of the response, delta R² also its size.
# - Distribution metrics (energy distance, mean-variance KDE, DEG overlap) catch predictions whose means are right but whose cells are not realistic.
# - A model's scores mean something only next to the identity and mean-shift baselines, on the same cells.
# - Even a replicate of the real cells does not score perfectly: the noise ceiling, one random half of the real stimulated cells scored against the other, is the best score the data allow, and the course sets it against every prediction scored at the same half size.
# - Normalised scores put every metric on one scale, 0 for a baseline and 1 for a replicate: against the identity they ask whether a model predicts any response, against the mean shift whether it predicts more than the average response of the other cell types.
# - Much of delta Pearson r can be the response that every cell type shares; the type-specific correlation removes it, the mean-shift baseline scores 0 there by construction, and a rescaled copy of the shared response scores the size of the identity's value.

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
