"""The benchmark's command line (``python -m course_lib.benchmark``).

::

    python -m course_lib.benchmark                   # the full benchmark -> data/benchmark/kang2018_loto.csv
    python -m course_lib.benchmark --profile small   # the test-sized slice -> ..._small.csv

Paths are relative to the working directory (run it from the repository root to extend the committed
table). Every option is checked, against the data too, before anything trains.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from course_lib.benchmark.grid import BenchmarkGrid, read_profiles
from course_lib.benchmark.runner import run_benchmark
from course_lib.benchmark.summary import summarise
from course_lib.datasets import kang2018, kang2018_file_hashes
from course_lib.experiment import VARIANTS

DEFAULT_RESULTS = Path("data/benchmark/kang2018_loto.csv")
"""Where the command line writes the full benchmark, relative to the working directory."""


def results_path_for(profile: str | None) -> Path:
    """The default output of a profile: ``kang2018_loto.csv``, or ``kang2018_loto_<profile>.csv``."""
    return DEFAULT_RESULTS.with_stem(f"{DEFAULT_RESULTS.stem}_{profile}") if profile else DEFAULT_RESULTS


def parse_grid(argv: Sequence[str] | None) -> tuple[BenchmarkGrid, Path, bool]:
    """The grid, the output path and ``quiet`` of a command line; exits with a message on bad input."""
    parser = argparse.ArgumentParser(
        prog="python -m course_lib.benchmark",
        description="Leave-one-cell-type-out benchmark of the course's models on Kang 2018 (resumable: "
        "grid points already in the output are skipped). The identity and mean-shift baselines and the "
        "noise ceiling are always included. Options left out take the profile's value, else "
        "BenchmarkGrid's default.",
    )
    add = parser.add_argument
    add("--models", nargs="+", help="model names (default: scgen scpram)")
    add("--cell-types", nargs="+", help="held-out types (default: every eligible type)")
    add("--seeds", nargs="+", type=int, help="model seeds, non-negative (default: 0 1 2)")
    add("--variants", nargs="+", choices=VARIANTS, help="data variants (default: both)")
    add("--epochs", dest="n_epochs", type=int, help="training epochs (default: 10)")
    add("--min-cells", type=int, help="eligibility: cells per condition (default: 100)")
    add("--fraction", type=float, help="share of the cells of each group to keep (default: 1)")
    add("--n-top-genes", type=int, help="highly variable genes (default: 2000)")
    add("--hyperparameters", type=json.loads, help='JSON, e.g. \'{"scgen": {"n_layers": 1}}\'')
    add(
        "--profile",
        choices=sorted(read_profiles()),
        help="an execution profile (its fraction, epochs, seeds)",
    )
    add("--output", type=Path, help=f"results CSV (default: {DEFAULT_RESULTS}, or *_<profile>.csv)")
    add("--quiet", action="store_true", help="no progress bar")
    args = vars(parser.parse_args(argv))
    profile, output, quiet = args.pop("profile"), args.pop("output"), args.pop("quiet")
    overrides = {name: value for name, value in args.items() if value is not None}
    try:
        grid = BenchmarkGrid.from_profile(profile, **overrides) if profile else BenchmarkGrid(**overrides)
    except (TypeError, ValueError) as error:
        parser.error(str(error))
    if any(seed < 0 for seed in grid.seeds):
        parser.error(f"--seeds must be non-negative integers, not {list(grid.seeds)}.")
    return grid, output or results_path_for(profile), quiet


def main(argv: Sequence[str] | None = None) -> None:
    """Run the leave-one-cell-type-out benchmark on Kang 2018 and print a summary; exit 1 when a grid
    point failed (a rerun retries it)."""
    grid, output, quiet = parse_grid(argv)
    start = time.perf_counter()
    results = run_benchmark(
        kang2018(), grid, results_path=output, data_files=kang2018_file_hashes(), verbose=not quiet
    )
    print(f"{len(results)} rows in {output} ({time.perf_counter() - start:.0f} s)")
    summary = summarise(results).pivot(index=["model", "variant"], columns="metric", values="mean")
    print(summary.round(3).to_string())
    if results.attrs["provenance"]["runs"][-1]["grid_points_failed"]:
        sys.exit(1)
