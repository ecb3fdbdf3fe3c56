"""Distances between groups of cells: the energy distance in a PCA of the real cells, and the
distance between the per-gene mean-variance densities."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import anndata as ad
import numpy as np
import pandas as pd
from scipy.linalg import solve_triangular
from scipy.spatial.distance import cdist, pdist
from sklearn.decomposition import PCA

from course_lib.keys import DEFAULT_KEYS, ObsKeys
from course_lib.metrics.inputs import checked_expressions, column_means, group_expressions


def _mean_distance(x: np.ndarray, y: np.ndarray | None = None, *, squared: bool) -> float:
    """Mean distance over all pairs of x and y, or over all n² pairs of x (zero diagonal included)."""
    metric = "sqeuclidean" if squared else "euclidean"
    if y is None:
        return 2.0 * pdist(x, metric).sum() / x.shape[0] ** 2
    return cdist(x, y, metric).mean()


def energy_distances_of_points(
    points: Mapping[str, np.ndarray], pairs: Sequence[tuple[str, str]], *, squared: bool
) -> list[float]:
    """Energy distance of each pair of named point sets; each within-set term is computed once."""
    names = dict.fromkeys(name for pair in pairs for name in pair)
    within = {name: _mean_distance(points[name], squared=squared) for name in names}
    return [
        2.0 * _mean_distance(points[a], points[b], squared=squared) - within[a] - within[b] for a, b in pairs
    ]


def energy_distance(x, y, *, squared: bool = False) -> float:
    """Energy distance between two point sets (rows are points, e.g. cells in PCA space).

    E = 2 E‖X − Y‖ − E‖X − X'‖ − E‖Y − Y'‖, each expectation a mean over all pairs of the two
    empirical samples. Convention: the within-set means run over all n² pairs, the zero diagonal
    included (the V-statistic), so E ≥ 0 and identical sets give exactly 0. With plain Euclidean
    distances E is 0 only when the two distributions are equal. ``squared=True`` uses ‖·‖² instead
    (scPerturb's variant), which reduces to E = 2 ‖mean X − mean Y‖²: a difference of means only.
    """
    return energy_distances_of_points(
        {"x": np.asarray(x), "y": np.asarray(y)}, [("x", "y")], squared=squared
    )[0]


def check_n_components(n_components: int, shape: tuple[int, int]) -> None:
    """Raise unless a PCA of a ``shape`` (cells x genes) matrix can have ``n_components`` components."""
    if not 1 <= n_components <= min(shape):
        raise ValueError(
            f"n_components ({n_components}) must be between 1 and min(cells, genes) of ctrl + stim "
            f"{shape}; pass a smaller n_components."
        )


def fit_reference_pca(reference: np.ndarray, n_components: int, seed: int) -> PCA:
    """A seeded PCA with ``n_components`` components fitted on ``reference`` (ctrl + stim cells)."""
    check_n_components(n_components, reference.shape)
    return PCA(n_components=n_components, random_state=seed).fit(reference)


def subsample_positions(n_cells: int, max_cells: int, *, seed: int) -> np.ndarray:
    """Sorted positions of at most ``max_cells`` of ``n_cells`` cells, drawn without replacement (seeded)."""
    if n_cells <= max_cells:
        return np.arange(n_cells)
    return np.sort(np.random.default_rng(seed).choice(n_cells, size=max_cells, replace=False))


def embed(matrix: np.ndarray, pca: PCA, max_cells: int, seed: int) -> np.ndarray:
    """PCA coordinates of at most ``max_cells`` cells of ``matrix`` (:func:`subsample_positions`)."""
    return pca.transform(matrix[subsample_positions(matrix.shape[0], max_cells, seed=seed)])


def pca_embedding(
    ctrl: ad.AnnData,
    stim: ad.AnnData,
    predictions: ad.AnnData | Mapping[str, ad.AnnData],
    *,
    n_components: int = 30,
    max_cells: int = 2000,
    seed: int = 0,
    keys: ObsKeys = DEFAULT_KEYS,
) -> tuple[dict[str, np.ndarray], PCA]:
    """Cells of ctrl, stim and each prediction in a PCA fitted on ctrl + stim only.

    The PCA (centred, unscaled, ``n_components`` components, seeded) never sees a prediction, so
    every model is measured in the same space. Each group is subsampled to at most ``max_cells``
    cells with :func:`subsample_positions` before it is projected.

    Returns
    -------
    tuple
        A dict name -> (cells x components) coordinates, keyed ``keys.control``, ``keys.stimulated``
        and the prediction names (``keys.predicted`` for a single AnnData), and the fitted
        ``sklearn.decomposition.PCA``.
    """
    matrices = group_expressions(
        ctrl, stim, predictions, names=(keys.control, keys.stimulated, keys.predicted)
    )
    pca = fit_reference_pca(
        np.concatenate([matrices[keys.control], matrices[keys.stimulated]]), n_components, seed
    )
    return {name: embed(matrix, pca, max_cells, seed) for name, matrix in matrices.items()}, pca


def energy_distances(
    ctrl: ad.AnnData,
    stim: ad.AnnData,
    predictions: ad.AnnData | Mapping[str, ad.AnnData],
    *,
    n_components: int = 30,
    max_cells: int = 2000,
    squared: bool = False,
    seed: int = 0,
    keys: ObsKeys = DEFAULT_KEYS,
) -> pd.DataFrame:
    """Energy distance between every pair of ctrl, stim and each prediction, in the PCA of ctrl + stim.

    The cells come from :func:`pca_embedding` (at most ``max_cells`` per group, ``n_components``
    components) and each pair is compared with :func:`energy_distance`
    (E = 2 E‖X − Y‖ − E‖X − X'‖ − E‖Y − Y'‖, zero diagonal included).

    Returns
    -------
    pandas.DataFrame
        Symmetric, zero diagonal; rows and columns are ``keys.control``, ``keys.stimulated`` and the
        prediction names (``keys.predicted`` for a single AnnData). ``attrs["metric"]`` holds the metric name
        (``e_distance`` or ``e_distance_squared``).
    """
    points, _ = pca_embedding(
        ctrl,
        stim,
        predictions,
        n_components=n_components,
        max_cells=max_cells,
        seed=seed,
        keys=keys,
    )
    names = list(points)
    pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1 :]]
    frame = pd.DataFrame(0.0, index=names, columns=names)
    for (a, b), value in zip(pairs, energy_distances_of_points(points, pairs, squared=squared), strict=True):
        frame.loc[a, b] = frame.loc[b, a] = value
    frame.attrs["metric"] = "e_distance_squared" if squared else "e_distance"
    return frame


# -- mean-variance KDE distance -------------------------------------------------------------------

Bandwidth = float | Literal["scott"]
KDE_GRID_SIZE = 50


def mean_variance_points(matrix: np.ndarray) -> np.ndarray:
    """(genes x 2) points: mean and population variance (ddof = 0) of each gene."""
    return np.column_stack([column_means(matrix), matrix.var(axis=0, dtype=np.float64)])


def check_bandwidth(bandwidth: Bandwidth) -> None:
    """Raise unless ``bandwidth`` is ``"scott"`` or a positive number."""
    if bandwidth != "scott" and not (isinstance(bandwidth, int | float) and bandwidth > 0):
        raise ValueError(f"bandwidth must be 'scott' or a positive number, not {bandwidth!r}.")


def _gaussian_kde(points: np.ndarray, grid: np.ndarray, bandwidth: Bandwidth, what: str) -> np.ndarray:
    """Gaussian kernel density of ``points`` evaluated at ``grid`` (both n x d).

    f(u) = (1/n) Σ_i N(u; x_i, H), with H = h² I for a number h, or H = n^(−2/(d+4)) Σ (Scott's rule,
    Σ the sample covariance of the points) for ``"scott"``.
    """
    n_points, n_dims = points.shape
    if bandwidth == "scott":
        covariance = np.cov(points, rowvar=False) * n_points ** (-2.0 / (n_dims + 4))
    else:
        covariance = float(bandwidth) ** 2 * np.eye(n_dims)
    try:
        cholesky = np.linalg.cholesky(covariance)
    except np.linalg.LinAlgError:
        raise ValueError(
            f"the per-gene (mean, variance) points of {what} lie on a line, so Scott's rule gives no "
            "kernel; pass a fixed bandwidth (a positive number)."
        ) from None
    whitened = [solve_triangular(cholesky, array.T, lower=True).T for array in (grid, points)]
    norm = n_points * (2.0 * np.pi) ** (n_dims / 2.0) * np.prod(np.diag(cholesky))
    return np.exp(-0.5 * cdist(*whitened, "sqeuclidean")).sum(axis=1) / norm


def kde_distance_of_points(
    stim_points: np.ndarray, pred_points: np.ndarray, bandwidth: Bandwidth, grid_size: int
) -> float:
    """L1 distance of the KDEs of two sets of (mean, variance) points on a shared grid (see
    :func:`mean_variance_kde_distance`)."""
    low = np.minimum(stim_points.min(axis=0), pred_points.min(axis=0))
    high = np.maximum(stim_points.max(axis=0), pred_points.max(axis=0))
    axes = [np.linspace(low[d], high[d], grid_size) for d in range(2)]
    grid = np.column_stack([coordinate.ravel() for coordinate in np.meshgrid(*axes)])
    densities = [
        _gaussian_kde(points, grid, bandwidth, what)
        for points, what in ((stim_points, "stim"), (pred_points, "pred"))
    ]
    cell_area = np.prod([(high[d] - low[d]) / (grid_size - 1) for d in range(2)])
    return float(np.abs(densities[0] - densities[1]).sum() * cell_area)


def mean_variance_kde_distance(
    stim: ad.AnnData, pred: ad.AnnData, *, bandwidth: Bandwidth = "scott", grid_size: int = KDE_GRID_SIZE
) -> float:
    """L1 distance between the densities of per-gene (mean, variance) points of stim and of pred.

    Each gene gives a point (mean, variance with ddof = 0) for stim and one for pred. A Gaussian KDE
    of each point set (see bandwidth) is evaluated on a ``grid_size`` x ``grid_size`` grid spanning
    the joint bounding box of both sets (grid lines at both ends, spacing Δm = range/(grid_size − 1),
    likewise Δv), and ``D = Σ_grid |f_stim − f_pred| · Δm · Δv``. D is 0 for identical inputs and
    at most about 2.

    ``bandwidth="scott"`` scales each set's own covariance by Scott's factor n^(−1/6) (as
    ``scipy.stats.gaussian_kde`` does); a number h is an isotropic kernel of standard deviation h in
    the data's units (as ``sklearn.neighbors.KernelDensity(bandwidth=h)``). The original tutorial's
    ``bandwidth=1.0`` is reproducible that way, but it over-smooths: mean log-expression spans only a
    few units.
    """
    check_bandwidth(bandwidth)
    matrices = checked_expressions({"stim": stim}, {"pred": pred})
    return kde_distance_of_points(
        mean_variance_points(matrices["stim"]), mean_variance_points(matrices["pred"]), bandwidth, grid_size
    )
