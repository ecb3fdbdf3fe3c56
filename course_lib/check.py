"""The pre-workshop check: ``python -m course_lib.check`` tells in under a minute whether a machine is ready.

A participant runs it on their laptop in the days before a workshop, in the course environment. It
checks, printing one line each:

1. every package that course_lib pins (with those of the ``book`` extra,
   which the notebooks need) at its pinned version;
2. JupyterLab and jupytext, which open the chapters as notebooks;
3. the Kang 2018 data: cached and matching the registry's hashes (the check never downloads: run
   ``python -m course_lib.datasets`` while online first);
4. a short training: scGen on 15% of the cells, for about :data:`TRAINING_SECONDS` seconds, and a
   prediction for the held-out type.

The last line starts with ``PASS`` or ``FAIL``; the exit code is 0 or 1. A failed step says what to do,
and the training is skipped when the data are not there.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import platform
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from course_lib.datasets import (
    FETCH_COMMAND,
    DataIntegrityError,
    DataUnavailableError,
    data_dir,
    kang2018,
    read_registry,
)
from course_lib.experiment import held_out_split
from course_lib.models import Scgen

TRAINING_SECONDS = 10.0
"""How long the check trains scGen (whole epochs, so a little longer)."""

REINSTALL = (
    "reinstall the course environment: `python3 tasks.py setup` in the course folder, or "
    "`conda env update -f environments/course.yml`"
)


class CheckFailed(RuntimeError):
    """One step of the check failed; the message says what is wrong and what to do."""


PIN = re.compile(r'^([A-Za-z0-9_.\-]+)==([^;\s]+)\s*(?:;\s*extra\s*==\s*"([^"]+)")?$')
"""A requirement of course_lib's metadata: ``name==version``, optionally ``; extra == "name"``.

:meta hide-value:
"""


def pinned_packages(*, extras: tuple[str, ...] = ("book",)) -> dict[str, str]:
    """Name -> pinned version of course_lib's dependencies and of those of its ``extras``."""
    pins = {}
    for text in importlib.metadata.requires("course_lib") or []:
        match = PIN.match(text)
        if match and (match[3] is None or match[3] in extras):
            pins[match[1]] = match[2]
    return pins


Step = Callable[[], tuple[str, Any]]
"""A step of the check: returns its line and a result for later steps; raises :class:`CheckFailed`."""


def check_packages() -> tuple[str, None]:
    """Every pinned package installed at its pinned version (course_lib itself needs Python 3.11+)."""
    wrong = []
    pins = pinned_packages()
    for name, pinned in pins.items():
        try:
            installed = importlib.metadata.version(name).split("+")[0]  # torch reports e.g. 2.13.0+cpu
        except importlib.metadata.PackageNotFoundError:
            wrong.append(f"{name} is missing")
            continue
        if installed != pinned:
            wrong.append(f"{name} {installed} is installed, the course pins {pinned}")
    if wrong:
        raise CheckFailed(f"{'; '.join(wrong)}: {REINSTALL}.")
    return f"Python {platform.python_version()}, {len(pins)} pinned packages at their pinned versions", None


def check_jupyter() -> tuple[str, None]:
    """JupyterLab and jupytext, which open the ``book/*.py`` chapters as notebooks."""
    missing = [
        name for name in ("jupyterlab", "jupytext", "ipykernel") if importlib.util.find_spec(name) is None
    ]
    if missing:
        raise CheckFailed(
            f"{', '.join(missing)} not installed, so the chapters cannot be opened: {REINSTALL}."
        )
    version = importlib.metadata.version("jupyterlab")
    return f"JupyterLab {version} with jupytext opens the chapters as notebooks", None


def cached_data_files() -> list[Path]:
    """Where the Kang 2018 files are cached (see :func:`course_lib.datasets.data_dir`)."""
    members = read_registry()["kang2018"]["members"]
    return [data_dir() / "kang2018" / Path(member).name for member in members]


def check_data() -> tuple[str, Any]:
    """The Kang 2018 files are cached and verified; the result is the annotated counts."""
    missing = [path.name for path in cached_data_files() if not path.exists()]
    if missing:
        raise CheckFailed(
            f"the data are not downloaded ({', '.join(missing)} missing in {data_dir() / 'kang2018'}): "
            f"run `{FETCH_COMMAND}` while online (about 80 MB, once)."
        )
    try:
        counts = kang2018()  # re-hashes the cached files; a bad file is removed and reported
    except (DataIntegrityError, DataUnavailableError, OSError) as error:
        raise CheckFailed(str(error)) from error
    return f"Kang 2018 data verified in {data_dir() / 'kang2018'} ({counts.n_obs:,} cells)", counts


def check_training(counts, *, seconds: float = TRAINING_SECONDS) -> tuple[str, None]:
    """Train scGen on 15% of the cells for about ``seconds`` (whole epochs) and predict a held-out type."""
    start = time.perf_counter()
    split = held_out_split(counts, "CD4 T cells", fraction=0.15, seed=0)
    model = Scgen(split.train, seed=0)
    epochs = 0
    while epochs == 0 or time.perf_counter() - start < seconds:
        model.train(n_epochs=1, verbose=False)
        epochs += 1
    prediction = model.predict(target="CD4 T cells")
    values = np.asarray(prediction.X.toarray() if hasattr(prediction.X, "toarray") else prediction.X)
    if prediction.n_obs != split.query.n_obs or not np.isfinite(values).all():
        raise CheckFailed(
            "scGen trained but predicted non-finite values: the PyTorch installation looks broken; "
            + REINSTALL
        )
    device = "GPU" if torch.cuda.is_available() else f"CPU, {torch.get_num_threads()} threads"
    line = (
        f"scGen trained {epochs} epochs on {split.train.n_obs:,} cells and predicted "
        f"{prediction.n_obs:,} cells in {time.perf_counter() - start:.0f} s ({device})"
    )
    return line, None


def run_step(name: str, step: Step, echo: Callable[[str], None]) -> tuple[bool, Any]:
    """Run one step and echo ``ok`` or ``FAIL`` with its line; return whether it passed, and its result."""
    try:
        line, result = step()
    except CheckFailed as error:
        echo(f"FAIL  {name}: {error}")
        return False, None
    echo(f"ok    {name}: {line}")
    return True, result


def run_check(*, seconds: float = TRAINING_SECONDS, echo: Callable[[str], None] = print) -> bool:
    """Run every step, echo one line per step and a last PASS or FAIL line; ``True`` if all passed."""
    start = time.perf_counter()
    echo("course_lib pre-workshop check")
    failed = [
        name
        for name, step in (("environment", check_packages), ("notebooks", check_jupyter))
        if not run_step(name, step, echo)[0]
    ]
    has_data, counts = run_step("data", check_data, echo)
    if not has_data:
        failed.append("data")
        echo("skip  training: it needs the data")
    elif not run_step("training", lambda: check_training(counts, seconds=seconds), echo)[0]:
        failed.append("training")
    if failed:
        echo(f"FAIL: {', '.join(failed)} (see above); fix it and run `python -m course_lib.check` again.")
    else:
        took = time.perf_counter() - start
        echo(f"PASS: this machine is ready for the workshop (the check took {took:.0f} s).")
    return not failed


def main() -> None:
    """Command line: ``python -m course_lib.check``; exit code 0 when the machine is ready, else 1."""
    sys.exit(0 if run_check() else 1)


if __name__ == "__main__":
    main()
