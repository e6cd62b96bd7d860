"""Secrets stay out of logs, error messages and Sentry events (common/redaction.py).

The end-to-end test runs transformers_lm (tiny model) and the skill under real gunicorn, both reporting to a
local Sentry endpoint, sends forwarded keys through every error path (a bad parameter, an LLM that is down,
an LLM answering 500 with the key in its body, and injected faults whose messages quote the key and the HF
token, as a careless client library would), then greps every log line and every Sentry envelope.
"""
import gzip
import io
import json
import logging
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from common import redaction
from tests.helpers.dream_dialogs import agent_request, make_dialog
from tests.helpers.http_doubles import RecordingServer, closed_port_url
from tests.helpers.processes import config_with_hook, free_port, gunicorn, save_tiny_model, tiny_lm, wait_http

FORWARDED_KEY = f"sk-forwarded-{secrets.token_hex(8)}"  # sent straight to the LLM as openai_api_keys
ATTRIBUTE_KEY = f"sk-attribute-{secrets.token_hex(8)}"  # an utterance attribute the skill forwards
ENV_KEY = f"sk-environment-{secrets.token_hex(8)}"  # the skill's own OPENAI_API_KEY
HF_TOKEN = f"hf_{secrets.token_hex(12)}"
SECRETS = (FORWARDED_KEY, ATTRIBUTE_KEY, ENV_KEY, HF_TOKEN)
FAIL_IN_LM, FAIL_IN_SKILL = "fail in the LLM", "fail in the skill"  # texts that make the injected faults fire
SKILL_CONFIG = "skills/dff_universal_prompted_skill/gunicorn.conf.py"

LM_FAULT = f"""
def post_worker_init(worker):
    import os
    from services.transformers_lm.api import dream_routes
    parse = dream_routes.parse_respond

    def parse_respond(body, limits):
        tasks = parse(body, limits)
        if tasks[0].turns[-1] == {FAIL_IN_LM!r}:
            keys = body.get("openai_api_keys") or [None]
            raise RuntimeError(f"upstream rejected key {{keys[0]}} (token {{os.environ['HF_ACCESS_TOKEN']}})")
        return tasks

    dream_routes.parse_respond = parse_respond
"""
SKILL_FAULT = f"""
def post_worker_init(worker):
    from skills.dff_universal_prompted_skill import batch
    send = batch.send_request_to_prompted_generative_service

    def send_request(context, prompt, url, config, timeout, sending_variables):
        if context[-1] == {FAIL_IN_SKILL!r}:
            raise RuntimeError(f"client library said: bad key {{sending_variables['openai_api_keys'][0]}}")
        return send(context, prompt, url, config, timeout, sending_variables)

    batch.send_request_to_prompted_generative_service = send_request
"""


class SentryCollector:
    """A local Sentry endpoint: keeps the text of every envelope posted to it (DSN `self.dsn`)."""

    def __init__(self):
        self.envelopes = []
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                data = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    data = gzip.decompress(data)
                collector.envelopes.append(data.decode("utf-8", errors="replace"))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.dsn = f"http://public@127.0.0.1:{self.server.server_port}/1"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def text(self) -> str:
        return "\n".join(self.envelopes)

    def wait_for(self, *needles, timeout=20.0):
        deadline = time.monotonic() + timeout
        while not all(needle in self.text() for needle in needles):
            assert time.monotonic() < deadline, f"no Sentry event with {needles}: {self.text()[:3000]}"
            time.sleep(0.1)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """(Sentry collector, LM process and URL, skill process and URL, a recorder answering 500)."""
    folder = tmp_path_factory.mktemp("redaction")
    sentry = SentryCollector()
    recorder = RecordingServer(status=500, answer=f'{{"error": "bad keys {ATTRIBUTE_KEY} {ENV_KEY}"}}'.encode())
    lm, lm_url = tiny_lm(save_tiny_model(folder / "model"),
                         {"SENTRY_DSN": sentry.dsn, "HF_ACCESS_TOKEN": HF_TOKEN},
                         config=config_with_hook(folder, LM_FAULT))
    down = closed_port_url()
    envvars = folder / "envvars_to_send.json"
    envvars.write_text(json.dumps({url: ["OPENAI_API_KEY"] for url in (f"{lm_url}/respond", recorder.url, down)}))
    skill_folder = folder / "skill"
    skill_folder.mkdir()
    port = free_port()
    skill = gunicorn(config_with_hook(skill_folder, SKILL_FAULT, base=SKILL_CONFIG), port, {
        "DEFAULT_LM_SERVICE_URL": f"{lm_url}/respond", "ENVVARS_TO_SEND_FILE": str(envvars),
        "GENERATIVE_TIMEOUT": "30", "SENTRY_DSN": sentry.dsn, "OPENAI_API_KEY": ENV_KEY})
    try:
        with recorder:
            wait_http(f"{lm_url}/health", timeout=120, process=lm)
            wait_http(f"http://127.0.0.1:{port}/health", timeout=30, process=skill)
            yield sentry, (lm, lm_url), (skill, f"http://127.0.0.1:{port}"), recorder, down
    finally:
        skill.stop()
        lm.stop()
        sentry.close()


@pytest.mark.processes
def test_forwarded_keys_and_tokens_never_reach_logs_or_sentry(stack):
    sentry, (lm, lm_url), (skill, skill_url), recorder, down = stack
    forwarded = {"openai_api_keys": [FORWARDED_KEY]}

    answers = [
        requests.post(f"{lm_url}/respond", json={"dialog_contexts": [["hi"]], "configs": [{"temperature": -1}],
                                                 **forwarded}, timeout=30),
        requests.post(f"{lm_url}/respond", json={"dialog_contexts": [["hi"]], **forwarded}, timeout=30),
        requests.post(f"{lm_url}/respond", json={"dialog_contexts": [[FAIL_IN_LM]], **forwarded}, timeout=30),
    ]
    assert [answer.status_code for answer in answers] == [400, 200, 500]

    with_key = {"openai_api_key": ATTRIBUTE_KEY, "lm_service_config": {"max_new_tokens": 4}}
    dialogs = [
        make_dialog(("Hello", with_key)),  # answered
        make_dialog(("Hello", {**with_key, "lm_service_config": {"temperature": -1}})),  # a bad parameter: 400
        make_dialog(("Hello", {**with_key, "lm_service_url": down})),  # the LLM is down
        make_dialog(("Hello", {**with_key, "lm_service_url": recorder.url})),  # 500 echoing the keys
        make_dialog(("Hello", {"lm_service_url": recorder.url})),  # the skill's own key, 500 echoing it
        make_dialog((FAIL_IN_LM, with_key)),  # the LLM fails on it: 500
        make_dialog((FAIL_IN_SKILL, with_key)),  # the skill's client fails quoting the key
        make_dialog((FAIL_IN_SKILL, {})),  # the same with the skill's own key
    ]
    skill_answer = requests.post(f"{skill_url}/respond", json=agent_request(*dialogs), timeout=60)
    assert skill_answer.status_code == 200
    assert [reply[1][0] > 0 for reply in skill_answer.json()] == [True] + [False] * 7
    # Forwarding itself is untouched: the receiver got the keys.
    assert {body["openai_api_keys"][0] for body in recorder.bodies} == {ATTRIBUTE_KEY, ENV_KEY}

    # The injected faults were logged and reported, with the secrets cut out.
    sentry.wait_for(f"upstream rejected key {redaction.REDACTED} (token {redaction.REDACTED})",
                    f"client library said: bad key {redaction.REDACTED}")
    time.sleep(1.0)  # let the second skill event and any late log lines arrive
    logs = {"transformers_lm": lm.log(), "skill": skill.log()}
    assert "upstream rejected key [REDACTED] (token [REDACTED])" in logs["transformers_lm"]
    assert logs["skill"].count("client library said: bad key [REDACTED]") >= 2
    assert "answered HTTP 500" in logs["skill"] and "could not be reached" in logs["skill"]
    for name, text in {**logs, "Sentry": sentry.text(), "HTTP answers": "".join(
            answer.text for answer in answers + [skill_answer])}.items():
        for secret in SECRETS:
            assert secret not in text, f"{secret} in {name}"


def test_redact_replaces_secret_fields_at_any_depth_and_known_values_in_text():
    redaction.remember("sk-unit-0123456789")
    data = {"openai_api_keys": ["sk-a"], "configs": [{"max_new_tokens": 5, "HF_Access_Token": "t"}],
            "nested": [{"client_secret": {"deep": 1}, "x_credentials": None}],
            "message": "refused sk-unit-0123456789 twice: sk-unit-0123456789"}
    assert redaction.redact(data) == {
        "openai_api_keys": "[REDACTED]", "configs": [{"max_new_tokens": 5, "HF_Access_Token": "[REDACTED]"}],
        "nested": [{"client_secret": "[REDACTED]", "x_credentials": None}],
        "message": "refused [REDACTED] twice: [REDACTED]"}
    assert data["openai_api_keys"] == ["sk-a"]  # a copy: the caller's data is kept


def test_request_fields_become_known_even_nested_past_the_recursion_limit():
    body = {"dialog_batch": [{"attributes": {"openai_api_key": "sk-nested-secret-42"}}]}
    for _ in range(5000):
        body = {"wrapped": [body]}
    redaction.remember_fields(body)
    assert redaction.scrub("echo: sk-nested-secret-42") == "echo: [REDACTED]"


def test_logging_filter_redacts_arguments_messages_and_tracebacks():
    redaction.remember("sk-logged-0123456789")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("tests.redaction")
    logger.addHandler(handler)
    try:
        redaction.install_logging_filter([logger.name])
        logger.warning("body %s, key %s", {"api_key": "sk-in-a-dict"}, "sk-logged-0123456789")
        try:
            raise RuntimeError("upstream said sk-logged-0123456789")
        except RuntimeError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    output = stream.getvalue()
    assert "sk-in-a-dict" not in output and "sk-logged-0123456789" not in output
    assert "{'api_key': '[REDACTED]'}, key [REDACTED]" in output and "upstream said [REDACTED]" in output
