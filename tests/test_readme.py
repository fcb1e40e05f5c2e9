"""Every ```python block of README.md and docs/api.md runs as written.

The blocks of one file run in order in one namespace (a later block may use an earlier
one's names), in a fresh working folder so the runs they write land there.
"""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = ["README.md", "docs/api.md"]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)

pytestmark = pytest.mark.usefixtures("one_thread")


def python_blocks(text: str) -> list[str]:
    return BLOCK.findall(text)


def test_blocks_are_found():
    text = "intro\n```python\na = 1\n```\n```bash\nls\n```\n```python\nb = a + 1\n```\n"
    assert python_blocks(text) == ["a = 1\n", "b = a + 1\n"]


@pytest.mark.parametrize("page", PAGES)
def test_python_blocks_run(page, tmp_path, monkeypatch):
    blocks = python_blocks((ROOT / page).read_text())
    if page == "docs/api.md":
        assert len(blocks) >= 3  # the page is about the API: its examples must be there
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__readme__"}
    for i, block in enumerate(blocks):
        code = compile(block, f"{page}, python block {i + 1}", "exec")
        exec(code, namespace)  # noqa: S102 - the project's own documentation
