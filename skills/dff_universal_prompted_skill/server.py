"""Flask app of the universal prompted skill: routes only; the work lives in batch.py."""
import json
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor

import sentry_sdk
from flask import Flask, jsonify, request
from sentry_sdk.integrations.flask import FlaskIntegration

from common import redaction

from .batch import respond_to_batch
from .settings import Settings

logger = logging.getLogger(__name__)

# LLM requests in flight per worker process; dialogs beyond it wait for a free slot.
LLM_CONCURRENCY = 8


def create_app() -> Flask:
    _configure_logging()
    _configure_sentry(os.getenv("SENTRY_DSN"))
    settings = Settings.from_env()
    executor = ThreadPoolExecutor(max_workers=LLM_CONCURRENCY, thread_name_prefix="llm")
    app = Flask(__name__)
    app.json.ensure_ascii = False  # Russian replies stay readable

    @app.post("/respond")
    def respond():
        body = _json_body()
        if not isinstance(body, dict) or not isinstance(body.get("dialog_batch"), list):
            return jsonify(error="expected a JSON object with a 'dialog_batch' list", field="dialog_batch"), 400
        redaction.remember_fields(body)  # e.g. openai_api_key attributes: cut out of any log line or Sentry event
        started = time.monotonic()
        replies = respond_to_batch(body["dialog_batch"], settings, executor)
        logger.info("%s: %d dialogs answered in %.2fs", settings.service_name, len(replies), time.monotonic() - started)
        return jsonify(replies)

    @app.get("/health")
    def health():
        return jsonify(status="ok", service=settings.service_name)

    logger.info(
        "%s ready: default LLM %s, timeout %ss, %d utterances of context",
        settings.service_name,
        settings.default_lm_service_url,
        settings.generative_timeout,
        settings.n_utterances_context,
    )
    return app


def _json_body():
    """The body as JSON, or None. Any content type: not every Dream client sets application/json.
    Nesting deeper than the parser's recursion limit is just another unreadable body."""
    try:
        return json.loads(request.get_data() or b"null")
    except (ValueError, RecursionError):
        return None


def _configure_logging():
    # Under gunicorn, app logs share its handlers and --log-level; elsewhere log INFO to stderr.
    gunicorn_logger = logging.getLogger("gunicorn.error")
    if gunicorn_logger.handlers:
        root = logging.getLogger()
        root.handlers = gunicorn_logger.handlers
        root.setLevel(gunicorn_logger.level)
    else:
        logging.basicConfig(format="%(asctime)s %(name)s %(levelname)s %(message)s", level=logging.INFO)
    redaction.install_logging_filter()
    redaction.remember_environ()  # OPENAI_API_KEY and the like, forwarded from the skill's own environment


def _configure_sentry(dsn):
    if dsn:
        # Request bodies and stack locals may hold forwarded secrets: never send them.
        sentry_sdk.init(
            dsn=dsn,
            integrations=[FlaskIntegration()],
            max_request_body_size="never",
            include_local_variables=False,
            before_send=redaction.before_send,
        )
