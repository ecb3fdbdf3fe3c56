"""The obs-column conventions of an AnnData: which columns hold the condition and the cell type, and
which labels mean control, stimulated and predicted.

Every function and model of the course takes one :class:`ObsKeys` (argument ``keys``) instead of five
separate column and label arguments; its defaults are the course's own names, so most code never
passes it. For data with other names::

    keys = ObsKeys(condition="treatment", cell_type="cell_label", control="ctrl", stimulated="IFN")
    model = Scgen(train, keys=keys)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import anndata as ad
import numpy as np


@dataclass(frozen=True)
class ObsKeys:
    """Names of the obs columns and condition labels that a perturbation experiment reads.

    Parameters
    ----------
    condition
        Column of ``obs`` with the condition of every cell.
    cell_type
        Column of ``obs`` with the cell type of every cell.
    control, stimulated
        Values of ``obs[condition]`` for control and for stimulated cells.
    predicted
        Value of ``obs[condition]`` that a prediction carries.
    """

    condition: str = "condition"
    cell_type: str = "cell_type"
    control: str = "control"
    stimulated: str = "stimulated"
    predicted: str = "predicted"

    def __post_init__(self):
        names = asdict(self)
        wrong = {name: value for name, value in names.items() if not isinstance(value, str) or not value}
        if wrong:
            raise TypeError(f"ObsKeys fields must be non-empty strings, not {wrong}.")
        labels = [self.control, self.stimulated, self.predicted]
        if len(set(labels)) < len(labels):
            raise ValueError(f"control, stimulated and predicted labels must differ, not {labels}.")
        if self.condition == self.cell_type:
            raise ValueError(
                f"condition and cell_type must be different columns, not both {self.condition!r}."
            )

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ObsKeys:
        """The keys saved with :meth:`as_dict` (e.g. in a saved model's config)."""
        return cls(**values)

    def as_dict(self) -> dict[str, str]:
        """The fields as a plain dict (JSON-ready)."""
        return asdict(self)

    def conditions(self, adata: ad.AnnData) -> np.ndarray:
        """``obs[condition]`` of every cell, as strings."""
        return adata.obs[self.condition].astype(str).to_numpy()

    def cell_types(self, adata: ad.AnnData) -> np.ndarray:
        """``obs[cell_type]`` of every cell, as strings."""
        return adata.obs[self.cell_type].astype(str).to_numpy()

    def is_control(self, adata: ad.AnnData) -> np.ndarray:
        """Boolean mask of the control cells."""
        return self.conditions(adata) == self.control

    def is_stimulated(self, adata: ad.AnnData) -> np.ndarray:
        """Boolean mask of the stimulated cells."""
        return self.conditions(adata) == self.stimulated

    def is_type(self, adata: ad.AnnData, cell_type: str) -> np.ndarray:
        """Boolean mask of the cells of ``cell_type``."""
        return self.cell_types(adata) == cell_type


DEFAULT_KEYS = ObsKeys()
"""The course's conventions: ``obs["condition"]`` (control, stimulated, predicted), ``obs["cell_type"]``."""
