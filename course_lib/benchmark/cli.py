"""The benchmark's command line (``python -m course_lib.benchmark``).

::

    python -m course_lib.benchmark                   # the full benchmark -> data/benchmark/kang2018_loto.csv
    python -m course_lib.benchmark --profile small   # the test-sized slice -> ..._small.csv

Paths are relative to the working directory (run it from the repository root to extend the committed
table). Every option is checked, against the data too, before anything trains.

A workflow engine runs the same grid one point per job through the subcommands (each has ``--help``)::

    python -m course_lib.benchmark points --grid GRID              # the names of the grid's points
    python -m course_lib.benchmark inputs --output inputs.json     # fetch and hash the input data
    python -m course_lib.benchmark point --grid GRID --point NAME --output NAME.json
    python -m course_lib.benchmark merge --grid GRID --output table.csv POINT.json ...
    python -m course_lib.benchmark crate --results table.csv --output table.crate

``GRID`` is the JSON of a :class:`~course_lib.benchmark.BenchmarkGrid`'s fields (``{}`` for the
defaults) and ``--data`` names the counts: ``kang2018`` (the default) or an ``.h5ad`` file.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from course_lib.benchmark.grid import BenchmarkGrid, read_profiles
from course_lib.benchmark.points import KANG2018, DataSource, merge_points, plan_jobs, run_point
from course_lib.benchmark.runner import run_benchmark, write_atomic
from course_lib.benchmark.summary import summarise
from course_lib.datasets import kang2018, kang2018_file_hashes
from course_lib.experiment import VARIANTS, GridPointError

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
    point failed (a rerun retries it). A first argument that names a subcommand (:data:`COMMANDS`) runs
    that command instead."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in COMMANDS:
        COMMANDS[argv[0]](argv[1:])
        return
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


# -- one grid point per job: the subcommands a workflow engine calls -------------------------------


def subcommand_parser(name: str, description: str, *, grid: bool = True) -> argparse.ArgumentParser:
    """The parser of subcommand ``name``, with ``--data`` and, when ``grid``, ``--grid``."""
    parser = argparse.ArgumentParser(prog=f"python -m course_lib.benchmark {name}", description=description)
    if grid:
        parser.add_argument(
            "--grid",
            required=True,
            type=json.loads,
            help='JSON of the BenchmarkGrid fields, e.g. \'{"models": ["scgen"], "seeds": [0]}\' ({} for '
            "the defaults)",
        )
    parser.add_argument(
        "--data",
        default=KANG2018,
        help=f"the raw counts: {KANG2018!r} (default; fetched and verified once) or an .h5ad file",
    )
    return parser


def parse_jobs(parser: argparse.ArgumentParser, argv: Sequence[str]):
    """The parsed arguments and the checked jobs of their grid; exits with the package's message on bad
    input (an unknown model, cell type, variant, hyperparameter, ...)."""
    args = parser.parse_args(argv)
    try:
        return args, plan_jobs(BenchmarkGrid.from_mapping(args.grid), args.data)
    except (TypeError, ValueError, KeyError) as error:
        parser.error(str(error.args[0]) if isinstance(error, KeyError) else str(error))


def points_command(argv: Sequence[str]) -> None:
    """Print the name of every point of a grid, one a line (the jobs of a workflow)."""
    parser = subcommand_parser("points", "Check a grid against the data and print the name of each point.")
    _, jobs = parse_jobs(parser, argv)
    print("\n".join(jobs.points))


def inputs_command(argv: Sequence[str]) -> None:
    """Fetch and verify the data once and write the list of input files with their sha256 (JSON)."""
    parser = subcommand_parser("inputs", "Fetch and verify the data; write its files' sha256.", grid=False)
    parser.add_argument("--output", type=Path, required=True, help="JSON file to write")
    args = parser.parse_args(argv)
    try:
        source = DataSource.parse(args.data)
    except ValueError as error:
        parser.error(str(error))
    write_atomic(args.output, json.dumps({"data": source.name, "files": source.input_files()}, indent=2))


def point_command(argv: Sequence[str]) -> None:
    """Run one grid point and write its result file; exit 1 with the model's problem when it fails."""
    parser = subcommand_parser("point", "Run one grid point and write its result file (JSON).")
    parser.add_argument("--point", required=True, help="the point's name (see the points subcommand)")
    parser.add_argument("--output", type=Path, required=True, help="result file to write")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's own choice)")
    args, jobs = parse_jobs(parser, argv)
    try:
        jobs.point(args.point)
    except KeyError as error:
        parser.error(error.args[0])
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    try:
        run_point(jobs, args.point, args.output)
    except GridPointError as error:
        sys.exit(f"grid point failed (a rerun retries it): {error}")


def merge_command(argv: Sequence[str]) -> None:
    """Merge the result files of a grid into the results table and its JSON sidecar."""
    parser = subcommand_parser("merge", "Merge the result files of every grid point into one table.")
    parser.add_argument("--output", type=Path, required=True, help="results CSV (the sidecar goes beside it)")
    parser.add_argument("--inputs", type=Path, help="the inputs subcommand's JSON: the data files' sha256")
    parser.add_argument("--engine", type=json.loads, help='JSON recorded as the run\'s "workflow"')
    parser.add_argument("files", nargs="+", type=Path, help="the points' result files")
    args, jobs = parse_jobs(parser, argv)
    files = json.loads(args.inputs.read_text())["files"] if args.inputs else []
    try:
        table = merge_points(
            jobs,
            args.files,
            args.output,
            data_files={record["name"]: record["sha256"] for record in files},
            engine=args.engine,
        )
    except ValueError as error:
        sys.exit(str(error))
    print(f"{len(table)} rows of {len(jobs.points)} grid points in {args.output}")


def crate_command(argv: Sequence[str]) -> None:
    """Package a results table, its sidecar, its inputs and the workflow as a Workflow Run RO-Crate."""
    parser = argparse.ArgumentParser(
        prog="python -m course_lib.benchmark crate",
        description="Package a results table as an RO-Crate (Workflow Run Crate profile): the table and "
        "its sidecar, the workflow, the inputs with their sha256, the parameters, the software versions "
        "and the dates. People and organisation are placeholders unless given.",
    )
    add = parser.add_argument
    add("--results", type=Path, required=True, help="results CSV with its .json sidecar")
    add("--output", type=Path, required=True, help="folder of the crate (created; must not exist)")
    add("--inputs", type=Path, help="the inputs subcommand's JSON (default: the Kang 2018 files)")
    add("--workflow", type=Path, default=Path("."), help="the folder with workflow/ and config/ (default: .)")
    add("--author", help="the person who ran the benchmark (default: a placeholder to fill in)")
    add("--orcid", help="the author's ORCID, e.g. https://orcid.org/0000-0000-0000-0000")
    add("--organisation", help="the author's organisation (default: a placeholder)")
    args = parser.parse_args(argv)
    from course_lib.benchmark.crate import write_crate  # rocrate is an optional extra: .[workflow]

    if args.inputs:
        inputs = json.loads(args.inputs.read_text())["files"]
    else:
        inputs = DataSource(KANG2018).input_files()
    try:
        crate = write_crate(
            args.results,
            args.output,
            inputs=inputs,
            workflow_root=args.workflow,
            author=args.author,
            orcid=args.orcid,
            organisation=args.organisation,
        )
    except (FileNotFoundError, FileExistsError, ValueError) as error:
        parser.error(str(error))
    print(f"RO-Crate in {crate}")


COMMANDS = {
    "points": points_command,
    "inputs": inputs_command,
    "point": point_command,
    "merge": merge_command,
    "crate": crate_command,
}
"""The subcommands: ``python -m course_lib.benchmark <name> --help``."""
