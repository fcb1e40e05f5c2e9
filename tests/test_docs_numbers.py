"""Every measured number the README and the reference pages quote comes from a results file,
and no link points outside the repository.

A *measured number* is one written with a unit (%, x, ×, s, ms, min, h, GB, MB, img/s) or with
decimals, in prose or tables; code (fenced blocks and `inline code`), link targets, version
strings (2.13.0) and unitless constants after an operator (ρ = 0.7, mean + 0.5) are not read.
Each number must appear, after rounding to the digits it is written with, in a results file
that the same section of the page names (`benchmarks/results/NAME`); a section naming none is
checked against every file the page names. So a figure can neither be made up nor drift from
the file it cites.

Run `python tests/test_docs_numbers.py [PAGE...]` to list each number and where it was found.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import math
import re
import sys
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
# Pages whose measured numbers are checked. The generated pages (benchmarks.md, accuracy.md,
# speed.md) are written from the results files by their scripts.
CHECKED_PAGES = ["README.md", "docs/algorithm.md", "docs/data.md", "docs/baselines.md",
                 "docs/augment.md", "docs/resume.md", "docs/distributed.md",
                 "docs/label-issues.md", "docs/backbones.md"]

# The scales under which a unit's number may be stored: 97.2% as 0.972 or 97.2; 19.3 min as
# 1158 s; 3.5 GB as bytes, GB or GiB.
UNIT_SCALES = {
    "%": (1, 100), "": (1, 100, 0.01), "x": (1,), "×": (1,), "img/s": (1,),
    "s": (1,), "ms": (1, 1000), "min": (1, 1 / 60), "h": (1, 1 / 3600),
    "GB": (1, 1e-9, 2**-30, 1e-3), "MB": (1, 1e-6, 2**-20, 1000), "GiB": (1, 2**-30),
}
NUMBER = re.compile(
    r"(?<![\w./])(\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?)"  # 1,438 | 97.2 | 60
    r"(?:\s?(img/s|GiB|GB|MB|ms|min|%|x|×|s|h)(?![\w]))?")
SETTING = re.compile(r"[=+*/×<>≤≥]\s?$")  # what precedes a constant, not a figure
VERSION = re.compile(r"\d+\.\d+\.\d+")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"\]\(([^)\s]+)\)")
HTML_LINK = re.compile(r"""(?:href|src)=["']([^"']+)["']""")
CITED = re.compile(r"(?:benchmarks/)?results/([\w.\-]+\.(?:jsonl|json|txt))")
HEADING = re.compile(r"^#{1,6} ", re.M)


def prose(text: str) -> str:
    """The page without code, link targets and version strings."""
    text = FENCE.sub("", text)
    text = INLINE_CODE.sub("", text)
    text = LINK.sub("]()", text)
    return VERSION.sub("", text)


def quoted_numbers(text: str) -> list[tuple[str, float, int, str]]:
    """(as written, value, decimals, unit) of every measured number in the prose of text."""
    found = []
    text = prose(text)
    for m in NUMBER.finditer(text):
        written, unit = m.group(1), m.group(2) or ""
        if not unit and SETTING.search(text[max(0, m.start() - 3):m.start()]):
            continue  # a setting or a formula's constant: ρ = 0.7, mean + 0.5
        decimals = len(written.split(".")[1]) if "." in written else 0
        if not unit and not decimals:
            continue  # plain integers: counts, epochs, years, section numbers
        found.append((m.group(0), float(written.replace(",", "")), decimals, unit))
    return found


def sections(text: str) -> list[str]:
    """The page split at its headings (each part starts with its heading line)."""
    starts = [m.start() for m in HEADING.finditer(text)]
    bounds = [0, *starts, len(text)]
    return [text[a:b] for a, b in zip(bounds, bounds[1:], strict=False) if text[a:b].strip()]


@cache
def file_numbers(name: str) -> tuple[float, ...]:
    """Every number in a results file (JSON values and numbers inside its strings)."""
    text = (RESULTS / name).read_text()
    return tuple(float(x) for x in re.findall(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?", text))


def matches(value: float, decimals: int, unit: str, stored: float) -> bool:
    tolerance = 0.5 * 10**-decimals + 1e-9
    return any(math.isclose(abs(stored) * scale, value, abs_tol=tolerance)
               or abs(abs(stored) * scale - value) <= tolerance
               for scale in UNIT_SCALES[unit])


def untraced(page: str) -> list[str]:
    """The numbers of a page that no results file it cites holds, as 'number (section)'."""
    text = (ROOT / page).read_text()
    everywhere = sorted(set(CITED.findall(text)))
    missing = []
    for part in sections(text):
        cited = sorted(set(CITED.findall(part))) or everywhere
        cited = [name for name in cited if (RESULTS / name).is_file()]
        title = part.splitlines()[0][:60]
        for written, value, decimals, unit in quoted_numbers(part):
            if not any(matches(value, decimals, unit, x) for f in cited for x in file_numbers(f)):
                missing.append(f"{written!r} ({title}; files: {', '.join(cited) or 'none'})")
    return missing


@pytest.mark.parametrize("page", CHECKED_PAGES)
def test_every_quoted_number_is_in_a_cited_results_file(page):
    missing = untraced(page)
    assert not missing, f"{page}: numbers without a results file behind them:\n" + "\n".join(
        missing)


def test_a_made_up_number_is_caught(tmp_path, monkeypatch):
    """The check itself can fail: a figure that no results file holds is reported."""
    page = tmp_path / "page.md"
    demo = next(RESULTS.glob("demo-*.json"))
    record = json.loads(demo.read_text())
    real = f"{100 * record['methods'][0]['test_accuracy']:.1f}%"
    page.write_text(f"# Demo\n\nFrom `benchmarks/results/{demo.name}`: ProMix {real}, "
                    "cross-entropy 12.3%, 4.56x faster.\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    missing = untraced("page.md")
    assert [m.split()[0] for m in missing] == ["'12.3%'", "'4.56x'"]


def test_number_parsing():
    text = ("ProMix 97.2% (best 97.5 %), 1.26x and 2.0× faster, 79 s, 19.3 min, 3.5 GB, "
            "1,438 images, 60 epochs, torch 2.13.0, `--tau=0.95`, [link](a/1.5.md)\n"
            "```\npromix train --epochs=2.5\n```\n")
    assert [(w, v, d, u) for w, v, d, u in quoted_numbers(text)] == [
        ("97.2%", 97.2, 1, "%"), ("97.5 %", 97.5, 1, "%"), ("1.26x", 1.26, 2, "x"),
        ("2.0×", 2.0, 1, "×"), ("79 s", 79.0, 0, "s"), ("19.3 min", 19.3, 1, "min"),
        ("3.5 GB", 3.5, 1, "GB")]
    assert matches(97.2, 1, "%", 0.97214) and not matches(97.2, 1, "%", 0.9726)
    assert matches(19.3, 1, "min", 1158.0) and matches(3.5, 1, "GB", 3.5e9)


@pytest.mark.parametrize("script, page", [("speed_report.py", "speed.md"),
                                          ("imbalance_report.py", "imbalance.md")])
def test_generated_pages_match_the_results(script, page):
    """A page that shows measurements is what its script writes from the results files now."""
    spec = importlib.util.spec_from_file_location(script[:-3], ROOT / "benchmarks" / script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert (ROOT / "docs" / page).read_text() == module.render(), (
        f"docs/{page} is stale: run python benchmarks/{script}")


def test_algorithm_page_names_functions_that_exist():
    """docs/algorithm.md puts each equation beside `promix.module.function`: each must resolve,
    so a rename in the code cannot leave the page pointing at nothing."""
    text = (ROOT / "docs" / "algorithm.md").read_text()
    names = sorted(set(re.findall(r"`(promix(?:\.\w+)+)`", text)))
    assert len(names) > 20
    missing = []
    for name in names:
        parts = name.split(".")
        for split in range(len(parts), 0, -1):  # the longest importable module prefix
            try:
                obj = importlib.import_module(".".join(parts[:split]))
                break
            except ImportError:
                continue
        try:
            for attr in parts[split:]:
                obj = getattr(obj, attr)
        except AttributeError:
            missing.append(name)
    assert not missing, f"docs/algorithm.md names what the code no longer has: {missing}"


# ------------------------------------------------------------------ links

def link_targets(text: str) -> list[str]:
    text = FENCE.sub("", text)
    return LINK.findall(text) + HTML_LINK.findall(text)


DOC_PAGES = ["README.md", *sorted(p.relative_to(ROOT).as_posix()
                                  for p in (ROOT / "docs").glob("*.md"))]


def anchors(page: Path) -> set[str]:
    """GitHub's anchors of a page's headings: lower case, punctuation dropped, spaces to -."""
    text = FENCE.sub("", page.read_text())
    titles = re.findall(r"^#{1,6} (.+)$", text, re.M)
    return {re.sub(r"[^\w\- ]", "", t.strip().lower()).replace(" ", "-") for t in titles}


@pytest.mark.parametrize("page", DOC_PAGES)
def test_links_stay_inside_the_repository(page):
    """A clone has no ../shared (SPEC.md, the data): a link there is dead for every reader.
    Every relative link must name a file of the repository, and its #anchor a heading there."""
    bad = []
    for target in link_targets((ROOT / page).read_text()):
        if re.match(r"[a-z]+:", target):
            continue  # a URL
        file, _, anchor = target.partition("#")
        path = ((ROOT / page).parent / file).resolve()
        if "SPEC.md" in target or not path.is_relative_to(ROOT) or not path.exists():
            bad.append(target)
        elif anchor and path.suffix == ".md" and anchor not in anchors(path):
            bad.append(target)
    assert not bad, f"{page}: links outside the repository or to missing files: {bad}"


if __name__ == "__main__":
    for name in sys.argv[1:] or CHECKED_PAGES:
        print(f"{name}: {len(quoted_numbers((ROOT / name).read_text()))} numbers; "
              f"untraced: {untraced(name) or 'none'}")
