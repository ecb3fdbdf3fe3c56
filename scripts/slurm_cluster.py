#!/usr/bin/env python3
"""A real single-node SLURM cluster with accounting on this machine, in one folder, for trying and testing
the workflow's SLURM executor (Debian packages slurm-wlm, slurmdbd, munge and mariadb-server; run as root).

    python3 scripts/slurm_cluster.py start /tmp/cluster   # prints the SLURM_CONF to export
    SLURM_CONF=/tmp/cluster/slurm.conf sinfo
    python3 scripts/slurm_cluster.py stop /tmp/cluster

Everything the cluster needs lives in the folder, but munged (on its default socket, with the key of the
munge package; started only when none runs there): a MariaDB server on
a free port of 127.0.0.1 holding the accounting database, slurmdbd, slurmctld and one slurmd whose node
is this machine (its short host name, its CPUs, its memory minus a margin; no cgroups). The client
commands (sbatch, sacct, ...) find it through ``SLURM_CONF``. ``stop`` ends exactly the processes that
``start`` recorded (their PIDs are in ``cluster.json``), never a process found by name.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

PACKAGES = ("slurmctld", "slurmd", "slurmdbd", "sacctmgr", "sbatch", "sacct", "munged", "mariadbd")
"""Programs the cluster needs (`.ci/install-slurm.sh` installs them)."""

CLUSTER, ACCOUNT, PARTITION = "course", "course", "debug"
"""Names of the cluster, of the account every job runs under and of the one partition."""

SYSTEM_CONF = Path("/etc/slurm/slurm.conf")
"""Where SLURM programs look for slurm.conf without ``SLURM_CONF``. The SLURM executor's job step runs
``srun`` without the job's ``SLURM_*`` variables (``SLURM_CONF`` among them), so, as on a real cluster,
the configuration must be found there: ``start`` links it to the folder's file and ``stop`` removes the
link (a slurm.conf that is not such a link is never touched)."""

MUNGE_SOCKET = Path("/run/munge/munge.socket.2")
"""munged's default socket, where every SLURM program looks for it."""

DATABASE_PASSWORD = "slurm-test-only"
"""Password of the accounting database's user (the server listens on 127.0.0.1 only)."""


def missing_programs() -> list[str]:
    """The programs of :data:`PACKAGES` that are not installed."""
    paths = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/bin"])
    return [name for name in PACKAGES if shutil.which(name, path=paths) is None]


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run(*command: str | Path, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """Run a command, capturing its output; raise with that output when it fails."""
    result = subprocess.run([str(part) for part in command], capture_output=True, text=True, env=env)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, command))} failed: {result.stdout}{result.stderr}")
    return result


def wait_for(condition, what: str, *, seconds: float = 60) -> None:
    """Return once ``condition()`` is true; raise after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not happen within {seconds:.0f} s")
        time.sleep(0.2)


def read_pid(path: Path) -> int | None:
    """The PID in a pid file, or None."""
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def alive(pid: int | None) -> bool:
    """Whether a process with this PID runs (a zombie does not; one that is our child is reaped)."""
    if pid is None:
        return False
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass  # not our child
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def memory_mb() -> int:
    """The machine's memory in MB minus a margin for the system (what the node offers to jobs)."""
    total_kb = int(Path("/proc/meminfo").read_text().split("MemTotal:")[1].split()[0])
    return max(1024, total_kb // 1024 - 2048)


def slurm_conf(folder: Path, ports: dict[str, int]) -> str:
    """slurm.conf of the one-node cluster."""
    host = socket.gethostname().split(".")[0]
    return "\n".join(
        [
            f"ClusterName={CLUSTER}",
            f"SlurmctldHost={host}(127.0.0.1)",
            f"SlurmctldPort={ports['slurmctld']}",
            f"SlurmdPort={ports['slurmd']}",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"StateSaveLocation={folder / 'state'}",
            f"SlurmdSpoolDir={folder / 'spool'}",
            f"SlurmctldPidFile={folder / 'slurmctld.pid'}",
            f"SlurmdPidFile={folder / 'slurmd.pid'}",
            f"SlurmctldLogFile={folder / 'slurmctld.log'}",
            f"SlurmdLogFile={folder / 'slurmd.log'}",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core_Memory",
            "ReturnToService=2",
            "MpiDefault=none",
            "SchedulerType=sched/backfill",
            "AccountingStorageType=accounting_storage/slurmdbd",
            "AccountingStorageHost=127.0.0.1",
            f"AccountingStoragePort={ports['slurmdbd']}",
            "AccountingStorageEnforce=associations",
            "JobAcctGatherType=jobacct_gather/linux",
            "JobCompType=jobcomp/none",
            "MinJobAge=300",
            f"NodeName={host} NodeAddr=127.0.0.1 CPUs={os.cpu_count()} RealMemory={memory_mb()}",
            f"PartitionName={PARTITION} Nodes={host} Default=YES MaxTime=INFINITE State=UP",
            "",
        ]
    )


def slurmdbd_conf(folder: Path, ports: dict[str, int]) -> str:
    """slurmdbd.conf: the accounting daemon and its MariaDB database."""
    return "\n".join(
        [
            "AuthType=auth/munge",
            "DbdHost=localhost",
            "DbdAddr=127.0.0.1",
            f"DbdPort={ports['slurmdbd']}",
            "SlurmUser=root",
            f"PidFile={folder / 'slurmdbd.pid'}",
            f"LogFile={folder / 'slurmdbd.log'}",
            "StorageType=accounting_storage/mysql",
            "StorageHost=127.0.0.1",
            f"StoragePort={ports['mariadb']}",
            "StorageUser=slurm",
            f"StoragePass={DATABASE_PASSWORD}",
            "StorageLoc=slurm_acct_db",
            "",
        ]
    )


def start(folder: Path) -> dict:
    """Start munged, MariaDB, slurmdbd, slurmctld and slurmd in ``folder``; return the cluster record
    (also written to ``folder/cluster.json``). Raises, after stopping what it started, when a step fails."""
    missing = missing_programs()
    if missing:
        raise RuntimeError(f"not installed: {', '.join(missing)}; run .ci/install-slurm.sh (as root) first.")
    folder = folder.resolve()
    folder.mkdir(parents=True, exist_ok=True)
    for part in ("state", "spool", "munge", "mysql"):
        (folder / part).mkdir(exist_ok=True)
    ports = {name: free_port() for name in ("slurmctld", "slurmd", "slurmdbd", "mariadb")}
    record = {"folder": str(folder), "ports": ports, "pids": {}, "slurm_conf": str(folder / "slurm.conf")}
    record_path = folder / "cluster.json"

    def save() -> None:
        record_path.write_text(json.dumps(record, indent=2))

    env = {**os.environ, "SLURM_CONF": record["slurm_conf"]}
    try:
        # The SLURM clients (sacctmgr among them) talk to munged on its default socket: use a munged that
        # serves it already, else start one there (and stop only that one).
        if run("munge", "-n", check=False).returncode != 0:
            MUNGE_SOCKET.parent.mkdir(parents=True, exist_ok=True)
            run(
                "munged",
                "--force",
                f"--pid-file={folder / 'munge' / 'munged.pid'}",
                f"--log-file={folder / 'munge' / 'munged.log'}",
                f"--seed-file={folder / 'munge' / 'munged.seed'}",
            )
            record["pids"]["munged"] = read_pid(folder / "munge" / "munged.pid")
            save()
            wait_for(lambda: run("munge", "-n", check=False).returncode == 0, "munged start")

        datadir = folder / "mysql"
        run("mariadb-install-db", "--no-defaults", f"--datadir={datadir}", "--user=root", "--skip-test-db")
        server = subprocess.Popen(
            [
                "mariadbd",
                "--no-defaults",
                f"--datadir={datadir}",
                f"--socket={folder / 'mysql.sock'}",
                f"--pid-file={folder / 'mariadb.pid'}",
                f"--port={ports['mariadb']}",
                "--bind-address=127.0.0.1",
                "--user=root",
                f"--log-error={folder / 'mariadb.log'}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        record["pids"]["mariadbd"] = server.pid
        save()
        client = ["mariadb", "--no-defaults", f"--socket={folder / 'mysql.sock'}", "-u", "root"]
        wait_for(lambda: run(*client, "-e", "SELECT 1", check=False).returncode == 0, "MariaDB start")
        run(
            *client,
            "-e",
            "CREATE DATABASE IF NOT EXISTS slurm_acct_db; "
            f"CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '{DATABASE_PASSWORD}'; "
            "GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1'; FLUSH PRIVILEGES;",
        )

        (folder / "slurm.conf").write_text(slurm_conf(folder, ports))
        if SYSTEM_CONF.is_symlink() and not SYSTEM_CONF.exists():
            SYSTEM_CONF.unlink()  # left by a cluster that was not stopped
        if SYSTEM_CONF.exists() or SYSTEM_CONF.is_symlink():
            raise RuntimeError(
                f"{SYSTEM_CONF} exists: this machine has a SLURM configuration (or another test cluster "
                "runs); stop that cluster first, this script does not replace it."
            )
        SYSTEM_CONF.parent.mkdir(parents=True, exist_ok=True)
        SYSTEM_CONF.symlink_to(folder / "slurm.conf")
        record["system_conf"] = str(SYSTEM_CONF)
        save()
        dbd = folder / "slurmdbd.conf"
        dbd.write_text(slurmdbd_conf(folder, ports))
        dbd.chmod(0o600)
        run("slurmdbd", env=env)
        wait_for(lambda: alive(read_pid(folder / "slurmdbd.pid")), "slurmdbd start")
        record["pids"]["slurmdbd"] = read_pid(folder / "slurmdbd.pid")
        save()
        wait_for(
            lambda: (
                run("sacctmgr", "-i", "add", "cluster", CLUSTER, env=env, check=False).returncode == 0
                or CLUSTER
                in run("sacctmgr", "-n", "list", "cluster", "format=cluster", env=env, check=False).stdout
            ),
            "slurmdbd accepting connections",
            seconds=180,
        )
        run("sacctmgr", "-i", "add", "account", ACCOUNT, f"cluster={CLUSTER}", env=env, check=False)
        run(
            "sacctmgr",
            "-i",
            "add",
            "user",
            "root",
            f"account={ACCOUNT}",
            f"cluster={CLUSTER}",
            env=env,
            check=False,
        )

        run("slurmctld", env=env)
        wait_for(lambda: alive(read_pid(folder / "slurmctld.pid")), "slurmctld start")
        record["pids"]["slurmctld"] = read_pid(folder / "slurmctld.pid")
        save()
        run("slurmd", env=env)
        wait_for(lambda: alive(read_pid(folder / "slurmd.pid")), "slurmd start")
        record["pids"]["slurmd"] = read_pid(folder / "slurmd.pid")
        save()
        wait_for(
            lambda: "idle" in run("sinfo", "-h", "-o", "%t", env=env, check=False).stdout,
            "the node becoming idle",
        )
    except BaseException:
        stop(folder)
        raise
    return record


def stop(folder: Path) -> list[str]:
    """End the processes recorded in ``folder/cluster.json`` (SLURM first, the database and munge last),
    by their PIDs; return the names of those that were running."""
    record_path = folder.resolve() / "cluster.json"
    if not record_path.exists():
        return []
    record = json.loads(record_path.read_text())
    pids = record["pids"]
    stopped = []
    for name in ("slurmd", "slurmctld", "slurmdbd", "mariadbd", "munged"):
        pid = pids.get(name)
        if not alive(pid):
            continue
        os.kill(pid, signal.SIGTERM)
        try:
            wait_for(lambda pid=pid: not alive(pid), f"{name} ({pid}) stopping", seconds=30)
        except RuntimeError:
            os.kill(pid, signal.SIGKILL)
        stopped.append(name)
    ours = Path(record["slurm_conf"])
    if record.get("system_conf") and SYSTEM_CONF.is_symlink() and SYSTEM_CONF.readlink() == ours:
        SYSTEM_CONF.unlink()
    return stopped


def main() -> int:
    if len(sys.argv) != 3 or sys.argv[1] not in ("start", "stop"):
        print(__doc__, file=sys.stderr)
        return 2
    folder = Path(sys.argv[2])
    if sys.argv[1] == "start":
        record = start(folder)
        print(f"export SLURM_CONF={record['slurm_conf']}")
    else:
        print("stopped:", ", ".join(stop(folder)) or "nothing was running")
    return 0


if __name__ == "__main__":
    sys.exit(main())
