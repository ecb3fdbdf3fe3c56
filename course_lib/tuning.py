"""Hyperparameter search with Optuna, scored on a validation cell type and never on the test type.

A held-out-type experiment hides the stimulated cells of a test type T and asks a model to predict them.
Choosing hyperparameters by their score on T uses the answer to pick the model: the best of n trials is
then partly the luckiest of n draws, and the number it reports is optimistic. :func:`tune` therefore
hides the stimulated cells of a second, *validation* type V as well, trains every trial on what is left
and scores its prediction of V; T's stimulated cells are not read until :func:`evaluate_on_test`
retrains the chosen settings and scores them once on T. :func:`tune_on_test` runs the same search
scored on T (the pitfall), so that a chapter can measure how much it flatters.

Searches
--------
``search="grid"``
    The original tutorial's 2 x 2 grids, :data:`GRIDS` (Optuna's ``GridSampler``, seed 42): every
    combination is trained once, to completion.
``search="tpe"``
    A Bayesian search (tree-structured Parzen estimator, seeded; its first trials are random) over the
    wider spaces of :data:`SEARCH_SPACES`, with pruning: after every epoch a trial reports its
    validation reconstruction loss (on the model's own random validation split of the training cells)
    and a ``MedianPruner`` stops it when that loss is worse than the median of the earlier trials at the
    same epoch.

Every trial trains with the same model seed, so that trials differ by their hyperparameters and not
by their initialisation ("common random numbers"); the same seeds give the same trials.

Several workers, one study
--------------------------
With ``storage`` (:func:`open_storage`: a journal file, or any SQLAlchemy URL) a search is an Optuna
study that outlives its process: several workers (processes, nodes, jobs of the workflow) started at
once on the same storage and study name add trials to one study, and running the search again resumes
it. ``n_trials`` is then the study's size: a worker starts trials until the study holds ``n_trials``
(its own, the other workers' and earlier runs'; workers that start a trial at the same moment can pass
it by one each). A worker records a heartbeat in its running trial every ``heartbeat_interval``
seconds; a trial whose heartbeat is older than ``grace_period`` belonged to a worker that died, and the
next worker to look (when it starts, after each trial, and while it waits at the end) marks it failed
and queues its parameters again (:func:`fail_stale_trials`). A worker returns when no trial of the study
is running any more, so that the last one standing finishes a dead worker's trial.
Optuna's journal storage has no heartbeat of its own, and one mechanism serves every storage.

The command line runs one worker: ``python -m course_lib.tuning --help``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import socket
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import anndata as ad
import numpy as np
import optuna
import pandas as pd
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
    distribution_to_json,
)
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial, TrialState

from course_lib import metrics
from course_lib.benchmark import BenchmarkGrid, run_benchmark, summarise, write_atomic
from course_lib.benchmark.points import KANG2018, DataSource
from course_lib.checks import as_dense, require_positive_int, require_seed
from course_lib.experiment import (
    HeldOutSplit,
    default_setting,
    held_out_split,
    model_class,
    model_spec,
    resolve_cell_types,
    train_model,
)
from course_lib.keys import DEFAULT_KEYS, ObsKeys
from course_lib.models import TrainingDivergedError
from course_lib.preprocessing import subsample

GRIDS: dict[str, dict[str, tuple]] = {
    "scgen": {"n_layers": (1, 3), "dropout": (0.05, 0.30)},
    "scpram": {"n_latent": (16, 64), "ratio": (0.002, 0.02)},
}
"""The original tutorial's 2 x 2 grids: scGen depth x dropout, scPRAM latent size x attention ratio."""

SEARCH_SPACES: dict[str, dict[str, BaseDistribution]] = {
    "scgen": {
        "n_layers": IntDistribution(1, 3),
        "n_hidden": CategoricalDistribution((128, 256, 512, 800)),
        "n_latent": IntDistribution(10, 100, log=True),
        "dropout": FloatDistribution(0.0, 0.5),
        "kl_weight": FloatDistribution(1e-6, 1e-2, log=True),
        "lr": FloatDistribution(1e-4, 1e-2, log=True),
    },
    "scpram": {
        "n_latent": IntDistribution(16, 128, log=True),
        "n_hidden": CategoricalDistribution((128, 256, 512, 1000)),
        "noise_rate": FloatDistribution(0.0, 0.3),
        "kl_weight": FloatDistribution(1e-6, 1e-2, log=True),
        "ratio": FloatDistribution(1e-3, 0.1, log=True),
        "lr": FloatDistribution(5e-5, 5e-3, log=True),
    },
}
"""The wider spaces of the TPE search, around the reference defaults (models.md):

=============  ====================  ==========  ====================  ==========
parameter      scGen range           default     scPRAM range          default
=============  ====================  ==========  ====================  ==========
n_layers       1 to 3                2           (fixed by the model)
n_hidden       128, 256, 512, 800    800         128, 256, 512, 1000   1000
n_latent       10 to 100 (log)       100         16 to 128 (log)       100
dropout        0 to 0.5              0.2         (none in the model)
noise_rate     (none in the model)               0 to 0.3              0.1
kl_weight      1e-6 to 1e-2 (log)    5e-5        1e-6 to 1e-2 (log)    5e-4
ratio          (no attention)                    0.001 to 0.1 (log)    0.05
lr             1e-4 to 1e-2 (log)    3e-3        5e-5 to 5e-3 (log)    5e-4
=============  ====================  ==========  ====================  ==========

Rates and weights span two to four orders of magnitude on a log scale; the scPRAM ranges hold the
tutorial's choices (lr 5e-5, ratio 0.002 to 0.02, latent 16 and 64). Widths stop at the reference
width, which is also the slowest setting.

:meta hide-value:
"""

GRID_SEED = 42
"""Seed of the tutorial's ``GridSampler``; also the default seed of the TPE sampler."""

TPE_STARTUP_TRIALS = 5
"""Random trials before TPE models the results (Optuna's default, 10, would leave a budget of 10-20
trials little else)."""

DEFAULT_OBJECTIVE = "delta_r2_all"
"""Metric a search maximises by default; see :func:`tune` for why it is not the tutorial's R² of means."""

HEARTBEAT_INTERVAL = 10.0
"""Seconds between two heartbeats of a running trial in a shared study."""

GRACE_PERIOD = 60.0
"""Seconds without a heartbeat after which a running trial of a shared study counts as dead."""

WORKER = "worker"
"""User attribute of a trial of a shared study: the worker that ran it (number, host and process)."""

HEARTBEAT = "heartbeat"
"""User attribute of a running trial: the time (seconds since the epoch) of its worker's last heartbeat."""

SEARCH_ATTR = "search"
"""Study user attribute: what the search is (model, space, objective, ...), checked when a study resumes."""

DEFAULT_STORAGE = "tuning.journal"
"""The command line's storage: a journal file in the working directory."""


def default_params(
    model: str, names: Sequence[str], *, registry: Mapping[str, type] | None = None
) -> dict[str, Any]:
    """The values that ``model`` uses for the parameters ``names`` when they are not passed
    (constructor, ``train`` or ``predict``; :meth:`course_lib.models.PerturbationModel.hyperparameters`).

    A tuned-versus-default comparison must change only the tuned parameters: train the defaults with
    ``{**fixed, **default_params(model, tuned)}`` next to ``{**fixed, **tuned}``.
    """
    return default_setting(model_class(model, registry), names)


def _number(value: float, *, scientific: bool | None = None) -> str:
    """A number as a reader writes it: ``0.5``, ``128``, ``1e-4``: scientific (without a zero-padded
    exponent) below 0.01, unless ``scientific`` says otherwise."""
    if scientific is None:
        scientific = value != 0 and abs(value) < 0.01
    if not scientific or isinstance(value, bool):
        return f"{value:g}"
    mantissa, exponent = f"{value:e}".split("e")
    return f"{float(mantissa):g}e{int(exponent)}"


def describe_distribution(distribution: BaseDistribution | Sequence) -> str:
    """A search-space entry in words, e.g. ``"1 to 3, integers"``, ``"1e-4 to 1e-2, log scale"`` or
    ``"128, 256, 512 or 800"`` (a list of values reads like a categorical distribution)."""
    if not isinstance(distribution, BaseDistribution):
        distribution = CategoricalDistribution(tuple(distribution))
    if isinstance(distribution, CategoricalDistribution):
        choices = [_number(c) if isinstance(c, int | float) else str(c) for c in distribution.choices]
        return choices[0] if len(choices) == 1 else f"{', '.join(choices[:-1])} or {choices[-1]}"
    if isinstance(distribution, IntDistribution | FloatDistribution):
        low, high = distribution.low, distribution.high
        scientific = isinstance(distribution, FloatDistribution) and 0 < min(abs(low), abs(high)) < 0.01
        parts = [f"{_number(low, scientific=scientific)} to {_number(high, scientific=scientific)}"]
        if isinstance(distribution, IntDistribution):
            parts.append(
                "integers" if distribution.step == 1 else f"integers in steps of {distribution.step}"
            )
        elif distribution.step is not None:
            parts.append(f"in steps of {_number(distribution.step)}")
        if distribution.log:
            parts.append("log scale")
        return ", ".join(parts)
    raise TypeError(f"unsupported distribution: {type(distribution).__name__}.")


def search_space_table(
    model: str,
    space: Mapping[str, Sequence | BaseDistribution] | None = None,
    *,
    registry: Mapping[str, type] | None = None,
) -> pd.DataFrame:
    """The search space of ``model`` (default :data:`SEARCH_SPACES` ``[model]``) as a table to read: one
    row per parameter, its range in words (:func:`describe_distribution`) and the model's default."""
    space = SEARCH_SPACES[model] if space is None else space
    defaults = default_params(model, list(space), registry=registry)
    return pd.DataFrame(
        {
            "range searched": [describe_distribution(space[name]) for name in space],
            "default": [
                _number(defaults[name]) if isinstance(defaults[name], int | float) else str(defaults[name])
                for name in space
            ],
        },
        index=pd.Index(list(space), name="parameter"),
    )


# ---------------------------------------------------------------------------------------------
# The search
# ---------------------------------------------------------------------------------------------


def _as_distributions(space: Mapping[str, Sequence | BaseDistribution]) -> dict[str, BaseDistribution]:
    """A search space with every list of values turned into a categorical distribution."""
    return {
        name: values if isinstance(values, BaseDistribution) else CategoricalDistribution(tuple(values))
        for name, values in space.items()
    }


def _suggest(trial: optuna.Trial, name: str, distribution: BaseDistribution) -> Any:
    """Ask ``trial`` for a value of ``name`` drawn from ``distribution``."""
    if isinstance(distribution, CategoricalDistribution):
        return trial.suggest_categorical(name, distribution.choices)
    if isinstance(distribution, IntDistribution):
        return trial.suggest_int(
            name, distribution.low, distribution.high, step=distribution.step, log=distribution.log
        )
    if isinstance(distribution, FloatDistribution):
        return trial.suggest_float(
            name, distribution.low, distribution.high, step=distribution.step, log=distribution.log
        )
    raise TypeError(f"unsupported distribution for {name!r}: {distribution!r}.")


@contextmanager
def _optuna_logging(verbose: bool):
    """Optuna's per-trial log lines while the block runs when ``verbose``, only its warnings otherwise."""
    previous = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(previous if verbose else optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(previous)


def open_storage(storage: str | Path | BaseStorage | None) -> BaseStorage | None:
    """The Optuna storage named by ``storage``: ``None`` (in memory), a storage object, a SQLAlchemy URL
    (``sqlite:///tuning.db``, ``postgresql://...``: :class:`optuna.storages.RDBStorage`) or the path of a
    journal file (:class:`optuna.storages.JournalStorage` with a file backend; its folder is created).

    A journal file needs no server and works on a shared file system; a database server suits many
    workers. SQLite allows one writer at a time, so its workers wait for each other.
    """
    if storage is None or isinstance(storage, BaseStorage):
        return storage
    text = str(storage)
    if "://" in text:
        return RDBStorage(text)
    path = Path(text)
    if path.is_dir():
        raise ValueError(
            f"storage {text!r} is a folder; name a journal file in it, e.g. {path / DEFAULT_STORAGE}."
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(path)))


def lost_trials(trials: Sequence[FrozenTrial]) -> set[int]:
    """Numbers of the trials whose worker died (failed by :func:`fail_stale_trials` and queued again)."""
    return {number for trial in trials for number in trial.system_attrs.get("retry_history", [])}


def heartbeat_age(trial: FrozenTrial, now: float) -> float:
    """Seconds since the last heartbeat of a running trial (since its start, before the first one)."""
    last = trial.user_attrs.get(HEARTBEAT)
    if last is None:
        last = trial.datetime_start.timestamp() if trial.datetime_start else now
    return now - float(last)


def fail_stale_trials(study: optuna.Study, *, grace_period: float = GRACE_PERIOD) -> list[int]:
    """Mark failed every running trial whose heartbeat is older than ``grace_period`` seconds and queue
    its parameters again (Optuna's ``RetryHeartbeatStaleTrialCallback``: the new trial records the
    failed one's number in its ``retry_history``); return their numbers.

    Such a trial's worker died (killed, out of memory, its node lost): without this, the trial would
    stay running forever and, in a grid search, its grid point would never be scored.
    """
    now = time.time()
    failed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if heartbeat_age(trial, now) <= grace_period:
            continue
        # The sampler sees every tell; a GridSampler would try to stop an optimisation that is not running.
        sampler, study.sampler = study.sampler, optuna.samplers.RandomSampler()
        try:
            dead = study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
        finally:
            study.sampler = sampler
        with warnings.catch_warnings():  # experimental since Optuna 2.8, and what Optuna's RDB heartbeat uses
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.RetryHeartbeatStaleTrialCallback()(study, dead)
        failed.append(trial.number)
    return failed


def with_heartbeat(
    objective: Callable[[optuna.Trial], float], interval: float, *, worker: int = 0
) -> Callable[[optuna.Trial], float]:
    """``objective`` with a thread that records :data:`HEARTBEAT` in the trial every ``interval`` seconds
    while it runs; the trial also records its :data:`WORKER`."""
    name = f"{worker} ({socket.gethostname()}, process {os.getpid()})"

    def beating(trial: optuna.Trial) -> float:
        trial.set_user_attr(WORKER, name)
        stop = threading.Event()

        def beat() -> None:
            while True:
                trial.set_user_attr(HEARTBEAT, time.time())
                if stop.wait(interval):
                    return

        thread = threading.Thread(target=beat, name=f"heartbeat of trial {trial.number}", daemon=True)
        thread.start()
        try:
            return objective(trial)
        finally:
            stop.set()
            thread.join()

    return beating


def worker_seed(sampler_seed: int, worker: int, n_trials_before: int) -> int:
    """The TPE sampler seed of a worker: ``sampler_seed`` for the only worker of a new study, else a seed
    drawn from ``sampler_seed``, the worker's number and the trials already in the study, so that
    workers and resumed runs do not repeat each other's draws."""
    if worker == 0 and n_trials_before == 0:
        return sampler_seed
    return int(np.random.SeedSequence([sampler_seed, worker, n_trials_before]).generate_state(1)[0])


@dataclass(frozen=True)
class Search:
    """Everything that defines a search except the cell type it scores (see :func:`tune`)."""

    model: str
    registry: Mapping[str, type] | None
    test_type: str
    search: Literal["grid", "tpe"]
    space: dict[str, BaseDistribution]
    n_trials: int
    n_epochs: int
    objective_metric: str
    fixed_params: dict[str, Any]
    seed: int
    sampler_seed: int
    pruner: optuna.pruners.BasePruner
    loss_key: str
    n_top_genes: int
    keys: ObsKeys
    storage: BaseStorage | None = None
    study_name: str | None = None
    worker: int = 0
    heartbeat_interval: float = HEARTBEAT_INTERVAL
    grace_period: float = GRACE_PERIOD

    def sampler(self, seed: int | None = None) -> optuna.samplers.BaseSampler:
        """The seeded sampler (``sampler_seed`` unless ``seed``): Optuna's ``GridSampler`` or TPE."""
        seed = self.sampler_seed if seed is None else seed
        if self.search == "grid":
            grid = {name: list(distribution.choices) for name, distribution in self.space.items()}
            return optuna.samplers.GridSampler(grid, seed=seed)
        return optuna.samplers.TPESampler(n_startup_trials=TPE_STARTUP_TRIALS, seed=seed)

    def describe(self, scored_type: str) -> dict[str, Any]:
        """What makes two runs the same search (stored in a shared study and checked when it resumes)."""
        return {
            "model": self.model,
            "search": self.search,
            "space": {name: json.loads(distribution_to_json(d)) for name, d in sorted(self.space.items())},
            "n_epochs": self.n_epochs,
            "objective_metric": self.objective_metric,
            "fixed_params": json.loads(json.dumps(self.fixed_params, sort_keys=True, default=str)),
            "seed": self.seed,
            "loss_key": self.loss_key,
            "n_top_genes": self.n_top_genes,
            "test_type": self.test_type,
            "scored_type": scored_type,
        }

    def shared_study(self, name: str, direction: str, scored_type: str) -> optuna.Study:
        """The study ``name`` in :attr:`storage`, created or loaded; raises when it holds another search."""
        study = optuna.create_study(
            study_name=name,
            storage=self.storage,
            direction=direction,
            pruner=self.pruner,
            load_if_exists=True,
        )
        wanted = self.describe(scored_type)
        stored = study.user_attrs.get(SEARCH_ATTR)
        if stored is None:
            study.set_user_attr(SEARCH_ATTR, wanted)
        elif stored != wanted:
            differ = sorted(key for key in {*stored, *wanted} if stored.get(key) != wanted.get(key))
            raise ValueError(
                f"the study {name!r} in this storage holds another search (differing: {differ}); choose "
                "another study name, or another storage, for this one."
            )
        if study.direction.name.lower() != direction:
            raise ValueError(f"the study {name!r} is {study.direction.name.lower()}d, not {direction}d.")
        n_before = len(study.get_trials(deepcopy=False))
        # A GridSampler's seed shuffles the grid: every worker needs the same one to agree on grid ids.
        seed = (
            self.sampler_seed
            if self.search == "grid"
            else worker_seed(self.sampler_seed, self.worker, n_before)
        )
        study.sampler = self.sampler(seed)
        return study

    def run_worker(
        self, study: optuna.Study, objective: Callable[[optuna.Trial], float], *, verbose: bool
    ) -> None:
        """Add trials to a shared study until it holds :attr:`n_trials` and none of them is running."""
        grid = isinstance(study.sampler, optuna.samplers.GridSampler)

        def full() -> bool:
            trials = study.get_trials(deepcopy=False)
            lost = lost_trials(trials)
            waiting = any(trial.state == TrialState.WAITING for trial in trials)
            counted = [t for t in trials if t.number not in lost and t.state != TrialState.WAITING]
            exhausted = grid and study.sampler.is_exhausted(study) and not waiting
            return len(counted) >= self.n_trials or exhausted

        def after_trial(study: optuna.Study, trial: FrozenTrial) -> None:
            fail_stale_trials(study, grace_period=self.grace_period)
            if full():
                study.stop()

        beating = with_heartbeat(objective, self.heartbeat_interval, worker=self.worker)
        fail_stale_trials(study, grace_period=self.grace_period)
        while True:
            if not full():
                study.optimize(
                    beating, n_trials=self.n_trials, callbacks=[after_trial], show_progress_bar=verbose
                )
            elif study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                time.sleep(self.heartbeat_interval)  # another worker's trial runs, or a dead one goes stale
                fail_stale_trials(study, grace_period=self.grace_period)
            else:
                return

    def split(self, counts: ad.AnnData, scored_type: str) -> HeldOutSplit:
        """Hide the stimulated cells of the test type and of ``scored_type``; choose genes on the cells
        left (the training cells) with :func:`course_lib.experiment.held_out_split`."""
        withheld = () if scored_type == self.test_type else (self.test_type,)
        return held_out_split(
            counts, scored_type, n_top_genes=self.n_top_genes, withheld=withheld, keys=self.keys
        )

    def run(self, counts: ad.AnnData, *, scored_type: str, verbose: bool) -> TuningResult:
        """Run the search, every trial trained on :meth:`split` and scored on ``scored_type``."""
        data = self.split(counts, scored_type)
        higher_is_better = metrics.METRICS[self.objective_metric].higher_is_better
        # Intermediate values are compared in the study's direction: report the loss so that better is
        # larger when the objective is maximised, or the pruner would stop the best trials.
        loss_sign = -1.0 if higher_is_better else 1.0

        def objective(trial: optuna.Trial) -> float:
            params = {key: _suggest(trial, key, distribution) for key, distribution in self.space.items()}

            def on_epoch_end(epoch: int, history_row: Mapping[str, float]) -> None:
                trial.set_user_attr("epochs", epoch + 1)
                trial.report(loss_sign * history_row[self.loss_key], step=epoch)
                if trial.should_prune():
                    raise optuna.TrialPruned(
                        f"{self.loss_key} {history_row[self.loss_key]:.4g} at epoch {epoch}"
                    )

            spec = model_spec(
                self.model, {**self.fixed_params, **params}, n_epochs=self.n_epochs, registry=self.registry
            )
            try:
                model, _ = train_model(
                    spec, data.train, seed=self.seed, keys=self.keys, on_epoch_end=on_epoch_end
                )
            except TrainingDivergedError as error:
                trial.set_user_attr("error", str(error))
                return math.nan  # Optuna records the trial as failed and the search goes on
            prediction = model.predict(target=scored_type, **spec.predict)
            if not np.isfinite(as_dense(prediction.X)).all():
                trial.set_user_attr("error", "the prediction holds NaN or infinite values")
                return math.nan
            scores = metrics.evaluate(
                data.query,
                data.truth,
                {"trial": prediction},
                n_bootstrap=0,
                n_ceiling_splits=0,
                verbose=False,
                keys=self.keys,
            )
            trial.set_user_attr("scores", dict(zip(scores["metric"], scores["value"], strict=True)))
            return trial.user_attrs["scores"][self.objective_metric]

        name = self.study_name or f"{self.model} {self.search} search scored on {scored_type}"
        direction = "maximize" if higher_is_better else "minimize"
        with _optuna_logging(verbose):
            if self.storage is None:
                study = optuna.create_study(
                    study_name=name, direction=direction, sampler=self.sampler(), pruner=self.pruner
                )
                study.optimize(objective, n_trials=self.n_trials, show_progress_bar=verbose)
            else:
                study = self.shared_study(name, direction, scored_type)
                self.run_worker(study, objective, verbose=verbose)
        return TuningResult(study=study, model=self.model, scored_type=scored_type, search=self)


@dataclass(frozen=True)
class TuningResult:
    """The outcome of a search: the Optuna study and what it was scored on.

    Attributes
    ----------
    study
        The ``optuna.Study``; pass it to ``optuna.visualization.matplotlib`` or
        ``optuna.importance`` for more than :attr:`trials` shows.
    model
        Name of the model in the registry.
    scored_type
        The cell type whose prediction every trial was scored on: the validation type for
        :func:`tune`, the test type for :func:`tune_on_test`.
    """

    study: optuna.Study
    model: str
    scored_type: str
    search: Search = field(repr=False)

    @property
    def test_type(self) -> str:
        return self.search.test_type

    @property
    def scored_on_test(self) -> bool:
        """True when the search was scored on the test type: its numbers are optimistic (see the module)."""
        return self.scored_type == self.search.test_type

    @property
    def objective_metric(self) -> str:
        return self.search.objective_metric

    @property
    def best_params(self) -> dict[str, Any]:
        """The searched parameters of the best complete trial (the fixed parameters are not included)."""
        return self.study.best_params

    @property
    def best_value(self) -> float:
        """The objective of the best complete trial, on :attr:`scored_type`."""
        return self.study.best_value

    @property
    def scores(self) -> pd.DataFrame:
        """Every metric of every complete trial on :attr:`scored_type` (plain estimates, no bootstrap).

        Columns ``trial, metric, value``; shows whether another objective would have chosen otherwise.
        """
        rows = [
            (trial.number, metric, value)
            for trial in self.study.trials
            for metric, value in trial.user_attrs.get("scores", {}).items()
        ]
        return pd.DataFrame(rows, columns=["trial", "metric", "value"])

    @property
    def trials(self) -> pd.DataFrame:
        """One row per trial: ``trial, state, value, epochs, seconds, val_loss`` and one column per parameter.

        ``state`` is ``complete``, ``pruned`` or ``fail``; ``value`` is the objective on
        :attr:`scored_type` (NaN unless complete); ``epochs`` the epochs trained; ``seconds`` the wall
        time of the trial (training, prediction and scoring); ``val_loss`` the last value of the loss
        that pruning reads.
        """
        sign = -1.0 if self.study.direction == optuna.study.StudyDirection.MAXIMIZE else 1.0
        rows = []
        for trial in self.study.trials:
            losses = trial.intermediate_values
            rows.append(
                {
                    "trial": trial.number,
                    "state": trial.state.name.lower(),
                    "value": trial.value if trial.state == optuna.trial.TrialState.COMPLETE else math.nan,
                    "epochs": trial.user_attrs.get("epochs", 0),
                    "seconds": trial.duration.total_seconds() if trial.duration else math.nan,
                    "val_loss": sign * losses[max(losses)] if losses else math.nan,
                    **trial.params,
                }
            )
        return pd.DataFrame(rows)


def tune(
    adata: ad.AnnData,
    model: str = "scgen",
    *,
    test_type: str,
    validation_type: str,
    search: Literal["grid", "tpe"] = "grid",
    space: Mapping[str, Sequence | BaseDistribution] | None = None,
    n_trials: int | None = None,
    n_epochs: int = 10,
    objective_metric: str = DEFAULT_OBJECTIVE,
    fixed_params: Mapping[str, Any] | None = None,
    seed: int = 0,
    sampler_seed: int = GRID_SEED,
    pruner: optuna.pruners.BasePruner | None = None,
    loss_key: str = "val_reconstruction",
    n_top_genes: int = 2000,
    min_cells: int = 100,
    registry: Mapping[str, type] | None = None,
    verbose: bool = True,
    keys: ObsKeys = DEFAULT_KEYS,
    storage: str | Path | BaseStorage | None = None,
    study_name: str | None = None,
    worker: int = 0,
    heartbeat_interval: float = HEARTBEAT_INTERVAL,
    grace_period: float = GRACE_PERIOD,
) -> TuningResult:
    """Search hyperparameters of ``model``, each trial scored on its prediction of ``validation_type``.

    The stimulated cells of ``test_type`` and of ``validation_type`` are hidden, and the genes are
    normalised and chosen on the remaining (training) cells, as :mod:`course_lib.benchmark` does for one
    held-out type. Every trial trains on them, predicts the stimulated state of ``validation_type`` from
    its control cells and is scored on its real stimulated cells. The test type's stimulated cells are
    never read: the result says which settings to retrain with :func:`evaluate_on_test`.

    Parameters
    ----------
    adata
        Raw counts (in ``.X`` or ``layers['counts']``) of every type, control and stimulated, e.g.
        :func:`course_lib.datasets.kang2018`.
    model
        A name in ``registry``.
    test_type, validation_type
        The held-out test type and the type that scores the trials; they must differ, and each needs
        ``min_cells`` control and ``min_cells`` stimulated cells.
    search
        ``"grid"``: every combination of :data:`GRIDS` ``[model]`` (or of ``space``), no pruning.
        ``"tpe"``: a seeded TPE search over :data:`SEARCH_SPACES` ``[model]`` (or ``space``), pruned.
    space
        Parameter name -> list of values (a grid) or Optuna distribution (``tpe`` only). A name can
        be an option of the model's constructor, ``train`` or ``predict``.
    n_trials
        Number of trials; default the size of the grid, or 20 for ``tpe``.
    n_epochs
        Epochs per trial (a trial can stop earlier: pruning, the model's early stopping).
    objective_metric
        A name of :data:`course_lib.metrics.METRICS`, maximised or minimised as it is better, computed
        without bootstrap. The default, ``delta_r2_all`` (R² of the predicted against the real mean
        shift from control), scores the *response*. The tutorial's ``r2_mean_all`` (R² of mean
        expression) is dominated by the control profile that a model only has to reproduce (the
        identity prediction scores about 0.8 on Kang), so it rewards reconstruction more than
        perturbation. On ``delta_r2_all`` the identity scores about 0, and the genes that respond
        most dominate the sum of squares without a differential-expression step on a small type.
    fixed_params
        Parameters held fixed in every trial (``batch_size``, ``patience``, a smaller ``n_hidden`` for
        speed, ...); they must not overlap the searched ones.
    seed
        Seed of every trial's model: trials differ only by their parameters.
    sampler_seed
        Seed of the sampler (42, the tutorial's grid seed, by default).
    pruner
        Optuna pruner; default ``MedianPruner(n_startup_trials=3, n_warmup_steps=2)`` for ``tpe`` (a
        trial is compared from its third epoch on, once three trials have finished) and none for
        ``grid``, whose point is to see every combination.
    loss_key
        Column of the model's per-epoch history that pruning reads. The default, the reconstruction
        part of the validation loss, compares trials with different ``kl_weight`` fairly; the total
        ``val_loss`` weighs its KL term by ``kl_weight``, a searched parameter.
    n_top_genes
        Highly variable genes, chosen on the training cells.
    min_cells
        Control and stimulated cells that the test and the validation type need at least (see
        :func:`course_lib.experiment.cell_type_eligibility`).
    registry
        Model name -> class; default ``course_lib.models.MODELS``.
    verbose
        Optuna's progress bar and per-trial log lines; ``False`` silences both.
    storage
        Where the study lives (:func:`open_storage`): ``None`` keeps it in memory; a journal file or a
        SQLAlchemy URL makes it a shared, resumable study (see "Several workers, one study" above), in
        which ``n_trials`` is the size of the study, not of this call.
    study_name
        The study's name in ``storage``; default ``"<model> <search> search scored on <type>"``. A
        study that exists is resumed when it holds the same search, and refused otherwise.
    worker
        This worker's number among those sharing the study (0, 1, ...): it seeds the sampler apart
        from the others' (:func:`worker_seed`).
    heartbeat_interval, grace_period
        Seconds between two heartbeats of a running trial, and without one before the trial counts as
        dead (shared studies only; keep ``grace_period`` several intervals long).

    Returns
    -------
    TuningResult
        The study, its tidy :attr:`~TuningResult.trials` table and the best parameters.

    Notes
    -----
    Pruning judges a trial by a proxy, its loss on the model's own random validation split of the
    training cells, not by the objective: a trial that reconstructs well early is kept, whatever it
    later predicts.
    """
    if validation_type == test_type:
        raise ValueError(
            f"validation_type and test_type are both {test_type!r}: tuning on the test type makes the test "
            "score optimistic. Pick another cell type to validate on (tune_on_test runs the leaky search "
            "on purpose, to measure how much it flatters)."
        )
    model_class(model, registry)
    resolve_cell_types(adata, [test_type, validation_type], min_cells=min_cells, keys=keys)
    if search not in ("grid", "tpe"):
        raise ValueError(f"search must be 'grid' or 'tpe', not {search!r}.")
    if objective_metric not in metrics.METRICS:
        raise KeyError(
            f"unknown objective_metric {objective_metric!r}; choose one of {', '.join(metrics.METRICS)}."
        )
    if space is None:
        spaces = GRIDS if search == "grid" else SEARCH_SPACES
        if model not in spaces:
            raise KeyError(f"no default {search} space for {model!r}; pass space={{name: values}}.")
        space = spaces[model]
    space = _as_distributions(space)
    if search == "grid" and not all(isinstance(d, CategoricalDistribution) for d in space.values()):
        raise ValueError("a grid search needs a list of values for every parameter, not a distribution.")
    fixed_params = dict(fixed_params or {})
    if overlap := sorted(set(fixed_params) & set(space)):
        raise ValueError(f"{', '.join(overlap)} is both searched and fixed; drop it from fixed_params.")
    model_spec(model, {**fixed_params, **dict.fromkeys(space)}, n_epochs=n_epochs, registry=registry)
    if n_trials is None:
        n_trials = math.prod(len(d.choices) for d in space.values()) if search == "grid" else 20
    require_positive_int(n_trials, what="n_trials")
    require_seed(worker, what="worker")
    require_seed(seed)
    require_seed(sampler_seed, what="sampler_seed")
    if not 0 < heartbeat_interval < grace_period:
        raise ValueError(
            f"heartbeat_interval ({heartbeat_interval}) must be positive and shorter than grace_period "
            f"({grace_period}), or live trials would be failed as dead."
        )
    storage = open_storage(storage)
    if pruner is None:
        pruner = (
            optuna.pruners.NopPruner()
            if search == "grid"
            else optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=2)
        )
    settings = Search(
        model=model,
        registry=registry,
        test_type=test_type,
        search=search,
        space=space,
        n_trials=n_trials,
        n_epochs=n_epochs,
        objective_metric=objective_metric,
        fixed_params=fixed_params,
        seed=seed,
        sampler_seed=sampler_seed,
        pruner=pruner,
        loss_key=loss_key,
        n_top_genes=n_top_genes,
        keys=keys,
        storage=storage,
        study_name=study_name,
        worker=worker,
        heartbeat_interval=heartbeat_interval,
        grace_period=grace_period,
    )
    return settings.run(adata, scored_type=validation_type, verbose=verbose)


def tune_on_test(adata: ad.AnnData, honest: TuningResult, *, verbose: bool = True) -> TuningResult:
    """Repeat the search of ``honest`` scored on the test type: the pitfall, to measure it.

    Same model, space, sampler and model seeds, number of trials, epochs and objective; only the scored
    type changes, and with it the training data (only the test type's stimulated cells are hidden, as
    in the final run). Its :attr:`~TuningResult.best_value` is what a study that tuned on the test
    cells would report; compare it with the test score of the honestly tuned settings from
    :func:`evaluate_on_test`.
    """
    if honest.scored_on_test:
        raise ValueError("this search was already scored on the test type.")
    search = honest.search
    if search.study_name is not None:  # a study of its own next to the honest one
        search = dataclasses.replace(search, study_name=f"{search.study_name} (scored on the test type)")
    return search.run(adata, scored_type=honest.test_type, verbose=verbose)


# ---------------------------------------------------------------------------------------------
# Scoring the chosen settings on the test type
# ---------------------------------------------------------------------------------------------


def evaluate_on_test(
    adata: ad.AnnData,
    model: str,
    params: Mapping[str, Mapping[str, Any]],
    *,
    test_type: str,
    seeds: Sequence[int] = (0, 1, 2),
    n_epochs: int = 10,
    fixed_params: Mapping[str, Any] | None = None,
    include_default: bool = True,
    n_top_genes: int = 2000,
    min_cells: int = 100,
    evaluation: Mapping[str, Any] | None = None,
    results_path: str | Path | None = None,
    registry: Mapping[str, type] | None = None,
    verbose: bool = True,
    keys: ObsKeys = DEFAULT_KEYS,
) -> pd.DataFrame:
    """Retrain named parameter sets with several seeds and score each on the held-out test type.

    A :func:`course_lib.benchmark.run_benchmark` of ``model`` with one held-out type, the balanced data
    and one hyperparameter setting per entry of ``params`` (e.g. ``{"tuned": result.best_params}``, or
    several: tuned on the validation type, tuned on the test type), the identity and mean-shift
    baselines included. With ``include_default``, a ``"default"`` setting trains too, in which only the
    tuned parameters differ: they take the model's defaults (:func:`default_params`) while
    ``fixed_params`` stay. Pass the ``n_epochs``, ``fixed_params`` and ``n_top_genes`` of the search.
    Seeds are shared by the settings, so differences between settings are paired.

    ``evaluation`` goes to :func:`course_lib.metrics.evaluate` (the benchmark's default is a 100-round
    bootstrap); pass ``{"n_bootstrap": 0}`` to compare with a search's plain ``best_value``. The noise
    ceiling is off unless ``evaluation`` sets ``n_ceiling_splits``.
    ``results_path`` keeps the benchmark's resumable CSV (default: a temporary file).

    Returns
    -------
    pandas.DataFrame
        The benchmark's table (:data:`course_lib.benchmark.RESULT_COLUMNS`) with ``model`` naming the
        setting, e.g. ``"scgen (tuned)"``, ``"scgen (default)"``, ``"identity"``.
    """
    fixed_params = dict(fixed_params or {})
    settings = {label: {**fixed_params, **values} for label, values in params.items()}
    if include_default:
        tuned = list(dict.fromkeys(name for values in params.values() for name in values))
        settings["default"] = {**fixed_params, **default_params(model, tuned, registry=registry)}
    labels: dict[str, list[str]] = {}
    for label, setting in settings.items():
        labels.setdefault(
            model_spec(model, setting, n_epochs=n_epochs, registry=registry).settings, []
        ).append(label)
    grid = BenchmarkGrid(
        models=(model,),
        cell_types=(test_type,),
        seeds=tuple(seeds),
        variants=("balanced",),
        hyperparameters={model: list(settings.values())},
        n_epochs=n_epochs,
        min_cells=min_cells,
        n_top_genes=n_top_genes,
        evaluation={"n_ceiling_splits": 0, **(evaluation or {})},
    )
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "evaluate_on_test.csv" if results_path is None else results_path
        table = run_benchmark(adata, grid, results_path=path, registry=registry, verbose=verbose, keys=keys)
    is_model = table["model"] == model
    table.loc[is_model, "model"] = [
        f"{model} ({', '.join(labels[setting])})" for setting in table.loc[is_model, "hyperparameters"]
    ]
    return table


def leakage_summary(scores: pd.DataFrame, leaky: TuningResult) -> pd.DataFrame:
    """What tuning on the test type reports, next to what retrained settings score on it.

    ``scores`` comes from :func:`evaluate_on_test` (include the leaky search's ``best_params`` as a
    setting) and ``leaky`` from :func:`tune_on_test`. The first row is the leaky search's best trial:
    the number a study that tuned on the test cells would publish, the best of its trials on one seed.
    The other rows summarise each setting's objective over the seeds (:func:`course_lib.benchmark.summarise`):
    the gap between the first row and the same settings retrained is the selection's optimism.

    Returns
    -------
    pandas.DataFrame
        Columns ``model, metric, mean, sd, n_seeds``.
    """
    if not leaky.scored_on_test:
        raise ValueError("leaky must come from tune_on_test: a search scored on the test type.")
    n_trials = len(leaky.study.trials)
    reported = pd.DataFrame(
        {
            "model": [f"{leaky.model}: best of {n_trials} trials scored on {leaky.scored_type} (reported)"],
            "metric": [leaky.objective_metric],
            "mean": [leaky.best_value],
            "sd": [math.nan],
            "n_seeds": [1],
        }
    )
    summary = summarise(scores, metrics=[leaky.objective_metric], by=("model",))
    return pd.concat([reported, summary], ignore_index=True)


def setting_row(models: Sequence[str], model: str, label: str) -> str | None:
    """The name among ``models`` of the row of :func:`evaluate_on_test` that holds setting ``label``:
    ``"<model> (<label>)"``, or a row that shares it with other labels (``"<model> (tuned, tuned on
    test)"``, when they are the same settings); ``None`` if there is none."""
    prefix = f"{model} ("
    for name in models:
        if name.startswith(prefix) and name.endswith(")"):
            if label == name[len(prefix) : -1] or label in name[len(prefix) : -1].split(", "):
                return name
    return None


def leakage_gap(summary: pd.DataFrame, *, honest: str = "tuned", leaky: str = "tuned on test") -> pd.Series:
    """How much tuning on the test type flatters the result, and the two sources of the flattery.

    ``summary`` is a :func:`leakage_summary` table; ``honest`` and ``leaky`` are the labels given to
    :func:`evaluate_on_test` for the settings chosen on the validation type and on the test type. With
    *reported* the leaky search's best trial, *retrained* the leaky settings' mean test score over seeds
    and *honest* the validation-chosen settings' mean test score:

    - ``luck of the best trial = reported - retrained`` (the best of many noisy trials is partly the
      luckiest; positive on average, either sign in a small run);
    - ``choosing on the test cells = retrained - honest`` (the leaky search used the test cells to pick);
    - ``flattery = reported - honest``, the sum of the two: the published number minus the honest one.

    For an objective where lower is better the signs flip. When both searches chose the same settings,
    :func:`evaluate_on_test` trains them once, as ``"<model> (tuned, tuned on test)"``; that row then
    serves both labels and ``choosing on the test cells`` is 0.
    """
    reported = summary.loc[summary["model"].str.endswith("(reported)"), "mean"]
    if len(reported) != 1:
        raise ValueError("summary must be a leakage_summary table with one '(reported)' row.")
    model = summary.loc[reported.index[0], "model"].split(":")[0]
    means = summary.set_index("model")["mean"]
    names = {label: setting_row(means.index, model, label) for label in (honest, leaky)}
    missing = [f"{model} ({label})" for label, name in names.items() if name is None]
    if missing:
        raise ValueError(f"summary has no row {missing}; its models are {list(means.index)}.")
    values = {
        "reported": reported.iloc[0],
        "retrained": means[names[leaky]],
        "honest": means[names[honest]],
    }
    values["luck of the best trial"] = values["reported"] - values["retrained"]
    values["choosing on the test cells"] = values["retrained"] - values["honest"]
    values["flattery"] = values["reported"] - values["honest"]
    return pd.Series(values, name=summary["metric"].iloc[0])


# -- parameter importances ------------------------------------------------------------------------


def param_importances(result: TuningResult, *, seed: int = 0) -> pd.Series:
    """Share of the objective's variance over the complete trials that each parameter explains (fANOVA).

    Optuna's fANOVA fits a seeded random forest (scikit-learn) to the trials; with few trials the shares
    are rough, and a grid of four says little that the grid itself does not show.
    """
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=seed)
    importances = optuna.importance.get_param_importances(result.study, evaluator=evaluator)
    return pd.Series(importances, name="importance").rename_axis("parameter")


# -- the command line: one worker of a shared study ------------------------------------------------


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    """The options of ``python -m course_lib.tuning``."""
    parser = argparse.ArgumentParser(
        prog="python -m course_lib.tuning",
        description="One worker of an Optuna search scored on a validation cell type (see "
        "course_lib.tuning). Start several at once on the same --storage and --study-name to share the "
        "study (give each its own --worker); run it again to resume the study. Prints the best trial.",
    )
    add = parser.add_argument
    add("--data", default=KANG2018, help=f"the raw counts: {KANG2018!r} (default) or an .h5ad file")
    add("--fraction", type=float, default=1.0, help="share of the cells of each group to keep (default: 1)")
    add("--model", default="scgen", help="a model of the registry (default: scgen)")
    add("--test-type", required=True, help="the held-out test type (never read by the search)")
    add("--validation-type", required=True, help="the type whose prediction scores every trial")
    add(
        "--search",
        choices=("grid", "tpe"),
        default="tpe",
        help="the tutorial's grid or a TPE search (default)",
    )
    add("--space", type=json.loads, help="JSON: parameter -> list of values, e.g. '{\"n_layers\": [1, 2]}'")
    add("--n-trials", type=int, help="trials of the study (default: the grid's size, or 20 for tpe)")
    add("--epochs", dest="n_epochs", type=int, default=10, help="epochs per trial (default: 10)")
    add("--objective", dest="objective_metric", default=DEFAULT_OBJECTIVE, help="metric to optimise")
    add("--fixed-params", type=json.loads, help="JSON of parameters held fixed, e.g. '{\"n_hidden\": 128}'")
    add("--seed", type=int, default=0, help="model seed of every trial (default: 0)")
    add("--sampler-seed", type=int, default=GRID_SEED, help=f"sampler seed (default: {GRID_SEED})")
    add("--n-top-genes", type=int, default=2000, help="highly variable genes (default: 2000)")
    add("--min-cells", type=int, default=100, help="cells per condition the two types need (default: 100)")
    add(
        "--storage",
        default=DEFAULT_STORAGE,
        help=f"journal file or SQLAlchemy URL (default: {DEFAULT_STORAGE})",
    )
    add("--study-name", help="the study's name in the storage (default: from model, search and type)")
    add("--worker", type=int, default=0, help="this worker's number, 0, 1, ... (seeds its sampler)")
    add("--heartbeat-interval", type=float, default=HEARTBEAT_INTERVAL, help="seconds between heartbeats")
    add("--grace-period", type=float, default=GRACE_PERIOD, help="seconds without heartbeat: a dead trial")
    add("--trials-output", type=Path, help="CSV of the study's trials, written when the worker ends")
    add("--quiet", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    """Run one worker of a (shared, resumable) search and print the study's best trial."""
    args = parse_arguments(argv)
    options = vars(args)
    data, fraction = options.pop("data"), options.pop("fraction")
    trials_output, quiet = options.pop("trials_output"), options.pop("quiet")
    try:
        source = DataSource.parse(data)
    except ValueError as error:
        sys.exit(str(error))
    counts = source.counts()
    if fraction < 1:
        counts = subsample(counts, fraction, seed=options["seed"])
    try:
        result = tune(counts, verbose=not quiet, **options)  # the other options are tune's, by name
    except (KeyError, ValueError) as error:
        sys.exit(str(error.args[0]) if isinstance(error, KeyError) else str(error))
    trials = result.trials
    if trials_output:
        write_atomic(trials_output, trials.to_csv(index=False))
    states = trials["state"].value_counts().to_dict()
    print(f"study {result.study.study_name!r} in {options['storage']}: {len(trials)} trials {states}")
    complete = trials[trials["state"] == "complete"]
    if len(complete):
        print(f"best {result.objective_metric} = {result.best_value:.4g} with {result.best_params}")


if __name__ == "__main__":
    main()
