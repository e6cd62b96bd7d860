"""Throughput of transformers_lm against the Dream pattern and against raw batched `generate()`, in one run.

For each concurrency level, every client sends `--requests` Dream-format `/respond` requests one after
another (64 new tokens, greedy, the embedded SmolLM2 unless PRETRAINED_MODEL_NAME_OR_PATH says otherwise):
  1. transformers_lm under gunicorn (continuous batching), plus a streaming pass over
     `/v1/chat/completions` for the time to the first token;
  2. the Dream-pattern baseline (scripts/bench/dream_baseline_server.py: Flask threads, one generate each);
  3. raw left-padded `model.generate()` in this process on the same prompts, one batch per round (the limit).
It prints tokens/s, p50/p95 latency, TTFT, the serving worker's peak RSS and the ratios the issue targets,
and writes figures (JSON) and a plot (PNG) of tokens/s against concurrency to --out.

Run: make bench   (or: .venv/bin/python -m scripts.bench.bench_respond --levels 1,4,8,16 --requests 2)
Only 127.0.0.1 is contacted. Nothing else should load the CPU meanwhile.
"""
import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

from tests.helpers.processes import free_port, gunicorn, start, wait_http

NEW_TOKENS = 64
GREEDY = {"max_new_tokens": NEW_TOKENS, "min_new_tokens": NEW_TOKENS, "do_sample": False, "num_return_sequences": 1}
PROMPT = "Respond like a friendly chatbot."
LM_CONFIG = "services/transformers_lm/gunicorn.conf.py"


def utterance(client: int, round_: int) -> str:
    return f"Hi! Tell me something interesting about topic number {client * 10 + round_}."


def dream_body(client: int, round_: int) -> dict:
    return {"dialog_contexts": [[utterance(client, round_)]], "prompts": [PROMPT], "configs": [GREEDY]}


def percentile(values: list, share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def closed_loop(clients: int, rounds: int, call) -> dict:
    """`clients` threads each make `rounds` calls back to back; call(client, round) -> seconds to measure."""
    samples, errors = [], []
    barrier = threading.Barrier(clients)

    def client(index):
        barrier.wait()
        for round_ in range(rounds):
            try:
                samples.append(call(index, round_))
            except Exception as error:  # counted, and shown: a benchmark of failures is no benchmark
                errors.append(repr(error))

    threads = [threading.Thread(target=client, args=(index,)) for index in range(clients)]
    start_time = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start_time
    if errors:
        print(f"  {len(errors)} errors, first: {errors[0]}", file=sys.stderr)
    return {"wall_s": wall, "tokens_per_s": NEW_TOKENS * len(samples) / wall,
            "p50": percentile(samples, 0.5) if samples else None,
            "p95": percentile(samples, 0.95) if samples else None, "errors": len(errors)}


def respond_call(url: str):
    session = requests.Session()

    def call(client, round_):
        started = time.perf_counter()
        response = session.post(f"{url}/respond", json=dream_body(client, round_), timeout=600)
        response.raise_for_status()
        return time.perf_counter() - started
    return call


def first_token_call(url: str):
    """Seconds until the first streamed text piece of a chat completion (same prompt, same parameters)."""
    session = requests.Session()

    def call(client, round_):
        body = {"messages": [{"role": "system", "content": PROMPT}, {"role": "user", "content": utterance(client, round_)}],
                "max_tokens": NEW_TOKENS, "temperature": 0, "stream": True}
        started = time.perf_counter()
        with session.post(f"{url}/v1/chat/completions", json=body, stream=True, timeout=600) as response:
            response.raise_for_status()
            first = None
            for line in response.iter_lines():
                if first is None and line.startswith(b"data: {") and json.loads(line[6:])["choices"][0]["delta"].get("content"):
                    first = time.perf_counter() - started
        return first
    return call


def peak_rss_mb(master_pid: int) -> float:
    """Peak resident memory of gunicorn's worker (the master's child)."""
    children = Path(f"/proc/{master_pid}/task/{master_pid}/children").read_text().split()
    status = Path(f"/proc/{children[0]}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmHWM")).split()[1]) / 1024


def bench_service(levels, rounds, log_dir) -> tuple:
    port = free_port()
    process = gunicorn(LM_CONFIG, port, {"LOG_LEVEL": "warning"}, log_path=Path(log_dir) / "transformers_lm.log")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/health", timeout=300, process=process)
        respond_call(url)(0, 0)  # warm-up
        results = {level: closed_loop(level, rounds, respond_call(url)) for level in levels}
        ttft = {level: closed_loop(level, rounds, first_token_call(url)) for level in levels}
        return results, ttft, peak_rss_mb(process.popen.pid)
    finally:
        process.stop()


def bench_baseline(levels, rounds, log_dir) -> dict:
    port = free_port()
    process = start([sys.executable, "-m", "scripts.bench.dream_baseline_server", str(port)],
                    log_path=Path(log_dir) / "baseline.log")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/health", timeout=300, process=process)
        respond_call(url)(0, 0)
        return {level: closed_loop(level, rounds, respond_call(url)) for level in levels}
    finally:
        process.stop()


def bench_raw(levels, rounds) -> tuple:
    """Raw generate(): each round is one left-padded batch of `level` prompts; and a bare 1-token generate."""
    import torch

    from services.transformers_lm.engine.generation import left_pad
    from services.transformers_lm.model.loading import load_model
    from services.transformers_lm.prompting import PromptBuilder
    from services.transformers_lm.settings import Settings

    settings = Settings.from_env()
    loaded = load_model(settings)
    builder = PromptBuilder(loaded.tokenizer, settings.prompt_format, settings.speakers)
    pad = loaded.tokenizer.pad_token_id or 0

    def generate(ids_list, new_tokens):
        input_ids, mask = left_pad(ids_list, pad, loaded.device)
        started = time.perf_counter()
        with torch.inference_mode():
            loaded.model.generate(input_ids=input_ids, attention_mask=mask, max_new_tokens=new_tokens,
                                  min_new_tokens=new_tokens, do_sample=False)
        return time.perf_counter() - started

    prompts = {(client, round_): builder.ids(PROMPT, [utterance(client, round_)])
               for client in range(max(levels)) for round_ in range(rounds)}
    generate([prompts[0, 0]], 4)  # warm-up
    results = {}
    for level in levels:
        times = [generate([prompts[client, round_] for client in range(level)], NEW_TOKENS) for round_ in range(rounds)]
        results[level] = {"tokens_per_s": level * NEW_TOKENS * rounds / sum(times), "p50": percentile(times, 0.5),
                          "p95": percentile(times, 0.95), "errors": 0}
    bare = statistics.median(generate([prompts[client, 0]], 1) for client in range(min(8, max(levels))))
    return results, bare


def report(figures: dict, levels) -> list:
    ours, base, raw, ttft = figures["transformers_lm"], figures["baseline"], figures["raw_generate"], figures["ttft"]
    print(f"\n{'clients':>7} | {'ours tok/s':>10} {'p50 s':>6} {'p95 s':>6} | {'TTFT p50':>8} | "
          f"{'Dream tok/s':>11} {'p50 s':>6} | {'raw tok/s':>9} {'p50 s':>6}")
    for level in levels:
        o, b, r, t = ours[level], base[level], raw[level], ttft[level]
        print(f"{level:>7} | {o['tokens_per_s']:>10.1f} {o['p50']:>6.2f} {o['p95']:>6.2f} | {t['p50']:>8.3f} | "
              f"{b['tokens_per_s']:>11.1f} {b['p50']:>6.2f} | {r['tokens_per_s']:>9.1f} {r['p50']:>6.2f}")
    checks = []
    if 8 in levels:
        checks.append(("8 clients: tokens/s vs Dream pattern", ours[8]["tokens_per_s"] / base[8]["tokens_per_s"], ">=", 3.5))
        checks.append(("8 clients: tokens/s vs raw generate", ours[8]["tokens_per_s"] / raw[8]["tokens_per_s"], ">=", 0.9))
        checks.append(("8 clients: streaming TTFT p50 vs bare 1-token generate", ttft[8]["p50"] / figures["bare_first_token_s"],
                       "<=", 2.0))
    if 1 in levels:
        checks.append(("1 client: latency p50 vs raw generate", ours[1]["p50"] / raw[1]["p50"], "<=", 1.1))
    checks.append(("serving worker peak RSS (GB)", figures["worker_peak_rss_mb"] / 1024, "<=", 1.3))
    print()
    for name, value, sense, target in checks:
        met = value >= target if sense == ">=" else value <= target
        print(f"{name}: {value:.2f} (target {sense} {target}) {'met' if met else 'NOT met'}")
    return checks


def plot_tokens_per_s(series: list, levels, title: str, path: Path):
    """One line of total tokens/s against concurrency per (label, {level: figures}) of `series`."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5))
    for label, results in series:
        axes.plot(levels, [results[level]["tokens_per_s"] for level in levels], marker="o", label=label)
    axes.set_xlabel("concurrent clients")
    axes.set_ylabel("generated tokens/s (total)")
    axes.set_xticks(levels)
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", default="1,4,8,16", help="comma-separated concurrency levels")
    parser.add_argument("--requests", type=int, default=2, help="requests per client per level")
    parser.add_argument("--out", default="bench-results", help="folder for figures.json and tokens_per_s.png")
    args = parser.parse_args(argv)
    levels = [int(level) for level in args.levels.split(",")]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log_dir = tempfile.mkdtemp(prefix="bench-logs-")

    figures = {}
    print("transformers_lm ...", flush=True)
    figures["transformers_lm"], figures["ttft"], figures["worker_peak_rss_mb"] = bench_service(levels, args.requests, log_dir)
    print("Dream-pattern baseline ...", flush=True)
    figures["baseline"] = bench_baseline(levels, args.requests, log_dir)
    print("raw generate() ...", flush=True)
    figures["raw_generate"], figures["bare_first_token_s"] = bench_raw(levels, args.requests)

    checks = report(figures, levels)
    figures["checks"] = [{"name": name, "value": value, "target": f"{sense} {target}"} for name, value, sense, target in checks]
    (out / "figures.json").write_text(json.dumps(figures, indent=2))
    series = [(label, figures[key]) for key, label in (
        ("transformers_lm", "transformers_lm (continuous batching)"),
        ("baseline", "Dream pattern (generate per request, threads)"),
        ("raw_generate", "raw batched generate() (limit)"))]
    plot_tokens_per_s(series, levels, f"/respond, {NEW_TOKENS} greedy new tokens per request", out / "tokens_per_s.png")
    print(f"\nfigures: {out / 'figures.json'}, plot: {out / 'tokens_per_s.png'}, server logs: {log_dir}")


if __name__ == "__main__":
    main()
