"""A scratch copy of the repository's files, for tests that edit them (registry checks, add-model)."""
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Virtualenvs, caches, history, build outputs (llama.cpp's sources) and weights: large, and no check reads them.
IGNORE = shutil.ignore_patterns(".venv", ".venv-*", ".git", "__pycache__", ".pytest_cache", ".hypothesis",
                                "bench-results", "build", "*.gguf")


def copy_repo(destination) -> Path:
    shutil.copytree(ROOT, destination, ignore=IGNORE)
    return Path(destination)


def snapshot(root: Path) -> dict:
    """{relative path: bytes} of every file under `root`, to compare a copy before and after an edit."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(Path(root).rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts and ".pytest_cache" not in p.parts}


def changed(before: dict, after: dict) -> list[str]:
    return sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
