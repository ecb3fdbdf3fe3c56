"""Tests of course_lib.metrics against independent computations (scikit-learn, scipy, brute force)."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from scipy import stats
from sklearn.metrics import mean_squared_error
from sklearn.metrics import r2_score as sklearn_r2
from sklearn.neighbors import KernelDensity

from course_lib import metrics
from course_lib.datasets import synthetic_perturbation

# ---------------------------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------------------------


def _as_prediction(adata: ad.AnnData, matrix: np.ndarray | None = None) -> ad.AnnData:
    """A copy of ``adata`` labelled as a prediction, optionally with another expression matrix."""
    pred = adata.copy()
    if matrix is not None:
        pred.X = matrix.astype(np.float32)
    pred.obs["condition"] = "predicted"
    return pred


@pytest.fixture(scope="module")
def held_out():
    """One cell type: ctrl, stim (half of the stimulated cells) and three predictions.

    ``oracle`` is the other half of the real stimulated cells, ``identity`` the control cells and
    ``shifted`` the control cells plus the true mean shift.
    """
    adata = synthetic_perturbation(n_cells=800, n_genes=150, n_cell_types=1, seed=1)
    ctrl = adata[adata.obs["condition"] == "control"].copy()
    stimulated = adata[adata.obs["condition"] == "stimulated"]
    stim, other_half = stimulated[::2].copy(), stimulated[1::2].copy()
    shift = np.asarray(stim.X.mean(axis=0) - ctrl.X.mean(axis=0))
    predictions = {
        "oracle": _as_prediction(other_half),
        "identity": _as_prediction(ctrl),
        "shifted": _as_prediction(ctrl, ctrl.X + shift),
    }
    return ctrl, stim, predictions


def _adata(matrix: np.ndarray) -> ad.AnnData:
    return ad.AnnData(np.asarray(matrix, dtype=np.float32))


# ---------------------------------------------------------------------------------------------
# Scores of mean vectors
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_r2_mse_pearson_match_sklearn_and_scipy(seed):
    rng = np.random.default_rng(seed)
    y = rng.normal(size=300)
    y_hat = 0.5 * y + rng.normal(scale=0.3, size=300) + 0.5
    assert metrics.r2_score(y, y_hat) == pytest.approx(sklearn_r2(y, y_hat), rel=1e-12)
    assert metrics.mse(y, y_hat) == pytest.approx(mean_squared_error(y, y_hat), rel=1e-12)
    r = stats.pearsonr(y, y_hat).statistic
    assert metrics.pearson_r(y, y_hat) == pytest.approx(r, rel=1e-12)
    assert metrics.r2_score(y, y_hat, kind="pearson2") == pytest.approx(r**2, rel=1e-12)
    # The two R² differ: the squared Pearson ignores the 0.5 slope and the 0.5 offset.
    assert metrics.r2_score(y, y_hat, kind="pearson2") > metrics.r2_score(y, y_hat) + 0.2


def test_scores_are_batched_over_leading_axes():
    rng = np.random.default_rng(3)
    y, y_hat = rng.normal(size=(4, 50)), rng.normal(size=(4, 50))
    np.testing.assert_allclose(
        metrics.r2_score(y, y_hat), [sklearn_r2(a, b) for a, b in zip(y, y_hat, strict=True)]
    )
    np.testing.assert_allclose(
        metrics.pearson_r(y, y_hat), [stats.pearsonr(a, b).statistic for a, b in zip(y, y_hat, strict=True)]
    )
    np.testing.assert_allclose(metrics.mse(y, y_hat), ((y - y_hat) ** 2).mean(axis=1))


def test_score_conventions_for_degenerate_vectors():
    y = np.array([1.0, 2.0, 4.0])
    assert metrics.r2_score(y, y) == 1.0
    assert metrics.r2_score(y, np.full(3, y.mean())) == pytest.approx(0.0)
    assert np.isnan(metrics.r2_score(np.ones(3), y))  # nothing to explain
    assert metrics.pearson_r(y, np.zeros(3)) == 0.0  # a constant prediction carries no signal


def test_scores_reject_bad_arguments():
    with pytest.raises(ValueError, match="one shape"):
        metrics.mse(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="pearson2"):
        metrics.r2_score(np.zeros(3), np.zeros(3), kind="spearman")


# ---------------------------------------------------------------------------------------------
# Energy distance
# ---------------------------------------------------------------------------------------------


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
    assert len(metrics.subsample(5000, 2000, seed=0)) == 2000
    np.testing.assert_array_equal(
        metrics.subsample(5000, 2000, seed=0), metrics.subsample(5000, 2000, seed=0)
    )
    assert not np.array_equal(metrics.subsample(5000, 2000, seed=0), metrics.subsample(5000, 2000, seed=1))
    np.testing.assert_array_equal(metrics.subsample(30, 2000, seed=0), np.arange(30))


# ---------------------------------------------------------------------------------------------
# Wilcoxon and DEGs
# ---------------------------------------------------------------------------------------------


def test_wilcoxon_matches_scipy_mann_whitney(synthetic):
    stim = synthetic[synthetic.obs["condition"] == "stimulated"]
    ctrl = synthetic[synthetic.obs["condition"] == "control"]
    z = metrics.rank_genes_wilcoxon(stim, ctrl)
    assert list(z.index) == list(synthetic.var_names)
    result = stats.mannwhitneyu(
        stim.X, ctrl.X, use_continuity=False, method="asymptotic", alternative="two-sided", axis=0
    )
    p_from_z = 2 * stats.norm.sf(np.abs(z.to_numpy()))
    testable = result.pvalue > 1e-250
    assert testable.sum() > 150
    np.testing.assert_allclose(p_from_z[testable], result.pvalue[testable], rtol=1e-8)
    u_centred = result.statistic - stim.n_obs * ctrl.n_obs / 2
    assert np.array_equal(np.sign(z.to_numpy()), np.sign(u_centred))


def test_wilcoxon_with_ties_matches_a_brute_force_rank_computation():
    group = np.array([[0.0, 1.0], [0.0, 2.0], [1.0, 2.0], [3.0, 5.0]])
    reference = np.array([[0.0, 2.0], [0.0, 2.0], [1.0, 0.0]])
    z = metrics.rank_genes_wilcoxon(_adata(group), _adata(reference)).to_numpy()
    n1, n2 = len(group), len(reference)
    n = n1 + n2
    for gene in range(2):
        values = np.concatenate([group[:, gene], reference[:, gene]])
        ranks = stats.rankdata(values)  # mid-ranks
        _, ties = np.unique(values, return_counts=True)
        variance = n1 * n2 / 12 * (n + 1 - (ties**3 - ties).sum() / (n * (n - 1)))
        expected = (ranks[:n1].sum() - n1 * (n + 1) / 2) / np.sqrt(variance)
        assert z[gene] == pytest.approx(expected, rel=1e-12)


def test_wilcoxon_scores_zero_when_all_values_tie():
    z = metrics.rank_genes_wilcoxon(_adata(np.zeros((4, 2))), _adata(np.zeros((3, 2))))
    assert (z == 0).all()


def test_top_degs_are_up_regulated_and_find_the_responsive_genes(synthetic):
    stim = synthetic[synthetic.obs["condition"] == "stimulated"]
    ctrl = synthetic[synthetic.obs["condition"] == "control"]
    top = metrics.top_degs(stim, ctrl, n_top=15)
    z = metrics.rank_genes_wilcoxon(stim, ctrl)
    assert len(top) == 15
    assert (np.diff(z[top].to_numpy()) <= 0).all() and (z[top] > 0).all()
    assert set(top) == set(z.sort_values(ascending=False).index[:15])
    # The simulation makes 20 genes respond; nearly all of the top 15 must be among them.
    assert synthetic.var.loc[top, "responsive"].mean() >= 0.8
    # Nothing is up-regulated in a group against itself.
    assert len(metrics.top_degs(ctrl, ctrl)) == 0


def test_deg_overlap_matches_set_operations(held_out):
    ctrl, stim, predictions = held_out
    real = set(metrics.top_degs(stim, ctrl, n_top=30))
    for pred in predictions.values():
        predicted = set(metrics.top_degs(pred, ctrl, n_top=30))
        result = metrics.deg_overlap(ctrl, stim, pred, n_top=30)
        assert result.overlap == len(real & predicted)
        assert result.jaccard == pytest.approx(len(real & predicted) / len(real | predicted))
    assert metrics.deg_overlap(ctrl, stim, stim, n_top=30) == (1.0, len(real))
    assert metrics.deg_overlap(ctrl, stim, predictions["identity"], n_top=30) == (0.0, 0)


# ---------------------------------------------------------------------------------------------
# Mean-based metrics and their bootstrap
# ---------------------------------------------------------------------------------------------


def test_mean_metrics_without_bootstrap_match_direct_computation(held_out):
    ctrl, stim, predictions = held_out
    pred = predictions["oracle"]
    c, y, y_hat = (np.asarray(a.X, dtype=np.float64).mean(axis=0) for a in (ctrl, stim, pred))
    frame = metrics.mean_metrics(ctrl, stim, pred, n_bootstrap=0)
    expected = {
        "r2_mean": sklearn_r2(y, y_hat),
        "r2_pearson2_mean": stats.pearsonr(y, y_hat).statistic ** 2,
        "mse_mean": mean_squared_error(y, y_hat),
        "pearson_mean": stats.pearsonr(y, y_hat).statistic,
        "delta_r2": sklearn_r2(y - c, y_hat - c),
        "delta_pearson": stats.pearsonr(y - c, y_hat - c).statistic,
    }
    assert list(frame.index) == list(expected)
    np.testing.assert_allclose(frame["value"], list(expected.values()), rtol=1e-6)
    assert frame[["ci_low", "ci_high"]].isna().all().all()

    genes = list(stim.var_names[::3])
    subset = metrics.mean_metrics(ctrl, stim, pred, genes=genes, n_bootstrap=0)
    positions = np.arange(stim.n_vars)[::3]
    assert subset.loc["r2_mean", "value"] == pytest.approx(
        sklearn_r2(y[positions], y_hat[positions]), rel=1e-6
    )
    with pytest.raises(KeyError, match="not in var_names"):
        metrics.mean_metrics(ctrl, stim, pred, genes=["no_such_gene"], n_bootstrap=0)


def test_identity_scores_high_r2_but_no_delta_correlation(held_out):
    ctrl, stim, predictions = held_out
    identity = metrics.mean_metrics(ctrl, stim, predictions["identity"], n_bootstrap=0)["value"]
    shifted = metrics.mean_metrics(ctrl, stim, predictions["shifted"], n_bootstrap=0)["value"]
    y_shift = np.asarray(stim.X.mean(axis=0) - ctrl.X.mean(axis=0), dtype=np.float64)
    assert identity["r2_mean"] > 0.8
    assert identity["delta_pearson"] == 0.0
    # Predicting no shift: R² = 1 − Σ (y − c)² / Σ (y − c − mean(y − c))².
    expected = 1 - (y_shift**2).sum() / ((y_shift - y_shift.mean()) ** 2).sum()
    assert identity["delta_r2"] == pytest.approx(expected, rel=1e-5)
    # Control cells plus the true mean shift reproduce the stim means: every score is perfect.
    assert shifted["r2_mean"] == pytest.approx(1.0, abs=1e-6)
    assert shifted["delta_pearson"] == pytest.approx(1.0, abs=1e-6)
    assert shifted["delta_r2"] == pytest.approx(1.0, abs=1e-5)
    assert shifted["mse_mean"] == pytest.approx(0.0, abs=1e-10)


def test_bootstrap_inflates_mse_by_the_variance_of_80_percent_resamples(held_out):
    """E[MSE*] = MSE + mean_g(σ²_stim / m_stim + σ²_pred / m_pred), m = floor(0.8 n), σ² with ddof 0."""
    ctrl, stim, predictions = held_out
    pred = predictions["oracle"]
    result = metrics.mean_metrics(ctrl, stim, pred, n_bootstrap=400, seed=3)
    point = metrics.mean_metrics(ctrl, stim, pred, n_bootstrap=0).loc["mse_mean", "value"]
    inflation = sum(
        np.asarray(a.X, dtype=np.float64).var(axis=0).mean() / int(0.8 * a.n_obs) for a in (stim, pred)
    )
    assert inflation > point / 2  # the test can tell a wrong resample size apart
    assert result.loc["mse_mean", "value"] == pytest.approx(point + inflation, rel=0.03)


def test_bootstrap_intervals_are_ordered_and_seeded(held_out):
    ctrl, stim, predictions = held_out
    pred = predictions["oracle"]
    wide = metrics.mean_metrics(ctrl, stim, pred, n_bootstrap=50, seed=0)
    narrow = metrics.mean_metrics(ctrl, stim, pred, n_bootstrap=50, seed=0, confidence=0.5)
    assert (wide["ci_low"] <= wide["value"]).all() and (wide["value"] <= wide["ci_high"]).all()
    assert (wide["ci_low"] < wide["ci_high"]).all()
    assert (narrow["ci_high"] - narrow["ci_low"] < wide["ci_high"] - wide["ci_low"]).all()
    pd.testing.assert_frame_equal(wide, metrics.mean_metrics(ctrl, stim, pred, n_bootstrap=50, seed=0))
    assert not wide.equals(metrics.mean_metrics(ctrl, stim, pred, n_bootstrap=50, seed=1))
    with pytest.raises(ValueError, match="n_bootstrap"):
        metrics.mean_metrics(ctrl, stim, pred, n_bootstrap=1)
    with pytest.raises(ValueError, match="fraction"):
        metrics.mean_metrics(ctrl, stim, pred, fraction=1.5)


# ---------------------------------------------------------------------------------------------
# Mean-variance KDE distance
# ---------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------
# Names and evaluate
# ---------------------------------------------------------------------------------------------


def test_metric_names_have_labels_and_directions():
    assert metrics.metric_info("r2_mean_top100") == metrics.METRICS["r2_mean_top100"]
    assert metrics.metric_info("mse_mean_all").higher_is_better is False
    assert metrics.metric_info("delta_pearson_top50").higher_is_better is True
    assert "top 50 DEGs" in metrics.metric_info("delta_pearson_top50").label
    assert metrics.metric_info("e_distance").higher_is_better is False
    for name in ["r2_mean", "deg_jaccard_all", "r2_mean_top0", "accuracy_all"]:
        with pytest.raises(KeyError, match="unknown metric"):
            metrics.metric_info(name)


EVALUATE_OPTIONS = {
    "n_top_degs": 30,
    "n_components": 10,
    "max_cells": 150,
    "n_bootstrap": 20,
    "verbose": False,
}


@pytest.fixture(scope="module")
def evaluated(held_out):
    ctrl, stim, predictions = held_out
    return metrics.evaluate(ctrl, stim, predictions, **EVALUATE_OPTIONS)


def test_evaluate_returns_a_tidy_frame(evaluated, held_out):
    _, _, predictions = held_out
    assert list(evaluated.columns) == list(metrics.EVALUATE_COLUMNS)
    assert list(evaluated["model"].unique()) == list(predictions)
    assert set(evaluated["cell_type"]) == {"type_0"}
    expected_names = {name.replace("top100", "top30") for name in metrics.METRICS} - {"e_distance_squared"}
    assert set(evaluated["metric"]) == expected_names
    assert not evaluated.duplicated(["model", "cell_type", "metric"]).any()
    for name in evaluated["metric"].unique():
        metrics.metric_info(name)
    bootstrapped = evaluated["metric"].str.contains("mean|delta")
    assert evaluated.loc[~bootstrapped, ["ci_low", "ci_high"]].isna().all().all()
    inside = evaluated[bootstrapped]
    assert ((inside["ci_low"] <= inside["value"]) & (inside["value"] <= inside["ci_high"])).all()


def test_evaluate_agrees_with_the_standalone_metrics(evaluated, held_out):
    ctrl, stim, predictions = held_out
    values = evaluated.set_index(["model", "metric"])
    degs = metrics.top_degs(stim, ctrl, n_top=30)
    energy = metrics.energy_distances(ctrl, stim, predictions, n_components=10, max_cells=150)
    for name, pred in predictions.items():
        for genes, scope in [(None, "all"), (degs, "top30")]:
            expected = metrics.mean_metrics(ctrl, stim, pred, genes=genes, n_bootstrap=20)
            for statistic, row in expected.iterrows():
                got = values.loc[(name, f"{statistic}_{scope}"), ["value", "ci_low", "ci_high"]]
                np.testing.assert_allclose(got.to_numpy(dtype=float), row.to_numpy(), rtol=1e-9)
        overlap = metrics.deg_overlap(ctrl, stim, pred, n_top=30)
        assert values.loc[(name, "deg_jaccard_top30"), "value"] == pytest.approx(overlap.jaccard)
        assert values.loc[(name, "deg_overlap_top30"), "value"] == overlap.overlap
        assert values.loc[(name, "e_distance"), "value"] == pytest.approx(energy.loc[name, "stimulated"])
        kde = metrics.mean_variance_kde_distance(stim, pred)
        assert values.loc[(name, "mv_kde"), "value"] == pytest.approx(kde)


def test_evaluate_ranks_an_oracle_above_the_identity_baseline(evaluated):
    values = evaluated.set_index(["model", "metric"])["value"]
    for metric in ["delta_pearson_all", "delta_r2_top30", "deg_jaccard_top30"]:
        assert values[("oracle", metric)] > values[("identity", metric)] + 0.3
    for metric in ["e_distance", "mv_kde", "mse_mean_all"]:
        assert values[("oracle", metric)] < values[("identity", metric)]
    assert abs(values[("identity", "delta_pearson_all")]) < 0.2


def test_evaluate_is_deterministic_and_does_not_depend_on_the_other_models(evaluated, held_out):
    ctrl, stim, predictions = held_out
    alone = metrics.evaluate(ctrl, stim, {"shifted": predictions["shifted"]}, **EVALUATE_OPTIONS)
    together = evaluated[evaluated["model"] == "shifted"].reset_index(drop=True)
    pd.testing.assert_frame_equal(alone, together)


def test_evaluate_accepts_one_prediction_sparse_input_and_squared_energy(held_out):
    ctrl, stim, predictions = held_out
    sparse_ctrl = ctrl.copy()
    sparse_ctrl.X = sp.csr_matrix(sparse_ctrl.X)
    options = {**EVALUATE_OPTIONS, "n_bootstrap": 0}
    dense = metrics.evaluate(ctrl, stim, predictions["oracle"], **options)
    sparse = metrics.evaluate(sparse_ctrl, stim, predictions["oracle"], **options)
    pd.testing.assert_frame_equal(dense, sparse)
    assert set(dense["model"]) == {"predicted"}
    squared = metrics.evaluate(ctrl, stim, predictions["oracle"], squared_energy=True, **options)
    assert "e_distance_squared" in set(squared["metric"]) and "e_distance" not in set(squared["metric"])


def test_evaluate_selects_conditions_and_splits_cell_types(synthetic):
    options = {**EVALUATE_OPTIONS, "n_bootstrap": 0}
    ctrl = synthetic[synthetic.obs["condition"] == "control"]
    prediction = _as_prediction(synthetic[synthetic.obs["condition"] == "stimulated"])
    # The whole data set serves as ctrl and stim: each keeps only its own condition.
    together = metrics.evaluate(synthetic, synthetic, {"model": prediction}, **options)
    assert list(together["cell_type"].unique()) == list(dict.fromkeys(ctrl.obs["cell_type"].astype(str)))
    for cell_type in ["type_0", "type_2"]:
        in_type = synthetic[synthetic.obs["cell_type"] == cell_type]
        alone = metrics.evaluate(
            in_type[in_type.obs["condition"] == "control"],
            in_type[in_type.obs["condition"] == "stimulated"],
            {"model": prediction[prediction.obs["cell_type"] == cell_type]},
            **options,
        )
        expected = together[together["cell_type"] == cell_type].reset_index(drop=True)
        pd.testing.assert_frame_equal(alone, expected)


def test_evaluate_errors_name_the_problem(held_out, synthetic):
    ctrl, stim, predictions = held_out
    oracle = predictions["oracle"]
    renamed = oracle.copy()
    renamed.var_names = [f"other_{i}" if i < 2 else g for i, g in enumerate(oracle.var_names)]
    with pytest.raises(ValueError, match=r"different genes.*'gene_0'"):
        metrics.evaluate(ctrl, stim, {"m": renamed}, verbose=False)
    with pytest.raises(ValueError, match="another order"):
        metrics.evaluate(ctrl, stim, {"m": oracle[:, ::-1]}, verbose=False)
    with pytest.raises(ValueError, match="'control' not found in ctrl"):
        metrics.evaluate(stim, stim, {"m": oracle}, verbose=False)
    with pytest.raises(ValueError, match="'predicted' not found"):
        metrics.evaluate(ctrl, stim, {"m": ctrl}, verbose=False)
    counts = oracle.copy()
    counts.X = counts.layers["counts"]
    with pytest.raises(ValueError, match="raw counts"):
        metrics.evaluate(ctrl, stim, {"m": counts}, verbose=False)
    with pytest.raises(ValueError, match="n_components"):
        metrics.evaluate(ctrl, stim, {"m": oracle}, n_components=10_000, verbose=False)
    unlabelled = _as_prediction(synthetic[synthetic.obs["condition"] == "stimulated"])
    del unlabelled.obs["cell_type"]
    with pytest.raises(ValueError, match="has no obs\\['cell_type'\\]"):
        metrics.evaluate(synthetic, synthetic, {"m": unlabelled}, verbose=False)
    with pytest.raises(ValueError, match="empty"):
        metrics.evaluate(ctrl, stim, {}, verbose=False)
