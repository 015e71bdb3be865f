"""execute_run end to end on tiny configs: the run folder against docs/internals.md, the Jacobian table against an
independent numpy computation, determinism, divergence as an outcome, failures recorded, atomic replacement."""

from __future__ import annotations

import hashlib
import json
import math
import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.engine import trainer
from pipeline.run import runner, sources, verdicts
from pipeline.run.config import RunConfig, config_from_json, config_hash, flatten
from pipeline.run.datasets import load_dataset
from pipeline.errors import UserError
from pipeline.run import datasets
from pipeline.run.files import load_model

TINY = dict(seq_len=12, hidden=8, batch=8, iters=30, val_size=64, eval_every=10, probe_len=10, optimizer="adam",
            lr=0.01, samples=2, sample_len=30)
CORPUS = "the quick brown fox jumps over the lazy dog; pack my box with five dozen liquor jugs.\n" * 40
RUNS = {  # name -> (config overrides, input width d)
    "adding": (dict(task="adding"), 2),
    "adding2": (dict(task="adding", layers=2, probe_len=8, gamma_w=0.8), 2),
    "temporal_order": (dict(task="temporal_order"), 6),
    "copy": (dict(task="copy", seq_len=3), 10),  # 23 steps, the probe keeps 10
    "probe": (dict(task="probe"), 8),
    "text": (dict(task="text"), None),
}
FILES = {"config.json", "summary.json", "history.csv", "series.parquet", "figures/jacobian_heatmap.png",
         "figures/decay.png",
         "probe/model_init.npz", "probe/model_final.npz", "probe/inputs.npy", "probe/h0.npy",
         "probe/jacobian.parquet", "probe/signal.parquet", "probe/spot_checks.parquet", "probe/spectra.parquet",
         "probe/gradients.parquet", "probe/dynamics.parquet"}
SUMMARY_KEYS = {"config_hash", "inputs", "outcome", "diverged_at", "iters_done", "seconds", "cpu_seconds",
                "final_train_loss", "final_val_loss", "val_accuracy", "chance_loss", "chance_accuracy", "gamma_phi", "gamma_w_init",
                "gamma_w_final", "spectral_radius_init", "spectral_radius_final", "log_rate_init", "log_rate_final",
                "slope_init", "slope_final", "lyapunov_init", "lyapunov_final", "predicted_regime",
                "observed_regime", "violations_init", "violations_final", "layers", "learned", "loss_growth",
                "beat_chance", "solved", "partial_loss", "partial_accuracy", "val_sequences_right",
                "norm_growth", "spot_checks_init", "spot_checks_final", "spot_skipped_init", "spot_skipped_final",
                "spot_mismatches_init", "spot_mismatches_final", "spot_max_abs_dlog_init",
                "spot_max_abs_dlog_final", "lyapunov_spread_init", "lyapunov_spread_final", "lyapunov_probe_init",
                "lyapunov_probe_final", "meanfield_rate_init", "meanfield_rate_final", "gap_global_to_product_init",
                "gap_product_to_stepnorm_init", "gap_stepnorm_to_measured_init", "spectrum_spread_init",
                "spectrum_resolved_init", "rate_time_init", "rate_time_final"}
STEP_KEYS = {"by_lag/log10_norm_init", "by_lag/log10_norm_final", "by_lag/log10_bound_product_init",
             "by_lag/log10_bound_global_init", "by_lag/log10_bound_stepnorm_init", "by_k/log10_dE_dh",
             "by_iter/train_loss", "by_iter/grad_norm", "by_iter/clip_scale", "by_iter/w_norm",
             "by_iter/spectral_radius", "by_iter/train_loss_smoothed", "by_iter/val_loss", "by_iter/val_accuracy",
             "by_iter/lyapunov", "by_iter/lyapunov_mf"}


def run_quietly(cfg: RunConfig, data_dir: Path, run_dir: Path, progress=None) -> runner.RunResult:
    """A RuntimeWarning (overflow, NaN) escaping the run would be an error: overflow must be handled as data."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        return runner.execute_run(cfg, data_dir, run_dir, progress)


def strict_json(path: Path):
    def reject(token):
        raise AssertionError(f"{path} holds {token}: not strict JSON")

    return json.loads(path.read_text(encoding="utf-8"), parse_constant=reject)


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("text") / "corpus.txt"
    path.write_text(CORPUS, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("data")  # empty: datasets are built in memory from their seeds


@pytest.fixture(scope="module")
def runs(tmp_path_factory, corpus_file, data_dir) -> dict:
    out = tmp_path_factory.mktemp("runs")
    done = {}
    for name, (overrides, _) in RUNS.items():
        extra = {"text": str(corpus_file)} if overrides["task"] == "text" else {}
        cfg = RunConfig(**{**TINY, **overrides, **extra})
        events = []
        done[name] = (cfg, run_quietly(cfg, data_dir, out / name, events.append), events)
    return done


def probe_steps(name: str, cfg: RunConfig) -> int:
    steps = cfg.seq_len + (20 if cfg.task == "copy" else 0)
    return min(cfg.probe_len, steps)


@pytest.mark.parametrize("name", list(RUNS))
def test_folder_matches_the_contract(runs, name):
    cfg, result, _ = runs[name]
    files = {p.relative_to(result.run_dir).as_posix() for p in result.run_dir.rglob("*") if p.is_file()}
    scored = cfg.task != "probe" and cfg.iters > 0  # a loss against chance to draw
    stacked = {"probe/jacobian_depth.parquet", "figures/jacobian_depth.png"} if cfg.layers > 1 else set()
    assert files == FILES | ({"samples.json"} if cfg.task == "text" else set()) | (
        {"figures/loss.png", "probe/weight_gradients.parquet"} if scored else set()) | stacked
    assert result.outcome == "ok", result.summary.get("error")
    inputs = {"corpus": hashlib.sha256(CORPUS.encode()).hexdigest()} if cfg.task == "text" else {
        "dataset": datasets.dataset_digest(datasets.build_dataset(cfg.task, cfg.seq_len, cfg.val_size, cfg.data_seed))}
    assert result.summary["inputs"] == inputs  # the content of what the run read, not its path
    assert result.config_hash == config_hash(cfg, inputs) != config_hash(cfg)
    assert strict_json(result.run_dir / "config.json") == flatten(cfg)
    assert config_from_json(result.run_dir / "config.json") == cfg
    summary = strict_json(result.run_dir / "summary.json")
    assert summary == result.summary
    assert SUMMARY_KEYS <= set(summary)
    assert summary["config_hash"] == result.config_hash
    assert (summary["diverged_at"], summary["iters_done"]) == (None, cfg.iters)
    assert summary["seconds"] > 0 and 0 < summary["cpu_seconds"] < 4 * summary["seconds"]
    assert len(summary["layers"]) == cfg.layers
    assert [p.name for p in result.run_dir.parent.iterdir() if p.name.startswith(".")] == []  # no temp left


@pytest.mark.parametrize("name", list(RUNS))
def test_summary_numbers_follow_from_the_config(runs, name):
    cfg, result, _ = runs[name]
    s = result.summary
    assert s["gamma_phi"] == 1.0  # tanh
    assert s["gamma_w_init"] == pytest.approx(cfg.gamma_w, rel=1e-9)  # gaussian init is scaled to exactly gamma_w
    assert s["log_rate_init"] == pytest.approx(math.log(cfg.gamma_w * 1.0), abs=1e-9)
    trained = cfg.task != "probe"  # the probe task has no loss positions: zero gradient, nothing moves
    assert (s["gamma_w_final"] != s["gamma_w_init"]) == trained
    assert s["predicted_regime"] == ("vanishing" if cfg.gamma_w < 1 else "bounded" if cfg.gamma_w == 1
                                     else "unconstrained")
    band = "vanishing" if s["slope_init"] < -0.01 else "exploding" if s["slope_init"] > 0.01 else "neutral"
    assert s["observed_regime"] == band
    assert s["violations_init"] == 0 and s["violations_final"] == 0
    top = s["layers"][-1]
    assert all(top[k] == s[k] for k in top if k != "layer")


@pytest.mark.parametrize("name", list(RUNS))
def test_the_summary_says_whether_the_run_learned_and_how_far_loss_and_weights_moved(runs, name):
    cfg, result, _ = runs[name]
    s = result.summary
    assert s["beat_chance"] is verdicts.beat_chance(s["outcome"], s["final_val_loss"], s["chance_loss"])
    assert s["learned"] is verdicts.learned(s["outcome"], s["final_val_loss"], s["chance_loss"], s["partial_loss"])
    assert s["solved"] is verdicts.solved(s["outcome"], s["final_val_loss"], s["chance_loss"], s["partial_loss"],
                                          s["val_sequences_right"])
    assert s["norm_growth"] == pytest.approx(s["gamma_w_final"] / s["gamma_w_init"], rel=1e-12)
    history = pd.read_csv(result.run_dir / "history.csv")
    if cfg.task == "probe":  # scores nothing: no loss to grow, no verdict to give
        assert s["loss_growth"] is None and s["learned"] is False and s["final_val_loss"] is None
    else:
        assert s["loss_growth"] == pytest.approx(s["final_train_loss"] / history["loss"].iloc[0], rel=1e-12)
    assert s["outcome"] == verdicts.run_outcome(False, s["loss_growth"], s["norm_growth"])


def test_chance_baselines(runs):
    assert runs["temporal_order"][1].summary["chance_loss"] == pytest.approx(math.log(4))  # 4 balanced classes
    assert runs["temporal_order"][1].summary["chance_accuracy"] == pytest.approx(0.25)
    assert runs["adding"][1].summary["chance_loss"] == pytest.approx(1 / 24)  # predict 0.5: E[((X1+X2)/4)^2]
    assert runs["copy"][1].summary["chance_loss"] == pytest.approx(math.log(8))  # uniform guess on the recall
    assert runs["copy"][1].summary["chance_accuracy"] == pytest.approx(1 / 8)
    train_text = CORPUS[: len(CORPUS) - len(CORPUS) // 10]  # the text's first 90 %
    shares = np.array([train_text.count(ch) for ch in set(CORPUS)]) / len(train_text)
    entropy = -sum(p * math.log(p) for p in shares if p > 0)  # the unigram model of the training characters
    assert runs["text"][1].summary["chance_loss"] == pytest.approx(entropy, rel=1e-12)
    assert runs["text"][1].summary["chance_accuracy"] == pytest.approx(shares.max())  # the most frequent
    assert runs["probe"][1].summary["chance_loss"] is None and runs["probe"][1].summary["chance_accuracy"] is None
    assert runs["probe"][1].summary["val_accuracy"] is None  # no loss positions: no success criterion ...
    assert runs["probe"][1].summary["final_val_loss"] is None  # ... and no validation loss (not a loss of 0)
    # the partial baselines: one adding value known, one temporal-order symbol known, copy's memoryless model
    assert runs["adding"][1].summary["partial_loss"] == pytest.approx(1 / 48)
    assert runs["temporal_order"][1].summary["partial_loss"] == pytest.approx(math.log(2))
    assert runs["temporal_order"][1].summary["partial_accuracy"] == pytest.approx(0.5)
    assert runs["copy"][1].summary["partial_loss"] == pytest.approx(math.log(8))
    pairs = [train_text[i : i + 2] for i in range(len(train_text) - 1)]  # the bigram model of the training text
    firsts = {a: sum(1 for p in pairs if p[0] == a) for a in set(train_text[:-1])}
    counts = {p: pairs.count(p) for p in set(pairs)}
    conditional = -sum(c / len(pairs) * math.log(c / firsts[p[0]]) for p, c in counts.items())
    assert runs["text"][1].summary["partial_loss"] == pytest.approx(conditional, rel=1e-12)
    assert runs["text"][1].summary["val_sequences_right"] is None  # a stream, not sequences
    assert runs["probe"][1].summary["partial_loss"] is None
    for name in ("adding", "temporal_order", "copy", "text"):
        assert 0.0 <= runs[name][1].summary["val_accuracy"] <= 1.0


@pytest.mark.parametrize("name", list(RUNS))
def test_history_csv(runs, name):
    cfg, result, _ = runs[name]
    history = pd.read_csv(result.run_dir / "history.csv")
    assert list(history.columns) == ["iter", "loss", "grad_norm", "clip_scale", "w_norm", "spectral_radius"]
    assert history["iter"].tolist() == list(range(1, cfg.iters + 1))
    assert np.isfinite(history[["grad_norm", "clip_scale"]].to_numpy()).all()
    scored = cfg.task != "probe"  # the probe task scores no position: no loss (NaN, an empty CSV cell), not 0
    assert np.isfinite(history["loss"]).all() if scored else history["loss"].isna().all()
    assert (result.summary["final_train_loss"] is not None) == scored
    assert history["w_norm"].iloc[-1] == pytest.approx(result.summary["gamma_w_final"], rel=1e-9)


@pytest.mark.parametrize("name", list(RUNS))
def test_jacobian_table_respects_the_bounds(runs, name):
    cfg, result, _ = runs[name]
    P = probe_steps(name, cfg)
    jac = pd.read_parquet(result.run_dir / "probe" / "jacobian.parquet")
    assert list(jac.columns) == ["when", "layer", "t", "k", "lag", "log_norm", "log_bound_product", "log_bound_global",
                                 "log_bound_stepnorm", "log_norm_cell"]
    assert jac["log_norm_cell"].isna().all()  # a vanilla RNN has no cell state
    assert len(jac) == 2 * cfg.layers * P * (P + 1) // 2
    assert set(jac["when"]) == {"init", "final"} and set(jac["layer"]) == set(range(cfg.layers))
    assert (jac["k"] < jac["t"]).all() and (jac["lag"] == jac["t"] - jac["k"]).all()
    assert jac["t"].max() == P and jac["k"].min() == 0
    tol = 1e-9 * np.maximum(1.0, jac["log_bound_product"].abs())
    assert (jac["log_norm"] <= jac["log_bound_product"] + tol).all()
    tol = 1e-9 * np.maximum(1.0, jac["log_bound_global"].abs())
    assert (jac["log_bound_product"] <= jac["log_bound_global"] + tol).all()
    tol = 1e-9 * np.maximum(1.0, jac["log_bound_stepnorm"].abs())
    assert (jac["log_norm"] <= jac["log_bound_stepnorm"] + tol).all()
    assert (jac["log_bound_stepnorm"] <= jac["log_bound_product"] + tol).all()


def elman_tanh_log_norms(model, xs: np.ndarray, layer: int) -> dict[tuple[int, int], float]:
    """Independent reference: explicit Jacobian products of a stacked elman tanh net from h0 = 0."""
    p, x = model.params, xs
    for l in range(layer + 1):
        W, U, b = p[f"W_hh_{l}"], p[f"W_xh_{l}"], p[f"b_h_{l}"]
        h, states, derivs = np.zeros(W.shape[0]), [], []
        for x_t in x:
            h = np.tanh(W @ h + U @ x_t + b)
            states.append(h)
            derivs.append(1.0 - h * h)
        x = np.array(states)
    T, out = len(xs), {}
    for k in range(T):
        M = np.eye(W.shape[0])
        for t in range(k + 1, T + 1):
            M = (derivs[t - 1][:, None] * W) @ M
            out[(t, k)] = math.log(np.linalg.norm(M, 2))
    return out


@pytest.mark.parametrize("name", ["adding", "adding2", "text"])
def test_measured_norms_match_an_explicit_product(runs, name):
    cfg, result, _ = runs[name]
    probe = result.run_dir / "probe"
    xs = np.load(probe / "inputs.npy")
    jac = pd.read_parquet(probe / "jacobian.parquet")
    for when in ("init", "final"):
        model = load_model(probe / f"model_{when}.npz")
        want = elman_tanh_log_norms(model, xs, cfg.layers - 1)
        rows = jac[(jac["when"] == when) & (jac["layer"] == cfg.layers - 1)]
        got = {(t, k): v for t, k, v in zip(rows["t"], rows["k"], rows["log_norm"])}
        assert got.keys() == want.keys()
        assert np.allclose([got[key] for key in want], list(want.values()), rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("name", list(RUNS))
def test_probe_inputs_and_models(runs, name, data_dir):
    cfg, result, _ = runs[name]
    probe, P = result.run_dir / "probe", probe_steps(name, cfg)
    xs, h0 = np.load(probe / "inputs.npy"), np.load(probe / "h0.npy")
    d = RUNS[name][1] or len(set(CORPUS))
    assert xs.shape == (P, d) and h0.shape == (cfg.layers, cfg.hidden) and not h0.any()
    if cfg.task != "text":  # the first validation sequence, truncated
        ds = load_dataset(data_dir, cfg.task, cfg.seq_len, cfg.val_size, cfg.data_seed)
        assert np.array_equal(xs, ds.x[0, :P])
    else:
        assert (xs.sum(axis=1) == 1).all()  # one-hot characters
    m0, m1 = load_model(probe / "model_init.npz"), load_model(probe / "model_final.npz")
    assert np.linalg.norm(m0.params["W_hh_0"], 2) == pytest.approx(cfg.gamma_w)
    assert np.array_equal(m0.params["W_hh_0"], m1.params["W_hh_0"]) == (cfg.task == "probe")  # it has no loss


@pytest.mark.parametrize("name", list(RUNS))
def test_spot_checks_agree_with_the_probe_and_the_summary_counts_them(runs, name):
    cfg, result, _ = runs[name]
    everything = pd.read_parquet(result.run_dir / "probe" / "spot_checks.parquet")
    assert list(everything.columns) == ["when", "layer", "t", "k", "log_norm", "log_norm_fd", "abs_dlog",
                                        "source_layer"]
    spot = everything[everything["source_layer"] == everything["layer"]]
    jac = pd.read_parquet(result.run_dir / "probe" / "jacobian.parquet").set_index(["when", "layer", "t", "k"])
    np.testing.assert_array_equal(spot["log_norm"], jac.loc[list(zip(spot["when"], spot["layer"], spot["t"],
                                                                      spot["k"])), "log_norm"])
    P = probe_steps(name, cfg)
    for (when, layer), rows in spot.groupby(["when", "layer"]):
        assert len(rows) == min(16, P * (P + 1) // 2) and ((rows["t"] == P) & (rows["k"] == 0)).any()
    cross = everything[everything["source_layer"] != everything["layer"]]
    if cfg.layers > 1:  # the pairs across layers, against probe/jacobian_depth.parquet
        depth = pd.read_parquet(result.run_dir / "probe" / "jacobian_depth.parquet").set_index(
            ["when", "source_layer", "t", "k"])
        keys = list(zip(cross["when"], cross["source_layer"], cross["t"], cross["k"]))
        np.testing.assert_array_equal(cross["log_norm"], depth.loc[keys, "log_norm"])
        assert (cross["t"] == cross["k"]).any() and len(cross) == 2 * 5 * (cfg.layers - 1)
        for when in ("init", "final"):
            assert result.summary[f"spot_cross_layer_{when}"] == cross[cross["when"] == when]["abs_dlog"].notna().sum()
    else:
        assert cross.empty
    spot = everything
    s = result.summary
    for when in ("init", "final"):
        rows = spot[spot["when"] == when]
        checked = rows["abs_dlog"].notna()
        assert s[f"spot_checks_{when}"] == checked.sum() > 0 and s[f"spot_skipped_{when}"] == (~checked).sum()
        assert s[f"spot_max_abs_dlog_{when}"] == rows["abs_dlog"].max() < 1e-6
        assert s[f"spot_mismatches_{when}"] == 0


@pytest.mark.parametrize("name", list(RUNS))
def test_signal_and_series(runs, name):
    cfg, result, _ = runs[name]
    P = probe_steps(name, cfg)
    sig = pd.read_parquet(result.run_dir / "probe" / "signal.parquet")
    assert list(sig.columns) == ["when", "layer", "k", "log10_dE_dh"]
    assert len(sig) == 2 * cfg.layers * (P + 1) and np.isfinite(sig["log10_dE_dh"]).all()
    series = pd.read_parquet(result.run_dir / "series.parquet")
    assert list(series.columns) == ["key", "step", "value"]
    scores_nothing = {"by_iter/val_accuracy", "by_iter/val_loss", "by_iter/train_loss", "by_iter/train_loss_smoothed"}
    want = STEP_KEYS - (scores_nothing if cfg.task == "probe" else set())
    want |= {f"by_lag/log10_norm_from_layer_{l}_init" for l in range(cfg.layers - 1)}  # a stack: from each layer below
    assert set(series["key"]) == want
    assert np.isfinite(series["value"]).all()
    by = {key: group.sort_values("step") for key, group in series.groupby("key")}
    assert by["by_lag/log10_norm_init"]["step"].tolist() == list(range(1, P + 1))
    assert by["by_k/log10_dE_dh"]["step"].tolist() == list(range(P + 1))
    assert by["by_iter/grad_norm"]["step"].tolist() == list(range(1, cfg.iters + 1))
    if cfg.task != "probe":
        assert by["by_iter/val_loss"]["step"].tolist() == [0, 10, 20, 30]
    rate = math.log10(cfg.gamma_w * 1.0)
    assert np.allclose(by["by_lag/log10_bound_global_init"]["value"], rate * np.arange(1, P + 1), atol=1e-9)


def _history(iters: int) -> pd.DataFrame:
    rows = [(i, 1.0 / i, 2.0, 1.0, 0.5, 0.4) for i in range(1, iters + 1)]
    return pd.DataFrame(rows, columns=list(runner.HISTORY_COLUMNS))


@pytest.mark.parametrize("iters, ran, want", [
    (30, 30, list(range(1, 31))),  # short runs log every iteration
    (150, 150, list(range(5, 151, 5))),  # 30 evenly spaced points, the last included
    (151, 151, list(range(6, 152, 6)) + [151]),  # the last iteration even off the stride
    (150, 77, list(range(5, 76, 5)) + [77]),  # a diverged run: up to the iteration it stopped at
])
def test_training_series_logs_at_most_series_points_per_key(iters, ran, want):
    val = pd.DataFrame({"iter": [0, ran], "val_loss": [1.0, 0.5], "val_accuracy": [0.1, 0.2]})
    series = runner.training_series(_history(ran), val, iters)
    by = {key: group["step"].tolist() for key, group in series.groupby("key")}
    for key in ("by_iter/train_loss", "by_iter/grad_norm", "by_iter/clip_scale", "by_iter/w_norm", "by_iter/spectral_radius"):
        assert by[key] == want, key
    assert len(want) <= runner.SERIES_POINTS + 1
    assert by["by_iter/val_loss"] == [0, ran]
    loss = series[series["key"] == "by_iter/train_loss"].set_index("step")["value"]
    assert np.allclose(loss.to_numpy(), 1.0 / np.array(want))  # each point is its own iteration's value
    smoothed = series[series["key"] == "by_iter/train_loss_smoothed"].set_index("step")["value"]
    assert smoothed.index.tolist() == want
    starts = [0] + want[:-1]  # each point averages the iterations after the previous point, up to its own
    assert np.allclose(smoothed.to_numpy(), [np.mean(1.0 / np.arange(a + 1, b + 1)) for a, b in zip(starts, want)])


def test_the_smoothed_loss_of_a_block_with_an_overflow_is_not_finite():
    history = _history(10)
    history.loc[history["iter"] == 4, "loss"] = np.inf
    smoothed = runner.smoothed_loss(history, np.array([5, 10]))
    assert np.isinf(smoothed[5]) and smoothed[10] == pytest.approx(np.mean(1.0 / np.arange(6, 11)))


def test_heatmap_decodes(runs):
    import matplotlib.image

    image = matplotlib.image.imread(runs["adding"][1].run_dir / "figures" / "jacobian_heatmap.png")
    assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 400
    assert image[..., :3].std() > 0.05  # not a blank canvas


def test_text_samples(runs):
    cfg, result, _ = runs["text"]
    samples = strict_json(result.run_dir / "samples.json")
    assert [s["iter"] for s in samples] == [15, 30]  # 2 checkpoints spread over 30 iterations
    for s in samples:
        assert len(s["text"]) == cfg.sample_len and set(s["text"]) <= set(CORPUS)


def test_progress_events(runs):
    cfg, _, events = runs["adding"]
    assert [e["iter"] for e in events] == list(range(1, cfg.iters + 1))
    assert all(e["iters"] == cfg.iters and math.isfinite(e["loss"]) and math.isfinite(e["grad_norm"]) for e in events)
    _, _, probe_events = runs["probe"]  # scores no position: the progress bar shows no loss, not a loss of 0
    assert probe_events and all(math.isnan(e["loss"]) and math.isfinite(e["grad_norm"]) for e in probe_events)


def test_same_seed_same_numbers(runs, data_dir, tmp_path):
    cfg, first, _ = runs["adding"]
    again = run_quietly(cfg, data_dir, tmp_path / "again")
    drop = lambda s: {k: v for k, v in s.items() if k not in ("seconds", "cpu_seconds")}  # noqa: E731
    assert drop(again.summary) == drop(first.summary)
    assert (again.run_dir / "history.csv").read_bytes() == (first.run_dir / "history.csv").read_bytes()
    for rel in ("probe/jacobian.parquet", "series.parquet"):
        pd.testing.assert_frame_equal(pd.read_parquet(again.run_dir / rel), pd.read_parquet(first.run_dir / rel))
    other = run_quietly(RunConfig(**{**flatten(cfg), "seed": 1}), data_dir, tmp_path / "other")
    assert other.summary["final_train_loss"] != first.summary["final_train_loss"]


@pytest.mark.parametrize(
    "activation, seq_len",
    [("relu", 200),  # 50^200 overflows at once: the first loss is inf, the final model is the initial one
     ("relu", 40), ("linear", 40)],  # one finite step to huge weights, then inf: the probe sees overflowed states
)
def test_divergence_is_an_outcome(activation, seq_len, data_dir, tmp_path):
    cfg = RunConfig(**{**TINY, "task": "adding", "seq_len": seq_len, "activation": activation, "gamma_w": 50.0,
                       "optimizer": "sgd", "lr": 10.0, "clip_mode": "none"})
    events = []
    result = run_quietly(cfg, data_dir, tmp_path / "run", events.append)
    s = strict_json(tmp_path / "run" / "summary.json")
    assert result.outcome == s["outcome"] == "diverged"
    assert s["diverged_at"] >= 1 and s["iters_done"] == s["diverged_at"] - 1
    history = pd.read_csv(tmp_path / "run" / "history.csv")
    assert len(history) == s["diverged_at"]
    assert not np.isfinite(history[["loss", "grad_norm"]].iloc[-1].to_numpy()).all()
    assert events[-1]["diverged"] is True
    final = load_model(tmp_path / "run" / "probe" / "model_final.npz")  # the last model with finite parameters
    assert all(np.isfinite(p).all() for p in final.params.values())
    assert s["observed_regime"] == "exploding" and s["predicted_regime"] == "unconstrained"
    assert s["learned"] is False


def test_a_finite_run_whose_loss_runs_away_is_unstable_not_ok(data_dir, tmp_path):
    """Plain SGD at lr 1 with a loose clip on gamma_W = 3: every number stays finite, but the loss ends thousands of
    times above its start and the weights grow tens of times."""
    cfg = RunConfig(**{**TINY, "task": "adding", "gamma_w": 3.0, "optimizer": "sgd", "lr": 1.0, "clip_mode": "global",
                       "clip_threshold": 100.0})
    result = run_quietly(cfg, data_dir, tmp_path / "run")
    s = strict_json(tmp_path / "run" / "summary.json")
    assert result.outcome == s["outcome"] == "unstable" and s["diverged_at"] is None
    assert s["loss_growth"] > verdicts.UNSTABLE_LOSS_GROWTH and math.isfinite(s["final_train_loss"])
    assert s["learned"] is False and s["final_val_loss"] > s["chance_loss"]


def test_an_error_inside_the_run_is_recorded(monkeypatch, data_dir, tmp_path):
    def broken(*args, **kwargs):
        raise RuntimeError("boom in the trainer")

    monkeypatch.setattr(trainer, "train_step", broken)
    cfg = RunConfig(**{**TINY, "task": "adding"})
    result = runner.execute_run(cfg, data_dir, tmp_path / "run")
    assert result.outcome == "failed"
    s = strict_json(tmp_path / "run" / "summary.json")
    assert s["outcome"] == "failed" and "boom in the trainer" in s["error"] and s["learned"] is False
    assert {p.name for p in (tmp_path / "run").iterdir()} == {"config.json", "summary.json"}


def test_a_failed_probe_keeps_the_training_history(monkeypatch, data_dir, tmp_path):
    def broken(*args, **kwargs):
        raise FloatingPointError("probe broke")

    monkeypatch.setattr(runner, "probe_model", broken)
    cfg = RunConfig(**{**TINY, "task": "adding", "iters": 7})
    result = runner.execute_run(cfg, data_dir, tmp_path / "run")
    assert result.outcome == "failed" and "FloatingPointError: probe broke" in result.summary["error"]
    assert len(pd.read_csv(tmp_path / "run" / "history.csv")) == 7


def test_bad_input_raises_and_writes_nothing(data_dir, tmp_path):
    cfg = RunConfig(**{**TINY, "task": "text", "text": str(tmp_path / "missing.txt")})
    with pytest.raises(UserError, match="missing.txt"):
        runner.execute_run(cfg, data_dir, tmp_path / "out" / "run")
    assert list((tmp_path / "out").iterdir()) == []


def test_existing_folder_is_replaced_only_when_done(data_dir, tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "old.txt").write_text("previous run")
    cfg = RunConfig(**{**TINY, "task": "adding", "iters": 5})

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(runner, "write_probe", interrupted)
        with pytest.raises(KeyboardInterrupt):
            runner.execute_run(cfg, data_dir, run_dir)
    assert [p.name for p in tmp_path.iterdir()] == ["run"] and (run_dir / "old.txt").exists()
    runner.execute_run(cfg, data_dir, run_dir)
    assert not (run_dir / "old.txt").exists() and (run_dir / "summary.json").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["run"]


def test_zero_iterations_probe_the_initial_model(data_dir, tmp_path):
    cfg = RunConfig(**{**TINY, "task": "adding", "iters": 0})
    result = run_quietly(cfg, data_dir, tmp_path / "run")
    assert result.outcome == "ok" and result.summary["iters_done"] == 0
    assert result.summary["gamma_w_final"] == result.summary["gamma_w_init"]
    assert len(pd.read_csv(tmp_path / "run" / "history.csv")) == 0


def test_the_sweep_recognises_the_runners_temp_folder(data_dir, tmp_path):
    """The sweep removes temp folders left by killed workers by name: the name the runner really uses."""
    from pipeline.sweep import RUNNER_TEMP_FOLDER

    cfg = RunConfig(**{**TINY, "task": "adding", "iters": 2})
    run_dir = tmp_path / "runs" / config_hash(cfg)
    seen = []
    run_quietly(cfg, data_dir, run_dir, progress=lambda event: seen.extend(p.name for p in run_dir.parent.iterdir()))
    assert seen and all(RUNNER_TEMP_FOLDER.fullmatch(name) for name in seen), seen
    assert [p.name for p in run_dir.parent.iterdir()] == [run_dir.name]


def test_run_folders_get_the_umasks_permissions(data_dir, tmp_path):
    """Not mkdtemp's 0700: a run folder is renamed from its temp folder, and the group sharing results reads it."""
    import stat

    umask = os.umask(0o022)
    try:
        result = run_quietly(RunConfig(**{**TINY, "task": "adding", "iters": 1}), data_dir, tmp_path / "run")
    finally:
        os.umask(umask)
    assert stat.S_IMODE(result.run_dir.stat().st_mode) == 0o755


def test_a_runs_numbers_do_not_depend_on_the_callers_blas_threads(data_dir, corpus_file, tmp_path):
    """OpenBLAS sums a long product differently on 1 and 2 threads; over a few Adagrad steps that changed a text
    run's losses by 0.1. A run pins its own BLAS threads, so a sweep's --jobs or the machine's cores don't matter."""
    from threadpoolctl import threadpool_limits

    cfg = RunConfig(task="text", text=str(corpus_file), hidden=100, batch=32, seq_len=25, iters=10, probe_len=10,
                    eval_every=0, samples=0)
    histories = []
    for threads in (1, 2):
        with threadpool_limits(limits=threads, user_api="blas"):
            result = run_quietly(cfg, data_dir, tmp_path / f"threads{threads}")
        histories.append((result.run_dir / "history.csv").read_bytes())
    assert histories[0] == histories[1]


def _overflowing_validation_source(overflow_after_draws: int) -> sources.Source:
    """Benign training batches; the validation inputs become 1e300 (a linear net's loss: inf) once `draw` has
    been called `overflow_after_draws` times."""
    T, B = 4, 2
    val = (np.full((T, B, 2), 0.1), np.zeros((T, B, 1)), np.ones((T, B)))
    draws = []

    def draw(rng):
        draws.append(1)
        if len(draws) > overflow_after_draws:
            val[0][:] = 1e300
        return np.full((T, B, 2), 0.1), np.zeros((T, B, 1)), np.ones((T, B))

    if overflow_after_draws == 0:
        val[0][:] = 1e300
    return sources.Source("mse", 2, 1, draw, val, None, None, None)


@pytest.mark.parametrize("iters, overflow_after, diverged_at, iters_done, history_rows", [
    (10, 3, 4, 4, 4),  # the validation pass at iteration 4 overflows: stop there, the model's parameters are finite
    (10, 0, 2, 2, 2),  # overflowing from the start, while the minibatches stay finite: the first pass, at 2
    (0, 0, 0, 0, 0),  # nothing trained: the untrained model's validation loss overflows
])
def test_a_validation_loss_that_overflows_is_a_divergence(iters, overflow_after, diverged_at, iters_done,
                                                          history_rows):
    from pipeline.engine.init import init_model

    cfg = RunConfig(task="adding", seq_len=4, hidden=3, batch=2, iters=iters, eval_every=2, activation="linear",
                    optimizer="sgd", lr=1e-3, clip_mode="none")
    model, _ = init_model(np.random.default_rng(0), input_dim=2, output_dim=1, form="elman", activation="linear",
                          leaky_slope=0.01, layers=1, hidden=3, init="gaussian", gamma_w=0.5, input_scale=None)
    src = _overflowing_validation_source(overflow_after)
    events = []
    log, _ = runner.train(cfg, model, src, np.random.default_rng(1), np.random.default_rng(2), events.append)
    assert (log.diverged_at, log.iters_done, len(log.history)) == (diverged_at, iters_done, history_rows)
    assert not math.isfinite(log.val[-1][1]) and log.val[-1][0] == diverged_at
    assert trainer.params_finite(log.model)
    assert events[-1]["diverged"] is True and events[-1]["iter"] == diverged_at


@pytest.mark.parametrize("name", list(RUNS))
def test_dynamics_numbers_follow_from_the_models_and_tables(runs, name):
    """The mean-field, Lyapunov, gap and spectrum numbers of summary.json against the run's own model files and
    tables: sigma_w = ||W||_F / sqrt(n); the rate is the mean-field map's at that sigma_w and the recorded input
    variance; lambda_1 <= log(gamma_W gamma_phi) (sub-multiplicativity); the gap parts add up to the mean gap."""
    from pipeline.engine import meanfield
    from pipeline.engine.activations import get_activation

    cfg, result, _ = runs[name]
    s, folder = result.summary, result.run_dir / "probe"
    for when in ("init", "final"):
        W = np.load(folder / f"model_{when}.npz")[f"W_hh_{cfg.layers - 1}"]
        assert s[f"sigma_w_{when}"] == pytest.approx(np.linalg.norm(W) / math.sqrt(W.shape[0]), rel=1e-12)
        want = meanfield.meanfield_rate(get_activation("tanh"), s[f"sigma_w_{when}"], s[f"input_var_{when}"])
        assert s[f"meanfield_rate_{when}"] == pytest.approx(want.rate, rel=1e-12)
        assert s[f"lyapunov_{when}"] <= s[f"log_rate_{when}"] + 1e-9 and s[f"lyapunov_spread_{when}"] >= 0
    spectra = pd.read_parquet(folder / "spectra.parquet")
    top = spectra[(spectra["when"] == "init") & (spectra["layer"] == cfg.layers - 1)]
    exps = top.loc[top["kind"] == "lyapunov", "value"].to_numpy()
    assert len(exps) == min(4, cfg.hidden) and (np.diff(exps) <= 0).all() and exps[0] == s["lyapunov_init"]
    sigma = top.loc[top["kind"] == "log_singular", "value"].to_numpy()
    assert len(sigma) == cfg.hidden and sigma[0] == pytest.approx(
        pd.read_parquet(folder / "jacobian.parquet").query("when == 'init' and k == 0 and layer == @cfg.layers - 1")
        ["log_norm"].iloc[-1], abs=1e-9)  # sigma_1 of dh_T/dh_0 is the measured norm at the longest lag
    jac = pd.read_parquet(folder / "jacobian.parquet").query("when == 'init' and layer == @cfg.layers - 1")
    ok = np.isfinite(jac[["log_norm", "log_bound_product", "log_bound_global", "log_bound_stepnorm"]]).all(axis=1)
    parts = s["gap_global_to_product_init"] + s["gap_product_to_stepnorm_init"] + s["gap_stepnorm_to_measured_init"]
    assert parts == pytest.approx(((jac["log_bound_global"] - jac["log_norm"])[ok]).mean() / math.log(10), rel=1e-9)
    assert min(s["gap_global_to_product_init"], s["gap_product_to_stepnorm_init"],
               s["gap_stepnorm_to_measured_init"]) >= -1e-9


@pytest.mark.parametrize("name", list(RUNS))
def test_gradients_over_training_are_recorded_at_checkpoints(runs, name):
    cfg, result, _ = runs[name]
    grads = pd.read_parquet(result.run_dir / "probe" / "gradients.parquet")
    assert set(grads["iter"]) == runner.gradient_checkpoints(cfg.iters) and {0, cfg.iters} <= set(grads["iter"])
    signal = pd.read_parquet(result.run_dir / "probe" / "signal.parquet")
    for it, when in ((0, "init"), (cfg.iters, "final")):  # the first and last checkpoints are the probed models
        got = grads[grads["iter"] == it].sort_values(["layer", "k"])["log10_dE_dh"].to_numpy()
        want = signal[signal["when"] == when].sort_values(["layer", "k"])["log10_dE_dh"].to_numpy()
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("name", list(RUNS))
def test_the_dynamics_over_training_start_at_the_initial_probe_and_end_at_the_final_one(runs, name):
    """probe/dynamics.parquet at the gradient checkpoints: every layer's ||W_hh||_2, rho, lambda_1 and lambda_MF,
    computed during training, equal at iteration 0 to the initial probe's numbers (computed after training, from
    the saved initial model) and at the last iteration to the final probe's; by_iter/lyapunov is the top layer's."""
    cfg, result, _ = runs[name]
    table = pd.read_parquet(result.run_dir / "probe" / "dynamics.parquet")
    assert list(table.columns) == ["iter", "layer", "w_norm", "rho", "lyap", "lyap_mf"]
    assert set(table["iter"]) == runner.gradient_checkpoints(cfg.iters)
    assert len(table) == len(runner.gradient_checkpoints(cfg.iters)) * cfg.layers
    names = {"w_norm": "gamma_w", "rho": "spectral_radius", "lyap": "lyapunov", "lyap_mf": "meanfield_rate"}
    for it, when in ((0, "init"), (cfg.iters, "final")):
        for layer, numbers in enumerate(result.summary["layers"]):
            row = table[(table["iter"] == it) & (table["layer"] == layer)].iloc[0]
            for column, key in names.items():
                assert row[column] == pytest.approx(numbers[f"{key}_{when}"], rel=1e-12, abs=1e-15), (column, when)
    W = load_model(result.run_dir / "probe" / "model_final.npz").W_hh(cfg.layers - 1)
    assert table["w_norm"].iloc[-1] == pytest.approx(np.linalg.svd(W, compute_uv=False)[0], rel=1e-12)
    series = pd.read_parquet(result.run_dir / "series.parquet")
    lyap = series[series["key"] == "by_iter/lyapunov"].sort_values("step")
    top = table[table["layer"] == cfg.layers - 1]
    assert lyap["step"].tolist() == top["iter"].tolist()
    np.testing.assert_array_equal(lyap["value"].to_numpy(), top["lyap"].to_numpy())


def test_the_dynamics_of_a_gated_cell_are_its_weight_norms_only():
    """An LSTM's W_hh (4n, n) has a norm but no spectral radius, and the probe defines neither lambda_1 nor
    lambda_MF for it: NaN, not a number of another cell's."""
    from pipeline.engine.init import init_lstm
    from pipeline.run.dynamics import dynamics_table
    from pipeline.run.probe import Drive

    rng = np.random.default_rng(0)
    model = init_lstm(rng, input_dim=2, output_dim=1, layers=1, hidden=5, init="orthogonal", gamma_w=1.0)
    table = dynamics_table(model, Drive(rng.uniform(-1, 1, (16, 2, 2)), 4, 2), 7)
    assert table[["iter", "layer"]].values.tolist() == [[7, 0]]
    assert table["w_norm"].iloc[0] == pytest.approx(np.linalg.norm(model.W_hh(0), 2), rel=1e-12)
    assert table[["rho", "lyap", "lyap_mf"]].isna().all(axis=None)


def test_driving_inputs_join_task_sequences_into_streams():
    rng = np.random.default_rng(0)
    drawn = []

    def draw(r):
        xs = r.standard_normal((7, 3, 2))
        drawn.append(xs)
        return xs, None, None

    got = runner.driving_inputs(draw, rng, 20, 2, 2)
    assert got.shape == (20, 2, 2)
    sequences = [x[:, b] for x in drawn for b in range(3)]
    stream = np.concatenate(sequences)
    np.testing.assert_array_equal(got[:, 0], stream[:20])
    np.testing.assert_array_equal(got[:, 1], stream[20:40])


def test_driving_inputs_one_hot_encode_token_ids_as_the_text_walk_draws_them():
    ids = np.arange(12).reshape(4, 3) % 5  # (S, B) ids, as min-char-rnn's consecutive windows give them

    got = runner.driving_inputs(lambda r: (ids, None, None, True), np.random.default_rng(0), 8, 1, 5)
    assert got.shape == (8, 1, 5)
    np.testing.assert_array_equal(got[:, 0].argmax(axis=1), np.concatenate([ids[:, 0], ids[:, 1]]))
    assert (got.sum(axis=2) == 1).all()


def test_a_newcomers_sigmoid_run_has_no_bound_violation(data_dir, tmp_path):
    """`rnngrad train --task adding --seq-len 50 --hidden 32 --init orthogonal --activation sigmoid --gamma-w 1
    --probe-len 50 --iters 0`: phi' is close to 1/4 in every unit, so each step's top singular values cluster
    (0.25, 0.25, 0.2499977, ...); its step norms must equal an exact SVD's and violate nothing."""
    from pipeline.engine.jacobian import log_step_norms
    from pipeline.engine.rnn import step_factors

    cfg = RunConfig(task="adding", seq_len=50, hidden=32, init="orthogonal", activation="sigmoid", gamma_w=1.0,
                    probe_len=50, iters=0)
    result = run_quietly(cfg, data_dir, tmp_path / "run")
    assert result.summary["violations_init"] == 0 and result.summary["violations_final"] == 0
    probe = tmp_path / "run" / "probe"
    model = load_model(probe / "model_init.npz")
    W, D = step_factors(model, np.load(probe / "inputs.npy"), np.load(probe / "h0.npy"), -1)
    exact = np.log(np.linalg.svd(D[:, :, None] * W[None], compute_uv=False)[:, 0])
    np.testing.assert_allclose(log_step_norms(W, D, model.form), exact, rtol=0, atol=1e-12)


def test_the_probe_across_layers_and_the_weight_gradients(runs):
    """probe/jacobian_depth.parquet of a 2-layer run: every pair k <= t from layer 0 to the top, at both probes, equal
    to depth.log_norm_grid of the saved models, the bounds holding; weight_gradients.parquet at the 5 checkpoints."""
    from pipeline.engine import depth
    from pipeline.run.depthprobe import DEPTH_COLUMNS, WEIGHT_GRADIENT_COLUMNS
    cfg, result, _ = runs["adding2"]
    folder, P = result.run_dir / "probe", probe_steps("adding2", cfg)
    table = pd.read_parquet(folder / "jacobian_depth.parquet")
    assert list(table.columns) == list(DEPTH_COLUMNS)
    assert len(table) == 2 * (P * (P + 1) // 2 + P) and set(table["source_layer"]) == {0} and set(table["depth"]) == {1}
    xs, h0 = np.load(folder / "inputs.npy"), np.load(folder / "h0.npy")
    for when in ("init", "final"):
        grid = depth.log_norm_grid(load_model(folder / f"model_{when}.npz"), xs, h0)
        rows = table[table["when"] == when]
        np.testing.assert_allclose(rows["log_norm"], grid[0, rows["t"], rows["k"]], atol=1e-10)
        assert result.summary[f"violations_cross_{when}"] == 0 and result.summary[f"cross_pairs_{when}"] == len(rows)
    for low, high in (("log_norm", "log_bound_stepnorm"), ("log_bound_stepnorm", "log_bound_product"),
                      ("log_bound_product", "log_bound_global")):
        assert (table[low] <= table[high] + 1e-9 * np.maximum(1, table[high].abs())).all()
    assert all(np.isfinite(result.summary[f"{k}_{w}"]) for k in ("rate_time", "rate_depth", "depth_chain")
               for w in ("init", "final"))
    grads = pd.read_parquet(folder / "weight_gradients.parquet")
    assert list(grads.columns) == list(WEIGHT_GRADIENT_COLUMNS)
    assert sorted(set(grads["iter"])) == sorted(runner.gradient_checkpoints(cfg.iters))
    assert len(grads) == 5 * cfg.layers * 2 and np.isfinite(grads["log10_norm"]).all()
