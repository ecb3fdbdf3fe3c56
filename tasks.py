#!/usr/bin/env python3
"""Set up, test and build the course with nothing but Python 3.11 and access to the package index.

    python3 tasks.py test            # create .venv, fetch the data, run the test suite
    python3 tasks.py book            # create .venv, fetch the data, execute the chapters, build _build/html
    python3 tasks.py book --profile small   # the same with the small profile (minutes instead of ~20)

Every step is skipped when its output is up to date: the environment is rebuilt only when pyproject.toml
changes, the data is fetched once, and a chapter is re-executed only when what it depends on changed (its
source, the parameters, pyproject.toml, _config.yml or the package: see chapter_fingerprint). The CI
workflow caches the executed chapters under the same inputs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("COURSE_VENV", ROOT / ".venv"))
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / ("python.exe" if os.name == "nt" else "python")
BOOK = ROOT / "book"
PROFILES = json.loads((ROOT / "course_lib" / "data" / "profiles.json").read_text())
DATA_CACHE = ROOT / "data" / "cache"
"""Where the checkout keeps the downloaded data (``$COURSE_DATA_DIR`` wins when it is set)."""


def run(*command: str | Path, **kwargs) -> None:
    """Run a command, echoing it, with the checkout's data cache; stop with its exit code when it fails."""
    print("+", " ".join(map(str, command)), flush=True)
    env = {**os.environ, "COURSE_DATA_DIR": os.environ.get("COURSE_DATA_DIR") or str(DATA_CACHE)}
    result = subprocess.run([str(part) for part in command], cwd=ROOT, env=env, **kwargs)
    if result.returncode != 0:
        sys.exit(result.returncode)


def ensure_venv() -> None:
    """Create ``.venv`` and install course_lib with its book, test, dev and workflow extras, once per
    pyproject.toml."""
    stamp = VENV / ".course-installed"
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == wanted:
        return
    if not PYTHON.exists():
        print(f"Creating the virtual environment {VENV}", flush=True)
        venv.create(VENV, with_pip=True)
    run(PYTHON, "-m", "pip", "install", "--quiet", "--upgrade", "pip")
    run(PYTHON, "-m", "pip", "install", "--quiet", "-e", ".[book,test,dev,workflow]")
    stamp.write_text(wanted)


def ensure_data() -> None:
    """Download and verify the Kang 2018 files (instant when they are cached)."""
    run(PYTHON, "-m", "course_lib.datasets")


def chapter_fingerprint(source: Path, parameters: str) -> str:
    """sha256 of what an executed chapter depends on: its source and parameters, the pins (pyproject.toml),
    the book configuration (the repository URL of its set-up cell), every file of course_lib and the
    committed benchmark tables that chapters 6, 8 and 9 read.

    Contents only, never modification times: executed chapters restored from a CI cache stay valid.
    """
    files = (
        path
        for folder in (ROOT / "course_lib", ROOT / "data" / "benchmark")
        for path in folder.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    )
    digest = hashlib.sha256(parameters.encode())
    for path in [source, ROOT / "pyproject.toml", ROOT / "_config.yml", *sorted(files)]:
        digest.update(path.relative_to(ROOT).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def execute_chapters(profile: str) -> None:
    """Execute every jupytext chapter in ``book/`` with papermill into ``book/<name>.ipynb``, unless the
    fingerprint in ``book/<name>.stamp`` says the executed notebook is up to date."""
    parameters = json.dumps(PROFILES[profile])
    for source in sorted(BOOK.glob("*.py")):
        executed = source.with_suffix(".ipynb")
        stamp = executed.with_suffix(".stamp")
        fingerprint = chapter_fingerprint(source, parameters)
        if executed.exists() and stamp.exists() and stamp.read_text() == fingerprint:
            print(f"up to date: {executed.relative_to(ROOT)}", flush=True)
            continue
        start, load = time.perf_counter(), os.getloadavg()[0]
        run(PYTHON, "-m", "course_lib.book", "execute", source, executed, "--parameters", parameters)
        stamp.write_text(fingerprint)
        seconds = time.perf_counter() - start
        print(
            f"executed {source.name} in {seconds:.0f} s (load average {load:.1f} before, "
            f"{os.getloadavg()[0]:.1f} after, on {os.cpu_count()} cores)",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("task", choices=["setup", "test", "book"])
    parser.add_argument("--profile", choices=sorted(PROFILES), default="learner", help="chapter parameters")
    parser.add_argument("pytest_args", nargs="*", help="extra arguments for pytest (after --)")
    args = parser.parse_args()
    ensure_venv()
    ensure_data()
    if args.task == "test":
        run(PYTHON, "-m", "pytest", *args.pytest_args)
    elif args.task == "book":
        execute_chapters(args.profile)
        run(BIN / "jupyter-book", "build", ".", "-W", "--keep-going", "--path-output", ".")
        print(f"The site is in {ROOT / '_build' / 'html'} (open index.html).")


if __name__ == "__main__":
    main()
