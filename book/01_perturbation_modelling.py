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
# # Perturbation modelling: predicting responses nobody measured
#
# :::{admonition} Learning objectives
# :class: note
# After this chapter you can
# - explain why perturbation responses are predicted *in silico* rather than measured one by one;
# - describe what a perturbation response looks like in single-cell RNA-seq data, on the whole data set and per cell;
# - state the prediction task of this course: the stimulated state of a cell type whose stimulated cells were never seen;
# - use the words autoencoder, beta-VAE, latent space and ZINB decoder correctly;
# - explain why the same tool can come first in one benchmark and last in another.
# :::
#
# A perturbation is anything that pushes cells away from their resting state: a drug, a cytokine, a growth factor, a CRISPR knock-out.
# Single-cell RNA-seq measures the consequence in every cell, so we can ask which pathways and transcription factors change, which cells change most, and whether the same change would happen in another data set.
# A perturbation model tries to answer the last question before anybody runs the experiment.

# %% [markdown]
# ## Why predict perturbations in silico
#
# The space of possible experiments is far larger than any laboratory.
# The human genome has about 20,000 protein-coding genes and a human body has several hundred cell types, about 400 in common counts.
# Knocking out every gene, one at a time, in every cell type already means 8 million experiments, before anyone adds doses, time points, drug combinations or donors.
# Patient material makes it worse: a biopsy or a blood draw gives a limited number of cells, they cannot be split across hundreds of treatments, and they are noisy.
#
# A model that predicts responses cannot replace these experiments, but it can rank them.
# It can suggest which drug to test first, which existing drug might be repurposed for a new disease, and how one patient's cells might respond compared with another's.
# In 2019, scGen {cite}`lotfollahi2019` showed that a deep generative model trained on single-cell data can predict the response of a cell type it had never seen perturbed, and started the field this course is about.
#
# ## From chip to bench to bedside
#
# The long-term vision is a pipeline that runs from the computer (*in silico*) to the laboratory (*in vitro*) to patients (*in vivo* and in the clinic).
# Predictions narrow down what to test at the bench; bench results go back into the model and make the next round of predictions better.
# This loop is sometimes called active learning or "lab in the loop".
# Applications reported so far include drug discovery and drug repurposing, biomarker research, immunophenotyping, and the integration of several omic layers {cite}`gavriilidis2024`.

# %% tags=["parameters"]
fraction = 1.0  # share of cells kept per (condition, cell type); the test suite uses a small value
seed = 0

# %% [markdown]
# ## What a perturbation response looks like
#
# The course works with one real experiment throughout: peripheral blood mononuclear cells (PBMCs) of eight lupus patients, profiled before and after six hours of stimulation with interferon beta (IFN-β) {cite}`kang2018`.
# Chapter 2 describes the data in detail; here we only load it and normalise each cell to 10,000 counts followed by `log1p`, the scale on which all models of the course work.

# %%
import matplotlib.pyplot as plt
import numpy as np
import scanpy as sc

from course_lib.datasets import kang2018
from course_lib.metrics import gene_means
from course_lib.plotting import ANNOTATION_SIZE, PALETTE, label_points, use_course_style
from course_lib.preprocessing import subsample

use_course_style()  # the course's font sizes, so that every figure reads like the text around it
adata = kang2018()
if fraction < 1:
    adata = subsample(adata, fraction, seed=seed)
sc.pp.normalize_total(adata, target_sum=1e4)
sc.pp.log1p(adata)
adata.obs.groupby(["cell_type", "condition"], observed=True).size().unstack()

# %% [markdown]
# ### On average: a few dozen genes move a lot
#
# The simplest summary of a response compares the mean expression of every gene before and after stimulation.
# In the scatter plot below each point is a gene: its mean over control cells on the horizontal axis, its mean over stimulated cells on the vertical axis.

# %%
is_stim = (adata.obs["condition"] == "stimulated").to_numpy()
mean_ctrl, mean_stim = gene_means(adata[~is_stim]), gene_means(adata[is_stim])
change = mean_stim - mean_ctrl
top_up = np.argsort(change)[::-1][:12]

fig, ax = plt.subplots(figsize=(6, 5.5))
ax.scatter(mean_ctrl, mean_stim, s=4, color="0.6", rasterized=True, label="all genes")
ax.scatter(mean_ctrl[top_up], mean_stim[top_up], s=14, color=PALETTE["stimulated"],
           label="12 largest increases")
for rank, i in enumerate(top_up[:8]):  # labels in a column, each joined to its gene
    ax.annotate(adata.var_names[i], (mean_ctrl[i], mean_stim[i]), fontsize=ANNOTATION_SIZE,
                xytext=(0.3, 0.86 - 0.05 * rank), textcoords="axes fraction", va="center",
                arrowprops={"arrowstyle": "-", "color": PALETTE["stimulated"], "lw": 0.5,
                            "relpos": (0, 0.5)})  # the line leaves the label's left edge
limit = max(mean_ctrl.max(), mean_stim.max()) * 1.05
ax.plot([0, limit], [0, limit], color="black", lw=0.8, ls="--", label="no change")
ax.set(xlim=(0, limit), ylim=(0, limit),
       title=f"All {adata.n_vars:,} genes, before and after IFN-β",
       xlabel="mean log-normalised expression, control cells",
       ylabel="mean log-normalised expression, stimulated cells")
ax.legend(loc="lower right", frameon=False)
plt.show()

# %% [markdown]
# Almost every gene sits on the dashed diagonal: its average barely changes.
# A small group lies far above it.
# These are interferon-stimulated genes (ISGs) such as *ISG15*, *IFI6*, *IFIT3* and *MX1*, the textbook targets of the interferon pathway.
# A handful of genes also fall below the diagonal; they are down-regulated.
# The response is therefore sparse in gene space and very strong where it happens, a pattern that matters later: a metric that averages over all 2,000 or 14,000 genes is dominated by the genes that do not move.

# %% [markdown]
# ### Cell by cell: the whole distribution shifts
#
# Averages hide the cells.
# The histograms below show the expression of the strongest responder, *ISG15*, in single cells of both conditions.

# %%
gene = "ISG15"
values = adata[:, gene].X.toarray().ravel()
bins = np.linspace(0, values.max(), 40)
fig, ax = plt.subplots(figsize=(6, 3.5))
for condition in ["control", "stimulated"]:
    mask = (adata.obs["condition"] == condition).to_numpy()
    ax.hist(values[mask], bins=bins, alpha=0.6, color=PALETTE[condition],
            label=f"{condition} ({mask.sum():,} cells)")
ax.set(xlabel=f"{gene}, log-normalised expression", ylabel="number of cells",
       title=f"{gene} in single cells, control and stimulated")
ax.legend(frameon=False)
plt.show()

# %% [markdown]
# Most control cells express little or no *ISG15*; almost every stimulated cell expresses a lot, with a broad spread.
# A good prediction must reproduce this whole distribution, not only its mean, and several metrics of the course look at distributions for that reason.

# %% [markdown]
# ### Per cell type: a shared core and a specific part
#
# Interferon beta acts on every cell type, but not identically.
# Below, each point is a gene; its horizontal position is the change of its mean (stimulated minus control) in CD14+ monocytes, its vertical position the change in CD4 T cells.

# %%
def mean_change(data, cell_type):
    """Mean expression of the stimulated minus the control cells of one type, per gene."""
    cells = data[data.obs["cell_type"] == cell_type]
    stim = (cells.obs["condition"] == "stimulated").to_numpy()
    return gene_means(cells[stim]) - gene_means(cells[~stim])


change_mono, change_cd4 = mean_change(adata, "CD14+ Monocytes"), mean_change(adata, "CD4 T cells")
r = np.corrcoef(change_mono, change_cd4)[0, 1]
fig, ax = plt.subplots(figsize=(5.5, 5.5))
ax.scatter(change_mono, change_cd4, s=4, color="0.5", rasterized=True)
ax.axhline(0, color="black", lw=0.6)
ax.axvline(0, color="black", lw=0.6)
ax.set(xlabel="change in CD14+ monocytes (stimulated - control)",
       ylabel="change in CD4 T cells (stimulated - control)",
       title=f"The response of two cell types, gene by gene (r = {r:.2f})")
largest = np.argsort(np.abs(change_mono) + np.abs(change_cd4))[::-1][:6]  # the six largest changes
label_points(ax, change_mono[largest], change_cd4[largest], adata.var_names[largest])
plt.show()

# %% [markdown]
# The two responses are clearly related: genes that go up in monocytes tend to go up in CD4 T cells.
# They are not the same: many genes change much more in monocytes, and some genes respond in only one of the two types.
# This is the situation perturbation models are built for.
# The shared part can be learnt from the cell types that were measured; the specific part is what makes the prediction hard.

# %% [markdown]
# ## The prediction task of this course
#
# Every hands-on chapter solves the same task, taken from the scGen paper {cite}`lotfollahi2019` and the tutorial this course grew out of:
#
# | | control cells | stimulated cells |
# |---|---|---|
# | CD4 T cells | seen during training | **hidden: to be predicted** |
# | the seven other cell types | seen during training | seen during training |
#
# A model learns from all control cells and from the stimulated cells of the seven other types.
# It then receives the control CD4 T cells and must return what they would look like after interferon beta.
# The hidden stimulated CD4 T cells are used only at the very end, to score the prediction.
# Chapter 3 shows that any other cell type can take the place of CD4 T cells, and chapter 8 does exactly that for all of them.

# %% [markdown]
# ## The landscape: 70 to 80 tools and counting
#
# Perturbation modelling has grown fast since 2019.
# Roughly 70 to 80 tools exist, and the mini-review by Gavriilidis et al. {cite}`gavriilidis2024` covers about 40 of them across single-cell omic modalities.
# They differ in what they predict (unseen cell types, unseen drugs or doses, unseen gene knock-outs, combinations) and in how they represent cells, but a few families recur:
#
# | family | core idea | examples |
# |---|---|---|
# | autoencoders with latent arithmetic | compress cells into a latent space; express the perturbation as a shift there | scGen {cite}`lotfollahi2019`, trVAE {cite}`lotfollahi2020`, CPA {cite}`lotfollahi2023` |
# | optimal transport | match control cells to perturbed cells and learn the map between them | CellOT {cite}`bunne2023`, CINEMA-OT {cite}`dong2023` |
# | attention on top of a latent space | give each cell its own response, weighted by similar reference cells | scPRAM {cite}`jiang2024` |
# | knowledge graphs and foundation models | use gene-gene relations or large pre-trained models to predict unseen genetic perturbations | GEARS {cite}`roohani2024`, scGPT {cite}`cui2024` |
#
# The course teaches the first and the third family in depth, because scGen is the classic baseline that newer tools compare against and scPRAM adds optimal transport and attention to the same recipe.
# Training material for these tools is scarce: pertpy {cite}`heumos2025` bundles a handful of them, and the lack of shared best practices, benchmarks and standards slows their use.

# %% [markdown]
# ## Vocabulary
#
# A few words recur in every chapter.
#
# Autoencoder
# : A neural network in two halves.
#   The encoder compresses a cell's expression profile (thousands of genes) into a short vector; the decoder rebuilds the full profile from that vector.
#   Training makes the rebuilt profile as close as possible to the input.
#
# Variational autoencoder (VAE)
# : An autoencoder whose encoder returns a probability distribution (a mean and a variance per dimension) instead of a single point {cite}`kingma2014`.
#   A penalty, the Kullback-Leibler (KL) divergence, keeps these distributions close to a standard normal one, so that the compressed space is smooth and has no holes.
#
# beta-VAE
# : A VAE in which the KL penalty is multiplied by a weight β {cite}`higgins2017`.
#   Changing β trades reconstruction accuracy against a tidier, more regular latent space; scGen and scPRAM both use a small β.
#
# Latent space
# : The low-dimensional space of the compressed vectors (100 dimensions in scGen).
#   Cells with similar transcriptomes land close to each other, so directions in it can carry biological meaning, such as "control to stimulated".
#
# ZINB decoder
# : A decoder that outputs the parameters of a zero-inflated negative binomial distribution for every gene, a likelihood made for sparse, over-dispersed UMI counts with many zeros.
#   scGen and scPRAM do not use one: they model log-normalised expression with a Gaussian (squared-error) loss, and so do the course's implementations.
#
# Latent arithmetic
# : Adding a vector to a latent code and decoding the result; scGen predicts a response by adding one "stimulation vector" to every control cell.
#
# Optimal transport (OT)
# : A way to pair the cells of two groups so that the total distance moved is as small as possible; scPRAM uses it to pair each control cell with a stimulated one.
#
# Attention
# : A weighted average in which the weights come from similarity: a query cell borrows most from the reference cells that resemble it.

# %% [markdown]
# ## The evaluation problem
#
# Suppose a new tool reports that it beats scGen.
# CellOT {cite}`bunne2023` did exactly that on its own benchmarks, while comparisons that used other data sets, other metrics or other choices of held-out cells have not always reproduced such rankings.
# For genetic perturbations, a recent study found that deep-learning models did not yet outperform deliberately simple linear baselines {cite}`ahlmanneltze2025`.
# None of this means that one group was careless; it means that the answer depends on the data set, on the metric and on the standard of comparison, and that the field has no agreed benchmark yet.
#
# The experiment below shows how much the metric alone can matter.
# It scores the laziest possible "prediction" of stimulated CD4 T cells: the control CD4 T cells themselves, unchanged.
# We call it the identity baseline.

# %%
from myst_nb import glue

from course_lib.metrics import r2_score

cd4 = adata[adata.obs["cell_type"] == "CD4 T cells"]
ctrl = gene_means(cd4[cd4.obs["condition"] == "control"])
stim = gene_means(cd4[cd4.obs["condition"] == "stimulated"])
identity = ctrl  # the "prediction": nothing changes
r2_means = float(r2_score(stim, identity))
glue("r2_identity", f"{r2_means:.2f}", display=False)  # quoted in the text below

fig, axes = plt.subplots(1, 2, figsize=(6.8, 4.4), layout="constrained")
axes[0].scatter(identity, stim, s=4, color="0.5", rasterized=True)
axes[0].plot([0, stim.max()], [0, stim.max()], color="black", lw=0.8, ls="--")
axes[0].set(xlabel="predicted mean\n(= control mean)", ylabel="real mean, stimulated",
            title=f"Means of {cd4.n_vars:,} genes\nR² = {r2_means:.2f}")
axes[1].scatter(identity - ctrl, stim - ctrl, s=4, color="0.5", rasterized=True)
axes[1].set(xlabel="predicted change\n(identity: always 0)", ylabel="real change",
            title="Changes\n(the identity predicts none)")
fig.suptitle("The identity baseline for stimulated CD4 T cells")
plt.show()

# %% [markdown]
# On the left, the identity baseline reaches a coefficient of determination (R²) of means of {glue:text}`r2_identity` without knowing anything about interferon.
# Most genes do not change, and their means span a wide range, so predicting "no change" already lines the points up along the diagonal; only the few responding genes stray from it.
# For comparison, the tutorial this course grew out of reported an R² of 0.92 for a trained scGen on 2,000 genes of a larger version of the same data.
# The two numbers are not directly comparable (other genes, other cells), but together they show that such a number means little without a baseline next to it.
#
# On the right, the same prediction is judged by the *change* it predicts for each gene, and it has nothing to offer: every predicted change is zero, so it cannot correlate with the real changes at all.
# Chapter 5 builds the metrics that tell the difference.
# From chapter 3 on, every comparison includes this identity baseline and a second, slightly smarter one, so that a deep model has to beat both before it can claim to have learnt the perturbation.

# %% [markdown]
# ## Key take-aways
#
# - Perturbation experiments cannot cover every gene, drug, cell type and patient; models that predict responses help decide what to measure.
# - Interferon beta changes a few dozen genes strongly and most genes hardly at all; the change shows in the whole distribution of single cells, and it is partly shared and partly specific across cell types.
# - The course's task: predict the stimulated CD4 T cells from their control cells and from the other cell types' responses.
# - About 70 to 80 tools exist; autoencoders with latent arithmetic (scGen) and attention with optimal transport (scPRAM) are two of the main ideas.
# - Rankings of tools depend on data, metrics and baselines; the identity baseline already scores a high R² of means, so that number alone proves little.

# %% [markdown]
# ## Exercises
#
# **1. How large is the experiment space?**
# With 20,000 genes and 400 cell types, how many single-gene knock-out experiments are there, one per gene and cell type?
# How many if you knock out every *pair* of genes?
#
# :::{dropdown} Solution
# One gene at a time: 20,000 × 400 = 8,000,000 experiments.
# Pairs: 20,000 × 19,999 / 2 ≈ 2 × 10⁸ gene pairs, times 400 cell types ≈ 8 × 10¹⁰ experiments.
# Even a screen of a million cells a day would need more than 200 years for the pairs, with one cell per experiment.
# :::
#
# **2. The identity baseline on highly variable genes.**
# The models of this course read 2,000 highly variable genes, not all 14,053.
# Score the identity baseline for CD4 T cells on those genes (`course_lib.preprocessing.preprocess` selects them).
# Does its R² of means go up or down, and why?
#
# :::{dropdown} Solution
# ```python
# from course_lib.preprocessing import preprocess
#
# hvg = preprocess(kang2018())  # normalise, log1p, keep 2,000 highly variable genes
# cd4_hvg = hvg[hvg.obs["cell_type"] == "CD4 T cells"]
# float(r2_score(gene_means(cd4_hvg[cd4_hvg.obs["condition"] == "stimulated"]),
#                gene_means(cd4_hvg[cd4_hvg.obs["condition"] == "control"])))
# ```
# The R² goes down (to roughly 0.86 with the course's labels).
# Selecting variable genes throws away thousands of genes that never change, and keeps the interferon-stimulated genes, which vary a lot between conditions.
# The identity baseline loses part of its free credit, but it still looks respectable: a reminder that the gene set is part of the metric.
# :::
#
# **3. A gene that does not respond.**
# Redraw the histogram of single cells for a gene that is not an ISG, for example `gene = "CD3E"` (T cells) or `gene = "LYZ"` (monocytes).
# What do you expect, and what do you see?
#
# :::{dropdown} Solution
# Change `gene` in the histogram cell and run it again.
# The two histograms now overlap: the gene marks a cell type, not the response, so its distribution is the same in both conditions.
# The many zeros come from cells of other types and from the sparsity of droplet data.
# :::
#
# **4. The identity baseline for another cell type.**
# Score the identity baseline for CD14+ monocytes instead of CD4 T cells.
# Is its R² of means higher or lower, and why?
#
# :::{dropdown} Solution
# ```python
# mono = adata[adata.obs["cell_type"] == "CD14+ Monocytes"]
# ctrl_m = gene_means(mono[mono.obs["condition"] == "control"])
# stim_m = gene_means(mono[mono.obs["condition"] == "stimulated"])
# float(r2_score(stim_m, ctrl_m))
# ```
# The R² is lower than for CD4 T cells, because monocytes respond more strongly (the scatter plot of the two cell types shows larger changes along its horizontal axis).
# The identity baseline is hardest to beat, and therefore most misleading, for cell types that respond weakly.
# :::

# %% [markdown]
# ## References
#
# ```{bibliography}
# :filter: docname in docnames
# ```
