"""Flask app factory of the transformers_lm service (Dream's HTTP contract)."""
import json
import logging
import os
import threading
from functools import partial

from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException

from common import redaction

from .disconnects import client_gone
from .errors import RequestError
from .http_json import json_body
from .lm_service import LMService
from .metrics import Metrics, instrument
from .model_loading import load_model
from .openai_routes import openai_blueprint
from .openapi import docs_page, openapi_document
from .request_parsing import parse_goals, parse_respond
from .settings import Settings
from .watchdog import start_watchdog

logger = logging.getLogger(__name__)


class ServiceHolder:
    """The LMService once the model is loaded; /health and the endpoints read its state."""

    def __init__(self, metrics: Metrics):
        self.metrics = metrics
        self.service = None
        self.error = None

    def serve(self, service: LMService):
        service.engine.metrics = self.metrics
        self.service = service

    def load(self, settings):
        try:
            self.serve(LMService(settings, load_model(settings)))
        except Exception as error:
            logger.exception("model loading failed")
            self.error = f"model loading failed: {type(error).__name__}"

    def ready(self) -> LMService:
        if self.service is None:
            message = self.error or "the model is loading"
            raise RequestError("model", message, status=503, retry_after=5)
        return self.service

    def queue_length(self) -> int:
        """Samples waiting for the model; 0 while it loads (getattr: the engine's internals may change)."""
        engine = getattr(self.service, "engine", None)
        return len(getattr(engine, "pending", ()))


def init_sentry(dsn: str):
    import sentry_sdk
    from sentry_sdk.integrations.flask import FlaskIntegration

    # Request bodies and stack locals may hold forwarded API keys: never send them.
    sentry_sdk.init(dsn=dsn, integrations=[FlaskIntegration()], send_default_pii=False,
                    max_request_body_size="never", include_local_variables=False,
                    before_send=redaction.before_send)


def create_app(settings: Settings = None, service: LMService = None) -> Flask:
    """The app; without `service`, the model loads in a background thread so /health can say 503 meanwhile."""
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO").upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    redaction.install_logging_filter()
    redaction.remember_environ()  # HF_ACCESS_TOKEN and any *_KEY / *_TOKEN the container holds
    settings = settings or Settings.from_env()
    redaction.remember(settings.hf_token)
    if settings.sentry_dsn:
        init_sentry(settings.sentry_dsn)
    metrics = Metrics(queue_length=lambda: holder.queue_length())
    holder = ServiceHolder(metrics)
    if service is not None:
        holder.serve(service)
    else:
        threading.Thread(target=holder.load, args=(settings,), name="model-loading", daemon=True).start()
        # Only here is the process ours to stop: an app handed a service is embedded (tests, tools).
        start_watchdog(lambda: getattr(holder.service, "engine", None))

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes  # larger bodies get 413 before being read
    app.json.ensure_ascii = False  # Russian replies stay readable
    app.extensions["transformers_lm"] = holder
    app.extensions["metrics"] = metrics
    instrument(app, metrics)  # first of the request hooks, so every request is timed
    app.register_blueprint(openai_blueprint(holder, settings))
    spec = openapi_document(settings.service_name)
    docs = docs_page(spec)

    def answer(results, errors):
        """200 with every result; failed samples hold empty strings and are listed in X-Sample-Errors.
        If every sample failed, the first failure is the answer (500, or 504 past the deadline)."""
        failed = {index: error for index, error in enumerate(errors) if error}
        if failed and len(failed) == len(results):
            raise failed[0]
        response = jsonify(results)
        if failed:
            response.headers["X-Sample-Errors"] = json.dumps({index: error.message for index, error in failed.items()})
        return response

    @app.post("/respond")
    def respond():
        tasks = parse_respond(json_body())
        return answer(*holder.ready().respond(tasks, gone=partial(client_gone, request.environ)))

    @app.post("/generate_goals")
    def generate_goals():
        prompts, configs = parse_goals(json_body())
        return answer(*holder.ready().generate_goals(prompts, configs, gone=partial(client_gone, request.environ)))

    @app.route("/ping", methods=["GET", "POST"])
    def ping():
        return "pong"

    @app.get("/health")
    def health():
        service = holder.service
        if service is None:
            status = "error" if holder.error else "loading"
            return jsonify({"status": status, "error": holder.error}), 503
        if not service.engine.alive:
            return jsonify({"status": "error", "error": "the inference thread stopped"}), 503
        return jsonify({"status": "ok", "model": service.loaded.name, "device": str(service.loaded.device),
                        "window": service.loaded.window, "batching": service.engine.stats})

    @app.get("/metrics")
    def prometheus_metrics():
        data, content_type = metrics.render()
        return data, 200, {"Content-Type": content_type}

    @app.get("/openapi.json")
    def openapi_json():
        return jsonify(spec)

    @app.get("/docs")
    def api_docs():
        return docs

    @app.errorhandler(RequestError)
    def request_error(error: RequestError):
        response = jsonify(error.to_json())
        if error.retry_after is not None:
            response.headers["Retry-After"] = str(error.retry_after)
        return response, error.status

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        field = "body" if error.code == 413 else None  # 413: MAX_BODY_BYTES
        return jsonify({"error": error.description, "field": field}), error.code

    @app.errorhandler(Exception)
    def unexpected(error: Exception):
        logger.exception("unhandled error")
        return jsonify({"error": "internal error", "field": None}), 500

    return app
