"""Fake sweeps on disk for the analysis and report tests: run folders and results/<spec>.parquet tables.

The numbers are computed, not invented, and independently of the pipeline's engine:
  - measured log||dh_t/dh_k||_2 comes from explicit products of the Jacobians J_t = diag(phi'(a_t)) W
    (elman form) and np.linalg.norm(., 2); the product and global bounds from their definitions;
  - a `linear` run with init `identity` has W = a I, so ||dh_t/dh_k|| = |a|^(t-k) exactly (a closed form);
  - the slope is a least-squares fit of log-norm against lag, the Lyapunov exponent a QR iteration;
  - the step-norm bound sums log ||J_s||_2 by np.linalg.norm(J_s, 2), the gap parts are means over the finite
    top-layer pairs of the initial probe, the singular spectrum is the SVD of the explicit product dh_T/dh_0.
The mean-field rate and the Lyapunov spread follow stated formulas (MEANFIELD_OFFSET, LYAPUNOV_SPREAD), and so does
||dE/dh_k|| over training (probe/gradients.parquet), the weight gradients (probe/weight_gradients.parquet) and the
training dynamics (probe/dynamics.parquet). A
stack's Jacobians across layers (probe/jacobian_depth.parquet) are explicit products over the (time, layer) grid
and their bounds explicit sums over its paths (node_jacobians, path_bound).
Task outcomes (accuracy, losses, learning, BPTT signal) follow simple stated formulas, so a test can predict the
summaries; so does the spot check (probe/spot_checks.parquet): its pairs are (k+1, k) and (T, k) for k = 0 and
T // 2, and its finite-difference value is the measured one plus SPOT_OFFSET * (t - k).

A text run's validation losses over training (series.parquet) follow a stated formula too (val_losses).
Layout follows docs/internals.md: results/<spec>/runs/<config_hash>/{config,summary}.json, history.csv,
samples.json and series.parquet (text), probe/jacobian.parquet, probe/signal.parquet, probe/spot_checks.parquet; results/<spec>.parquet
has one row per run.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.engine.activations import get_activation

CHANCE_ACCURACY = {"adding": 0.1, "temporal_order": 0.25, "copy": 0.125, "text": 1 / 30, "probe": 0.5}
CHANCE_LOSS = {"adding": 0.167, "temporal_order": math.log(4), "copy": math.log(8), "text": math.log(30),
               "probe": 1.0}

SPOT_OFFSET = 1e-9  # the fixture's finite-difference values differ from the measured ones by this per step of lag
MEANFIELD_OFFSET = {"orthogonal": 0.02, "identity": -0.05, "gaussian": 0.04, "sparse": 0.03}  # rate = slope + this
LYAPUNOV_SPREAD = 0.005  # every run's lambda_1 spread over its trajectories

BASE_CONFIG = dict(task="adding", text=None, seq_len=20, val_size=200, data_seed=0, form="elman", activation="tanh",
                   leaky_slope=0.01, layers=1, hidden=4, init="orthogonal", gamma_w=1.0, input_scale=None,
                   optimizer="sgd", lr=0.05, weight_decay=0.0, batch=8, iters=100, clip_mode="none",
                   clip_threshold=1.0, eval_every=50, samples=3, sample_len=40, probe_len=10, seed=0)


@dataclass
class FakeRun:
    spec: str
    config: dict
    outcome: str = "ok"
    bias: float = 0.0  # constant pre-activation offset (relu with bias -10 has dead units: norm 0, log -inf)
    final_scale: float = 0.9  # W_final = final_scale * W_init (NaN for a diverged run)
    overrides: dict = field(default_factory=dict)  # summary fields forced to a value (e.g. a contradiction)
    run_id: str = ""
    config_hash: str = ""
    cross: pd.DataFrame | None = None  # probe/jacobian_depth.parquet's rows (a stack's), set by `probe`


def spectral_norm(W: np.ndarray) -> float:
    """||W||_2; NaN for a matrix with a non-finite entry (a diverged run's weights)."""
    return float(np.linalg.norm(W, 2)) if np.all(np.isfinite(W)) else math.nan


def initial_weights(cfg: dict, rng: np.random.Generator) -> list[np.ndarray]:
    """One W_hh per layer with ||W||_2 = gamma_w: gamma_w * I (identity) or gamma_w * a random orthogonal matrix."""
    n, out = cfg["hidden"], []
    for _ in range(cfg["layers"]):
        if cfg["init"] == "identity":
            out.append(cfg["gamma_w"] * np.eye(n))
            continue
        q, r = np.linalg.qr(rng.normal(size=(n, n)))
        out.append(cfg["gamma_w"] * q * np.sign(np.diag(r)))
    return out


def derivatives(cfg: dict, Ws: list[np.ndarray], xs: np.ndarray, bias: float) -> list[np.ndarray]:
    """phi'(a_t) per layer, (T, n) each, for the elman form h_t = phi(W h_{t-1} + x_t + bias); layer l reads l-1."""
    act = get_activation(cfg["activation"], cfg["leaky_slope"])
    drive, out = xs, []
    for W in Ws:
        h, states, D = np.zeros(W.shape[0]), [], []
        for x in drive:
            a = W @ h + x + bias
            D.append(act.dphi(a))
            h = act.phi(a)
            states.append(h)
        out.append(np.array(D))
        drive = np.array(states)
    return out


def jacobian_rows(W: np.ndarray, D: np.ndarray, gamma_phi: float) -> list[tuple]:
    """(t, k, lag, measured, product, global, stepnorm) for 0 <= k < t <= T, natural log, by explicit matrix
    products."""
    T, rows = len(D), []
    g = spectral_norm(W)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        step = np.log(g * np.abs(D).max(axis=1))  # (T,) log(||W|| max_j |phi'_j|) at steps 1..T
        own = np.log([spectral_norm(d[:, None] * W) for d in D])  # (T,) log ||J_s||_2
        rate = math.log(g * gamma_phi) if g * gamma_phi > 0 else -math.inf
        for k in range(T):
            P = np.eye(W.shape[0])
            for t in range(k + 1, T + 1):
                P = (D[t - 1][:, None] * W) @ P
                norm = spectral_norm(P)
                measured = math.log(norm) if norm > 0 else (-math.inf if norm == 0 else math.nan)
                rows.append((t, k, t - k, measured, float(step[k:t].sum()), (t - k) * rate, float(own[k:t].sum())))
    return rows


def singular_logs(W: np.ndarray, D: np.ndarray) -> np.ndarray:
    """log of every singular value of dh_T/dh_0, descending, from the explicit product (NaN if not finite)."""
    P = np.eye(W.shape[0])
    for d in D:
        P = (d[:, None] * W) @ P
    if not np.all(np.isfinite(P)):
        return np.full(W.shape[0], np.nan)
    with np.errstate(divide="ignore"):
        return np.log(np.linalg.svd(P, compute_uv=False))


def gap_parts(rows: list[tuple]) -> dict[str, float]:
    """The gap decomposition of one probe's top layer in decades: means over the pairs with all four logs finite."""
    a = np.array([r[3:7] for r in rows], float)  # measured, product, global, stepnorm
    a = a[np.isfinite(a).all(axis=1)]
    if not len(a):
        return dict.fromkeys(("gap_global_to_product", "gap_product_to_stepnorm", "gap_stepnorm_to_measured"),
                             math.nan)
    return {"gap_global_to_product": float((a[:, 2] - a[:, 1]).mean() / math.log(10)),
            "gap_product_to_stepnorm": float((a[:, 1] - a[:, 3]).mean() / math.log(10)),
            "gap_stepnorm_to_measured": float((a[:, 3] - a[:, 0]).mean() / math.log(10))}


def lyapunov(W: np.ndarray, D: np.ndarray) -> float:
    """Top Lyapunov exponent of the Jacobian sequence by QR re-orthonormalisation."""
    q, total = np.eye(W.shape[0])[:, :1], 0.0
    for d in D:
        q, r = np.linalg.qr((d[:, None] * W) @ q)
        total += math.log(abs(r[0, 0])) if r[0, 0] != 0 else -math.inf
    return total / len(D)


def fitted_slope(rows: list[tuple]) -> float:
    lag = np.array([r[2] for r in rows], float)
    val = np.array([r[3] for r in rows], float)
    ok = np.isfinite(val)
    return float(np.polyfit(lag[ok], val[ok], 1)[0]) if ok.sum() >= 2 and np.ptp(lag[ok]) > 0 else math.nan


def regime_from_slope(slope: float) -> str | None:
    if not math.isfinite(slope):
        return None
    return "exploding" if slope > 0.01 else "vanishing" if slope < -0.01 else "neutral"


def predicted_from_rate(log_rate: float) -> str:
    """Pascanu et al.'s prediction, written out: below 1 vanishing, at 1 (within 1e-9 in log) bounded, above it
    unconstrained."""
    if log_rate < -1e-9:
        return "vanishing"
    return "bounded" if log_rate <= 1e-9 else "unconstrained"


def validation_loss(cfg: dict) -> float:
    """Stated formula: chance loss x (1 - exp(-T / 20)), so a run beats chance (below 0.9 x chance) for
    T < 20 ln 10 ~ 46 and is at chance beyond; it learns (below 0.9 x PARTIAL_SHARE x chance) for T < 20 ln(1/0.55)
    ~ 12.0."""
    return CHANCE_LOSS[cfg["task"]] * (1 - math.exp(-cfg["seq_len"] / 20))


PARTIAL_SHARE = 0.5  # every task's partial baseline is half its chance loss (as adding's and temporal order's are)


def task_success(cfg: dict) -> float:
    """Stated formula: accuracy (and the share of sequences right) falls from 1 to chance as exp(-T / 40)."""
    chance = CHANCE_ACCURACY[cfg["task"]]
    return chance + (1 - chance) * math.exp(-cfg["seq_len"] / 40)


def final_loss(cfg: dict) -> float:
    """Stated formula: unclipped runs end at 0.12 (text: 1.5), clipped at 0.02 + 0.01 * |log10 threshold| + 0.01 *
    log10 threshold (elementwise only)."""
    if cfg["task"] == "text":
        return 1.5
    if cfg["clip_mode"] == "none":
        return 0.12
    lt = math.log10(cfg["clip_threshold"])
    return 0.02 + 0.01 * abs(lt) + (0.01 * lt if cfg["clip_mode"] == "elementwise" else 0.0)


def history(cfg: dict, outcome: str, diverged_at: int | None) -> pd.DataFrame:
    it = np.arange(cfg["iters"])
    end = final_loss(cfg)
    loss = end + (CHANCE_LOSS[cfg["task"]] - end) * np.exp(-it / 20)
    if outcome == "diverged":  # explodes over its last ten steps, to 1e300, then inf
        loss = np.where(it >= diverged_at - 10, 10.0 ** np.minimum(30.0 * (it - diverged_at + 11), 300.0), loss)
        loss = np.where(it >= diverged_at, np.inf, loss)
    return pd.DataFrame({"iter": it, "loss": loss, "grad_norm": 1.0 + 0 * it, "clip_scale": 1.0 + 0 * it,
                         "w_norm": cfg["gamma_w"] + 0 * it, "spectral_radius": cfg["gamma_w"] + 0 * it})


def val_losses(cfg: dict) -> tuple[np.ndarray, np.ndarray]:
    """Stated formula for a text run's validation passes: at every eval_every-th iteration and the last, the loss
    falls from chance to the final validation loss as exp(-iter / 20)."""
    at = np.unique(np.append(np.arange(0, cfg["iters"], cfg["eval_every"]), cfg["iters"]))
    end, chance = validation_loss(cfg), CHANCE_LOSS[cfg["task"]]
    return at, end + (chance - end) * np.exp(-at / 20)


def series_rows(cfg: dict) -> pd.DataFrame:
    """series.parquet of a text run: its validation losses (val_losses) as by_iter/val_loss, beside a training
    loss series that a reader of the validation curve must skip."""
    at, val = val_losses(cfg)
    return pd.DataFrame({"key": ["by_iter/val_loss"] * len(at) + ["by_iter/train_loss"] * len(at),
                         "step": np.concatenate([at, at]), "value": np.concatenate([val, val + 1.0])})


def signal_rows(cfg: dict, whens: tuple[str, ...]) -> pd.DataFrame:
    """Stated formula: log10 ||dE/dh^l_k|| = -0.05 (T - k) - 0.5 (L - 1 - l)."""
    T, L = cfg["probe_len"], cfg["layers"]
    rows = [(w, l, k, -0.05 * (T - k) - 0.5 * (L - 1 - l)) for w in whens for l in range(L) for k in range(T + 1)]
    return pd.DataFrame(rows, columns=["when", "layer", "k", "log10_dE_dh"])


def gradient_rows(cfg: dict) -> pd.DataFrame:
    """Stated formula: at iterations 0, iters / 2 and iters, log10 ||dE/dh^l_k|| = the signal's - 0.001 iter."""
    T, L = cfg["probe_len"], cfg["layers"]
    rows = [(i, l, k, -0.05 * (T - k) - 0.5 * (L - 1 - l) - 0.001 * i)
            for i in (0, cfg["iters"] // 2, cfg["iters"]) for l in range(L) for k in range(T + 1)]
    return pd.DataFrame(rows, columns=["iter", "layer", "k", "log10_dE_dh"])


def dynamics_rows(cfg: dict, summary: dict, diverged_at: int | None) -> pd.DataFrame:
    """Stated formula (probe/dynamics.parquet): every layer at iterations 0, iters / 2 and iters carries the
    summary's top-layer numbers, at 0 the initial ones, at iters the final ones and halfway their mean; a diverged
    run has iteration 0 and iters / 4 only, both at the initial numbers."""
    names = ("gamma_w", "spectral_radius", "lyapunov", "meanfield_rate")
    start, end = ([float(summary[f"{n}_{when}"]) for n in names] for when in ("init", "final"))
    middle = [(a + b) / 2 for a, b in zip(start, end)]
    points = ([(0, start), (cfg["iters"] // 4, start)] if diverged_at is not None
              else [(0, start), (cfg["iters"] // 2, middle), (cfg["iters"], end)])
    rows = [(i, l, *values) for i, values in points for l in range(cfg["layers"])]
    return pd.DataFrame(rows, columns=["iter", "layer", "w_norm", "rho", "lyap", "lyap_mf"])


def spot_rows(jac: pd.DataFrame) -> pd.DataFrame:
    """Stated formula: pairs (k+1, k) and (T, k) for k = 0 and T // 2 of every probe and layer; log_norm_fd =
    log_norm + SPOT_OFFSET * (t - k), NaN (skipped) where the measured value is not finite."""
    T = int(jac["t"].max())
    pairs = {(k + 1, k) for k in (0, T // 2)} | {(T, k) for k in (0, T // 2)}
    rows = jac[[(t, k) in pairs for t, k in zip(jac["t"], jac["k"])]]
    fd = rows["log_norm"] + SPOT_OFFSET * rows["lag"]
    fd = fd.where(np.isfinite(fd))
    return pd.DataFrame({"when": rows["when"], "layer": rows["layer"], "t": rows["t"], "k": rows["k"],
                         "log_norm": rows["log_norm"], "log_norm_fd": fd, "abs_dlog": (fd - rows["log_norm"]).abs()})


def node_jacobians(Ws: list[np.ndarray], Ds: list[np.ndarray], source: int, k: int) -> dict[tuple[int, int], np.ndarray]:
    """dh^j_s/dh^source_k for every node the source reaches, forward over the grid by explicit products: the layers
    read the state below through the identity (`derivatives`), so the vertical edge is diag(phi'), the horizontal
    diag(phi') W; no vertical edge leaves step 0."""
    n, T, L = Ws[0].shape[0], len(Ds[0]), len(Ws)
    N = {(source, k): np.eye(n)}
    for s in range(k, T + 1):
        for j in range(source, L):
            if (j, s) == (source, k):
                continue
            total, reached = np.zeros((n, n)), False
            if s > k and (j, s - 1) in N:
                total, reached = total + (Ds[j][s - 1][:, None] * Ws[j]) @ N[(j, s - 1)], True
            if j > source and s >= 1 and (j - 1, s) in N:
                total, reached = total + Ds[j][s - 1][:, None] * N[(j - 1, s)], True
            if reached:
                N[(j, s)] = total
    return N


def path_bound(edge_h: np.ndarray, edge_v: np.ndarray, source: int, k: int, top: int, t: int) -> float:
    """log of the sum over the grid's paths from (source, k) to (top, t) of the product of per-edge bounds, with
    edge_h[j, s-1], edge_v[j, s-1] the bounds on the edges into (j, s), by explicit summation over nodes."""
    total = {(source, k): 1.0}
    for s in range(k, t + 1):
        for j in range(source, top + 1):
            if (j, s) == (source, k):
                continue
            value = (total.get((j, s - 1), 0.0) * edge_h[j, s - 1] if s > k else 0.0) + (
                total.get((j - 1, s), 0.0) * edge_v[j, s - 1] if j > source and s >= 1 else 0.0)
            total[(j, s)] = value
    with np.errstate(divide="ignore"):
        return float(np.log(total[(top, t)]))


def depth_rows(Ws: list[np.ndarray], Ds: list[np.ndarray], gamma_phi: float) -> list[tuple]:
    """(source_layer, t, k, log_norm, stepnorm, product, global) for every source below the top and k <= t, t >= 1."""
    T, top, rows = len(Ds[0]), len(Ws) - 1, []
    maxd = np.array([np.abs(D).max(axis=1) for D in Ds])  # (L, T)
    own = np.array([[spectral_norm(d[:, None] * W) for d in D] for W, D in zip(Ws, Ds)])
    g = np.array([spectral_norm(W) for W in Ws])[:, None]
    bounds = {"stepnorm": (own, maxd), "product": (g * maxd, maxd),
              "global": (np.broadcast_to(g * gamma_phi, maxd.shape), np.full(maxd.shape, gamma_phi))}
    for source in range(top):
        for k in range(T + 1):
            N = node_jacobians(Ws, Ds, source, k)
            for t in range(max(k, 1), T + 1):
                measured = math.log(spectral_norm(N[(top, t)]))
                rows.append((source, t, k, measured, *(path_bound(*bounds[b], source, k, top, t)
                                                       for b in ("stepnorm", "product", "global"))))
    return rows


def through_origin(x: np.ndarray, y: np.ndarray) -> float:
    """Least-squares slope through the origin, written out; NaN without a finite point."""
    ok = np.isfinite(y)
    return float((x[ok] * y[ok]).sum() / (x[ok] ** 2).sum()) if ok.any() else math.nan


def depth_numbers(top_rows: list[tuple], cross: pd.DataFrame) -> dict:
    """rate_time from the top layer's own pairs (mean per lag), rate_depth from the depth chain (mean per depth)."""
    lag_means = pd.DataFrame(top_rows, columns=["t", "k", "lag", "m", "p", "g", "s"]).groupby("lag")["m"].mean()
    out = {"rate_time": through_origin(lag_means.index.to_numpy(float), lag_means.to_numpy())}
    if len(cross):
        chain = cross[cross["lag"] == 0].groupby("depth")["log_norm"].mean()
        out["rate_depth"] = through_origin(chain.index.to_numpy(float), chain.to_numpy())
    return out


def weight_gradient_rows(cfg: dict) -> pd.DataFrame:
    """Stated formula: at iterations 0, iters / 2 and iters, log10 ||dE/dW_hh^l|| = -0.5 (L - 1 - l) - 0.001 iter and
    ||dE/dW_xh^l|| 0.1 below it."""
    L = cfg["layers"]
    rows = [(i, l, p, -0.5 * (L - 1 - l) - 0.001 * i - (0.1 if p == "W_xh" else 0.0))
            for i in (0, cfg["iters"] // 2, cfg["iters"]) for l in range(L) for p in ("W_hh", "W_xh")]
    return pd.DataFrame(rows, columns=["iter", "layer", "param", "log10_norm"])


def cross_spot_rows(cross: pd.DataFrame) -> pd.DataFrame:
    """Stated formula for a stack's spot rows across layers: pairs (T, 0) and (T, T) of every probe and source layer,
    log_norm_fd = log_norm + SPOT_OFFSET * (t - k)."""
    T = int(cross["t"].max()) if len(cross) else 0
    rows = cross[(cross["t"] == T) & ((cross["k"] == 0) | (cross["k"] == T))]
    fd = rows["log_norm"] + SPOT_OFFSET * rows["lag"]
    return pd.DataFrame({"when": rows["when"], "layer": rows["layer"], "t": rows["t"], "k": rows["k"],
                         "log_norm": rows["log_norm"], "log_norm_fd": fd, "abs_dlog": (fd - rows["log_norm"]).abs(),
                         "source_layer": rows["source_layer"]})


def probe(run: FakeRun, rng: np.random.Generator) -> tuple[pd.DataFrame, dict, pd.DataFrame]:
    """The probe's jacobian table, the summary numbers computed from it, and its spectra table."""
    cfg = run.config
    gphi = get_activation(cfg["activation"], cfg["leaky_slope"]).gamma
    xs = rng.normal(scale=0.5, size=(cfg["probe_len"], cfg["hidden"]))
    W0 = initial_weights(cfg, rng)
    scale = math.nan if run.outcome == "diverged" else run.final_scale
    frames, summary, spectra, cross_frames = [], {"gamma_phi": gphi}, [], []
    for when, Ws in (("init", W0), ("final", [scale * W for W in W0])):
        Ds = derivatives(cfg, Ws, xs, run.bias)
        cross = pd.DataFrame(depth_rows(Ws, Ds, gphi) if len(Ws) > 1 and run.outcome != "diverged" else [],
                             columns=["source_layer", "t", "k", "log_norm", "log_bound_stepnorm", "log_bound_product",
                                      "log_bound_global"])
        cross = cross.assign(when=when, layer=len(Ws) - 1, lag=cross["t"] - cross["k"],
                             depth=len(Ws) - 1 - cross["source_layer"])
        cross_frames.append(cross)
        for layer, (W, D) in enumerate(zip(Ws, Ds)):
            rows = jacobian_rows(W, D, gphi)
            df = pd.DataFrame(rows, columns=["t", "k", "lag", "log_norm", "log_bound_product", "log_bound_global",
                                             "log_bound_stepnorm"])
            frames.append(df.assign(when=when, layer=layer))
            sigma = singular_logs(W, D)
            spectra.append(pd.DataFrame({"when": when, "layer": layer, "kind": "log_singular",
                                         "i": np.arange(len(sigma)), "value": sigma}))
        top_W, top_D, top_rows = Ws[-1], Ds[-1], rows
        g = spectral_norm(top_W)
        slope = fitted_slope(top_rows)
        summary |= {f"gamma_w_{when}": g, f"spectral_radius_{when}": g,
                    f"log_rate_{when}": math.log(g * gphi) if g > 0 else -math.inf,
                    f"slope_{when}": slope,
                    f"lyapunov_{when}": lyapunov(top_W, top_D) if math.isfinite(g) else math.nan,
                    f"lyapunov_spread_{when}": LYAPUNOV_SPREAD if math.isfinite(g) else math.nan,
                    f"meanfield_rate_{when}": slope + MEANFIELD_OFFSET[cfg["init"]]}
        summary |= {f"{k}_{when}": v for k, v in gap_parts(top_rows).items()}
        summary |= {f"{k}_{when}": v for k, v in depth_numbers(top_rows, cross).items()}
    cols = ["when", "layer", "t", "k", "lag", "log_norm", "log_bound_product", "log_bound_global",
            "log_bound_stepnorm"]
    depth_cols = ["when", "source_layer", "layer", "t", "k", "lag", "depth", "log_norm", "log_bound_stepnorm",
                  "log_bound_product", "log_bound_global"]
    run.cross = pd.concat(cross_frames, ignore_index=True)[depth_cols]
    return pd.concat(frames, ignore_index=True)[cols], summary, pd.concat(spectra, ignore_index=True)


def write_run(results_dir: Path, run: FakeRun, index: int) -> dict:
    """Write one run folder; returns its results-table row."""
    cfg = run.config
    run.config_hash = hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:16]
    run.run_id = hashlib.md5(f"{run.spec}/{index}/{run.config_hash}".encode()).hexdigest()
    folder = results_dir / run.spec / "runs" / run.config_hash
    folder.mkdir(parents=True)
    row = {"spec": run.spec, "cell": f"cell{index}", "run_id": run.run_id, "config_hash": run.config_hash,
           "outcome": run.outcome, "run_dir": f"{run.spec}/runs/{run.config_hash}", **cfg}
    (folder / "config.json").write_text(json.dumps(cfg))
    if run.outcome == "failed":  # as the runner leaves it: config and summary with the error, nothing else
        summary = {"config_hash": run.config_hash, "outcome": "failed", "diverged_at": None, "iters_done": None,
                   "beat_chance": False, "learned": False, "solved": False,
                   "error": "FloatingPointError: planted failure", "traceback": "Traceback ...", "seconds": 0.1}
        (folder / "summary.json").write_text(json.dumps(summary))
        return row | {"iters_done": None, "seconds": 0.1}
    (folder / "probe").mkdir()
    rng = np.random.default_rng(cfg["seed"] + 100 * index)
    jac, numbers, spectra = probe(run, rng)
    diverged_at = cfg["iters"] // 2 if run.outcome == "diverged" else None
    ok = run.outcome == "ok"
    summary = {"outcome": run.outcome, "diverged_at": diverged_at, "iters_done": cfg["iters"], "seconds": 1.5,
               "final_train_loss": final_loss(cfg) if ok else None, "final_val_loss": validation_loss(cfg) if ok
               else None, "val_accuracy": task_success(cfg) if ok else None,
               "chance_loss": CHANCE_LOSS[cfg["task"]], "chance_accuracy": CHANCE_ACCURACY[cfg["task"]],
               "partial_loss": PARTIAL_SHARE * CHANCE_LOSS[cfg["task"]],
               "partial_accuracy": 2 * CHANCE_ACCURACY[cfg["task"]],
               "val_sequences_right": task_success(cfg) if ok and cfg["task"] != "text" else None, **numbers}
    summary["beat_chance"] = ok and validation_loss(cfg) < 0.9 * CHANCE_LOSS[cfg["task"]]
    summary["learned"] = summary["beat_chance"] and validation_loss(cfg) < 0.9 * summary["partial_loss"]
    summary["solved"] = summary["learned"] and (summary["val_sequences_right"] or 0) >= 0.99
    summary["loss_growth"] = final_loss(cfg) / CHANCE_LOSS[cfg["task"]] if ok else None  # history starts at chance
    summary["norm_growth"] = run.final_scale if ok else None
    summary["predicted_regime"] = predicted_from_rate(summary["log_rate_init"])
    summary["observed_regime"] = regime_from_slope(summary["slope_init"])
    summary["violations_init"] = summary["violations_final"] = 0
    summary |= run.overrides
    summary = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in summary.items()}
    summary["layers"] = [{"layer": l, "gamma_x_init": 1.0} for l in range(cfg["layers"])]  # W_xh = I
    (folder / "summary.json").write_text(json.dumps(summary))
    history(cfg, run.outcome, diverged_at).to_csv(folder / "history.csv", index=False)
    jac.to_parquet(folder / "probe" / "jacobian.parquet", index=False)
    signal_rows(cfg, ("init", "final")).to_parquet(folder / "probe" / "signal.parquet", index=False)
    within = spot_rows(jac)
    pd.concat([within.assign(source_layer=within["layer"]), cross_spot_rows(run.cross)],
              ignore_index=True).to_parquet(folder / "probe" / "spot_checks.parquet", index=False)
    spectra.to_parquet(folder / "probe" / "spectra.parquet", index=False)
    gradient_rows(cfg).to_parquet(folder / "probe" / "gradients.parquet", index=False)
    weight_gradient_rows(cfg).to_parquet(folder / "probe" / "weight_gradients.parquet", index=False)
    dynamics_rows(cfg, {**numbers, **run.overrides}, diverged_at).to_parquet(folder / "probe" / "dynamics.parquet",
                                                                             index=False)
    if cfg["layers"] > 1:
        run.cross.to_parquet(folder / "probe" / "jacobian_depth.parquet", index=False)
    if cfg["task"] == "text":
        series_rows(cfg).to_parquet(folder / "series.parquet", index=False)
        samples = [{"iter": i, "text": f"sample at {i}: the quick brown fox"[: 10 + i // 5]} for i in (0, 50, 99)]
        (folder / "samples.json").write_text(json.dumps(samples))
    # the sweep's row keeps no nested value: summary.json's layers and environment (the analysis reads the latter
    # from summary.json)
    row |= {k: v for k, v in summary.items() if k not in row and not isinstance(v, (dict, list))}
    return row


def make_run(spec: str, outcome: str = "ok", bias: float = 0.0, overrides: dict | None = None, **config) -> FakeRun:
    unknown = set(config) - set(BASE_CONFIG)
    assert not unknown, f"unknown config keys {unknown}"
    return FakeRun(spec, {**BASE_CONFIG, **config}, outcome, bias, overrides=overrides or {})


def standard_runs() -> list[FakeRun]:
    """Every known spec plus an unknown one; 32 runs (one diverged, one failed)."""
    runs = [make_run("weight_norms", activation=a, gamma_w=g) for a in ("tanh", "sigmoid") for g in (0.5, 1.0, 2.0)]
    runs += [make_run("activations", activation=a, gamma_w=1.5) for a in ("tanh", "sigmoid", "relu")]
    runs += [make_run("activations", activation="linear", init="identity", gamma_w=0.8)]
    runs += [make_run("depth", layers=L, seed=s) for L in (1, 2, 3) for s in (0, 1)]
    runs += [make_run("clipping", clip_mode=m, clip_threshold=c)
             for m in ("global", "elementwise") for c in (0.1, 10.0)]
    runs += [make_run("clipping", clip_mode="none", clip_threshold=1.0),
             make_run("clipping", outcome="diverged", clip_mode="none", clip_threshold=1.0, lr=5.0)]
    runs += [make_run("long_range", task=task, seq_len=T)
             for task in ("adding", "temporal_order") for T in (10, 40, 80)]
    runs += [make_run("text", task="text", seq_len=16, iters=100)]
    runs += [make_run("mystery", activation="relu", bias=-10.0),
             make_run("mystery", init="identity", activation="linear", gamma_w=1.0),
             make_run("mystery", outcome="failed", hidden=5)]
    return runs


def description(spec: str) -> str:
    """The fixture's experiments/<spec>.yaml description: one sentence naming the spec."""
    return f"The {spec} fixture sweep, described in one sentence."


def write_study(results_dir: Path, runs: list[FakeRun], described: bool = True) -> list[FakeRun]:
    """Write every run's folder and one results/<spec>.parquet per spec; fills run_id and config_hash. With
    `described`, each row has the spec's `description` as the sweep writes it; without, the column is absent
    (a results table from before the sweep wrote it)."""
    rows: dict[str, list[dict]] = {}
    for i, run in enumerate(runs):
        row = write_run(results_dir, run, i)
        rows.setdefault(run.spec, []).append(row | ({"description": description(run.spec)} if described else {}))
    for spec, spec_rows in rows.items():
        pd.DataFrame(spec_rows).to_parquet(results_dir / f"{spec}.parquet", index=False)
    return runs


def report_of(root: Path, runs: list[FakeRun]) -> Path:
    """`runs` written under root/results, then `rnngrad analyze` and `rnngrad report` into root/reports (returned),
    run from root without a tracking URI: the report stage links and logs to the cwd's MLflow store, never the
    developer's."""
    import pytest
    from typer.testing import CliRunner

    from pipeline import cli

    results, out = root / "results", root / "reports"
    write_study(results, runs)
    runner = CliRunner()
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        assert runner.invoke(cli.app, ["analyze", "--results-dir", str(results), "--out", str(out)]).exit_code == 0
        result = runner.invoke(cli.app, ["report", "--analysis-dir", str(out), "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


def plant_violation(results_dir: Path, run: FakeRun, when: str, layer: int, t: int, k: int, excess: float) -> float:
    """Raise one logged log_norm above its product bound by `excess` nats; returns the new value."""
    path = results_dir / run.spec / "runs" / run.config_hash / "probe" / "jacobian.parquet"
    jac = pd.read_parquet(path)
    at = (jac["when"] == when) & (jac["layer"] == layer) & (jac["t"] == t) & (jac["k"] == k)
    assert at.sum() == 1
    jac.loc[at, "log_norm"] = jac.loc[at, "log_bound_product"] + excess
    jac.to_parquet(path, index=False)
    return float(jac.loc[at, "log_norm"].iloc[0])


def run_folder(results_dir: Path, run: FakeRun) -> Path:
    return results_dir / run.spec / "runs" / run.config_hash
