"""From raw counts to the log-normalised, highly-variable-gene matrix that every model reads.

The held-out cells of an experiment must not influence which genes are kept: pass ``fit_on`` (a boolean
mask of the training cells) so that gene filtering and highly-variable-gene selection see only them.
:func:`course_lib.experiment.held_out_split` does this for a held-out cell type in one call.
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
import scipy.sparse as sp

from course_lib.checks import (
    looks_like_counts,
    require_finite_values,
    require_fraction,
    require_nonempty,
    require_positive_int,
    require_seed,
    require_unique_genes,
    require_value,
)
from course_lib.keys import DEFAULT_KEYS, ObsKeys


def holdout_mask(adata: ad.AnnData, cell_type: str, *, keys: ObsKeys = DEFAULT_KEYS) -> np.ndarray:
    """Boolean mask of the cells a held-out-type experiment hides: the stimulated cells of ``cell_type``."""
    require_value(adata, keys.cell_type, cell_type)
    require_value(adata, keys.condition, keys.stimulated)
    hidden = keys.is_type(adata, cell_type) & keys.is_stimulated(adata)
    if not hidden.any():
        raise ValueError(f"{cell_type!r} has no {keys.stimulated!r} cells to hold out.")
    return hidden


def holdout(
    adata: ad.AnnData, cell_type: str, *, keys: ObsKeys = DEFAULT_KEYS
) -> tuple[ad.AnnData, ad.AnnData]:
    """Split into ``(train, heldout)``: the stimulated cells of ``cell_type`` are held out, the rest trains.

    The target's control cells stay in ``train``: they are the query a model transforms.
    """
    mask = holdout_mask(adata, cell_type, keys=keys)
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
    require_unique_genes(adata)
    n_top_genes = require_positive_int(n_top_genes, what="n_top_genes")
    counts = adata.layers[counts_layer] if counts_layer in adata.layers else adata.X
    require_finite_values(counts, what="the counts")
    if not looks_like_counts(counts):
        raise ValueError(
            "preprocess expects raw counts (non-negative integers) in .X or layers"
            f"[{counts_layer!r}]; this data looks already normalised (or holds negative values)."
        )
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
    fraction = require_fraction(fraction, what="fraction")
    seed = require_seed(seed)
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
    keys: ObsKeys = DEFAULT_KEYS,
    seed: int = 0,
) -> ad.AnnData:
    """Imbalanced variant: every control cell, but only ``stim_fraction`` of each type's stimulated cells.

    Real perturbation experiments rarely sample both conditions evenly; this variant lets a chapter ask
    whether a model's ranking survives that.
    """
    require_value(adata, keys.condition, keys.stimulated)
    return subsample(
        adata,
        stim_fraction,
        groupby=(keys.condition, keys.cell_type),
        only=keys.is_stimulated(adata),
        seed=seed,
    )
