"""Start-up of transformers_lm: /health says 503 while loading, a GGUF is converted (and packed in int4) once and
then cached."""
import pytest
import time

import requests

from tests.helpers.processes import LM_CONFIG, free_port, gunicorn

pytestmark = pytest.mark.processes  # every test here starts real processes


def start_and_watch_health(cache_dir, timeout=240):
    """Start a server on a fresh cache dir; return (statuses seen in order, seconds to 200, log)."""
    port = free_port()
    process = gunicorn(LM_CONFIG, port, {"PRETRAINED_MODEL_NAME_OR_PATH": "", "MODEL_CACHE_DIR": str(cache_dir)})
    started, statuses = time.monotonic(), []
    try:
        while time.monotonic() - started < timeout:
            assert process.alive(), process.log()[-3000:]
            try:
                status = requests.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code
            except (requests.ConnectionError, requests.Timeout):  # the worker is still importing torch
                status = None
            if status and (not statuses or statuses[-1] != status):
                statuses.append(status)
            if status == 200:
                return statuses, time.monotonic() - started, process.log()
            time.sleep(0.1)
        raise AssertionError(f"not ready in {timeout} s:\n{process.log()[-3000:]}")
    finally:
        process.stop()


def test_cold_start_converts_once_then_warm_start_loads_the_cache(tmp_path):
    statuses, cold_seconds, log = start_and_watch_health(tmp_path)
    assert statuses == [503, 200], statuses
    assert "Converting" in log
    assert [path.name for path in tmp_path.iterdir() if path.is_dir() and not path.name.startswith(".")]

    assert "Stored the int4 weights" in log  # QUANTIZE=auto: int4 on a CPU for the Q4_1 file (model/packed.py)

    statuses, warm_seconds, log = start_and_watch_health(tmp_path)
    assert statuses[-1] == 200
    assert "Converting" not in log and "quantize int4, as stored in" in log
    assert warm_seconds < cold_seconds
    print(f"cold start {cold_seconds:.1f} s, warm start {warm_seconds:.1f} s")
