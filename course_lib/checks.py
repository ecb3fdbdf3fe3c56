"""Input checks shared by every public function: fail early, say what was wrong and what to do.

Each ``require_*`` function raises ``ValueError`` (``KeyError`` for a missing obs column, ``TypeError``
for a wrong type) with a message that names the object (``what``) and the fix, before any long
computation starts.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import anndata as ad
import numpy as np
import scipy.sparse as sp

from course_lib.keys import ObsKeys

_SAMPLE = 200_000
"""Entries of a matrix that the shape checks look at (the first ones, in storage order)."""


def as_dense(matrix) -> np.ndarray:
    """Return ``matrix`` (dense or scipy sparse) as a dense float32 numpy array."""
    if sp.issparse(matrix):
        matrix = matrix.toarray()
    return np.asarray(matrix, dtype=np.float32)


def _stored_values(matrix) -> np.ndarray:
    """The stored values of a matrix: ``.data`` of a sparse one, every entry of a dense one."""
    return matrix.data if sp.issparse(matrix) else np.asarray(matrix).ravel()


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


def require_columns(adata: ad.AnnData, keys: ObsKeys, *, what: str = "adata") -> None:
    """Raise unless ``adata.obs`` has the condition and the cell-type column of ``keys``."""
    require_obs_keys(adata, [keys.condition, keys.cell_type], what=what)


def require_value(adata: ad.AnnData, key: str, value: str, *, what: str = "adata") -> None:
    """Raise if no cell of ``adata`` has ``obs[key] == value``; the message lists the known values."""
    require_obs_keys(adata, [key], what=what)
    values = adata.obs[key].astype(str)
    if not (values == value).any():
        known = ", ".join(repr(v) for v in sorted(values.unique()))
        raise ValueError(f"{value!r} not found in {what}.obs[{key!r}]; known values: {known}.")


def require_finite_values(matrix, *, what: str) -> None:
    """Raise if a matrix (dense or scipy sparse) holds NaN or infinite values."""
    finite = np.isfinite(_stored_values(matrix))
    if not finite.all():
        n_bad = int(finite.size - finite.sum())
        raise ValueError(f"{what} holds {n_bad} NaN or infinite values; clean or impute them first.")


def require_finite(adata: ad.AnnData, *, what: str = "adata") -> None:
    """Raise if the expression matrix ``adata.X`` holds NaN or infinite values."""
    require_finite_values(adata.X, what=f"{what}.X")


def require_unique_genes(adata: ad.AnnData, *, what: str = "adata") -> None:
    """Raise if ``adata`` has duplicated gene names (a gene could not be told from its twin)."""
    if adata.var_names.is_unique:
        return
    duplicated = adata.var_names[adata.var_names.duplicated()].unique()
    examples = ", ".join(map(repr, duplicated[:5])) + (", ..." if len(duplicated) > 5 else "")
    raise ValueError(
        f"{what} has {len(duplicated)} duplicated gene name(s) ({examples}); make them unique first, "
        f"e.g. {what}.var_names_make_unique()."
    )


def looks_like_counts(matrix) -> bool:
    """True when the matrix looks like raw UMI counts: non-negative, integer-valued and not all zero.

    The check reads the shape of the values, not their size: counts of a shallow data set can stay
    below any threshold, but ``log1p`` of normalised counts is integral only where it is 0. Only the
    first 200,000 stored values are read.
    """
    sample = _stored_values(matrix)[:_SAMPLE]
    if sample.size == 0 or not np.isfinite(sample).all():
        return False
    return bool(sample.min() >= 0 and sample.max() > 0 and np.array_equal(sample, np.round(sample)))


def require_log_normalised(adata: ad.AnnData, *, what: str = "adata", allow_negative: bool = False) -> None:
    """Raise if ``adata.X`` is not finite log-normalised expression: raw counts, or negative values.

    ``allow_negative`` accepts negative values, for predictions of models whose decoder is linear (the
    prediction is then an estimate, not a measurement); real cells are never negative after ``log1p``.
    """
    require_finite(adata, what=what)
    if looks_like_counts(adata.X):
        raise ValueError(
            f"{what}.X looks like raw counts (non-negative integers, max {adata.X.max():.0f}); models and "
            "metrics expect log-normalised expression. Run course_lib.preprocessing.preprocess first "
            "(it keeps the counts in layers['counts'])."
        )
    values = _stored_values(adata.X)
    if not allow_negative and values.size and values.min() < 0:
        raise ValueError(
            f"{what}.X holds {int((values < 0).sum())} negative values (min {values.min():.3g}); "
            "log-normalised expression is never negative. Was it scaled or centred (sc.pp.scale)? "
            "Pass the log-normalised values (course_lib.preprocessing.preprocess)."
        )


def require_expression(adata: ad.AnnData, *, what: str = "adata", allow_negative: bool = False) -> None:
    """Every check that a model or metric input needs: non-empty, unique genes, log-normalised."""
    require_nonempty(adata, what=what)
    require_unique_genes(adata, what=what)
    require_log_normalised(adata, what=what, allow_negative=allow_negative)


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


def require_seed(seed, *, what: str = "seed") -> int:
    """Return ``seed`` as an int; raise unless it is a non-negative integer (numpy's generators need one)."""
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise TypeError(f"{what} must be a non-negative integer, not {seed!r}.")
    if seed < 0:
        raise ValueError(f"{what} must be a non-negative integer, not {seed}.")
    return int(seed)


def require_fraction(value, *, what: str, allow_zero: bool = False) -> float:
    """Return ``value`` as a float; raise unless it lies in (0, 1] (or [0, 1] with ``allow_zero``).

    NaN and values above 1 are refused, not silently treated as "all".
    """
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise TypeError(f"{what} must be a number in (0, 1], not {value!r}.")
    low_ok = value >= 0 if allow_zero else value > 0
    if math.isnan(value) or not low_ok or value > 1:
        interval = "[0, 1]" if allow_zero else "(0, 1]"
        raise ValueError(f"{what} must be in {interval}, not {value}.")
    return float(value)


def require_choice(value, choices: Iterable, *, what: str) -> None:
    """Raise unless ``value`` is one of ``choices``; the message lists them."""
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"{what}={value!r} is not one of {choices}.")


def require_positive_int(value, *, what: str, minimum: int = 1) -> int:
    """Return ``value`` as an int; raise unless it is an integer of at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{what} must be an integer of at least {minimum}, not {value!r}.")
    if value < minimum:
        raise ValueError(f"{what} must be at least {minimum}, not {value}.")
    return int(value)
