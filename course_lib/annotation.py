"""Cell-type annotation of PBMCs from canonical marker genes, and its agreement with published labels.

The course labels the Kang 2018 cells itself (``scripts/annotate_kang2018.py`` writes
``data/kang2018_cell_types.csv``) with :func:`annotate_cell_types`:

1. log-normalise every gene (counts per 10,000, then ``log1p``);
2. build a representation that control and stimulated cells share (:func:`shared_representation`):
   highly variable genes chosen within each condition, minus the interferon-response genes whose
   condition explains a large part of their variance (:func:`condition_r2`), plus the marker genes;
   scaled, PCA, then the two conditions aligned by :func:`align_conditions`;
3. cluster a k-nearest-neighbour graph of that representation (Leiden);
4. name every cluster after the population whose canonical markers it expresses most
   (:func:`marker_scores`, :func:`label_groups`).

It returns that representation with the clusters and labels, so a chapter can show the embedding, the
clusters and the marker scores that named them.

No reference label is read anywhere in that pipeline. The published labels serve only to measure it
afterwards: :func:`agreement_by_type` and :func:`confusion_table`, on the reference subsets that
:func:`read_reference_labels` and :func:`reference_subset` return. The measurement is kept as
confusion counts (:func:`confusion_counts`), which the course commits beside the labels so that every
reader sees it; :func:`confusion_from_counts` and :func:`agreement_of_confusion` read it back.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
import scipy.sparse as sp
from sklearn.cluster import KMeans

from course_lib.checks import (
    as_dense,
    looks_like_counts,
    require_log_normalised,
    require_nonempty,
    require_obs_keys,
)
from course_lib.datasets import CELL_TYPES

PBMC_MARKERS: dict[str, tuple[str, ...]] = {
    "CD4 T cells": ("CD3D", "IL7R", "CCR7"),
    "CD14+ Monocytes": ("CD14", "LYZ"),
    "B cells": ("MS4A1", "CD79A"),
    "NK cells": ("GNLY", "NKG7"),
    "CD8 T cells": ("CD8A", "CD8B"),
    "FCGR3A+ Monocytes": ("FCGR3A", "MS4A7"),
    "Dendritic cells": ("FCER1A", "CST3"),
    "Plasmacytoid dendritic cells": ("LILRA4", "IL3RA"),
    "Megakaryocytes": ("PPBP", "PF4"),
}
"""Canonical markers of the PBMC populations: those of Seurat's PBMC 3k tutorial, with CD3D, CD79A, CD8B
and PF4 added so every population has two or three, and LILRA4 and IL3RA for plasmacytoid dendritic cells.

Plasmacytoid dendritic cells express little FCER1A and less CST3 than conventional dendritic cells, so
they are scored as a population of their own and reported as dendritic cells (:data:`PBMC_SUBPOPULATIONS`),
as the published annotations of these data do (Seurat's 'pDC' is counted among 'Dendritic cells').
"""

PBMC_SUBPOPULATIONS: dict[str, str] = {"Plasmacytoid dendritic cells": "Dendritic cells"}
"""Populations of :data:`PBMC_MARKERS` that are reported as another (one of :data:`CELL_TYPES`)."""

REFERENCE_LABELS_ENV = "COURSE_VALIDATION_LABELS"
"""Environment variable with the path of the published labels (the validation file)."""

REFERENCE_COMPARISONS: tuple[tuple[str, str], ...] = (
    ("kang2018_published", "control"),
    ("seurat_ifnb_2800", "stimulated"),
    ("seurat_ifnb_2800", "control"),
)
"""``(source, condition)`` pairs the course reports: the original study's labels exist for control cells
only; Seurat's 'ifnb' labels cover both conditions."""


def condition_r2(adata: ad.AnnData, *, condition_key: str = "condition") -> pd.Series:
    """Fraction of each gene's variance across all cells that the condition explains.

    For log-normalised expression ``x`` of a gene, ``R^2 = sum_c p_c (mean_c - mean)^2 / var(x)`` with
    ``p_c`` the fraction of cells in condition ``c``. On the Kang data, interferon-stimulated genes reach
    0.2 to 0.8 (ISG15 0.77, IFIT1 0.71, CXCL10 0.32); cell-type markers mostly stay below 0.02, because
    their variance comes from the cell types, which both conditions share (CD14, which stimulation lowers
    in monocytes, reaches 0.11).

    Returns
    -------
    pd.Series
        ``R^2`` per gene (indexed by ``var_names``), 0 for genes that do not vary.
    """
    require_nonempty(adata)
    require_obs_keys(adata, [condition_key])
    x = sp.csr_matrix(adata.X, dtype=np.float64)
    mean = np.asarray(x.mean(axis=0)).ravel()
    variance = np.asarray(x.multiply(x).mean(axis=0)).ravel() - mean**2
    conditions = adata.obs[condition_key].astype(str).to_numpy()
    between = np.zeros(adata.n_vars)
    for condition in np.unique(conditions):
        members = conditions == condition
        between += members.mean() * (np.asarray(x[members].mean(axis=0)).ravel() - mean) ** 2
    r2 = np.divide(between, variance, out=np.zeros_like(between), where=variance > 1e-12)
    return pd.Series(r2, index=adata.var_names, name="condition_r2")


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    return matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)


def _harmony(
    embedding: np.ndarray,
    batches: np.ndarray,
    *,
    n_clusters: int,
    theta: float,
    sigma: float,
    ridge: float,
    n_iter: int,
    n_cluster_iter: int,
    seed: int,
) -> np.ndarray:
    """Harmony's two alternating steps (Korsunsky et al. 2019), without its block updates or early stop."""
    codes = np.unique(batches, return_inverse=True)[1]
    onehot = np.eye(codes.max() + 1)[codes]
    design = np.hstack([np.ones((len(codes), 1)), onehot])
    penalty = np.diag([0.0] + [ridge] * onehot.shape[1])  # the intercept (shared cluster centre) is free
    batch_share = onehot.mean(axis=0)
    kmeans = KMeans(n_clusters=n_clusters, n_init=1, random_state=seed).fit(_unit_rows(embedding))
    centroids = _unit_rows(kmeans.cluster_centers_)
    corrected = embedding
    for _ in range(n_iter):
        unit = _unit_rows(corrected)
        for _ in range(n_cluster_iter):
            # Soft k-means on the cosine distance, penalised where a cluster over-represents a batch.
            logits = -2.0 * (1.0 - unit @ centroids.T) / sigma
            resp = np.exp(logits - logits.max(axis=1, keepdims=True))
            resp /= resp.sum(axis=1, keepdims=True)
            observed = resp.T @ onehot
            expected = resp.sum(axis=0)[:, None] * batch_share[None, :]
            resp *= (((expected + 1) / (observed + 1)) ** theta)[:, codes].T
            resp /= resp.sum(axis=1, keepdims=True)
            centroids = _unit_rows(resp.T @ unit)
        # Per cluster, a ridge regression of the embedding on the batch; remove the batch terms.
        corrected = embedding.copy()
        for weights in resp.T:
            weighted = design * weights[:, None]
            coef = np.linalg.solve(design.T @ weighted + penalty, weighted.T @ embedding)
            corrected -= weights[:, None] * (onehot @ coef[1:])
    return corrected


def align_conditions(
    adata: ad.AnnData,
    *,
    basis: str = "X_pca",
    condition_key: str = "condition",
    key_added: str = "X_shared",
    n_clusters: int = 50,
    theta: float = 2.0,
    sigma: float = 0.1,
    ridge: float = 1.0,
    n_iter: int = 10,
    n_cluster_iter: int = 20,
    seed: int = 0,
) -> ad.AnnData:
    """Align the conditions in an embedding with a compact Harmony; store it in ``obsm[key_added]``.

    Harmony (Korsunsky et al. 2019, Nature Methods) alternates two steps. First, a soft k-means of the
    cells into ``n_clusters`` clusters, on the cosine distance with bandwidth ``sigma``, whose assignments
    are penalised (exponent ``theta``) where a cluster holds more cells of one condition than the data
    as a whole; the clusters so become shared by the conditions. Second, within every cluster, a ridge
    regression (penalty ``ridge``) of the embedding on the condition, whose condition terms are
    subtracted from the cells in proportion to their membership. Each cell type thus loses its own
    condition offset, not one global shift. This version runs a fixed number of rounds (``n_iter``
    outer, ``n_cluster_iter`` clustering updates each) instead of testing convergence, so it is
    deterministic for a given ``seed`` (the k-means start).

    Returns
    -------
    ad.AnnData
        ``adata`` itself, with the aligned embedding (float64) in ``obsm[key_added]``.
    """
    require_obs_keys(adata, [condition_key])
    if basis not in adata.obsm:
        raise KeyError(
            f"adata.obsm has no {basis!r}; known: {', '.join(adata.obsm) or 'none'}. Run PCA first."
        )
    if n_clusters > adata.n_obs:
        raise ValueError(f"n_clusters={n_clusters} exceeds the {adata.n_obs} cells.")
    adata.obsm[key_added] = _harmony(
        np.asarray(adata.obsm[basis], dtype=np.float64),
        adata.obs[condition_key].astype(str).to_numpy(),
        n_clusters=n_clusters,
        theta=theta,
        sigma=sigma,
        ridge=ridge,
        n_iter=n_iter,
        n_cluster_iter=n_cluster_iter,
        seed=seed,
    )
    return adata


def shared_representation(
    adata: ad.AnnData,
    *,
    condition_key: str = "condition",
    keep_genes: Sequence[str] = (),
    n_top_genes: int = 2000,
    max_condition_r2: float = 0.2,
    n_pcs: int = 30,
    seed: int = 0,
    key_added: str = "X_shared",
) -> ad.AnnData:
    """A representation of log-normalised cells in which control and stimulated cells of a type meet.

    Two steps keep the interferon response from splitting every cell type. The feature genes are the
    ``n_top_genes`` highly variable genes (scanpy's ``seurat`` ranking within each condition, then
    combined), minus those whose condition explains at least ``max_condition_r2`` of their variance
    (:func:`condition_r2`; on the Kang data these are eleven interferon-stimulated genes such as ISG15,
    IFIT1 and CXCL10), plus ``keep_genes`` (the marker genes: they are never dropped). Then the scaled
    features are reduced to ``n_pcs`` principal components and the conditions aligned with
    :func:`align_conditions`, which removes the remaining, cell-type-specific shifts.

    Returns
    -------
    ad.AnnData
        A new AnnData of the feature genes, scaled to unit variance (clipped at 10), with the principal
        components in ``obsm['X_pca']``, the aligned ones in ``obsm[key_added]``, the gene statistics in
        ``.var`` (with ``condition_r2``) and the excluded genes in ``uns['condition_response_genes']``.
    """
    require_log_normalised(adata)
    missing = [gene for gene in keep_genes if gene not in adata.var_names]
    if missing:
        raise KeyError(f"keep_genes not in adata.var_names: {', '.join(missing)}.")
    stats = sc.pp.highly_variable_genes(
        adata, n_top_genes=n_top_genes, batch_key=condition_key, flavor="seurat", inplace=False
    )
    stats.index = adata.var_names
    stats["condition_r2"] = condition_r2(adata, condition_key=condition_key)
    response = stats["highly_variable"] & (stats["condition_r2"] >= max_condition_r2)
    features = (stats["highly_variable"] & ~response) | adata.var_names.isin(keep_genes)
    result = ad.AnnData(
        X=as_dense(adata.X[:, features.to_numpy()]), obs=adata.obs.copy(), var=stats.loc[features]
    )
    result.uns["condition_response_genes"] = list(stats.index[response & ~features])
    sc.pp.scale(result, max_value=10)
    sc.pp.pca(result, n_comps=n_pcs, svd_solver="arpack", random_state=seed)
    return align_conditions(result, condition_key=condition_key, key_added=key_added, seed=seed)


def _require_markers(adata: ad.AnnData, markers: Mapping[str, Sequence[str]]) -> list[str]:
    genes = list(dict.fromkeys(gene for population in markers.values() for gene in population))
    missing = [gene for gene in genes if gene not in adata.var_names]
    if missing:
        raise KeyError(f"marker genes not in adata.var_names: {', '.join(missing)}; pass other markers.")
    return genes


def marker_scores(
    adata: ad.AnnData, *, groupby: str = "cluster", markers: Mapping[str, Sequence[str]] = PBMC_MARKERS
) -> pd.DataFrame:
    """How strongly each group of cells expresses each population's markers, from 0 to 1.

    Per group, the mean log-normalised expression of every marker gene is divided by that gene's highest
    group mean, so each marker counts alike whatever its level (PPBP reaches 3.5, FCER1A 0.4 on the Kang
    data); a population's score is the average over its markers.

    Returns
    -------
    pd.DataFrame
        One row per group (the categories of ``obs[groupby]`` that hold cells, in their order), one column
        per population.
    """
    require_log_normalised(adata)
    require_obs_keys(adata, [groupby])
    genes = _require_markers(adata, markers)
    groups = adata.obs[groupby].astype("category")
    expression = pd.DataFrame(as_dense(adata[:, genes].X), columns=genes, index=adata.obs_names)
    means = expression.groupby(groups, observed=True).mean()
    relative = means / means.max(axis=0).where(lambda peak: peak > 0, 1.0)
    return pd.DataFrame({population: relative[list(g)].mean(axis=1) for population, g in markers.items()})


def label_groups(
    scores: pd.DataFrame, *, subpopulations: Mapping[str, str] = PBMC_SUBPOPULATIONS
) -> pd.Series:
    """Name every group after its best-scoring population, reported as its cell type.

    Ties go to the population listed first. ``subpopulations`` maps a population to the cell type it is
    reported as (plasmacytoid dendritic cells to dendritic cells); other populations are their own type.

    Returns
    -------
    pd.Series
        The cell type of every group (index of ``scores``).
    """
    if scores.empty:
        raise ValueError("scores is empty; marker_scores needs at least one group and one population.")
    best = scores.idxmax(axis=1)
    return best.map(lambda population: subpopulations.get(population, population)).rename("cell_type")


def annotate_cell_types(
    counts: ad.AnnData,
    *,
    condition_key: str = "condition",
    markers: Mapping[str, Sequence[str]] = PBMC_MARKERS,
    subpopulations: Mapping[str, str] = PBMC_SUBPOPULATIONS,
    n_top_genes: int = 2000,
    max_condition_r2: float = 0.2,
    n_pcs: int = 30,
    n_neighbors: int = 15,
    resolution: float = 0.8,
    seed: int = 0,
) -> ad.AnnData:
    """Annotate raw-count cells from marker genes, on a representation both conditions share.

    Cells are put in a canonical order (by condition, then barcode) first, so the result does not depend
    on the order of the input. Then: counts per 10,000 and ``log1p`` on every gene;
    :func:`shared_representation` (with the marker genes kept); an exact ``n_neighbors`` graph of the
    aligned embedding; Leiden clusters at ``resolution``; :func:`marker_scores` per cluster and
    :func:`label_groups`. Everything is seeded with ``seed``, so repeated runs give the same labels.

    Returns
    -------
    ad.AnnData
        The shared representation of the cells (see :func:`shared_representation`), in the canonical
        order, with ``obs['cluster']`` (Leiden), ``obs['cell_type']``, the neighbour graph in ``obsp``
        and the cluster-by-population scores in ``uns['marker_scores']``.
    """
    require_nonempty(counts, what="counts")
    require_obs_keys(counts, [condition_key], what="counts")
    if not looks_like_counts(counts.X):
        raise ValueError("annotate_cell_types expects raw counts in .X; this data looks already normalised.")
    genes = _require_markers(counts, markers)
    conditions = counts.obs[condition_key].astype(str).to_numpy()
    order = np.lexsort((counts.obs_names.to_numpy(dtype=str), conditions))
    log_norm = ad.AnnData(
        X=sp.csr_matrix(counts.X[order], dtype=np.float32),
        obs=pd.DataFrame({condition_key: conditions[order]}, index=counts.obs_names[order]),
        var=pd.DataFrame(index=counts.var_names),
    )
    sc.pp.normalize_total(log_norm, target_sum=1e4)
    sc.pp.log1p(log_norm)

    shared = shared_representation(
        log_norm,
        condition_key=condition_key,
        keep_genes=genes,
        n_top_genes=n_top_genes,
        max_condition_r2=max_condition_r2,
        n_pcs=n_pcs,
        seed=seed,
    )
    sc.pp.neighbors(
        shared, n_neighbors=n_neighbors, use_rep="X_shared", transformer="sklearn", random_state=seed
    )
    sc.tl.leiden(
        shared,
        resolution=resolution,
        flavor="igraph",
        n_iterations=-1,
        directed=False,
        random_state=seed,
        key_added="cluster",
    )
    log_norm.obs["cluster"] = shared.obs["cluster"]
    scores = marker_scores(log_norm, markers=markers)
    types = label_groups(scores, subpopulations=subpopulations)
    shared.obs["cell_type"] = shared.obs["cluster"].map(types).astype(str)
    shared.uns["marker_scores"] = scores
    return shared


def reference_labels_path() -> Path | None:
    """Path of the published labels named by ``$COURSE_VALIDATION_LABELS``, or None where it is unset.

    The published labels are not part of the course; whoever has them points this variable at them
    (the annotation script of the repository also takes the path as an argument).
    """
    value = os.environ.get(REFERENCE_LABELS_ENV)
    return Path(value) if value else None


def read_reference_labels(path: Path | str | None = None) -> pd.DataFrame:
    """Read the published labels (columns ``cell, condition, reference_label, original_label, source``).

    For measuring an annotation only; nothing in the course labels cells from them.

    Returns
    -------
    pd.DataFrame
        One row per cell and source, indexed by barcode (``cell``).
    """
    path = Path(path) if path is not None else reference_labels_path()
    if path is None or not path.exists():
        raise FileNotFoundError(
            f"validation labels not found at {path}; pass a path or set {REFERENCE_LABELS_ENV}."
        )
    return pd.read_csv(path, index_col="cell")


def reference_subset(references: pd.DataFrame, *, source: str, condition: str) -> pd.Series:
    """The reference labels of one source and condition, as a Series indexed by barcode."""
    chosen = references[(references["source"] == source) & (references["condition"] == condition)]
    if chosen.empty:
        pairs = sorted(set(zip(references["source"], references["condition"], strict=True)))
        raise ValueError(
            f"no reference labels for source {source!r} and condition {condition!r}; known: {pairs}."
        )
    return chosen["reference_label"].rename(f"{source} ({condition})")


def _aligned(predicted: pd.Series, reference: pd.Series) -> tuple[pd.Series, pd.Series]:
    missing = reference.index.difference(predicted.index)
    if not missing.empty:
        examples = ", ".join(map(str, missing[:5]))
        raise KeyError(f"{len(missing)} reference cells have no predicted label (e.g. {examples}).")
    return predicted.reindex(reference.index).astype(str), reference.astype(str)


def _ordered(labels: Sequence[str], types: Sequence[str]) -> list[str]:
    present = set(labels)
    return [t for t in types if t in present] + sorted(present.difference(types))


def confusion_table(
    predicted: pd.Series, reference: pd.Series, *, types: Sequence[str] = CELL_TYPES
) -> pd.DataFrame:
    """Cell counts per reference label (rows) and predicted label (columns), for the cells of ``reference``.

    Rows and columns list the labels in the order of ``types`` (labels outside it after, by name); a
    type that appears on either side appears on both, so the diagonal holds the agreements.
    """
    predicted, reference = _aligned(predicted, reference)
    labels = _ordered(set(reference) | set(predicted), types)
    table = pd.crosstab(reference, predicted).reindex(index=labels, columns=labels, fill_value=0)
    return table.rename_axis(index="reference", columns="predicted")


def agreement_of_confusion(confusion: pd.DataFrame) -> pd.DataFrame:
    """Per-type agreement from a :func:`confusion_table`: for each reference type, its cells, the cells
    that got the same label and their share (the type's recall), then the ``overall`` row.

    Reference types with no cells are left out.
    """
    n_cells = confusion.sum(axis=1)
    n_agree = pd.Series(np.diag(confusion.to_numpy()), index=confusion.index)
    table = pd.DataFrame({"n_cells": n_cells, "n_agree": n_agree})[n_cells > 0]
    table.loc["overall"] = table.sum()
    table = table.astype(int)
    table["agreement"] = table["n_agree"] / table["n_cells"]
    table.index.name = "reference"
    return table


def agreement_by_type(
    predicted: pd.Series, reference: pd.Series, *, types: Sequence[str] = CELL_TYPES
) -> pd.DataFrame:
    """Agreement of predicted labels with reference labels, per reference type and overall.

    Only the cells of ``reference`` count (matched by index); every one of them needs a prediction.
    The per-type agreement is the share of a reference type's cells that got the same label (its recall).

    Returns
    -------
    pd.DataFrame
        Rows: the reference types (in the order of ``types``, others after), then ``overall``; columns
        ``n_cells``, ``n_agree`` and ``agreement`` (:func:`agreement_of_confusion`).
    """
    return agreement_of_confusion(confusion_table(predicted, reference, types=types))


def confusion_counts(
    predicted: pd.Series,
    references: pd.DataFrame,
    *,
    comparisons: Sequence[tuple[str, str]] = REFERENCE_COMPARISONS,
) -> pd.DataFrame:
    """The confusion tables of every ``(source, condition)`` comparison in long form.

    Columns ``source, condition, reference, predicted, n_cells`` (non-zero counts only): a small table
    that holds the whole measurement without a single published label per cell.
    """
    frames = []
    for source, condition in comparisons:
        reference = reference_subset(references, source=source, condition=condition)
        table = confusion_table(predicted, reference).stack().rename("n_cells").reset_index()
        frames.append(table[table["n_cells"] > 0].assign(source=source, condition=condition))
    columns = ["source", "condition", "reference", "predicted", "n_cells"]
    return pd.concat(frames, ignore_index=True)[columns]


def confusion_from_counts(
    counts: pd.DataFrame, *, source: str, condition: str, types: Sequence[str] = CELL_TYPES
) -> pd.DataFrame:
    """The :func:`confusion_table` of one comparison from :func:`confusion_counts`' long table."""
    chosen = counts[(counts["source"] == source) & (counts["condition"] == condition)]
    if chosen.empty:
        pairs = sorted(set(zip(counts["source"], counts["condition"], strict=True)))
        raise ValueError(f"no counts for source {source!r} and condition {condition!r}; known: {pairs}.")
    labels = _ordered(set(chosen["reference"]) | set(chosen["predicted"]), types)
    table = chosen.pivot_table(
        index="reference", columns="predicted", values="n_cells", aggfunc="sum", fill_value=0
    )
    table = table.reindex(index=labels, columns=labels, fill_value=0).astype(int)
    return table.rename_axis(index="reference", columns="predicted")
