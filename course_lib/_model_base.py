"""What every perturbation model of the course shares, whether it learns or not.

Input checks, the seeded random streams, the balanced control and stimulated pools of scGen (which
the mean-shift baseline and scPRAM's attention-only variant reuse), the query cells, the prediction
AnnData, and saving and loading. The VAE training core builds on this in
:mod:`course_lib.models._vae`; it lives outside :mod:`course_lib.models` so that
:mod:`course_lib.baselines` can use it without an import cycle.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Self

import anndata as ad
import numpy as np
import pandas as pd

from course_lib._validation import (
    as_dense,
    require_finite,
    require_log_normalised,
    require_nonempty,
    require_obs_keys,
    require_same_genes,
    require_value,
)

CONFIG_FILE = "config.json"
GENES_FILE = "var_names.txt"


def balanced_pools(
    cell_types: np.ndarray, is_ctrl: np.ndarray, is_stim: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of scGen's balanced control and stimulated pools, of equal size.

    Each pool is first balanced by cell type: every type present in the pool is drawn, with
    replacement, as many times as the pool's largest type has cells, so that no type dominates the
    pool mean. Then ``eq = min(len(ctrl), len(stim))`` cells are drawn without replacement from each
    balanced pool, so that both means average the same number of cells.

    Parameters
    ----------
    cell_types
        Cell type of every cell.
    is_ctrl, is_stim
        Boolean masks of the cells that may enter the control and the stimulated pool.
    rng
        The only source of randomness: the same generator state gives the same pools.
    """

    def balance(mask: np.ndarray) -> np.ndarray:
        indices = np.flatnonzero(mask)
        if indices.size == 0:
            raise ValueError("a pool has no cells: the training data need control and stimulated cells.")
        types, counts = np.unique(cell_types[indices], return_counts=True)
        return np.concatenate(
            [rng.choice(indices[cell_types[indices] == t], size=counts.max(), replace=True) for t in types]
        )

    ctrl, stim = balance(is_ctrl), balance(is_stim)
    eq = min(ctrl.size, stim.size)
    return rng.choice(ctrl, size=eq, replace=False), rng.choice(stim, size=eq, replace=False)


class PerturbationModel:
    """Base of every model: takes the training cells, checks them, and predicts a held-out response.

    Parameters
    ----------
    adata
        Training cells: log-normalised expression in ``.X`` (never raw counts), a condition and a
        cell-type column in ``obs``. The stimulated cells of the type to predict must not be in it.
    condition_key, cell_type_key
        Columns of ``adata.obs`` with the condition and the cell type of every cell.
    ctrl_key, stim_key
        Values of ``obs[condition_key]`` for control and stimulated cells.
    pred_key
        Value of ``obs[condition_key]`` in predictions.
    target
        The cell type to predict, if known now: it is then checked (known type, has control cells,
        none of its stimulated cells in ``adata``) before any training, and is the default of
        :meth:`predict`.
    seed
        Seeds every random step of the model (weights, minibatches, pools, noise): the same seed, data
        and thread count give the same prediction.
    hyperparameters
        The subclass's own settings, stored in :attr:`config` so that :meth:`load` can rebuild it.
    """

    name: ClassVar[str]
    """Key of the model in :data:`course_lib.models.MODELS`."""

    def __init__(
        self,
        adata: ad.AnnData,
        *,
        condition_key: str = "condition",
        cell_type_key: str = "cell_type",
        ctrl_key: str = "control",
        stim_key: str = "stimulated",
        pred_key: str = "predicted",
        target: str | None = None,
        seed: int = 0,
        hyperparameters: Mapping[str, Any] | None = None,
    ):
        require_nonempty(adata)
        require_obs_keys(adata, [condition_key, cell_type_key])
        require_finite(adata)
        require_log_normalised(adata)
        for value in (ctrl_key, stim_key):
            require_value(adata, condition_key, value)
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
            raise TypeError(f"seed must be an integer, not {seed!r}.")
        self.adata = adata
        self.condition_key, self.cell_type_key = condition_key, cell_type_key
        self.ctrl_key, self.stim_key, self.pred_key = ctrl_key, stim_key, pred_key
        self.seed = int(seed)
        self.target = target
        self.config: dict[str, Any] = {
            "condition_key": condition_key,
            "cell_type_key": cell_type_key,
            "ctrl_key": ctrl_key,
            "stim_key": stim_key,
            "pred_key": pred_key,
            "target": target,
            "seed": self.seed,
            **(hyperparameters or {}),
        }
        self.X = as_dense(adata.X)
        self.cell_types = adata.obs[cell_type_key].astype(str).to_numpy()
        conditions = adata.obs[condition_key].astype(str).to_numpy()
        self.is_ctrl, self.is_stim = conditions == ctrl_key, conditions == stim_key
        if target is not None:
            self._check_target(target)

    @property
    def var_names(self) -> pd.Index:
        """Genes of the training data, in order; predictions and queries use exactly these."""
        return self.adata.var_names

    def __repr__(self) -> str:
        options = ", ".join(f"{k}={v!r}" for k, v in self.config.items() if not k.endswith("_key"))
        return f"{type(self).__name__}({self.adata.n_obs} cells x {self.adata.n_vars} genes, {options})"

    def train(self, **options) -> Self:
        """Nothing to learn here; accepts and ignores the training options of the VAE models.

        Models that learn override this; the baselines compute everything in :meth:`predict`, and keep
        this method so that a benchmark can drive every model alike.
        """
        return self

    # -- randomness ----------------------------------------------------------------------------------

    def _seed_sequence(self, purpose: str) -> np.random.SeedSequence:
        """Seed of one random stream: the model seed and the stream's name, so streams never overlap.

        Each prediction re-creates its stream, so two calls with the same arguments agree.
        """
        return np.random.SeedSequence([self.seed, zlib.crc32(purpose.encode())])

    def _rng(self, purpose: str) -> np.random.Generator:
        return np.random.default_rng(self._seed_sequence(purpose))

    # -- the held-out type and the query -------------------------------------------------------------

    def _check_target(self, target: str) -> None:
        """Raise unless ``target`` is a known type with control cells and no stimulated cells here."""
        require_value(self.adata, self.cell_type_key, target, what="training data")
        of_target = self.cell_types == target
        if not (of_target & self.is_ctrl).any():
            raise ValueError(
                f"cell type {target!r} has no {self.ctrl_key!r} cells in the training data, so there is "
                "nothing to transform; choose another type or pass the cells to transform as query."
            )
        n_leaked = int((of_target & self.is_stim).sum())
        if n_leaked:
            raise ValueError(
                f"the training data holds {n_leaked} {self.stim_key!r} cells of {target!r}, the type to "
                "predict: the model would learn the answer (leakage). Hold them out first, e.g. "
                f"course_lib.preprocessing.holdout(adata, {target!r})."
            )

    def _resolve(self, target: str | None, query: ad.AnnData | None) -> tuple[str | None, ad.AnnData]:
        """The checked target and the cells to transform: ``query``, or the target's control cells."""
        target = self.target if target is None else target
        if target is None and query is None:
            raise ValueError("pass target (the cell type to predict) or query (the cells to transform).")
        if target is not None:
            self._check_target(target)
        if query is None:
            return target, self.adata[(self.cell_types == target) & self.is_ctrl]
        self._check_cells(query, what="query")
        return target, query

    def _check_cells(self, adata: ad.AnnData, *, what: str) -> None:
        """Raise unless ``adata`` holds log-normalised, finite cells with exactly the training genes."""
        require_nonempty(adata, what=what)
        require_same_genes(adata, self.adata, what=what, reference_what="the training data")
        require_finite(adata, what=what)
        require_log_normalised(adata, what=what)

    def _pools(self, target: str | None, exclude_target: bool) -> tuple[np.ndarray, np.ndarray]:
        """Training-cell indices of the balanced control and stimulated pools (seeded, reproducible).

        By default the control pool holds the target's control cells while the stimulated pool cannot
        hold its (held-out) stimulated cells, as in the reference; ``exclude_target`` leaves the target
        out of both.
        """
        allowed = np.ones(self.adata.n_obs, dtype=bool)
        if exclude_target and target is not None:
            allowed = self.cell_types != target
        return balanced_pools(
            self.cell_types, self.is_ctrl & allowed, self.is_stim & allowed, self._rng("pools")
        )

    def _pool_delta(self, values: np.ndarray, target: str | None, exclude_target: bool) -> np.ndarray:
        """Mean of ``values`` (one row per training cell) over the stimulated pool minus the control pool."""
        ctrl, stim = self._pools(target, exclude_target)
        return values[stim].mean(axis=0) - values[ctrl].mean(axis=0)

    def _option(self, name: str, value: Any) -> Any:
        """A prediction option: the value passed to :meth:`predict`, else the one given at construction."""
        return self.config[name] if value is None else value

    def _prediction(self, X: np.ndarray, query: ad.AnnData, target: str | None) -> ad.AnnData:
        """The predicted cells as AnnData: ``query``'s obs with ``obs[condition_key] = pred_key``."""
        obs = query.obs.copy()
        obs[self.condition_key] = pd.Categorical([self.pred_key] * query.n_obs)
        prediction = ad.AnnData(X=np.asarray(X, dtype=np.float32), obs=obs, var=self.adata.var.copy())
        prediction.uns["prediction"] = {"model": self.name, "target": target, "seed": self.seed}
        return prediction

    # -- saving and loading --------------------------------------------------------------------------

    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write the model to the directory ``path``: its config, its genes and its learned state.

        The files are written to a temporary directory beside ``path`` and moved into place at the end,
        so an error never leaves a half-written model behind.
        """
        path = Path(path)
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path} exists; pass overwrite=True to replace it.")
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
        try:
            meta = {"model": self.name, "config": self.config}
            (staging / CONFIG_FILE).write_text(json.dumps(meta, indent=2))
            (staging / GENES_FILE).write_text("\n".join(self.var_names) + "\n")
            self._save_state(staging)
            if path.exists():
                shutil.rmtree(path)
            staging.rename(path)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return path

    def _save_state(self, directory: Path) -> None:
        """Write what the model learned (nothing for the baselines)."""

    def _load_state(self, directory: Path) -> None:
        """Read what :meth:`_save_state` wrote."""

    @classmethod
    def load(cls, path: str | Path, adata: ad.AnnData, **options) -> Self:
        """Rebuild a model saved with :meth:`save` on ``adata``, which must have the same genes.

        ``options`` go to the constructor (e.g. ``device``) and override saved settings (e.g. ``target``).
        Raises if ``path`` holds another model.
        """
        meta = read_config(path)
        if meta["model"] != cls.name:
            raise ValueError(
                f"{path} holds a {meta['model']!r} model, not {cls.name!r}; "
                "load it with its own class or with course_lib.models.load."
            )
        genes = pd.Index((Path(path) / GENES_FILE).read_text().splitlines())
        require_same_genes(
            adata, ad.AnnData(var=pd.DataFrame(index=genes)), reference_what=f"the model in {path}"
        )
        model = cls(adata, **{**meta["config"], **options})
        model._load_state(Path(path))
        return model


def read_config(path: str | Path) -> dict[str, Any]:
    """The ``{"model": name, "config": {...}}`` record of a saved model directory."""
    config = Path(path) / CONFIG_FILE
    if not config.exists():
        raise FileNotFoundError(f"{config} not found: {path} is not a model saved with model.save().")
    return json.loads(config.read_text())
