# The data, once: fetch and verify the Kang 2018 files (or hash the .h5ad file of the config) and list
# them with their sha256 for the merged table's sidecar and the RO-Crate. A local rule: on a cluster it
# runs where the package index can be reached.


rule data:
    output:
        INPUTS,
    params:
        data=DATA,
    log:
        "results/data/logs/inputs.log",
    shell:
        "{PYTHON:q} -m course_lib.benchmark inputs --data {params.data:q} --output {output:q} > {log:q} 2>&1"
