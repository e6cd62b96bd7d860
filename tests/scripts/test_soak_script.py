"""scripts/soak.py for a few seconds: against a real transformers_lm (tiny model) at 4x its capacity it prints its
figures and exits 0; against a service that fails it names the problem and exits 1."""
import re
import subprocess
import sys

import pytest

from scripts.soak import problems
from tests.helpers.http_doubles import RecordingServer
from tests.helpers.processes import REPO_ROOT, tiny_lm_server

pytestmark = pytest.mark.processes  # every test here starts real processes


def soak(base_url: str, *options) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "scripts.soak", "--url", base_url, "--duration", "3", "--warmup", "1",
                           "--max-new-tokens", "4", *options], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=120)


def test_at_four_times_capacity_it_prints_its_figures_and_exits_0(tmp_path):
    process, url = tiny_lm_server(tmp_path, {"MAX_BATCH_SIZE": "2", "MAX_QUEUE": "2"})
    try:
        result = soak(url, "--ignore-retry-after", "0.25")
    finally:
        process.stop()
    output = result.stdout
    assert result.returncode == 0, output + result.stderr
    assert "16 clients (4 x capacity 4; 4 ignore Retry-After)" in output  # the capacity read from /metrics
    statuses = dict(re.findall(r"(\d{3}): (\d+)", output.split("statuses: ")[1].splitlines()[0]))
    assert set(statuses) == {"200", "429"}, output
    assert re.search(r"served latency p50 [\d.]+ s, p95 [\d.]+ s, p99 [\d.]+ s", output)
    assert re.search(r"health: \d+ probes, p50 [\d.]+ ms, p99 [\d.]+ ms", output)
    assert re.search(r"tokens/s: [\d.]+\n", output)
    assert re.search(r"worker RSS: start \d+ MB, after warm-up \d+ MB, end \d+ MB", output)
    assert output.rstrip().endswith("problems: none")


def test_5xx_answers_fail_the_soak():
    with RecordingServer(status=500) as failing:  # it answers POST /respond 500, and GET /health 501
        result = soak(failing.url.rsplit("/", 1)[0], "--capacity", "2")
    assert result.returncode == 1
    assert re.search(r"problems: 5xx: \d+, failed probes: \d+", result.stdout), result.stdout


def test_what_fails_the_soak():
    served, refused, probe = (200, 1.0), (429, 0.01), (200, 0.005)
    assert problems([served, refused], [probe], still_in_flight=0) == {}
    assert problems([served, ("ReadTimeout", 600.0), ("ConnectionError", 0.1), (503, 0.1)], [probe, (503, 0.01)],
                    still_in_flight=2) == {"5xx": 1, "dropped connections": 1, "lost accepted requests": 3,
                                           "failed probes": 1}
