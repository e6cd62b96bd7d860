"""OpenAI-compatible API minus HTTP and the model: request bodies parsed into our generation config
(HF GenerationConfig names, see generation_params.py), response bodies and stream events in OpenAI's shapes.

OpenAI parameters this service does not implement are refused with a 400 naming them unless they hold
their do-nothing default: a client must never silently get other behaviour than it asked for.
"""
import hmac
import json
import uuid
from dataclasses import dataclass

from .errors import RequestError
from .generation_params import CHECKS
from .request_parsing import require_object

ROLES = ("system", "user", "assistant")
MAX_STOP_STRINGS = 4  # OpenAI's limit
MAX_TEMPERATURE = 2.0
# OpenAI's n defaults to 1 whatever the model's Dream config says, and a reply may be as short as the model
# likes (Dream's min_new_tokens would hold back EOS): merge this under the request's config.
OPENAI_DEFAULTS = {"num_return_sequences": 1, "min_new_tokens": 0}

# Unimplemented parameters -> the values that leave the output as if they were absent.
COMMON_DEFAULTS = {
    "frequency_penalty": (None, 0),
    "presence_penalty": (None, 0),
    "logit_bias": (None, {}),
}
CHAT_DEFAULTS = {
    **COMMON_DEFAULTS,
    "logprobs": (None, False),
    "top_logprobs": (None, 0),
    "tools": (None, []),
    "tool_choice": (None, "none", "auto"),  # without tools both mean no tool call
    "parallel_tool_calls": (None, True, False),
    "functions": (None, []),
    "function_call": (None, "none", "auto"),
    "response_format": (None, {"type": "text"}),
    "modalities": (None, ["text"]),
    "audio": (None,),
    "prediction": (None,),
    "reasoning_effort": (None,),
    "verbosity": (None,),
    "web_search_options": (None,),
    "store": (None, False),
    "metadata": (None, {}),
    "service_tier": (None, "auto", "default"),
}
COMPLETION_DEFAULTS = {
    **COMMON_DEFAULTS,
    "logprobs": (None,),
    "echo": (None, False),
    "suffix": (None, ""),
    "best_of": (None, 1),
}
# Message keys the official client echoes back from a previous reply, always empty here.
MESSAGE_DEFAULTS = (None, [])


def _temperature(value):
    value = CHECKS["temperature"](value)
    if value > MAX_TEMPERATURE:
        raise ValueError(f"must be in [0.0, {MAX_TEMPERATURE}]")
    return value


def _stop(value):
    strings = CHECKS["stop_strings"](value)
    if len(strings) > MAX_STOP_STRINGS:
        raise ValueError(f"must hold at most {MAX_STOP_STRINGS} strings")
    return strings


# OpenAI name -> (GenerationConfig name, check raising ValueError).
PARAMETERS = {
    "max_tokens": ("max_new_tokens", CHECKS["max_new_tokens"]),
    "max_completion_tokens": ("max_new_tokens", CHECKS["max_new_tokens"]),
    "temperature": ("temperature", _temperature),
    "top_p": ("top_p", CHECKS["top_p"]),
    "n": ("num_return_sequences", CHECKS["num_return_sequences"]),
    "stop": ("stop_strings", _stop),
    "seed": ("seed", CHECKS["seed"]),
}
SHARED_KEYS = ("model", "max_tokens", "temperature", "top_p", "n", "stop", "seed", "stream", "stream_options",
               "user")  # user: an end-user id for abuse tracking, it never changes the output
CHAT_KEYS = ("messages", "max_completion_tokens", *SHARED_KEYS)
COMPLETION_KEYS = ("prompt", *SHARED_KEYS)


@dataclass(frozen=True)
class OpenAIRequest:
    kind: str  # "chat" or "completion"
    config: dict  # generation parameters in GenerationConfig names, only those the client gave
    messages: list = None  # chat: [{"role": ..., "content": str}, ...]
    prompts: list = None  # completion: each prompt gets n choices, index prompt_index * n + i
    stream: bool = False
    include_usage: bool = False
    model: str = None  # echoed back; None: the client gave none

    @property
    def n(self) -> int:
        return self.config.get("num_return_sequences", OPENAI_DEFAULTS["num_return_sequences"])


def parse_chat(body) -> OpenAIRequest:
    """POST /v1/chat/completions body -> OpenAIRequest; RequestError names the offending field."""
    body = require_object(body)
    _refuse_unknown(body, CHAT_KEYS, CHAT_DEFAULTS)
    return OpenAIRequest("chat", _config(body), messages=_messages(body.get("messages")), **_common(body))


def parse_completion(body) -> OpenAIRequest:
    """POST /v1/completions body -> OpenAIRequest; RequestError names the offending field."""
    body = require_object(body)
    _refuse_unknown(body, COMPLETION_KEYS, COMPLETION_DEFAULTS)
    return OpenAIRequest("completion", _config(body), prompts=_prompts(body.get("prompt")), **_common(body))


def _refuse_unknown(body: dict, keys: tuple, defaults: dict):
    for name, value in body.items():
        if name in keys:
            continue
        if name not in defaults:
            raise RequestError(name, f"{name} is not a parameter of this endpoint")
        if value not in defaults[name]:
            allowed = " or ".join(json.dumps(item) for item in defaults[name])
            raise RequestError(name, f"{name} is not supported by this service: leave it out or send {allowed}")


def _config(body: dict) -> dict:
    config = {}
    for name, (target, check) in PARAMETERS.items():
        value = body.get(name)
        if value is None:  # OpenAI's parameters are nullable: null means not given
            continue
        if target in config:
            raise RequestError(name, "give max_tokens or max_completion_tokens, not both")
        try:
            check(value)
        except ValueError as error:
            raise RequestError(name, f"{name} {error}") from None
        config[target] = value  # as given: generation_params validates the merged config again
    return config


def _common(body: dict) -> dict:
    model, stream, options = body.get("model"), body.get("stream"), body.get("stream_options")
    if model is not None and not isinstance(model, str):
        raise RequestError("model", "must be a string")
    if stream is not None and not isinstance(stream, bool):
        raise RequestError("stream", "must be true or false")
    include_usage = None
    if options is not None:
        if not stream:
            raise RequestError("stream_options", "is only allowed with stream: true")
        if not isinstance(options, dict):
            raise RequestError("stream_options", "must be an object")
        for name, value in options.items():
            if name != "include_usage":
                raise RequestError(f"stream_options.{name}", f"{name} is not supported by this service")
            if not isinstance(value, bool):
                raise RequestError("stream_options.include_usage", "must be true or false")
        include_usage = options.get("include_usage")
    return {"stream": bool(stream), "include_usage": bool(include_usage), "model": model}


def _messages(value) -> list:
    if not isinstance(value, list) or not value:
        raise RequestError("messages", "must be a non-empty list of messages")
    return [_message(item, f"messages[{index}]") for index, item in enumerate(value)]


def _message(item, field: str) -> dict:
    if not isinstance(item, dict):
        raise RequestError(field, "must be an object with role and content")
    role = item.get("role")
    if not isinstance(role, str) or role not in ROLES:
        raise RequestError(f"{field}.role", f"must be one of {', '.join(ROLES)}")
    for name, value in item.items():
        if name not in ("role", "content") and value not in MESSAGE_DEFAULTS:
            raise RequestError(f"{field}.{name}", f"{name} is not supported by this service")
    return {"role": role, "content": _content(item.get("content"), f"{field}.content")}


def _content(value, field: str) -> str:
    if isinstance(value, str):
        return value
    if not isinstance(value, list) or not value:
        raise RequestError(field, "must be a string or a non-empty list of text parts")
    texts = []
    for index, part in enumerate(value):
        where = f"{field}[{index}]"
        if not isinstance(part, dict) or part.get("type") != "text":
            raise RequestError(where, 'only text parts ({"type": "text", "text": ...}) are supported')
        if not isinstance(part.get("text"), str):
            raise RequestError(f"{where}.text", "must be a string")
        texts.append(part["text"])
    return "\n".join(texts)


def _prompts(value) -> list:
    prompts = [value] if isinstance(value, str) else value
    if not isinstance(prompts, list) or not prompts:
        raise RequestError("prompt", "must be a string or a non-empty list of strings")
    for index, prompt in enumerate(prompts):
        if not isinstance(prompt, str):
            raise RequestError(f"prompt[{index}]", "must be a string (token ids are not supported)")
    return prompts


def check_api_key(authorization: str, api_key: str):
    """With an API key configured, `Authorization: Bearer <key>` must carry it (401 otherwise)."""
    if not api_key:
        return
    scheme, _, token = (authorization or "").partition(" ")
    # compare_digest: the time taken must not tell how much of a guess was right.
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), api_key.encode()):
        raise RequestError("authorization", "a valid API key is required: Authorization: Bearer <key>", status=401)


def new_id(kind: str) -> str:
    """A response id in OpenAI's style: chatcmpl-... for chat, cmpl-... for completions."""
    return f"{'chatcmpl' if kind == 'chat' else 'cmpl'}-{uuid.uuid4().hex}"


def usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def _envelope(object_type: str, id: str, created: int, model: str, choices: list, usage: dict) -> dict:
    return {"id": id, "object": object_type, "created": created, "model": model, "choices": choices,
            "usage": usage}


def chat_completion(id: str, created: int, model: str, choices, usage: dict = None) -> dict:
    """choices: (index, text, finish_reason) with finish_reason "stop" or "length"."""
    return _envelope("chat.completion", id, created, model, [
        {"index": index, "message": {"role": "assistant", "content": text}, "finish_reason": finish_reason,
         "logprobs": None}
        for index, text, finish_reason in choices], usage)


def chat_chunk(id: str, created: int, model: str, choices, usage: dict = None, with_role: bool = False) -> dict:
    """One stream event. choices: (index, new text or None, finish_reason or None); `with_role` marks
    the first chunk of a choice. The usage chunk has no choices."""
    role = {"role": "assistant"} if with_role else {}
    return _envelope("chat.completion.chunk", id, created, model, [
        {"index": index, "delta": {**role, **({} if text is None else {"content": text})},
         "finish_reason": finish_reason, "logprobs": None}
        for index, text, finish_reason in choices], usage)


def text_completion(id: str, created: int, model: str, choices, usage: dict = None) -> dict:
    """choices: (index, text, finish_reason) with finish_reason "stop" or "length"."""
    return _envelope("text_completion", id, created, model, [
        {"index": index, "text": text, "finish_reason": finish_reason, "logprobs": None}
        for index, text, finish_reason in choices], usage)


# OpenAI streams completions in the completion shape itself: new text per choice, finish_reason null until the end.
completion_chunk = text_completion


def model_list(model_name: str, created: int, owned_by: str = "transformers_lm") -> dict:
    return {"object": "list",
            "data": [{"id": model_name, "object": "model", "created": created, "owned_by": owned_by}]}


# HTTP status -> (OpenAI error type, code); other 4xx are invalid_request_error, 5xx server_error.
ERROR_KINDS = {
    401: ("authentication_error", "invalid_api_key"),
    403: ("permission_error", None),
    404: ("not_found_error", None),
    429: ("rate_limit_error", "rate_limit_exceeded"),
}


def error_body(message: str, field: str, status: int) -> dict:
    default = ("server_error", None) if status >= 500 else ("invalid_request_error", None)
    error_type, code = ERROR_KINDS.get(status, default)
    return {"error": {"message": message, "type": error_type, "param": field, "code": code}}


def sse(payload: dict) -> str:
    """One server-sent event; json.dumps escapes newlines, so the data stays on one line."""
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"


SSE_DONE = "data: [DONE]\n\n"
