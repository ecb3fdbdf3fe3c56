"""What the neural models of the course share (scGen and scPRAM through :mod:`course_lib.models.vae`,
and CellOT): the device, torch's seeded random streams, the optimiser, the check that training has not
diverged, and the trained state that saving and predicting need.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd
import torch

from course_lib.models.base import PerturbationModel, SavedModelError

HISTORY_FILE = "history.csv"
"""File of a saved model's training history, next to its weights."""


def history_frame(rows, columns: Sequence[str]) -> pd.DataFrame:
    """A training history: one row per epoch or evaluation, ``columns``, floats but the first (the
    epoch or step, an integer)."""
    frame = pd.DataFrame(rows, columns=list(columns)).astype(float)
    return frame.astype({columns[0]: int})


def read_weights(path: Path, device: torch.device) -> dict[str, Any]:
    """The tensors saved at ``path``; :class:`SavedModelError` naming the file when it is missing or
    cannot be read (torch raises EOFError, OSError, RuntimeError or UnpicklingError for a damaged one)."""
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise SavedModelError(f"{path} is missing: the model folder is incomplete; save it again.") from None
    except Exception as error:
        raise SavedModelError(
            f"{path} cannot be read ({type(error).__name__}); the file is truncated or corrupt: save the "
            "model again."
        ) from None


class TrainingDivergedError(RuntimeError):
    """Training produced a non-finite loss (NaN or infinite): the weights are no longer usable."""


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` if given, else the first CUDA GPU if there is one, else the CPU."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def adam(parameters, **settings) -> torch.optim.Adam:
    """Adam with the fused kernel (one kernel for all parameters) where the device supports it."""
    parameters = list(parameters)
    try:
        return torch.optim.Adam(parameters, fused=True, **settings)
    except (RuntimeError, ValueError):
        return torch.optim.Adam(parameters, **settings)


def require_learning_rate(lr) -> float:
    """Return ``lr``; raise unless it is a positive finite number."""
    if isinstance(lr, bool) or not (isinstance(lr, int | float) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a positive finite number, not {lr!r}.")
    return float(lr)


def diverged(model: str, where: str, losses: Mapping[str, float], lr: float, default_lr: float) -> None:
    """Raise :class:`TrainingDivergedError` when any of ``losses`` is not finite.

    The message names the model, the point of training (``where``, e.g. "epoch 3"), the losses, the
    learning rate and the default to go back to.
    """
    bad = {name: value for name, value in losses.items() if not math.isfinite(value)}
    if bad:
        shown = ", ".join(f"{name} {value}" for name, value in bad.items())
        raise TrainingDivergedError(
            f"{model} diverged in {where} ({shown}) with lr={lr:g}; the model is left as it was before "
            f"train(). Train again with a lower learning rate (the default is {default_lr:g}), and check "
            "the other settings and the input values."
        )


@contextmanager
def one_thread() -> Iterator[None]:
    """Run a block on one torch thread, then restore the thread count.

    Small networks gain nothing from more threads: on two cores a 25,000-weight network updated on
    256 cells took 3.4 ms per step on one thread and 92 ms on two threads of a busy machine, which
    spent the difference waiting for each other. One thread also makes the numbers independent of the
    machine's thread count.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class NeuralModel(PerturbationModel):
    """A model with torch networks: a device, seeded torch streams and a trained flag.

    Parameters
    ----------
    adata, hyperparameters, **options
        See :class:`~course_lib.models.base.PerturbationModel`.
    device
        Where to train and predict; default the first CUDA GPU if there is one, else the CPU.
    """

    history_columns: ClassVar[tuple[str, ...]] = ()
    """Columns of :attr:`history`; the first counts training progress (epoch or step), an integer."""

    def __init__(
        self,
        adata,
        *,
        hyperparameters: Mapping[str, Any],
        device: str | torch.device | None = None,
        **options,
    ):
        super().__init__(adata, hyperparameters=hyperparameters, **options)
        self.device = pick_device(device)
        self.is_trained = False
        self.history = history_frame([], self.history_columns)

    def _extend_history(self, rows) -> None:
        """Append ``rows`` (one dict per epoch or evaluation) to :attr:`history`."""
        self.history = history_frame([*self.history.to_dict("records"), *rows], self.history_columns)

    def _save_history(self, directory: Path) -> None:
        self.history.to_csv(Path(directory) / HISTORY_FILE, index=False)

    def _load_history(self, directory: Path) -> None:
        """Read the history saved next to the weights (an empty one if the folder has none)."""
        path = Path(directory) / HISTORY_FILE
        try:
            rows = pd.read_csv(path, float_precision="round_trip") if path.exists() else []
            self.history = history_frame(rows, self.history_columns)
        except (pd.errors.EmptyDataError, pd.errors.ParserError, KeyError, ValueError) as error:
            raise SavedModelError(
                f"{path} cannot be read as a training history ({type(error).__name__}); the file is "
                "damaged: delete it (the model loads without a history) or save the model again."
            ) from None

    @contextmanager
    def _torch_seed(self, purpose: str) -> Iterator[None]:
        """Run a block with torch's global generators seeded for ``purpose``, then restore them.

        Dropout and ``randn_like`` draw from the global generators; forking them keeps the model
        reproducible without changing the caller's random state.
        """
        cuda = self.device.type == "cuda"
        devices = [self.device.index or 0] if cuda else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(int(self._seed_sequence(purpose).generate_state(1)[0]))
            yield

    def _require_trained(self) -> None:
        if not self.is_trained:
            raise RuntimeError(
                f"{type(self).__name__} is not trained yet; call train() (or load a saved model)."
            )
