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
# # Benchmarking IV: every cell type, several seeds, another study
#
# :::{admonition} Learning objectives
# :class: note
# After this chapter you can
# - explain why one held-out cell type and one seed cannot rank two models, and which cell types are too small to hold out;
# - read a leave-one-cell-type-out benchmark of scGen, scPRAM and both baselines, with intervals over seeds, from one figure;
# - check where a committed result came from (versions, data hash, date, run time) and reproduce part of it yourself;
# - describe how the course simulates a second study from real cells, and what a batch correction changes when a model predicts cells of another study;
# - state what the whole course has shown about generative perturbation models and about benchmarking them.
# :::
#
# Chapters 3 to 7 held out one cell type, the CD4 T cells, and mostly trained one seed.
# That is enough to learn the tools, not to compare them.
# A model can suit one cell type and fail another, and two seeds of the same model can differ as much as two models.
# The original tutorial named the next two questions without answering them: do the methods generalise across cell types, and across studies?
# This chapter answers both, with the identity and mean-shift baselines in every comparison.
#
# :::{admonition} What runs here, and what was run beforehand
# :class: note
# The full benchmark (every eligible type held out in turn, three seeds, both models and both baselines, balanced and imbalanced data) trains 84 models and took about 47 minutes on a 2-core CPU (the provenance below records the exact time).
# It was run once with `python -m course_lib.benchmark`, and its table is part of the course: `data/benchmark/kang2018_loto.csv`, with its provenance beside it.
# This chapter reads that table, re-runs one small slice of it live to show that the numbers can be reproduced, and runs the cross-study experiment on a subsample.
# :::

# %% tags=["parameters"]
fraction = 1.0  # share of cells for the live slice; 1.0 matches the committed benchmark
n_epochs = 10  # training epochs of the live slice and of the cross-study models
n_seeds = 1  # seeds of the cross-study experiment (the committed benchmark has three)
seed = 0
live_type = "CD4 T cells"  # held-out type of the live slice
live_models = ["scgen"]  # models of the live slice (the two baselines are always added)
cross_study_share = 0.5  # share of the cells (after `fraction`) used for the cross-study experiment

# %% [markdown]
# ## Which cell types can be held out
#
# A held-out type needs control cells to predict from and stimulated cells to score against.
# With fewer than 100 cells in either condition, the means of rare genes, the top 100 differentially expressed genes and a 30-component PCA mostly measure sampling noise.
# The table counts the cells of each type and condition in the whole data set.

# %%
# %matplotlib inline
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt

from course_lib import plotting
from course_lib.benchmark import (
    BenchmarkGrid,
    compare_results,
    load_results,
    provenance_table,
    run_benchmark,
    seed_intervals,
)
from course_lib.crossstudy import cross_study_experiment, simulate_second_study
from course_lib.datasets import kang2018
from course_lib.experiment import cell_type_eligibility
from course_lib.preprocessing import subsample

counts = kang2018()
eligibility = cell_type_eligibility(counts)
eligibility

# %%
excluded = eligibility.index[~eligibility["eligible"]].tolist()
print(f"eligible: {eligibility['eligible'].sum()} of {len(eligibility)} types; excluded: {', '.join(excluded)}")

# %% [markdown]
# Seven of the eight types qualify; the megakaryocytes fall short in both conditions and are excluded.
# They are still used in training, as reference cells for the other types; they are only never the type to be predicted.
# Note the range: the CD4 T cells and CD14+ monocytes have eight to nine times as many cells as the dendritic cells, so a benchmark mixes two large types with several that are only a few times above the threshold.

# %% [markdown]
# ## The committed benchmark and where it came from
#
# `load_results` reads the table and its provenance sidecar.
# Every row is one (model, held-out type, data variant, seed, metric); the table below counts the seeds present for each model and held-out type.

# %%
results = load_results("../data/benchmark/kang2018_loto.csv")
provenance = results.attrs["provenance"]
results.groupby(["variant", "cell_type", "model"])["seed"].nunique().unstack("model")

# %% [markdown]
# The provenance records how the numbers were made: the data (a hash of the counts and labels, and of the files they came from), the settings, and for each run the start and end dates, the wall-clock seconds, the machine and the package versions.
# A run without an end date was interrupted; the benchmark writes its table after every held-out type and seed, so what it finished is kept and a later run resumes where it stopped.

# %%
setup = provenance["setup"]
print(f"data: {setup['n_cells']:,} cells x {setup['n_genes']:,} genes, sha256 of the content {setup['data_sha256'][:16]}...")
print(f"settings: fraction {setup['fraction']}, {setup['n_top_genes']} genes chosen on the training cells, "
      f"imbalanced variant keeps {setup['stim_fraction']:.0%} of the stimulated cells")
provenance_table(provenance)

# %% [markdown]
# ## Every cell type in one figure
#
# The figure shows, for each held-out type, the mean over seeds of two metrics for every model, with a 95% t interval over the seeds (with three seeds the interval is wide: the t quantile for two degrees of freedom is 4.3) and the single seeds as small dots.
# The top panel is the Pearson correlation of the predicted and the real change from control on the 100 most induced genes: does the model get the *response* right?
# The bottom panel is the energy distance {cite}`szekely2013` in a PCA of the real cells, the distribution metric that scPerturb popularised {cite}`peidli2024`: do the predicted *cells* look like the real stimulated cells?
# Both are computed on the balanced data; the imbalanced variant is chapter 6's subject.

# %%
plotting.benchmark_summary(results, metrics=("delta_pearson_top100", "e_distance"), variant="balanced")

# %% [markdown]
# The same numbers, averaged over the held-out types first and then over the seeds, give one line per model.

# %%
shown = ["r2_mean_all", "delta_pearson_top100", "delta_r2_top100", "e_distance", "deg_jaccard_top100"]
overall = seed_intervals(results[results["variant"] == "balanced"], metrics=shown, by=("model",))
overall.pivot(index="model", columns="metric", values="mean").loc[:, shown].round(3)

# %%
per_type = seed_intervals(results[results["variant"] == "balanced"], metrics=["delta_pearson_top100"],
                          by=("model", "cell_type")).pivot(index="cell_type", columns="model", values="mean")
print("best model on delta_pearson_top100 for each held-out type:")
print(per_type.idxmax(axis=1).to_string())

# %% [markdown]
# Read the figure type by type, and then across types:
#
# - The identity baseline has a change correlation of zero by construction; on the energy distance it shows how far apart control and stimulated cells of each type are to begin with, which differs a lot between types.
#   A model is useful for a type only where it moves clearly below that line.
# - The mean-shift baseline transfers the average response of the other types.
#   Where a type responds like the average, it is hard to beat; where a type responds unlike the others (the monocytes respond most strongly, chapter 2), every model that borrows from the others suffers.
# - Compare the deep models with the mean-shift baseline rather than with each other first: a gap between scGen and scPRAM matters only if at least one of them beats the baseline by more than the seed intervals.
# - The seeds disagree most where a model has to extrapolate, not where a type is small: in the stored table the widest intervals belong to the CD14+ monocytes, the strongest responders, while the much smaller dendritic cells give nearly the same score with every seed. A small type's score is still noisier than its interval suggests, because the interval covers the training seeds and not the few cells that are scored.
#
# A benchmark that reports only CD4 T cells, as the tutorial did, picks one point of this figure.

# %% [markdown]
# ## Reproducing a slice of the benchmark
#
# A committed table is only as trustworthy as the ability to recompute it.
# The cell below re-runs one slice of the grid live, the held-out type `live_type` with seed `seed` on the balanced data, with the model(s) in `live_models` and the two baselines, and puts the new numbers next to the committed ones for the same grid cell.
# The results go to a temporary file, so the committed table is never touched.

# %%
grid = BenchmarkGrid(models=live_models, cell_types=[live_type], seeds=[seed], variants=["balanced"],
                     n_epochs=n_epochs, fraction=fraction)
with tempfile.TemporaryDirectory() as scratch:
    live = run_benchmark(counts, grid, results_path=Path(scratch) / "live.csv", verbose=False)
comparison = compare_results(live, results, metrics=["r2_mean_all", "delta_pearson_top100", "e_distance"])
print("same data and settings as the committed table:", comparison.attrs["same_setup"])
comparison.drop(columns=["variant"]).round(4)

# %% [markdown]
# With the learner parameters (`fraction = 1.0`, `n_epochs = 10`) the live slice is the same grid cell as a committed row, and the `committed` column is filled wherever the committed table holds that cell.
# The baselines involve no training and reproduce to the last digit.
# The deep models are seeded (weights, minibatches, validation split, balancing), so the same seed on the same data and the same number of threads gives the same numbers; on another machine or thread count, floating-point sums are added in a different order and the last digits can move, which is one more reason to report intervals over seeds rather than single runs.
# With other parameters (the test suite runs a small subsample with two epochs) the slice is a different experiment, and the `committed` column stays empty: the comparison refuses to match results computed on different data.

# %% [markdown]
# ## Another study: cross-study extrapolation
#
# In practice a model is trained on one data set and applied to cells from another lab, with another protocol and another sequencing depth.
# The cells of the second study are not only a new sample; they are *measured differently*, and a model that has never seen that difference may read it as biology.
#
# No second interferon-β PBMC study can be downloaded and checked offline, so the course **simulates** one from real cells:
#
# 1. a stratified share of the Kang cells (30% of every condition and type) is split off as "study B" and never used for training;
# 2. their raw counts pass through a simulated technical batch effect: every gene gets its own capture efficiency (log-normal around 0.6, capped at 1), and the sequencing depth drops to 70%; each UMI of gene $g$ survives independently with probability $0.7\,e_g$ (binomial thinning).
#
# The cells, their biology and their response are real; only the batch effect is simulated, with known parameters.
# To keep this chapter within minutes, the experiment runs on a share `cross_study_share` of the cells.

# %%
cells = subsample(counts, fraction * cross_study_share, seed=seed)
studies = simulate_second_study(cells, seed=seed)
simulation = dict(studies.uns["simulated_study_b"])
print(simulation.pop("note"), simulation)
studies.obs.groupby(["study", "condition"], observed=True).size().unstack()

# %% [markdown]
# The histogram shows the capture efficiencies drawn for the genes: the batch effect is gene-specific, so a per-cell scaling (normalising to a fixed total) cannot remove it.

# %%
figure, axes = plt.subplots(figsize=(5, 3.2))
axes.hist(studies.var["capture_efficiency"], bins=40, color=plotting.PALETTE["predicted"])
axes.set(xlabel="capture efficiency of the gene in study B", ylabel="genes",
         title="Simulated gene-wise capture efficiency (study B)")
plt.show()

# %% [markdown]
# `cross_study_experiment` trains every model on study A, then asks each for the stimulated state of study B's control cells, in two ways:
#
# - **`none`**: B's control cells as measured;
# - **`scgen_batch_removal`**: B's control cells first aligned to study A with scGen's batch removal (chapter 3), fitted on the control cells of both studies; the model predicts from the aligned cells, and the predicted *change* is added back to B's measured cells, because B's real stimulated cells, the truth, exist only in B's measurement space.
#
# Every prediction is scored against B's real stimulated cells, for every type with at least 30 cells per condition in study B.

# %%
cross = cross_study_experiment(studies, seeds=range(n_seeds), n_epochs=n_epochs, verbose=False)
cross_shown = ["delta_pearson_top100", "e_distance", "r2_mean_all"]
plotting.metric_bars(cross[cross["metric"].isin(cross_shown)], metrics=cross_shown, x="model", hue="correction")

# %% [markdown]
# Each bar is the mean over the held-out types of study B (and the seeds); the whiskers span them.
# The table gives the same means.

# %%
cross_table = cross[cross["metric"].isin(cross_shown)].groupby(["metric", "model", "correction"])["value"].mean()
cross_table.unstack("correction").round(3)

# %% [markdown]
# What to look for:
#
# - **The baselines set the bar again.** Without correction, the identity baseline predicts B's controls as they are; its energy distance says how far B's stimulated cells are from B's controls.
#   The mean-shift baseline adds the response learnt on study A; since the response is a change, it carries over to B even though B is measured differently.
# - **The batch effect hurts the deep models where they encode B's cells as measured.** Their encoders have only seen study A; B's thinned counts land elsewhere in latent space, and the decoder returns cells in study A's measurement space.
#   Look at their distribution metrics without correction.
# - **Correcting first helps the models that decode.** Aligning B's controls to study A before predicting, and adding the predicted change back to B's measured cells, keeps the prediction in B's space.
#   Compare each deep model's two bars; for the baselines, which only add a change, the correction changes little.
#
# The simulated batch effect is milder than that between two real labs (no differences in cell handling, chemistry or donors), so this experiment is an optimistic view of cross-study transfer; the direction of the differences, not their size, is the lesson.

# %% [markdown]
# ## Conclusions of the course
#
# - **The task.** Predicting how cells respond to a perturbation nobody measured in them is a real need, and dozens of generative models address it. scGen shifts every cell by one latent vector; scPRAM gives every cell its own shift, by optimal transport and attention.
# - **The models work, within limits.** Both learn the direction of the interferon response and transfer it to a held-out type. Taking scPRAM apart showed that its attention, which borrows the response from similar cell types, does most of the work; optimal transport alone does not.
# - **Baselines first.** The identity baseline scores a high R² of means while predicting no response at all; the mean-shift baseline, which has no parameters to learn, is close to the deep models on many metrics and cell types. A model that does not beat both on the change metrics has learnt nothing the average did not already say; recent benchmarks of newer models reach the same verdict {cite}`ahlmanneltze2025`.
# - **Metrics see different things.** Correlations of changes see the direction of the response, R² its size, the energy distance and the mean-variance distance the shape of the predicted cells. Report several, and name their definitions.
# - **Honest numbers need design.** Genes chosen without the test cells; hyperparameters tuned on a validation type; several seeds with intervals; every eligible cell type; realistic (imbalanced) data; another study. Each of these changed a conclusion somewhere in the course.
# - **Reproducible by construction.** One environment, one tested package, seeded models, results with their provenance, and notebooks that every change executes.

# %% [markdown]
# ## Key take-aways
#
# - Hold out every cell type with enough cells in turn (here seven of eight), with several seeds, and show the result in one figure with intervals; one type and one seed can rank models either way.
# - Keep the identity and mean-shift baselines in every panel: where a deep model does not clearly beat the mean shift, the benchmark has found no advantage.
# - Commit results with their provenance (data hash, settings, versions, dates, run time), and re-run a slice to check that they can be reproduced.
# - Cells from another study are measured differently; a simulated batch effect on real cells makes that testable with known parameters, and aligning the new cells to the training study before predicting is part of the method.

# %% [markdown]
# ## Exercises
#
# **1. The imbalanced variant.**
# Draw the summary figure for the imbalanced data. Which model loses most when only 20% of the stimulated cells are available for training?
#
# :::{dropdown} Solution
# ```python
# plotting.benchmark_summary(results, variant="imbalanced")
# ```
# Compare each model's markers with the balanced figure above. If the committed table does not yet hold imbalanced rows, run `python -m course_lib.benchmark --variants imbalanced --output imbalanced.csv` (about 20 minutes on a 2-core CPU) or with `--profile small` for a quick look.
# :::
#
# **2. Another live slice.**
# Re-run the live slice for B cells with both models and compare with the committed rows.
#
# :::{dropdown} Solution
# Set `live_type = "B cells"` and `live_models = ["scgen", "scpram"]` in the parameters cell and run the chapter again.
# Training takes a little longer than for CD4 T cells: every model trains on all cells except the held-out stimulated ones, and there are fewer stimulated B cells to hold out.
# :::
#
# **3. A stronger batch effect.**
# Simulate study B with `capture_sigma=0.8` and `depth_fraction=0.4`, and repeat the cross-study experiment. Does the correction matter more?
#
# :::{dropdown} Solution
# ```python
# harsh = simulate_second_study(cells, capture_sigma=0.8, depth_fraction=0.4, seed=seed)
# harsh_cross = cross_study_experiment(harsh, seeds=range(n_seeds), n_epochs=n_epochs, verbose=False)
# plotting.metric_bars(harsh_cross[harsh_cross["metric"].isin(cross_shown)], metrics=cross_shown,
#                      x="model", hue="correction")
# ```
# The stronger the batch effect, the further B's controls land from study A's cells in latent space, and the more the uncorrected deep-model predictions suffer; the change-adding baselines are affected less.
# :::
#
# **4. Without mapping back.**
# Run the cross-study experiment with `map_back=False`. What happens to the scores of the corrected predictions, and why?
#
# :::{dropdown} Solution
# ```python
# unmapped = cross_study_experiment(studies, seeds=range(n_seeds), n_epochs=n_epochs, map_back=False, verbose=False)
# unmapped[unmapped["metric"] == "e_distance"].groupby(["model", "correction"])["value"].mean().unstack()
# ```
# Without mapping back, the corrected predictions live in study A's measurement space, while B's real stimulated cells live in B's. The distribution metrics then measure the batch effect as much as the model: the corrected predictions look worse although the models did nothing differently.
# :::

# %% [markdown]
# ## References
#
# ```{bibliography}
# :filter: docname in docnames
# ```
