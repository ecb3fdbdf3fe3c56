#!/usr/bin/env bash
# Install what tests/test_slurm.py needs for its single-node SLURM cluster with accounting when it is
# missing: Debian's slurm-wlm (slurmctld, slurmd, the client commands), slurmdbd, munge and
# mariadb-server. Debian or Ubuntu, as root. The packages' services are not used: the test
# starts and stops its own daemons (scripts/slurm_cluster.py), so the test fails, not skips, without them.
set -euo pipefail
missing=()
for pair in slurmctld:slurm-wlm slurmd:slurm-wlm sbatch:slurm-client sacct:slurm-client \
  slurmdbd:slurmdbd munged:munge mariadbd:mariadb-server mariadb-install-db:mariadb-server; do
  program=${pair%%:*}
  if ! command -v "$program" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$program" ]; then
    missing+=("${pair#*:}")
  fi
done
if [ "${#missing[@]}" -eq 0 ]; then
  echo "SLURM for the cluster test: $(command -v sbatch)"
  exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "SLURM is missing (${missing[*]}): run this script as root on Debian or Ubuntu (sudo bash $0)," \
    "or install slurm-wlm, slurmdbd, munge and mariadb-server yourself" >&2
  exit 1
fi
mapfile -t packages < <(printf '%s\n' "${missing[@]}" | sort -u)
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}"
echo "SLURM for the cluster test: $(command -v sbatch)"
