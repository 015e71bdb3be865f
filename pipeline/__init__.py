"""rnngrad: measure, bound and explain vanishing and exploding gradients in vanilla RNNs."""

__version__ = "0.1.0"
