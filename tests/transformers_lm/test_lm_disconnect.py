"""A client that goes away stops costing generation: its queued samples are dropped and its running ones
leave the batch (tiny model under real gunicorn)."""
import time

import pytest
import requests

from tests.helpers.processes import tiny_lm_server

pytestmark = pytest.mark.processes  # every test here starts real processes

LONG = {"do_sample": False, "max_new_tokens": 400, "min_new_tokens": 400, "num_return_sequences": 1}


@pytest.fixture
def server(tmp_path):
    # Two rows at a time: a 64-context request keeps most of its samples queued for many seconds.
    process, url = tiny_lm_server(tmp_path, {"MAX_NEW_TOKENS": "400", "MAX_BATCH_SIZE": "2"})
    yield url
    process.stop()


def batching(url) -> dict:
    return requests.get(f"{url}/health", timeout=10).json()["batching"]


def settled(url, timeout=20) -> dict:
    """Engine counters once no step has run for a second."""
    end = time.monotonic() + timeout
    before = batching(url)
    while time.monotonic() < end:
        time.sleep(1.0)
        now = batching(url)
        if now.get("steps") == before.get("steps"):
            return now
        before = now
    raise AssertionError(f"the engine kept stepping: {now}")


@pytest.mark.parametrize("path,body", [
    ("/respond", {"dialog_contexts": [[f"story {index}"] for index in range(64)], "configs": [LONG] * 64}),
    ("/v1/completions", {"prompt": [f"story {index}" for index in range(16)], "max_tokens": 400, "temperature": 0,
                         "stream": True}),
])
def test_a_departed_client_stops_costing_generation(server, path, body):
    try:
        with requests.post(f"{server}{path}", json=body, timeout=1.5, stream=True) as response:
            assert response.status_code == 200
            for count, _ in enumerate(response.iter_lines()):  # a stream: leave after a few events
                if count == 5:
                    break
    except requests.exceptions.ReadTimeout:  # /respond: leave after 1.5 s
        pass
    stats = settled(server)
    asked = 400 * len(body.get("dialog_contexts") or body.get("prompt"))
    # Two rows at a time: only the pairs that ran before the client left (and within one poll after) count.
    assert stats["generated_tokens"] < asked / 4, stats
    metrics = requests.get(f"{server}/metrics", timeout=10).text
    assert "transformers_lm_queue_length 0.0" in metrics
    answer = requests.post(f"{server}/respond", json={"dialog_contexts": [["hi"]]}, timeout=30)
    assert answer.status_code == 200
