# N Optuna workers as jobs that share one study (config "tuning"; none when workers is 0), and the
# study's trials table once they are done. The study lives in a journal file (or the database of
# "storage"): a rerun resumes it, and a killed worker's trial is failed and rerun by the next worker.

TUNING = config.get("tuning") or {}
WORKERS = int(TUNING.get("workers", 0))
STUDY = TUNING.get("study", "tuning")
TUNING_DIR = f"results/tuning/{STUDY}"
TUNING_TARGETS = [f"{TUNING_DIR}/trials.csv"] if WORKERS else []
TUNING_OPTIONS = {
    "--data": DATA,
    "--storage": TUNING.get("storage") or f"{TUNING_DIR}/study.journal",
    "--study-name": STUDY,
    "--model": TUNING.get("model", "scgen"),
    "--test-type": TUNING.get("test_type"),
    "--validation-type": TUNING.get("validation_type"),
    "--search": TUNING.get("search", "tpe"),
    "--n-trials": TUNING.get("n_trials"),
    "--epochs": TUNING.get("n_epochs"),
    "--fraction": TUNING.get("fraction"),
    "--min-cells": TUNING.get("min_cells"),
    "--n-top-genes": TUNING.get("n_top_genes"),
    "--fixed-params": json.dumps(TUNING["fixed_params"]) if TUNING.get("fixed_params") else None,
    "--space": json.dumps(TUNING["space"]) if TUNING.get("space") else None,
}
TUNING_ARGS = " ".join(
    f"{option} {shlex.quote(str(value))}" for option, value in TUNING_OPTIONS.items() if value is not None
)
if WORKERS and not (TUNING.get("test_type") and TUNING.get("validation_type")):
    raise WorkflowError("tuning needs test_type and validation_type when workers is above 0.")


rule tune:
    input:
        INPUTS,
    output:
        f"{TUNING_DIR}/worker{{worker}}.csv",
    params:
        options=TUNING_ARGS,
    threads: RESOURCES["threads"]
    resources:
        mem_mb=RESOURCES["mem_mb"],
        runtime=RESOURCES["runtime"],
    log:
        f"{TUNING_DIR}/logs/worker{{worker}}.log",
    shell:
        "OMP_NUM_THREADS={threads} {PYTHON:q} -m course_lib.tuning {params.options} --worker {wildcards.worker} "
        "--quiet --trials-output {output:q} > {log:q} 2>&1"


rule tuning:
    input:
        expand(f"{TUNING_DIR}/worker{{worker}}.csv", worker=range(WORKERS)),
    output:
        f"{TUNING_DIR}/trials.csv",
    params:
        options=TUNING_ARGS,
    log:
        f"{TUNING_DIR}/logs/trials.log",
    shell:
        "{PYTHON:q} -m course_lib.tuning {params.options} --quiet --trials-output {output:q} > {log:q} 2>&1"
