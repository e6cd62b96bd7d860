"""scripts/load_respond.py runs for a few seconds against a real transformers_lm (tiny model) and prints its
figures; no claim about the figures themselves."""
import pytest
import re
import subprocess
import sys

from tests.helpers.processes import REPO_ROOT, tiny_lm_server

pytestmark = pytest.mark.processes  # every test here starts real processes


def test_load_script_prints_its_figures_and_exits_0(tmp_path):
    process, url = tiny_lm_server(tmp_path)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "scripts.load_respond", "--url", f"{url}/respond", "--clients", "3",
             "--duration", "3", "--max-new-tokens", "4"],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    finally:
        process.stop()
    assert result.returncode == 0, result.stdout + result.stderr
    output = result.stdout
    served = int(re.search(r"requests served: (\d+) \(", output).group(1))
    assert served > 0
    assert "errors: none" in output
    assert re.search(r"latency p50: [\d.]+ s, p95: [\d.]+ s", output)
    assert re.search(r"tokens/s: [\d.]+\n", output)
