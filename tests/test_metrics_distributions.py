"""Energy distance and mean-variance KDE distance, against brute force, scipy and scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from sklearn.neighbors import KernelDensity

from course_lib import metrics
from course_lib.metrics.distributions import subsample_positions

# Energy distance


def _brute_force_energy(x: np.ndarray, y: np.ndarray, *, squared: bool) -> float:
    def mean_distance(a, b):
        total = 0.0
        for p in a:
            for q in b:
                d = np.sqrt(((p - q) ** 2).sum())
                total += d**2 if squared else d
        return total / (len(a) * len(b))

    return 2 * mean_distance(x, y) - mean_distance(x, x) - mean_distance(y, y)


@pytest.mark.parametrize("squared", [False, True])
def test_energy_distance_matches_brute_force_and_is_symmetric(squared):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(12, 3)), rng.normal(loc=0.5, size=(9, 3))
    expected = _brute_force_energy(x, y, squared=squared)
    assert metrics.energy_distance(x, y, squared=squared) == pytest.approx(expected, rel=1e-10)
    assert metrics.energy_distance(y, x, squared=squared) == pytest.approx(expected, rel=1e-10)


def test_energy_distance_in_one_dimension_matches_scipy():
    rng = np.random.default_rng(1)
    u, v = rng.normal(size=40), rng.normal(loc=1.0, scale=2.0, size=30)
    # scipy's energy_distance is the square root of E over the empirical distributions.
    expected = stats.energy_distance(u, v) ** 2
    assert metrics.energy_distance(u[:, None], v[:, None]) == pytest.approx(expected, rel=1e-10)


def test_energy_distance_known_values():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(25, 4))
    shift = np.array([1.0, -2.0, 0.5, 0.0])
    assert metrics.energy_distance(x, x) == 0.0
    assert metrics.energy_distance(x, x.copy(), squared=True) == pytest.approx(0.0, abs=1e-12)
    # Squared distances reduce to twice the squared distance between the means.
    assert metrics.energy_distance(x, x + shift, squared=True) == pytest.approx(2 * shift @ shift, rel=1e-9)
    # Two single points at distance d: E = 2 d (the within terms are 0).
    assert metrics.energy_distance(np.zeros((1, 2)), np.array([[3.0, 4.0]])) == pytest.approx(10.0)


def test_energy_distances_frame(held_out):
    ctrl, stim, predictions = held_out
    frame = metrics.energy_distances(ctrl, stim, predictions, n_components=10, max_cells=150)
    names = ["control", "stimulated", *predictions]
    assert list(frame.index) == names and list(frame.columns) == names
    np.testing.assert_allclose(frame.to_numpy(), frame.to_numpy().T)
    assert (np.diag(frame) == 0).all() and (frame.to_numpy() >= 0).all()
    assert frame.attrs["metric"] == "e_distance"
    # The identity prediction is the control cells: same subsample, same points.
    assert frame.loc["identity", "control"] == pytest.approx(0.0, abs=1e-9)
    assert frame.loc["identity", "stimulated"] == pytest.approx(frame.loc["control", "stimulated"])
    assert frame.loc["oracle", "stimulated"] < 0.2 * frame.loc["identity", "stimulated"]
    with pytest.raises(ValueError, match="clash"):
        metrics.energy_distances(ctrl, stim, {"control": ctrl})


def test_energy_distance_subsamples_with_a_seed():
    assert len(subsample_positions(5000, 2000, seed=0)) == 2000
    np.testing.assert_array_equal(
        subsample_positions(5000, 2000, seed=0), subsample_positions(5000, 2000, seed=0)
    )
    assert not np.array_equal(
        subsample_positions(5000, 2000, seed=0), subsample_positions(5000, 2000, seed=1)
    )
    np.testing.assert_array_equal(subsample_positions(30, 2000, seed=0), np.arange(30))


def _grid_l1(stim_points, pred_points, density, grid_size=50):
    """Reference computation on a grid_size x grid_size grid over the joint bounding box."""
    both = np.vstack([stim_points, pred_points])
    xs = np.linspace(both[:, 0].min(), both[:, 0].max(), grid_size)
    ys = np.linspace(both[:, 1].min(), both[:, 1].max(), grid_size)
    grid = np.array([[x, y] for y in ys for x in xs])
    difference = np.abs(density(stim_points, grid) - density(pred_points, grid)).sum()
    return difference * (xs[1] - xs[0]) * (ys[1] - ys[0])


def _mean_var(adata):
    x = np.asarray(adata.X, dtype=np.float64)
    return np.column_stack([x.mean(axis=0), x.var(axis=0)])


def test_mv_kde_with_a_fixed_bandwidth_matches_sklearn(held_out):
    ctrl, stim, _ = held_out

    def sklearn_density(points, grid):
        return np.exp(KernelDensity(bandwidth=1.0).fit(points).score_samples(grid))

    expected = _grid_l1(_mean_var(stim), _mean_var(ctrl), sklearn_density)
    actual = metrics.mean_variance_kde_distance(stim, ctrl, bandwidth=1.0)
    assert actual == pytest.approx(expected, rel=1e-6)


def test_mv_kde_with_scotts_rule_matches_scipy(held_out):
    ctrl, stim, _ = held_out

    def scipy_density(points, grid):
        return stats.gaussian_kde(points.T, bw_method="scott")(grid.T)

    expected = _grid_l1(_mean_var(stim), _mean_var(ctrl), scipy_density)
    actual = metrics.mean_variance_kde_distance(stim, ctrl)
    assert actual == pytest.approx(expected, rel=1e-6)
    assert metrics.mean_variance_kde_distance(ctrl, stim) == pytest.approx(actual, rel=1e-9)


def test_mv_kde_known_values(held_out):
    ctrl, stim, _ = held_out
    assert metrics.mean_variance_kde_distance(stim, stim.copy()) == 0.0
    distances = []
    for shift in [0.2, 1.0, 5.0]:  # every gene's mean moves, the variances stay
        shifted = stim.copy()
        shifted.X = shifted.X + shift
        distances.append(metrics.mean_variance_kde_distance(stim, shifted, bandwidth=0.2))
    assert 0 < distances[0] < distances[1] < distances[2] <= 2.0
    # A smaller bandwidth keeps more detail, so it separates two different sets more.
    smooth = metrics.mean_variance_kde_distance(stim, ctrl, bandwidth=1.0)
    assert metrics.mean_variance_kde_distance(stim, ctrl, bandwidth=0.1) > smooth
    with pytest.raises(ValueError, match="bandwidth"):
        metrics.mean_variance_kde_distance(stim, ctrl, bandwidth=-1.0)
    constant = stim[:5].copy()
    constant.X = np.tile(np.linspace(0, 3, stim.n_vars, dtype=np.float32), (5, 1))  # variances all 0
    with pytest.raises(ValueError, match="fixed bandwidth"):
        metrics.mean_variance_kde_distance(stim, constant)
