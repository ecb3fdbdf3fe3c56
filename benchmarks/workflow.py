"""What the Snakemake workflow costs next to the local runner, and what it gains with parallel jobs.

Run by hand from the repository root (not part of the test suite)::

    python benchmarks/workflow.py            # the small grid: local runner, Snakemake with 1 and 2 jobs
    python benchmarks/workflow.py --full     # ... and the full grid through Snakemake with --cores 2

The small grid is the small profile's (15% of the cells, 2 epochs, 1 seed) with two held-out types
(CD4 T cells, B cells) and the balanced data: 10 independent grid points (the noise ceiling, the two
baselines, scGen and scPRAM per type). It runs three times from scratch, each with one torch thread
per process: the local runner (``python -m course_lib.benchmark``, one process), the workflow with
``--cores 1`` (one job at a time) and with ``--cores 2`` (two jobs at once). The table gives each wall
time and its ratio to the local runner, then the cost of one job: its own compute (the ``wall_seconds``
its result file records: split, training, prediction, scoring) against what the workflow adds around
it (a Python process that imports the package, reads the data and writes its file, and Snakemake's
scheduling), measured as the one-job run's wall time per job minus that compute.

``--full`` then times the full grid (the committed benchmark's: 84 models and their baselines and
noise ceilings) through the workflow with ``--cores 2`` in a scratch folder, next to the wall time that
the committed table's sidecar records for the local runner (47 minutes on the same 2-core machine).
It takes about as long as that; nothing is written into the repository.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SMALL = {"cell_types": ["CD4 T cells", "B cells"], "variants": ["balanced"]}
"""The small grid: the small profile on two held-out types, balanced data."""

COMMITTED = ROOT / "data" / "benchmark" / "kang2018_loto.json"


def timed(command: list[str], *, cwd: Path, env: dict[str, str]) -> float:
    """Run ``command`` and return its wall time in seconds; stop with its output when it fails."""
    start = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"{' '.join(command[:6])} ... failed:\n{result.stdout[-3000:]}{result.stderr[-3000:]}")
    return seconds


def workflow_config(folder: Path, *, profile: str | None, grid: dict) -> None:
    """A config for the workflow in ``folder``: Kang 2018, the grid, one thread per job."""
    config = {
        "data": "kang2018",
        "profile": profile,
        "results": "results/table.csv",
        "grid": grid,
        "resources": {"threads": 1, "mem_mb": 4000, "runtime": 120},
    }
    (folder / "config.yaml").write_text(json.dumps(config))  # JSON is YAML


def snakemake(folder: Path, cores: int, env: dict[str, str]) -> float:
    """Wall time of the workflow in ``folder`` with ``cores`` cores (from scratch)."""
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "workflow" / "Snakefile")]
    command += ["--configfile", "config.yaml", "--cores", str(cores), "--quiet", "all"]
    return timed(command, cwd=folder, env=env)


def point_seconds(folder: Path) -> list[float]:
    """The compute of every grid point of a workflow run (``wall_seconds`` of its result files)."""
    files = sorted((folder / "results" / "table.points").glob("*.json"))
    return [json.loads(path.read_text())["wall_seconds"] for path in files]


def small_grid(scratch: Path, env: dict[str, str]) -> None:
    """Time the small grid three ways and print the table."""
    local_dir = scratch / "local"
    local_dir.mkdir()
    command = [sys.executable, "-m", "course_lib.benchmark", "--profile", "small", "--quiet"]
    command += ["--cell-types", *SMALL["cell_types"], "--variants", *SMALL["variants"]]
    local = timed([*command, "--output", "table.csv"], cwd=local_dir, env=env)
    walls, computes = {}, {}
    for cores in (1, 2):
        folder = scratch / f"snakemake{cores}"
        folder.mkdir()
        workflow_config(folder, profile="small", grid=SMALL)
        walls[cores] = snakemake(folder, cores, env)
        computes[cores] = point_seconds(folder)
    n_points = len(computes[1])
    compute = statistics.mean(computes[1])
    # The one-job run executes the data rule, every point, the merge and the crate one after another.
    per_job = walls[1] / (n_points + 3)
    rows = [
        ("local runner (1 process)", local, 1.0),
        ("Snakemake, 1 job at a time (--cores 1)", walls[1], walls[1] / local),
        ("Snakemake, 2 jobs at once (--cores 2)", walls[2], walls[2] / local),
    ]
    print(f"Small grid: {n_points} grid points (small profile, {', '.join(SMALL['cell_types'])}, balanced),")
    print("one torch thread per process, 2 CPU cores.\n")
    print(f"{'run':<42} {'wall s':>8} {'/ local':>8}")
    for name, seconds, ratio in rows:
        print(f"{name:<42} {seconds:8.1f} {ratio:8.2f}")
    print(f"{'2 jobs against 1 job':<42} {'':>8} {walls[2] / walls[1]:8.2f}")
    spread = f"{min(computes[1]):.1f} to {max(computes[1]):.1f} s"
    print(f"\nPer job (the one-job run): {per_job:.1f} s of wall time, of which {compute:.1f} s is the grid")
    print(f"point's own compute (mean; {spread}) and {per_job - compute:.1f} s the workflow's overhead:")
    print("process start and imports, reading the data, writing the file, scheduling.")


def full_grid(scratch: Path, env: dict[str, str]) -> None:
    """Time the full grid through the workflow with 2 cores, next to the committed local run."""
    folder = scratch / "full"
    folder.mkdir()
    workflow_config(folder, profile=None, grid={})
    seconds = snakemake(folder, 2, env)
    runs = json.loads(COMMITTED.read_text())["runs"]
    committed = sum(run.get("wall_seconds") or 0 for run in runs)
    n_points = len(point_seconds(folder))
    print(f"\nFull grid: {n_points} grid points through Snakemake with --cores 2: {seconds / 60:.1f} min;")
    print(f"the committed local run (one process, {COMMITTED.name}): {committed / 60:.1f} min.")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--full", action="store_true", help="also time the full grid (about 50 minutes)")
    args = parser.parse_args()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    subprocess.run([sys.executable, "-m", "course_lib.datasets"], check=True, env=env, capture_output=True)
    before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="workflow-benchmark-") as scratch:
        small_grid(Path(scratch), env)
        if args.full:
            full_grid(Path(scratch), env)
    # Other processes on the machine take cores from the jobs: then two jobs cannot run at once.
    print(f"\nload average (1 min) before: {before:.1f}, after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
