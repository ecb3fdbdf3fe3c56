"""The course's scGen and scPRAM next to the reference implementations, on the course's split.

The reference implementations (pertpy 1.0.3's scGen, a JAX port, and scpram 0.0.3, the authors'
package) do not enter the course's environment; they live in an environment of their own::

    python3 -m venv .refenv
    .refenv/bin/pip install --no-deps -r benchmarks/reference/requirements.txt
    .refenv/bin/pip install --no-deps -e .
    .refenv/bin/python benchmarks/reference_models.py            # seeds 0-2, about 15 minutes on 2 cores

Setup: the stimulated CD4 T cells are held out and the 2,000 highly variable genes chosen on the
training cells only (:func:`course_lib.experiment.held_out_split`); every model trains 10 epochs; every
prediction is scored by :func:`course_lib.metrics.evaluate` with the seed (no noise ceiling). Within a
seed the course's models and the references run one after the other, so the time ratios compare runs
made under the same load. Prints mean ± sd over seeds, and the training and prediction seconds with
their ratio to the course's model of the same kind. It is a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import anndata as ad
import numpy as np
import pandas as pd

from course_lib.datasets import kang2018
from course_lib.experiment import held_out_split
from course_lib.metrics import evaluate
from course_lib.models import MeanShiftBaseline, Scgen, Scpram

TARGET = "CD4 T cells"
SHOWN = {
    "r2_mean_all": "R² means, all",
    "delta_pearson_top100": "Δ Pearson top-100",
    "e_distance": "E-distance",
}


def as_prediction(X: np.ndarray, query: ad.AnnData) -> ad.AnnData:
    """A reference's predicted expression as the course's prediction of ``query``."""
    prediction = ad.AnnData(np.asarray(X, dtype=np.float32), obs=query.obs.copy(), var=query.var.copy())
    prediction.obs["condition"] = "predicted"
    return prediction


def course_scgen(train, query, seed, **options):
    model = Scgen(train, seed=seed, **options)
    return timed(lambda: model.train(n_epochs=10, verbose=False), lambda: model.predict(target=TARGET))


def course_scpram(train, query, seed, **options):
    model = Scpram(train, seed=seed, **options)
    return timed(lambda: model.train(n_epochs=10, verbose=False), lambda: model.predict(target=TARGET))


def pertpy_scgen(train, query, seed, batch_size):
    import pertpy as pt
    import scvi

    scvi.settings.seed = seed
    data = train.copy()
    pt.tl.Scgen.setup_anndata(data, batch_key="condition", labels_key="cell_type")
    model = pt.tl.Scgen(data)

    def predict():
        prediction, _ = model.predict(ctrl_key="control", stim_key="stimulated", celltype_to_predict=TARGET)
        return as_prediction(prediction.X, query)

    return timed(lambda: model.train(max_epochs=10, batch_size=batch_size, early_stopping=False), predict)


def reference_scpram(train, query, seed):
    import torch
    from scpram import models

    torch.manual_seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - the reference draws from numpy's global generator
    model = models.SCPRAM(input_dim=train.n_vars, device="cpu")
    keys = {
        "condition_key": "condition",
        "cell_type_key": "cell_type",
        "ctrl_key": "control",
        "stim_key": "stimulated",
        "pred_key": "predicted",
    }
    model = model.to(model.device)
    return timed(
        lambda: model.train_SCPRAM(train, epochs=10, lr=5e-5),
        lambda: as_prediction(model.predict(train, TARGET, keys, ratio=0.005).X, query),
    )


def timed(train: Callable, predict: Callable) -> tuple[ad.AnnData, float, float]:
    start = time.perf_counter()
    train()
    trained = time.perf_counter()
    prediction = predict()
    return prediction, trained - start, time.perf_counter() - trained


OTHER_DECODER = {"decoder_batch_norm": not Scgen.hyperparameters()["decoder_batch_norm"].default}
"""The decoder setting that the course's default is not."""

RUNS = {
    "course_lib Scgen (defaults)": ("scgen", lambda t, q, s: course_scgen(t, q, s)),
    "pertpy 1.0.3 Scgen, batch 32": ("scgen", lambda t, q, s: pertpy_scgen(t, q, s, 32)),
    "pertpy 1.0.3 Scgen, batch 128": ("scgen", lambda t, q, s: pertpy_scgen(t, q, s, 128)),
    f"course_lib Scgen, decoder_batch_norm={OTHER_DECODER['decoder_batch_norm']}": (
        "scgen",
        lambda t, q, s: course_scgen(t, q, s, **OTHER_DECODER),
    ),
    "course_lib Scpram (defaults)": ("scpram", lambda t, q, s: course_scpram(t, q, s)),
    "course_lib Scpram, ot_scope='global' (the paper's)": (
        "scpram",
        lambda t, q, s: course_scpram(t, q, s, ot_scope="global"),
    ),
    "scpram 0.0.3, lr 5e-5, ratio 0.005 (the tutorial's)": (
        "scpram",
        lambda t, q, s: reference_scpram(t, q, s),
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    args = parser.parse_args()
    train, query, truth = held_out_split(kang2018(), TARGET)
    print(f"{train.n_obs} training cells; {os.cpu_count()} CPU cores; load before {os.getloadavg()}")
    rows = []
    for seed in args.seeds:
        predictions = {"mean shift": MeanShiftBaseline(train, seed=seed).predict(target=TARGET)}
        for name, (kind, run) in RUNS.items():
            prediction, train_seconds, predict_seconds = run(train, query, seed)
            predictions[name] = prediction
            rows += [
                {
                    "model": name,
                    "kind": kind,
                    "seed": seed,
                    "metric": "train_seconds",
                    "value": train_seconds,
                },
                {
                    "model": name,
                    "kind": kind,
                    "seed": seed,
                    "metric": "predict_seconds",
                    "value": predict_seconds,
                },
            ]
            print(
                f"seed {seed}: {name}: train {train_seconds:.1f} s, predict {predict_seconds:.1f} s",
                flush=True,
            )
        scores = evaluate(query, truth, predictions, seed=seed, n_ceiling_splits=0, verbose=False)
        scores = scores[scores["metric"].isin(SHOWN)]
        rows += [
            {
                "model": r.model,
                "kind": RUNS.get(r.model, ("baseline",))[0],
                "seed": seed,
                "metric": r.metric,
                "value": r.value,
            }
            for r in scores.itertuples()
        ]
    table = pd.DataFrame(rows)
    means = table.groupby(["model", "metric"], sort=False)["value"].agg(["mean", "std"])
    report = pd.DataFrame(index=pd.Index(dict.fromkeys(table["model"]), name="model"))
    for metric, label in SHOWN.items():
        report[label] = [
            f"{means.loc[(m, metric), 'mean']:.3f} ± {means.loc[(m, metric), 'std']:.3f}"
            for m in report.index
        ]
    ours = {"scgen": "course_lib Scgen (defaults)", "scpram": "course_lib Scpram (defaults)"}
    for metric in ("train_seconds", "predict_seconds"):
        values = []
        for model in report.index:
            kind = RUNS.get(model, ("baseline",))[0]
            if kind not in ours:
                values.append("")
                continue
            seconds = means.loc[(model, metric), "mean"]
            values.append(f"{seconds:.1f} ({seconds / means.loc[(ours[kind], metric), 'mean']:.2f}x)")
        report[metric.replace("_", " ") + " (ratio to ours)"] = values
    with pd.option_context("display.width", 250, "display.max_colwidth", 60):
        print(report.to_string())
    print(f"load after {os.getloadavg()}")


if __name__ == "__main__":
    main()
