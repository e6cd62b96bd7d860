"""Prometheus /metrics: a real gunicorn server on the tiny model answers a scrape that prometheus-client
parses and whose counters move with traffic; the Flask hooks and the metric methods in process."""
import pytest
import requests
from flask import Flask
from prometheus_client.parser import text_string_to_metric_families

from services.transformers_lm.api.metrics import UNMATCHED, Metrics, instrument
from services.transformers_lm.engine.ragged_attention import BLOCK
from services.transformers_lm.service import ServiceHolder
from tests.helpers.processes import tiny_lm_server

GREEDY = {"do_sample": False, "num_return_sequences": 1, "max_new_tokens": 4}
REQUESTS = "transformers_lm_requests_total"
LATENCY_COUNT = "transformers_lm_request_latency_seconds_count"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    process, url = tiny_lm_server(tmp_path_factory.mktemp("tiny-model"))
    try:
        yield url
    finally:
        process.stop()


def samples(text: str) -> dict:
    """{(sample name, frozenset of labels): value} of a Prometheus text scrape."""
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def scrape(url: str) -> dict:
    response = requests.get(f"{url}/metrics", timeout=10)
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/plain")
    return samples(response.text)


def moved(before: dict, after: dict, name: str, **labels) -> float:
    key = (name, frozenset(labels.items()))
    return after.get(key, 0) - before.get(key, 0)


@pytest.mark.processes
def test_request_counters_and_latency_move_with_traffic(server):
    before = scrape(server)
    for _ in range(3):
        response = requests.post(f"{server}/respond", json={"dialog_contexts": [["Hi"]], "configs": [GREEDY]},
                                 timeout=60)
        assert response.status_code == 200
    assert requests.post(f"{server}/respond", json={"dialog_contexts": []}, timeout=10).status_code == 400
    assert requests.get(f"{server}/nowhere", timeout=10).status_code == 404
    after = scrape(server)

    assert moved(before, after, REQUESTS, endpoint="/respond", status="200") == 3
    assert moved(before, after, REQUESTS, endpoint="/respond", status="400") == 1
    assert moved(before, after, REQUESTS, endpoint=UNMATCHED, status="404") == 1
    assert moved(before, after, REQUESTS, endpoint="/metrics", status="200") == 1  # the first scrape
    assert moved(before, after, LATENCY_COUNT, endpoint="/respond") == 4
    # The engine reports too: 3 samples x 4 greedy tokens (min_new_tokens of the default config holds EOS back).
    assert moved(before, after, "transformers_lm_generated_tokens_total") == 12
    assert moved(before, after, "transformers_lm_time_to_first_token_seconds_count") == 3
    assert moved(before, after, "transformers_lm_batch_size_count") >= 3
    # The same prompt thrice: the prefix cache gives the 2nd and 3rd its whole blocks before the last token.
    computed = moved(before, after, "transformers_lm_prompt_tokens_total", source="computed")
    cached = moved(before, after, "transformers_lm_prompt_tokens_total", source="cached")
    prompt = (computed + cached) / 3
    assert prompt > BLOCK
    assert cached == 2 * ((prompt - 1) // BLOCK * BLOCK)


@pytest.mark.processes
def test_the_scrape_holds_every_metric_family(server):
    families = {family.name: family.type for family in text_string_to_metric_families(
        requests.get(f"{server}/metrics", timeout=10).text)}
    assert families.items() >= {
        "transformers_lm_requests": "counter",
        "transformers_lm_request_latency_seconds": "histogram",
        "transformers_lm_queue_length": "gauge",
        "transformers_lm_batch_size": "histogram",
        "transformers_lm_generated_tokens": "counter",
        "transformers_lm_prompt_tokens": "counter",
        "transformers_lm_time_to_first_token_seconds": "histogram",
    }.items()  # prometheus-client adds *_created series, which the parser reads as gauges


def test_engine_metrics_and_the_queue_callback():
    queued = [5]
    metrics = Metrics(queue_length=lambda: queued[0])
    metrics.observe_batch(3)
    metrics.observe_batch(16)
    metrics.add_tokens(7)
    metrics.add_prompt_tokens(30, 12)
    metrics.observe_ttft(0.2)
    body, content_type = metrics.render()
    scraped = samples(body.decode())
    assert content_type.startswith("text/plain")
    assert scraped[("transformers_lm_queue_length", frozenset())] == 5
    assert scraped[("transformers_lm_batch_size_bucket", frozenset({("le", "4.0")}))] == 1
    assert scraped[("transformers_lm_batch_size_sum", frozenset())] == 19
    assert scraped[("transformers_lm_generated_tokens_total", frozenset())] == 7
    assert scraped[("transformers_lm_prompt_tokens_total", frozenset({("source", "computed")}))] == 30
    assert scraped[("transformers_lm_prompt_tokens_total", frozenset({("source", "cached")}))] == 12
    assert scraped[("transformers_lm_time_to_first_token_seconds_count", frozenset())] == 1
    queued[0] = 0
    assert samples(metrics.render()[0].decode())[("transformers_lm_queue_length", frozenset())] == 0


def test_metrics_objects_do_not_share_a_registry():
    first, second = Metrics(), Metrics()  # the global registry would refuse the second
    first.add_tokens(2)
    assert samples(second.render()[0].decode())[("transformers_lm_generated_tokens_total", frozenset())] == 0


def test_the_queue_length_is_zero_while_the_model_loads():
    assert ServiceHolder(Metrics()).queue_length() == 0


def test_a_streamed_response_is_timed_until_it_is_closed():
    app, metrics = Flask(__name__), Metrics()
    instrument(app, metrics)
    app.get("/stream")(lambda: iter(["a", "b"]))
    response = app.test_client().get("/stream", buffered=False)
    counted = samples(metrics.render()[0].decode())
    assert counted[(REQUESTS, frozenset({("endpoint", "/stream"), ("status", "200")}))] == 1
    assert (LATENCY_COUNT, frozenset({("endpoint", "/stream")})) not in counted
    assert b"".join(response.response) == b"ab"
    response.close()
    closed = samples(metrics.render()[0].decode())
    assert closed[(LATENCY_COUNT, frozenset({("endpoint", "/stream")}))] == 1
