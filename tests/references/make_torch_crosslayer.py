"""Write torch_crosslayer.npz: PyTorch autograd's Jacobians across layers and time of stacked vanilla RNNs, the
reference that tests/test_depth_torch.py holds `log_norm_matrix(model, xs, layer=, source_layer=)` to.

PyTorch is not a dependency of rnngrad; this script is run by hand, from the repository root in rnngrad's venv, when
the reference should change:

    pip install torch && python tests/references/make_torch_crosslayer.py

For each case (elman and pascanu form, tanh and sigmoid) it draws a 3-layer model with rnngrad's own initialiser
(orthogonal W_hh at gamma_W 1.3, so some pairs grow and some vanish; small random biases), runs the stack in torch
float64 from the equations of docs/math.md section 2 (torch.nn.RNN has no pascanu form and adds a second bias), and
for every node (l, k) of the (layer, time) grid takes the full Jacobian of h^L_t for every t >= k and every layer L
>= l with respect to h^l_k, made an independent variable, by torch.autograd.functional.jacobian. It records the
weights, the inputs, h0, and log ||dh^L_t/dh^l_k||_2 (torch.linalg.matrix_norm, ord 2) as logn[L, l, t, k]: defined
for k < t within a layer and for k <= t, t >= 1 across layers (no vertical edge leaves step 0); NaN elsewhere.
"""

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from pipeline.engine.init import init_model  # noqa: E402  (the weights are an rnngrad model's)

T, N, D, LAYERS, GAMMA_W = 12, 8, 3, 3, 1.3
CASES = [("elman", "tanh"), ("elman", "sigmoid"), ("pascanu", "tanh"), ("pascanu", "sigmoid")]
PHI = {"tanh": torch.tanh, "sigmoid": torch.sigmoid}


def states(params: dict, form: str, phi, xs: torch.Tensor, h0: torch.Tensor, node=None) -> list[list[torch.Tensor]]:
    """h[l][s] of every layer and step; `node` (l, k, z) makes h^l_k the variable z before anything reads it."""
    h = [[h0[l]] for l in range(LAYERS)]
    if node is not None and node[1] == 0:
        h[node[0]][0] = node[2]
    for s in range(1, T + 1):
        for l in range(LAYERS):
            W, U, b = (params[f"{k}_{l}"] for k in ("W_hh", "W_xh", "b_h"))
            below, prev = (xs[s - 1] if l == 0 else h[l - 1][s]), h[l][s - 1]
            new = phi(W @ prev + U @ below + b) if form == "elman" else W @ phi(prev) + U @ below + b
            h[l].append(node[2] if node is not None and (l, s) == node[:2] else new)
    return h


def log_norms(params: dict, form: str, phi, xs: torch.Tensor, h0: torch.Tensor) -> np.ndarray:
    """(L, L, T+1, T+1): [top, l, t, k] = log ||dh^top_t/dh^l_k||_2 where defined (module docstring), NaN elsewhere."""
    base = states(params, form, phi, xs, h0)
    out = np.full((LAYERS, LAYERS, T + 1, T + 1), np.nan)
    for l in range(LAYERS):
        for k in range(T + 1):
            def later(z, l=l, k=k):  # every state at or after step k, as a function of h^l_k
                h = states(params, form, phi, xs, h0, (l, k, z))
                return torch.stack([torch.stack(h[top][k:]) for top in range(LAYERS)])  # (L, T+1-k, N)
            J = torch.autograd.functional.jacobian(later, base[l][k].detach().clone())  # (L, T+1-k, N, N)
            norms = torch.log(torch.linalg.matrix_norm(J, ord=2)).numpy()  # (L, T+1-k)
            for top in range(l, LAYERS):
                for t in range(k, T + 1):
                    if (top == l and t > k) or (top > l and t >= 1):
                        out[top, l, t, k] = norms[top, t - k]
    return out


def main() -> None:
    torch.set_default_dtype(torch.float64)
    out = {"torch_version": np.array(torch.__version__), "cases": np.array([f"{f}/{a}" for f, a in CASES])}
    for i, (form, activation) in enumerate(CASES):
        rng = np.random.default_rng(100 + i)
        model, _ = init_model(rng, input_dim=D, output_dim=2, form=form, activation=activation, layers=LAYERS,
                              hidden=N, gamma_w=GAMMA_W)
        for l in range(LAYERS):
            model.params[f"b_h_{l}"] = 0.1 * rng.standard_normal(N)
        xs, h0 = rng.standard_normal((T, D)), 0.5 * rng.standard_normal((LAYERS, N))
        params = {k: torch.from_numpy(v) for k, v in model.params.items()}
        logn = log_norms(params, form, PHI[activation], torch.from_numpy(xs), torch.from_numpy(h0))
        out |= {f"{i}_{k}": v for k, v in model.params.items()}
        out |= {f"{i}_xs": xs, f"{i}_h0": h0, f"{i}_logn": logn}
        finite = logn[np.isfinite(logn)]
        print(f"{form}/{activation}: {finite.size} pairs, log norms from {finite.min():.3f} to {finite.max():.3f}")
    np.savez_compressed(Path(__file__).with_name("torch_crosslayer.npz"), **out)


if __name__ == "__main__":
    main()
