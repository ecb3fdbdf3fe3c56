"""Time ``course_lib.metrics.evaluate`` on a realistic held-out evaluation: 5 predictions, 2,000 genes.

Run by hand from the repository root::

    python benchmarks/metrics.py                  # synthetic held-out type of about 6,000 cells
    python benchmarks/metrics.py --data kang2018  # Kang 2018, CD4 T cells held out (5,059 cells)

The five predictions stand in for trained models (this script times the metrics, not the models): the
identity baseline, the mean-shift baseline (control cells plus the mean stimulated-minus-control
difference of the other cell types) and three perturbed versions of it (an under-shift, an
over-shift and a noisy shift). The script prints the seconds of each building block, called
separately through the public API, and of one ``evaluate`` call, which shares the DEG ranking, the
PCA and the stim resamples between models. The issue's target is evaluate <= 30 s on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import os
import time

import anndata as ad
import numpy as np
import pandas as pd

from course_lib import metrics
from course_lib.checks import as_dense
from course_lib.datasets import synthetic_perturbation

TARGET_SECONDS = 30.0


def synthetic_data() -> tuple[ad.AnnData, str]:
    """Three cell types of about 6,000 cells each, 2,000 genes; ``type_0`` is held out."""
    return synthetic_perturbation(n_cells=18_000, n_genes=2_000, n_cell_types=3, seed=0), "type_0"


def kang2018_data() -> tuple[ad.AnnData, str]:
    """Kang 2018, 2,000 highly variable genes; CD4 T cells (the largest type) are held out."""
    from course_lib.datasets import kang2018
    from course_lib.preprocessing import preprocess

    return preprocess(kang2018()), "CD4 T cells"


def held_out_evaluation(adata: ad.AnnData, cell_type: str) -> tuple[ad.AnnData, ad.AnnData, dict]:
    """ctrl and stim of ``cell_type``, and five stand-in predictions made from its control cells."""
    in_type = adata.obs["cell_type"].astype(str).to_numpy() == cell_type
    is_ctrl = adata.obs["condition"].astype(str).to_numpy() == "control"
    ctrl, stim = adata[in_type & is_ctrl].copy(), adata[in_type & ~is_ctrl].copy()
    others = adata[~in_type]
    other_ctrl = others.obs["condition"].astype(str).to_numpy() == "control"
    shift = metrics.gene_means(others[~other_ctrl]) - metrics.gene_means(others[other_ctrl])
    control = as_dense(ctrl.X)
    noise = np.random.default_rng(0).normal(scale=0.2, size=control.shape)
    matrices = {
        "identity": control,
        "mean_shift": control + shift,
        "under_shift": control + 0.5 * shift,
        "over_shift": control + 1.5 * shift,
        "noisy_shift": control + shift + noise,
    }
    predictions = {}
    for name, matrix in matrices.items():
        prediction = ad.AnnData(np.asarray(matrix, dtype=np.float32), obs=ctrl.obs.copy(), var=ctrl.var[[]])
        prediction.obs["condition"] = "predicted"
        predictions[name] = prediction
    return ctrl, stim, predictions


def timed(function) -> tuple[float, object]:
    start = time.perf_counter()
    result = function()
    return time.perf_counter() - start, result


def benchmark(ctrl: ad.AnnData, stim: ad.AnnData, predictions: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Seconds per building block and for one evaluate call, and evaluate's table."""
    rows = []
    seconds, degs = timed(lambda: metrics.top_degs(stim, ctrl))
    seconds_pred, _ = timed(lambda: [metrics.top_degs(pred, ctrl) for pred in predictions.values()])
    rows.append(("top-100 DEGs, Wilcoxon vs ctrl: stim and 5 predictions", seconds + seconds_pred))
    seconds, _ = timed(
        lambda: [
            metrics.mean_metrics(ctrl, stim, pred, genes=genes)
            for pred in predictions.values()
            for genes in (None, degs)
        ]
    )
    rows.append(("mean-based metrics, 100 bootstrap rounds, all genes + top 100, x5", seconds))
    seconds, _ = timed(lambda: metrics.energy_distances(ctrl, stim, predictions))
    rows.append(("PCA of ctrl + stim and energy distances (all 21 pairs)", seconds))
    seconds, _ = timed(
        lambda: [metrics.mean_variance_kde_distance(stim, pred) for pred in predictions.values()]
    )
    rows.append(("mean-variance KDE distance, x5", seconds))
    rows.append(("sum of the separate calls", sum(seconds for _, seconds in rows)))
    seconds, table = timed(
        lambda: metrics.evaluate(ctrl, stim, predictions, n_ceiling_splits=0, verbose=False)
    )
    rows.append(("evaluate: every metric, 5 models, one call, no ceiling", seconds))
    seconds, _ = timed(lambda: metrics.evaluate(ctrl, stim, predictions, verbose=False))
    rows.append(("evaluate with the noise ceiling and matched scores (20 half splits)", seconds))
    return pd.DataFrame(rows, columns=["step", "seconds"]), table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=["synthetic", "kang2018"], default="synthetic")
    data = parser.parse_args().data

    adata, cell_type = synthetic_data() if data == "synthetic" else kang2018_data()
    ctrl, stim, predictions = held_out_evaluation(adata, cell_type)
    warm_up = {name: pred[:200] for name, pred in predictions.items()}  # first calls are not timed
    metrics.evaluate(ctrl[:200], stim[:200], warm_up, n_bootstrap=2, n_ceiling_splits=2, verbose=False)

    print(f"data: {data}, held-out type {cell_type!r}: {ctrl.n_obs} control + {stim.n_obs} stimulated cells")
    print(f"{len(predictions)} predictions of {ctrl.n_obs} cells each, {ctrl.n_vars} genes")
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(f"CPU cores: {os.cpu_count()}, load average before (1, 5, 15 min): {load}, ", end="")
    print(f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}\n")
    steps, table = benchmark(ctrl, stim, predictions)
    print(steps.to_string(index=False, float_format="{:.2f}".format))
    total = steps["seconds"].iloc[-1]
    verdict = "within" if total <= TARGET_SECONDS else "OVER"
    print(f"\nevaluate took {total:.1f} s: {verdict} the {TARGET_SECONDS:.0f} s target.\n")
    wide = table.pivot(index="metric", columns="model", values="value")[list(predictions)]
    print(wide.to_string(float_format="{:.3f}".format))


if __name__ == "__main__":
    main()
