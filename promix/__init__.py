"""promix: ProMix (Xiao et al., IJCAI 2023) for training on noisy labels and finding them."""

__version__ = "0.1.0"


# The public names, imported on first use: `import promix` itself loads no torch or NumPy.
_PUBLIC = {"train": "api", "Run": "results", "find_label_issues": "issues"}
__all__ = ["Run", "find_label_issues", "train"]


def __getattr__(name):
    """`promix.train`, `promix.Run`, `promix.find_label_issues`, imported lazily."""
    if name in _PUBLIC:
        import importlib

        return getattr(importlib.import_module(f".{_PUBLIC[name]}", __name__), name)
    raise AttributeError(f"module 'promix' has no attribute {name!r}")
