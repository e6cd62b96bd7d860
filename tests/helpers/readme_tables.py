"""The environment tables of the READMEs, and what they should say: the declared settings (common/settings.py)."""
import re
from pathlib import Path

from common.settings import Declared, declarations


def documented(cls) -> list:
    """[(variable, aliases, default)] of `cls`'s settings, the default as a README table writes it: `-` for
    none, flags as 0/1, a factory by its docstring. Tests compare it with `readme_table`."""
    return [(decl.env, decl.aliases, _documented_default(decl)) for decl in declarations(cls).values()]


def readme_table(path, heading: str = "## Environment") -> list:
    """[(variable, aliases, default)] of the table under `heading` in the markdown file `path`, whose rows
    read "| `VAR` (alias `OLD`) | `default` | meaning |"; backticks are dropped from defaults."""
    section = Path(path).read_text(encoding="utf-8").split(f"{heading}\n", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = line.split("|")
        names = re.findall(r"`(\w+)`", cells[1]) if line.startswith("|") else []
        if names:  # not the header, the separator or text around the table
            rows.append((names[0], tuple(names[1:]), cells[2].replace("`", "").strip()))
    return rows


def _documented_default(decl: Declared) -> str:
    default = decl.default
    if decl.shown is not None:
        return decl.shown
    if callable(default):
        summary = default.__doc__.strip().splitlines()[0].rstrip(".")
        return summary[:1].lower() + summary[1:]
    if default is None or default == "" or default == ():
        return "-"
    if isinstance(default, bool):
        return str(int(default))
    if isinstance(default, float) and default.is_integer():
        return str(int(default))
    return str(default)
