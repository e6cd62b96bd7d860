"""A burst of agent requests against the skill in front of a slow real LLM (the tiny model, one row at a time):
every request is answered within the skill's timeout, never left to the agent's connector, and /health stays
instant."""
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from scripts.bench.bench_respond import percentile
from scripts.soak import Probes
from tests.helpers.dream_dialogs import agent_request, make_dialog
from tests.helpers.processes import free_port, gunicorn, tiny_lm_server, wait_http

pytestmark = pytest.mark.processes  # every test here starts real processes

SKILL_CONFIG = "skills/dff_universal_prompted_skill/gunicorn.conf.py"
TIMEOUT = 2.0  # the skill's GENERATIVE_TIMEOUT
SLACK = 1.0  # batch.DEADLINE_SLACK_S
# Long greedy replies: the LLM answers about one request a second, so most of the burst waits for it.
CONFIG = {"max_new_tokens": 300, "min_new_tokens": 300, "do_sample": False, "num_return_sequences": 1}
EMPTY = [[""], [0.0], [{}], [{}], [{}]]


def test_a_burst_is_answered_within_the_timeout_with_empty_replies_past_capacity(tmp_path):
    llm, llm_url = tiny_lm_server(tmp_path / "llm", {"MAX_BATCH_SIZE": "1", "MAX_QUEUE": "64",
                                                     "MAX_NEW_TOKENS": "300", "LOG_LEVEL": "warning"})
    port = free_port()
    skill = gunicorn(SKILL_CONFIG, port, {"DEFAULT_LM_SERVICE_URL": f"{llm_url}/respond", "GENERATIVE_TIMEOUT": "2",
                                          "MAX_CONCURRENT_REQUESTS": "4", "LOG_LEVEL": "warning"},
                     log_path=tmp_path / "skill.log")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/health", timeout=30, process=skill)
        dialog = make_dialog(("Tell me about the sea.", {"lm_service_config": CONFIG}))

        def ask(_):
            started = time.monotonic()
            answer = requests.post(f"{url}/respond", json=agent_request(dialog), timeout=30)
            return answer.status_code, answer.json()[0], time.monotonic() - started

        probes = Probes([f"{url}/health"], 0.02)
        with ThreadPoolExecutor(40) as pool:  # 40 at once, 2 workers admitting 4 each
            answers = list(pool.map(ask, range(40)))
        health = [seconds for _, status, seconds in probes.stop() if status == 200]
    finally:
        skill.stop()
        llm.stop()

    assert {status for status, _, _ in answers} == {200}
    assert max(seconds for _, _, seconds in answers) < TIMEOUT + SLACK + 1.0
    replies = [reply for _, reply, _ in answers]
    assert any(reply == EMPTY for reply in replies) and any(reply[0][0] for reply in replies)
    assert all(reply == EMPTY or (reply[0][0] and reply[1][0] > 0) for reply in replies)
    # Refused at the door: at once, and the log says so.
    assert sorted(seconds for _, _, seconds in answers)[:8][-1] < 0.5
    assert "dialogs answered empty" in (tmp_path / "skill.log").read_text()
    assert len(health) > 20 and percentile(health, 0.99) < 0.1, health
