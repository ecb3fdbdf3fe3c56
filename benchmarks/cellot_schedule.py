"""CellOT's validation curve and the cost of an outer step on the course's data: the measurement behind
the default schedule of :class:`course_lib.models.Cellot`.

    python benchmarks/cellot_schedule.py                 # 4,000 outer steps, CD4 T cells held out, seed 0
    python benchmarks/cellot_schedule.py --steps 1000 --batch-size 64

Prints the validation energy distance every ``--eval-every`` outer steps, the seconds per outer step,
what the default schedule and the reference schedule (100,000 steps) would take at that rate, and the
scores of the best checkpoint against the mean-shift baseline.
"""

from __future__ import annotations

import argparse
import os
import time

import pandas as pd

from course_lib.datasets import kang2018
from course_lib.experiment import held_out_split
from course_lib.metrics import evaluate
from course_lib.models import Cellot, MeanShiftBaseline

DEFAULT_STEPS = Cellot.hyperparameters()["n_steps"].default
REFERENCE_STEPS = 100_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--cell-type", default="CD4 T cells")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    train, query, truth = held_out_split(kang2018(), args.cell_type)
    print(
        f"{train.n_obs} training cells, {query.n_obs} query cells; "
        f"{os.cpu_count()} CPU cores, load {os.getloadavg()}"
    )
    model = Cellot(train, seed=args.seed, target=args.cell_type)
    start = time.perf_counter()
    model.train(n_steps=args.steps, batch_size=args.batch_size, eval_every=args.eval_every, verbose=True)
    seconds = time.perf_counter() - start
    per_step = seconds / args.steps
    with pd.option_context("display.width", 120, "display.max_rows", 200):
        print(model.history.round(4).to_string(index=False))
    best = model.history.loc[model.history["val_energy_distance"].idxmin()]
    print(
        f"\nbest evaluation: step {int(best['step'])}, "
        f"validation energy distance {best['val_energy_distance']:.4f}"
    )
    print(
        f"{seconds:.1f} s for {args.steps} outer steps of {args.batch_size} cells: {per_step:.4f} s per step"
    )
    print(f"at this rate the default schedule ({DEFAULT_STEPS} steps) takes {DEFAULT_STEPS * per_step:.0f} s")
    print(f"and the reference schedule ({REFERENCE_STEPS:,} steps) {REFERENCE_STEPS * per_step / 60:.0f} min")
    predictions = {
        "cellot": model.predict(),
        "mean_shift": MeanShiftBaseline(train, seed=args.seed).predict(target=args.cell_type),
    }
    scores = evaluate(query, truth, predictions, seed=args.seed, n_ceiling_splits=0, verbose=False)
    shown = ["r2_mean_all", "delta_pearson_top100", "delta_r2_top100", "e_distance", "mv_kde"]
    print(scores.pivot(index="metric", columns="model", values="value").loc[shown].round(3).to_string())


if __name__ == "__main__":
    main()
