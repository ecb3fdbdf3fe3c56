# One job per grid point, the merge into the benchmark table, and the table's RO-Crate.


rule point:
    input:
        INPUTS,
    output:
        f"{POINTS}/{{point}}.json",
    params:
        grid=GRID_JSON,
        data=DATA,
    threads: RESOURCES["threads"]
    resources:
        mem_mb=RESOURCES["mem_mb"],
        runtime=RESOURCES["runtime"],
    log:
        f"{POINTS}/logs/{{point}}.log",
    shell:
        "{PYTHON:q} -m course_lib.benchmark point --grid {params.grid:q} --data {params.data:q} "
        "--point {wildcards.point} --threads {threads} --output {output:q} > {log:q} 2>&1"


rule merge:
    input:
        inputs=INPUTS,
        points=expand(f"{POINTS}/{{point}}.json", point=JOBS.points),
    output:
        table=RESULTS,
        sidecar=SIDECAR,
    params:
        grid=GRID_JSON,
        data=DATA,
        engine=json.dumps({"engine": "snakemake", "version": snakemake.__version__}),
    log:
        f"{POINTS}/logs/merge.log",
    shell:
        "{PYTHON:q} -m course_lib.benchmark merge --grid {params.grid:q} --data {params.data:q} "
        "--inputs {input.inputs:q} --engine {params.engine:q} --output {output.table:q} {input.points:q} "
        "> {log:q} 2>&1"


rule crate:
    input:
        table=RESULTS,
        sidecar=SIDECAR,
        inputs=INPUTS,
    output:
        directory(CRATE),
    log:
        f"{POINTS}/logs/crate.log",
    shell:
        "{PYTHON:q} -m course_lib.benchmark crate --results {input.table:q} --inputs {input.inputs:q} "
        "--workflow {ROOT:q} --output {output:q} > {log:q} 2>&1"
