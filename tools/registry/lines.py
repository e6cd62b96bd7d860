"""Where a problem is: `Problem` (file, line, message) and `locate`, the line of a YAML/JSON key path."""

from __future__ import annotations

import re
from dataclasses import dataclass

_INDENT = re.compile(r"\s*")


@dataclass(frozen=True)
class Problem:
    path: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}" if self.line else f"{self.path}: {self.message}"


def locate(text: str, *needles: str) -> int:
    """1-based line of the last of `needles`, each looked up in the block of the one before (the lines below it
    indented deeper). A needle is a YAML/JSON key (`name:`, `"name":`, `- NAME=value`) or a whole item or scalar
    line (`- 8130:8130`, `mongo:27017,`). Where one is not found: the line of its parent, else 1."""
    lines = text.splitlines()
    found, lo, hi = 1, 0, len(lines)
    for needle in needles:
        key = re.compile(rf"""\s*(?:-\s+)?["']?{re.escape(needle)}(?:["',=]|:\s|:$|$)""")
        i = next((i for i in range(lo, hi) if key.match(lines[i])), None)
        if i is None:
            break
        found = lo = i + 1
        depth = _INDENT.match(lines[i]).end()
        hi = next((j for j in range(lo, hi) if lines[j].strip() and not lines[j].lstrip().startswith("#")
                   and _INDENT.match(lines[j]).end() <= depth), hi)
    return found
