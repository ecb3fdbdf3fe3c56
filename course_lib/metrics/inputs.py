"""The inputs of every metric: checked AnnData objects in, dense expression matrices out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import anndata as ad
import numpy as np

from course_lib.checks import as_dense, require_expression, require_same_genes

Inputs = Mapping[str, ad.AnnData]


def check_inputs(real: Inputs, predicted: Inputs | None = None) -> None:
    """Check named real cells and predictions: non-empty, unique genes, log-normalised, and every one
    with the genes of the first real input, in its order.

    Real cells must be non-negative; predictions may hold negative values (a linear decoder can
    output them).
    """
    groups = [(name, adata, True) for name, adata in real.items()]
    groups += [(name, adata, False) for name, adata in (predicted or {}).items()]
    reference_name, reference, _ = groups[0]
    for name, adata, is_real in groups:
        require_expression(adata, what=name, allow_negative=not is_real)
        require_same_genes(adata, reference, what=name, reference_what=reference_name)


def checked_expressions(real: Inputs, predicted: Inputs | None = None) -> dict[str, np.ndarray]:
    """Check the inputs (see :func:`check_inputs`) and return the dense expression of each, by name."""
    check_inputs(real, predicted)
    return {name: as_dense(adata.X) for name, adata in {**real, **(predicted or {})}.items()}


def named_predictions(
    predictions: ad.AnnData | Mapping[str, ad.AnnData], default_name: str
) -> dict[str, ad.AnnData]:
    """A mapping model name -> prediction; a single AnnData is named ``default_name``."""
    if isinstance(predictions, ad.AnnData):
        return {default_name: predictions}
    if not predictions:
        raise ValueError("predictions is empty; pass an AnnData or a mapping model name -> AnnData.")
    return dict(predictions)


def group_expressions(
    ctrl: ad.AnnData,
    stim: ad.AnnData,
    predictions: ad.AnnData | Mapping[str, ad.AnnData],
    *,
    names: tuple[str, str, str] = ("control", "stimulated", "predicted"),
) -> dict[str, np.ndarray]:
    """Checked dense expression of ctrl, stim and each prediction, keyed by ``names`` or model name.

    ``names`` are the labels of the control and stimulated cells and the name of a single prediction
    (the condition labels of :class:`course_lib.keys.ObsKeys`, by default).
    """
    ctrl_name, stim_name, pred_name = names
    predictions = named_predictions(predictions, pred_name)
    clashing = {ctrl_name, stim_name} & set(predictions)
    if clashing:
        raise ValueError(f"prediction names {sorted(clashing)} clash with the labels of ctrl and stim.")
    check_inputs(
        {"ctrl": ctrl, "stim": stim}, {f"predictions[{name!r}]": p for name, p in predictions.items()}
    )
    return {ctrl_name: as_dense(ctrl.X), stim_name: as_dense(stim.X)} | {
        name: as_dense(pred.X) for name, pred in predictions.items()
    }


def gene_positions(adata: ad.AnnData, genes: Sequence[str] | None) -> slice | np.ndarray:
    """Column positions of ``genes`` in ``adata`` (all columns for ``None``); raises for unknown genes."""
    if genes is None:
        return slice(None)
    positions = adata.var_names.get_indexer(list(genes))
    if (positions < 0).any():
        missing = [gene for gene, position in zip(genes, positions, strict=True) if position < 0]
        raise KeyError(f"{len(missing)} of the requested genes are not in var_names: {missing[:5]}.")
    return positions


def column_means(matrix: np.ndarray) -> np.ndarray:
    """Mean of every column (gene) of a cells x genes matrix, in float64."""
    return matrix.mean(axis=0, dtype=np.float64)
