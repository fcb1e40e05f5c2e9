"""promix: ProMix (Xiao et al., IJCAI 2023) for training on noisy labels and finding them."""

__version__ = "0.1.0"


def __getattr__(name):
    """`promix.find_label_issues` without importing NumPy code at `import promix`."""
    if name == "find_label_issues":
        from .issues import find_label_issues

        return find_label_issues
    raise AttributeError(f"module 'promix' has no attribute {name!r}")
