"""Start-up of transformers_lm: /health says 503 while loading, a GGUF is converted (and packed in int4) once and
then cached; a warm start runs the stored weights alone and answers as the cold one did."""
import pytest
import time

import requests

from tests.helpers.processes import LM_CONFIG, free_port, gunicorn

pytestmark = pytest.mark.processes  # every test here starts real processes


def answers(url: str) -> list:
    """A greedy answer, a beam search's (the transformers model) and an embedding."""
    def post(path, body):
        response = requests.post(f"{url}{path}", json=body, timeout=120)
        assert response.status_code == 200, response.text
        return response.json()

    body = {"dialog_contexts": [["What is the capital of France?"]], "prompts": ["You are a helpful assistant."]}
    return [post("/respond", dict(body, configs=[{"do_sample": False, "num_return_sequences": 1}])),
            post("/respond", dict(body, configs=[{"do_sample": False, "num_beams": 2, "num_return_sequences": 1,
                                                  "max_new_tokens": 12}])),
            post("/v1/embeddings", {"input": "The cat sat on the mat."})["data"][0]["embedding"]]


def start_and_watch_health(cache_dir, timeout=240):
    """Start a server on a cache dir; return (statuses seen in order, seconds to 200, log, its answers)."""
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
                seconds = time.monotonic() - started
                given = answers(f"http://127.0.0.1:{port}")
                return statuses, seconds, process.log(), given
            time.sleep(0.1)
        raise AssertionError(f"not ready in {timeout} s:\n{process.log()[-3000:]}")
    finally:
        process.stop()


def test_cold_start_converts_once_then_warm_start_loads_the_cache(tmp_path):
    statuses, cold_seconds, log, cold_answers = start_and_watch_health(tmp_path)
    assert statuses == [503, 200], statuses
    assert "Converting" in log
    assert [path.name for path in tmp_path.iterdir() if path.is_dir() and not path.name.startswith(".")]

    assert "Stored the int4 weights" in log  # QUANTIZE=auto: int4 on a CPU for the Q4_1 file (model/packed.py)

    statuses, warm_seconds, log, warm_answers = start_and_watch_health(tmp_path)
    assert statuses[-1] == 200
    assert "Converting" not in log and "quantize int4, as stored in" in log
    assert "run from its weights alone" in log  # LlamaPass.stored: no transformers model until the beams
    assert "Loaded the transformers model of" in log
    assert warm_answers == cold_answers and "Paris" in warm_answers[0][0][0]
    assert warm_seconds < cold_seconds
    print(f"cold start {cold_seconds:.1f} s, warm start {warm_seconds:.1f} s")
