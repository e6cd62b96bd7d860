"""Which checks exist: each `check_*` takes the repository root and returns its `Problem`s (empty = consistent).

Everything is derived from the files themselves; `components.tsv` is the one port registry. Only a problem about
a missing file or a folder has no line.
"""

from __future__ import annotations

import json
from urllib.parse import urlsplit

from .lines import Problem
from .naming import (ADAPTER, ENGINE, ENGINE_MODEL, ENGINE_OFF, ENGINE_URL, FRONT_REQUIREMENTS, GEN_CONFIGS,
                     REQUIREMENTS, SERVICE_DIR, LLMNames)
from .ports import port_uses
from .repo import (DIST_FILES, ENVVARS, MODELS_MD, ROOT_COMPOSE, TSV, WAIT_HOSTS_AT, Repo, build_args, build_args_at,
                   command_flags, environment, gpu_count, host_port, norm_values, run_env)

CARD_KEYS = (
    "name", "display_name", "component_type", "model_type", "is_customizable", "author", "description",
    "ram_usage", "gpu_usage", "group", "connector", "dialog_formatter", "response_formatter", "previous_services",
    "required_previous_services", "state_manager_method", "tags", "endpoint", "service", "date_created",
)
# The card of an LLM container in front of an engine container also carries the engine's settings; each key is
# the engine command's flag of that name (`nodes`: the Ray cluster's hosts, see MODELS.md).
ENGINE_CARD_KEYS = ("container", "image", "served_model_name", "tensor_parallel_size", "pipeline_parallel_size",
                    "max_model_len", "nodes")
EXTRA_GEN_KEYS = {"replacement"}  # ours, applied to the prompt; not a transformers argument


def _diff(a, b) -> list[str]:
    """Key path to the first difference of two parsed values ([] where they differ as a whole)."""
    if isinstance(a, dict) and isinstance(b, dict):
        key = next((k for k in [*a, *b] if a.get(k) != b.get(k)), None)
        return [] if key is None else [str(key), *_diff(a.get(key), b.get(key))]
    return []


def _run_env_at(spec: dict, keys) -> tuple:
    """Key path of the first of a container's `keys` lines (run env) that its environment has, else of itself."""
    env = run_env(spec)
    return next((("environment", key) for key in keys if key in env), ())


def _run_env_diff(a: dict, b: dict) -> list[str]:
    return [key for key in {**a, **b} if a.get(key) != b.get(key)]


def _switched_off(spec: dict) -> bool:
    """The whole overlay entry is `profiles: [<ENGINE_OFF>]`: compose does not start the container."""
    return set(spec) == {"profiles"} and spec["profiles"] == [ENGINE_OFF]


def check_components_tsv(root) -> list[Problem]:
    repo, problems, seen_port, seen_name = Repo(root), [], {}, {}
    if not (repo.root / TSV).exists():
        return [Problem(TSV, "missing")]
    for n, port, names in repo.tsv_rows:
        if not port.isdigit():
            problems.append(Problem(TSV, f"not '<port>\\t<name>[,<name>...]': {port!r}", n))
            continue
        if port in seen_port:
            problems.append(Problem(TSV, f"port {port} listed twice (also line {seen_port[port]})", n))
        seen_port.setdefault(port, n)
        for name in names:
            if name in seen_name:
                problems.append(Problem(TSV, f"{name} listed twice (also line {seen_name[name]})", n))
            seen_name.setdefault(name, n)
    return problems


def check_ports(root) -> list[Problem]:
    """Each written port equals the container's components.tsv port; each tsv name is a real container."""
    repo, problems = Repo(root), []
    known = set(repo.root_services)
    for dist in repo.dists:
        known |= set(repo.components(dist))
    for path, n, name, port, what in port_uses(repo):
        if name not in repo.tsv_ports:
            problems.append(Problem(path, f"{name}: {what} {port}, but {name} has no row in {TSV}", n))
        elif port != repo.tsv_ports[name]:
            problems.append(Problem(path, f"{name}: {what} is {port}, {TSV} says {repo.tsv_ports[name]}", n))
    for n, _, names in repo.tsv_rows:
        for name in names:
            if name not in known:
                problems.append(Problem(TSV, f"{name} is no container of {ROOT_COMPOSE} or any dist", n))
    return problems


def check_wait_hosts(root) -> list[Problem]:
    """The agent waits for exactly the containers of its dist (root compose included) but the engines: cpu.yml and
    proxy.yml switch those off, and each front's /health says whether its engine answers."""
    repo, problems = Repo(root), []
    for dist in repo.dists:
        override = repo.dist_file(dist, DIST_FILES[0])
        agent = repo.services(override).get("agent") or {}
        listed = {host.partition(":")[0]: host for host in repo.wait_hosts(dist)}
        expected = (set(repo.root_services) | set(repo.components(dist))) - {"agent"} - set(repo.engines(dist))
        for name in sorted(expected - set(listed)):
            problems.append(repo.problem(override, f"WAIT_HOSTS lacks {name}", *WAIT_HOSTS_AT))
        for name in sorted(set(listed) - expected):
            problems.append(repo.problem(override, f"WAIT_HOSTS lists {name}, which this dist does not run",
                                         *WAIT_HOSTS_AT, listed[name]))
        if f"assistant_dists/{dist}/pipeline_conf.json" not in str(agent.get("command", "")):
            problems.append(repo.problem(override, "agent command does not run this dist's pipeline_conf.json",
                                         "services", "agent", "command"))
    return problems


def check_dist_overlays(root) -> list[Problem]:
    """dev/cpu/proxy only touch known containers; dev covers all; cpu.yml puts every LLM on CPU without half
    precision, the ones in front of an engine running the model themselves, and switches the (GPU) engines off;
    proxy.yml switches off the engines of the fronts it proxies and replaces nothing else but by the proxy."""
    repo, problems = Repo(root), []
    for dist in repo.dists:
        comps, fronts = repo.components(dist), repo.fronts(dist)
        proxied = set(repo.services(repo.dist_file(dist, "proxy.yml")))
        # The engines each overlay must switch off: on CPU all (their fronts run the model), proxied fronts' ones.
        off = {"cpu.yml": set(repo.engines(dist)), "proxy.yml": {fronts[name] for name in proxied if name in fronts}}
        for overlay in DIST_FILES[1:]:
            path = repo.dist_file(dist, overlay)
            if not (repo.root / path).exists():
                problems.append(Problem(path, "missing"))
                continue
            services = repo.services(path)
            for name in sorted(set(services) - set(comps) - set(repo.root_services)):
                problems.append(repo.problem(path, f"{name} is not a container of this dist", "services", name))
            if overlay == "dev.yml":
                for name in sorted(set(comps) - set(services)):
                    problems.append(repo.problem(path, f"{name} has no volumes/ports", "services"))
            if overlay == "cpu.yml":
                for name, spec in comps.items():
                    env = environment(services.get(name) or {})
                    on_cpu = env.get("CUDA_VISIBLE_DEVICES") == "" and env.get("HALF_PRECISION") == "0"
                    if repo.is_llm(spec) and not on_cpu:
                        key = "HALF_PRECISION" if env.get("CUDA_VISIBLE_DEVICES") == "" else "CUDA_VISIBLE_DEVICES"
                        message = f'{name} needs CUDA_VISIBLE_DEVICES: "" and HALF_PRECISION: 0'
                        problems.append(repo.problem(path, message, "services", name, "environment", key))
                    if name in fronts and env.get(ENGINE) != "transformers":
                        problems.append(repo.problem(path, f"{name} needs {ENGINE}: transformers (its engine "
                                                     f"{fronts[name]} is off on CPU)", "services", name))
            if overlay == "proxy.yml":
                for name, spec in services.items():
                    context = ((spec.get("build") or {}).get("context") or "").strip("./")
                    if context != "proxy" and name not in off[overlay]:
                        problems.append(repo.problem(path, f"{name} is not built from proxy/",
                                                     "services", name, "build", "context"))
            for name in sorted(off.get(overlay, ())):
                if not _switched_off(services.get(name) or {}):
                    problems.append(repo.problem(path, f"{name} must be switched off here: only "
                                                 f"`profiles: [{ENGINE_OFF}]`", "services", name, "profiles"))
    return problems


def check_same_definition(root) -> list[Problem]:
    """A container used by several dists is one component: same image or build args, command, deploy, adapter and
    engine everywhere."""
    repo, problems = Repo(root), []
    for name, specs in repo.all_components.items():
        (dist0, spec0), *rest = specs
        for dist, spec in rest:
            for key in ("image", "build", "entrypoint", "command", "deploy"):
                if spec.get(key) != spec0.get(key):
                    problems.append(repo.problem(repo.dist_file(dist, DIST_FILES[0]),
                                                 f"{name}: {key} differs from assistant_dists/{dist0}",
                                                 "services", name, key, *_diff(spec.get(key), spec0.get(key))))
            if (keys := _run_env_diff(run_env(spec), run_env(spec0))):
                problems.append(repo.problem(repo.dist_file(dist, DIST_FILES[0]),
                                             f"{name}: {', '.join(keys)} differs from assistant_dists/{dist0}",
                                             "services", name, *_run_env_at(spec, keys)))
    return problems


def check_service_configs(root) -> list[Problem]:
    """service_configs/<container>/{environment,service}.yml mirror the compose definition (environment.yml: the
    build args and the run env: adapter, engine) of every container built here (an engine has none)."""
    repo, problems = Repo(root), []
    proxies = {}
    for dist in repo.dists:
        proxies.update({name: spec for name, spec in repo.services(repo.dist_file(dist, "proxy.yml")).items()
                        if not _switched_off(spec)})
    for name, specs in repo.all_components.items():
        spec = specs[0][1]
        if repo.is_engine(spec):
            continue
        base = repo.service_config_dir(name)
        args, run = build_args(spec), run_env(spec)
        env_path, svc_path = f"{base}/environment.yml", f"{base}/service.yml"
        if not (repo.root / env_path).exists() or not (repo.root / svc_path).exists():
            problems.append(Problem(base, f"{name}: environment.yml or service.yml missing"))
            continue
        env, wanted = norm_values(repo.read_yaml(env_path)), {**args, **run}
        if env != wanted:
            diff = sorted(k for k in env.keys() | wanted.keys() if env.get(k) != wanted.get(k))
            extra = [key for key in {**run, **env} if key not in args]
            what = " and ".join(["build args", *extra])
            problems.append(repo.problem(env_path, f"{name}: differs from its {what} in {', '.join(diff)}",
                                         *_diff(env, wanted)))
        svc = repo.read_yaml(svc_path)
        compose = svc.get("compose") or {}
        compose_args = build_args(compose)
        if svc.get("name") != name:
            problems.append(repo.problem(svc_path, f"name is {svc.get('name')!r}, the container is {name}", "name"))
        if compose_args != args or compose.get("command") != spec.get("command"):
            at = ("build", "args", *_diff(compose_args, args)) if compose_args != args else ("command",)
            problems.append(repo.problem(svc_path, f"{name}: compose build args or command differ from the dist's",
                                         "compose", *at))
        if (keys := _run_env_diff(run_env(compose), run)):
            problems.append(repo.problem(svc_path, f"{name}: compose {', '.join(keys)} differs from the dist's",
                                         "compose", *_run_env_at(compose, keys)))
        if svc.get("proxy") != proxies.get(name):
            problems.append(repo.problem(svc_path, f"{name}: proxy differs from proxy.yml",
                                         "proxy", *_diff(svc.get("proxy"), proxies.get(name))))
    for path in sorted(repo.root.glob("*/*/service_configs/*/")):
        if path.name not in repo.all_components:
            problems.append(Problem(repo.rel(path), f"{path.name} is no container of any dist"))
    return problems


def check_cards(root) -> list[Problem]:
    """One card per container built here, exact keys (`engine` where it fronts one), pointing at its service config;
    its description names any adapter."""
    repo, problems, by_service = Repo(root), [], {}
    for path, card in repo.cards.items():
        if set(card) - {"engine"} != set(CARD_KEYS):
            extra, missing = sorted(set(card) - set(CARD_KEYS) - {"engine"}), sorted(set(CARD_KEYS) - set(card))
            problems.append(repo.problem(path, f"keys differ: missing {missing}, unexpected {extra}", *extra[:1]))
        url = (card.get("connector") or {}).get("url", "")
        service = card.get("service") or ""
        by_service.setdefault(service, []).append(path)
        host, _ = host_port(url)
        if not service.endswith(f"/service_configs/{host}"):
            problems.append(repo.problem(path, f"service {service!r} is not the service config of {host}", "service"))
        if card.get("endpoint") and not url.endswith(f"/{card['endpoint']}"):
            problems.append(repo.problem(path, f"connector url {url} does not end with endpoint {card['endpoint']}",
                                         "connector", "url"))
        adapter = run_env(repo.all_components[host][0][1]).get(ADAPTER) if host in repo.all_components else None
        if adapter and adapter not in " ".join(str(card.get("description", "")).split()):
            problems.append(repo.problem(path, f"description does not name {host}'s adapter {adapter}", "description"))
    for name, specs in repo.all_components.items():
        if repo.is_engine(specs[0][1]):
            continue
        service = repo.service_config_dir(name)
        cards = by_service.get(service, [])
        message = f"{name}: {len(cards)} cards with service {service}"
        if len(cards) != 1:  # a second card: at its service line; none: no file to point into
            problems.append(repo.problem(cards[1], message, "service") if cards else Problem("components", message))
    return problems


def check_models_md(root) -> list[Problem]:
    """Every LLM container has one MODELS.md row, and every row names a container."""
    repo = Repo(root)
    if not (repo.root / MODELS_MD).exists():
        return [Problem(MODELS_MD, "missing")]
    header, rows = repo.models_md_rows
    llms = set(repo.llm_urls)
    problems = [Problem(MODELS_MD, f"no row for {name}", header) for name in sorted(llms - set(rows))]
    problems += [Problem(MODELS_MD, f"{name} is no LLM container", ns[0])
                 for name, ns in rows.items() if name not in llms]
    problems += [Problem(MODELS_MD, f"{name} has {len(ns)} rows", ns[1]) for name, ns in rows.items() if len(ns) > 1]
    return problems


def check_envvars_to_send(root) -> list[Problem]:
    """Exactly one entry per LLM URL; values are lists of env var names."""
    repo = Repo(root)
    urls = set(repo.llm_urls.values())
    problems = [repo.problem(ENVVARS, f"no entry for {url}") for url in sorted(urls - set(repo.envvars))]
    problems += [repo.problem(ENVVARS, f"{url} is no LLM container URL", url)
                 for url in sorted(set(repo.envvars) - urls)]
    problems += [repo.problem(ENVVARS, f"{url}: value must be a list of env var names", url)
                 for url, names in repo.envvars.items()
                 if not (isinstance(names, list) and all(isinstance(x, str) and x.isupper() for x in names))]
    return problems


def check_generative_configs(root) -> list[Problem]:
    """Each LLM has its generative config (`LLMNames.gen_config`); every config uses only generate() argument names."""
    from transformers import GenerationConfig  # slow import: only when this check runs

    repo, problems, known = Repo(root), [], GenerationConfig()
    for name, specs in repo.all_components.items():
        spec = specs[0][1]
        args = build_args(spec)
        skill_cfg = args.get("DEFAULT_LM_SERVICE_CONFIG")
        wanted = LLMNames.of(name).gen_config if repo.is_llm(spec) else skill_cfg
        if repo.is_llm(spec) and args.get("GENERATIVE_CONFIG") != wanted:
            problems.append(repo.problem(repo.dist_file(specs[0][0], DIST_FILES[0]),
                                         f"{name}: GENERATIVE_CONFIG should be {wanted}",
                                         *build_args_at(name), "GENERATIVE_CONFIG"))
        if wanted and not (repo.root / GEN_CONFIGS / wanted).exists():
            problems.append(Problem(f"{GEN_CONFIGS}/{wanted}", f"missing (used by {name})"))
    for rel in sorted(repo.rel(p) for p in (repo.root / GEN_CONFIGS).glob("*.json")):
        try:
            config = json.loads(repo.text(rel))
        except ValueError as err:
            problems.append(Problem(rel, f"invalid JSON: {err}", getattr(err, "lineno", 1)))
            continue
        for key in config:
            if key not in EXTRA_GEN_KEYS and not hasattr(known, key):
                problems.append(repo.problem(rel, f"{key!r} is not a transformers GenerationConfig field", key))
    return problems


def check_pipelines(root) -> list[Problem]:
    """HTTP services of each pipeline_conf.json are containers of the dist and agree with their cards."""
    repo, problems = Repo(root), []
    for dist in repo.dists:
        path = repo.dist_file(dist, "pipeline_conf.json")
        comps = repo.components(dist)
        for svc, keys in repo.pipeline_http_services(dist):
            svc_name, at = ".".join(keys), ("services", *keys)
            url = svc["connector"].get("url", "")
            host, _ = host_port(url)
            if host not in comps:
                problems.append(repo.problem(path, f"{svc_name}: {host} is not a container of this dist",
                                             *at, "connector", "url"))
            card_path = (svc.get("source") or {}).get("component") or ""
            card = repo.cards.get(card_path)
            if card is None:
                problems.append(repo.problem(path, f"{svc_name}: source.component {card_path!r} is no card",
                                             *at, "source", "component"))
                continue
            if (card.get("connector") or {}).get("url") != url:
                problems.append(repo.problem(path, f"{svc_name}: url {url} differs from {card_path}",
                                             *at, "connector", "url"))
            if (svc.get("source") or {}).get("service") != card.get("service"):
                problems.append(repo.problem(path, f"{svc_name}: source.service differs from {card_path}",
                                             *at, "source", "service"))
    return problems


# The settings of a skill that name the LLMs its callers may reach (the skill refuses every other URL).
SKILL_LLM_SETTINGS = ("DEFAULT_LM_SERVICE_URL", "ALLOWED_LM_SERVICE_URLS")


def check_skill_llm_urls(root) -> list[Problem]:
    """Every LLM URL a skill may call, in any compose file of its dist (build args or environment), is an LLM
    of that dist; its default URL is in envvars_to_send.json too."""
    repo, problems = Repo(root), []
    for dist in repo.dists:
        comps = repo.components(dist)
        for file in DIST_FILES:
            path = repo.dist_file(dist, file)
            for name, spec in repo.services(path).items():
                for where, values in (("build", build_args(spec)), ("environment", environment(spec))):
                    at = (*build_args_at(name),) if where == "build" else ("services", name, "environment")
                    for setting in SKILL_LLM_SETTINGS:
                        for url in filter(None, (url.strip() for url in values.get(setting, "").split(","))):
                            host, _ = host_port(url)
                            if host not in comps or not repo.is_llm(comps[host]):
                                problems.append(repo.problem(path, f"{name}: {setting} {url} is no LLM of this dist",
                                                             *at, setting))
                            if setting == SKILL_LLM_SETTINGS[0] and url not in repo.envvars:
                                problems.append(repo.problem(path, f"{name}: {setting} {url} is not in {ENVVARS}",
                                                             *at, setting))
    return problems


def _engine_settings(name: str, spec: dict) -> dict:
    """The card's `engine` values but `nodes`, as the engine container's name, image and command say them."""
    flags = command_flags(spec)
    return {"container": name, "image": spec.get("image"), "served_model_name": flags.get("--served-model-name"),
            "tensor_parallel_size": flags.get("--tensor-parallel-size", "1"),
            "pipeline_parallel_size": flags.get("--pipeline-parallel-size", "1"),
            "max_model_len": flags.get("--max-model-len")}


def _check_engine_card(repo: Repo, path: str, card: dict, engine: str, spec: dict) -> list[Problem]:
    """The card's `engine` names `engine` and agrees with its definition."""
    settings = card.get("engine")
    if not isinstance(settings, dict):
        return [repo.problem(path, f"no `engine` mapping with the settings of {engine}", "connector")]
    if set(settings) != set(ENGINE_CARD_KEYS):
        extra, missing = sorted(set(settings) - set(ENGINE_CARD_KEYS)), sorted(set(ENGINE_CARD_KEYS) - set(settings))
        return [repo.problem(path, f"engine keys differ: missing {missing}, unexpected {extra}", "engine")]
    try:
        tp, pp, nodes = (int(settings[key]) for key in ("tensor_parallel_size", "pipeline_parallel_size", "nodes"))
    except (TypeError, ValueError):
        return [repo.problem(path, "engine sizes must be whole numbers", "engine")]
    problems = [repo.problem(path, f"engine {key} is {settings[key]}, {engine} says {value}", "engine", key)
                for key, value in _engine_settings(engine, spec).items() if str(settings[key]) != str(value)]
    if (command_flags(spec).get("--distributed-executor-backend") == "ray") != (nodes > 1):
        problems.append(repo.problem(path, f"engine nodes is {nodes}: {engine} must "
                                     f"{'' if nodes > 1 else 'not '}run --distributed-executor-backend ray",
                                     "engine", "nodes"))
    if nodes < 1 or (tp * pp) % nodes or gpu_count(spec) != tp * pp // nodes:
        problems.append(repo.problem(path, f"{engine} reserves {gpu_count(spec)} GPUs; tensor x pipeline parallel "
                                     f"{tp}x{pp} on {nodes} node(s) needs {tp * pp / max(nodes, 1):g} per node",
                                     "engine", "tensor_parallel_size"))
    return problems


def check_engines(root) -> list[Problem]:
    """Every ENGINE_URL in any compose file of a dist is `http://<container>:<port>/v1` of another container of the
    dist (its port: check_ports); ENGINE=openai comes with an ENGINE_URL; a REQUIREMENTS build arg names a file of
    the service, and an image built from requirements-front.txt (no torch) runs ENGINE=openai wherever it runs
    (cpu.yml builds it whole); every engine container has a front, whose ENGINE_MODEL is the engine's served name
    and whose card's `engine` agrees with the engine's image, command and GPU reservation."""
    repo, problems = Repo(root), []
    fronted = {}
    for dist in repo.dists:
        comps, fronts = repo.components(dist), repo.fronts(dist)
        override = repo.dist_file(dist, DIST_FILES[0])
        for file in DIST_FILES:
            path = repo.dist_file(dist, file)
            for name, spec in repo.services(path).items():
                own = environment(spec)
                env = {**environment(comps.get(name) or {}), **own}
                if own.get(ENGINE) == "openai" and not env.get(ENGINE_URL):
                    problems.append(repo.problem(path, f"{name}: {ENGINE}=openai needs an {ENGINE_URL}",
                                                 "services", name, "environment", ENGINE))
                requirements = {**build_args(comps.get(name) or {}), **build_args(spec)}.get(REQUIREMENTS)
                if requirements is not None and not (repo.root / SERVICE_DIR / requirements).is_file():
                    problems.append(repo.problem(path, f"{name}: {REQUIREMENTS} {requirements} is no file of "
                                                 f"{SERVICE_DIR}", "services", name, "build", "args", REQUIREMENTS))
                if requirements == FRONT_REQUIREMENTS and env.get(ENGINE) != "openai":
                    at = ("build", "args", REQUIREMENTS) if REQUIREMENTS in build_args(spec) else ()
                    problems.append(repo.problem(path, f"{name}: built from {requirements} (no torch), it can only "
                                                 f"front an engine ({ENGINE}=openai); here it runs the model",
                                                 "services", name, *at))
                if (url := own.get(ENGINE_URL)) is None:
                    continue
                host, parts, at = host_port(url)[0], urlsplit(url), ("services", name, "environment", ENGINE_URL)
                if host == name or host not in comps or not (repo.is_engine(comps[host]) or repo.is_llm(comps[host])):
                    problems.append(repo.problem(path, f"{name}: {ENGINE_URL} {url}: {host or '(no host)'} is no "
                                                 "engine or LLM container of this dist", *at))
                if parts.scheme != "http" or parts.path.rstrip("/") != "/v1":
                    problems.append(repo.problem(path, f"{name}: {ENGINE_URL} {url} is not "
                                                 "http://<container>:<port>/v1", *at))
        for engine in sorted(set(repo.engines(dist)) - set(fronts.values())):
            problems.append(repo.problem(override, f"{engine}: no container's {ENGINE_URL} names it",
                                         "services", engine))
        for front, engine in fronts.items():
            model, served = environment(comps[front]).get(ENGINE_MODEL), command_flags(comps[engine])
            if model is not None and model != served.get("--served-model-name"):
                problems.append(repo.problem(override, f"{front}: {ENGINE_MODEL} {model} is not {engine}'s "
                                             f"--served-model-name {served.get('--served-model-name')}",
                                             "services", front, "environment", ENGINE_MODEL))
            fronted[front] = (engine, comps[engine])
    for path, card in repo.cards.items():
        front = host_port((card.get("connector") or {}).get("url", ""))[0]
        if front in fronted:
            problems += _check_engine_card(repo, path, card, *fronted[front])
        elif "engine" in card:
            problems.append(repo.problem(path, f"{front} fronts no engine container", "engine"))
    return problems


CHECKS = (
    check_components_tsv, check_ports, check_wait_hosts, check_dist_overlays, check_same_definition,
    check_service_configs, check_cards, check_models_md, check_envvars_to_send, check_generative_configs,
    check_pipelines, check_skill_llm_urls, check_engines,
)


def run_all(root) -> list[Problem]:
    return [problem for check in CHECKS for problem in check(root)]
