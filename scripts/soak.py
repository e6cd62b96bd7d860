"""Soak a running service: `--load` times its capacity of clients post Dream `/respond` bodies for `--duration`.

Against transformers_lm (either engine) the capacity is read from its `/metrics` (`transformers_lm_capacity`);
against any other service exposing `/respond` and `/health`, give `--capacity`. The clients are those of
scripts/load_respond.py: a share of them (`--ignore-retry-after`) retry a refusal at once, the others wait what its
`Retry-After` says. Meanwhile a probe loop GETs `/health` every `--probe-interval` seconds.

It prints the count of each status (or exception), the p50/p95/p99 latency of the served requests (200), the
probes' p50/p99, tokens/s when the service counts generated tokens, and the RSS of the service's worker (the
processes listening on the URL's port, gunicorn's master left out) at the start, after `--warmup` and at the end.
The exit status is 1 when a problem appeared: a 5xx, a dropped connection (closed or reset without an answer, or
not accepted at all), a lost accepted request (no answer within `--timeout`, or, where `/metrics` tells, still in
flight at the door once every client has its answer), or a probe that got no 200 within 5 s.

    .venv/bin/python -m scripts.soak --url http://127.0.0.1:8130 --load 4 --duration 10m   # what `make soak` runs
"""
import argparse
import multiprocessing
import re
import sys
import threading
import time
from collections import Counter
from urllib.parse import urlsplit

import psutil
import requests

from scripts.bench.bench_respond import percentile
from scripts.load_respond import duration_s, generated_tokens, run_client

DROPPED = {"ConnectionError", "ChunkedEncodingError", "ConnectTimeout"}
LOST = {"ReadTimeout"}
IN_FLIGHT_WAIT_S = 10.0  # how long the door may take to see the last answers out
PROBE_TIMEOUT_S = 5.0  # a container health check's timeout is a few seconds


def metric(base_url: str, name: str):
    """The value of an unlabelled sample `name` on `{base_url}/metrics`, or None (no such sample, no /metrics)."""
    try:
        text = requests.get(f"{base_url}/metrics", timeout=10).text
    except requests.RequestException:
        return None
    found = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else None


def worker_processes(port: int) -> list:
    """The processes listening on `port` whose parent does not (gunicorn's workers, not their master); none where
    they can't be seen (another user's, another host's)."""
    try:
        listening = {connection.pid for connection in psutil.net_connections("tcp")
                     if connection.status == psutil.CONN_LISTEN and connection.laddr.port == port and connection.pid}
        processes = [psutil.Process(pid) for pid in listening]
        return [process for process in processes if process.ppid() not in listening]
    except psutil.Error:
        return []


def rss_mb(processes: list):
    try:
        return sum(process.memory_info().rss for process in processes) / 2 ** 20 if processes else None
    except psutil.Error:  # a worker restarted: the figure would mean nothing
        return None


def probe_loop(urls: list, interval_s: float, stop, results):
    """GET each of `urls` in turn every `interval_s` until `stop` is set, then send `results` the list of
    (url, status or exception name, seconds)."""
    seen = []
    with requests.Session() as session:
        while not stop.wait(interval_s):
            for url in urls:
                started = time.monotonic()
                try:
                    outcome = session.get(url, timeout=PROBE_TIMEOUT_S).status_code
                except requests.RequestException as error:
                    outcome = type(error).__name__
                seen.append((url, outcome, time.monotonic() - started))
    results.send(seen)


class Probes:
    """A probe loop in a process of its own: the load's client threads would delay it in theirs, and what is
    measured is how long the service takes to answer a probe, as a container health check would see it."""

    def __init__(self, urls: list, interval_s: float):
        context = multiprocessing.get_context("fork")  # forked before any client thread starts
        self.stop_event = context.Event()
        self.results, sender = context.Pipe(duplex=False)
        self.process = context.Process(target=probe_loop, args=(urls, interval_s, self.stop_event, sender),
                                       daemon=True)
        self.process.start()

    def stop(self) -> list:
        """[(url, status or exception name, seconds)] of every probe."""
        self.stop_event.set()
        seen = self.results.recv()
        self.process.join()
        return seen


def problems(requests_seen: list, probes: list, still_in_flight) -> dict:
    """{kind: count} of what makes the soak fail."""
    outcomes = [outcome for outcome, _ in requests_seen]
    found = {"5xx": sum(isinstance(outcome, int) and outcome >= 500 for outcome in outcomes),
             "dropped connections": sum(outcome in DROPPED for outcome in outcomes),
             "lost accepted requests": sum(outcome in LOST for outcome in outcomes) + int(still_in_flight or 0),
             "failed probes": sum(outcome != 200 for outcome, _ in probes)}
    return {kind: count for kind, count in found.items() if count}


def report(args, clients: int, ignoring: int, capacity: int, requests_seen: list, probes: list, wall_s: float,
           tokens, rss: tuple, found: dict) -> str:
    statuses = Counter(str(outcome) for outcome, _ in requests_seen)
    served = [seconds for outcome, seconds in requests_seen if outcome == 200]
    health = [seconds for _, seconds in probes]
    lines = [f"{args.url}: {clients} clients ({args.load:g} x capacity {capacity}; {ignoring} ignore Retry-After) "
             f"for {wall_s:.0f} s, max_new_tokens {args.max_new_tokens}",
             "statuses: " + ", ".join(f"{name}: {count}" for name, count in sorted(statuses.items()))]
    if served:
        lines.append("served latency p50 {:.3f} s, p95 {:.3f} s, p99 {:.3f} s".format(
            *(percentile(served, share) for share in (0.5, 0.95, 0.99))))
    if health:
        lines.append(f"health: {len(health)} probes, p50 {percentile(health, 0.5) * 1000:.1f} ms, "
                     f"p99 {percentile(health, 0.99) * 1000:.1f} ms, max {max(health) * 1000:.1f} ms")
    lines.append(f"served requests/s: {len(served) / wall_s:.2f}, tokens/s: "
                 + (f"{tokens / wall_s:.1f}" if tokens is not None else "n/a (the service counts none)"))
    start, warm, end = rss
    if None in rss:
        lines.append("worker RSS: n/a (no local process listens on the port, or a worker restarted)")
    else:
        lines.append(f"worker RSS: start {start:.0f} MB, after warm-up {warm:.0f} MB, end {end:.0f} MB "
                     f"({(end - warm) / warm * 100:+.1f} % since warm-up)")
    lines.append("problems: " + (", ".join(f"{kind}: {count}" for kind, count in found.items()) or "none"))
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8130", help="the service's base URL")
    parser.add_argument("--load", type=float, default=4.0, help="clients, as a multiple of the capacity")
    parser.add_argument("--capacity", type=int, help="requests the service admits at once (default: its /metrics)")
    parser.add_argument("--duration", type=duration_s, default=600.0, help="seconds (90) or minutes (10m)")
    parser.add_argument("--warmup", type=duration_s, help="when the RSS baseline is read (default: a tenth of "
                        "the duration, at most 60 s)")
    parser.add_argument("--ignore-retry-after", type=float, default=0.1, help="share of clients that retry at once")
    parser.add_argument("--max-new-tokens", type=int, default=32, help="tokens each request asks for")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds a request may take (lost past it)")
    parser.add_argument("--probe-interval", type=float, default=0.1, help="seconds between /health probes")
    args = parser.parse_args(argv)

    base = args.url.rstrip("/")
    capacity = args.capacity or metric(base, "transformers_lm_capacity")
    if not capacity:
        parser.error(f"{base}/metrics tells no capacity: give --capacity")
    capacity = int(capacity)
    clients = max(1, round(args.load * capacity))
    ignoring = round(args.ignore_retry_after * clients)
    warmup_s = args.warmup if args.warmup is not None else min(60.0, args.duration / 10)
    workers = worker_processes(urlsplit(base).port or 80)

    tokens_before = generated_tokens(f"{base}/health")
    rss_start = rss_mb(workers)
    requests_seen = []
    probes = Probes([f"{base}/health"], args.probe_interval)
    started = time.monotonic()
    deadline = started + args.duration
    threads = [threading.Thread(target=run_client, args=(client, f"{base}/respond", args.max_new_tokens, deadline,
                                                         args.timeout, requests_seen, client >= ignoring))
               for client in range(clients)]
    for thread in threads:
        thread.start()
    time.sleep(min(warmup_s, args.duration))
    rss_warm = rss_mb(workers)
    for thread in threads:
        thread.join()
    wall_s = time.monotonic() - started
    probes = [(outcome, seconds) for _, outcome, seconds in probes.stop()]
    tokens_after = generated_tokens(f"{base}/health")
    rss_end = rss_mb(workers)
    in_flight = metric(base, "transformers_lm_requests_in_flight")
    wait_until = time.monotonic() + IN_FLIGHT_WAIT_S
    while in_flight and time.monotonic() < wait_until:  # a streamed answer may be closing as we ask
        time.sleep(0.5)
        in_flight = metric(base, "transformers_lm_requests_in_flight")

    tokens = tokens_after - tokens_before if None not in (tokens_before, tokens_after) else None
    found = problems(requests_seen, probes, in_flight)
    print(report(args, clients, ignoring, capacity, requests_seen, probes, wall_s, tokens,
                 (rss_start, rss_warm, rss_end), found))
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
