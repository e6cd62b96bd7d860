"""Prometheus metrics of one app, and the Flask hooks that count and time its requests.

Each Metrics has its own registry: several apps in one process (tests) must not clash in the global one.
With WORKERS > 1 every gunicorn worker keeps its own numbers and a scrape reads one worker.
"""
import time

from flask import Flask, g, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

PREFIX = "transformers_lm"
# LLM requests take from milliseconds (errors, /health) to minutes (long generations).
LATENCY_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
UNMATCHED = "unmatched"  # the endpoint label of 404/405 answers: raw paths would make unbounded label sets


class Metrics:
    def __init__(self, queue_length=lambda: 0, in_flight=lambda: 0, running=lambda: 0, capacity: int = 0):
        """Read at every scrape, the requests at each stage: `in_flight()` admitted at the door (api/door.py),
        of at most `capacity`; `queue_length()` samples of theirs waiting for the model; `running()` sequences
        being generated."""
        self.registry = CollectorRegistry()
        self.requests = Counter(f"{PREFIX}_requests", "HTTP requests by endpoint and status",
                                ["endpoint", "status"], registry=self.registry)
        self.latency = Histogram(f"{PREFIX}_request_latency_seconds", "HTTP request latency, to the last byte",
                                 ["endpoint"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.queue_length = Gauge(f"{PREFIX}_queue_length", "samples waiting for the model",
                                  registry=self.registry)
        self.queue_length.set_function(queue_length)
        self.in_flight = Gauge(f"{PREFIX}_requests_in_flight", "requests admitted at the door, not answered yet",
                               registry=self.registry)
        self.in_flight.set_function(in_flight)
        self.capacity = Gauge(f"{PREFIX}_capacity", "requests the door admits at once (429 past)",
                              registry=self.registry)
        self.capacity.set(capacity)
        self.running = Gauge(f"{PREFIX}_running_sequences", "sequences being generated", registry=self.registry)
        self.running.set_function(running)
        self.batch_size = Histogram(f"{PREFIX}_batch_size", "rows per generate() call",
                                    buckets=BATCH_BUCKETS, registry=self.registry)
        self.tokens = Counter(f"{PREFIX}_generated_tokens", "tokens generated", registry=self.registry)
        self.prompt_tokens = Counter(f"{PREFIX}_prompt_tokens", "prompt tokens admitted, by whether the model "
                                     "computes them or the prefix cache holds them", ["source"],
                                     registry=self.registry)
        self.embedding_tokens = Counter(f"{PREFIX}_embedding_tokens", "tokens of the texts embedded",
                                        registry=self.registry)
        self.ttft = Histogram(f"{PREFIX}_time_to_first_token_seconds", "time from request to first generated token",
                              buckets=TTFT_BUCKETS, registry=self.registry)

        self.upstream = Histogram(f"{PREFIX}_upstream_request_seconds", "ENGINE=openai: requests to the server "
                                  "by outcome (ok, or the error's kind)", ["outcome"], buckets=LATENCY_BUCKETS,
                                  registry=self.registry)

    def count_request(self, endpoint: str, status: int):
        self.requests.labels(endpoint, str(status)).inc()

    def observe_latency(self, endpoint: str, seconds: float):
        self.latency.labels(endpoint).observe(seconds)

    def observe_batch(self, rows: int):
        self.batch_size.observe(rows)

    def add_tokens(self, count: int):
        self.tokens.inc(count)

    def add_prompt_tokens(self, computed: int, cached: int):
        self.prompt_tokens.labels("computed").inc(computed)
        self.prompt_tokens.labels("cached").inc(cached)

    def add_embedding_tokens(self, count: int):
        self.embedding_tokens.inc(count)

    def observe_ttft(self, seconds: float):
        self.ttft.observe(seconds)

    def observe_upstream(self, seconds: float, outcome: str):
        self.upstream.labels(outcome).observe(seconds)

    def render(self) -> tuple:
        """(body, content type) of a scrape in Prometheus' text format."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def instrument(app: Flask, metrics: Metrics):
    """Count every request by endpoint (its URL rule) and status, and time it. Call it before adding
    other before_request hooks: one that fails first would leave the request untimed."""

    @app.before_request
    def start_timer():
        g.metrics_started = time.perf_counter()

    @app.after_request
    def count(response):
        endpoint = request.url_rule.rule if request.url_rule else UNMATCHED
        started = g.metrics_started
        metrics.count_request(endpoint, response.status_code)  # before the body goes out: a scrape right after sees it

        def observe():
            metrics.observe_latency(endpoint, time.perf_counter() - started)

        # A streamed body is still being generated here; its latency ends when the server closes it.
        if response.is_streamed:
            response.call_on_close(observe)
        else:
            observe()
        return response
