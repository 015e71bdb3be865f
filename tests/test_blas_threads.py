"""A run computes on one BLAS thread, every BLAS library it uses included: threadpoolctl limits only the libraries
loaded when its context opens, so one the run loads later (scipy's own OpenBLAS, which the expRNN's matrix
exponential brings) would run on every core. Checked in a fresh interpreter, where scipy is not loaded yet."""

import json
import subprocess
import sys
import textwrap

import pytest

CHILD = textwrap.dedent("""
    import json, sys, tempfile
    from pathlib import Path
    import threadpoolctl
    from pipeline.run import runner
    from pipeline.run.config import RunConfig

    seen = []
    real = runner.threadpool_limits

    def recording(*args, **kwargs):  # the BLAS libraries loaded when the run's limit opens
        seen.append(sorted(i["filepath"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"))
        return real(*args, **kwargs)

    runner.threadpool_limits = recording
    cfg = RunConfig(task="adding", seq_len=6, hidden=4, batch=4, iters=3, val_size=16, probe_len=6, eval_every=0,
                    cell_type=sys.argv[1], init="orthogonal", gamma_w=1.0)
    folder = Path(tempfile.mkdtemp())
    runner.execute_run(cfg, folder / "no-data", folder / "run")
    after = sorted(i["filepath"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas")
    print(json.dumps({"at_limit": seen[0], "after": after, "scipy": "scipy.linalg" in sys.modules}))
""")


@pytest.mark.parametrize("cell_type", ["exprnn", "rnn"])
def test_every_blas_library_a_run_uses_is_loaded_before_its_threads_are_limited(cell_type):
    done = subprocess.run([sys.executable, "-c", CHILD, cell_type], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["after"] == seen["at_limit"]  # nothing loaded inside the run escaped its limit
    assert seen["scipy"] == (cell_type == "exprnn")  # and no other cell pays scipy's import
