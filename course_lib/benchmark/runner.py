"""The local benchmark runner: every grid point in one process, resumable, into one table.

:func:`run_benchmark` runs every point of a :class:`~course_lib.benchmark.BenchmarkGrid` that the
results table does not hold yet with :func:`course_lib.experiment.run_grid_point`, sharing one split
between the points of a (variant, held-out type). After every point the sidecar and then the table
are rewritten atomically, so an interrupted run leaves complete files and a second call with the same
``results_path`` skips the points that are already there. Nothing is written before the first point
finishes, and a sidecar without its table (a run killed between the two writes) counts as no result.
A point whose model fails is recorded in the run's ``grid_points_failed`` and retried by the next run;
the others go on.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import warnings
from collections.abc import Mapping
from itertools import groupby
from pathlib import Path
from typing import Any

import anndata as ad
import pandas as pd
from tqdm.auto import tqdm

from course_lib.benchmark.grid import BenchmarkGrid, as_grid, plan
from course_lib.benchmark.provenance import (
    check_setup,
    content_sha256,
    load_average,
    new_provenance,
    new_run,
    now,
    provenance_path,
)
from course_lib.checks import require_columns, require_nonempty, require_value
from course_lib.experiment import ROW_COLUMNS, GridPointError, run_grid_point
from course_lib.keys import DEFAULT_KEYS, ObsKeys
from course_lib.models import PerturbationModel

KEY_COLUMNS = ("model", "cell_type", "variant", "seed", "hyperparameters")
"""Columns that identify a grid point; a resumed run skips every key already in the results table."""

RESULT_COLUMNS = (*ROW_COLUMNS, "run_id")
"""Columns of the results table, in order."""


class BenchmarkFailures(UserWarning):
    """Some grid points failed (their models are named); a rerun with the same results path retries them."""


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder and an atomic rename.

    Readers (and a resumed run) see either the old file or the new one, never a partial write.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    temporary = Path(temporary)
    try:
        os.chmod(descriptor, 0o644)  # mkstemp creates owner-only files; results are for everyone to read
        with os.fdopen(descriptor, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a results table (CSV) with the column types of :data:`RESULT_COLUMNS`, floats exactly."""
    return pd.read_csv(
        path,
        dtype={"model": str, "cell_type": str, "variant": str, "hyperparameters": str},
        float_precision="round_trip",
    )


def load_results(results_path: str | Path) -> pd.DataFrame:
    """Read a results table written by :func:`run_benchmark`; its provenance is in ``attrs["provenance"]``."""
    results_path = Path(results_path)
    sidecar = provenance_path(results_path)
    missing = [str(path) for path in (results_path, sidecar) if not path.exists()]
    if missing:
        raise FileNotFoundError(
            f"{' and '.join(missing)} not found: a benchmark result is a CSV table with a JSON provenance "
            "sidecar."
        )
    table = read_table(results_path)
    table.attrs["provenance"] = json.loads(sidecar.read_text())
    return table


def benchmark_setup(adata_counts: ad.AnnData, grid: BenchmarkGrid, keys: ObsKeys) -> dict[str, Any]:
    """What makes two results tables comparable: the data, the data settings, the scoring, the keys
    and ``min_cells`` (which decides the types that the response discrimination compares)."""
    return {
        "data_sha256": content_sha256(adata_counts, [keys.condition, keys.cell_type]),
        "n_cells": adata_counts.n_obs,
        "n_genes": adata_counts.n_vars,
        **{
            name: getattr(grid, name)
            for name in ("fraction", "stim_fraction", "n_top_genes", "data_seed", "min_cells")
        },
        "evaluation": json.loads(json.dumps(dict(grid.evaluation), sort_keys=True)),
        "keys": keys.as_dict(),
    }


def open_results(results_path: Path, setup: Mapping[str, Any]) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The rows and the sidecar of earlier runs at ``results_path`` (checked against ``setup``), or an
    empty table and a new sidecar; a sidecar without its table counts as no earlier run."""
    sidecar = provenance_path(results_path)
    if results_path.exists():
        if not sidecar.exists():
            raise FileNotFoundError(
                f"{results_path} has no provenance sidecar {sidecar.name}: it was not written by "
                "run_benchmark, or the sidecar was deleted. Choose another results_path."
            )
        previous = load_results(results_path)
        provenance = previous.attrs.pop("provenance")
        check_setup(provenance, setup, results_path)
        return previous, provenance
    return pd.DataFrame(columns=list(RESULT_COLUMNS)), new_provenance(setup)


def run_benchmark(
    adata_counts: ad.AnnData,
    grid: BenchmarkGrid | Mapping[str, Any] | None = None,
    *,
    results_path: str | Path,
    registry: Mapping[str, type[PerturbationModel]] | None = None,
    data_files: Mapping[str, str] | None = None,
    verbose: bool = True,
    keys: ObsKeys = DEFAULT_KEYS,
) -> pd.DataFrame:
    """Run every point of ``grid`` that ``results_path`` does not hold yet; return the grid's results.

    For each data variant and held-out cell type T the split is made once
    (:meth:`course_lib.experiment.DataSettings.split`: the stimulated cells of T hidden, genes chosen on
    the training cells only) and shared by every model and seed; each grid point then runs with
    :func:`course_lib.experiment.run_grid_point`: the model trained, asked for ``predict(target=T)`` and
    scored against T's real stimulated cells with the point's seed.

    Parameters
    ----------
    adata_counts
        Raw counts in ``.X`` (or ``layers['counts']``), with the condition and cell-type columns of
        ``keys``, e.g. :func:`course_lib.datasets.kang2018`.
    grid
        A :class:`~course_lib.benchmark.BenchmarkGrid`, a mapping of its fields, or ``None`` for the
        defaults.
    results_path
        CSV table to extend; its provenance goes to the ``.json`` sidecar beside it
        (:func:`~course_lib.benchmark.provenance_path`). Existing results must come from the same data
        and data settings (checked before anything runs); their grid points are skipped.
    registry
        Model name -> class with the course's model interface; default :data:`course_lib.models.MODELS`.
    data_files
        sha256 of the files the data came from, recorded in the provenance next to the hash of the
        data's content (the command line passes :func:`course_lib.datasets.kang2018_file_hashes`).
    verbose
        Show a progress bar over the grid points.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`RESULT_COLUMNS`: the rows of this grid's points, from earlier runs and this one.
        ``hyperparameters`` is the JSON of the settings that built and trained the model (``n_epochs``
        included); ``train_seconds``/``predict_seconds`` are wall-clock times of that grid point.
        Points whose model failed are missing; a :class:`BenchmarkFailures` warning names them.
    """
    grid = as_grid(grid)
    require_nonempty(adata_counts)
    require_columns(adata_counts, keys)
    for value in (keys.control, keys.stimulated):
        require_value(adata_counts, keys.condition, value)
    points, eligible = plan(adata_counts, grid, registry=registry, keys=keys)
    results_path = Path(results_path)
    setup = benchmark_setup(adata_counts, grid, keys)
    table, provenance = open_results(results_path, setup)
    done = set(table[list(KEY_COLUMNS)].itertuples(index=False, name=None))
    pending = [point for point in points if point.key not in done]
    record = new_run(provenance, grid=grid.as_json(), data_files=data_files or {}, n_points=len(pending))
    sidecar = provenance_path(results_path)
    started = time.perf_counter()

    def save() -> None:
        record["wall_seconds"] = round(time.perf_counter() - started, 1)
        write_atomic(sidecar, json.dumps(provenance, indent=2))
        write_atomic(results_path, table.to_csv(index=False))

    with tqdm(total=len(pending), desc="benchmark", unit="point", disable=not verbose) as progress:
        for (variant, cell_type), group in groupby(
            pending, key=lambda point: (point.variant, point.cell_type)
        ):
            split = grid.data.split(adata_counts, cell_type, variant, keys=keys)
            for point in group:
                progress.set_postfix_str(point.describe())
                try:
                    rows = run_grid_point(
                        adata_counts,
                        point,
                        evaluation=grid.evaluation,
                        compare_types=eligible,
                        split=split,
                        keys=keys,
                    )
                except GridPointError as error:
                    record["grid_points_failed"].append({"point": list(point.key), "error": str(error)})
                else:
                    rows["run_id"] = record["run_id"]
                    table = pd.concat([table, rows], ignore_index=True) if len(table) else rows
                    record["grid_points_done"] += 1
                    save()
                progress.update()
    record["finished"] = now()
    record["load_average_at_end"] = load_average()
    if len(table):
        save()
    failed = record["grid_points_failed"]
    if failed:
        warnings.warn(
            f"{len(failed)} grid point(s) failed and were not recorded as done (a rerun retries them):\n"
            + "\n".join(f"  {failure['error']}" for failure in failed),
            BenchmarkFailures,
            stacklevel=2,
        )
    wanted = {point.key for point in points}
    table = table[[key in wanted for key in table[list(KEY_COLUMNS)].itertuples(index=False, name=None)]]
    table = table.reset_index(drop=True)
    table.attrs["provenance"] = provenance
    return table
