"""What the workflow tests share: a tiny grid on the synthetic data, its config and a Snakemake call."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml
from conftest import SMALL_GRID

from course_lib.benchmark import load_results, run_benchmark
from course_lib.benchmark.points import DataSource
from course_lib.datasets import synthetic_perturbation

ROOT = Path(__file__).resolve().parents[1]
SNAKEFILE = ROOT / "workflow" / "Snakefile"
SNAKEMAKE = [sys.executable, "-m", "snakemake", "--snakefile", str(SNAKEFILE), "--configfile", "config.yaml"]
TIMING = ["train_seconds", "predict_seconds", "run_id"]
"""Columns that differ between two runs of the same grid."""


def synthetic_counts():
    """The synthetic data of the ``counts`` fixture: 900 cells, three types, raw counts."""
    return synthetic_perturbation(n_cells=900, n_genes=150, n_cell_types=3, seed=3)


def write_workflow_config(folder: Path, *, grid: dict | None = None, **settings) -> Path:
    """Write the synthetic data and a config for the tiny grid (``grid`` laid over ``SMALL_GRID``) into
    ``folder``; return the data file."""
    data = folder / "synthetic.h5ad"
    if not data.exists():
        synthetic_counts().write_h5ad(data)
    config = {
        "data": str(data),
        "results": "results/tiny.csv",
        "grid": {
            **{key: list(value) if isinstance(value, tuple) else value for key, value in SMALL_GRID.items()}
        },
        "resources": {"threads": 1, "mem_mb": 1000, "runtime": 10},
        **settings,
    }
    config["grid"].update(grid or {})
    (folder / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return data


def run_snakemake(folder: Path, *arguments: str, env: dict | None = None, timeout: float = 600, **options):
    """Run the workflow in ``folder`` with ``arguments``; return the finished process (output captured)."""
    return subprocess.run(
        [*SNAKEMAKE, *arguments],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        **options,
    )


def local_rows(folder: Path, grid: dict | None = None):
    """The local runner's table of the same grid on the same data (written to ``folder/local.csv``)."""
    data = folder / "synthetic.h5ad"
    inputs = DataSource.parse(data).input_files()
    files = {record["name"]: record["sha256"] for record in inputs}
    run_benchmark(
        synthetic_counts(),
        {**SMALL_GRID, **(grid or {})},
        results_path=folder / "local.csv",
        data_files=files,
        verbose=False,
    )
    return load_results(folder / "local.csv")
