"""The workflow on a real single-node SLURM cluster with accounting (scripts/slurm_cluster.py): the same
rows as the local runner. The cluster is started and stopped by the test; without its Debian packages the
test fails (`.ci/install-slurm.sh` installs them)."""

from __future__ import annotations

import sys

import pandas as pd
import pytest
from snakemake_helpers import ROOT, TIMING, local_rows, run_snakemake, write_workflow_config

from course_lib.benchmark import load_results

sys.path.insert(0, str(ROOT / "scripts"))
import slurm_cluster  # noqa: E402

pytestmark = pytest.mark.slow

ONE_TYPE = {"cell_types": ["type_0"]}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    missing = slurm_cluster.missing_programs()
    if missing:
        pytest.fail(
            f"SLURM is not installed ({', '.join(missing)} missing): run .ci/install-slurm.sh as root."
        )
    folder = tmp_path_factory.mktemp("cluster")
    record = slurm_cluster.start(folder)
    yield record
    stopped = slurm_cluster.stop(folder)
    assert {"slurmd", "slurmctld", "slurmdbd", "mariadbd"} <= set(stopped)
    assert not any(slurm_cluster.alive(pid) for pid in record["pids"].values())
    assert not slurm_cluster.SYSTEM_CONF.is_symlink()


def test_the_workflow_on_slurm_gives_the_local_runner_s_rows(cluster, tmp_path):
    write_workflow_config(tmp_path, grid=ONE_TYPE)
    resources = [f"slurm_partition={slurm_cluster.PARTITION}", f"slurm_account={slurm_cluster.ACCOUNT}"]
    run = run_snakemake(
        tmp_path,
        "--profile",
        str(ROOT / "profiles" / "slurm"),
        "--jobs",
        "3",
        "--default-resources",
        *resources,
        "--slurm-init-seconds-before-status-checks",
        "1",
        env={"SLURM_CONF": cluster["slurm_conf"]},
        timeout=900,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    assert run.stderr.count("has been submitted with SLURM jobid") == 3  # one SLURM job per grid point
    table = load_results(tmp_path / "results" / "tiny.csv")
    local = local_rows(tmp_path, ONE_TYPE)
    pd.testing.assert_frame_equal(table.drop(columns=TIMING), local.drop(columns=TIMING))
