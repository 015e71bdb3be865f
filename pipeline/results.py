"""A study's results from Python: `runs()` finds runs in the results tables the sweeps wrote (each row with its
verdict, its varied axes' name and its run folder), and `load_run()` reads one run folder back. This is what a
notebook uses instead of walking parquet files and run folders by hand; the report reads the same records
(report.analysis.run_records), so a filter here returns the runs a report table counts.

    from rnngrad import results
    clipped = results.runs(spec="clipping", learned=True)
    config, summary, history, models = results.load_run(clipped.iloc[0])
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

DEFAULT_RESULTS = Path("results")


def runs(spec: str | None = None, results_dir: str | Path = DEFAULT_RESULTS, **filters: Any) -> pd.DataFrame:
    """One row per finished run of the study in `results_dir` (every spec's, or `spec`'s): its results-table row
    (config fields flattened, summary numbers), its `verdict` and `learned`, its `name` (the varied axes, seed
    included) and its `run_dir`. Each keyword filter keeps the rows whose column equals the value (a list or a
    tuple: any of its values), e.g. `runs(spec="clipping", learned=True, clip_mode=["global", "elementwise"])`.

    ValueError naming what is wrong: no results there, an unknown spec or an unknown column."""
    from .errors import UserError
    from .report.analysis import load_results, run_records

    folder = Path(results_dir)
    try:
        table = load_results(folder)
    except UserError as e:
        raise ValueError(str(e)) from None
    if spec is not None:
        specs = sorted(table["spec"].astype(str).unique())
        if spec not in specs:
            raise ValueError(f"spec {spec!r}: no runs of it in {folder}/; specs with runs: {', '.join(specs)}")
        table = table[table["spec"] == spec]
    records, _ = run_records(folder, table.reset_index(drop=True))
    for column, wanted in filters.items():
        if column not in records:
            raise ValueError(f"{column}=: no such column; filter by one of {', '.join(sorted(records.columns))}")
        values = list(wanted) if isinstance(wanted, (list, tuple, set)) else [wanted]
        records = records[records[column].isin(values)]
    return records.reset_index(drop=True)


def load_run(run: Any) -> tuple[dict, dict, pd.DataFrame, dict]:
    """(config, summary, history, models) of one run: a row of `runs()` (or its dict), or a run folder's path.
    config and summary are config.json and summary.json; history is history.csv (one row per iteration; empty
    when the run wrote none); models are the probe's models by name ({"model_init": Model, "model_final": Model},
    those present).

    ValueError naming the folder when it is no run folder."""
    from .run.files import load_model

    folder = Path(run["run_dir"] if not isinstance(run, (str, Path)) else run)
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ValueError(f"{folder}: not a readable run folder (config.json and summary.json: {e})") from None
    history = pd.read_csv(folder / "history.csv") if (folder / "history.csv").is_file() else pd.DataFrame()
    models = {path.stem: load_model(path) for path in sorted((folder / "probe").glob("model*.npz"))}
    return config, summary, history, models
