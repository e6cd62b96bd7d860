"""dp-agent 2.2.0 (PyPI) outside Docker: the distribution's pipeline with its HTTP services at 127.0.0.1, and an
in-memory MongoDB (mongomock-motor), so a dialog lives as long as this process. Runs on the agent's Python 3.7.

    python agent/local.py --pipeline assistant_dists/<dist>/pipeline_conf.json --port 4242 --service NAME=PORT ...

2.2.0 hard-codes motor's client, so it is replaced before the agent starts (and the database file it reads is one
of ours); it merges its -pl files in order, so a generated second one only moves each named service's connector
to 127.0.0.1:PORT. Secrets in the agent's
log lines are redacted as in every component (common/redaction.py).
"""
import argparse
import json
import logging
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import mongomock_motor
import motor.motor_asyncio

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))  # state_formatters, common

from common import redaction  # noqa: E402


def local_connectors(pipeline: dict, ports: dict) -> dict:
    """The pipeline part that points each HTTP service named in `ports` at 127.0.0.1 on its port."""
    overrides = {}
    for group, services in pipeline.get("services", {}).items():
        for name, service in services.items():
            connector = service.get("connector") if isinstance(service, dict) else None
            if isinstance(connector, dict) and name in ports and connector.get("protocol") == "http":
                parts = urlsplit(connector["url"])
                url = urlunsplit((parts.scheme, f"127.0.0.1:{ports[name]}", parts.path, parts.query, ""))
                overrides.setdefault("services", {}).setdefault(group, {})[name] = {"connector": {"url": url}}
    unknown = set(ports) - {name for group in overrides.get("services", {}).values() for name in group}
    if unknown:
        raise SystemExit(f"no HTTP service of the pipeline is named {', '.join(sorted(unknown))}")
    return overrides


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pipeline", required=True)
    parser.add_argument("--port", type=int, default=4242)
    parser.add_argument("--service", action="append", default=[], metavar="NAME=PORT")
    args = parser.parse_args(argv)
    ports = dict(item.split("=", 1) for item in args.service)
    pipeline = json.loads(Path(args.pipeline).read_text(encoding="utf-8"))
    local = tempfile.NamedTemporaryFile("w", suffix=".json", prefix="local-pipeline-", delete=False)
    with local:
        json.dump(local_connectors(pipeline, ports), local)

    motor.motor_asyncio.AsyncIOMotorClient = mongomock_motor.AsyncMongoMockClient
    from deeppavlov_agent import setup_agent
    from deeppavlov_agent.run import main as agent_main  # imports the DB module: after the replacement
    database = tempfile.NamedTemporaryFile("w", suffix=".json", prefix="local-db-", delete=False)
    with database:  # an in-memory database needs no server; the name keeps dialogs of this run together
        json.dump({"host": "localhost", "port": 27017, "name": "dream"}, database)
    setup_agent.DB_CONFIG = database.name
    logging.basicConfig(level=logging.INFO)
    redaction.install_logging_filter(("", "core"))  # "core": the agent's own logger, with its own handler
    redaction.remember_environ()
    sys.argv = ["deeppavlov_agent.run", "-ch", "http_client", "-p", str(args.port), "-pl", args.pipeline,
                "-pl", local.name]
    agent_main()


if __name__ == "__main__":
    main()
