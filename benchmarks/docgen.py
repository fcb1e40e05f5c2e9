"""Generated blocks inside hand-written pages: a script owns the text between its two
markers (HTML comments, invisible on the rendered page) and rewrites only that."""

from __future__ import annotations

from pathlib import Path


def markers(name: str) -> tuple[str, str]:
    """The begin and end markers of the block called `name`."""
    return f"<!-- {name}: generated -->", f"<!-- end {name} -->"


def write_section(doc: Path, text: str, begin: str, end: str) -> None:
    """Replace the block between `begin` and `end` in `doc` with `text` (a SystemExit naming
    the markers when the page lacks them)."""
    page = doc.read_text()
    if begin not in page or end not in page:
        raise SystemExit(f"{doc} lacks the markers {begin} ... {end}")
    head, rest = page.split(begin, 1)
    doc.write_text(head + begin + "\n" + text.rstrip("\n") + "\n" + end + rest.split(end, 1)[1])
