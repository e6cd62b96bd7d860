"""Flask app of the universal prompted skill: routes only; the work lives in batch.py."""
import logging
import time
from concurrent.futures import ThreadPoolExecutor

from flask import Flask, jsonify

from common import redaction
from common.admission import Gate
from common.bootstrap import bootstrap
from common.http import HTTPError, json_app, json_body

from .batch import respond_to_batch
from .replies import empty_reply
from .settings import Settings

logger = logging.getLogger(__name__)

# LLM requests in flight per worker process; dialogs beyond it wait for a free slot.
LLM_CONCURRENCY = 8


def create_app() -> Flask:
    settings = Settings.from_env()
    bootstrap(settings.log_level, settings.sentry_dsn)
    executor = ThreadPoolExecutor(max_workers=LLM_CONCURRENCY, thread_name_prefix="llm")
    door = Gate(settings.max_concurrent_requests)
    app = json_app(__name__)

    @app.post("/respond")
    def respond():
        body = json_body()
        if not isinstance(body, dict) or not isinstance(body.get("dialog_batch"), list):
            raise HTTPError(400, "expected a JSON object with a 'dialog_batch' list", "dialog_batch")
        redaction.remember_fields(body)  # e.g. openai_api_key attributes: cut out of any log line or Sentry event
        if not door.enter():  # a burst: an answer the agent can use now beats a wait past its timeout
            logger.warning("%s: %d dialogs answered empty: %d requests in flight already", settings.service_name,
                           len(body["dialog_batch"]), door.capacity)
            return jsonify([empty_reply() for _ in body["dialog_batch"]])
        started = time.monotonic()
        try:
            replies = respond_to_batch(body["dialog_batch"], settings, executor)
        finally:
            door.leave()
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
