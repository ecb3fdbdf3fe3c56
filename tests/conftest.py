"""Shared fixtures: small synthetic perturbation data sets that every package test can use, a one-thread
torch setting for the model tests, and the non-interactive matplotlib backend; for the book and site
tests, the chapters executed and the site built once per session, headless Chromium, and a fresh
virtual environment with the pinned packages."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # before anything imports pyplot

import os  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import venv  # noqa: E402
from pathlib import Path  # noqa: E402

import anndata as ad  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from course_lib.benchmark import read_profiles  # noqa: E402
from course_lib.checks import as_dense  # noqa: E402
from course_lib.datasets import synthetic_perturbation  # noqa: E402
from course_lib.models import IdentityBaseline, MeanShiftBaseline, PerturbationModel  # noqa: E402


@pytest.fixture
def synthetic():
    """600 cells x 200 genes, three cell types, control and stimulated, log-normalised in ``.X``."""
    return synthetic_perturbation(n_cells=600, n_genes=200, n_cell_types=3, seed=0)


@pytest.fixture
def raw_counts():
    """400 cells x 300 genes, three types; raw counts in ``.X`` (what preprocessing reads)."""
    adata = synthetic_perturbation(n_cells=400, n_genes=300, n_responsive_genes=40, seed=1)
    adata.X = adata.layers.pop("counts").toarray()
    return adata


@pytest.fixture(scope="module")
def counts():
    """900 cells, three types, about 150 cells per type and condition; raw counts in ``layers['counts']``."""
    return synthetic_perturbation(n_cells=900, n_genes=150, n_cell_types=3, seed=3)


BASELINE_REGISTRY = {"identity": IdentityBaseline, "mean_shift": MeanShiftBaseline}
"""A model registry of the baselines only: benchmark tests that need no training use it."""

SMALL_GRID = {
    "models": [],
    "seeds": (0,),
    "variants": ["balanced"],
    "min_cells": 40,
    "n_top_genes": 60,
    "evaluation": {"n_bootstrap": 5, "n_components": 5, "n_top_degs": 20, "n_ceiling_splits": 2},
}
"""A benchmark grid for :func:`counts` that runs in about a second per held-out type."""

BAD_GRID_CHANGES = {
    "model": ({"models": ["scgan"]}, "unknown model 'scgan'"),
    "cell type": ({"cell_types": ["type_9"]}, "cell type 'type_9' not found"),
    "variant": ({"variants": ["skewed"]}, "skewed"),
    "hyperparameter": (
        {"models": ["scgen"], "hyperparameters": {"scgen": {"depth": 2}}},
        "takes no parameter 'depth'",
    ),
}
"""Changes to a grid that must fail before anything runs, and a part of the message that says why."""


@pytest.fixture(scope="module")
def predicted_type():
    """Control and stimulated cells of one type, and two predictions: a good one ("scgen", 90% of the
    true mean shift) and the identity."""
    adata = synthetic_perturbation(n_cells=400, n_genes=120, n_cell_types=1, seed=2)
    ctrl = adata[adata.obs["condition"] == "control"].copy()
    stim = adata[adata.obs["condition"] == "stimulated"].copy()
    shift = np.asarray(stim.X.mean(axis=0) - ctrl.X.mean(axis=0))
    predictions = {}
    for name, matrix in {"scgen": ctrl.X + 0.9 * shift, "identity": ctrl.X}.items():
        pred = ctrl.copy()
        pred.X = np.asarray(matrix, dtype=np.float32)
        pred.obs["condition"] = "predicted"
        predictions[name] = pred
    return ctrl, stim, predictions


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny networks gain nothing from a second thread, and on a machine that other processes keep
    busy, OpenMP's waits between threads turn a 0.2 s training run into 10 s. Model test modules use
    it with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def as_prediction(adata: ad.AnnData, matrix: np.ndarray | None = None) -> ad.AnnData:
    """A copy of ``adata`` labelled as a prediction, optionally with another expression matrix."""
    pred = adata.copy()
    if matrix is not None:
        pred.X = matrix.astype(np.float32)
    pred.obs["condition"] = "predicted"
    return pred


def as_adata(matrix: np.ndarray) -> ad.AnnData:
    """A bare AnnData of ``matrix`` (float32)."""
    return ad.AnnData(np.asarray(matrix, dtype=np.float32))


@pytest.fixture(scope="module")
def held_out():
    """One cell type: ctrl, stim (half of the stimulated cells) and three predictions.

    ``oracle`` is the other half of the real stimulated cells, ``identity`` the control cells and
    ``shifted`` the control cells plus the true mean shift.
    """
    adata = synthetic_perturbation(n_cells=800, n_genes=150, n_cell_types=1, seed=1)
    ctrl = adata[adata.obs["condition"] == "control"].copy()
    stimulated = adata[adata.obs["condition"] == "stimulated"]
    stim, other_half = stimulated[::2].copy(), stimulated[1::2].copy()
    shift = np.asarray(stim.X.mean(axis=0) - ctrl.X.mean(axis=0))
    predictions = {
        "oracle": as_prediction(other_half),
        "identity": as_prediction(ctrl),
        "shifted": as_prediction(ctrl, ctrl.X + shift),
    }
    return ctrl, stim, predictions


class FakeModel(PerturbationModel):
    """A model with the course's interface that trains instantly and records what it saw.

    The prediction is the target's control cells plus ``scale`` times the mean shift (stimulated minus
    control) of the other types; the validation loss of epoch e is ``(2 - quality) / (e + 1)``, so a low
    ``quality`` marks a trial that pruning should stop (the total ``val_loss`` is constant: pruning must
    read the reconstruction part). ``scale=nan`` predicts NaN.
    """

    name = "fake"
    seen: list[dict] = []

    def __init__(self, adata, *, quality: float = 1.0, **options):
        super().__init__(adata, hyperparameters={"quality": quality}, **options)
        self.quality = quality
        pairs = adata.obs[["cell_type", "condition"]].astype(str).itertuples(index=False)
        self.record = {
            "seed": self.seed,
            "quality": quality,
            "trained_on": set(pairs),
            "genes": list(adata.var_names),
        }
        FakeModel.seen.append(self.record)

    def train(self, n_epochs: int = 3, *, batch_size: int = 128, verbose: bool = True, on_epoch_end=None):
        self.record["batch_size"] = batch_size
        for epoch in range(n_epochs):
            if on_epoch_end is not None:
                on_epoch_end(
                    epoch, {"val_loss": 9.0, "val_reconstruction": (2.0 - self.quality) / (epoch + 1)}
                )
        return self

    def predict(self, target=None, *, query=None, scale: float = 1.0):
        self.record["target"], self.record["scale"] = target, scale
        target, query = self._resolve(target, query)
        others = self.cell_types != target
        X = self.X
        shift = X[others & self.is_stim].mean(0) - X[others & self.is_ctrl].mean(0)
        predicted = np.maximum(as_dense(query.X) + scale * shift, 0)
        return self._prediction(predicted, query, target)


def data_axes(figure) -> list:
    """Visible axes of a figure that are not colour bars."""
    return [axes for axes in figure.axes if axes.get_visible() and not hasattr(axes, "_colorbar")]


def assert_labelled(figure, *, key: bool = True) -> None:
    """A Figure whose every panel has a title (or the figure a suptitle), axis labels, and (with
    ``key``) a legend or a colour bar; and that reads in the book: no wider than the content column, no text
    smaller than :data:`~course_lib.plotting.style.ANNOTATION_SIZE`, no text cut off at the edge."""
    from matplotlib.figure import Figure
    from matplotlib.text import Text

    from course_lib.plotting.style import ANNOTATION_SIZE, MAX_WIDTH

    assert isinstance(figure, Figure)
    suptitle = figure.get_suptitle()
    for axes in data_axes(figure):
        assert axes.get_title() or suptitle
        assert axes.get_xlabel() and axes.get_ylabel()
    has_legend = bool(figure.legends) or any(axes.get_legend() for axes in figure.axes)
    has_colorbar = any(hasattr(axes, "_colorbar") for axes in figure.axes)
    assert has_legend or has_colorbar or not key
    assert figure.get_figwidth() <= MAX_WIDTH + 1e-9, (
        f"{figure.get_figwidth():.2f} in is wider than the column"
    )
    for text in figure.findobj(Text):
        if text.get_visible() and text.get_text().strip():
            assert text.get_fontsize() >= ANNOTATION_SIZE, f"{text.get_text()!r} is {text.get_fontsize()} pt"
    figure.canvas.draw()
    drawn = figure.get_tightbbox(figure.canvas.get_renderer())  # inches, of everything drawn
    width, height = figure.get_size_inches()
    margin = 0.02  # anti-aliasing
    assert drawn.x0 >= -margin and drawn.y0 >= -margin, f"text is cut off at the left or bottom: {drawn}"
    assert drawn.x1 <= width + margin and drawn.y1 <= height + margin, f"text is cut off: {drawn}"


ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted(path.stem for path in (ROOT / "book").glob("*.py"))
SMALL = read_profiles()["small"]


@pytest.fixture(scope="session")
def book_copy(tmp_path_factory):
    """A copy of the book sources in which the tests put their executed chapters."""
    target = tmp_path_factory.mktemp("book")
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy(ROOT / name, target / name)
    shutil.copytree(ROOT / "book", target / "book", ignore=shutil.ignore_patterns("*.ipynb", "*.stamp"))
    return target


@pytest.fixture(scope="session")
def built_book(book_copy) -> subprocess.CompletedProcess:
    """The book of :func:`book_copy` built once with Jupyter Book (warnings as errors).

    Chapters that no test executed yet (a run of the site tests alone) are executed first, with the
    small profile.
    """
    from course_lib.book import execute_chapter

    for chapter in CHAPTERS:
        executed = book_copy / "book" / f"{chapter}.ipynb"
        if not executed.exists():
            execute_chapter(ROOT / "book" / f"{chapter}.py", executed, parameters=SMALL)
    return subprocess.run(
        [Path(sys.executable).with_name("jupyter-book"), "build", book_copy, "-W", "--keep-going"],
        capture_output=True,
        text=True,
    )


@pytest.fixture(scope="session")
def site(built_book, book_copy) -> Path:
    """The folder of the built site (``_build/html``); skips when the build failed (its own test fails)."""
    if built_book.returncode != 0:
        pytest.skip("the book did not build (see test_book_builds_and_every_chapter_shows_its_figures)")
    return book_copy / "_build" / "html"


SKIP_BROWSER = "COURSE_SKIP_BROWSER_TESTS"
"""Set to 1 to skip the browser tests where no Chromium can be installed; CI never sets it."""


@pytest.fixture(scope="session")
def chromium() -> str:
    """Headless Chromium (or Google Chrome): ``$CHROMIUM``, else the first one on ``PATH``.

    A missing browser fails the test, so that the browser tests never skip silently (``.ci/run`` installs
    one with ``.ci/install-chromium.sh``); :data:`SKIP_BROWSER` turns the failure into a skip.
    """
    names = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
    found = os.environ.get("CHROMIUM") or next(filter(None, map(shutil.which, names)), None)
    if found:
        return found
    problem = (
        "headless Chromium is not installed: run `sudo bash .ci/install-chromium.sh` or install Chromium"
    )
    if os.environ.get(SKIP_BROWSER) == "1":
        pytest.skip(problem)
    pytest.fail(f"{problem}, or set {SKIP_BROWSER}=1 to skip the browser tests.")


def headless_chromium(
    chromium: str, page: Path | str, profile: Path, *options: str
) -> subprocess.CompletedProcess:
    """Open ``page`` (a file or a URL) in headless Chromium with a fresh profile and no network use beyond
    the page."""
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
    ]
    url = page.as_uri() if isinstance(page, Path) else page
    return subprocess.run(
        [chromium, *flags, *options, url], capture_output=True, text=True, timeout=180, check=False
    )


def fresh_environment(folder: Path) -> Path:
    """A new virtual environment in ``folder`` that sees the installed pinned packages (pip included) but
    not course_lib, whose editable install is not carried over; returns its Python."""
    venv.create(folder, with_pip=False)
    python = folder / "bin" / "python"
    site_packages = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    installed = next(Path(p) for p in sys.path if p.endswith("site-packages"))
    Path(site_packages, "dependencies.pth").write_text(f"{installed}\n")
    return python
