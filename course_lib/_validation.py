"""Input checks shared by every public function: fail early, say what was wrong and what to do."""

from __future__ import annotations

from collections.abc import Iterable

import anndata as ad
import numpy as np
import scipy.sparse as sp


def as_dense(matrix) -> np.ndarray:
    """Return ``matrix`` (dense or scipy sparse) as a dense float32 numpy array."""
    if sp.issparse(matrix):
        matrix = matrix.toarray()
    return np.asarray(matrix, dtype=np.float32)


def require_nonempty(adata: ad.AnnData, *, what: str = "adata") -> None:
    """Raise if ``adata`` has no cells or no genes."""
    if adata.n_obs == 0 or adata.n_vars == 0:
        raise ValueError(f"{what} is empty ({adata.n_obs} cells x {adata.n_vars} genes).")


def require_obs_keys(adata: ad.AnnData, keys: Iterable[str], *, what: str = "adata") -> None:
    """Raise if any of ``keys`` is not a column of ``adata.obs``."""
    missing = [key for key in keys if key not in adata.obs.columns]
    if missing:
        known = ", ".join(map(repr, adata.obs.columns)) or "none"
        raise KeyError(f"{what}.obs has no column {', '.join(map(repr, missing))}; columns present: {known}.")


def require_value(adata: ad.AnnData, key: str, value: str, *, what: str = "adata") -> None:
    """Raise if no cell of ``adata`` has ``obs[key] == value``; the message lists the known values."""
    require_obs_keys(adata, [key], what=what)
    values = adata.obs[key].astype(str)
    if not (values == value).any():
        known = ", ".join(repr(v) for v in sorted(values.unique()))
        raise ValueError(f"{value!r} not found in {what}.obs[{key!r}]; known values: {known}.")


def require_finite(adata: ad.AnnData, *, what: str = "adata") -> None:
    """Raise if the expression matrix holds NaN or infinite values."""
    data = adata.X.data if sp.issparse(adata.X) else np.asarray(adata.X)
    if not np.all(np.isfinite(data)):
        n_bad = int(np.size(data) - np.isfinite(data).sum())
        raise ValueError(f"{what}.X holds {n_bad} NaN or infinite values; clean or impute them first.")


def looks_like_counts(matrix) -> bool:
    """True when the matrix looks like raw UMI counts: only non-negative integers and a maximum above 50.

    Log-normalised expression (``normalize_total`` then ``log1p``) rarely exceeds 10 and is not integral.
    """
    data = matrix.data if sp.issparse(matrix) else np.asarray(matrix).ravel()
    if data.size == 0:
        return False
    sample = data[: min(data.size, 200_000)]
    return bool(sample.max() > 50 and np.all(sample >= 0) and np.allclose(sample, np.round(sample)))


def require_log_normalised(adata: ad.AnnData, *, what: str = "adata") -> None:
    """Raise if ``adata.X`` looks like raw counts where log-normalised expression is expected."""
    if looks_like_counts(adata.X):
        raise ValueError(
            f"{what}.X looks like raw counts (non-negative integers, max {adata.X.max():.0f}); models and "
            "metrics expect log-normalised expression. Run course_lib.preprocessing.preprocess first "
            "(it keeps the counts in layers['counts'])."
        )


def require_same_genes(
    adata: ad.AnnData, reference: ad.AnnData, *, what: str = "adata", reference_what: str = "reference"
) -> None:
    """Raise unless ``adata`` has exactly the genes of ``reference``, in the same order.

    The message says which genes are missing or extra (the first five of each), or that only the order
    differs and how to fix it.
    """
    if adata.var_names.equals(reference.var_names):
        return
    missing = reference.var_names.difference(adata.var_names)
    extra = adata.var_names.difference(reference.var_names)
    if missing.empty and extra.empty:
        raise ValueError(
            f"{what} has the genes of {reference_what} in another order (or with repeats); "
            f"select them in order with {what}[:, {reference_what}.var_names]."
        )

    def examples(genes) -> str:
        return ", ".join(map(repr, genes[:5])) + (", ..." if len(genes) > 5 else "")

    parts = []
    if not missing.empty:
        parts.append(f"{len(missing)} gene(s) of {reference_what} are missing ({examples(missing)})")
    if not extra.empty:
        parts.append(f"{len(extra)} gene(s) are not in {reference_what} ({examples(extra)})")
    raise ValueError(
        f"{what} and {reference_what} have different genes: {'; '.join(parts)}. "
        "Predict and evaluate on the same genes (the same preprocessing of the same data)."
    )
