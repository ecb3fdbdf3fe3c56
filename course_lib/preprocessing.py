"""From raw counts to the log-normalised, highly-variable-gene matrix that every model reads.

The held-out cells of an experiment must not influence which genes are kept: pass ``fit_on`` (a boolean
mask of the training cells) so that gene filtering and highly-variable-gene selection see only them.
"""

from __future__ import annotations

from typing import NamedTuple

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
import scipy.sparse as sp

from course_lib._validation import looks_like_counts, require_finite, require_nonempty, require_value


def holdout_mask(
    adata: ad.AnnData,
    cell_type: str,
    *,
    condition_key: str = "condition",
    cell_type_key: str = "cell_type",
    stim_key: str = "stimulated",
) -> np.ndarray:
    """Boolean mask of the cells a held-out-type experiment hides: the stimulated cells of ``cell_type``."""
    require_value(adata, cell_type_key, cell_type)
    require_value(adata, condition_key, stim_key)
    is_type = adata.obs[cell_type_key].astype(str).to_numpy() == cell_type
    is_stim = adata.obs[condition_key].astype(str).to_numpy() == stim_key
    if not (is_type & is_stim).any():
        raise ValueError(f"{cell_type!r} has no {stim_key!r} cells to hold out.")
    return is_type & is_stim


def holdout(
    adata: ad.AnnData,
    cell_type: str,
    *,
    condition_key: str = "condition",
    cell_type_key: str = "cell_type",
    stim_key: str = "stimulated",
) -> tuple[ad.AnnData, ad.AnnData]:
    """Split into ``(train, heldout)``: the stimulated cells of ``cell_type`` are held out, the rest trains.

    The target's control cells stay in ``train``: they are the query a model transforms.
    """
    mask = holdout_mask(
        adata, cell_type, condition_key=condition_key, cell_type_key=cell_type_key, stim_key=stim_key
    )
    return adata[~mask].copy(), adata[mask].copy()


def preprocess(
    adata: ad.AnnData,
    *,
    fit_on: np.ndarray | None = None,
    min_cells: int = 3,
    target_sum: float = 1e4,
    n_top_genes: int = 2000,
    flavor: str = "seurat",
    counts_layer: str = "counts",
) -> ad.AnnData:
    """Filter genes, normalise, log-transform and keep the highly variable genes; return a new AnnData.

    Steps: keep genes detected in at least ``min_cells`` of the ``fit_on`` cells; scale every cell to
    ``target_sum`` counts; ``x -> log(1 + x)``; keep the ``n_top_genes`` most variable genes of the
    ``fit_on`` cells (scanpy's ``flavor`` dispersion ranking). Normalisation is per cell, so only the gene
    choice depends on ``fit_on`` (default: all cells).

    The counts are read from ``layers[counts_layer]`` when present, else from ``.X``. The result holds the
    log-normalised values in ``.X``, the raw counts of the kept genes in ``layers[counts_layer]``, the
    gene statistics in ``.var`` and the parameters in ``uns['preprocessing']``.
    """
    require_nonempty(adata)
    counts = adata.layers[counts_layer] if counts_layer in adata.layers else adata.X
    if not looks_like_counts(counts):
        raise ValueError(
            "preprocess expects raw counts (non-negative integers) in .X or layers"
            f"[{counts_layer!r}]; this data looks already normalised."
        )
    require_finite(adata)
    fit_on = np.ones(adata.n_obs, dtype=bool) if fit_on is None else np.asarray(fit_on, dtype=bool)
    if fit_on.shape != (adata.n_obs,) or not fit_on.any():
        raise ValueError(
            f"fit_on must be a boolean mask over the {adata.n_obs} cells with at least one True."
        )

    counts = sp.csr_matrix(counts, dtype=np.float32)
    detected = np.asarray((counts[fit_on] > 0).sum(axis=0)).ravel() >= min_cells
    result = ad.AnnData(X=counts[:, detected], obs=adata.obs.copy(), var=adata.var.loc[detected].copy())
    result.layers[counts_layer] = result.X.copy()
    sc.pp.normalize_total(result, target_sum=target_sum)
    sc.pp.log1p(result)
    result.uns.pop("log1p", None)

    if n_top_genes > result.n_vars:
        raise ValueError(f"n_top_genes={n_top_genes} but only {result.n_vars} genes pass the filter.")
    genes = sc.pp.highly_variable_genes(result[fit_on], n_top_genes=n_top_genes, flavor=flavor, inplace=False)
    genes.index = result.var_names
    keep = genes["highly_variable"].to_numpy()
    result = result[:, keep].copy()
    result.var = pd.concat([result.var, genes.loc[keep]], axis=1)
    result.uns["preprocessing"] = {
        "min_cells": min_cells,
        "target_sum": target_sum,
        "n_top_genes": n_top_genes,
        "flavor": flavor,
        "n_fit_cells": int(fit_on.sum()),
    }
    return result


def subsample(
    adata: ad.AnnData,
    fraction: float,
    *,
    groupby: tuple[str, ...] = ("condition", "cell_type"),
    only: np.ndarray | None = None,
    seed: int = 0,
) -> ad.AnnData:
    """Keep ``round(fraction * n)`` cells (at least one) of every ``groupby`` group, drawn with ``seed``.

    Stratifying keeps the make-up of the data, so a small run still holds every cell type and condition.
    ``only`` (a boolean mask) restricts the thinning to those cells; the others are all kept.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}.")
    only = np.ones(adata.n_obs, dtype=bool) if only is None else np.asarray(only, dtype=bool)
    rng = np.random.default_rng(seed)
    keys = adata.obs[list(groupby)].astype(str).agg("|".join, axis=1).to_numpy()
    chosen = [np.flatnonzero(~only)]
    for key in np.unique(keys[only]):
        members = np.flatnonzero((keys == key) & only)
        n_keep = max(1, round(fraction * members.size))
        chosen.append(rng.choice(members, size=n_keep, replace=False))
    return adata[np.sort(np.concatenate(chosen))].copy()


def imbalance(
    adata: ad.AnnData,
    *,
    stim_fraction: float = 0.2,
    condition_key: str = "condition",
    cell_type_key: str = "cell_type",
    stim_key: str = "stimulated",
    seed: int = 0,
) -> ad.AnnData:
    """Imbalanced variant: every control cell, but only ``stim_fraction`` of each type's stimulated cells.

    Real perturbation experiments rarely sample both conditions evenly; this variant lets a chapter ask
    whether a model's ranking survives that.
    """
    require_value(adata, condition_key, stim_key)
    is_stim = adata.obs[condition_key].astype(str).to_numpy() == stim_key
    return subsample(adata, stim_fraction, groupby=(condition_key, cell_type_key), only=is_stim, seed=seed)


class HeldOutSplit(NamedTuple):
    """The three AnnData objects of a held-out-type experiment."""

    train: ad.AnnData
    """Every cell except the target's stimulated cells: what a model may learn from."""
    query: ad.AnnData
    """The target's control cells (also in ``train``): what a model transforms."""
    truth: ad.AnnData
    """The target's stimulated cells: hidden from the model, used only to score its prediction."""


def held_out_split(
    counts: ad.AnnData,
    cell_type: str,
    *,
    fraction: float = 1.0,
    seed: int = 0,
    n_top_genes: int = 2000,
    condition_key: str = "condition",
    cell_type_key: str = "cell_type",
    ctrl_key: str = "control",
    stim_key: str = "stimulated",
) -> HeldOutSplit:
    """Prepare raw counts for predicting ``cell_type``'s response without leaking it.

    Steps: thin every (condition, cell type) group to ``fraction`` (:func:`subsample`, seeded; 1 keeps
    all); choose genes and normalise on every cell except the target's stimulated ones
    (:func:`preprocess` with ``fit_on``); split with :func:`holdout`.
    """
    keys = {"condition_key": condition_key, "cell_type_key": cell_type_key, "stim_key": stim_key}
    if fraction < 1:
        counts = subsample(counts, fraction, groupby=(condition_key, cell_type_key), seed=seed)
    adata = preprocess(counts, fit_on=~holdout_mask(counts, cell_type, **keys), n_top_genes=n_top_genes)
    train, truth = holdout(adata, cell_type, **keys)
    is_query = (train.obs[cell_type_key] == cell_type) & (train.obs[condition_key] == ctrl_key)
    return HeldOutSplit(train, train[is_query.to_numpy()].copy(), truth)
