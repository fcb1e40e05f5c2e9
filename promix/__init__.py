"""promix: ProMix (Xiao et al., IJCAI 2023) for training on noisy labels and finding them."""

__version__ = "0.1.0"
