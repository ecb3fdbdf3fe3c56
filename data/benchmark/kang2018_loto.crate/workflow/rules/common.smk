# What every rule shares: the checked grid, its points and the paths. The grid is checked here, when the
# workflow starts and before any job runs, with the package's own checks (unknown models, cell types,
# variants, hyperparameters, seeds, evaluation options): a bad config fails with the package's message.

import json
import shlex
import sys
from pathlib import Path

import snakemake
from snakemake.exceptions import WorkflowError

from course_lib.benchmark import BenchmarkGrid
from course_lib.benchmark.points import KANG2018, plan_jobs

PYTHON = sys.executable
ROOT = Path(workflow.basedir).parent


def grid_of(settings):
    """The BenchmarkGrid of the config: the profile's grid (if any) with the grid fields over it."""
    fields = dict(settings.get("grid") or {})
    profile = settings.get("profile")
    return BenchmarkGrid.from_profile(profile, **fields) if profile else BenchmarkGrid.from_mapping(fields)


try:
    GRID = grid_of(config)
    JOBS = plan_jobs(GRID, config["data"])
except (TypeError, ValueError, KeyError) as error:
    message = error.args[0] if isinstance(error, KeyError) else str(error)
    raise WorkflowError(f"config/config.yaml (or --config) is wrong: {message}") from None

GRID_JSON = json.dumps(GRID.as_json(), sort_keys=True)
DATA = config["data"]
DATA_NAME = KANG2018 if DATA == KANG2018 else Path(DATA).stem
PROFILE_SUFFIX = f"_{config['profile']}" if config.get("profile") else ""
RESULTS = config.get("results") or f"results/kang2018_loto{PROFILE_SUFFIX}.csv"
if not RESULTS.endswith(".csv"):
    raise WorkflowError(f"results must name a .csv file, not {RESULTS!r}.")
STEM = RESULTS[: -len(".csv")]
SIDECAR = f"{STEM}.json"
POINTS = f"{STEM}.points"
CRATE = f"{STEM}.crate"
INPUTS = f"results/data/{DATA_NAME}.inputs.json"
RESOURCES = config["resources"]


wildcard_constraints:
    point="[A-Za-z0-9_.-]+",
    worker="[0-9]+",
