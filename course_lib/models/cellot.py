"""CellOT (Bunne et al. 2023): the response as an optimal transport map, the gradient of a convex function.

Control cells (source, μ) and stimulated cells (target, ν) are two unpaired distributions. By Brenier's
theorem, the optimal transport map between them for the squared Euclidean cost is the gradient of a
convex function, T(x) = ∇g(x). CellOT parameterises two convex functions f and g with input-convex
neural networks (:class:`ICNN`) and solves the dual problem of Makkar et al. (2020) as a min-max game:

- g's loss on source cells x: mean_x [f(∇g(x)) − ⟨x, ∇g(x)⟩] plus a penalty on the negative parts of
  g's W weights (``fnorm_penalty`` · Σ_W ‖relu(−W)‖_F);
- f's loss on source x and target y: −mean_x f(∇g(x)) + mean_y f(y), after which f's W weights are
  clamped at 0 (f stays convex exactly; g only softly).

A prediction for a control cell x is T(x) = ∇g(x): one transported point per cell.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Self

import anndata as ad
import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.nn import functional
from tqdm.auto import tqdm

from course_lib.checks import as_dense, require_fraction, require_positive_int
from course_lib.models.base import SavedModelError
from course_lib.models.neural import (
    NeuralModel,
    TrainingDivergedError,
    adam,
    diverged,
    history_frame,
    one_thread,
    read_weights,
    require_learning_rate,
)

WEIGHTS_FILE = "cellot.pt"
HISTORY_COLUMNS = ("step", "g_loss", "f_loss", "val_energy_distance")
"""Columns of :attr:`Cellot.history`: one row per evaluation (every ``eval_every`` outer steps)."""

LEAKY_SLOPE = 0.2
"""Slope of the leaky ReLU of every ICNN layer (the reference's)."""


class ICNN(nn.Module):
    """An input-convex neural network: a scalar function of x that is convex when every W is ≥ 0.

    ``z_1 = lrelu(A_0 x + b_0)²``, ``z_{l+1} = lrelu(W_l z_l + A_l x + b_l)``, output
    ``W_L z_L + A_L x + b_L``, with ``lrelu`` the leaky ReLU of slope :data:`LEAKY_SLOPE`. The square of
    a leaky ReLU is convex, and a non-negative combination of convex functions composed with a convex
    non-decreasing activation stays convex, so the output is convex in x whenever every W ≥ 0. Only the
    A layers have a bias. Every weight starts uniform on [0, 0.1], the biases at 0 (the reference's
    initialisation).

    Parameters
    ----------
    n_inputs
        Dimension of x.
    hidden
        Widths of the hidden layers (the reference: four of 64).
    """

    def __init__(self, n_inputs: int, hidden: Sequence[int] = (64, 64, 64, 64)):
        super().__init__()
        widths = list(hidden)
        self.A = nn.ModuleList(nn.Linear(n_inputs, width) for width in [*widths, 1])
        self.W = nn.ModuleList(
            nn.Linear(a, b, bias=False) for a, b in zip(widths, [*widths[1:], 1], strict=True)
        )
        for layer in [*self.A, *self.W]:
            nn.init.uniform_(layer.weight, 0.0, 0.1)
        for layer in self.A:
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The function's value at every row of x (one value per row)."""
        z = functional.leaky_relu(self.A[0](x), LEAKY_SLOPE).square()
        for W, A in zip(self.W[:-1], self.A[1:-1], strict=True):
            z = functional.leaky_relu(W(z) + A(x), LEAKY_SLOPE)
        return (self.W[-1](z) + self.A[-1](x)).squeeze(-1)

    def negative_weight_norm(self) -> torch.Tensor:
        """Σ_W ‖relu(−W)‖_F: how far the W weights are from the convex (non-negative) set."""
        return sum(functional.relu(-W.weight).norm() for W in self.W)

    @torch.no_grad()
    def clamp_weights(self) -> None:
        """Set every negative W weight to 0, which makes the function convex exactly."""
        for W in self.W:
            W.weight.clamp_(min=0.0)


def validation_distance(x: torch.Tensor, y: torch.Tensor) -> float:
    """The energy distance 2 E‖X − Y‖ − E‖X − X'‖ − E‖Y − Y'‖ of two point sets (zero diagonal included),
    as :func:`course_lib.metrics.energy_distance` defines it, computed in torch during training."""
    within_x, within_y = torch.cdist(x, x).mean(), torch.cdist(y, y).mean()
    return float(2 * torch.cdist(x, y).mean() - within_x - within_y)


def transport(g: ICNN, x: torch.Tensor, *, create_graph: bool = False) -> torch.Tensor:
    """T(x) = ∇g(x) for every row of x, by automatic differentiation.

    ``create_graph`` keeps the graph of the gradient, so that a loss of T(x) can be back-propagated
    into g's weights (g's own update needs it; f's update and predictions do not).
    """
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        (gradient,) = torch.autograd.grad(g(x).sum(), x, create_graph=create_graph)
    return gradient


class TransportMap:
    """The two ICNNs of the dual OT problem and their training: CellOT without the cells.

    ``TransportMap(d)(x)`` maps rows of ``x`` (``d`` columns) with T(x) = ∇g(x). :meth:`fit` solves the
    dual problem of the module docstring on arrays of source and target points; :class:`Cellot` uses
    it in a PCA of the cells, and :func:`fit_transport` on any two point clouds.

    Parameters
    ----------
    n_inputs
        Dimension of the points.
    hidden
        Widths of the hidden layers of both ICNNs.
    fnorm_penalty
        Weight of g's penalty on negative W weights.
    g_steps
        Updates of g per update of f.
    device
        Where the networks live.
    """

    def __init__(
        self,
        n_inputs: int,
        hidden: Sequence[int] = (64, 64, 64, 64),
        *,
        fnorm_penalty: float = 1.0,
        g_steps: int = 10,
        device: torch.device | str = "cpu",
    ):
        self.f = ICNN(n_inputs, hidden).to(device)
        self.g = ICNN(n_inputs, hidden).to(device)
        self.fnorm_penalty, self.g_steps, self.device = fnorm_penalty, g_steps, torch.device(device)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """T(x) = ∇g(x) for every row of ``x``, in batches of 4,096, on one thread."""
        tensor = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        with one_thread():
            mapped = [
                transport(self.g, tensor[start : start + 4096].to(self.device)).cpu().numpy()
                for start in range(0, len(tensor), 4096)
            ]
        return np.concatenate(mapped)

    def state_dict(self) -> dict[str, dict]:
        """The weights of f and g."""
        return {"f": self.f.state_dict(), "g": self.g.state_dict()}

    def load_state_dict(self, state: Mapping[str, dict]) -> None:
        """Set the weights of f and g from :meth:`state_dict`."""
        self.f.load_state_dict(state["f"])
        self.g.load_state_dict(state["g"])

    def fit(
        self,
        source: torch.Tensor,
        target: torch.Tensor,
        val_source: torch.Tensor,
        val_target: torch.Tensor,
        *,
        n_steps: int,
        batch_size: int,
        lr: float,
        eval_every: int,
        patience: int | None,
        draw: np.random.Generator,
        first_step: int = 0,
        verbose: bool = False,
        name: str = "cellot",
        on_evaluation: Callable[[int, Mapping[str, float]], None] | None = None,
    ) -> list[dict[str, float]]:
        """Train f and g with alternating updates; keep the weights of the best validated evaluation.

        Each outer step makes ``g_steps`` updates of g (each on a new batch of ``source`` rows) and one of
        f (a new batch of source and of target rows), batches drawn with replacement by ``draw``. Every
        ``eval_every`` outer steps (and at the last) the energy distance between ``T(val_source)`` and
        ``val_target`` is recorded; at the end the weights of the best evaluation are restored.
        Training stops after ``patience`` evaluations without a new best (``None``: never).

        Returns the evaluations as rows ``step, g_loss, f_loss, val_energy_distance``. Raises
        :class:`~course_lib.models.TrainingDivergedError` when a loss or the validation distance is
        not finite, with f and g restored to what they were before the call.
        """
        optimizers = {
            net: adam(getattr(self, net).parameters(), lr=lr, betas=Cellot.betas) for net in ("f", "g")
        }
        before = copy.deepcopy(self.state_dict())
        rows, best, best_state, stale = [], math.inf, None, 0
        bar = tqdm(range(first_step, first_step + n_steps), desc=name, unit="step", disable=not verbose)
        try:
            with one_thread():
                for step in bar:
                    g_loss = self._update_g(source, batch_size, draw, optimizers["g"])
                    f_loss = self._update_f(source, target, batch_size, draw, optimizers["f"])
                    if (step - first_step + 1) % eval_every and step != first_step + n_steps - 1:
                        continue
                    distance = validation_distance(transport(self.g, val_source), val_target)
                    row = {"step": step, "g_loss": g_loss, "f_loss": f_loss, "val_energy_distance": distance}
                    diverged(name, f"outer step {step}", row, lr, Cellot.default_lr)
                    rows.append(row)
                    bar.set_postfix(val_energy_distance=f"{distance:.4g}")
                    if distance < best:
                        best, best_state, stale = distance, copy.deepcopy(self.state_dict()), 0
                    else:
                        stale += 1
                    if on_evaluation is not None:
                        on_evaluation(len(rows) - 1, dict(row))
                    if patience is not None and stale >= patience:
                        break
        except TrainingDivergedError:
            self.load_state_dict(before)  # the call leaves the networks as it found them
            raise
        finally:
            bar.close()
        if best_state is not None:
            self.load_state_dict(best_state)
        return rows

    @staticmethod
    def _batch(points: torch.Tensor, size: int, draw: np.random.Generator) -> torch.Tensor:
        return points[torch.from_numpy(draw.integers(0, len(points), size=size))]

    def _update_g(self, source, batch_size, draw, optimizer) -> float:
        """``g_steps`` updates of g, each on a new source batch; the last loss."""
        for _ in range(self.g_steps):
            x = self._batch(source, batch_size, draw)
            mapped = transport(self.g, x, create_graph=True)
            loss = (self.f(mapped) - (x * mapped).sum(dim=1)).mean()
            loss = loss + self.fnorm_penalty * self.g.negative_weight_norm()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        return float(loss.detach())

    def _update_f(self, source, target, batch_size, draw, optimizer) -> float:
        """One update of f on a new source and target batch, then f's W weights clamped at 0."""
        x, y = self._batch(source, batch_size, draw), self._batch(target, batch_size, draw)
        loss = -self.f(transport(self.g, x)).mean() + self.f(y).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        self.f.clamp_weights()
        return float(loss.detach())


def validation_split(
    n_points: int, fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Positions of a random ``fraction`` of ``n_points`` (at least 2) and of the rest."""
    order = rng.permutation(n_points)
    n_val = max(2, round(fraction * n_points))
    return order[:n_val], order[n_val:]


def fit_transport(
    source: np.ndarray,
    target: np.ndarray,
    *,
    hidden: Sequence[int] = (64, 64, 64, 64),
    n_steps: int = 2000,
    batch_size: int = 256,
    lr: float = 1e-4,
    eval_every: int = 100,
    validation_fraction: float = 0.1,
    seed: int = 0,
) -> tuple[TransportMap, pd.DataFrame]:
    """Learn the optimal transport map between two point clouds (rows are points); seeded.

    A random ``validation_fraction`` of each cloud selects the best evaluation (see
    :meth:`TransportMap.fit`). Returns the map and its history (one row per evaluation).
    """
    rng = np.random.default_rng([seed, 1])
    torch_seed = int(np.random.SeedSequence([seed, 2]).generate_state(1)[0])
    points = [torch.from_numpy(np.ascontiguousarray(cloud, dtype=np.float32)) for cloud in (source, target)]
    splits = [validation_split(len(cloud), validation_fraction, rng) for cloud in points]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(torch_seed)
        mapping = TransportMap(points[0].shape[1], hidden)
        rows = mapping.fit(
            points[0][splits[0][1]],
            points[1][splits[1][1]],
            points[0][splits[0][0]],
            points[1][splits[1][0]],
            n_steps=n_steps,
            batch_size=batch_size,
            lr=lr,
            eval_every=eval_every,
            patience=None,
            draw=rng,
        )
    return mapping, history_frame(rows, HISTORY_COLUMNS)


class Cellot(NeuralModel):
    """CellOT: the map from control to stimulated cells as the gradient of a convex function.

    Trained on the training types' control cells (source) and stimulated cells (target) in a PCA of the
    training cells, and applied to the held-out type's control cells; see the module docstring for the
    method. Architecture and optimiser follow the reference (bunnech/cellot): two ICNNs of four hidden
    layers of 64, Adam with lr 1e-4 and betas (0.5, 0.9) for each, 10 updates of g (each on a new source
    batch) per update of f (a new source and a new target batch).

    Deviations from the reference, all named here:

    - **Space**: a ``n_components``-component PCA of the training cells (components and mean stored with
      the model, decoded as ``mean + scores @ components``), with the scores divided by one number, their
      overall standard deviation, so that the networks see values of order 1 (a uniform scaling changes
      nothing about which map is optimal). The reference's scRNA-seq setting transports the 50-dimensional
      codes of an autoencoder instead; its PCA option forgets to add the mean back when decoding.
    - **Source**: the control cells of the types that have stimulated training cells. The held-out type's
      controls are not part of the source: the target holds no stimulated cells of it.
    - **Model selection** on a validation split of the training cells (a random ``validation_fraction``
      of the source and of the target cells, never the held-out type): every ``eval_every`` outer steps
      the energy distance between transported validation controls and validation stimulated cells is
      recorded and the weights of the best evaluation are kept. The reference selects on the MMD to
      the *test* cells.
    - **Schedule**: 2,000 outer steps of batch 256 by default instead of 100,000 of batch 64 (see
      :meth:`train` for the measurement behind it), on one torch thread (the networks are small).

    Parameters
    ----------
    adata
        Log-normalised training cells without the stimulated cells of the type to predict.
    n_components
        PCA components of the space the map works in (the reference: 50).
    hidden, fnorm_penalty, g_steps
        The networks and their training, see :class:`TransportMap`.
    **options
        ``keys``, ``target``, ``seed`` (see :class:`~course_lib.models.base.PerturbationModel`) and
        ``device``.
    """

    name = "cellot"
    label = "CellOT"
    history_columns = HISTORY_COLUMNS
    default_lr = 1e-4
    """Adam's learning rate of the reference, for both networks."""
    betas = (0.5, 0.9)
    """Adam's betas of the reference."""

    def __init__(
        self,
        adata: ad.AnnData,
        *,
        n_components: int = 50,
        hidden: Sequence[int] = (64, 64, 64, 64),
        fnorm_penalty: float = 1.0,
        g_steps: int = 10,
        **options,
    ):
        require_positive_int(n_components, what="n_components")
        require_positive_int(g_steps, what="g_steps")
        hidden = [require_positive_int(width, what="every hidden width") for width in hidden]
        if not (
            isinstance(fnorm_penalty, int | float) and math.isfinite(fnorm_penalty) and fnorm_penalty >= 0
        ):
            raise ValueError(f"fnorm_penalty must be a finite number >= 0, not {fnorm_penalty!r}.")
        hyperparameters = {
            "n_components": n_components,
            "hidden": hidden,
            "fnorm_penalty": fnorm_penalty,
            "g_steps": g_steps,
        }
        super().__init__(adata, hyperparameters=hyperparameters, **options)
        if n_components > min(adata.n_obs, adata.n_vars):
            raise ValueError(
                f"n_components={n_components} exceeds min(cells, genes) = {min(adata.n_obs, adata.n_vars)} "
                "of the training data; pass a smaller n_components."
            )
        self._fit_space()
        with self._torch_seed("init"):
            self.map = TransportMap(
                n_components, hidden, fnorm_penalty=fnorm_penalty, g_steps=g_steps, device=self.device
            )

    # -- the space the map works in ------------------------------------------------------------------

    def _fit_space(self) -> None:
        """The PCA of the training cells (centred, seeded, by SVD) and the scale of its scores."""
        from sklearn.decomposition import PCA

        pca = PCA(n_components=self.config["n_components"], random_state=self.seed).fit(self.X)
        self.mean = pca.mean_.astype(np.float32)
        self.components = pca.components_.astype(np.float32)
        self.scale = float(np.std((self.X - self.mean) @ self.components.T))

    def encode(self, X: np.ndarray) -> np.ndarray:
        """Scaled PCA scores of expression rows: ``(X − mean) @ componentsᵀ / scale``."""
        return ((np.asarray(X, dtype=np.float32) - self.mean) @ self.components.T / self.scale).astype(
            np.float32
        )

    def decode(self, scores: np.ndarray) -> np.ndarray:
        """Expression of scaled PCA scores: ``mean + scale · scores @ components``."""
        return self.mean + self.scale * np.asarray(scores, dtype=np.float32) @ self.components

    def map_scores(self, scores: np.ndarray) -> np.ndarray:
        """T(x) = ∇g(x) for scaled PCA scores (rows)."""
        self._require_trained()
        return self.map(scores)

    # -- training ------------------------------------------------------------------------------------

    def _source_and_target(self) -> tuple[np.ndarray, np.ndarray]:
        """Training-cell indices of the source (controls of types with stimulated cells) and the target."""
        responding = np.isin(self.cell_types, np.unique(self.cell_types[self.is_stim]))
        if self.target is not None:
            responding &= self.cell_types != self.target
        return np.flatnonzero(self.is_ctrl & responding), np.flatnonzero(self.is_stim)

    def train(
        self,
        n_epochs: int | None = None,
        *,
        n_steps: int = 2000,
        batch_size: int = 256,
        lr: float = 1e-4,
        validation_fraction: float = 0.1,
        eval_every: int = 100,
        patience: int | None = None,
        verbose: bool = True,
        on_epoch_end: Callable[[int, Mapping[str, float]], None] | None = None,
    ) -> Self:
        """Solve the dual OT problem with alternating updates of g and f; keep the best validated weights.

        Each outer step makes ``g_steps`` updates of g (each on a new batch of source cells) and one
        update of f (a new batch of source and of target cells), batches drawn with replacement from
        the cells outside the validation split. Every ``eval_every`` outer steps the energy distance
        between the transported validation controls and the validation stimulated cells (in the scaled
        PCA space) is recorded in :attr:`history`; the weights of the best evaluation are restored at
        the end, and training stops after ``patience`` evaluations without a new best (``None``: never).

        The default schedule (2,000 outer steps of 256 cells, evaluated every 100, the best evaluation
        kept) comes from the validation curve on the course's data (CD4 T cells held out, seed 0,
        ``benchmarks/cellot_schedule.py``): the validation energy distance first rises, from 6.8 after 100
        steps to 166 after 300 (the two networks chase each other before they settle), falls back below
        its first value by step 1,000, reaches 0.054 at step 2,000 and then only fluctuates (0.053 to
        0.068 up to step 4,000). Early stopping on a patience would stop inside the first rise, so none is
        used by default. On 2 CPU cores an outer step takes about 0.03 s, so the default training takes
        about a minute. The reference schedule, 100,000 outer steps of 64 cells, takes about the same
        time per step here (0.027 s: the cost is the 11 updates, not the batch), about 45 minutes.

        Parameters
        ----------
        n_epochs
            Not used: CellOT's training length is ``n_steps``. Accepted so that a benchmark can pass the
            same options to every model.
        n_steps
            Outer steps at most.
        batch_size
            Cells per batch, for the source and the target alike.
        lr
            Adam's learning rate of both networks (betas (0.5, 0.9) as in the reference).
        validation_fraction
            Share of the source and of the target cells held back for model selection.
        eval_every, patience
            Outer steps between evaluations; evaluations without improvement before stopping.
        verbose
            Show a progress bar with the step and the validation distance.
        on_epoch_end
            Called as ``on_epoch_end(evaluation, row)`` after every evaluation with that row of
            :attr:`history` as a dict.

        Raises
        ------
        TrainingDivergedError
            When a loss or the validation distance is not finite; the model is left as it was.
        """
        require_positive_int(n_steps, what="n_steps")
        require_positive_int(batch_size, what="batch_size", minimum=2)
        require_positive_int(eval_every, what="eval_every")
        require_learning_rate(lr)
        require_fraction(validation_fraction, what="validation_fraction")
        if validation_fraction == 1:
            raise ValueError("validation_fraction must be below 1: some cells must train.")
        if patience is not None:
            require_positive_int(patience, what="patience (or None for no early stopping)")
        source, target = self._source_and_target()
        if source.size < 4 or target.size < 4:
            raise ValueError(
                f"CellOT needs control and stimulated cells of other types to learn from: {source.size} "
                f"source and {target.size} target cells in the training data."
            )
        rng = self._rng("split")
        val_source, train_source = (
            source[part] for part in validation_split(len(source), validation_fraction, rng)
        )
        val_target, train_target = (
            target[part] for part in validation_split(len(target), validation_fraction, rng)
        )
        scores = torch.from_numpy(self.encode(self.X)).to(self.device)
        points = [
            scores[torch.from_numpy(cells)] for cells in (train_source, train_target, val_source, val_target)
        ]
        first = int(self.history["step"].max()) + 1 if len(self.history) else 0
        with self._torch_seed(f"train:{first}"):
            rows = self.map.fit(
                *points,
                n_steps=n_steps,
                batch_size=batch_size,
                lr=lr,
                eval_every=eval_every,
                patience=patience,
                draw=self._rng(f"batches:{first}"),
                first_step=first,
                verbose=verbose,
                name=type(self).__name__,
                on_evaluation=on_epoch_end,
            )
        self._extend_history(rows)
        self.is_trained = True
        return self

    # -- prediction ----------------------------------------------------------------------------------

    def predict(self, target: str | None = None, *, query: ad.AnnData | None = None) -> ad.AnnData:
        """Transport ``target``'s control cells (or ``query``) and decode them to expression.

        Returns
        -------
        anndata.AnnData
            One predicted cell per query cell, ``obs`` copied from the query with
            ``obs[keys.condition] = keys.predicted``; ``obsm["X_cellot"]`` holds the transported scores
            (scaled PCA space). The decoder is linear, so predicted values can be slightly negative.
        """
        self._require_trained()
        target, query = self._resolve(target, query)
        mapped = self.map_scores(self.encode(as_dense(query.X)))
        prediction = self._prediction(self.decode(mapped), query, target)
        prediction.obsm["X_cellot"] = mapped
        return prediction

    # -- saving and loading --------------------------------------------------------------------------

    def _save_state(self, directory: Path) -> None:
        self._require_trained()
        state = {
            **self.map.state_dict(),
            "mean": torch.from_numpy(self.mean),
            "components": torch.from_numpy(self.components),
            "scale": torch.tensor(self.scale),
        }
        torch.save(state, directory / WEIGHTS_FILE)
        self._save_history(directory)

    def _load_state(self, directory: Path) -> None:
        weights = directory / WEIGHTS_FILE
        state = read_weights(weights, self.device)
        try:
            self.map.load_state_dict(state)
        except (RuntimeError, KeyError, ValueError) as error:
            raise SavedModelError(
                f"{weights} cannot be read into this CellOT ({type(error).__name__}); the file is damaged "
                "or was saved with other options (n_components, hidden): save the model again, or load it "
                "without overriding them."
            ) from None
        self.mean, self.components = state["mean"].numpy(), state["components"].numpy()
        self.scale = float(state["scale"])
        self._load_history(directory)
        self.is_trained = True
