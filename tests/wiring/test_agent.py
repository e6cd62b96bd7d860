"""The distributions for real: the Dream agent (dp-agent 2.2.0 from PyPI, on Python 3.7) drives our skill through
state_formatters/ and the skill calls the LLM service on the embedded SmolLM2, all started as `make serve-dist`
starts them (scripts/dist/serve.py under honcho).

The skill reaches the LLM through a recorder (an undeclared URL would be refused, so the recorder's URL is
declared with ALLOWED_LM_SERVICE_URLS), which shows what the skill sent: the context and the forwarded keys.
"""
import json
import secrets
import socket
import sys
import uuid

import pytest
import requests

from tests.helpers.http_doubles import RecordingServer, closed_port_url
from tests.helpers.processes import REPO_ROOT, Process, free_port, wait_http

pytestmark = pytest.mark.processes  # the agent, the skill and the LLM service, under honcho

AGENT_PYTHON = REPO_ROOT / ".venv-agent/bin/python"  # make agent-setup
EN, RU = "universal_prompted_assistant", "universal_ru_prompted_assistant"
LAST_CHANCE = "Sorry, something went wrong inside. Please tell me, what did you say."  # the pipelines' text
SHORT = {"max_new_tokens": 16, "do_sample": False}
SECRET = f"sk-agent-{secrets.token_hex(8)}"


class Stack:
    """`make serve-dist` of `dist` on free ports, the LLM on `llm_port`; its three logs in one file."""

    def __init__(self, dist: str, log_path, env: dict, llm_port: int = None):
        assert AGENT_PYTHON.exists(), "the agent's virtualenv is missing: make agent-setup"
        llm_port, agent_port = llm_port or free_port(), free_port()
        self.url = f"http://127.0.0.1:{agent_port}/"
        self.process = Process([sys.executable, "-m", "scripts.dist.serve", dist, "--agent-python", str(AGENT_PYTHON),
                                "--agent-port", str(agent_port), "--skill-port", str(free_port()),
                                "--llm-port", str(llm_port)], env=env, log_path=log_path)
        try:
            wait_http(f"{self.url}ping", timeout=300, process=self.process)
        except BaseException:
            self.process.stop()
            raise

    def say(self, user_id: str, text: str, **attributes) -> dict:
        response = requests.post(self.url, json={"user_id": user_id, "payload": text, **attributes}, timeout=300)
        response.raise_for_status()
        return response.json()


@pytest.fixture(scope="module")
def en(tmp_path_factory):
    """The English distribution, with a recorder in front of its LLM to which the skill forwards OPENAI_API_KEY,
    and a declared LLM URL where nothing listens."""
    folder = tmp_path_factory.mktemp("agent")
    llm_port = free_port()
    with RecordingServer(upstream=f"http://127.0.0.1:{llm_port}/respond") as recorder:
        envvars = folder / "envvars_to_send.json"
        envvars.write_text(json.dumps({recorder.url: ["OPENAI_API_KEY"]}))
        down = closed_port_url()
        stack = Stack(EN, folder / "stack.log", {"ALLOWED_LM_SERVICE_URLS": f"{recorder.url},{down}",
                                                 "ENVVARS_TO_SEND_FILE": str(envvars)}, llm_port)
        try:
            yield stack, recorder, down
        finally:
            stack.process.stop()


def new_user() -> str:
    return f"user-{uuid.uuid4().hex[:8]}"


def test_two_turns_of_one_dialog_reach_the_llm_with_their_context(en):
    stack, recorder, _ = en
    user, via = new_user(), {"lm_service_url": recorder.url, "lm_service_config": SHORT}
    first = stack.say(user, "Hi! My name is Alice.", **via)
    second = stack.say(user, "What is the capital of France?", **via)
    assert first["dialog_id"] == second["dialog_id"]
    for answer in (first, second):
        assert answer["active_skill"] == "dff_universal_prompted_skill" and answer["response"].strip()
        assert answer["response"] != LAST_CHANCE
    context = recorder.bodies[-1]["dialog_contexts"][0]
    assert context == ["Hi! My name is Alice.", first["response"], "What is the capital of France?"]


def test_a_new_prompt_mid_dialog_keeps_only_the_turns_since(en):
    stack, recorder, _ = en
    user, via = new_user(), {"lm_service_url": recorder.url, "lm_service_config": SHORT}
    stack.say(user, "Tell me about cats.", prompt="You are a cat expert.", **via)
    answer = stack.say(user, "And about ships?", prompt="You are a sailor.", **via)
    body = recorder.bodies[-1]
    assert body["prompts"] == ["You are a sailor."] and body["dialog_contexts"] == [["And about ships?"]]
    assert answer["response"] != LAST_CHANCE


def test_a_down_llm_gets_the_last_chance_reply_and_no_exception(en):
    stack, recorder, down = en
    answer = stack.say(new_user(), "Hello?", lm_service_url=down)
    assert answer["response"] == LAST_CHANCE
    log = stack.process.log()
    assert "could not be reached" in log and "Traceback" not in log


def test_an_undeclared_llm_url_is_refused_through_the_agent(en):
    stack, recorder, _ = en
    with socket.socket() as undeclared:
        undeclared.bind(("127.0.0.1", 0))
        undeclared.listen(4)
        url = f"http://127.0.0.1:{undeclared.getsockname()[1]}/admin/delete-everything"
        answer = stack.say(new_user(), "Hello?", lm_service_url=url)
        undeclared.setblocking(False)
        with pytest.raises(BlockingIOError):
            undeclared.accept()  # nothing connected
    assert answer["response"] == LAST_CHANCE
    assert f"an undeclared LLM URL was refused: {url}" in stack.process.log()


def test_forwarded_keys_reach_the_llm_and_no_log(en):
    stack, recorder, _ = en
    answer = stack.say(new_user(), "Hi!", lm_service_url=recorder.url, lm_service_config=SHORT, openai_api_key=SECRET)
    assert answer["response"] != LAST_CHANCE
    assert recorder.bodies[-1]["openai_api_keys"] == [SECRET]
    assert SECRET not in stack.process.log()  # the agent's, the skill's and the LLM's lines


def test_the_russian_distribution_answers(tmp_path):
    stack = Stack(RU, tmp_path / "stack.log", {})
    try:
        answer = stack.say(new_user(), "Привет! Как дела?", lm_service_config=SHORT)
    finally:
        stack.process.stop()
    assert answer["active_skill"] == "dff_universal_ru_prompted_skill" and answer["response"].strip()
    assert answer["response"] != LAST_CHANCE
