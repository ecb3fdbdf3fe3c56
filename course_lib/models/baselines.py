"""Baselines that every comparison includes: a model that does not beat them has learned nothing.

Both take the same arguments and give the same kind of prediction as :class:`course_lib.models.Scgen`
and :class:`course_lib.models.Scpram`, so a benchmark drives all four alike.
"""

from __future__ import annotations

import anndata as ad

from course_lib.checks import as_dense
from course_lib.models.base import PerturbationModel


class IdentityBaseline(PerturbationModel):
    """Predict no response: the target's control cells (or ``query``), unchanged.

    It scores a high R² of means whenever the response is small next to the differences between
    genes, and a delta correlation of 0 (its predicted shift from control is 0).

    Parameters
    ----------
    adata, **options
        As for :class:`~course_lib.models.base.PerturbationModel`.
    """

    name = "identity"
    label = "the identity"

    def __init__(self, adata: ad.AnnData, **options):
        super().__init__(adata, **options)

    def predict(self, target: str | None = None, *, query: ad.AnnData | None = None) -> ad.AnnData:
        """The query cells (default: ``target``'s training controls), relabelled as predicted."""
        target, query = self._resolve(target, query)
        return self._prediction(as_dense(query.X), query, target)


class MeanShiftBaseline(PerturbationModel):
    """Predict one shift in gene space: ``x + mean(stimulated pool) - mean(control pool)``.

    The pools are scGen's balanced pools (:func:`~course_lib.models.base.balanced_pools`), drawn from
    the same random stream, so for the same seed this is scGen's latent arithmetic without the VAE.

    Parameters
    ----------
    adata, **options
        As for :class:`~course_lib.models.base.PerturbationModel`.
    exclude_target
        Default of :meth:`predict`'s option: leave the target type out of both pools.
    """

    name = "mean_shift"
    label = "the mean shift"

    def __init__(self, adata: ad.AnnData, *, exclude_target: bool = False, **options):
        super().__init__(adata, hyperparameters={"exclude_target": exclude_target}, **options)

    def predict(
        self,
        target: str | None = None,
        *,
        query: ad.AnnData | None = None,
        exclude_target: bool | None = None,
    ) -> ad.AnnData:
        """Shift the query cells (default: ``target``'s training controls) by the pools' mean difference.

        ``uns["delta"]`` holds the shift, one value per gene.
        """
        target, query = self._resolve(target, query)
        delta = self._pool_delta(self.X, target, self._option("exclude_target", exclude_target))
        prediction = self._prediction(as_dense(query.X) + delta, query, target)
        prediction.uns["delta"] = delta
        return prediction
