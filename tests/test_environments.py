"""The conda and Binder environments, and the installed packages, must match the pins in pyproject.toml."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from sync_environments import TARGETS, pinned_requirements  # noqa: E402

PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==([0-9][A-Za-z0-9.]*)$")


def test_every_requirement_is_an_exact_pin():
    loose = [requirement for requirement in pinned_requirements() if not PIN.match(requirement)]
    assert not loose, f"requirements without an exact == pin: {loose}"


@pytest.mark.parametrize("path", sorted(TARGETS), ids=lambda path: str(path.relative_to(ROOT)))
def test_environment_file_matches_pyproject(path):
    assert path.exists(), f"{path} is missing; run scripts/sync_environments.py"
    listed = set(re.findall(r"^\s+- ([A-Za-z0-9_.\-]+==\S+)$", path.read_text(), flags=re.MULTILINE))
    assert listed == set(pinned_requirements()), f"{path.name} differs from pyproject.toml"
    assert path.read_text() == TARGETS[path]


def test_sync_script_check_mode_agrees():
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "sync_environments.py"), "--check"])
    assert result.returncode == 0


@pytest.mark.parametrize("requirement", pinned_requirements())
def test_installed_version_matches_pin(requirement):
    name, version = PIN.match(requirement).groups()
    installed = importlib.metadata.version(name).split("+")[0]  # torch reports e.g. 2.13.0+cpu
    assert installed == version, f"{name} {installed} is installed but pyproject pins {version}"
