"""The OpenAPI 3.1 document of every route the app serves, and the /docs page rendered from it.

tests/test_openapi.py validates the document and compares its paths with the app's URL map.
"""
from jinja2.sandbox import ImmutableSandboxedEnvironment

from .openai_api import CHAT_DEFAULTS, COMPLETION_DEFAULTS, MAX_STOP_STRINGS, MAX_TEMPERATURE, ROLES


def ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def array(items: dict, **extra) -> dict:
    return {"type": "array", "items": items, **extra}


def json_body(schema: dict, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def request_body(schema: str) -> dict:
    return {"required": True, "content": {"application/json": {"schema": ref(schema)}}}


def text_body(media_type: str, description: str) -> dict:
    return {"description": description, "content": {media_type: {"schema": {"type": "string"}}}}


def errors(schema: str, statuses: dict) -> dict:
    return {str(status): json_body(ref(schema), description) for status, description in statuses.items()}


STRING = {"type": "string"}
NULLABLE_STRING = {"type": ["string", "null"]}
INTEGER = {"type": "integer"}
CONFIG = {"type": ["object", "null"], "description": "generation parameters (HF GenerationConfig names) merged "
                                                     "over the model's defaults; null: the defaults"}
DREAM_ERRORS = {400: "a bad field, named in `field`", 413: "the body is larger than MAX_BODY_BYTES",
                429: "the queue is full (Retry-After)", 500: "generation failed for every sample",
                503: "the model is loading (Retry-After)", 504: "past REQUEST_TIMEOUT"}
OPENAI_ERRORS = {400: "a bad parameter, named in `error.param`", 401: "API_KEY is set and the bearer token is not it",
                 413: "the body is larger than MAX_BODY_BYTES", 429: "the queue is full (Retry-After)",
                 500: "generation failed", 503: "the model is loading (Retry-After)", 504: "past REQUEST_TIMEOUT"}
SAMPLE_ERRORS = {"X-Sample-Errors": {"description": "JSON object: index of each failed sample -> its error; "
                                                    "those samples hold empty strings",
                                     "schema": STRING}}


def default_only(defaults: dict) -> dict:
    """Unimplemented OpenAI parameters: documented as accepted only with their do-nothing values."""
    return {name: {"enum": list(values), "description": "not supported: only this default is accepted"}
            for name, values in defaults.items()}


def nullable(schema: dict) -> dict:
    """OpenAI's parameters are nullable: null means not given."""
    return {"anyOf": [schema, {"type": "null"}]}


SAMPLING = {name: nullable(schema) for name, schema in {
    "model": {"type": "string", "description": "echoed back; this service serves one model"},
    "max_tokens": {"type": "integer", "minimum": 1},
    "temperature": {"type": "number", "minimum": 0, "maximum": MAX_TEMPERATURE, "description": "0: greedy"},
    "top_p": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
    "n": {"type": "integer", "minimum": 1, "default": 1},
    "stop": {"oneOf": [{"type": "string", "minLength": 1},
                       array({"type": "string", "minLength": 1}, maxItems=MAX_STOP_STRINGS)]},
    "seed": {"type": "integer", "minimum": 0},
    "stream": {"type": "boolean", "default": False, "description": "server-sent events, ended by `data: [DONE]`"},
    "stream_options": {"type": "object", "properties": {"include_usage": {"type": "boolean"}},
                       "additionalProperties": False},
    "user": {"type": "string", "description": "accepted and ignored"},
}.items()}
USAGE = {"type": "object", "required": ["prompt_tokens", "completion_tokens", "total_tokens"],
         "properties": {"prompt_tokens": INTEGER, "completion_tokens": INTEGER, "total_tokens": INTEGER}}
FINISH_REASON = {"enum": ["stop", "length"]}


def envelope(object_type: str, choice: dict) -> dict:
    return {"type": "object", "required": ["id", "object", "created", "model", "choices"],
            "properties": {"id": STRING, "object": {"const": object_type}, "created": INTEGER, "model": STRING,
                           "choices": array(choice), "usage": {"oneOf": [ref("Usage"), {"type": "null"}]}}}


def choice(**properties) -> dict:
    return {"type": "object", "required": ["index", *properties],
            "properties": {"index": INTEGER, **properties}}


SCHEMAS = {
    "DreamError": {"type": "object", "required": ["error", "field"],
                   "properties": {"error": STRING, "field": NULLABLE_STRING}},
    "RespondRequest": {
        "type": "object", "required": ["dialog_contexts"],
        "properties": {
            "dialog_contexts": array(array(STRING, minItems=1), minItems=1,
                                     description="one dialog per sample, its utterances oldest first"),
            "prompts": {"type": ["array", "null"], "items": NULLABLE_STRING,
                        "description": "one instruction per context; missing or null: \"\""},
            "configs": {"type": ["array", "null"], "items": CONFIG},
        },
        "additionalProperties": {"description": "values a skill forwards (`<lowercase env var>s`, one per context): "
                                                "accepted and ignored"},
    },
    "GoalsRequest": {"type": "object", "required": ["prompts"],
                     "properties": {"prompts": array(STRING, minItems=1),
                                    "configs": {"type": ["array", "null"], "items": CONFIG}}},
    "Health": {"type": "object", "required": ["status"],
               "properties": {"status": {"enum": ["ok", "loading", "error"]}, "error": NULLABLE_STRING,
                              "model": STRING, "device": STRING, "window": INTEGER, "batching": {"type": "object"}}},
    "ChatMessage": {"type": "object", "required": ["role", "content"],
                    "properties": {"role": {"enum": list(ROLES)},
                                   "content": {"oneOf": [STRING, array(
                                       {"type": "object", "required": ["type", "text"],
                                        "properties": {"type": {"const": "text"}, "text": STRING}}, minItems=1)]}}},
    "ChatCompletionRequest": {
        "type": "object", "required": ["messages"], "additionalProperties": False,
        "properties": {"messages": array(ref("ChatMessage"), minItems=1),
                       "max_completion_tokens": nullable({"type": "integer", "minimum": 1,
                                                          "description": "alias of max_tokens"}),
                       **SAMPLING, **default_only(CHAT_DEFAULTS)}},
    "CompletionRequest": {
        "type": "object", "required": ["prompt"], "additionalProperties": False,
        "properties": {"prompt": {"oneOf": [STRING, array(STRING, minItems=1)],
                                  "description": "each prompt gets n choices, index prompt_index * n + i"},
                       **SAMPLING, **default_only(COMPLETION_DEFAULTS)}},
    "Usage": USAGE,
    "ChatCompletion": envelope("chat.completion", choice(
        message={"type": "object", "properties": {"role": {"const": "assistant"}, "content": STRING}},
        finish_reason=FINISH_REASON)),
    "ChatCompletionChunk": envelope("chat.completion.chunk", choice(
        delta={"type": "object", "properties": {"role": {"const": "assistant"}, "content": STRING}},
        finish_reason={"enum": ["stop", "length", None]})),
    "Completion": envelope("text_completion", choice(
        text=STRING, finish_reason={"enum": ["stop", "length", None]})),
    "ModelList": {"type": "object", "required": ["object", "data"],
                  "properties": {"object": {"const": "list"}, "data": array(
                      {"type": "object", "required": ["id", "object", "created", "owned_by"],
                       "properties": {"id": STRING, "object": {"const": "model"}, "created": INTEGER,
                                      "owned_by": STRING}})}},
    "OpenAIError": {"type": "object", "required": ["error"], "properties": {"error": {
        "type": "object", "required": ["message", "type", "param", "code"],
        "properties": {"message": STRING, "type": STRING, "param": NULLABLE_STRING, "code": NULLABLE_STRING}}}},
}


def dream_operation(summary: str, request_schema: str, answer: dict) -> dict:
    return {"summary": summary, "requestBody": request_body(request_schema),
            "responses": {"200": {**json_body(answer, "the answers"), "headers": SAMPLE_ERRORS},
                          **errors("DreamError", DREAM_ERRORS)}}


OPTIONAL_BEARER = [{}, {"bearer": []}]  # required only when API_KEY is set


def openai_operation(summary: str, request_schema: str, answer: str, chunk: str) -> dict:
    streamed = {"schema": {"type": "string", "description": f"`data: <{chunk}>` events, then `data: [DONE]`"}}
    return {"summary": summary, "security": OPTIONAL_BEARER,
            "requestBody": request_body(request_schema),
            "responses": {"200": {"description": "the completion, or a stream of chunks with `stream: true`",
                                  "content": {"application/json": {"schema": ref(answer)},
                                              "text/event-stream": streamed}},
                          **errors("OpenAIError", OPENAI_ERRORS)}}


PING = {"summary": "Liveness check kept for Dream's tooling", "responses": {"200": text_body("text/plain", "pong")}}

PATHS = {
    "/respond": {"post": dream_operation("Dream: hypotheses for each dialog context", "RespondRequest",
                                         array(array(STRING)))},
    "/generate_goals": {"post": dream_operation("Dream: the goals each prompt gives the assistant", "GoalsRequest",
                                                array(STRING))},
    "/ping": {"get": PING, "post": PING},
    "/health": {"get": {"summary": "Readiness: 503 until the model is loaded",
                        "responses": {"200": json_body(ref("Health"), "ready"),
                                      "503": json_body(ref("Health"), "loading, or loading failed")}}},
    "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {
        "200": text_body("text/plain", "Prometheus text exposition format")}}},
    "/openapi.json": {"get": {"summary": "This document", "responses": {
        "200": json_body({"type": "object"}, "OpenAPI 3.1 document")}}},
    "/docs": {"get": {"summary": "The endpoints as an HTML page", "responses": {
        "200": text_body("text/html", "HTML page")}}},
    "/v1/chat/completions": {"post": openai_operation("OpenAI-compatible chat completion", "ChatCompletionRequest",
                                                      "ChatCompletion", "ChatCompletionChunk")},
    "/v1/completions": {"post": openai_operation("OpenAI-compatible text completion", "CompletionRequest",
                                                 "Completion", "Completion")},
    "/v1/models": {"get": {"summary": "OpenAI-compatible model list: the served model", "security": OPTIONAL_BEARER,
                           "responses": {"200": json_body(ref("ModelList"), "the model"),
                                         **errors("OpenAIError", {401: OPENAI_ERRORS[401]})}}},
}


def openapi_document(title: str = "transformers_lm", version: str = "1.0.0") -> dict:
    return {"openapi": "3.1.0",
            "info": {"title": title, "version": version,
                     "description": "A causal LM behind DeepPavlov Dream's contract and an OpenAI-compatible API."},
            "paths": PATHS,
            "components": {"schemas": SCHEMAS,
                           "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                                          "description": "API_KEY, when the service sets one"}}}}


DOCS_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ spec.info.title }} API</title>
<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}td{padding:.2em 1em .2em 0}</style>
</head><body>
<h1>{{ spec.info.title }} {{ spec.info.version }}</h1>
<p>{{ spec.info.description }} Schemas: <a href="openapi.json">openapi.json</a> (OpenAPI {{ spec.openapi }}).</p>
<table>{% for path, operations in spec.paths.items() %}{% for method, operation in operations.items() %}
<tr><td><code>{{ method | upper }} {{ path }}</code></td><td>{{ operation.summary }}</td></tr>{% endfor %}{% endfor %}
</table></body></html>
"""


def docs_page(spec: dict) -> str:
    """A self-contained page (no CDN) listing the endpoints of `spec`; sandboxed, autoescaped rendering."""
    return ImmutableSandboxedEnvironment(autoescape=True).from_string(DOCS_TEMPLATE).render(spec=spec)
