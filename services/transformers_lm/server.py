"""Flask app factory of the transformers_lm service: Dream's contract, the OpenAI API and operations routes."""
import threading

from flask import Flask

from common import redaction
from common.bootstrap import bootstrap
from common.http import json_app

from .api.dream_routes import dream_blueprint
from .api.door import Door, refusable
from .api.errors import classify
from .api.metrics import Metrics, instrument
from .api.openai_routes import openai_blueprint
from .api.openapi import openapi_document
from .api.ops_routes import ops_blueprint
from .api.playground_routes import playground_blueprint
from .engine.watchdog import start_watchdog
from .service import LMService, ServiceHolder, service_limits
from .settings import Settings


def create_app(settings: Settings = None, service: LMService = None) -> Flask:
    """The app; without `service`, the model loads in a background thread so /health can say 503 meanwhile."""
    settings = settings or Settings.from_env()
    bootstrap(settings.log_level, settings.sentry_dsn)
    redaction.remember(settings.hf_token)
    metrics = Metrics(queue_length=lambda: holder.queue_length(), in_flight=lambda: door.in_flight,
                      running=lambda: running_sequences(holder), capacity=settings.capacity)
    holder = ServiceHolder(metrics)
    if service is not None:
        holder.serve(service)
    else:
        threading.Thread(target=holder.load, args=(settings,), name="model-loading", daemon=True).start()
        # Only here is the process ours to stop: an app handed a service is embedded (tests, tools).
        start_watchdog(lambda: getattr(holder.service, "engine", None))

    app = json_app(__name__, classify, openai_prefix="/v1")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes  # larger bodies get 413 before being read
    app.extensions["transformers_lm"] = holder
    app.extensions["metrics"] = metrics
    instrument(app, metrics)  # first of the request hooks, so every request is timed
    app.register_blueprint(dream_blueprint(holder))
    app.register_blueprint(openai_blueprint(holder, settings))
    app.register_blueprint(ops_blueprint(holder, metrics, settings))
    app.register_blueprint(playground_blueprint(settings))
    # The operations that wait for the engine are those documented to answer 429.
    gated = refusable(openapi_document(settings.service_name, service_limits(settings)))
    door = Door(app.wsgi_app, settings.capacity, gated, metrics.count_request, "/v1", settings.held_refusals)
    app.wsgi_app = door
    return app


def running_sequences(holder) -> int:
    """The sequences of the continuous engine's running batch; 0 while the model loads, and for engines that keep
    no such list (getattr: the engine's internals may change)."""
    return len(getattr(getattr(holder.service, "engine", None), "running", ()))
