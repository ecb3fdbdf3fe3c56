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
# # The data: Kang 2018 PBMCs, control and interferon-beta
#
# :::{admonition} Learning objectives
# - Load the course data set and know where it comes from.
# - Read a count table of cells per cell type and condition.
# - See, in an embedding, that interferon-beta moves every cell type.
# :::
#
# The course uses peripheral blood mononuclear cells (PBMCs) from eight lupus patients, profiled by droplet single-cell RNA-seq before and after six hours of stimulation with interferon beta {cite}`kang2018`.
# `course_lib.datasets.kang2018` downloads the published count matrices once, checks their sha256 hashes, and caches them; later calls work offline.

# %% tags=["parameters"]
fraction = 1.0  # share of cells to keep per (condition, cell type); the test suite uses a small value
seed = 0

# %%
import scanpy as sc

from course_lib.datasets import kang2018
from course_lib.preprocessing import preprocess, subsample

counts = kang2018()
if fraction < 1:
    counts = subsample(counts, fraction, seed=seed)
counts

# %% [markdown]
# `.X` holds raw UMI counts.
# Every cell has a `condition` (control or stimulated) and a `cell_type`, one of the eight types of the original study.
# The table below counts cells per type and condition: CD4 T cells and CD14+ monocytes dominate, megakaryocytes and dendritic cells are rare.

# %%
counts.obs.groupby(["cell_type", "condition"], observed=True).size().unstack()

# %% [markdown]
# ## A first look at the response
#
# We normalise every cell to 10,000 counts, take `log1p` and keep 2,000 highly variable genes, then draw a UMAP of the cells.

# %%
adata = preprocess(counts)
sc.pp.pca(adata, random_state=seed)
sc.pp.neighbors(adata, random_state=seed)
sc.tl.umap(adata, random_state=seed)
sc.pl.umap(adata, color=["cell_type", "condition"], wspace=0.45, title=["Cell type", "Condition"])

# %% [markdown]
# Cells group by type first, but within every type control and stimulated cells sit apart: interferon beta changes the expression of hundreds of genes in all of them.
# Predicting that shift for a cell type whose stimulated cells were never measured is the task of the rest of the course.
#
# ```{bibliography}
# :filter: docname in docnames
# ```
