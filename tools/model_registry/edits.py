"""Reversible edits of existing files: each `add_*` has a `remove_*` that gives back the exact original text.

YAML files are edited with ruamel.yaml in round-trip mode (comments, order, quotes kept); whole entries are
inserted after the last LLM container's entry and deleted again. Line-based files get whole lines.
"""

from __future__ import annotations

import io
import json
import re

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from tools.registry.naming import is_llm_container, is_model_container


class EditError(ValueError):
    """The file does not have the shape the edit needs."""


def _yaml() -> YAML:
    y = YAML()  # round-trip
    y.preserve_quotes = True
    y.indent(mapping=2, sequence=4, offset=2)
    y.width = 4096
    return y


def _load(text: str):
    return _yaml().load(text)


def _dump(doc) -> str:
    out = io.StringIO()
    _yaml().dump(doc, out)
    return out.getvalue()


def _blank_separated(text: str) -> bool:
    """Entries of `services:` are separated by blank lines (override, proxy) or not (dev, cpu)."""
    return bool(re.search(r"\n\n  [\w.-]+:\n", text))


def _leaf(node):
    """(container, key) of the last scalar of an entry: where ruamel keeps the blank line that follows it."""
    while True:
        key = (list(node) or [None])[-1] if isinstance(node, CommentedMap) else len(node) - 1
        child = node[key]
        if isinstance(child, (CommentedMap, CommentedSeq)) and len(child):
            node = child
        else:
            return node, key


def add_service(text: str, entry: str) -> str:
    """Insert `entry` (YAML of one `name: {...}` mapping) into `services:` after the last LLM or engine container."""
    doc = _load(text)
    services = doc.get("services")
    if not isinstance(services, CommentedMap):
        raise EditError("no `services:` mapping")
    blank = _blank_separated(text)
    parsed = _load(entry + ("\n_next: 0\n" if blank else ""))  # a following key gives the entry its blank line
    name = next(iter(parsed))
    if name in services:
        raise EditError(f"{name} is already a service")
    keys = list(services)
    models = [i for i, key in enumerate(keys) if is_model_container(str(key))]
    pos = models[-1] + 1 if models else len(keys)
    services.insert(pos, name, parsed[name])
    if blank and pos == len(keys) and keys:  # new last entry: the blank line goes after the previous one
        prev_node, prev_key = _leaf(services[keys[-1]])
        new_node, new_key = _leaf(services[name])
        if prev_key in prev_node.ca.items:
            raise EditError(f"{keys[-1]} ends with a comment")
        blank = next(token for token in new_node.ca.items.pop(new_key) if token is not None)
        # ruamel keeps a comment after a sequence item in slot 0, after a mapping value in slot 2.
        seq = isinstance(prev_node, CommentedSeq)
        prev_node.ca.items[prev_key] = [blank, None] if seq else [None, None, blank, None]
    return _dump(doc)


def remove_service(text: str, name: str) -> str:
    doc = _load(text)
    services = doc.get("services") or {}
    if name not in services:
        raise EditError(f"{name} is no service")
    keys = list(services)
    was_last = keys[-1] == name
    del services[name]
    if was_last and _blank_separated(text) and len(keys) > 1:
        prev_node, prev_key = _leaf(services[keys[-2]])
        prev_node.ca.items.pop(prev_key, None)
    return _dump(doc)


# --- WAIT_HOSTS (a folded scalar: one `container:port,` line per host) ----------------------------------------

_WAIT = re.compile(r"^(\s*)WAIT_HOSTS: >-\n((?:\1  .*\n)+)", re.M)


def add_wait_host(text: str, host: str) -> str:
    m = _WAIT.search(text)
    if not m:
        raise EditError("no `WAIT_HOSTS: >-` block")
    indent = m.group(1) + "  "
    lines = m.group(2).splitlines(True)
    llms = [i for i, line in enumerate(lines) if is_llm_container(line.strip())]
    at = llms[-1] + 1 if llms else len(lines) - 1
    if at >= len(lines):  # the last host has no comma: keep it that way
        raise EditError("WAIT_HOSTS ends with an LLM container")
    lines.insert(at, f"{indent}{host},\n")
    return text[:m.start(2)] + "".join(lines) + text[m.end(2):]


def remove_wait_host(text: str, host: str) -> str:
    m = _WAIT.search(text)
    pattern = re.compile(rf"^[ \t]+{re.escape(host)},\n", re.M)
    found = pattern.search(text, m.start(2), m.end(2)) if m else None
    if not found:
        raise EditError(f"WAIT_HOSTS has no line `{host},`")
    return text[:found.start()] + text[found.end():]


# --- components.tsv ----------------------------------------------------------------------------------------------

def add_tsv_row(text: str, port: int, name: str) -> str:
    """Insert `<port>\\t<name>` in port order."""
    lines = text.splitlines(True)
    at = len(lines)
    for i, line in enumerate(lines):
        head = line.partition("\t")[0].strip()
        if head.isdigit() and int(head) > port:
            at = i
            break
    if at == len(lines) and lines and not lines[-1].endswith("\n"):
        raise EditError("components.tsv does not end with a newline")
    lines.insert(at, f"{port}\t{name}\n")
    return "".join(lines)


def remove_tsv_row(text: str, port: int, name: str) -> str:
    row = f"{port}\t{name}\n"
    lines = text.splitlines(True)
    if row not in lines:
        raise EditError(f"components.tsv has no row {row.strip()!r}")
    lines.remove(row)
    return "".join(lines)


# --- MODELS.md: one table row after the last row --------------------------------------------------------------

def add_models_md_row(text: str, row: str) -> str:
    lines = text.splitlines(True)
    rows = [i for i, line in enumerate(lines) if line.lstrip().startswith("|")]
    if len(rows) < 2:
        raise EditError("MODELS.md has no table")
    if not lines[rows[-1]].endswith("\n"):
        raise EditError("MODELS.md table's last row has no newline")
    lines.insert(rows[-1] + 1, row)
    return "".join(lines)


def remove_models_md_row(text: str, container: str) -> str:
    lines = text.splitlines(True)
    hits = [i for i, line in enumerate(lines)
            if line.lstrip().startswith("|") and container in [c.strip().strip("`") for c in line.split("|")]]
    if len(hits) != 1:
        raise EditError(f"MODELS.md has {len(hits)} rows for {container}")
    del lines[hits[0]]
    return "".join(lines)


# --- envvars_to_send.json (4-space JSON, as json.dumps writes it) -----------------------------------------------

def _dump_json(data) -> str:
    return json.dumps(data, indent=4, ensure_ascii=False) + "\n"


def add_envvars(text: str, url: str, names: list[str]) -> str:
    data = json.loads(text)
    if _dump_json(data) != text:
        raise EditError("envvars_to_send.json is not in json.dumps(indent=4) layout")
    if url in data:
        raise EditError(f"{url} is already in envvars_to_send.json")
    data[url] = list(names)
    return _dump_json(data)


def remove_envvars(text: str, url: str) -> str:
    data = json.loads(text)
    if url not in data:
        raise EditError(f"{url} is not in envvars_to_send.json")
    del data[url]
    return _dump_json(data)
