"""What adding or removing a model changes: `{relative path: new text, or None to delete}`, then diff or apply."""

from __future__ import annotations

import difflib
import json
import re
import secrets
import string
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from tools.registry.naming import (FRONT_REQUIREMENTS, GEN_CONFIGS, PLACEHOLDER, REQUIREMENTS, LLMNames,
                                   is_llm_container)
from tools.registry.ports import taken_ports
from tools.registry.repo import DIST_FILES, ENVVARS, MODELS_MD, TSV, Repo, host_port

from . import edits, templates

MEMORY = re.compile(r"^\d+(\.\d+)?[KMG]$")
DEFAULT_GEN_CONFIG = f"{GEN_CONFIGS}/default_generative_config.json"

Changes = dict  # relative path -> new text, or None: delete
ENGINES = ("transformers", "vllm")
VLLM_OPTIONS = ("tensor_parallel_size", "pipeline_parallel_size", "nodes", "max_model_len", "engine_port")


class Refused(Exception):
    """The request is invalid or clashes with the repository; nothing is written."""


@dataclass
class ModelSpec:
    short: str
    model: str
    dists: list[str]
    language: str = "EN"
    half_precision: int = 1
    memory: str = "50G"
    gpu_memory: str | None = None  # None: CPU only
    license: str = "unknown"
    size: str = "?"
    description: str = ""
    max_tokens: int = 2048
    generation_config: str | None = None  # JSON text; None: a copy of the default config
    forward: list[str] = field(default_factory=list)
    proxy_hosts: list[str] = field(default_factory=list)  # shared hosts serving the model: proxy.yml's replicas
    port: int | None = None
    display_name: str | None = None
    author: str = "publisher@deeppavlov.ai"
    open_source: str = "yes"
    adapter: str | None = None  # PEFT adapter on the model (ADAPTER_NAME_OR_PATH); None: none
    engine: str = "transformers"  # or "vllm": a vLLM container runs the model, this one fronts it
    # vllm only (VLLM_OPTIONS; None: not given, then 1, 1, 1 and max_tokens):
    tensor_parallel_size: int | None = None
    pipeline_parallel_size: int | None = None
    nodes: int | None = None
    max_model_len: int | None = None
    engine_port: int | None = None  # default: the lowest free port above `port`

    @property
    def names(self) -> LLMNames:
        return LLMNames(self.short)

    @property
    def url(self) -> str:
        return self.names.url(self.port)

    @property
    def proxy_pass(self) -> str:
        return ",".join(f"{host}:{self.port}" for host in self.proxy_hosts)

    @property
    def vllm(self) -> bool:
        return self.engine == "vllm"

    @property
    def engine_url(self) -> str:
        return self.names.engine_url(self.engine_port)

    @property
    def multi_node(self) -> bool:
        """vLLM across several hosts: a Ray cluster, its head in the engine container."""
        return self.vllm and self.nodes > 1

    @property
    def gpus_per_node(self) -> int:
        return self.tensor_parallel_size * self.pipeline_parallel_size // self.nodes

    @property
    def cuda_visible_devices(self) -> str:
        return "0" if self.gpu_memory and not self.vllm else ""  # a front needs no GPU

    def build_args(self) -> dict:
        return {"SERVICE_PORT": self.port, "SERVICE_NAME": self.names.service_name,
                "PRETRAINED_MODEL_NAME_OR_PATH": self.model, "HALF_PRECISION": self.half_precision,
                "GENERATIVE_CONFIG": self.names.gen_config, "LANGUAGE": self.language,
                **({REQUIREMENTS: FRONT_REQUIREMENTS} if self.vllm else {})}


# --- validation ----------------------------------------------------------------------------------------------------

def free_port_above(repo: Repo, port: int) -> int:
    taken = taken_ports(repo)
    port += 1
    while port in taken:
        port += 1
    return port


def default_port(repo: Repo) -> int:
    """The lowest free port above the highest LLM container port of components.tsv."""
    return free_port_above(repo, max((p for name, p in repo.tsv_ports.items() if is_llm_container(name)), default=8129))


def name_uses(repo: Repo, names: LLMNames) -> list[str]:
    uses = []
    if names.container in repo.tsv_ports or names.engine in repo.tsv_ports:
        uses.append(TSV)
    uses += [f"assistant_dists/{d}" for d in repo.dists if {names.container, names.engine} & set(repo.components(d))]
    for rel in (names.service_config_dir, names.gen_config_path):
        if (repo.root / rel).exists():
            uses.append(rel)
    uses += [path for path, card in repo.cards.items()
             if card.get("name") == names.service_name or card.get("service") == names.service_config_dir]
    if any(host_port(url)[0] == names.container for url in repo.envvars):
        uses.append(ENVVARS)
    return uses


def _option(field_name: str) -> str:
    return "--" + field_name.replace("_", "-")


def validate_engine(spec: ModelSpec) -> None:
    """The vLLM options, given only with --engine vllm; fills in their defaults."""
    if spec.engine not in ENGINES:
        raise Refused(f"--engine must be one of {', '.join(ENGINES)}, not {spec.engine!r}")
    if not spec.vllm:
        given = [_option(name) for name in VLLM_OPTIONS if getattr(spec, name) is not None]
        if given:
            raise Refused(f"{', '.join(given)} only with --engine vllm")
        return
    if not spec.model:
        raise Refused("--engine vllm needs --model: a hub id or a folder the vLLM container sees")
    if spec.adapter:
        raise Refused("--adapter is for --engine transformers (vLLM serves LoRA adapters with its own --lora-modules)")
    if not spec.gpu_memory:
        raise Refused("--engine vllm runs on GPUs: give --gpu-memory")
    defaults = {"tensor_parallel_size": 1, "pipeline_parallel_size": 1, "nodes": 1, "max_model_len": spec.max_tokens}
    for name, default in defaults.items():
        value = default if getattr(spec, name) is None else getattr(spec, name)
        if value < 1:
            raise Refused(f"{_option(name)} must be at least 1, not {value}")
        setattr(spec, name, value)
    if (spec.tensor_parallel_size * spec.pipeline_parallel_size) % spec.nodes:
        raise Refused(f"tensor x pipeline parallel size {spec.tensor_parallel_size}x{spec.pipeline_parallel_size} "
                      f"is no whole number of GPUs on each of --nodes {spec.nodes}")


def validate(repo: Repo, spec: ModelSpec) -> None:
    if not spec.names.valid:
        raise Refused(f"invalid short name {spec.short!r}: use lowercase letters and digits, starting with a letter "
                      f"(it becomes {PLACEHOLDER.container} and {PLACEHOLDER.service_name})")
    if not spec.dists:
        raise Refused("give at least one --dist")
    for dist in spec.dists:
        if dist not in repo.dists:
            raise Refused(f"unknown dist {dist!r}; known: {', '.join(repo.dists)}")
    if spec.language not in ("EN", "RU"):
        raise Refused(f"--language must be EN or RU, not {spec.language!r}")
    if spec.half_precision not in (0, 1):
        raise Refused("--half-precision must be 0 or 1")
    for what, value in (("--memory", spec.memory), ("--gpu-memory", spec.gpu_memory or "0G")):
        if not MEMORY.match(value):
            raise Refused(f"{what} {value!r} is not like 40G or 512M")
    for var in spec.forward:
        if not re.match(r"^[A-Z][A-Z0-9_]*$", var):
            raise Refused(f"--forward {var!r} is not an env var name (UPPER_CASE)")
    for host in spec.proxy_hosts:
        if not re.match(r"^[\w.-]+$", host):
            raise Refused(f"--proxy-host {host!r} is not a host name")
    if any("\n" in text for text in (spec.model, spec.license, spec.size, spec.adapter or "")):
        raise Refused("model, licence, size and adapter must be one line")
    if spec.generation_config is not None:
        try:
            config = json.loads(spec.generation_config)
        except ValueError as err:
            raise Refused(f"--generation-config is not JSON: {err}") from None
        if not isinstance(config, dict):
            raise Refused("--generation-config must be a JSON object")
    uses = name_uses(repo, spec.names)
    if uses:
        raise Refused(f"{spec.names.container} is already taken: {', '.join(uses)}")
    for what, port in (("port", spec.port), ("--engine-port", spec.engine_port if spec.vllm else None)):
        if port is None:
            continue
        if not 1024 <= port <= 65535:
            raise Refused(f"{what} {port} is outside 1024..65535")
        if port in taken_ports(repo):
            owner = [names for _, taken, names in repo.tsv_rows if taken == str(port)]
            raise Refused(f"{what} {port} is already taken{f' by {owner[0]}' if owner and owner[0] else ''}")
    if spec.vllm and spec.engine_port == spec.port:
        raise Refused(f"--engine-port {spec.engine_port} is the LLM container's own port")


# --- plans ----------------------------------------------------------------------------------------------------------

def _read(root: Path, rel: str) -> str:
    return (root / rel).read_text()


def _card_path(repo: Repo) -> str:
    alphabet = string.ascii_lowercase + string.digits
    while True:
        rel = f"components/{''.join(secrets.choice(alphabet) for _ in range(20))}.yml"
        if not (repo.root / rel).exists():
            return rel


def plan_add(root, spec: ModelSpec) -> Changes:
    repo = Repo(root)
    validate_engine(spec)
    if spec.port is None:
        spec.port = default_port(repo)
    if spec.vllm and spec.engine_port is None:
        spec.engine_port = free_port_above(repo, spec.port)
    validate(repo, spec)
    names, host = spec.names, spec.names.host(spec.port)
    changes: Changes = {}

    def edit(rel, add, remove):
        """Apply `add` to the current text of `rel`; refuse unless `remove` restores it byte for byte."""
        before = changes.get(rel) or _read(repo.root, rel)
        try:
            after = add(before)
            reverted = remove(after)
        except edits.EditError as err:
            raise Refused(f"{rel}: {err}") from None
        if reverted != before:
            raise Refused(f"{rel}: the edit could not be undone byte for byte; edit this file by hand")
        changes[rel] = after

    rows = [(spec.port, names.container)] + ([(spec.engine_port, names.engine)] if spec.vllm else [])
    for port, name in rows:
        edit(TSV, lambda t, p=port, n=name: edits.add_tsv_row(t, p, n),
             lambda t, p=port, n=name: edits.remove_tsv_row(t, p, n))
    overlays = [("docker-compose.override.yml", templates.override_entry, names.container),
                ("dev.yml", templates.dev_entry, names.container), ("cpu.yml", templates.cpu_entry, names.container)]
    if spec.proxy_hosts:
        overlays.append(("proxy.yml", templates.proxy_entry, names.container))
    if spec.vllm:  # the engine after its front; off where the front runs the model itself or is proxied
        overlays += [("docker-compose.override.yml", templates.engine_override_entry, names.engine),
                     ("dev.yml", templates.engine_dev_entry, names.engine),
                     ("cpu.yml", templates.engine_off_entry, names.engine)]
        if spec.proxy_hosts:
            overlays.append(("proxy.yml", templates.engine_off_entry, names.engine))
    for dist in spec.dists:
        for name, render, container in overlays:
            edit(repo.dist_file(dist, name), lambda t, r=render: edits.add_service(t, r(spec)),
                 lambda t, c=container: edits.remove_service(t, c))
        edit(repo.dist_file(dist, "docker-compose.override.yml"), lambda t: edits.add_wait_host(t, host),
             lambda t: edits.remove_wait_host(t, host))
    edit(ENVVARS, lambda t: edits.add_envvars(t, spec.url, spec.forward),
         lambda t: edits.remove_envvars(t, spec.url))
    edit(MODELS_MD, lambda t: edits.add_models_md_row(t, templates.models_md_row(spec)),
         lambda t: edits.remove_models_md_row(t, names.container))
    if spec.generation_config is None:
        changes[names.gen_config_path] = _read(repo.root, DEFAULT_GEN_CONFIG)
    else:
        config = json.loads(spec.generation_config)
        changes[names.gen_config_path] = json.dumps(config, indent=2) + "\n"
    changes[f"{names.service_config_dir}/environment.yml"] = templates.build_args(spec) + templates.run_env(spec)
    changes[f"{names.service_config_dir}/service.yml"] = templates.service_yml(spec)
    changes[_card_path(repo)] = templates.card(spec, datetime.now().strftime("%Y-%m-%dT%H:%M:%S"))
    return changes


def plan_remove(root, short: str) -> Changes:
    repo = Repo(root)
    names = LLMNames(short)
    if not names.valid:
        raise Refused(f"invalid short name {short!r}")
    container = names.container
    if container not in repo.tsv_ports:
        raise Refused(f"{container} has no row in {TSV}")
    port = repo.tsv_ports[container]
    host, url = names.host(port), names.url(port)
    changes: Changes = {}

    def edit(rel, remove):
        try:
            changes[rel] = remove(changes.get(rel) or _read(repo.root, rel))
        except edits.EditError as err:
            raise Refused(f"{rel}: {err}") from None

    removed = [container] + ([names.engine] if names.engine in repo.tsv_ports else [])
    for name in removed:
        edit(TSV, lambda t, n=name: edits.remove_tsv_row(t, repo.tsv_ports[n], n))
    for dist in repo.dists:
        for file in DIST_FILES:
            rel = repo.dist_file(dist, file)
            for name in removed:
                if name in repo.services(rel):
                    edit(rel, lambda t, n=name: edits.remove_service(t, n))
        if container in repo.components(dist):
            edit(repo.dist_file(dist, DIST_FILES[0]), lambda t: edits.remove_wait_host(t, host))
    if url in repo.envvars:
        edit(ENVVARS, lambda t: edits.remove_envvars(t, url))
    edit(MODELS_MD, lambda t: edits.remove_models_md_row(t, container))
    service_dir = names.service_config_dir
    created = [names.gen_config_path, f"{service_dir}/environment.yml", f"{service_dir}/service.yml"]
    created += [path for path, card in repo.cards.items() if card.get("service") == service_dir]
    for rel in created:
        if (repo.root / rel).exists():
            changes[rel] = None
    return changes


# --- output ----------------------------------------------------------------------------------------------------------

def diff(root, changes: Changes) -> str:
    """A unified diff of every change (created files from /dev/null, deleted ones to /dev/null)."""
    out = []
    for rel, new in changes.items():
        path = Path(root) / rel
        old = path.read_text() if path.exists() else ""
        out += difflib.unified_diff(old.splitlines(True), (new or "").splitlines(True),
                                    "a/" + rel if path.exists() else "/dev/null",
                                    "b/" + rel if new is not None else "/dev/null")
    return "".join(out)


def apply(root, changes: Changes) -> None:
    root = Path(root)
    for rel, new in changes.items():
        path = root / rel
        if new is None:
            path.unlink()
            if is_llm_container(path.parent.name) and not any(path.parent.iterdir()):
                path.parent.rmdir()  # the service config folder the add created
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(new)
