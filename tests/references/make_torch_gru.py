"""Write torch_gru.npz: PyTorch's nn.GRU on one batch, the reference that tests/test_gru.py holds rnngrad's GRU to.

PyTorch is not a dependency of rnngrad; this script is run by hand when the reference should change:

    pip install torch numpy && python tests/references/make_torch_gru.py

It builds a 2-layer nn.GRU (float64, PyTorch's own initialisation, both biases kept and trained: rnngrad keeps them
apart too, since the reset gate multiplies W_hn h + b_hn), a linear readout of the top layer, and a temporal-order-like
batch scored at its last step (cross-entropy, mean over the batch). It records the weights, the inputs, the outputs,
the final states, the loss, every gradient, and the weights after four Adam steps (lr 0.01) with the gradient
clipped to global norm 0.5. The clip scales by threshold / norm exactly: torch.nn.utils.clip_grad_norm_ adds 1e-6 to
the norm, which would move the weights by about 1e-8 relative.
"""

from pathlib import Path

import numpy as np
import torch

T, B, D, N, LAYERS, CLASSES = 12, 3, 5, 4, 2, 4
CLIP, LR, STEPS = 0.5, 0.01, 4


def main() -> None:
    torch.manual_seed(0)
    torch.set_default_dtype(torch.float64)
    gru, readout = torch.nn.GRU(D, N, num_layers=LAYERS), torch.nn.Linear(N, CLASSES)
    gen = torch.Generator().manual_seed(1)
    xs = torch.randn(T, B, D, generator=gen)
    h0 = torch.zeros(LAYERS, B, N)
    targets = torch.randint(0, CLASSES, (B,), generator=gen)
    out = {"xs": xs.numpy(), "targets": targets.numpy()}
    out |= {f"torch_{k}": v.detach().numpy().copy() for k, v in gru.state_dict().items()}
    out |= {"torch_W_hy": readout.weight.detach().numpy().copy(), "torch_b_y": readout.bias.detach().numpy().copy()}

    hs, h_n = gru(xs, h0)
    y_last = readout(hs[-1])
    loss = torch.nn.functional.cross_entropy(y_last, targets)
    loss.backward()
    out |= {"outputs": hs.detach().numpy(), "y_last": y_last.detach().numpy(), "h_n": h_n.detach().numpy(),
            "loss": np.array(loss.item())}
    out |= {f"grad_{k}": p.grad.numpy().copy() for k, p in gru.named_parameters()}
    out |= {"grad_W_hy": readout.weight.grad.numpy().copy(), "grad_b_y": readout.bias.grad.numpy().copy()}

    params = list(gru.parameters()) + list(readout.parameters())
    opt = torch.optim.Adam(params, lr=LR)
    for _ in range(STEPS):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(readout(gru(xs, h0)[0][-1]), targets).backward()
        with torch.no_grad():
            norm = torch.sqrt(sum((p.grad ** 2).sum() for p in params))
            if norm > CLIP:
                for p in params:
                    p.grad.mul_(CLIP / norm)
        opt.step()
    out |= {f"trained_{k}": v.detach().numpy().copy() for k, v in gru.state_dict().items()}
    out |= {"trained_W_hy": readout.weight.detach().numpy().copy(), "trained_b_y": readout.bias.detach().numpy().copy()}
    out |= {"torch_version": np.array(torch.__version__), "clip": np.array(CLIP), "lr": np.array(LR),
            "steps": np.array(STEPS)}
    np.savez_compressed(Path(__file__).with_name("torch_gru.npz"), **out)


if __name__ == "__main__":
    main()
