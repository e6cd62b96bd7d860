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

from tools.registry.naming import GEN_CONFIGS, PLACEHOLDER, LLMNames, is_llm_container
from tools.registry.ports import taken_ports
from tools.registry.repo import DIST_FILES, ENVVARS, MODELS_MD, TSV, Repo, host_port

from . import edits, templates

MEMORY = re.compile(r"^\d+(\.\d+)?[KMG]$")
DEFAULT_GEN_CONFIG = f"{GEN_CONFIGS}/default_generative_config.json"

Changes = dict  # relative path -> new text, or None: delete


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
    proxy_host: str | None = None
    port: int | None = None
    display_name: str | None = None
    author: str = "publisher@deeppavlov.ai"
    open_source: str = "yes"
    adapter: str | None = None  # PEFT adapter on the model (ADAPTER_NAME_OR_PATH); None: none

    @property
    def names(self) -> LLMNames:
        return LLMNames(self.short)

    @property
    def url(self) -> str:
        return self.names.url(self.port)

    @property
    def proxy_pass(self) -> str:
        return f"{self.proxy_host}:{self.port}"

    @property
    def cuda_visible_devices(self) -> str:
        return "0" if self.gpu_memory else ""

    def build_args(self) -> dict:
        return {"SERVICE_PORT": self.port, "SERVICE_NAME": self.names.service_name,
                "PRETRAINED_MODEL_NAME_OR_PATH": self.model, "HALF_PRECISION": self.half_precision,
                "GENERATIVE_CONFIG": self.names.gen_config, "LANGUAGE": self.language}


# --- validation ----------------------------------------------------------------------------------------------------

def default_port(repo: Repo) -> int:
    """The lowest free port above the highest LLM container port of components.tsv."""
    llm_ports = [p for name, p in repo.tsv_ports.items() if is_llm_container(name)]
    port, taken = max(llm_ports, default=8129) + 1, taken_ports(repo)
    while port in taken:
        port += 1
    return port


def name_uses(repo: Repo, names: LLMNames) -> list[str]:
    uses = []
    if names.container in repo.tsv_ports:
        uses.append(TSV)
    uses += [f"assistant_dists/{d}" for d in repo.dists if names.container in repo.components(d)]
    for rel in (names.service_config_dir, names.gen_config_path):
        if (repo.root / rel).exists():
            uses.append(rel)
    uses += [path for path, card in repo.cards.items()
             if card.get("name") == names.service_name or card.get("service") == names.service_config_dir]
    if any(host_port(url)[0] == names.container for url in repo.envvars):
        uses.append(ENVVARS)
    return uses


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
    if spec.proxy_host is not None and not re.match(r"^[\w.-]+$", spec.proxy_host):
        raise Refused(f"--proxy-host {spec.proxy_host!r} is not a host name")
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
    if not 1024 <= spec.port <= 65535:
        raise Refused(f"port {spec.port} is outside 1024..65535")
    if spec.port in taken_ports(repo):
        owner = [names for _, port, names in repo.tsv_rows if port == str(spec.port)]
        raise Refused(f"port {spec.port} is already taken{f' by {owner[0]}' if owner and owner[0] else ''}")


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
    if spec.port is None:
        spec.port = default_port(repo)
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

    edit(TSV, lambda t: edits.add_tsv_row(t, spec.port, names.container),
         lambda t: edits.remove_tsv_row(t, spec.port, names.container))
    overlays = [("docker-compose.override.yml", templates.override_entry), ("dev.yml", templates.dev_entry),
                ("cpu.yml", templates.cpu_entry)]
    if spec.proxy_host:
        overlays.append(("proxy.yml", templates.proxy_entry))
    for dist in spec.dists:
        for name, render in overlays:
            edit(repo.dist_file(dist, name), lambda t, r=render: edits.add_service(t, r(spec)),
                 lambda t: edits.remove_service(t, names.container))
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

    edit(TSV, lambda t: edits.remove_tsv_row(t, port, container))
    for dist in repo.dists:
        for name in DIST_FILES:
            rel = repo.dist_file(dist, name)
            if container in repo.services(rel):
                edit(rel, lambda t: edits.remove_service(t, container))
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
