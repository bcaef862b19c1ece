"""Code blocks of the Markdown documentation, and the HTML-comment markers before them.

A fenced block may be preceded (as the last non-blank line) by a marker comment:

- ``<!-- not-run: reason -->``: compiled, never executed (a fragment, or it needs a service);
- ``<!-- pytest -->``: a test module, run with pytest, all of its tests must pass;
- ``<!-- pytest: fails -->``: run appended to the page's previous ``pytest`` block; its own
  tests must fail, and the next ``text`` block's lines must appear in pytest's output;
- ``<!-- from: examples/app.py -->``: the block is copied from that file (which its own
  tests run), and must appear in it verbatim.

Blocks without a marker are executed as they are.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PYTHON_LANGUAGES = frozenset({"python", "py", "python3"})

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`]*)$")
_MARKER = re.compile(r"^\s*<!--\s*(?P<body>.*?)\s*-->\s*$")


@dataclass(frozen=True)
class Block:
    """One fenced code block."""

    path: Path
    line: int  # 1-based line of the opening fence
    language: str
    code: str
    marker: str | None  # the marker comment's text, e.g. "not-run: needs a server"

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    @property
    def kind(self) -> str:
        """``run``, ``not-run``, ``pytest``, ``pytest-fails`` or ``from``."""
        if self.marker is None:
            return "run"
        name, _, argument = self.marker.partition(":")
        name, argument = name.strip(), argument.strip()
        if name == "pytest":
            return "pytest-fails" if argument == "fails" else "pytest"
        if name in ("not-run", "from"):
            return name
        return "run"  # an unrelated comment

    @property
    def argument(self) -> str:
        return (self.marker or "").partition(":")[2].strip()


def blocks(path: Path) -> list[Block]:
    """Every fenced block of a Markdown file, dedented to its fence's indentation."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    index = 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        indent, fence = opening["indent"], opening["fence"]
        language = (opening["info"].split() or [""])[0].lower()
        start = index
        index += 1
        body: list[str] = []
        while index < len(lines):
            closing = lines[index].strip()
            if closing.startswith(fence[0] * len(fence)) and not closing.strip(fence[0]):
                break
            body.append(lines[index])
            index += 1
        index += 1
        marker = None
        previous = start - 1
        while previous >= 0 and not lines[previous].strip():
            previous -= 1
        if previous >= 0 and (match := _MARKER.match(lines[previous])):
            marker = match["body"]
        code = textwrap.dedent("\n".join(body)) if indent else "\n".join(body)
        found.append(Block(path, start + 1, language, code + "\n", marker))
    return found


def pages() -> list[Path]:
    """README.md and every page under docs/."""
    return [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]


def python_blocks() -> list[Block]:
    return [
        block for page in pages() for block in blocks(page) if block.language in PYTHON_LANGUAGES
    ]
