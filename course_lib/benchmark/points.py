"""One grid point per job: the unit that a workflow engine runs, and the merge of its result files.

The local runner (:func:`~course_lib.benchmark.run_benchmark`) runs every point of a grid in one
process. A workflow engine (the Snakemake workflow in ``workflow/``, see the book page "Running the
benchmark at scale") runs the same points as independent jobs instead, through the functions here:

- :class:`DataSource`: where the raw counts come from (Kang 2018, or an ``.h5ad`` file), the input
  files with their sha256 (:meth:`DataSource.input_files`), and the cells' labels for planning without
  reading the counts (:meth:`DataSource.obs`);
- :func:`plan_jobs`: every check of :func:`~course_lib.benchmark.plan` on the labels alone, so that a
  workflow fails on bad input before any job runs, and a stable file name for every point
  (:func:`point_id`);
- :func:`run_point`: one grid point with :func:`course_lib.experiment.run_grid_point`, written as one
  result file (its rows, the data setup, times, versions, host), atomically;
- :func:`merge_points`: the result files of a grid merged into the table and JSON sidecar that
  :func:`~course_lib.benchmark.run_benchmark` writes for the same grid: the same rows in the same order,
  the same numbers.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import re
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import anndata as ad
import pandas as pd

from course_lib.benchmark.grid import BenchmarkGrid, as_grid, plan
from course_lib.benchmark.provenance import (
    check_setup,
    load_average,
    new_provenance,
    new_run,
    now,
    provenance_path,
    torch_threads,
    versions,
)
from course_lib.benchmark.runner import RESULT_COLUMNS, benchmark_setup, write_atomic
from course_lib.checks import require_value
from course_lib.datasets import (
    CELL_TYPE_TABLE,
    CELL_TYPES,
    PACKAGE_DATA,
    data_dir,
    kang2018,
    kang2018_cell_types,
    kang2018_counts,
    read_registry,
    sha256sum,
)
from course_lib.experiment import ROW_COLUMNS, GridPoint, run_grid_point
from course_lib.keys import DEFAULT_KEYS, ObsKeys
from course_lib.models import PerturbationModel

KANG2018 = "kang2018"
"""The name of the course's data set in a workflow's config (any other value is an ``.h5ad`` path)."""

KANG2018_GEO = "https://www.ncbi.nlm.nih.gov/geo/query/acc.cgi?acc=GSE96583"
"""The public record of the Kang 2018 data: the identifier of its files in a results crate."""

POINT_FORMAT = 1
"""Version of the result-file format written by :func:`run_point`."""

FLOAT_COLUMNS = ("value", "ci_low", "ci_high", "train_seconds", "predict_seconds")
"""Columns of the result rows that hold numbers with a decimal point (NaN where missing)."""


@dataclass(frozen=True)
class DataSource:
    """Where the raw counts of a benchmark come from: ``"kang2018"`` or the path of an ``.h5ad`` file.

    An ``.h5ad`` file holds raw counts in ``.X`` or ``layers['counts']`` and the condition and
    cell-type columns of the keys in ``obs``, as :func:`course_lib.datasets.synthetic_perturbation`
    writes them.
    """

    name: str

    @classmethod
    def parse(cls, value: str | os.PathLike) -> DataSource:
        """The source named by ``value``; raises unless it is ``"kang2018"`` or an existing ``.h5ad``."""
        value = str(value)
        if value == KANG2018:
            return cls(KANG2018)
        path = Path(value)
        if path.suffix != ".h5ad" or not path.is_file():
            raise ValueError(
                f"data must be {KANG2018!r} or the path of an existing .h5ad file with raw counts, not "
                f"{value!r}."
            )
        return cls(str(path.resolve()))

    @property
    def is_kang2018(self) -> bool:
        """Whether this is the course's data set (fetched and verified by the package)."""
        return self.name == KANG2018

    def counts(self, *, keys: ObsKeys = DEFAULT_KEYS) -> ad.AnnData:
        """The raw counts with their labels (Kang 2018 is fetched and verified on first use)."""
        return kang2018(keys=keys) if self.is_kang2018 else ad.read_h5ad(self.name)

    def obs(self, *, keys: ObsKeys = DEFAULT_KEYS) -> ad.AnnData:
        """The cells' labels without their counts (an AnnData with no genes): enough to plan a grid.

        For Kang 2018 they come from the cell-type table that ships with the package, so that a
        workflow can check its grid before the data are fetched.
        """
        if self.is_kang2018:
            table = kang2018_cell_types()
            labels = {"control": keys.control, "stimulated": keys.stimulated}
            obs = pd.DataFrame(
                {
                    keys.condition: pd.Categorical(
                        table["condition"].map(labels), [keys.control, keys.stimulated]
                    ),
                    keys.cell_type: pd.Categorical(table["cell_type"], CELL_TYPES),
                },
                index=table.index.astype(str),
            )
            return ad.AnnData(obs=obs)
        backed = ad.read_h5ad(self.name, backed="r")
        try:
            return ad.AnnData(obs=backed.obs.copy())
        finally:
            backed.file.close()

    def input_files(self) -> list[dict[str, Any]]:
        """The files the counts are read from: ``name``, ``path``, ``sha256``, ``bytes`` and, for files
        with a public record, its ``uri``. Kang 2018 is fetched and verified first."""
        if not self.is_kang2018:
            path = Path(self.name)
            return [file_record(path)]
        kang2018_counts()  # fetches and verifies the files once
        folder = data_dir() / KANG2018
        records = []
        for member, spec in read_registry()[KANG2018]["members"].items():
            path = folder / Path(member).name
            record = file_record(path, sha256=spec["sha256"])
            record["uri"] = f"{KANG2018_GEO}#{path.name}"
            record["description"] = (
                f"Kang et al. 2018 ({spec['condition']} cells): member {member} of the wheel "
                f"{read_registry()[KANG2018]['wheel']['filename']} on the Python package index"
            )
            records.append(record)
        table = PACKAGE_DATA / CELL_TYPE_TABLE
        record = {"name": CELL_TYPE_TABLE, "path": str(table), **file_hashes(Path(str(table)))}
        record["description"] = "The course's cell types of the Kang 2018 cells (ships with course_lib)"
        records.append(record)
        return records


def file_hashes(path: Path) -> dict[str, Any]:
    """``sha256`` and ``bytes`` of a file."""
    return {"sha256": sha256sum(path), "bytes": path.stat().st_size}


def file_record(path: Path, *, sha256: str | None = None) -> dict[str, Any]:
    """``name``, ``path``, ``sha256`` and ``bytes`` of a file (``sha256`` computed unless given)."""
    hashes = file_hashes(path) if sha256 is None else {"sha256": sha256, "bytes": path.stat().st_size}
    return {"name": path.name, "path": str(path.resolve()), **hashes}


def point_id(point: GridPoint) -> str:
    """A stable, file-safe name of a grid point: variant, held-out type, model, seed and a short hash of
    the whole key (hyperparameters included), e.g. ``balanced_CD4-T-cells_scgen_seed0_3f2a9c1b0d``."""
    digest = hashlib.sha256(json.dumps(list(point.key)).encode()).hexdigest()[:10]
    cell_type = re.sub(r"[^A-Za-z0-9]+", "-", point.cell_type).strip("-")
    return f"{point.variant}_{cell_type}_{point.spec.name}_seed{point.seed}_{digest}"


@dataclass(frozen=True)
class BenchmarkJobs:
    """A checked grid as jobs: every point under its :func:`point_id`, in the order of
    :func:`~course_lib.benchmark.plan`, and the eligible types that the response discrimination compares."""

    grid: BenchmarkGrid
    data: DataSource
    points: dict[str, GridPoint]
    eligible: list[str]

    def point(self, identifier: str) -> GridPoint:
        """The grid point named ``identifier``; raises for a name that is not in the grid."""
        if identifier not in self.points:
            raise KeyError(
                f"no grid point {identifier!r} in this grid; its {len(self.points)} points are named like "
                f"{next(iter(self.points))!r} (python -m course_lib.benchmark points lists them)."
            )
        return self.points[identifier]


def plan_jobs(
    grid: BenchmarkGrid | Mapping[str, Any],
    data: DataSource | str,
    *,
    registry: Mapping[str, type[PerturbationModel]] | None = None,
    keys: ObsKeys = DEFAULT_KEYS,
) -> BenchmarkJobs:
    """Check ``grid`` against the labels of ``data`` and the registry and name its points.

    Runs every check of :func:`~course_lib.benchmark.plan` (unknown models, hyperparameters, cell
    types, variants, seeds, evaluation options) on the cells' labels only (:meth:`DataSource.obs`),
    so that it is fast enough for a workflow to call when it starts.
    """
    grid = as_grid(grid)
    data = data if isinstance(data, DataSource) else DataSource.parse(data)
    labels = data.obs(keys=keys)
    for value in (keys.control, keys.stimulated):
        require_value(labels, keys.condition, value, what=f"the data {data.name}")
    points, eligible = plan(labels, grid, registry=registry, keys=keys)
    named = {point_id(point): point for point in points}
    return BenchmarkJobs(grid=grid, data=data, points=named, eligible=eligible)


def rows_as_json(rows: pd.DataFrame) -> dict[str, Any]:
    """Result rows as ``{"columns": [...], "data": [[...], ...]}``, floats exactly and NaN as null."""
    data = [
        [None if isinstance(value, float) and math.isnan(value) else value for value in row]
        for row in rows[list(ROW_COLUMNS)].astype(object).itertuples(index=False, name=None)
    ]
    return {"columns": list(ROW_COLUMNS), "data": data}


def rows_from_json(stored: Mapping[str, Any]) -> pd.DataFrame:
    """The rows of :func:`rows_as_json`, with the column types of a results table."""
    rows = pd.DataFrame(stored["data"], columns=stored["columns"])
    rows = rows.astype({column: float for column in FLOAT_COLUMNS})
    return rows.astype({"seed": int})


def run_point(
    jobs: BenchmarkJobs,
    identifier: str,
    output: str | Path,
    *,
    counts: ad.AnnData | None = None,
    keys: ObsKeys = DEFAULT_KEYS,
) -> pd.DataFrame:
    """Run the grid point ``identifier`` of ``jobs`` and write its result file ``output`` (JSON).

    The point runs with :func:`course_lib.experiment.run_grid_point` exactly as in the local runner
    (the grid's data settings and evaluation options, the grid's eligible types for the response
    discrimination). The file holds the rows, the data setup (as in the sidecar), the start and end
    time, the versions, the host and the thread count. It is written atomically once the point is
    done: a job that fails or is killed leaves no file. A model failure raises
    :class:`course_lib.experiment.GridPointError`.

    Returns
    -------
    pandas.DataFrame
        The point's rows (columns :data:`course_lib.experiment.ROW_COLUMNS`).
    """
    point = jobs.point(identifier)
    counts = jobs.data.counts(keys=keys) if counts is None else counts
    setup = benchmark_setup(counts, jobs.grid, keys)
    started, clock, load = now(), time.perf_counter(), load_average()
    rows = run_grid_point(
        counts,
        point,
        data=jobs.grid.data,
        evaluation=jobs.grid.evaluation,
        compare_types=jobs.eligible,
        keys=keys,
    )
    record = {
        "format": POINT_FORMAT,
        "point": identifier,
        "key": list(point.key),
        "setup": setup,
        "started": started,
        "finished": now(),
        "wall_seconds": round(time.perf_counter() - clock, 3),
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch_threads(),
        "load_average_at_start": load,
        "load_average_at_end": load_average(),
        "versions": versions(),
        "rows": rows_as_json(rows),
    }
    write_atomic(Path(output), json.dumps(record, indent=1))
    return rows


def read_point(path: str | Path) -> dict[str, Any]:
    """A result file of :func:`run_point`; raises with the file's name when it is not one."""
    path = Path(path)
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        problem = str(error)
    else:
        if isinstance(record, dict) and record.get("format") == POINT_FORMAT:
            return record
        problem = f"not of format {POINT_FORMAT}"
    raise ValueError(f"{path} is not a grid point's result file ({problem}); delete it and rerun its job.")


def merge_points(
    jobs: BenchmarkJobs,
    files: Sequence[str | Path],
    results_path: str | Path,
    *,
    data_files: Mapping[str, str] | None = None,
    engine: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """Merge the result files of every point of ``jobs`` into a results table and its JSON sidecar.

    The table has the columns, rows and row order that :func:`~course_lib.benchmark.run_benchmark`
    writes for the same grid, and its sidecar the same structure: the data ``setup`` (checked to be the
    same in every file) and one run, whose ``started`` and ``finished`` are the first start and the
    last end of the points (and the load averages then), with the points' versions, hosts and thread
    counts. ``engine`` (e.g. the
    workflow engine and its version) is recorded in the run as ``workflow``.

    Raises when a point of the grid has no file, a file belongs to no point of the grid, or two files
    were computed with other data or settings.
    """
    records = {}
    for path in files:
        record = read_point(path)
        if record["point"] not in jobs.points:
            raise ValueError(f"{path} holds grid point {record['point']!r}, which is not in this grid.")
        records[record["point"]] = (Path(path), record)
    missing = [identifier for identifier in jobs.points if identifier not in records]
    if missing:
        raise ValueError(
            f"{len(missing)} grid point(s) have no result file, e.g. {missing[:3]}; run them first."
        )
    (first_path, first), *others = [records[identifier] for identifier in jobs.points]
    for path, record in others:
        check_setup({"setup": first["setup"]}, record["setup"], path)
    ordered = [record for _, record in (records[identifier] for identifier in jobs.points)]
    provenance = new_provenance(first["setup"])
    run = new_run(provenance, grid=jobs.grid.as_json(), data_files=data_files or {}, n_points=len(ordered))
    first_point = min(ordered, key=lambda record: record["started"])
    last_point = max(ordered, key=lambda record: record["finished"])
    started, finished = first_point["started"], last_point["finished"]
    threads = sorted({record["torch_threads"] for record in ordered}, key=str)
    run.update(
        started=started,
        finished=finished,
        wall_seconds=round(
            (datetime.fromisoformat(finished) - datetime.fromisoformat(started)).total_seconds(), 1
        ),
        grid_points_done=len(ordered),
        load_average_at_start=first_point.get("load_average_at_start"),
        load_average_at_end=last_point.get("load_average_at_end"),
        versions=first["versions"],
        torch_threads=threads[0] if len(threads) == 1 else threads,
        hosts=sorted({record["host"] for record in ordered}),
        point_seconds=round(sum(record["wall_seconds"] for record in ordered), 1),
    )
    run["command"] = "python -m course_lib.benchmark merge"
    if engine:
        run["workflow"] = dict(engine)
    table = pd.concat([rows_from_json(record["rows"]) for record in ordered], ignore_index=True)
    table["run_id"] = run["run_id"]
    table = table[list(RESULT_COLUMNS)]
    results_path = Path(results_path)
    write_atomic(provenance_path(results_path), json.dumps(provenance, indent=2))
    write_atomic(results_path, table.to_csv(index=False))
    table.attrs["provenance"] = provenance
    return table
