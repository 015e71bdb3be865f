"""Write torch_lstm.npz: PyTorch's nn.LSTM on one batch, the reference that tests/test_lstm.py holds rnngrad's LSTM to.

PyTorch is not a dependency of rnngrad; this script is run by hand when the reference should change:

    pip install torch numpy && python tests/references/make_torch_lstm.py

It builds a 2-layer nn.LSTM (float64, PyTorch's own initialisation, both biases kept), a linear readout of the top
layer, and a temporal-order-like batch scored at its last step (cross-entropy, mean over the batch). It records the
weights, the inputs, the outputs and final states, the loss, every gradient, and the weights after three Adam steps
(lr 0.01) with the gradient clipped to global norm 0.5. The clip scales by threshold / norm exactly:
torch.nn.utils.clip_grad_norm_ adds 1e-6 to the norm, which would move the weights by about 1e-8 relative.
During the Adam steps bias_hh is frozen at zero, so that the one trained bias equals rnngrad's b = b_ih + b_hh.
"""

from pathlib import Path

import numpy as np
import torch

T, B, D, N, LAYERS, CLASSES = 12, 3, 5, 4, 2, 4
CLIP, LR, STEPS = 0.5, 0.01, 3


def main() -> None:
    torch.manual_seed(0)
    torch.set_default_dtype(torch.float64)
    lstm, readout = torch.nn.LSTM(D, N, num_layers=LAYERS), torch.nn.Linear(N, CLASSES)
    with torch.no_grad():
        for l in range(LAYERS):  # a forget bias like rnngrad's default, so the gates are not all alike
            getattr(lstm, f"bias_ih_l{l}")[N:2 * N] += 1.0
    gen = torch.Generator().manual_seed(1)
    xs = torch.randn(T, B, D, generator=gen)
    targets = torch.randint(0, CLASSES, (B,), generator=gen)
    out = {"xs": xs.numpy(), "targets": targets.numpy()}
    out |= {f"torch_{k}": v.detach().numpy().copy() for k, v in lstm.state_dict().items()}
    out |= {"torch_W_hy": readout.weight.detach().numpy().copy(), "torch_b_y": readout.bias.detach().numpy().copy()}

    hs, (h_n, c_n) = lstm(xs)
    loss = torch.nn.functional.cross_entropy(readout(hs[-1]), targets)
    loss.backward()
    out |= {"y_last": readout(hs[-1]).detach().numpy(), "h_n": h_n.detach().numpy(), "c_n": c_n.detach().numpy(),
            "loss": np.array(loss.item())}
    out |= {f"grad_{k}": p.grad.numpy().copy() for k, p in lstm.named_parameters()}
    out |= {"grad_W_hy": readout.weight.grad.numpy().copy(), "grad_b_y": readout.bias.grad.numpy().copy()}

    with torch.no_grad():  # the training reference starts from one bias per layer: b_ih + b_hh, b_hh = 0
        for l in range(LAYERS):
            getattr(lstm, f"bias_ih_l{l}").add_(getattr(lstm, f"bias_hh_l{l}"))
            getattr(lstm, f"bias_hh_l{l}").zero_()
    params = [p for name, p in lstm.named_parameters() if not name.startswith("bias_hh")] + list(readout.parameters())
    for name, p in lstm.named_parameters():
        p.requires_grad_(not name.startswith("bias_hh"))
    opt = torch.optim.Adam(params, lr=LR)
    for _ in range(STEPS):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(readout(lstm(xs)[0][-1]), targets).backward()
        with torch.no_grad():
            norm = torch.sqrt(sum((p.grad ** 2).sum() for p in params))
            if norm > CLIP:
                for p in params:
                    p.grad.mul_(CLIP / norm)
        opt.step()
    out |= {f"trained_{k}": v.detach().numpy().copy() for k, v in lstm.state_dict().items()}
    out |= {"trained_W_hy": readout.weight.detach().numpy().copy(), "trained_b_y": readout.bias.detach().numpy().copy()}
    out |= {"torch_version": np.array(torch.__version__), "clip": np.array(CLIP), "lr": np.array(LR),
            "steps": np.array(STEPS)}
    np.savez_compressed(Path(__file__).with_name("torch_lstm.npz"), **out)


if __name__ == "__main__":
    main()
