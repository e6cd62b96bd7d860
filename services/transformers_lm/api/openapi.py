"""The OpenAPI 3.1 document of every route the app serves, and the /docs page rendered from it.

Request and answer schemas are generated from the pydantic declarations that validate the requests and build
the answers (dream_protocol.py, openai_protocol.py, generation_params.py), within the limits of the service
(its settings, and the loaded model's window and vocabulary). Error bodies and /health, which plain functions
build, are written here; tests/transformers_lm/test_openapi.py checks them against what the app sends.
"""
from functools import lru_cache

from jinja2.sandbox import ImmutableSandboxedEnvironment
from pydantic.json_schema import models_json_schema

from ..generation_params import Limits
from ..settings import DTYPES, HEAD_QUANTIZE, QUANTIZATIONS
from . import openai_protocol as openai
from .dream_protocol import PromptText, dream_models, embeddings_model

REF = "#/components/schemas/{model}"
STRING = {"type": "string"}
NULLABLE_STRING = {"type": ["string", "null"]}
HAND_WRITTEN = {
    "DreamError": {"type": "object", "required": ["error", "field"], "additionalProperties": False,
                   "properties": {"error": STRING, "field": NULLABLE_STRING}},
    "OpenAIError": {"type": "object", "required": ["error"], "additionalProperties": False, "properties": {"error": {
        "type": "object", "required": ["message", "type", "param", "code"], "additionalProperties": False,
        "properties": {"message": STRING, "type": STRING, "param": NULLABLE_STRING, "code": NULLABLE_STRING}}}},
    "Health": {"type": "object", "required": ["status"],
               "properties": {"status": {"enum": ["ok", "loading", "error"]}, "error": NULLABLE_STRING,
                              "model": STRING, "device": STRING, "window": {"type": "integer"},
                              "engine": {"enum": ["transformers", "openai"]}, "engine_url": STRING,
                              "engine_server": {"enum": ["vllm", "llama.cpp", "openai", "transformers_lm", None]},
                              "engine_model": NULLABLE_STRING,
                              "dtype": {"enum": list(DTYPES)}, "quantize": {"enum": list(QUANTIZATIONS)},
                              "head_quantize": {"enum": ["none", *HEAD_QUANTIZE.values()]},
                              "onednn_linears": {"type": "boolean"},
                              "adapter": NULLABLE_STRING,
                              "batching": {"type": "object"}}},
}
DREAM_ERRORS = {400: "a bad field, named in `field`", 413: "the body is larger than MAX_BODY_BYTES",
                429: "the queue is full (Retry-After)", 500: "generation failed for every sample",
                502: "ENGINE=openai: the server failed",
                503: "the model is loading, or the engine is down (Retry-After)",
                504: "past REQUEST_TIMEOUT (or ENGINE_TIMEOUT)"}
OPENAI_ERRORS = {400: "a bad parameter, named in `error.param`", 401: "API_KEY is set and the bearer token is not it",
                 413: "the body is larger than MAX_BODY_BYTES", 429: "the queue is full (Retry-After)",
                 500: "generation failed", 502: "ENGINE=openai: the server failed",
                 503: "the model is loading, or the engine is down (Retry-After)",
                 504: "past REQUEST_TIMEOUT (or ENGINE_TIMEOUT)"}
RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before retrying", "schema": {"type": "integer"}}}
SAMPLE_ERRORS = {"X-Sample-Errors": {"description": "JSON object: index of each failed sample -> its error; "
                                                    "those samples hold empty strings", "schema": STRING}}
OPTIONAL_BEARER = [{}, {"bearer": []}]  # required only when API_KEY is set
PROMPTS_ERRORS = (400, 413, 503)  # /respond/prompts generates nothing: no queue, failure or deadline
EMBEDDING_FAILED = {500: "the forward pass failed (for one text: the request fails whole)"}


def ref(name: str) -> dict:
    return {"$ref": REF.format(model=name)}


def json_body(schema: dict, description: str, headers: dict = None) -> dict:
    body = {"description": description, "content": {"application/json": {"schema": schema}}}
    return {**body, "headers": headers} if headers else body


def text_body(media_type: str, description: str) -> dict:
    return {"description": description, "content": {media_type: {"schema": STRING}}}


def errors(schema: str, statuses: dict) -> dict:
    return {str(status): json_body(ref(schema), description, RETRY_AFTER if status in (429, 503) else None)
            for status, description in statuses.items()}


def request_body(schema: dict) -> dict:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def dream_operation(summary: str, request: dict, answer: dict) -> dict:
    return {"summary": summary, "requestBody": request_body(request),
            "responses": {"200": json_body(answer, "the answers", SAMPLE_ERRORS), **errors("DreamError", DREAM_ERRORS)}}


def text_get(summary: str, media_type: str) -> dict:
    return {"get": {"summary": summary, "responses": {"200": text_body(media_type, "the file")}}}


def events(chunk: dict) -> dict:
    """One server-sent event of a stream (in OpenAPI 3.1 the schema of text/event-stream is an event's): its data
    is a chunk, an error once the stream has started, or the closing `[DONE]`."""
    data = {"type": "string", "contentMediaType": "application/json",
            "contentSchema": {"anyOf": [chunk, ref("OpenAIError")]}}
    return {"type": "object", "required": ["data"], "properties": {"data": {"anyOf": [{"const": "[DONE]"}, data]}}}


def openai_operation(summary: str, request: dict, answer: dict, chunk: dict) -> dict:
    streamed = {"schema": events(chunk)}
    return {"summary": summary, "security": OPTIONAL_BEARER, "requestBody": request_body(request),
            "responses": {"200": {"description": "the completion, or a stream of chunks with `stream: true`",
                                  "content": {"application/json": {"schema": answer}, "text/event-stream": streamed}},
                          **errors("OpenAIError", OPENAI_ERRORS)}}


@lru_cache(maxsize=4)
def openapi_document(title: str = "transformers_lm", limits: Limits = Limits(), version: str = "1.0.0") -> dict:
    respond, goals = dream_models(limits)
    chat, completion = openai.openai_models(limits)
    texts, embedding = embeddings_model(limits), openai.embedding_model(limits)
    answers = (PromptText, openai.ChatCompletion, openai.ChatCompletionChunk, openai.Completion, openai.ModelList,
               openai.EmbeddingList)
    refs, definitions = models_json_schema([(model, "validation")
                                            for model in (respond, goals, chat, completion, texts, embedding)]
                                           + [(model, "serialization") for model in answers], ref_template=REF)
    schema = {model: refs[(model, mode)] for (model, mode) in refs}
    ping = {"summary": "Liveness check kept for Dream's tooling", "responses": {"200": text_body("text/plain", "pong")}}
    paths = {
        "/respond": {"post": dream_operation("Dream: hypotheses for each dialog context", schema[respond],
                                             {"type": "array", "items": {"type": "array", "items": STRING}})},
        "/respond/prompts": {"post": {
            "summary": "The model input /respond builds for each context of the same body; generates nothing",
            "requestBody": request_body(schema[respond]),
            "responses": {"200": json_body({"type": "array", "items": schema[PromptText]}, "one per context"),
                          **errors("DreamError", {status: DREAM_ERRORS[status] for status in PROMPTS_ERRORS})}}},
        "/generate_goals": {"post": dream_operation("Dream: the goals each prompt gives the assistant", schema[goals],
                                                    {"type": "array", "items": STRING})},
        "/embeddings": {"post": {
            "summary": "Dream-style embeddings: one vector per text, as /v1/embeddings computes them",
            "requestBody": request_body(schema[texts]),
            "responses": {"200": json_body({"type": "array", "items": {"type": "array", "items": {"type": "number"}}},
                                           "one unit vector per text"),
                          **errors("DreamError", {**DREAM_ERRORS, **EMBEDDING_FAILED})}}},
        "/ping": {"get": ping, "post": ping},
        "/health": {"get": {"summary": "Readiness: 503 until the model is loaded",
                            "responses": {"200": json_body(ref("Health"), "ready"),
                                          "503": json_body(ref("Health"),
                                                           "loading, loading failed, or the engine is down")}}},
        "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {
            "200": text_body("text/plain", "Prometheus text exposition format")}}},
        "/openapi.json": {"get": {"summary": "This document", "responses": {
            "200": json_body({"type": "object"}, "OpenAPI 3.1 document")}}},
        "/docs": {"get": {"summary": "The endpoints as an HTML page", "responses": {
            "200": text_body("text/html", "HTML page")}}},
        "/playground": text_get("A chat page to try the model: streaming chat, and Dream mode through /respond",
                                "text/html"),
        "/playground/playground.js": text_get("The playground's script", "text/javascript"),
        "/playground/playground.css": text_get("The playground's style sheet", "text/css"),
        "/v1/chat/completions": {"post": openai_operation("OpenAI-compatible chat completion", schema[chat],
                                                          schema[openai.ChatCompletion],
                                                          schema[openai.ChatCompletionChunk])},
        "/v1/completions": {"post": openai_operation("OpenAI-compatible text completion", schema[completion],
                                                     schema[openai.Completion], schema[openai.Completion])},
        "/v1/embeddings": {"post": {
            "summary": "OpenAI-compatible embeddings: the last hidden state averaged over the text's tokens, "
                       "L2-normalised",
            "security": OPTIONAL_BEARER, "requestBody": request_body(schema[embedding]),
            "responses": {"200": json_body(schema[openai.EmbeddingList], "one embedding per input"),
                          **errors("OpenAIError", {**OPENAI_ERRORS, **EMBEDDING_FAILED})}}},
        "/v1/models": {"get": {"summary": "OpenAI-compatible model list: the served model", "security": OPTIONAL_BEARER,
                               "responses": {"200": json_body(schema[openai.ModelList], "the model"),
                                             **errors("OpenAIError", {status: OPENAI_ERRORS[status]
                                                                      for status in (401, 503)})}}},
    }
    return {"openapi": "3.1.0",
            "info": {"title": title, "version": version,
                     "description": "A causal LM behind DeepPavlov Dream's contract and an OpenAI-compatible API."},
            "paths": paths,
            "components": {"schemas": {**definitions.get("$defs", {}), **HAND_WRITTEN},
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
