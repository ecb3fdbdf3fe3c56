"""The VAE training core that scGen and scPRAM share: one network shape, one loss, one training loop.

Both models are Gaussian VAEs with a standard normal prior and a unit-variance Gaussian likelihood;
they differ in their layers, KL weight, input noise and optimiser settings, which a subclass of
:class:`VAEModel` declares, and in how they predict.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Self

import anndata as ad
import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from course_lib.checks import as_dense, require_choice, require_fraction, require_positive_int
from course_lib.models.base import Hyperparameter, SavedModelError
from course_lib.models.neural import (
    NeuralModel,
    TrainingDivergedError,
    adam,
    diverged,
    read_weights,
    require_learning_rate,
)

WEIGHTS_FILE = "weights.pt"
HISTORY_COLUMNS = (
    "epoch",
    "train_loss",
    "val_loss",
    "train_reconstruction",
    "val_reconstruction",
    "train_kl",
    "val_kl",
)
LR_SCHEDULES = ("constant", "cosine")
"""Learning-rate schedules of :meth:`VAEModel.train`."""
_EVAL_BATCH = 4096
_LOSS_NAMES = ("loss", "reconstruction", "kl")


def mlp(
    n_in: int,
    hidden: Sequence[int],
    n_out: int,
    *,
    activation: Callable[[], nn.Module],
    batch_norm: bool = False,
    dropout: float = 0.0,
    output_activation: Callable[[], nn.Module] | None = None,
) -> nn.Sequential:
    """``n_in -> hidden[0] -> ... -> hidden[-1] -> n_out``.

    Each hidden block is ``Linear -> [BatchNorm1d(momentum 0.01, eps 1e-3)] -> activation ->
    [Dropout]``; the last layer is a plain ``Linear``, followed by ``output_activation`` if given.
    """
    layers: list[nn.Module] = []
    for width_in, width_out in zip([n_in, *hidden[:-1]], hidden, strict=True):
        layers.append(nn.Linear(width_in, width_out))
        if batch_norm:
            layers.append(nn.BatchNorm1d(width_out, momentum=0.01, eps=1e-3))
        layers.append(activation())
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(hidden[-1] if hidden else n_in, n_out))
    if output_activation is not None:
        layers.append(output_activation())
    return nn.Sequential(*layers)


class GaussianVAE(nn.Module):
    """A VAE with prior N(0, I), Gaussian posterior and unit-variance Gaussian likelihood.

    Parameters
    ----------
    encoder
        Maps expression (cells x genes) to ``2 * n_latent`` columns: the posterior mean ``mu``, then
        the log-variance ``h``; the variance is ``exp(h) + min_variance``.
    decoder
        Maps latent codes to expression.
    kl_weight
        Weight ``beta`` of the KL term.
    noise_rate
        Denoising: in training mode the encoder reads ``x + noise_rate * N(0, 1)`` (the loss still
        compares with the clean ``x``).
    min_variance
        Floor added to the posterior variance.
    """

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        *,
        kl_weight: float,
        noise_rate: float = 0.0,
        min_variance: float = 0.0,
    ):
        super().__init__()
        self.encoder, self.decoder = encoder, decoder
        self.kl_weight, self.noise_rate, self.min_variance = kl_weight, noise_rate, min_variance

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean and variance of every cell."""
        mu, log_var = self.encoder(x).float().chunk(2, dim=1)
        return mu, log_var.exp() + self.min_variance

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z).float()

    @staticmethod
    def sample(mu: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
        """``z = mu + sqrt(var) * eps`` with ``eps ~ N(0, I)`` (the reparameterisation trick)."""
        return mu + var.sqrt() * torch.randn_like(mu)

    def loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Negative ELBO of a minibatch, up to constants, as a mean over its cells.

        ``loss = mean_cells(0.5 * SSE + 0.5 * kl_weight * KL)`` with ``SSE = sum_genes (x - x_hat)^2``
        and ``KL = 0.5 * sum_latent(var + mu^2 - 1 - log var)`` against N(0, I). Averaging over cells
        (not summing) keeps the effective KL weight independent of the batch size.
        """
        noisy = x + self.noise_rate * torch.randn_like(x) if self.training and self.noise_rate else x
        mu, var = self.encode(noisy)
        x_hat = self.decode(self.sample(mu, var))
        reconstruction = (x - x_hat).square().sum(dim=1).mean()
        kl = 0.5 * (var + mu.square() - 1 - var.log()).sum(dim=1).mean()
        return {
            "loss": 0.5 * reconstruction + 0.5 * self.kl_weight * kl,
            "reconstruction": reconstruction,
            "kl": kl,
        }


def check_network(**settings: float) -> None:
    """Raise for an architecture setting out of range, before any network is built.

    Sizes (``n_hidden``, ``n_latent``, ``n_layers``) must be positive integers, ``dropout`` in [0, 1),
    ``kl_weight`` and ``noise_rate`` finite and non-negative.
    """
    for name, value in settings.items():
        if name in ("n_hidden", "n_latent", "n_layers"):
            require_positive_int(value, what=name)
        elif not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, not {value!r}.")
        elif name == "dropout" and value >= 1:
            raise ValueError(f"dropout must be below 1, not {value}.")


def _check_optimizer_settings(settings: Mapping[str, float]) -> None:
    """Raise for a learning rate that is not a positive finite number or a negative weight decay."""
    require_learning_rate(settings["lr"])
    weight_decay = settings["weight_decay"]
    if not (isinstance(weight_decay, int | float) and math.isfinite(weight_decay) and weight_decay >= 0):
        raise ValueError(f"weight_decay must be a finite number >= 0, not {weight_decay!r}.")


class VAEModel(NeuralModel):
    """A model with a :class:`GaussianVAE` inside: the one training loop, seeding, devices, saving.

    Subclasses set :attr:`optimizer` and :attr:`max_grad_norm` and implement :meth:`_build_module`.

    Parameters
    ----------
    adata, hyperparameters, **options
        See :class:`~course_lib.models.neural.NeuralModel` (``device`` among them).
    """

    optimizer: ClassVar[Mapping[str, float]]
    """Adam settings (``lr``, ``weight_decay``, ``eps``) of the reference implementation."""
    max_grad_norm: ClassVar[float | None] = None
    """Clip the gradient to this global norm before each step (``None``: no clipping)."""
    lr_schedule: ClassVar[str] = "constant"
    """How the learning rate changes over a call of :meth:`train`: one of :data:`LR_SCHEDULES`."""
    history_columns = HISTORY_COLUMNS

    def __init__(self, adata, *, hyperparameters: Mapping[str, Any], **options):
        super().__init__(adata, hyperparameters=hyperparameters, **options)
        with self._torch_seed("init"):
            self.module: GaussianVAE = self._build_module().to(self.device)

    @classmethod
    def hyperparameters(cls) -> dict[str, Hyperparameter]:
        """As :meth:`PerturbationModel.hyperparameters`, with ``lr`` and ``weight_decay`` defaulting to
        the model's :attr:`optimizer` settings (what :meth:`train` uses when they are not passed)."""
        found = super().hyperparameters()
        for name in ("lr", "weight_decay"):
            found[name] = Hyperparameter("train", cls.optimizer[name])
        found["lr_schedule"] = Hyperparameter("train", cls.lr_schedule)
        return found

    def _build_module(self) -> GaussianVAE:
        raise NotImplementedError

    # -- training ------------------------------------------------------------------------------------

    def train(
        self,
        n_epochs: int = 100,
        *,
        batch_size: int = 128,
        lr: float | None = None,
        weight_decay: float | None = None,
        lr_schedule: str | None = None,
        patience: int | None = 5,
        validation_fraction: float = 0.1,
        bf16: bool = False,
        verbose: bool = True,
        on_epoch_end: Callable[[int, Mapping[str, float]], None] | None = None,
    ) -> Self:
        """Train with Adam on shuffled minibatches; stop early when the validation loss stalls.

        A random ``validation_fraction`` of the training cells (fixed per seed) is held back; after each
        epoch the loss on it (eval mode: no dropout or input noise, BatchNorm running statistics) is
        recorded. Training stops after ``patience`` epochs without a new best validation loss, and the
        weights of the best epoch are restored. Calling ``train`` again continues from the current
        weights with a fresh optimiser.

        Parameters
        ----------
        n_epochs
            Passes over the training cells.
        batch_size
            Cells per minibatch, at least 2 (BatchNorm needs two cells). A last minibatch of one cell
            is skipped.
        lr, weight_decay
            Adam's learning rate and L2 weight decay; default the model's :attr:`optimizer` settings.
        lr_schedule
            ``"constant"``, or ``"cosine"``: epoch ``i`` of ``n_epochs`` trains with
            ``lr * (1 + cos(pi * i / n_epochs)) / 2``, from ``lr`` down to a few percent of it; default
            the model's :attr:`lr_schedule`.
        patience
            Epochs without improvement before stopping; ``None`` never stops early.
        validation_fraction
            Share of cells held back for the validation loss; 0 trains on all of them (and never stops
            early).
        bf16
            Run the forward and backward passes under bfloat16 autocast (faster on CPUs and GPUs that
            support it; the loss, the optimiser and predictions stay in float32).
        verbose
            Show a progress bar with the epoch and the losses.
        on_epoch_end
            Called as ``on_epoch_end(epoch, row)`` after every epoch with that epoch's row of
            :attr:`history` as a dict; an exception it raises (e.g. ``optuna.TrialPruned``) ends training
            and propagates, with the best weights so far restored.

        Raises
        ------
        TrainingDivergedError
            At the end of the first epoch whose loss is not finite (NaN or infinite: the step size was
            too large, or a weight is NaN). The model is left as it was before the call (weights,
            history, trained or not), and the message names the epoch and suggests a lower ``lr``.
        """
        n_epochs = require_positive_int(n_epochs, what="n_epochs")
        batch_size = require_positive_int(batch_size, what="batch_size", minimum=2)  # BatchNorm needs two
        if patience is not None:
            require_positive_int(patience, what="patience (or None for no early stopping)")
        if validation_fraction != 0:
            require_fraction(validation_fraction, what="validation_fraction")
            if validation_fraction == 1:
                raise ValueError("validation_fraction must be below 1: some cells must train.")
        settings = {**self.optimizer}
        settings.update({k: v for k, v in (("lr", lr), ("weight_decay", weight_decay)) if v is not None})
        _check_optimizer_settings(settings)
        schedule = self.lr_schedule if lr_schedule is None else lr_schedule
        require_choice(schedule, LR_SCHEDULES, what="lr_schedule")
        n_cells = self.adata.n_obs
        order = self._rng("split").permutation(n_cells)
        n_val = round(validation_fraction * n_cells)
        val_idx, train_idx = order[:n_val], order[n_val:]
        if train_idx.size < 2:
            raise ValueError(f"{train_idx.size} training cell(s) left after the validation split; need 2.")
        optimizer = adam(self.module.parameters(), **settings)
        X = torch.from_numpy(self.X).to(self.device)
        X_val = X[torch.from_numpy(val_idx).to(self.device)]
        first_epoch = len(self.history)
        before = copy.deepcopy(self.module.state_dict())
        best_loss, best_state, stale = math.inf, None, 0
        rng = self._rng(f"shuffle:{first_epoch}")
        rows = []
        bar = tqdm(
            range(first_epoch, first_epoch + n_epochs), desc=self.name, unit="epoch", disable=not verbose
        )
        try:
            with self._torch_seed(f"train:{first_epoch}"):
                for epoch in bar:
                    if schedule == "cosine":
                        progress = (epoch - first_epoch) / n_epochs
                        for group in optimizer.param_groups:
                            group["lr"] = settings["lr"] * (1 + math.cos(math.pi * progress)) / 2
                    shuffled = torch.from_numpy(rng.permutation(train_idx)).to(self.device)
                    train_losses = self._train_epoch(X, shuffled, optimizer, batch_size, bf16)
                    val_losses = self._validation_losses(X_val)
                    row = {"epoch": epoch}
                    for stage, values in (("train", train_losses), ("val", val_losses)):
                        row.update(
                            {f"{stage}_{key}": value for key, value in zip(_LOSS_NAMES, values, strict=True)}
                        )
                    checked = ("train_loss", "val_loss") if n_val else ("train_loss",)
                    diverged(
                        type(self).__name__,
                        f"epoch {epoch}",
                        {name: row[name] for name in checked},
                        settings["lr"],
                        type(self).optimizer["lr"],
                    )
                    rows.append(row)
                    bar.set_postfix(train_loss=f"{row['train_loss']:.4g}", val_loss=f"{row['val_loss']:.4g}")
                    if row["val_loss"] < best_loss:
                        best_loss, stale = row["val_loss"], 0
                        best_state = copy.deepcopy(self.module.state_dict())
                    else:
                        stale += 1
                    if on_epoch_end is not None:
                        on_epoch_end(epoch, dict(row))
                    if patience is not None and n_val and stale >= patience:
                        break
        except TrainingDivergedError:
            self.module.load_state_dict(before)  # the call leaves the model as it found it
            rows, best_state = [], None
            raise
        finally:
            bar.close()
            self._extend_history(rows)
            if best_state is not None:
                self.module.load_state_dict(best_state)
            self.module.eval()
            self.is_trained = self.is_trained or bool(rows)
        return self

    def _train_epoch(
        self,
        X: torch.Tensor,
        order: torch.Tensor,
        optimizer: torch.optim.Optimizer,
        batch_size: int,
        bf16: bool,
    ) -> list[float]:
        """One pass over the cells ``X[order]`` in minibatches; mean loss, reconstruction and KL per cell."""
        self.module.train()
        totals, n_seen = torch.zeros(len(_LOSS_NAMES), device=self.device), 0
        for start in range(0, order.numel(), batch_size):
            batch = X[order[start : start + batch_size]]
            if batch.shape[0] < 2:
                continue
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=bf16):
                losses = self.module.loss(batch)
            optimizer.zero_grad(set_to_none=True)
            losses["loss"].backward()
            if self.max_grad_norm is not None:
                nn.utils.clip_grad_norm_(self.module.parameters(), self.max_grad_norm)
            optimizer.step()
            totals += torch.stack([losses[key].detach() for key in _LOSS_NAMES]) * batch.shape[0]
            n_seen += batch.shape[0]
        return (totals / n_seen).tolist()

    @torch.no_grad()
    def _validation_losses(self, X_val: torch.Tensor) -> list[float]:
        """Mean loss, reconstruction and KL per cell over the validation cells in eval mode (NaN if none)."""
        if X_val.shape[0] == 0:
            return [math.nan] * len(_LOSS_NAMES)
        self.module.eval()
        totals = torch.zeros(len(_LOSS_NAMES), device=self.device)
        for start in range(0, X_val.shape[0], _EVAL_BATCH):
            batch = X_val[start : start + _EVAL_BATCH]
            losses = self.module.loss(batch)
            totals += torch.stack([losses[key] for key in _LOSS_NAMES]) * batch.shape[0]
        return (totals / X_val.shape[0]).tolist()

    # -- latent space ------------------------------------------------------------------------------

    @torch.no_grad()
    def _encode(self, X: np.ndarray, *, sample: str | None = None) -> np.ndarray:
        """Latent codes of the rows of ``X`` in eval mode: posterior means, or, with ``sample`` (the name
        of a random stream), one seeded posterior sample per cell."""
        self._require_trained()
        self.module.eval()
        codes = []
        with self._torch_seed(f"latent:{sample}"):
            for start in range(0, X.shape[0], _EVAL_BATCH):
                mu, var = self.module.encode(torch.from_numpy(X[start : start + _EVAL_BATCH]).to(self.device))
                codes.append((mu if sample is None else self.module.sample(mu, var)).cpu().numpy())
        return np.concatenate(codes)

    @torch.no_grad()
    def _decode(self, Z: np.ndarray) -> np.ndarray:
        """Expression decoded from the latent codes ``Z`` in eval mode."""
        self.module.eval()
        Z = torch.from_numpy(np.ascontiguousarray(Z, dtype=np.float32))
        return np.concatenate(
            [
                self.module.decode(Z[start : start + _EVAL_BATCH].to(self.device)).cpu().numpy()
                for start in range(0, Z.shape[0], _EVAL_BATCH)
            ]
        )

    def latent(self, adata: ad.AnnData | None = None) -> np.ndarray:
        """Posterior means (cells x latent) of ``adata`` (default: the training cells), in eval mode."""
        if adata is None:
            return self._encode(self.X)
        self._check_cells(adata, what="adata")
        return self._encode(as_dense(adata.X))

    def reconstruct(self, adata: ad.AnnData | None = None) -> ad.AnnData:
        """``decode(mu(x))`` for the cells of ``adata`` (default: the training cells), ``obs`` copied.

        What the VAE keeps of real cells: comparing the reconstruction of real stimulated cells with
        the cells themselves separates what the decoder loses (it smooths cell-to-cell variation) from
        what the latent arithmetic of a prediction gets wrong.
        """
        adata = self.adata if adata is None else adata
        return ad.AnnData(X=self._decode(self.latent(adata)), obs=adata.obs.copy(), var=self.adata.var.copy())

    # -- saving and loading ------------------------------------------------------------------------

    def _save_state(self, directory: Path) -> None:
        self._require_trained()
        torch.save(self.module.state_dict(), directory / WEIGHTS_FILE)
        self._save_history(directory)

    def _load_state(self, directory: Path) -> None:
        weights = directory / WEIGHTS_FILE
        state = read_weights(weights, self.device)
        try:
            self.module.load_state_dict(state)
        except RuntimeError:
            raise SavedModelError(
                f"the weights in {weights} do not fit a {type(self).__name__} built with these options "
                f"({_architecture(self.config)}): load without overriding architecture options such as "
                "n_hidden or n_latent (they are read from config.json)."
            ) from None
        self.module.eval()
        self._load_history(directory)
        self.is_trained = True


def _architecture(config: Mapping[str, Any]) -> str:
    """The numeric settings of a config, as ``name=value`` pairs, for an error message."""
    return ", ".join(
        f"{name}={value}"
        for name, value in config.items()
        if isinstance(value, int | float) and name != "seed"
    )
