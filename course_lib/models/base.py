"""What every perturbation model of the course shares, whether it learns or not.

Input checks, the seeded random streams, the balanced control and stimulated pools of scGen (which
the mean-shift baseline and scPRAM's attention-only variant reuse), the query cells, the prediction
AnnData, the hyperparameters a model declares (:meth:`PerturbationModel.hyperparameters`), and
saving and loading. The VAE training core builds on this in :mod:`course_lib.models.vae`.
"""

from __future__ import annotations

import inspect
import json
import shutil
import tempfile
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, NamedTuple, Self

import anndata as ad
import numpy as np
import pandas as pd

from course_lib.checks import (
    as_dense,
    require_columns,
    require_expression,
    require_same_genes,
    require_seed,
    require_value,
)
from course_lib.keys import DEFAULT_KEYS, ObsKeys

CONFIG_FILE = "config.json"
GENES_FILE = "var_names.txt"

STRUCTURAL_ARGUMENTS = frozenset(
    {"self", "adata", "keys", "seed", "target", "query", "n_epochs", "verbose", "on_epoch_end", "device"}
)
"""Arguments of a model's constructor, ``train`` and ``predict`` that say what to run on, not how the
model works: a benchmark or a search sets them itself, so they are not hyperparameters."""


class SavedModelError(RuntimeError):
    """A saved model folder is damaged or does not fit the model it is loaded into."""


class Hyperparameter(NamedTuple):
    """Where a hyperparameter goes (``"init"``, ``"train"`` or ``"predict"``) and its default value."""

    call: str
    default: Any


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
    keys
        The obs columns and condition labels (:class:`course_lib.keys.ObsKeys`); predictions carry
        ``keys.predicted`` in ``obs[keys.condition]``.
    target
        The cell type to predict, if known now: it is then checked (known type, has control cells,
        none of its stimulated cells in ``adata``) before any training, and is the default of
        :meth:`predict`.
    seed
        Seeds every random step of the model (weights, minibatches, pools, noise): the same seed, data
        and thread count give the same prediction. A non-negative integer.
    hyperparameters
        The subclass's own settings, stored in :attr:`config` so that :meth:`load` can rebuild it.
    """

    name: ClassVar[str]
    """Key of the model in :data:`course_lib.models.MODELS`."""

    label: ClassVar[str]
    """How the chapters name the model in a sentence ("scGen", "the mean shift")."""

    def __init__(
        self,
        adata: ad.AnnData,
        *,
        keys: ObsKeys = DEFAULT_KEYS,
        target: str | None = None,
        seed: int = 0,
        hyperparameters: Mapping[str, Any] | None = None,
    ):
        if not isinstance(keys, ObsKeys):
            raise TypeError(f"keys must be a course_lib.keys.ObsKeys, not {type(keys).__name__}.")
        self.seed = require_seed(seed)
        require_expression(adata, what="the training data")
        require_columns(adata, keys, what="the training data")
        for value in (keys.control, keys.stimulated):
            require_value(adata, keys.condition, value, what="the training data")
        self.adata = adata
        self.keys = keys
        self.target = target
        self.config: dict[str, Any] = {
            "keys": keys.as_dict(),
            "target": target,
            "seed": self.seed,
            **(hyperparameters or {}),
        }
        self.X = as_dense(adata.X)
        self.cell_types = keys.cell_types(adata)
        self.is_ctrl, self.is_stim = keys.is_control(adata), keys.is_stimulated(adata)
        if target is not None:
            self._check_target(target)

    @classmethod
    def hyperparameters(cls) -> dict[str, Hyperparameter]:
        """Every hyperparameter of the model: the call that takes it and its default, in call order.

        Read from the signatures of the constructor, :meth:`train` and :meth:`predict` (keyword
        arguments other than :data:`STRUCTURAL_ARGUMENTS`); a name taken by several calls belongs to the
        first (scPRAM's ``ratio`` is set at construction, ``predict`` only overrides it). The defaults
        stated here are the ones that run.
        """
        found: dict[str, Hyperparameter] = {}
        for call, function in (("init", cls), ("train", cls.train), ("predict", cls.predict)):
            for name, parameter in inspect.signature(function).parameters.items():
                keyword = parameter.kind in (parameter.KEYWORD_ONLY, parameter.POSITIONAL_OR_KEYWORD)
                if keyword and name not in STRUCTURAL_ARGUMENTS and name not in found:
                    found[name] = Hyperparameter(call, parameter.default)
        return found

    @property
    def var_names(self) -> pd.Index:
        """Genes of the training data, in order; predictions and queries use exactly these."""
        return self.adata.var_names

    def __repr__(self) -> str:
        options = ", ".join(f"{k}={v!r}" for k, v in self.config.items() if k != "keys")
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
        require_value(self.adata, self.keys.cell_type, target, what="the training data")
        of_target = self.cell_types == target
        if not (of_target & self.is_ctrl).any():
            raise ValueError(
                f"cell type {target!r} has no {self.keys.control!r} cells in the training data, so there "
                "is nothing to transform; choose another type or pass the cells to transform as query."
            )
        n_leaked = int((of_target & self.is_stim).sum())
        if n_leaked:
            raise ValueError(
                f"the training data holds {n_leaked} {self.keys.stimulated!r} cells of {target!r}, the type "
                "to predict: the model would learn the answer (leakage). Hold them out first, e.g. "
                f"course_lib.experiment.held_out_split(counts, {target!r})."
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
        require_expression(adata, what=what)
        require_same_genes(adata, self.adata, what=what, reference_what="the training data")

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
        """The predicted cells as AnnData: ``query``'s obs with ``obs[keys.condition] = keys.predicted``."""
        obs = query.obs.copy()
        obs[self.keys.condition] = pd.Categorical([self.keys.predicted] * query.n_obs)
        prediction = ad.AnnData(X=np.asarray(X, dtype=np.float32), obs=obs, var=self.adata.var.copy())
        prediction.uns["prediction"] = {"model": self.name, "target": target, "seed": self.seed}
        return prediction

    # -- saving and loading --------------------------------------------------------------------------

    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write the model to the directory ``path``: its config, its genes and its learned state.

        The files are written to a temporary directory beside ``path`` and moved into place at the end.
        An existing model (with ``overwrite``) is first renamed aside, then the new one renamed in, and
        only then is the old one deleted; if anything fails before the new model is in place, the old
        one is put back. So an error or an interruption leaves the old model or the new one, never a
        half-written one and never none.
        """
        path = Path(path)
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path} exists; pass overwrite=True to replace it.")
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.new-", dir=path.parent))
        aside, replaced = None, False
        try:
            meta = {"model": self.name, "config": self.config}
            (staging / CONFIG_FILE).write_text(json.dumps(meta, indent=2))
            (staging / GENES_FILE).write_text("\n".join(self.var_names) + "\n")
            self._save_state(staging)
            if path.exists():
                aside = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=path.parent))
                path.rename(aside / path.name)
            staging.rename(path)
            replaced = True
        finally:
            old = None if aside is None else aside / path.name
            if old is not None and not replaced and old.exists() and not path.exists():
                old.rename(path)  # the new model never arrived: put the old one back
            shutil.rmtree(staging, ignore_errors=True)
            if aside is not None and not (old.exists() and not replaced):
                shutil.rmtree(aside, ignore_errors=True)
        return path

    def _save_state(self, directory: Path) -> None:
        """Write what the model learned (nothing for the baselines)."""

    def _load_state(self, directory: Path) -> None:
        """Read what :meth:`_save_state` wrote."""

    @classmethod
    def load(cls, path: str | Path, adata: ad.AnnData, **options) -> Self:
        """Rebuild a model saved with :meth:`save` on ``adata``, which must have the same genes.

        ``options`` go to the constructor (e.g. ``device``) and override saved settings (e.g. ``target``).
        Raises :class:`SavedModelError`, naming the broken file, when the folder is damaged or when an
        override changes the architecture the weights were saved with.
        """
        path = Path(path)
        meta = read_config(path)
        if meta["model"] != cls.name:
            raise ValueError(
                f"{path} holds a {meta['model']!r} model, not {cls.name!r}; "
                "load it with its own class or with course_lib.models.load."
            )
        genes = (
            pd.Index((path / GENES_FILE).read_text().splitlines()) if (path / GENES_FILE).exists() else None
        )
        if genes is None:
            raise SavedModelError(
                f"{path / GENES_FILE} is missing: the model folder is incomplete; save it again."
            )
        require_same_genes(
            adata, ad.AnnData(var=pd.DataFrame(index=genes)), reference_what=f"the model in {path}"
        )
        config = dict(meta["config"])
        config["keys"] = ObsKeys.from_dict(config.get("keys", {}))
        model = cls(adata, **{**config, **options})
        model._load_state(path)
        return model


def read_config(path: str | Path) -> dict[str, Any]:
    """The ``{"model": name, "config": {...}}`` record of a saved model directory.

    Raises ``FileNotFoundError`` where there is no saved model, and :class:`SavedModelError` naming
    the file when it is damaged.
    """
    config = Path(path) / CONFIG_FILE
    if not config.exists():
        raise FileNotFoundError(f"{config} not found: {path} is not a model saved with model.save().")
    try:
        meta = json.loads(config.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise SavedModelError(
            f"{config} is not valid JSON ({error}): the saved model is damaged; save the model again."
        ) from None
    if not isinstance(meta, dict) or not {"model", "config"} <= set(meta):
        raise SavedModelError(
            f"{config} lacks the 'model' and 'config' entries that model.save() writes: it is damaged or "
            "not a course_lib model; save the model again."
        )
    return meta
