"""Load generator for a Dream-format `/respond` endpoint: N concurrent clients for a fixed duration.

Each client is a thread with its own HTTP session that posts Dream bodies (one context, a prompt, a config
asking for `--max-new-tokens` greedy tokens) back to back until the duration is over; requests still running
then are waited for and counted. It prints the requests served (HTTP 200), errors by status (or by exception
for requests that got no answer), p50/p95 latency of the served ones, and tokens/s when the service counts
generated tokens (transformers_lm's `/health` `batching.generated_tokens`, read before and after; with several
gunicorn workers that is one worker's count, so a lower bound).

Usage, against a service started with `make serve` (port 8130):

    .venv/bin/python -m scripts.load_respond --url http://127.0.0.1:8130/respond \
        --clients 8 --duration 60 --max-new-tokens 32

`--duration` takes seconds (`90`) or minutes (`2m`). Point it only at services you run; it is meant for
127.0.0.1. The exit status is 1 when no request was served.
"""
import argparse
import statistics
import sys
import threading
import time
from collections import Counter

import requests

PROMPT = "Respond like a friendly chatbot."
TOPICS = ("the sea", "trains", "tea", "mountains", "jazz", "bees", "chess", "rain")


def duration_s(text: str) -> float:
    seconds = float(text[:-1]) * 60 if text.endswith("m") else float(text.rstrip("s"))
    if seconds <= 0:
        raise argparse.ArgumentTypeError("the duration must be positive")
    return seconds


def dream_body(client: int, number: int, max_new_tokens: int) -> dict:
    topic = TOPICS[(client + number) % len(TOPICS)]
    return {"dialog_contexts": [["Hi!", "Hello! How can I help?", f"Tell me something about {topic}."]],
            "prompts": [PROMPT],
            "configs": [{"max_new_tokens": max_new_tokens, "do_sample": False, "num_return_sequences": 1}]}


def run_client(client: int, url: str, max_new_tokens: int, deadline: float, timeout: float, results: list,
               honour_retry_after: bool = False):
    """Post until `deadline`; appends (status or exception name, seconds) per request. A client that honours
    Retry-After waits what a refusal (429, 503) says before its next request; one that doesn't retries at once."""
    with requests.Session() as session:
        number = 0
        while time.monotonic() < deadline:
            started = time.monotonic()
            retry_after = None
            try:
                response = session.post(url, json=dream_body(client, number, max_new_tokens), timeout=timeout)
                outcome = response.status_code
                retry_after = response.headers.get("Retry-After")
            except requests.RequestException as error:
                outcome = type(error).__name__
            results.append((outcome, time.monotonic() - started))
            number += 1
            if honour_retry_after and outcome in (429, 503):
                wait_s = float(retry_after) if retry_after and retry_after.isdigit() else 1.0  # an HTTP date: 1 s
                time.sleep(max(0.0, min(wait_s, deadline - time.monotonic())))


def generated_tokens(health_url: str):
    """The service's generated-token counter, or None when it has none (another service, or unreachable)."""
    try:
        # The counter appears with the first generated token.
        return requests.get(health_url, timeout=10).json()["batching"].get("generated_tokens", 0)
    except (requests.RequestException, ValueError, KeyError, TypeError, AttributeError):
        return None


def latency_percentiles(latencies: list) -> tuple:
    if len(latencies) == 1:
        return latencies[0], latencies[0]
    cuts = statistics.quantiles(latencies, n=20, method="inclusive")  # cuts[9]: p50, cuts[18]: p95
    return cuts[9], cuts[18]


def report(results: list, wall_s: float, tokens) -> str:
    served = [seconds for outcome, seconds in results if outcome == 200]
    errors = Counter(str(outcome) for outcome, _ in results if outcome != 200)
    lines = [f"requests served: {len(served)} ({len(served) / wall_s:.2f}/s over {wall_s:.1f} s)",
             "errors: " + (", ".join(f"{name}: {count}" for name, count in sorted(errors.items())) or "none")]
    if served:
        p50, p95 = latency_percentiles(served)
        lines.append(f"latency p50: {p50:.3f} s, p95: {p95:.3f} s")
    else:
        lines.append("latency: n/a (nothing served)")
    lines.append(f"tokens/s: {tokens / wall_s:.1f}" if tokens is not None else
                 "tokens/s: n/a (the service reports no generated-token count)")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8130/respond", help="the /respond URL")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (threads)")
    parser.add_argument("--duration", type=duration_s, default=60.0, help="seconds (90) or minutes (2m)")
    parser.add_argument("--max-new-tokens", type=int, default=32, help="tokens each request asks for")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds one request may take")
    args = parser.parse_args(argv)

    health_url = args.url.rsplit("/", 1)[0] + "/health"
    tokens_before = generated_tokens(health_url)
    results = []
    started = time.monotonic()
    deadline = started + args.duration
    threads = [threading.Thread(target=run_client, args=(client, args.url, args.max_new_tokens, deadline,
                                                         args.timeout, results)) for client in range(args.clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall_s = time.monotonic() - started
    tokens_after = generated_tokens(health_url)
    tokens = tokens_after - tokens_before if None not in (tokens_before, tokens_after) else None

    print(f"{args.url}: {args.clients} clients for {args.duration:g} s, max_new_tokens {args.max_new_tokens}")
    print(report(results, wall_s, tokens))
    return 0 if any(outcome == 200 for outcome, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
