"""The skill under real gunicorn: against the real LLM, failing LLMs, and a recording receiver."""
import json
import socket
import time

import pytest
import requests

from tests.helpers.dream_dialogs import agent_request, make_dialog
from tests.helpers.http_doubles import RecordingServer, closed_port_url, silent_server
from tests.helpers.processes import free_port, gunicorn, wait_http

pytestmark = pytest.mark.processes  # every test here starts real processes

SKILL_CONFIG = "skills/dff_universal_prompted_skill/gunicorn.conf.py"
TIMEOUT = 2  # GENERATIVE_TIMEOUT of the failure tests, seconds
SLACK = 1.5
PROMPT = {"prompt": "You are a helpful assistant. Answer in one short sentence."}


class Skill:
    def __init__(self, process, port):
        self.process = process
        self.url = f"http://127.0.0.1:{port}"

    def respond(self, *dialogs, timeout=180):
        response = requests.post(f"{self.url}/respond", json=agent_request(*dialogs), timeout=timeout)
        response.raise_for_status()
        return response.json()


@pytest.fixture
def start_skill(tmp_path):
    """start_skill(envvars_to_send={url: [VAR]}, **env) -> a running Skill; all are stopped afterwards."""
    started = []

    def start(envvars_to_send=None, **env):
        envvars_file = tmp_path / f"envvars_to_send_{len(started)}.json"
        envvars_file.write_text(json.dumps(envvars_to_send or {}))
        port = free_port()
        process = gunicorn(
            SKILL_CONFIG,
            port,
            {"ENVVARS_TO_SEND_FILE": str(envvars_file), "GENERATIVE_TIMEOUT": str(TIMEOUT), **env},
            log_path=tmp_path / f"skill_{len(started)}.log",
        )
        started.append(process)
        wait_http(f"http://127.0.0.1:{port}/health", timeout=30, process=process)
        return Skill(process, port)

    yield start
    for process in started:
        process.stop()


def assert_five_parts(reply):
    replies, confidences, human_attributes, bot_attributes, hypothesis_attributes = reply
    parts = (replies, confidences, human_attributes, bot_attributes, hypothesis_attributes)
    assert len({len(part) for part in parts}) == 1


def assert_empty(reply):
    assert reply == [[""], [0.0], [{}], [{}], [{}]]


def test_answers_an_agent_request_with_the_real_llm(lm_server, start_skill):
    skill = start_skill(
        DEFAULT_LM_SERVICE_URL=f"{lm_server}/respond",
        DEFAULT_LM_SERVICE_CONFIG="transformers_lm_smollm2.json",
        GENERATIVE_TIMEOUT="120",
    )
    dialog = make_dialog(
        ("Hi!", PROMPT),
        ("Hello! How can I help you?", {}),
        ("What is the capital of France?", {**PROMPT, "lm_service_config": {"max_new_tokens": 24}}),
    )
    [reply] = skill.respond(dialog)
    assert_five_parts(reply)
    replies, confidences, *_ = reply
    assert replies[0].strip() and confidences[0] > 0
    assert f"{lm_server}/respond answered in" in skill.process.log()


def test_unavailable_llms_give_empty_replies_within_the_timeout(start_skill):
    with silent_server() as silent_url:
        skill = start_skill(DEFAULT_LM_SERVICE_URL=closed_port_url(), ALLOWED_LM_SERVICE_URLS=silent_url)
        to_silent = {"lm_service_url": silent_url}
        dialogs = [
            make_dialog(("Hi!", {})),  # the default URL: a closed port
            make_dialog(("Hi!", to_silent)),
            make_dialog(("Hello?", to_silent)),
            {"utterances": "not a list"},
        ]
        started = time.monotonic()
        replies = skill.respond(*dialogs)
        elapsed = time.monotonic() - started
    for reply in replies:
        assert_empty(reply)
    # Two silent dialogs waited side by side, not one after the other.
    assert TIMEOUT <= elapsed < TIMEOUT + SLACK
    log = skill.process.log()
    assert "dialog 0: empty reply" in log and "could not be reached" in log
    assert f"did not answer within {float(TIMEOUT)}s" in log
    assert "dialog 3: malformed" in log


def test_forwards_variables_by_the_one_naming_rule_and_never_logs_them(start_skill):
    env_secret, attribute_secret = "env-secret-4f1b", "attribute-secret-9c2d"
    with RecordingServer() as llm:
        skill = start_skill(
            envvars_to_send={llm.url: ["SOME_API_KEY"]}, DEFAULT_LM_SERVICE_URL=llm.url, SOME_API_KEY=env_secret
        )
        with_attribute = make_dialog(("from attribute", {"some_api_key": attribute_secret}))
        without_attribute = make_dialog(("from env", {"lm_service_kwargs": {"seed": 7}}))
        replies = skill.respond(with_attribute, without_attribute)
        assert [reply[0] for reply in replies] == [["Hello from the recorder."]] * 2
        bodies = {body["dialog_contexts"][0][0]: body for body in llm.bodies}
        assert bodies["from attribute"]["some_api_keys"] == [attribute_secret]
        assert bodies["from env"]["some_api_keys"] == [env_secret]
        assert bodies["from env"]["seeds"] == [7]

        # A receiver that fails and echoes what it got must not get the secret logged either.
        llm.status, llm.answer = 500, f'{{"error": "bad key {attribute_secret}"}}'.encode()
        replies = skill.respond(with_attribute, without_attribute)
    for reply in replies:
        assert_empty(reply)
    log = skill.process.log()
    assert "answered HTTP 500" in log and "some_api_keys" in log
    assert env_secret not in log and attribute_secret not in log


def test_health_and_bad_requests(start_skill):
    skill = start_skill(DEFAULT_LM_SERVICE_URL=closed_port_url())
    assert requests.get(f"{skill.url}/health", timeout=5).json()["status"] == "ok"
    assert requests.post(f"{skill.url}/respond", json={"dialogs": []}, timeout=5).status_code == 400
    assert requests.post(f"{skill.url}/respond", data=b"{not json", timeout=5).status_code == 400
    # No JSON content type is still read as JSON.
    untyped = requests.post(f"{skill.url}/respond", data=b'{"dialog_batch": [{}]}', timeout=5)
    assert untyped.json() == [[[""], [0.0], [{}], [{}], [{}]]]
    assert skill.respond() == []


def test_only_the_declared_llms_are_ever_called(start_skill):
    """An end user's lm_service_url outside the distribution's LLMs gets no connection, only an empty reply."""
    with RecordingServer() as default, RecordingServer() as listed, RecordingServer() as allowed, \
            socket.socket() as undeclared:
        undeclared.bind(("127.0.0.1", 0))
        undeclared.listen(16)
        port = undeclared.getsockname()[1]
        skill = start_skill(envvars_to_send={listed.url: []}, DEFAULT_LM_SERVICE_URL=default.url,
                            ALLOWED_LM_SERVICE_URLS=f"http://127.0.0.1:1/unused, {allowed.url}")
        refused = [f"http://127.0.0.1:{port}/admin/delete-everything", f"http://127.0.0.1:{port}/respond",
                   listed.url.replace("/respond", "/admin"), f"{listed.url}?x=1",
                   listed.url.replace("127.0.0.1:", "user:s3cret-pass@127.0.0.1:") + "?token=t0ken-in-query"]
        called = ["", listed.url.upper().replace("/RESPOND", "/respond/"), allowed.url]
        replies = skill.respond(*(make_dialog(("Hi!", {"lm_service_url": url})) for url in refused + called))
        undeclared.setblocking(False)
        with pytest.raises(BlockingIOError):
            undeclared.accept()  # no connection is waiting: none was made
        assert [len(server.bodies) for server in (default, listed, allowed)] == [1, 1, 1]
    for reply in replies[:len(refused)]:
        assert_empty(reply)
    assert [reply[0] for reply in replies[len(refused):]] == [["Hello from the recorder."]] * len(called)
    log = skill.process.log()
    assert log.count("an undeclared LLM URL was refused") == len(refused)
    assert f"refused: http://127.0.0.1:{port}/admin/delete-everything" in log
    assert "s3cret-pass" not in log and "t0ken-in-query" not in log
