"""A scratch copy of the repository's files, for tests that edit them (registry checks, add-model)."""
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Virtualenvs, caches, history and weights: large, and no check reads them.
IGNORE = shutil.ignore_patterns(".venv", ".venv-*", ".git", "__pycache__", ".pytest_cache", ".hypothesis",
                                "bench-results", "*.gguf")


def copy_repo(destination) -> Path:
    shutil.copytree(ROOT, destination, ignore=IGNORE)
    return Path(destination)
