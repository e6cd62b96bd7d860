"""`make serve-dist`: a distribution's LLM, skill and Dream agent on 127.0.0.1, under honcho (a Procfile runner:
one prefixed log, Ctrl-C or any process's exit stops them all).

Everything is read from the distribution's own files: the pipeline names the skill and its port, the skill's
compose build args its settings and its default LLM, the LLM's build args that LLM's settings. The LLM process
serves the embedded SmolLM2 whatever model the distribution names (the others need a GPU host; proxy.yml is how
a distribution reaches them), under that LLM's name, port, language and generative config. Each process starts
once the one it calls answers /health.
"""
import argparse
import json
import os
import shlex
import sys
import tempfile
from pathlib import Path

from tools.registry.repo import Repo, build_args, host_port

REPO_ROOT = Path(__file__).resolve().parents[2]
LLM_CONFIG = "services/transformers_lm/gunicorn.conf.py"
SKILL_CONFIG = "skills/dff_universal_prompted_skill/gunicorn.conf.py"
# Build args the local processes take as they are; ports, hosts and URLs are set for 127.0.0.1 instead.
LLM_SETTINGS = ("SERVICE_NAME", "LANGUAGE", "GENERATIVE_CONFIG")
SKILL_SETTINGS = ("SERVICE_NAME", "GENERATIVE_TIMEOUT", "N_UTTERANCES_CONTEXT", "DEFAULT_LM_SERVICE_CONFIG")


def http_skill(pipeline: dict) -> tuple:
    """(service name, container, port) of the pipeline's one HTTP skill."""
    skills = [(name, service["connector"]["url"]) for name, service in pipeline["services"]["skills"].items()
              if service.get("connector", {}).get("protocol") == "http"]
    if len(skills) != 1:
        raise SystemExit(f"expected one HTTP skill in the pipeline, found {len(skills)}")
    name, url = skills[0]
    return (name, *host_port(url))


def commands(dist: str, python: str, agent_python: str, agent_port: int = 4242, skill_port: int = None,
             llm_port: int = None) -> dict:
    """Procfile entries: process name -> shell command."""
    repo = Repo(REPO_ROOT)
    pipeline_path = repo.dist_file(dist, "pipeline_conf.json")
    skill_name, skill_container, default_skill_port = http_skill(json.loads(repo.text(pipeline_path)))
    components = repo.components(dist)
    skill_args = build_args(components[skill_container])
    llm_container, default_llm_port = host_port(skill_args["DEFAULT_LM_SERVICE_URL"])
    llm_args = build_args(components[llm_container])
    skill_port, llm_port = skill_port or default_skill_port, llm_port or default_llm_port
    llm = {"PRETRAINED_MODEL_NAME_OR_PATH": "", "SERVICE_HOST": "127.0.0.1", "SERVICE_PORT": llm_port,
           **{name: llm_args[name] for name in LLM_SETTINGS}}
    skill = {"SERVICE_HOST": "127.0.0.1", "SERVICE_PORT": skill_port,
             "DEFAULT_LM_SERVICE_URL": f"http://127.0.0.1:{llm_port}/respond",
             **{name: skill_args[name] for name in SKILL_SETTINGS}}
    wait, gunicorn = [python, "-m", "scripts.dist.wait"], str(Path(python).with_name("gunicorn"))
    return {
        "llm": command(llm, [gunicorn, "-c", LLM_CONFIG]),
        "skill": command(skill, [*wait, f"http://127.0.0.1:{llm_port}/health", "--", gunicorn, "-c", SKILL_CONFIG]),
        "agent": command({}, [*wait, f"http://127.0.0.1:{skill_port}/health", "--", agent_python, "agent/local.py",
                              "--pipeline", pipeline_path, "--port", str(agent_port),
                              "--service", f"{skill_name}={skill_port}"]),
    }


def command(env: dict, argv: list) -> str:
    assignments = [f"{name}={shlex.quote(str(value))}" for name, value in env.items()]
    return " ".join(["env", *assignments, *map(shlex.quote, argv)])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dist")
    parser.add_argument("--agent-python", required=True, help="the agent's Python 3.7 (its own virtualenv)")
    parser.add_argument("--agent-port", type=int, default=4242)
    parser.add_argument("--skill-port", type=int, help="default: the pipeline's")
    parser.add_argument("--llm-port", type=int, help="default: the skill's default LLM's")
    args = parser.parse_args(argv)
    python = str(Path(sys.executable))
    entries = commands(args.dist, python, args.agent_python, args.agent_port, args.skill_port, args.llm_port)
    procfile = Path(tempfile.mkdtemp(prefix="serve-dist-")) / "Procfile"
    procfile.write_text("".join(f"{name}: {line}\n" for name, line in entries.items()))
    print(f"{args.dist}: the agent will answer on http://127.0.0.1:{args.agent_port}/ once the LLM and the skill are "
          f"up (POST {{\"user_id\", \"payload\"}}; `make chat` talks to it). Dialogs live in memory, as long as the "
          "agent runs. Ctrl-C stops everything.", flush=True)
    honcho = str(Path(sys.executable).with_name("honcho"))
    os.execv(honcho, [honcho, "-f", str(procfile), "-d", str(REPO_ROOT), "start"])


if __name__ == "__main__":
    main()
