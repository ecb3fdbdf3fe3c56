# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # scGen: one latent shift predicts a whole cell type
#
# :::{admonition} Learning objectives
# :class: note
# After this chapter you can
# - write down the loss that scGen minimises (the evidence lower bound with a β weight) and say what each term does;
# - explain how scGen turns one vector in latent space into predicted cells, and why it balances cell types first;
# - train scGen, read its loss curve, and predict the stimulated state of a held-out cell type;
# - score the prediction with the course's metrics next to two baselines, and read the standard figures;
# - repeat the experiment for any cell type, and use the same latent arithmetic to remove a batch effect.
# :::
#
# scGen {cite}`lotfollahi2019` was the first deep generative model to predict how a cell type responds to a perturbation it was never seen under.
# Its idea fits in one sentence: learn a latent space in which "stimulated minus control" is roughly the same vector for every cell type, then add that vector to the control cells you want to predict.
# Newer tools compare themselves against it, which makes it the natural first model of the course.
#
# :::{admonition} Runs on a CPU; a GPU is optional
# :class: tip
# Everything in this chapter trains on an ordinary laptop CPU in a few minutes.
# If PyTorch sees a CUDA GPU, `course_lib` uses it automatically; nothing in the code changes.
# :::

# %% [markdown]
# ## The model: a variational autoencoder with a β weight
#
# scGen is a variational autoencoder (VAE) {cite}`kingma2014`.
# The encoder maps a cell's log-normalised expression $x$ (2,000 genes) to the mean $\mu(x)$ and variance $\sigma^2(x)$ of a Gaussian distribution over a 100-dimensional latent code $z$.
# The decoder $f(z)$ maps a code back to expression.
# Neither network ever sees the condition or the cell type: the latent space is learnt from expression alone.
#
# A VAE is trained to maximise the evidence lower bound (ELBO) of each cell,
#
# $$
# \log p(x) \;\ge\; \mathbb{E}_{q(z \mid x)}\big[\log p(x \mid z)\big] \;-\; \mathrm{KL}\big(q(z \mid x)\,\|\,\mathcal{N}(0, I)\big),
# $$
#
# where $q(z \mid x) = \mathcal{N}(\mu(x), \operatorname{diag}\sigma^2(x))$ is the encoder's distribution.
# The first term rewards good reconstructions; the second, the Kullback-Leibler (KL) divergence, keeps every cell's distribution close to a standard normal, which makes the latent space smooth and continuous.
# scGen's decoder assumes Gaussian noise of unit variance, so the reconstruction term is a squared error, and the KL term has a closed form.
# With a weight $\beta$ on the KL term, as in a β-VAE {cite}`higgins2017`, the loss that training minimises for one cell is
#
# $$
# \ell(x) \;=\; \tfrac{1}{2}\,\big\lVert x - f(z) \big\rVert^2 \;+\; \tfrac{\beta}{2} \sum_{d=1}^{100} \big(\mu_d^2 + \sigma_d^2 - \log \sigma_d^2 - 1\big),
# $$
#
# averaged over the cells of a minibatch.
# The code $z$ is drawn as the mean plus scaled noise, $z = \mu(x) + \sigma(x) \odot \varepsilon$ with $\varepsilon \sim \mathcal{N}(0, I)$; writing it this way (the reparameterisation trick) lets the gradient flow through the sampling step.
# scGen uses a tiny weight, $\beta = 5 \times 10^{-5}$: the model behaves almost like a plain autoencoder, and the KL term only gently regularises the latent space.
# With $\beta = 1$ the KL term would pull all codes towards the origin and wash out the differences between cell types that the prediction relies on.
#
# Encoder and decoder each have two hidden layers of 800 units (linear layer, batch normalisation, leaky ReLU, dropout of 0.2), the architecture of the reference implementation.
#
# ## The prediction: latent arithmetic
#
# After training, scGen describes the perturbation with a single vector,
#
# $$
# \delta \;=\; \frac{1}{n}\sum_{i \in S} \mu(x_i) \;-\; \frac{1}{n}\sum_{j \in C} \mu(x_j),
# $$
#
# the difference between the mean latent code of a pool $S$ of stimulated training cells and a pool $C$ of control training cells.
# A control cell $x$ of the held-out type is then predicted as
#
# $$
# \hat{x}_{\text{stim}} \;=\; f\big(\mu(x) + \delta\big).
# $$
#
# The pools are balanced first: every cell type is drawn, with replacement, as often as the most frequent type of its pool, and then both pools are cut to the same size $n$.
# Without this step, the abundant CD14+ monocytes and CD4 T cells would dominate $\delta$, and the shift would be mostly "what interferon does to monocytes".
# Note an asymmetry: the control pool contains the held-out type's control cells, the stimulated pool cannot contain its stimulated cells.
# `course_lib` keeps this default of the reference implementation and offers `exclude_target=True` to leave the held-out type out of both pools (exercise 2).

# %% tags=["parameters"]
fraction = 1.0  # share of cells kept per (condition, cell type); the test suite uses a small value
n_epochs = 10  # passes over the training cells
seed = 0
cell_type = "CD4 T cells"  # the held-out cell type: any type with enough cells works

# %% [markdown]
# ## Preparing the data without leaking the answer
#
# We load the Kang 2018 cells (chapter 2), hide the stimulated cells of the held-out type, and choose the 2,000 highly variable genes on the remaining cells only.
# `held_out_split` does these steps (with `preprocess(..., fit_on=...)` and `holdout` from chapter 2) and returns three sets of cells: the training cells, the query (the held-out type's control cells, which the model transforms) and the hidden truth (its stimulated cells, used only for scoring).

# %%
# %matplotlib inline
import anndata as ad
import matplotlib.pyplot as plt
import scanpy as sc

from course_lib import plotting
from course_lib.datasets import kang2018
from course_lib.experiment import held_out_split
from course_lib.metrics import evaluate
from course_lib.models import IdentityBaseline, MeanShiftBaseline, Scgen
from course_lib.preprocessing import subsample

counts = kang2018()
train, ctrl, truth = held_out_split(counts, cell_type, fraction=fraction, seed=seed)
print(f"training cells: {train.n_obs:,}; query ({cell_type}, control): {ctrl.n_obs:,}; "
      f"hidden truth ({cell_type}, stimulated): {truth.n_obs:,}")

# %% [markdown]
# ## Training
#
# `Scgen(train, seed=seed)` builds the model; `.train()` runs Adam on minibatches of 128 cells and shows a progress bar.
# It keeps 10% of the training cells aside as a validation set, records both losses after every epoch, stops early if the validation loss has not improved for five epochs, and restores the weights of the best epoch.
# The seed fixes the initial weights, the minibatches, the validation split and every later random draw, so the same seed gives the same numbers.

# %%
model = Scgen(train, seed=seed)
model.train(n_epochs=n_epochs)
model.history[["epoch", "train_loss", "val_loss"]].tail(3)

# %% [markdown]
# The loss curve below shows the loss per cell on the training and the validation cells after every epoch.

# %%
plotting.training_history(model.history, model="scgen", log_y=True)

# %% [markdown]
# Both curves fall steeply in the first epochs and then flatten.
# The vertical axis is logarithmic because the first epoch can lie far above the rest, sometimes by a factor of a hundred or more.
# That jump is a side effect of the learning rate: `course_lib` trains scGen at 3 × 10⁻³, three times the reference's, so that ten epochs of 128-cell batches suffice.
# In the first of the roughly 80 updates of an epoch, such a step size can make the encoder output very large variances for some cells; the KL term then explodes, the noisy latent samples decode badly, and the validation loss of that epoch follows.
# Training recovers within an epoch, and because early stopping keeps the weights of the best epoch, the spike never reaches a prediction.
# (A learning-rate warm-up removes the spike, but on this split it also lowered the R² of the predicted means from about 0.92 to between 0.84 and 0.90 over three seeds, so the course does not use one.)
#
# The validation loss stays close to the training loss, so the model is not memorising its training cells; it is even a little lower, because the training loss is measured with dropout switched on and the validation loss without.
# The second panel shows the two terms of the loss before weighting, summed over genes and latent dimensions.
# After the first epoch the KL divergence stays large, thousands of nats per cell, because nothing much stops the encoder from spreading the cells far apart in latent space; multiplied by β = 5 × 10⁻⁵ it still adds almost nothing, and the loss is essentially half the reconstruction error.
# Ten epochs are enough for the curves to flatten but not to converge completely; exercise 1 asks what more epochs buy.

# %% [markdown]
# ## Predicting the held-out cells
#
# `predict(target=cell_type)` computes $\delta$ from the balanced pools, encodes the query cells, adds $\delta$ and decodes.
# The result is an AnnData with one predicted cell per query cell, labelled `predicted` in `obs["condition"]`; the shift vector is kept in `uns["delta"]`.
# The two baselines of the course are built and asked in the same way:
#
# - the **identity** baseline returns the control cells unchanged;
# - the **mean-shift** baseline adds, in gene space, the mean difference between stimulated and control cells of the other types (on the same balanced pools as scGen).
#
# A deep model earns its keep only where it beats both.

# %%
predictions = {
    "scgen": model.predict(target=cell_type),
    "identity": IdentityBaseline(train, seed=seed).train().predict(target=cell_type),
    "mean_shift": MeanShiftBaseline(train, seed=seed).train().predict(target=cell_type),
}
predictions["scgen"]

# %% [markdown]
# ## Scoring the prediction against both baselines
#
# `course_lib.metrics.evaluate` compares every prediction with the hidden stimulated cells and returns one tidy row per model and metric.
# Chapter 5 treats the metrics in depth; for now, three groups are enough:
#
# - **means**: R² and Pearson r between the predicted and the real mean expression per gene, on all 2,000 genes and on the 100 genes most induced by interferon (`top100`);
# - **changes** (`delta_…`): the same statistics on the predicted and the real *change* from control, which is what a perturbation model is really asked for;
# - **distributions**: the energy distance between predicted and real cells in a PCA, the distance between the genes' mean-variance densities (`mv_kde`), and the overlap of the top 100 up-regulated genes (`deg_jaccard`).
#
# The mean-based metrics come with 95% bootstrap intervals (100 resamples of 80% of the cells).

# %%
results = evaluate(ctrl, truth, predictions, seed=seed)
shown = ["r2_mean_all", "r2_mean_top100", "delta_pearson_all", "delta_pearson_top100",
         "delta_r2_top100", "e_distance", "mv_kde", "deg_jaccard_top100"]
table = results.pivot(index="metric", columns="model", values="value")
table.loc[shown, list(predictions)].round(3)

# %% [markdown]
# Read the table row by row, and always against the baselines.
#
# - The identity baseline reaches a high R² of means on all genes, as in chapter 1, yet its change correlation (`delta_pearson`) is zero: it predicts no response at all.
# - scGen and the mean-shift baseline both predict the direction of the response well: their change correlations are far above zero and close to each other.
#   On the mean-based and change metrics the two are within a few hundredths, a difference that another seed or another held-out type can reverse.
#   scGen does share more of the 100 most induced genes with the truth (`deg_jaccard`), although neither shares many.
# - On the distribution metrics the picture changes: scGen's energy distance and mean-variance distance are clearly worse than the mean-shift baseline's.
#   The figures below show why.
#
# The bar chart shows the same numbers with their bootstrap intervals.

# %%
plotting.metric_bars(results[results["metric"].isin(shown)], metrics=shown, n_cols=4, title_width=28)

# %% [markdown]
# Where the whiskers of two models overlap, this single run cannot tell them apart.
# A fair comparison needs several seeds and several held-out cell types, which is what chapter 8 does.

# %% [markdown]
# ## Looking at the prediction
#
# Numbers summarise; figures show where a prediction goes wrong.
# The scatter plot below compares, gene by gene, the mean of the predicted cells with the mean of the real stimulated cells.
# The 100 most induced genes are outlined, and the most responsive genes are labelled.

# %%
plotting.mean_expression_scatter(ctrl, truth, predictions["scgen"], model="scgen")

# %% [markdown]
# Most genes sit close to the diagonal, and so do most of the strongly induced ones: scGen moves the interferon-stimulated genes in the right direction and by roughly the right amount.
# The outlined genes that stray from the diagonal are those whose response in CD4 T cells differs from the average response of the other types, which is all that a single shift can transfer: genes above it are over-predicted, genes below it under-predicted.
#
# The dot plot below shows the 20 genes most induced in the real stimulated cells, in control, real stimulated and each prediction: dot size is the share of cells expressing the gene, colour the mean expression.

# %%
plotting.deg_dotplot(ctrl, truth, predictions)

# %% [markdown]
# Finally, whole cells: the panels below place control, real stimulated and predicted cells in the PCA of the real cells (top) and in a UMAP (bottom), one column per model.

# %%
plotting.embedding_plot(ctrl, truth, predictions, seed=seed)

# %% [markdown]
# The identity prediction sits on top of the control cells by construction.
# scGen's and the mean-shift baseline's predicted cells both move to the real stimulated cells.
#
# Two things explain scGen's weaker distribution metrics.
# In the PCA, scGen's cells overshoot the real stimulated cells a little along the first component, a shift of the whole cloud that the energy distance registers even where the means of most genes are right.
# And scGen's decoder returns the *expected* expression of a cell, a smooth value that is never exactly zero (in the dot plot its dots are full for almost every gene), so its cells lack the zeros and the cell-to-cell noise of droplet data; the mean-variance distance registers that.
# The mean-shift baseline keeps each control cell's own noise and only moves it, so its cells keep the shape of real data, even though the model behind them is trivial.

# %% [markdown]
# ## Any cell type
#
# Nothing above is specific to CD4 T cells.
# To hold out another type, change `cell_type` in the parameters cell at the top and run the chapter again; from the command line, `python -m course_lib.book execute book/03_scgen.py out.ipynb --parameters '{"cell_type": "B cells"}'` does the same.
# Types with fewer than 100 control or stimulated cells are too small for the metrics to mean much; the table below lists which types qualify.

# %%
from course_lib.experiment import cell_type_eligibility

eligibility = cell_type_eligibility(counts)
eligibility

# %% [markdown]
# When you run this notebook in Jupyter, the cell below shows a drop-down menu of the eligible types.
# Choosing a type trains a fresh scGen model with that type held out (its stimulated cells hidden and the genes chosen again without them) and shows the scores next to the two baselines.
# Nothing happens until you choose, so the cell never holds up a run of the whole notebook; on this static page the menu is not shown.


# %%
def held_out_experiment(cell_type):
    """Hold out ``cell_type``, train scGen, and score it against both baselines."""
    train, ctrl, truth = held_out_split(counts, cell_type, fraction=fraction, seed=seed)
    predictions = {
        "scgen": Scgen(train, seed=seed).train(n_epochs=n_epochs).predict(target=cell_type),
        "identity": IdentityBaseline(train, seed=seed).train().predict(target=cell_type),
        "mean_shift": MeanShiftBaseline(train, seed=seed).train().predict(target=cell_type),
    }
    results = evaluate(ctrl, truth, predictions, seed=seed)
    return results.pivot(index="metric", columns="model", values="value").loc[shown]


# %% tags=["remove-output"]
import ipywidgets as widgets
from IPython.display import display

choice = widgets.Dropdown(options=list(eligibility.index[eligibility["eligible"]]), value=cell_type,
                          description="Held out:")
shown_output = widgets.Output()


def on_choice(change):
    with shown_output:
        shown_output.clear_output()
        print(f"Training scGen with {change['new']} held out ...")
        display(held_out_experiment(change["new"]).round(3))


choice.observe(on_choice, names="value")
display(widgets.VBox([choice, shown_output]))

# %% [markdown]
# ## Removing a batch effect with the same arithmetic
#
# The latent shift that predicts a perturbation can also undo an unwanted one.
# Suppose cells of the same type were measured in two batches: in latent space, the batches of that type form two clouds whose means differ by a vector.
# scGen's batch removal encodes every cell, shifts the codes of each batch so that every batch of a cell type has the same mean as its largest batch, and decodes the result.
# Types found in one batch only are left unchanged.
#
# The Kang data has no second batch, so we let the condition play the batch: `remove_batch_effect(batch_key="condition")` should then merge control and stimulated cells of every type present in both conditions.
# The held-out type has only control cells in the training data, so it must stay where it is.

# %%
corrected = model.remove_batch_effect(batch_key="condition")
codes = ad.AnnData(obs=train.obs[["condition", "cell_type"]].copy())
codes.obsm["before"], codes.obsm["after"] = model.latent(), corrected.obsm["X_latent_corrected"]
codes = subsample(codes, min(1.0, 3000 / codes.n_obs), seed=seed)  # 3,000 cells are enough to see it
codes.uns["condition_colors"] = [plotting.PALETTE["control"], plotting.PALETTE["stimulated"]]
for step in ["before", "after"]:
    sc.pp.neighbors(codes, use_rep=step, transformer="sklearn", key_added=step)
    embedded = sc.tl.umap(codes, neighbors_key=step, random_state=seed, copy=True)
    codes.obsm[f"X_umap_{step}"] = embedded.obsm["X_umap"]
titles = {"before": "Latent codes before", "after": "After batch removal"}
for step, title in titles.items():
    with plt.rc_context({"figure.figsize": (3.6, 3.6)}):
        axes = sc.pl.embedding(codes, basis=f"umap_{step}", color=["condition", "cell_type"], wspace=0.6,
                               title=[f"{title}: condition", f"{title}: cell type"], show=False)
    for ax in axes:
        ax.set(xlabel="UMAP1", ylabel="UMAP2")
    plt.show()

# %% [markdown]
# The two rows show UMAPs of the latent codes of 3,000 training cells, before and after the correction, coloured by condition (left) and by cell type (right).
# Before the correction, control and stimulated cells of each type form neighbouring but separate groups.
# After it, the two conditions of each type are moved onto each other, while the cell types stay apart: the correction removes the difference between the "batches" without erasing the biology they share.
# The held-out CD4 T cells have no stimulated cells in the training data and are left as they were.
# The same step is used in chapter 8 to bring cells of another study onto the Kang data before predicting their response.
#
# :::{admonition} What scGen does well, and where it stops
# :class: note
# scGen is light enough for a laptop, and its single shift vector is easy to inspect and re-use: the same vector removes batch effects and has been transferred across studies and species.
# The same simplicity is its limit: every cell of the held-out type receives the same shift, so heterogeneity within the type is lost; the model needs cell-type labels; and a linear shift in latent space struggles with combinations of perturbations and with dose series.
# Chapter 4 keeps the VAE and replaces the single vector with one shift per cell.
# :::

# %% [markdown]
# ## Key take-aways
#
# - scGen is a VAE trained on expression alone; its loss is a squared reconstruction error plus a KL term with a small weight β.
# - A perturbation is one vector in latent space, the difference between the mean codes of balanced stimulated and control pools; adding it to control codes and decoding predicts the response.
# - A single training run takes minutes on a CPU; the loss curve tells whether it has converged and whether it over-fits.
# - Every prediction is scored next to the identity and mean-shift baselines: a high R² of means alone says little, changes and distributions say more.
# - Any eligible cell type can be held out; the same latent arithmetic removes batch effects.

# %% [markdown]
# ## Exercises
#
# **1. More epochs.**
# Run the chapter with `n_epochs = 30`.
# Does the validation loss keep falling, does early stopping trigger, and do the change metrics improve?
#
# :::{dropdown} Solution
# Set `n_epochs = 30` in the parameters cell and run all cells, or from a terminal:
# ```bash
# python -m course_lib.book execute book/03_scgen.py scgen30.ipynb --parameters '{"n_epochs": 30}'
# ```
# The validation loss keeps falling slowly for a while, so early stopping (five epochs without improvement) rarely triggers within 30 epochs.
# Better reconstructions do not automatically mean better predictions: compare the `delta_pearson` and `e_distance` rows with the 10-epoch table, and keep in mind that a single seed cannot separate small differences from noise.
# :::
#
# **2. Leave the held-out type out of both pools.**
# Predict once more with `exclude_target=True` and compare the shift vectors and the scores.
#
# :::{dropdown} Solution
# ```python
# import numpy as np
#
# excluded = model.predict(target=cell_type, exclude_target=True)
# delta_default, delta_excluded = predictions["scgen"].uns["delta"], excluded.uns["delta"]
# cosine = delta_default @ delta_excluded / np.linalg.norm(delta_default) / np.linalg.norm(delta_excluded)
# print(f"cosine similarity of the two shifts: {cosine:.3f}")
# evaluate(ctrl, truth, {"default": predictions["scgen"], "exclude_target": excluded}, seed=seed)
# ```
# The two shifts point in almost the same direction, because the held-out type is one of several types in the control pool.
# The scores change little; the option matters more when the held-out type is a large share of all cells, or when its control cells differ strongly from the others.
# :::
#
# **3. A harder cell type.**
# Hold out CD14+ monocytes instead of CD4 T cells (with the parameter or the drop-down menu).
# Is the prediction better or worse, and why?
#
# :::{dropdown} Solution
# Set `cell_type = "CD14+ Monocytes"` and run the chapter again.
# Monocytes respond to interferon more strongly than any other type (chapter 2), so a shift learnt mostly from lymphocytes tends to under-predict them: the change correlation can stay high while the R² of the top genes drops, because the direction is right but the size is not.
# Compare also with the mean-shift baseline, which suffers from the same limitation.
# :::
#
# **4. The β weight.**
# Build the model with `Scgen(train, seed=seed, kl_weight=0.05)`, a thousand times the default, train it and score it.
# What happens to the two terms of the loss and to the predictions?
#
# :::{dropdown} Solution
# ```python
# strong = Scgen(train, seed=seed, kl_weight=0.05).train(n_epochs=n_epochs)
# plotting.training_history(strong.history, model="scgen, kl_weight=0.05")
# evaluate(ctrl, truth, {"scgen": predictions["scgen"],
#                        "kl_weight=0.05": strong.predict(target=cell_type)}, seed=seed)
# ```
# The KL term becomes much smaller and the reconstruction error larger: the latent codes are pushed towards the standard normal and carry less detail.
# Predictions usually get blurrier (a larger energy distance), which is why scGen's default β is so small.
# :::

# %% [markdown]
# ## References
#
# ```{bibliography}
# :filter: docname in docnames
# ```
