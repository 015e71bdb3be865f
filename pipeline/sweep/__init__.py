"""Run a sweep spec's grid: one MLflow parent run, one nested child run per cell, cells in worker processes.

Only the sweep's own process talks to MLflow; workers only compute run folders (`runner.execute_run`). A child run
is created RUNNING when its cell is submitted and ended FINISHED once its folder is logged (an outcome such as
`diverged` or `failed` is a tag, not a status); a worker that crashes ends it FAILED.

Resume: a cell whose config_hash has a FINISHED run in the experiment and whose folder
`results/<spec>/runs/<hash>/` exists is skipped; a folder without a FINISHED run (killed between computing and
logging) is logged again without recomputing. A folder whose outcome is `failed` (an exception stopped the run:
no result) or whose summary.json does not parse is computed again ("retried"); a `diverged` or `unstable` one is a
result and stays. Runs left RUNNING by a killed sweep end KILLED at the start (and
the temp folders of its killed workers are removed), and SIGINT/SIGTERM end the in-flight ones KILLED. So a killed
sweep, started again, finishes what is missing and repeats nothing that finished. One sweep of a spec at a time
(per results folder): a second is refused while the first holds `results/<spec>/.lock`.

One job per module:
- `plan`: the cells and their hashes (no processes);
- `results`: the results folder on disk (the lock, leftovers, a folder's outcome, `results/<spec>.parquet`);
- `pool`: the worker processes and logging threads (no MLflow);
- `stop`: SIGINT/SIGTERM turned into a stop at a safe point;
- `present`: the sweep in MLflow (experiment, parent, children, datasets, summary table);
- `order`: the order the missing cells are computed in (longest first);
- `compute`: the loop that computes the missing cells and logs each as it returns;
- `driver`: `run_sweep`, from the spec's lock to its closed parent run, resume included.

The names below are the package's face for the stages, the benchmarks and the tests; its own modules import from
the module that owns a name.
"""

from .driver import Progress, cells_to_compute, run_sweep
from .plan import Cell, SweepResult, cell_names, plan_cells, spec_hash
from .pool import WORKER_NICENESS, compute_cell, started_workers
from .present import dataset_refs, summary_table
from .results import RUNNER_TEMP_FOLDER, folder_outcome, write_results_table

__all__ = ["RUNNER_TEMP_FOLDER", "WORKER_NICENESS", "Cell", "Progress", "SweepResult", "cell_names", "cells_to_compute",
           "compute_cell", "dataset_refs", "folder_outcome", "plan_cells", "run_sweep", "spec_hash", "started_workers",
           "summary_table", "write_results_table"]
