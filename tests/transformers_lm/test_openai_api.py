"""OpenAI-compatible parsing and response shapes: fields map to our generation config, every refusal names
its field, and the official client's pydantic types accept what the builders produce."""
import json

import pytest
from openai.types import Completion, Model
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from services.transformers_lm.api import openai_protocol as api
from common.http import HTTPError
from services.transformers_lm.errors import InvalidField
from services.transformers_lm.generation_params import Limits, merge, parse

CHAT = {"model": "m", "messages": [{"role": "user", "content": "Hi"}]}


def refused(parse_body, body) -> str:
    with pytest.raises(InvalidField) as caught:
        parse_body(body)
    return caught.value.field


def test_chat_maps_openai_parameters_to_generation_config_names():
    request = api.parse_chat({**CHAT, "max_completion_tokens": 5, "temperature": 0, "top_p": 0.5, "n": 3,
                              "stop": "\n", "seed": 7, "user": "u1", "stream": True,
                              "stream_options": {"include_usage": True}})
    assert request.config == {"max_new_tokens": 5, "temperature": 0, "top_p": 0.5, "num_return_sequences": 3,
                              "stop_strings": ["\n"], "seed": 7}
    assert (request.kind, request.stream, request.include_usage, request.model, request.n) == (
        "chat", True, True, "m", 3)


def test_the_config_holds_only_what_the_client_gave_and_generation_params_accepts_it():
    assert api.parse_chat(CHAT).config == {}
    assert api.parse_chat({**CHAT, "max_tokens": None, "temperature": None}).config == {}  # null: not given
    config = api.parse_chat({**CHAT, "max_tokens": 9, "stop": ["a", "b"], "temperature": 0}).config
    params = parse(merge(api.OPENAI_DEFAULTS, config), "body")
    assert (params.max_new_tokens, params.stop_strings, params.num_return_sequences) == (9, ("a", "b"), 1)
    assert params.generate_kwargs["do_sample"] is False  # temperature 0: greedy


def test_messages_keep_roles_and_join_text_parts():
    request = api.parse_chat({"messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
        # what the official client's message.model_dump() sends back
        {"role": "assistant", "content": "ok", "refusal": None, "tool_calls": None, "annotations": []},
    ]})
    assert request.messages == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "a\nb"},
                                {"role": "assistant", "content": "ok"}]
    assert request.model is None and request.stream is False and request.n == 1


@pytest.mark.parametrize("body,field", [
    ([], "body"),
    ({"model": "m"}, "messages"),
    ({"messages": []}, "messages"),
    ({"messages": ["Hi"]}, "messages[0]"),
    ({"messages": [{"role": "user", "content": "a"}, {"role": "tool", "content": "b"}]}, "messages[1].role"),
    ({"messages": [{"role": "assistant", "content": None}]}, "messages[0].content"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
     "messages[0].content[0].type"),
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": 1}]}]}, "messages[0].content[0].text"),
    ({"messages": [{"role": "user", "content": "\ud800"}]}, "messages[0].content[0].text"),  # a lone surrogate
    ({"messages": [{"role": "user", "content": "a", "name": "bob"}]}, "messages[0].name"),
    ({**CHAT, "max_tokens": 0}, "max_tokens"),
    ({**CHAT, "temperature": 2.5}, "temperature"),
    ({**CHAT, "temperature": "hot"}, "temperature"),
    ({**CHAT, "top_p": 0}, "top_p"),
    ({**CHAT, "n": 0}, "n"),
    ({**CHAT, "stop": ""}, "stop"),
    ({**CHAT, "stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ({**CHAT, "stop": ["a", 1]}, "stop"),
    ({**CHAT, "seed": 1.5}, "seed"),
    ({**CHAT, "model": 3}, "model"),
    ({**CHAT, "stream": "yes"}, "stream"),
    ({**CHAT, "stream": True, "stream_options": {"include_usage": 1}}, "stream_options.include_usage"),
    ({**CHAT, "stream": True, "stream_options": {"other": True}}, "stream_options.other"),
    ({**CHAT, "presence_penalty": 0.5}, "presence_penalty"),
    ({**CHAT, "frequency_penalty": 1}, "frequency_penalty"),
    ({**CHAT, "logprobs": True}, "logprobs"),
    ({**CHAT, "tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
    ({**CHAT, "response_format": {"type": "json_object"}}, "response_format"),
    ({**CHAT, "prompt": "x"}, "prompt"),  # a completions parameter
    ({**CHAT, "frobnicate": 1}, "frobnicate"),
])
def test_chat_refusals_name_the_field(body, field):
    assert refused(api.parse_chat, body) == field


def test_max_completion_tokens_wins_over_max_tokens_and_stream_options_need_no_stream():
    """As in vLLM; a whole answer carries `usage` anyway, so `include_usage` without a stream changes nothing."""
    request = api.parse_chat({**CHAT, "max_tokens": 5, "max_completion_tokens": 6,
                              "stream_options": {"include_usage": True}})
    assert (request.config, request.stream, request.include_usage) == ({"max_new_tokens": 6}, False, False)


def test_unimplemented_parameters_at_their_defaults_are_accepted():
    request = api.parse_chat({**CHAT, "presence_penalty": 0, "frequency_penalty": 0.0, "logprobs": False,
                              "tools": [], "tool_choice": "none", "response_format": {"type": "text"},
                              "logit_bias": {}, "store": False, "stream_options": None})
    assert request.config == {}


def test_completion_prompts_and_parameters():
    request = api.parse_completion({"model": "m", "prompt": ["a", "b"], "max_tokens": 4, "n": 2, "echo": False})
    assert (request.kind, request.prompts, request.config, request.n) == (
        "completion", ["a", "b"], {"max_new_tokens": 4, "num_return_sequences": 2}, 2)
    assert api.parse_completion({"prompt": "a"}).prompts == ["a"]
    assert api.parse_completion({"prompt": [5, 6]}).prompts == [[5, 6]]  # token ids, as OpenAI and vLLM take them
    assert api.parse_completion({"prompt": [[5], [6, 7]]}).prompts == [[5], [6, 7]]
    with pytest.raises(InvalidField, match="token ids below 10"):
        api.parse_completion({"prompt": [5, 16]}, Limits(vocab_size=10))


@pytest.mark.parametrize("body,field", [
    ({"model": "m"}, "prompt"),
    ({"prompt": []}, "prompt"),
    ({"prompt": [1, -2, 3]}, "prompt"),  # not token ids
    ({"prompt": ""}, "prompt"),  # no token to continue from
    ({"prompt": ["a", None]}, "prompt"),
    ({"prompt": "a", "echo": True}, "echo"),
    ({"prompt": "a", "logprobs": 0}, "logprobs"),
    ({"prompt": "a", "best_of": 3}, "best_of"),
    ({"prompt": "a", "suffix": "z"}, "suffix"),
    ({"prompt": "a", "max_completion_tokens": 3}, "max_completion_tokens"),  # a chat parameter
    ({"prompt": "a", "messages": []}, "messages"),
])
def test_completion_refusals_name_the_field(body, field):
    assert refused(api.parse_completion, body) == field


def test_chat_completion_is_what_the_official_client_parses():
    body = api.chat_completion("chatcmpl-1", 1700000000, "m", [(0, "Hello", "stop"), (1, "Hel", "length")],
                               api.usage(3, 4))
    parsed = ChatCompletion.model_validate(json.loads(json.dumps(body)))
    assert [choice.message.content for choice in parsed.choices] == ["Hello", "Hel"]
    assert [choice.finish_reason for choice in parsed.choices] == ["stop", "length"]
    assert parsed.choices[0].message.role == "assistant"
    assert (parsed.usage.prompt_tokens, parsed.usage.completion_tokens, parsed.usage.total_tokens) == (3, 4, 7)


def test_chat_chunks_are_what_the_official_client_parses():
    first = api.chat_chunk("chatcmpl-1", 1, "m", [(0, "", None)], with_role=True)
    piece = api.chat_chunk("chatcmpl-1", 1, "m", [(0, "Hel", None)])
    last = api.chat_chunk("chatcmpl-1", 1, "m", [(0, None, "stop")])
    usage = api.chat_chunk("chatcmpl-1", 1, "m", [], api.usage(2, 1))
    chunks = [ChatCompletionChunk.model_validate(body) for body in (first, piece, last, usage)]
    assert chunks[0].choices[0].delta.role == "assistant" and chunks[0].choices[0].delta.content == ""
    assert chunks[1].choices[0].delta.content == "Hel" and chunks[1].choices[0].delta.role is None
    assert chunks[2].choices[0].finish_reason == "stop" and "content" not in last["choices"][0]["delta"]
    assert chunks[3].choices == [] and chunks[3].usage.total_tokens == 3


def test_text_completion_and_its_chunks_are_what_the_official_client_parses():
    body = api.text_completion("cmpl-1", 1, "m", [(0, "a", "stop"), (1, "b", "length")], api.usage(1, 2))
    parsed = Completion.model_validate(body)
    assert [(choice.index, choice.text, choice.finish_reason) for choice in parsed.choices] == [
        (0, "a", "stop"), (1, "b", "length")]
    assert Completion.model_validate(api.completion_chunk("cmpl-1", 1, "m", [(0, "", "stop")])).choices[0].text == ""
    # Intermediate chunks carry finish_reason null, as OpenAI's do (its client builds stream events unvalidated).
    assert api.completion_chunk("cmpl-1", 1, "m", [(0, "x", None)])["choices"][0]["finish_reason"] is None


def test_model_list_and_ids():
    body = api.model_list("tiny", 5)
    assert body["object"] == "list"
    model = Model.model_validate(body["data"][0])
    assert (model.id, model.created, model.object) == ("tiny", 5, "model")
    assert api.new_id("chat").startswith("chatcmpl-") and api.new_id("completion").startswith("cmpl-")
    assert api.new_id("chat") != api.new_id("chat")


def test_sse_events_are_single_data_lines():
    event = api.sse({"text": "line one\nстрока"})
    assert event.startswith("data: ") and event.endswith("\n\n") and event.count("\n") == 2
    assert json.loads(event[len("data: "):]) == {"text": "line one\nстрока"}
    assert api.SSE_DONE == "data: [DONE]\n\n"


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer wrong", "Basic sk-secret", "sk-secret",
                                    "Bearer sk-secret2", "Bearer пароль"])
def test_a_wrong_or_missing_api_key_is_401(header):
    with pytest.raises(HTTPError) as caught:
        api.check_api_key(header, "sk-secret")
    assert (caught.value.status, caught.value.field) == (401, "authorization")


def test_the_right_api_key_or_none_configured_passes():
    api.check_api_key("Bearer sk-secret", "sk-secret")
    api.check_api_key("bearer  sk-secret", "sk-secret")
    api.check_api_key(None, None)
    api.check_api_key("Bearer anything", "")
