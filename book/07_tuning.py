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
# # Benchmarking III: tuning hyperparameters without tuning on the test cells
#
# :::{admonition} Learning objectives
# :class: note
# After this chapter you can
# - say what a hyperparameter is, and name the knobs of scGen and scPRAM that matter most;
# - run the original tutorial's 2 × 2 grids with Optuna and read them as a heat map;
# - run a real search (a tree-structured Parzen estimator with pruning) over a wider space, and read its optimisation history and parameter importances;
# - explain why every trial must be scored on a *validation* cell type, never on the held-out test type;
# - measure how much tuning on the test cells would have flattered the result, and compare tuned and default settings fairly.
# :::
#
# Every model of this course has settings that training does not learn: the number and width of its layers, the size of its latent space, the dropout rate, the learning rate, scPRAM's attention ratio.
# These *hyperparameters* are fixed before training, and they change the predictions.
# The original tutorial tried four combinations per model and kept the one with the best score on the held-out CD4 T cells.
# That is the most common mistake in benchmarking: the test cells chose the model, so the test score is no longer an honest estimate of how the model does on cells it has never seen.
# This chapter tunes both models with Optuna {cite}`akiba2019`, scores every trial on a different cell type, and then measures what the shortcut would have cost.

# %% [markdown]
# ## The knobs
#
# | hyperparameter | what it controls | too high | too low |
# |---|---|---|---|
# | `n_layers` | depth of encoder and decoder | slow training, over-fitting | too little capacity |
# | `n_hidden` | width of the hidden layers | slow training, over-fitting | a poorly structured latent space |
# | `n_latent` | size of the latent code | noisy codes | biological variation lost |
# | `dropout` | share of units silenced during training | under-fitting | over-fitting |
# | `noise_rate` | noise added to scPRAM's input during training | blurred data | less robust codes |
# | `ratio` | share of reference cells that feed scPRAM's attention | an over-smoothed shift | an unstable shift |
#
# The tutorial's grids varied scGen's depth and dropout, and scPRAM's latent size and attention ratio; the real search below lets more of them move at once.
#
# ## Three cell types, three roles
#
# A search needs a number to optimise.
# We hide the stimulated cells of **two** types: the **test type** (CD4 T cells, as everywhere in the course) and a **validation type** (CD8 T cells, the type most similar to it).
# Every trial trains on the remaining cells, predicts the stimulated validation cells from their controls and is scored on them.
# The test type's stimulated cells are not read until the very end, when the chosen settings are retrained and scored once.
#
# The score is `delta_r2_all`, the R² between the predicted and the real *change* from control over all genes.
# The tutorial optimised the R² of means, but chapter 5 showed that the identity baseline already scores high on it: it rewards reproducing the control profile more than predicting the response.
#
# :::{admonition} This chapter runs a reduced search
# :class: warning
# A full-size search trains dozens of models, about half a minute each on a laptop CPU.
# So that the chapter runs in a few minutes, its defaults tune on a stratified subsample of the cells (`fraction`) with fewer epochs per trial (`n_epochs`) and few trials (`n_trials`).
# The numbers below are therefore noisier than a full search would give; where the noise can blur a lesson, the text says so.
# To run the full-size search, set `fraction = 1.0`, `n_epochs = 10`, `n_trials = 30` and `n_seeds = 3`, or from a terminal:
# ```bash
# python -m course_lib.book execute book/07_tuning.py tuning_full.ipynb \
#     --parameters '{"fraction": 1.0, "n_epochs": 10, "n_trials": 30, "n_seeds": 3}'
# ```
# Expect an hour or more on a CPU, minutes on a GPU.
# :::

# %% tags=["parameters"]
fraction = 0.3  # share of cells kept per (condition, cell type); 1.0 runs the full-size search
n_epochs = 5  # epochs per trial (the full-size search uses 10)
n_trials = 10  # trials of the TPE search
n_seeds = 2  # seeds of the final comparison on the test type
seed = 0
test_type = "CD4 T cells"
validation_type = "CD8 T cells"
check_claims = True  # check that the prose below matches the outputs (the small test profile turns this off)

# %% [markdown]
# ## The data
#
# We subsample the cells (stratified by condition and cell type) and check that the test and validation types keep enough cells.
# The threshold of 100 cells per condition used elsewhere in the course is scaled with the subsample.

# %%
# %matplotlib inline
from IPython.display import Markdown, display

from course_lib import plotting, tuning
from course_lib.datasets import kang2018
from course_lib.experiment import cell_type_eligibility
from course_lib.models import MODELS
from course_lib.preprocessing import subsample

counts = kang2018()
if fraction < 1:
    counts = subsample(counts, fraction, seed=seed)
min_cells = max(20, round(100 * fraction))
search_options = {"test_type": test_type, "validation_type": validation_type, "n_epochs": n_epochs,
                  "min_cells": min_cells, "seed": seed, "verbose": False}
cell_type_eligibility(counts, min_cells=min_cells).loc[[test_type, validation_type]]

# %% [markdown]
# `verbose=False` keeps Optuna's log lines and progress bar quiet; set it to `True` to watch each trial as it finishes.

# %% [markdown]
# ## The tutorial's grids
#
# Optuna's `GridSampler` (seed 42, as in the tutorial) visits every combination of a grid once.
# For scGen the grid crosses the depth (`n_layers` 1 or 3) with the dropout rate (0.05 or 0.30); for scPRAM the latent size (16 or 64) with the attention ratio (0.002 or 0.02).
# Every other setting keeps its default, and every trial trains with the same model seed, so that trials differ only by their hyperparameters.

# %%
grids = {model: tuning.tune(counts, model, search="grid", **search_options) for model in ("scgen", "scpram")}
grids["scgen"].trials.drop(columns="val_loss").round(3)

# %%
grids["scpram"].trials.drop(columns="val_loss").round(3)

# %% [markdown]
# The heat maps show the objective of each combination, scored on the validation type.

# %%
heatmaps = {model: plotting.tuning_grid(result) for model, result in grids.items()}
heatmaps["scgen"]

# %%
heatmaps["scpram"]

# %%
for model, result in grids.items():
    print(f"{model}: best grid point {result.best_params}, "
          f"{result.objective_metric} = {result.best_value:.3f} on {result.scored_type}")

# %% [markdown]
# Read the two heat maps with the tables above them.
# A negative `delta_r2_all` means that the predicted changes are further from the real ones than "no change at all" would be: a short training leaves a reconstruction error on every gene, and over 2,000 genes these errors add up, whereas the real response is concentrated in a few hundred.
# The `seconds` column shows what each combination costs.
# Each grid point is scored once, with one seed, so a difference between two cells of a grid mixes the effect of the setting with the luck of that training run; chapter 8 shows how far two seeds of the same setting can lie apart, and a 2 × 2 grid scored once is a weak basis for a choice.

# %% tags=["remove-input"]
TUTORIAL_CHOICE = {"scgen": {"n_layers": 1, "dropout": 0.05}, "scpram": {"n_latent": 16, "ratio": 0.002}}


def in_words(params):
    return ", ".join(f"`{name}` = {value:g}" for name, value in params.items())


scgen_trials = grids["scgen"].trials
seconds = scgen_trials.groupby("n_layers")["seconds"].mean()
choices = [
    f"{in_words(result.best_params)} for {MODELS[model].label}"
    + (" (the tutorial's choice too)" if result.best_params == TUTORIAL_CHOICE[model]
       else f" (the tutorial chose {in_words(TUTORIAL_CHOICE[model])})")
    for model, result in grids.items()
]
display(Markdown(
    f"In the scGen grid, a trial with three layers took {seconds[3]:.0f} seconds on average and one with a single "
    f"layer {seconds[1]:.0f}: " + ("the deeper network costs more. " if seconds[3] > seconds[1] else
                                   "on this machine the difference in depth did not show in the time. ")
    + "The tutorial chose its settings by their score on the test cells; scored on the validation type "
    f"({validation_type}), the grids here choose " + " and ".join(choices) + "."
))

# %% [markdown]
# ## A real search: TPE with pruning
#
# A grid spends its budget evenly, also on hopeless regions, and its size multiplies with every parameter added.
# Optuna's default sampler, the tree-structured Parzen estimator (TPE) {cite}`bergstra2011`, starts with a few random trials and then proposes new settings where the good trials so far are dense and the bad ones sparse.
# Pruning saves more: after every epoch a trial reports its validation reconstruction loss (on a random 10% of its training cells), and a median pruner stops it when that loss is worse than the median of earlier trials at the same epoch.
# We search scGen over six hyperparameters at once, on ranges around the reference defaults:

# %%
tuning.search_space_table("scgen")

# %%
tpe = tuning.tune(counts, "scgen", search="tpe", n_trials=n_trials, **search_options)
trials = tpe.trials.drop(columns=["epochs", "seconds", "val_loss"]).set_index("trial")
trials[["kl_weight", "lr"]] = trials[["kl_weight", "lr"]].map("{:.1e}".format)  # small numbers, read as 1e-4
trials.round({"value": 3, "dropout": 2})

# %% [markdown]
# The optimisation history shows the objective of every complete trial and the best value so far; crosses along the bottom mark pruned trials.

# %%
plotting.tuning_history(tpe)

# %% [markdown]
# Which parameters mattered?
# Optuna's fANOVA importance fits a random forest to the trials and asks how much of the objective's variance each parameter explains.

# %%
plotting.tuning_importances(tpe, seed=seed)

# %% [markdown]
# With a handful of trials these shares are rough: the forest sees only as many points as there are complete trials, and a single unlucky trial can make a parameter look important.
# Pruning is judged by a proxy, the reconstruction loss, not by the objective; a setting that reconstructs well early is kept even if it predicts the response poorly.
# Both are reasons to treat the best trial as a candidate, to be confirmed on the test type with several seeds, and not as a result.

# %% [markdown]
# ## The leakage lesson: what tuning on the test cells would have reported
#
# `tune_on_test` repeats exactly the same search (sampler, seeds, trials, epochs) but scores every trial on the *test* type.
# Its best value is what a study that tuned on the test cells would publish.
# We then retrain, with `n_seeds` seeds each, the settings chosen on the validation type (`tuned`), the settings chosen on the test type (`tuned on test`) and the defaults, and score all of them on the test type.
# Where two of them are the same settings, they are trained once and the row carries both names, e.g. `scgen (tuned, tuned on test)`.
# The default setting differs from the tuned ones **only in the tuned parameters**; everything else, including the number of epochs and the subsample, is shared, so the comparison measures the tuning and nothing else.

# %%
leaky = tuning.tune_on_test(counts, tpe, verbose=False)
scores = tuning.evaluate_on_test(
    counts, "scgen", {"tuned": tpe.best_params, "tuned on test": leaky.best_params}, test_type=test_type,
    seeds=range(n_seeds), n_epochs=n_epochs, min_cells=min_cells, evaluation={"n_bootstrap": 0}, verbose=False,
)
summary = tuning.leakage_summary(scores, leaky)
summary.round(3)

# %% [markdown]
# The first row is the number the leaky study would report: the best of its trials, on one seed, scored on the very cells it was chosen by.
# The honest number is in the row `scgen (tuned)`: the settings chosen on the validation type, retrained with several seeds and scored once on the test type.
# The difference between the two is how much tuning on the test cells flatters the result.
# `leakage_gap` computes it and splits it into its two sources:
#
# - **choosing on the test cells**: the leaky search picks the settings that happen to suit the test type, using cells an honest study never looks at. Compare `scgen (tuned on test)` with `scgen (tuned)`: both are retrained and scored in the same way and differ only in which cells chose them.
# - **the luck of the best trial**: the best of many noisy trials is, to a good part, the luckiest, so the same settings tend to score less when retrained with other seeds. Compare the first row with `scgen (tuned on test)`.
#
# Both parts flatter on average over many studies; in one small study either can come out with the other sign, because each is a difference of a few noisy numbers.
# Exercise 4 shows how the luck of the best trial grows with the number of trials.

# %%
gap = tuning.leakage_gap(summary)
gap.round(3).to_frame(gap.name)

# %% tags=["remove-input"]
def signed(value):
    return f"{value:+.3f}"


same_choice = tpe.best_params == leaky.best_params
parts = {
    "choosing on the test cells": "the leaky search's settings did better on the test type than the honest ones",
    "luck of the best trial": "the best trial scored more than its settings do on average over the seeds",
}
opposite = {
    "choosing on the test cells": "the honest settings did better on the test type than the ones the test cells chose",
    "luck of the best trial": "retrained over the seeds, the leaky settings scored more than their best trial had",
}
lines = []
for part in parts:
    if gap[part] > 0:
        lines.append(f"- **{part}** {signed(gap[part])}: it flatters here; {parts[part]}.")
    elif gap[part] < 0:
        lines.append(f"- **{part}** {signed(gap[part])}: the other way here; {opposite[part]}.")
    else:
        lines.append(f"- **{part}** 0" + (": both searches chose the same settings." if same_choice else "."))
verdict = (
    "In this run, tuning on the test cells would have flattered the result"
    if gap["flattery"] > 0 else
    "In this run, tuning on the test cells would not have flattered the result; it would have reported less than the honest procedure"
    if gap["flattery"] < 0 else "In this run, the two numbers are equal"
)
display(Markdown(
    f"The leaky study would report {gap['reported']:.3f}; the honest procedure gives {gap['honest']:.3f} "
    + (f"(mean over {n_seeds} seeds). " if n_seeds > 1 else "(one seed). ") + f"{verdict} ({signed(gap['flattery'])}), "
    "and the two parts are:\n\n" + "\n".join(lines)
))

# %% [markdown]
# ## Tuned against default, next to the baselines
#
# The figure shows the scGen settings, named after the search that chose them, and the two baselines on the test type, on the tuned objective and three other metrics.
# Each bar is the mean over the seeds; the whiskers span the seeds.

# %%
shown = ["delta_r2_all", "delta_pearson_top100", "r2_mean_all", "e_distance"]
setting = scores["model"].str.removeprefix("scgen (").str.removesuffix(")")  # short labels: "tuned", "default", ...
plotting.metric_bars(scores[scores["metric"].isin(shown)].assign(model=setting), metrics=shown, n_cols=2)

# %% [markdown]
# Three questions to ask of this figure:
#
# - **Does tuning beat the default beyond the spread of the seeds?** If the whiskers overlap, the search has not found a better model, only a different one.
# - **Does the setting chosen on the validation type also do well on the test type?** The validation type was picked because it is the type most similar to the test type; whether a setting that suits one suits the other is a question for the numbers, not an assumption.
# - **Does any setting beat the mean-shift baseline on the change metrics?** Tuning a deep model that a trivial baseline beats only polishes noise.
#
# The answers depend on what the search found, so they are computed from the scores of this run:

# %% tags=["remove-input"]
objective = tpe.objective_metric
per_seed = scores[scores["metric"].isin(shown)].pivot_table(index=["model", "seed"], columns="metric", values="value")
mean, low, high = (per_seed.groupby("model").agg(how) for how in ("mean", "min", "max"))
scgen_rows = [name for name in mean.index if name.startswith("scgen (")]
# a row can hold several labels ("scgen (tuned, tuned on test)") when the settings coincide
honest_row, leaky_row, default = (tuning.setting_row(scgen_rows, "scgen", label)
                                  for label in ("tuned", "tuned on test", "default"))
tuned_rows = [name for name in dict.fromkeys([honest_row, leaky_row]) if name != default]


def score(name, metric=objective):
    spread = f" (seeds from {low.loc[name, metric]:.3f} to {high.loc[name, metric]:.3f})" if n_seeds > 1 else ""
    return f"{mean.loc[name, metric]:.3f}{spread}"


better_than_default = [name for name in tuned_rows if mean.loc[name, objective] > mean.loc[default, objective]]
beyond = [name for name in tuned_rows
          if n_seeds > 1 and (low.loc[name, objective] > high.loc[default, objective]
                              or high.loc[name, objective] < low.loc[default, objective])]
if not tuned_rows:
    first = "Both searches chose the default settings, so there is no tuned setting to set against them."
else:
    if n_seeds == 1:
        spread_verdict = "With one seed per setting there is no spread to compare with, so this run cannot answer the question."
    elif beyond:
        spread_verdict = " ".join(
            f"The seed ranges of `{name}` and of the default do not overlap: "
            + ("the tuned setting is better beyond the spread of the seeds." if name in better_than_default
               else "the default is better beyond the spread of the seeds.")
            for name in beyond)
    else:
        spread_verdict = (("The seed ranges of every tuned setting overlap" if len(tuned_rows) > 1 else
                           "The seed ranges of the tuned setting and of the default overlap")
                          + ": the search found a different model, not a better one.")
    first = (
        f"On the objective (`{objective}`), `{default}` scores {score(default)}, "
        + ", ".join(f"`{name}` {score(name)}" for name in tuned_rows) + ". "
        + ("No tuned setting beats the default on average. " if not better_than_default else
           ("Every tuned setting" if len(better_than_default) == len(tuned_rows)
            else " and ".join(f"`{name}`" for name in better_than_default))
           + " beats the default on average. ")
        + spread_verdict
    )
ranks = mean[objective].loc[scgen_rows].rank(ascending=False, method="min").astype(int)
second = (
    f"The best trial scored {tpe.best_value:.3f} on the validation type ({validation_type}); retrained with "
    + (f"{n_seeds} seeds" if n_seeds > 1 else "one seed") + f", the same setting scores {score(honest_row)} on the test type ({test_type}), "
    f"rank {ranks[honest_row]} of the {len(scgen_rows)} scGen settings there. "
    "A score on one type is not on the scale of a score on another (the types differ in how strongly they respond), "
    "so the telling comparison is within the test type: "
    + ("the validation type chose the default settings." if honest_row == default else
       "the setting chosen on the validation type does better there than the default, so in this run the validation type was a useful guide."
       if mean.loc[honest_row, objective] > mean.loc[default, objective] else
       "the setting chosen on the validation type does worse there than the default, so in this run the validation type "
       "was a poor guide.")
)
change_metrics = [metric for metric in shown if metric.startswith("delta_")]
third_parts = []
for metric in change_metrics:
    best = mean.loc[scgen_rows, metric].idxmax()
    margin = mean.loc["mean_shift", metric] - mean.loc[best, metric]
    third_parts.append(
        f"On `{metric}` the mean shift scores {mean.loc['mean_shift', metric]:.3f}, "
        + (f"{margin:.3f} more than the best scGen setting (`{best}`)" if margin > 0 else
           f"and `{best}` beats it by {-margin:.3f}")
    )
beaten_everywhere = all(mean.loc["mean_shift", metric] > mean.loc[scgen_rows, metric].max() for metric in change_metrics)
third = (". ".join(third_parts) + ". "
         + ("No scGen setting, tuned or not, beats the trivial baseline on the change metrics here."
            if beaten_everywhere else "At least one scGen setting beats the baseline on a change metric here."))
display(Markdown("\n".join(f"- {text}" for text in (first, second, third))))

# %% [markdown]
# One more caveat: a search with few epochs per trial favours settings that learn fast (small networks, large learning rates), which need not be the best settings for a longer training.
# At the full size (see the box at the top) the trials are less noisy, train as long as the final model and the search has more room; run it and compare the answers.

# %% [markdown]
# ## Key take-aways
#
# - Hyperparameters (depth, width, latent size, dropout, noise, learning rate, scPRAM's ratio) are set before training and change the predictions.
# - Score every trial on a validation cell type (or a validation split of the training cells), never on the held-out test type; retrain the chosen settings and score them once on the test type.
# - Tuning on the test cells mixes two effects into the reported number: it picks the settings that suit the test cells, and it reports the best of many noisy trials. Both flatter on average, but in one small search either can come out the other way; measure them, against the test score of settings chosen on a validation type, rather than assume them.
# - A tuned-versus-default comparison changes only the tuned parameters and uses several seeds; a difference inside the seed spread is no improvement.
# - A grid is easy to read but wasteful; TPE with pruning spends the budget where the good settings are, and its importances say which knobs matter, roughly.

# %% [markdown]
# ## Exercises
#
# **1. Another validation type.**
# Tune with B cells or CD14+ monocytes as the validation type.
# Does the chosen setting change, and how does it do on the test type?
#
# :::{dropdown} Solution
# Set `validation_type = "CD14+ Monocytes"` in the parameters cell and run the chapter again, or from a terminal:
# ```bash
# python -m course_lib.book execute book/07_tuning.py tuning_mono.ipynb --parameters '{"validation_type": "CD14+ Monocytes"}'
# ```
# Monocytes respond to interferon much more strongly than T cells, and they are predicted from a different set of reference cells; the setting that suits them need not suit CD4 T cells.
# A validation type should resemble the test type in what the model has to do; when no single type does, average the objective over several validation types.
# :::
#
# **2. Tune scPRAM with TPE.**
# Run the TPE search for scPRAM and plot its history and importances.
# Which parameters matter?
#
# :::{dropdown} Solution
# ```python
# tpe_scpram = tuning.tune(counts, "scpram", search="tpe", n_trials=n_trials, **search_options)
# display(plotting.tuning_history(tpe_scpram), plotting.tuning_importances(tpe_scpram, seed=seed))
# tpe_scpram.trials.round(4)
# ```
# The `ratio` is applied at prediction time and does not change the training loss, so pruning cannot judge it; only the objective sees it.
# Expect the learning rate and the latent size to explain much of the variance in a short search, and the ratio to matter mostly at its extremes.
# :::
#
# **3. Another objective.**
# Search with `objective_metric="r2_mean_all"` (the tutorial's choice).
# Compare the best settings and their `delta_r2_all` on the validation type, using `result.scores`.
#
# :::{dropdown} Solution
# ```python
# by_r2 = tuning.tune(counts, "scgen", search="tpe", n_trials=n_trials, objective_metric="r2_mean_all",
#                     **search_options)
# table = by_r2.scores.pivot(index="trial", columns="metric", values="value")
# table[["r2_mean_all", "delta_r2_all", "delta_pearson_top100"]].sort_values("r2_mean_all").round(3)
# ```
# The R² of means varies little between trials, because every trial reproduces the control profile well; the change metrics vary much more.
# The trial with the best R² of means is not necessarily the one that predicts the response best, which is why the course tunes on a change metric.
# :::
#
# **4. How large is the optimism?**
# Repeat the leaky search with twice as many trials. Does the reported best value grow, and does the retrained score follow?
#
# :::{dropdown} Solution
# Set `n_trials = 20` and run the chapter again.
# The reported best value can only rise or stay with more trials (it is a maximum over more draws), whereas the retrained score of the chosen settings need not: the luck of the best trial in `leakage_gap` usually grows with the search.
# :::

# %% [markdown]
# ## References
#
# ```{bibliography}
# :filter: docname in docnames
# ```
