"""Add an LLM container to the universal distributions, or remove one: Dream's 10-step checklist as a command.

    python -m tools.add_model add --short qwen05b --model Qwen/Qwen2.5-0.5B-Instruct \\
        --dist universal_prompted_assistant --language EN --half-precision 1 --memory 8G --gpu-memory 2G \\
        --license Apache-2.0 --size 0.5B --max-tokens 32768 --description "Qwen2.5 0.5B chat model."
    python -m tools.add_model add --short llama70b --model meta-llama/Llama-3.1-70B-Instruct --engine vllm \\
        --tensor-parallel-size 4 --max-model-len 32768 --dist universal_prompted_assistant --memory 64G \\
        --gpu-memory 320G --license Llama-3.1 --size 70B --max-tokens 131072 --description "Llama 3.1 70B chat."
    python -m tools.add_model remove qwen05b

Exit 0 when done (or, with --dry-run, when the printed diff is what it would do), 2 when refused; a refusal
writes nothing. `remove` after `add` gives back every touched file byte for byte.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tools.model_registry import ModelSpec, Refused, apply, diff, plan_add, plan_remove
from tools.model_registry.plan import ENGINES, VLLM_OPTIONS
from tools.registry.naming import PLACEHOLDER, VLLM_IMAGE

DISTS = ("universal_prompted_assistant", "universal_ru_prompted_assistant")


def _generation_config(value: str | None) -> str | None:
    """JSON text, or a path to a JSON file."""
    if value is None or value.lstrip().startswith("{"):
        return value
    path = Path(value)
    if not path.is_file():
        raise Refused(f"--generation-config {value!r} is neither JSON nor a file")
    return path.read_text()


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m tools.add_model", description=__doc__.split("\n\n")[0])
    sub = top.add_subparsers(dest="command", required=True)
    add = sub.add_parser("add", help=f"wire a new {PLACEHOLDER.container} container everywhere")
    add.add_argument("--short", required=True, help=f"short name: container {PLACEHOLDER.container}")
    add.add_argument("--model", required=True, help='HF hub id, folder or .gguf path; "" = embedded SmolLM2')
    add.add_argument("--adapter", help="PEFT adapter (LoRA, ...) on the model: HF hub id or folder "
                                       "(ADAPTER_NAME_OR_PATH; a folder must exist inside the container)")
    add.add_argument("--dist", action="append", required=True, dest="dists", metavar="DIST",
                     help=f"distribution to add it to (repeatable): {', '.join(DISTS)}")
    add.add_argument("--language", default="EN", help="EN or RU (default EN)")
    add.add_argument("--half-precision", type=int, default=1, choices=(0, 1))
    add.add_argument("--memory", required=True, help="RAM limit/reservation of the container, e.g. 40G")
    add.add_argument("--gpu-memory", default="none",
                     help='GPU memory for the card and MODELS.md, e.g. 20G; "none" = CPU only (default)')
    add.add_argument("--license", required=True)
    add.add_argument("--size", required=True, help="parameter count, e.g. 7B")
    add.add_argument("--description", required=True, help="one sentence for the card and MODELS.md")
    add.add_argument("--max-tokens", type=int, required=True, help="prompt + response tokens (MODELS.md)")
    add.add_argument("--generation-config", help="JSON object or file (default: copy of the default config)")
    add.add_argument("--forward", action="append", default=[], metavar="VAR",
                     help="env var the skill forwards to this LLM (repeatable; envvars_to_send.json)")
    add.add_argument("--proxy-host", action="append", default=[], dest="proxy_hosts", metavar="HOST",
                     help="add a proxy.yml entry with PROXY_PASS=HOST:port (repeatable: replicas, balanced)")
    add.add_argument("--engine", default="transformers", choices=ENGINES,
                     help=f"transformers (default): the container runs the model; vllm: a {PLACEHOLDER.engine} "
                          f"container ({VLLM_IMAGE}, GPUs) runs it and {PLACEHOLDER.container} fronts it")
    vllm = add.add_argument_group("--engine vllm (see MODELS.md: models larger than one GPU)")
    vllm.add_argument("--tensor-parallel-size", type=int, help="GPUs each layer is split over (default 1)")
    vllm.add_argument("--pipeline-parallel-size", type=int, help="stages the layers are split into (default 1)")
    vllm.add_argument("--nodes", type=int, help="hosts of the Ray cluster (default 1; more: Ray backend)")
    vllm.add_argument("--max-model-len", type=int, help="vLLM's context window (default: --max-tokens)")
    vllm.add_argument("--engine-port", type=int, help="default: the lowest free port above the LLM container's")
    add.add_argument("--port", type=int, help="default: lowest free port above the last LLM container port")
    add.add_argument("--display-name", help="card display_name (default: the model's name)")
    add.add_argument("--author", default="publisher@deeppavlov.ai", help="card author (an email)")
    remove = sub.add_parser("remove", help="undo `add`: delete the container's wiring everywhere")
    remove.add_argument("short")
    for command in (add, remove):
        command.add_argument("--root", default=".", help="repository root (default: .)")
        command.add_argument("--dry-run", action="store_true", help="print the diff, write nothing")
    return top


def spec_from_args(args) -> ModelSpec:
    gpu = None if args.gpu_memory.strip().lower() in ("", "none", "0", "cpu") else args.gpu_memory.strip()
    return ModelSpec(
        short=args.short, model=args.model, dists=args.dists, language=args.language.upper(),
        half_precision=args.half_precision, memory=args.memory, gpu_memory=gpu, license=args.license,
        size=args.size, description=args.description, max_tokens=args.max_tokens,
        generation_config=_generation_config(args.generation_config), forward=args.forward,
        proxy_hosts=args.proxy_hosts, port=args.port, display_name=args.display_name, author=args.author,
        adapter=args.adapter or None, engine=args.engine, **{name: getattr(args, name) for name in VLLM_OPTIONS})


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    root = Path(args.root)
    try:
        changes = plan_add(root, spec_from_args(args)) if args.command == "add" else plan_remove(root, args.short)
    except Refused as err:
        print(f"refused: {err}; nothing written", file=sys.stderr)
        return 2
    if args.dry_run:
        sys.stdout.write(diff(root, changes))
        return 0
    apply(root, changes)
    for rel, new in changes.items():
        print(f"{'deleted' if new is None else 'wrote'} {rel}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
