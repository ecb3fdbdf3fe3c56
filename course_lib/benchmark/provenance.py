"""Where a benchmark result came from: the data, the settings, the software, the machine and the dates.

Every results table has a JSON sidecar (:func:`provenance_path`) with a ``setup`` (what makes two
tables comparable: the data's content hash and the data settings) and one record per run (dates, wall
seconds, grid points done and failed, versions, machine). :func:`provenance_table` shows the runs.
"""

from __future__ import annotations

import hashlib
import os
import platform
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

import course_lib

RECORDED_PACKAGES = ("torch", "numpy", "scipy", "pandas", "anndata", "scanpy", "pot", "optuna")
"""Packages whose versions every run records."""

DESCRIPTION = (
    "Benchmark results written by course_lib.benchmark; one row per grid point (model, hyperparameters, "
    "held-out cell type, data variant, seed) and metric. Metric definitions: course_lib.metrics. run_id "
    "points into 'runs' below."
)


def content_sha256(adata: ad.AnnData, columns: Sequence[str], *, counts_layer: str = "counts") -> str:
    """sha256 over the counts that preprocessing reads, cell and gene names and the ``columns`` of obs.

    The counts are ``layers[counts_layer]`` when present, else ``.X`` (as in
    :func:`course_lib.preprocessing.preprocess`), in CSR form.
    """
    matrix = sp.csr_matrix(adata.layers[counts_layer] if counts_layer in adata.layers else adata.X)
    digest = hashlib.sha256()
    for part in (matrix.data, matrix.indices, matrix.indptr):
        digest.update(np.ascontiguousarray(part).tobytes())
    for labels in (adata.obs_names, adata.var_names, *(adata.obs[column].astype(str) for column in columns)):
        digest.update("\n".join(labels).encode())
    return digest.hexdigest()


def provenance_path(results_path: str | Path) -> Path:
    """The JSON sidecar of a results table: same name, ``.json`` suffix."""
    return Path(results_path).with_suffix(".json")


def versions() -> dict[str, str]:
    """Versions of Python, course_lib and :data:`RECORDED_PACKAGES` ("not installed" where absent)."""

    def installed(package: str) -> str:
        try:
            return version(package)
        except PackageNotFoundError:
            return "not installed"

    return {
        "course_lib": course_lib.__version__,
        "python": platform.python_version(),
        **{name: installed(name) for name in RECORDED_PACKAGES},
    }


def torch_threads() -> int | None:
    """torch's intra-op thread count when torch is imported (it changes the last digits of a model)."""
    torch = sys.modules.get("torch")
    return torch.get_num_threads() if torch is not None else None


def load_average() -> list[float] | None:
    """The machine's 1, 5 and 15-minute load averages (None where the system does not report them):
    the recorded seconds of a run are wall-clock times, which other jobs on the machine lengthen."""
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except OSError:
        return None


def now() -> str:
    """The current UTC time in ISO format, to the second."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def new_provenance(setup: Mapping[str, Any]) -> dict[str, Any]:
    """An empty sidecar for results computed with ``setup``."""
    return {"description": DESCRIPTION, "setup": dict(setup), "runs": []}


def new_run(
    provenance: dict[str, Any], *, grid: Mapping[str, Any], data_files: Mapping[str, str], n_points: int
) -> dict[str, Any]:
    """Append and return a record of a run that starts now (``finished`` stays None until it ends)."""
    record = {
        "run_id": 1 + max((run["run_id"] for run in provenance["runs"]), default=0),
        "started": now(),
        "finished": None,
        "versions": versions(),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch_threads(),
        "load_average_at_start": load_average(),
        "load_average_at_end": None,
        "data_files_sha256": dict(data_files),
        "grid": dict(grid),
        "grid_points_to_run": n_points,
        "grid_points_done": 0,
        "grid_points_failed": [],
        "wall_seconds": 0.0,
    }
    provenance["runs"].append(record)
    return record


def check_setup(provenance: Mapping[str, Any], setup: Mapping[str, Any], results_path: Path) -> None:
    """Raise unless earlier results at ``results_path`` were computed with the same ``setup``."""
    earlier = provenance.get("setup", {})
    if earlier == dict(setup):
        return
    differ = sorted(key for key in {*earlier, *setup} if earlier.get(key) != setup.get(key))
    raise ValueError(
        f"{results_path} holds results computed with other data or settings (differing: {differ}); resuming "
        "would mix them. Choose another results_path, or delete the file and its .json sidecar."
    )


def provenance_table(provenance: Mapping[str, Any]) -> pd.DataFrame:
    """One row per run recorded in a results sidecar: dates, wall seconds, grid points, machine, versions.

    A run whose ``finished`` is empty was interrupted; the grid points it finished are kept in the table
    and a later run with the same ``results_path`` resumes after them. ``grid_points_failed`` counts
    the points whose model failed (they are retried by the next run). ``load_at_start`` and
    ``load_at_end`` are the machine's one-minute load averages: a load above the number of cores means
    other jobs shared the machine, and the recorded seconds are longer than on an idle one.
    """
    rows = [
        {
            "run_id": run["run_id"],
            "started": run.get("started"),
            "finished": run.get("finished"),
            "wall_seconds": run.get("wall_seconds"),
            "grid_points_done": run.get("grid_points_done"),
            "grid_points_to_run": run.get("grid_points_to_run"),
            "grid_points_failed": len(run.get("grid_points_failed", [])),
            "cpu_count": run.get("cpu_count"),
            "torch_threads": run.get("torch_threads"),
            "load_at_start": (run.get("load_average_at_start") or [None])[0],
            "load_at_end": (run.get("load_average_at_end") or [None])[0],
            **run.get("versions", {}),
        }
        for run in provenance.get("runs", [])
    ]
    return pd.DataFrame(rows).set_index("run_id") if rows else pd.DataFrame(columns=["run_id"])
