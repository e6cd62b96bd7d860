"""scripts/bench/peers.py's workload against a real transformers_lm (tiny model): streaming chat, tokens counted
from `usage`; and the bench scripts start (their imports follow the test helpers' layout)."""
import subprocess
import sys

import pytest

from scripts.bench import peers
from tests.helpers.processes import REPO_ROOT, tiny_lm_server

pytestmark = pytest.mark.processes  # every test here starts real processes


def test_the_streaming_chat_workload_counts_the_served_tokens(tmp_path):
    process, url = tiny_lm_server(tmp_path)
    try:
        figures = peers.measure(url, "tiny", [1, 2], 2, {}, new_tokens=8)  # the tiny server's MAX_NEW_TOKENS
    finally:
        process.stop()
    for level in (1, 2):
        assert figures[level]["errors"] == 0
        assert figures[level]["tokens_per_s"] > 0 and figures[level]["ttft_p50"] > 0
        assert figures[level]["p50"] >= figures[level]["ttft_p50"]


@pytest.mark.parametrize("script", ["scripts.bench.bench_respond", "scripts.bench.peers"])
def test_the_bench_scripts_start(script):
    result = subprocess.run([sys.executable, "-m", script, "--help"], cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
