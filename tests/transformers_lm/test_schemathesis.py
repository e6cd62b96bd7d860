"""The served /openapi.json states exactly what the service accepts and answers: schemathesis (from PyPI)
generates requests from it, valid and invalid, against real gunicorn on the tiny model, with every check but
response time (a shared 2-core VM); zero failures."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.processes import REPO_ROOT, tiny_lm_server

pytestmark = pytest.mark.processes  # a real server, and schemathesis' own CLI
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
# Small limits keep each generated request quick; the window leaves room for any generated prompt.
LIMITS = {"MAX_NEW_TOKENS": "8", "MAX_RETURN_SEQUENCES": "2", "MAX_CONTEXTS": "3", "MAX_QUEUE": "4096"}
WINDOW = 8192


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("schemathesis")
    process, url = tiny_lm_server(folder / "model", LIMITS, log_path=folder / "server.log", window=WINDOW)
    yield url, process
    process.stop()


def test_schemathesis_finds_no_failure(server, tmp_path):
    url, process = server
    result = subprocess.run(
        [str(SCHEMATHESIS), "run", f"{url}/openapi.json", "--checks", "all", "--max-examples", "100", "--seed", "11",
         "--no-color", "--suppress-health-check", "all", "--report", "junit", "--report-dir", str(tmp_path)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=900,
        env={**os.environ, "SCHEMATHESIS_HOOKS": "tests.transformers_lm.schemathesis_hooks",
             "PYTHONPATH": str(REPO_ROOT)})
    assert result.returncode == 0, result.stdout[-20000:] + result.stderr[-3000:]
    assert process.alive()
