"""One rule for how a path a person wrote names a training image, shared by every file that
names images: --truth, --corrections and --annotators.

A path is absolute, or relative to the data folder (the image folder, or the folder of a CSV
manifest), or else to the folder of the file it was written in; `~` is expanded and symbolic
links are followed on both sides, so a data folder reached through a link still matches.
"""

from __future__ import annotations

from pathlib import Path


class PathIndex:
    """The training row of each image file. paths: the training set's files (N,); root: the
    data root (an image folder, or a CSV manifest whose folder is the base), or None."""

    def __init__(self, paths, root: str | Path | None = None):
        base = None if root is None else Path(root).expanduser().resolve()
        self.base = base.parent if base is not None and base.suffix.lower() == ".csv" else base
        self.rows: dict[Path, int] = {}
        for i, p in enumerate(paths):
            self.rows.setdefault(self._full(p, None), i)

    def find(self, text: str, near: Path | None = None) -> int | None:
        """The row of the image `text` names (module docstring), near: the folder of the
        file it was written in. None when no training image has that path."""
        return next((self.rows[p] for p in self.candidates(text, near) if p in self.rows), None)

    def candidates(self, text: str, near: Path | None = None) -> list[Path]:
        """The files `text` may name, in the order find tries them: relative to the data
        folder, then to `near` (without a data folder, first to the working directory)."""
        return list(dict.fromkeys(self._full(text, f) for f in (self.base, near)))

    @staticmethod
    def _full(text, folder: Path | None) -> Path:
        p = Path(text).expanduser()
        return (p if p.is_absolute() or folder is None else folder / p).resolve()
