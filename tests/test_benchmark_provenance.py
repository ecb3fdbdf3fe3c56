"""Where a result came from: the sidecar's setup and run records, and the table of runs."""

from __future__ import annotations

import json

import pytest
from conftest import BASELINE_REGISTRY, SMALL_GRID

import course_lib
from course_lib.benchmark import content_sha256, provenance_path, provenance_table, run_benchmark


def run(counts, path, **grid):
    return run_benchmark(
        counts,
        {**SMALL_GRID, "cell_types": ["type_0"], **grid},
        results_path=path,
        registry=BASELINE_REGISTRY,
        verbose=False,
        data_files={"counts.h5ad": "ab" * 32},
    )


def test_provenance_records_versions_data_and_grid(counts, tmp_path):
    path = tmp_path / "r.csv"
    table = run(counts, path)
    provenance = json.loads(provenance_path(path).read_text())
    assert provenance == table.attrs["provenance"]
    setup = provenance["setup"]
    assert (
        setup["data_sha256"] == content_sha256(counts, ["condition", "cell_type"])
        and setup["n_cells"] == counts.n_obs
    )
    assert setup["keys"]["condition"] == "condition" and setup["min_cells"] == SMALL_GRID["min_cells"]
    (record,) = provenance["runs"]
    assert record["versions"]["course_lib"] == course_lib.__version__
    assert {"python", "torch", "numpy", "scanpy", "optuna"} <= set(record["versions"])
    assert (
        record["data_files_sha256"] == {"counts.h5ad": "ab" * 32} and record["finished"] >= record["started"]
    )
    assert record["grid"]["cell_types"] == ["type_0"] and record["grid_points_done"] == 3
    assert record["grid_points_failed"] == [] and set(table["run_id"]) == {1}


def test_content_hash_sees_counts_names_and_labels(counts):
    reference = content_sha256(counts, ["condition", "cell_type"])
    relabelled = counts.copy()
    relabelled.obs["cell_type"] = relabelled.obs["cell_type"].cat.rename_categories(lambda name: name.upper())
    changed = counts.copy()
    changed.layers["counts"][1, 2] += 1
    hashes = {content_sha256(data, ["condition", "cell_type"]) for data in (relabelled, changed)}
    assert reference not in hashes and len(hashes) == 2


def test_provenance_table_has_one_row_per_run_with_versions(counts, tmp_path):
    path = tmp_path / "r.csv"
    run(counts, path)
    table = run(counts, path, seeds=(0, 1))
    runs = provenance_table(table.attrs["provenance"])
    assert list(runs.index) == [1, 2] and runs["grid_points_done"].tolist() == [3, 3]
    assert {"started", "finished", "wall_seconds", "grid_points_failed", "torch", "python"} <= set(
        runs.columns
    )
    assert provenance_table({"runs": []}).empty


@pytest.mark.parametrize("field", ["fraction", "n_top_genes", "min_cells"])
def test_another_data_setting_is_another_setup(counts, tmp_path, field):
    path = tmp_path / "r.csv"
    run(counts, path)
    other = {"fraction": 0.5, "n_top_genes": 50, "min_cells": 30}[field]
    with pytest.raises(ValueError, match=rf"differing: \['{field}'\]"):
        run(counts, path, **{field: other})
