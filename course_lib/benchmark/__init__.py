"""The leave-one-cell-type-out benchmark: a grid of models x held-out types x data variants x seeds.

Modules: :mod:`~course_lib.benchmark.grid` (what to run), :mod:`~course_lib.benchmark.runner` (the
local, resumable runner), :mod:`~course_lib.benchmark.provenance` (where a result came from),
:mod:`~course_lib.benchmark.summary` (reading a table), :mod:`~course_lib.benchmark.points` (one grid
point per job of a workflow engine, and the merge of their files into the runner's table),
:mod:`~course_lib.benchmark.crate` (a table as an RO-Crate), :mod:`~course_lib.benchmark.cli` (the
command line, ``python -m course_lib.benchmark``). One grid point is
:func:`course_lib.experiment.run_grid_point`; the Snakemake workflow in ``workflow/`` runs one per job.
:mod:`~course_lib.benchmark.crate` needs the ``workflow`` extra (``pip install -e .[workflow]``).
"""

from course_lib.benchmark.grid import BenchmarkGrid, as_grid, plan, read_profiles
from course_lib.benchmark.provenance import content_sha256, provenance_path, provenance_table
from course_lib.benchmark.runner import (
    KEY_COLUMNS,
    RESULT_COLUMNS,
    BenchmarkFailures,
    load_results,
    run_benchmark,
    write_atomic,
)
from course_lib.benchmark.summary import (
    HEADLINE_METRICS,
    compare_results,
    label_by_setting,
    rank_models,
    response_discrimination,
    seed_intervals,
    summarise,
    types_beating,
    with_normalised_scores,
)

__all__ = [
    "HEADLINE_METRICS",
    "KEY_COLUMNS",
    "RESULT_COLUMNS",
    "BenchmarkFailures",
    "BenchmarkGrid",
    "as_grid",
    "compare_results",
    "content_sha256",
    "label_by_setting",
    "load_results",
    "plan",
    "provenance_path",
    "provenance_table",
    "rank_models",
    "read_profiles",
    "response_discrimination",
    "run_benchmark",
    "seed_intervals",
    "summarise",
    "types_beating",
    "with_normalised_scores",
    "write_atomic",
]
