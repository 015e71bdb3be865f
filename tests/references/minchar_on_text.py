"""min-char-rnn against rnngrad on a text file (tiny Shakespeare in docs/math.md 12), read the same way. Run by hand:

    python tests/references/minchar_on_text.py TEXT --chars 1500000 [--seed 0] [RUN_DIR ...]

It trains the port of Karpathy's min-char-rnn.py (`pipeline.benchmarks.minchar.MinCharRNN`: hidden 100, 25-character
windows walked with the state carried, Adagrad 0.1, every gradient entry clipped to [-5, 5]) for `--chars` characters
on the training part of TEXT that `rnngrad train --text TEXT` trains on (the first 90 %), and reads its held-out last
10 % as rnngrad reads a consecutive-window model's (`engine.text.read_carried` from the state the walk carries,
docs/math.md 12), beside the same weights read from h = 0 and on rnngrad's 128 windows from h = 0. It prints one
JSON object: those losses, min-char-rnn's own smoothed training loss, the carried read every 2000 steps, and a
200-character sample continuing the held-out text from the carried state (as rnngrad samples such a model). Each
RUN_DIR (an `rnngrad train` run folder) adds that run's characters seen and both readings from its summary.json.
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from pipeline.benchmarks.minchar import SEQ_LEN, MinCharRNN
from pipeline.engine.text import decode, read_carried, sample_ids
from pipeline.run import sources
from pipeline.run.config import RunConfig

CURVE_EVERY = 2000  # steps between carried reads of the curve (as the min-char-rnn preset's eval_every)
SAMPLE_LEN = 200  # as min-char-rnn and the preset sample
NO_DATA_DIR = Path("/nonexistent")  # no `rnngrad generate` record: the corpus is read from TEXT itself


def carried_read(port: MinCharRNN, ids: np.ndarray):
    """The held-out ids read once, state carried, from the state the port's walk carries (its hprev)."""
    return read_carried(port.as_rnn(), ids, h0=port.hprev[:, 0][None, None, :])


def train_port(text: str, chars: int, seed: int) -> dict:
    cfg = RunConfig(task="text", text=text, seq_len=SEQ_LEN, windows="random")  # random: its 128 h = 0 windows
    src, td = sources.make_source(cfg, NO_DATA_DIR), sources.load_text_data(cfg, NO_DATA_DIR)
    port = MinCharRNN(td.ids_train, len(td.vocab), np.random.default_rng(seed))
    smooth, curve, start = np.log(len(td.vocab)) * SEQ_LEN, [], time.perf_counter()  # min-char-rnn's smooth_loss
    for i in range(1, chars // SEQ_LEN + 1):
        smooth = smooth * 0.999 + port.step() * 0.001
        if i % CURVE_EVERY == 0:
            curve.append({"chars": i * SEQ_LEN, "val_loss_carried": carried_read(port, td.ids_val).loss})
    carried, model = carried_read(port, td.ids_val), port.as_rnn()
    windows_loss, windows_accuracy = sources.evaluate(model, src)
    sample = sample_ids(model, int(td.ids_val[-1]), SAMPLE_LEN, np.random.default_rng(seed + 1), carried.state)
    return {"seed": seed, "chars": port.n * SEQ_LEN, "val_loss_carried": carried.loss,
            "val_accuracy_carried": carried.accuracy, "val_loss_from_h0": read_carried(model, td.ids_val).loss,
            "val_loss_windows": windows_loss, "val_accuracy_windows": windows_accuracy,
            "smooth_train_loss_per_char": smooth / SEQ_LEN, "seconds": time.perf_counter() - start,
            "sample": decode(np.array(sample, dtype=np.int64), td.vocab), "curve": curve}


def rnngrad_run(folder: Path) -> dict:
    cfg, summary = (json.loads((folder / name).read_text()) for name in ("config.json", "summary.json"))
    keys = ("val_read", "final_val_loss", "val_loss_carried", "val_loss_windows", "final_train_loss")
    return {"run_dir": str(folder), "chars": summary["iters_done"] * cfg["batch"] * cfg["seq_len"],
            **{k: summary.get(k) for k in keys}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("text", help="a UTF-8 text file, as given to rnngrad train --text")
    parser.add_argument("run_dirs", nargs="*", type=Path, help="rnngrad train run folders to print beside it")
    parser.add_argument("--chars", type=int, default=1_500_000, help="training characters (25 per step)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the port's 0.01 N(0, 1) weights")
    args = parser.parse_intermixed_args()
    with threadpool_limits(limits=1, user_api="blas"):
        port = train_port(args.text, args.chars, args.seed)
    print(json.dumps({"minchar_port": port, "rnngrad": [rnngrad_run(d) for d in args.run_dirs]}, indent=1))


if __name__ == "__main__":
    main()
