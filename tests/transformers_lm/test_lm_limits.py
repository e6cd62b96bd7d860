"""transformers_lm limits from the environment: each refusal is a JSON error naming the field and the limit."""
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.helpers.processes import LM_CONFIG, free_port, gunicorn, wait_http

pytestmark = pytest.mark.processes  # every test here starts real processes

LIMITS = {"MAX_BATCH_SIZE": "2", "MAX_QUEUE": "2", "MAX_CONTEXTS": "3", "MAX_BODY_BYTES": "4000",
          "MAX_NEW_TOKENS": "48", "MAX_RETURN_SEQUENCES": "2", "REQUEST_TIMEOUT": "30", "BATCH_WAIT_MS": "0",
          "MAX_INPUT_TOKENS": "120"}
GREEDY = {"do_sample": False, "num_return_sequences": 1, "max_new_tokens": 24}


@pytest.fixture(scope="module")
def limited():
    port = free_port()
    process = gunicorn(LM_CONFIG, port, {"PRETRAINED_MODEL_NAME_OR_PATH": "", **LIMITS})
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/health", timeout=180, process=process)
        yield url
    finally:
        process.stop()


def post(url, body, **kwargs):
    return requests.post(f"{url}/respond", json=body, timeout=120, **kwargs)


@pytest.mark.parametrize("body,field,limit", [
    ({"dialog_contexts": [["a"]] * 4}, "dialog_contexts", "3"),
    ({"dialog_contexts": [["a"]], "configs": [{"max_new_tokens": 49}]}, "configs[0].max_new_tokens", "48"),
    ({"dialog_contexts": [["a"]], "configs": [{"num_return_sequences": 3}]}, "configs[0].num_return_sequences", "2"),
])
def test_limits_name_field_and_limit(limited, body, field, limit):
    response = post(limited, body)
    assert response.status_code == 400
    assert response.json()["field"] == field and limit in response.json()["error"]


def test_max_input_tokens_fits_dialogs_and_refuses_what_cannot_fit(limited):
    long_dialog = [f"Turn number {index} says something about the weather." for index in range(15)]
    assert post(limited, {"dialog_contexts": [long_dialog], "configs": [GREEDY]}).status_code == 200
    one_huge_turn = post(limited, {"dialog_contexts": [["word " * 200]], "configs": [GREEDY]})
    assert one_huge_turn.status_code == 400 and one_huge_turn.json()["field"] == "dialog_contexts[0]"
    assert "MAX_INPUT_TOKENS" in one_huge_turn.json()["error"]
    chat = requests.post(f"{limited}/v1/chat/completions", timeout=60,
                         json={"messages": [{"role": "user", "content": "word " * 200}], "max_tokens": 4})
    assert chat.status_code == 400 and chat.json()["error"]["param"] == "messages"
    assert "MAX_INPUT_TOKENS" in chat.json()["error"]["message"]


def test_body_above_the_size_limit_is_413(limited):
    response = post(limited, {"dialog_contexts": [["x" * 5000]]})
    assert response.status_code == 413 and response.json()["field"] == "body"


def test_a_burst_past_the_queue_gets_429_with_retry_after_and_every_200_is_an_answer(limited):
    body = {"dialog_contexts": [["Name a fruit."]], "configs": [GREEDY]}
    expected = post(limited, body).json()

    with ThreadPoolExecutor(10) as pool:
        responses = list(pool.map(lambda _: post(limited, body), range(10)))
    statuses = [response.status_code for response in responses]
    assert set(statuses) == {200, 429}, statuses
    for response in responses:
        if response.status_code == 429:
            assert response.headers["Retry-After"] == "1" and response.json()["field"] is None  # about no field
        else:
            assert response.json() == expected
    assert post(limited, body).status_code == 200  # the worker is fine afterwards


def test_a_burst_on_v1_gets_openais_429_naming_no_dream_field(limited):
    body = {"prompt": "Name a fruit.", "max_tokens": 8, "temperature": 0}
    with ThreadPoolExecutor(10) as pool:
        responses = list(pool.map(lambda _: requests.post(f"{limited}/v1/completions", json=body, timeout=120),
                                  range(10)))
    refused = [response for response in responses if response.status_code == 429]
    assert refused and all(response.status_code == 200 for response in responses if response not in refused)
    for response in refused:
        error = response.json()["error"]
        assert response.headers["Retry-After"] == "1"
        assert (error["type"], error["code"], error["param"]) == ("rate_limit_error", "rate_limit_exceeded", None)


def test_a_wrong_method_is_405_with_allow_in_the_shape_of_its_path(limited):
    openai = requests.get(f"{limited}/v1/chat/completions", timeout=10)
    assert openai.status_code == 405 and openai.headers["Allow"] == "POST"
    assert openai.json()["error"]["type"] == "invalid_request_error"
    dream = requests.put(f"{limited}/ping", timeout=10)
    assert dream.status_code == 405 and set(dream.headers["Allow"].split(", ")) == {"GET", "HEAD", "POST"}
    assert dream.json() == {"error": dream.json()["error"], "field": None}
