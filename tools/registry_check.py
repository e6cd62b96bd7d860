"""`python -m tools.registry_check [ROOT]` (`make check`): do the compose files, registries, cards, configs and
MODELS.md agree? Prints `file:line: message` per disagreement and exits 1 if there is any; see tools/registry/."""

from __future__ import annotations

import argparse
from pathlib import Path

from tools.registry import run_all


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Check that the Dream wiring files agree with each other.")
    parser.add_argument("root", nargs="?", default=".", help="repository root (default: .)")
    problems = run_all(Path(parser.parse_args(argv).root))
    for problem in problems:
        print(problem)
    print(f"{len(problems)} disagreement(s)" if problems else "registry check: every file agrees")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
