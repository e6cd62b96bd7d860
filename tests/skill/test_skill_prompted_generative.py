"""Sending one dialog to a prompted generative service: body, answer checks, clear errors."""
import time

import pytest

from common.prompted_generative import GenerativeServiceError, send_request_to_prompted_generative_service
from tests.helpers.http_doubles import RecordingServer, closed_port_url, silent_server


def send(url, sending_variables=None, timeout=2.0):
    return send_request_to_prompted_generative_service(
        ["Hi!"], "Be nice.", url, {"max_new_tokens": 8}, timeout, sending_variables or {}
    )


def test_sends_the_dream_body_and_returns_the_hypotheses():
    with RecordingServer(answer=[["Hello!", "Hi."]]) as llm:
        assert send(llm.url, {"some_api_keys": ["sk"]}) == ["Hello!", "Hi."]
    assert llm.bodies == [
        {
            "dialog_contexts": [["Hi!"]],
            "prompts": ["Be nice."],
            "configs": [{"max_new_tokens": 8}],
            "some_api_keys": ["sk"],
        }
    ]


@pytest.mark.parametrize(
    "status, answer, message",
    [
        (500, {"error": "boom"}, "HTTP 500"),
        (200, b"not json", "other than JSON"),
        (200, {"hypotheses": []}, "unexpected shape"),
        (200, [], "unexpected shape"),
        (200, [[1, 2]], "unexpected shape"),
    ],
)
def test_unusable_answers_raise_a_clear_error(status, answer, message):
    with RecordingServer(answer=answer, status=status) as llm:
        with pytest.raises(GenerativeServiceError, match=message):
            send(llm.url)


def test_a_closed_port_raises_at_once():
    started = time.monotonic()
    with pytest.raises(GenerativeServiceError, match="could not be reached"):
        send(closed_port_url())
    assert time.monotonic() - started < 1


def test_a_silent_server_raises_after_the_timeout():
    with silent_server() as url:
        started = time.monotonic()
        with pytest.raises(GenerativeServiceError, match="did not answer within 0.5s"):
            send(url, timeout=0.5)
    assert time.monotonic() - started < 1.5


def test_forwarded_values_cannot_replace_the_body():
    with pytest.raises(ValueError, match="prompts"):
        send("http://127.0.0.1:1/respond", {"prompts": ["injected"]})
