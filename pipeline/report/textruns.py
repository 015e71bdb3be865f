"""What the report shows of text runs, for the text study and for any other spec whose runs are all text (a user's
own corpus): each run's validation loss against characters seen, a sample per arm, and each run's validation loss
read both ways (docs/math.md 12: as trained, which the verdict reads; with the state carried through the held-out
text; on windows of it from h = 0).
"""

from __future__ import annotations

import pandas as pd

from .document import Table, frame_table
from .reductions import numeric, stacked

# cell_type -> what the report calls a text spec's arm, in report order
TEXT_ARMS = {"rnn": "vanilla RNN", "lstm": "LSTM"}
VAL_CURVE_COLUMNS = ["spec", "run_id", "arm", "seed", "read", "iter", "chars", "val_loss"]  # read: val_read's
READS_TABLE = "text_reads"  # tables/text_reads.csv: one row per text run
READS = {"carried": "consecutive: state carried", "windows": "random: windows from h = 0"}  # val_read -> table cell


def is_text_spec(runs: pd.DataFrame) -> bool:
    """Whether every run of a spec is a text run."""
    return len(runs) > 0 and "task" in runs and bool((runs["task"].astype(str) == "text").all())


def text_arm(runs: pd.DataFrame) -> pd.Series:
    """Each run's text arm (a TEXT_ARMS key): its cell_type, rnn when the results predate the field."""
    cell_type = runs["cell_type"] if "cell_type" in runs else pd.Series("rnn", index=runs.index)
    return cell_type.fillna("rnn").astype(str)


def val_read(runs: pd.DataFrame) -> pd.Series:
    """How each run's final_val_loss was read: `carried` for consecutive windows, else `windows` (the results'
    windows column; runs from before it read windows)."""
    windows = runs["windows"] if "windows" in runs else pd.Series("random", index=runs.index)
    return windows.map({"consecutive": "carried"}).fillna("windows")


def val_curve_rows(runs: pd.DataFrame, val_curves: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Each run's validation loss against characters seen (iteration x batch x window), from its validation curve
    (run_id -> iter, val_loss)."""
    info = runs.assign(arm=text_arm(runs), read=val_read(runs)).set_index("run_id")
    per_char = pd.to_numeric(info["batch"], errors="coerce") * pd.to_numeric(info["seq_len"], errors="coerce") \
        if {"batch", "seq_len"} <= set(info.columns) else pd.Series(float("nan"), index=info.index)
    return stacked([c.assign(spec=info.at[rid, "spec"], run_id=rid, arm=info.at[rid, "arm"],
                             seed=info.at[rid, "seed"], read=info.at[rid, "read"],
                             chars=c["iter"] * per_char.get(rid, float("nan")))[VAL_CURVE_COLUMNS]
                    for rid, c in val_curves.items() if len(c)], VAL_CURVE_COLUMNS)


def shown_samples(runs: pd.DataFrame, samples: dict[str, list | None]) -> list[dict]:
    """Per arm, and per way of taking windows when the spec has both, the last sample of its first run that has
    samples (run_id -> samples.json), with its heading (which run, and where the sample starts)."""
    info = runs.assign(arm=text_arm(runs), read=val_read(runs))
    both = info["read"].nunique() > 1
    groups = sorted(set(zip(info["arm"], info["read"])), key=lambda g: (_arm_order(g[0]), g[1]))
    shown = []
    for arm, read in groups:
        mine = info[(info["arm"] == arm) & (info["read"] == read)]
        first = next((rid for rid in mine["run_id"] if samples.get(rid)), None)
        if first is None:
            continue
        last, seed = samples[first][-1], mine.set_index("run_id").at[first, "seed"]
        windows = f", {'consecutive' if read == 'carried' else 'random'} windows" if both else ""
        start = "continuing the held-out text from its carried state" if read == "carried" else "from h = 0"
        shown.append({"arm": arm, "run_id": first, "iter": last.get("iter"),
                      "heading": f"{TEXT_ARMS.get(arm, arm)} (seed {seed}{windows}): its last sample, at iteration "
                                 f"{last.get('iter')}, {start}",
                      "text": str(last.get("text", ""))})
    return shown


def _arm_order(arm: str) -> tuple[int, str]:
    """TEXT_ARMS' order first, then any other arm by name."""
    return (list(TEXT_ARMS).index(arm), "") if arm in TEXT_ARMS else (len(TEXT_ARMS), arm)


def reads_table(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per run: its final validation loss as trained (the verdict's), with the state carried and on
    windows from h = 0, beside chance."""
    r = numeric(runs, ["final_val_loss", "val_loss_carried", "val_loss_windows", "chance_loss"])
    out = r.assign(arm=text_arm(runs).map(TEXT_ARMS).fillna(text_arm(runs)), read=val_read(runs).map(READS))
    cols = ["spec", "run_id", "arm", "seed", "read", "final_val_loss", "val_loss_carried", "val_loss_windows",
            "chance_loss"]
    return out[[c for c in cols if c in out]].reset_index(drop=True)


def reads_block(spec: str, tables: dict[str, pd.DataFrame]) -> list[Table]:
    """The spec's rows of the reads table (nothing for runs from before both readings were recorded)."""
    t = tables.get(READS_TABLE)
    if t is None or not len(t) or "val_loss_carried" not in t:
        return []
    t = t[t["spec"].astype(str) == spec]
    if not len(t) or not t["val_loss_carried"].notna().any():
        return []
    return [frame_table(t, {"arm": "arm", "seed": "seed", "read": "windows: read as",
                            "final_val_loss": "val loss (verdict)", "val_loss_carried": "state carried",
                            "val_loss_windows": "windows from h = 0", "chance_loss": "chance"},
                        "Every run's final validation loss (nats/char), read as it was trained (the verdict's) and "
                        "both ways: the whole held-out text once with the state carried, and 128 held-out windows "
                        "of the training length each from h = 0")]
