"""/v1/*: the OpenAI-compatible API, served by the same engine (and the same batches) as Dream's endpoints."""
import time
from functools import partial

from flask import Blueprint, Response, jsonify, request, stream_with_context

from common.http import json_body, openai_body, to_http_error

from .disconnects import client_gone
from .errors import classify
from .openai_protocol import (SSE_DONE, chat_chunk, chat_completion, check_api_key, completion_chunk, embedding_list,
                              model_list, new_id, parse_chat, parse_completion, parse_embeddings, sse, text_completion,
                              usage)
from .streaming import PieceStream

SHAPES = {"chat": (chat_completion, chat_chunk), "completion": (text_completion, completion_chunk)}


def openai_blueprint(holder, settings) -> Blueprint:
    blueprint = Blueprint("openai", __name__, url_prefix="/v1")
    started = int(time.time())

    @blueprint.before_request
    def authorize():
        check_api_key(request.headers.get("Authorization"), settings.api_key)

    @blueprint.get("/models")
    def models():
        loaded = holder.ready().loaded
        return jsonify(model_list(loaded.name, started, loaded.adapter))

    @blueprint.post("/chat/completions")
    def chat_completions():
        return complete(parse_chat)

    @blueprint.post("/completions")
    def completions():
        return complete(parse_completion)

    @blueprint.post("/embeddings")
    def embeddings():
        service = holder.ready()
        embedding_request = parse_embeddings(json_body(), service.limits)
        vectors, tokens = service.embeddings(embedding_request.inputs, "input", partial(client_gone, request.environ))
        return jsonify(embedding_list(vectors, embedding_request.model or service.loaded.name, tokens,
                                      embedding_request.encoding_format))

    def complete(parse):
        service = holder.ready()
        openai_request = parse(json_body(), service.limits)
        samples = service.openai_samples(openai_request)
        whole, chunk = SHAPES[openai_request.kind]
        reply_id, created = new_id(openai_request.kind), int(time.time())
        model = openai_request.model or service.loaded.name
        prompt_tokens = sum(len(sample.input_ids) for sample in samples)
        if openai_request.stream:
            stream = PieceStream(service.engine, samples, settings.request_timeout,
                                 partial(client_gone, request.environ))
            events = stream_events(stream, openai_request, chunk, reply_id, created, model, prompt_tokens,
                                   choices=len(samples) * openai_request.n)
            # No proxy or WSGI buffering: each piece must reach the client when it is generated.
            return Response(stream_with_context(events), mimetype="text/event-stream",
                            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        results, errors = service.collect(samples, ["request"] * len(samples), partial(client_gone, request.environ))
        failed = next((error for error in errors if error), None)
        if failed:
            raise failed
        n = openai_request.n
        choices = [(position * n + index, hypothesis.text, hypothesis.finish_reason)
                   for position, hypotheses in enumerate(results) for index, hypothesis in enumerate(hypotheses)]
        completion_tokens = sum(hypothesis.tokens for hypotheses in results for hypothesis in hypotheses)
        return jsonify(whole(reply_id, created, model, choices, usage(prompt_tokens, completion_tokens)))

    return blueprint


def stream_events(stream: PieceStream, openai_request, chunk, reply_id, created, model, prompt_tokens, choices):
    """SSE text: a role chunk (chat), a chunk per piece, one with each choice's finish_reason, usage if
    asked, then [DONE]. An error after the stream started can only be told as an event."""
    if openai_request.kind == "chat":
        yield sse(chunk(reply_id, created, model, [(index, "", None) for index in range(choices)], with_role=True))
    completion_tokens = 0
    try:
        for kind, choice, value in stream:
            if kind == "piece":
                yield sse(chunk(reply_id, created, model, [(choice, value, None)]))
            else:
                completion_tokens += value.tokens
                yield sse(chunk(reply_id, created, model, [(choice, None if openai_request.kind == "chat" else "",
                                                            value.finish_reason)]))
    except Exception as error:  # the status line is gone: the error can only be an event
        yield sse(openai_body(to_http_error(error, classify)))
        return
    if openai_request.include_usage:
        yield sse(chunk(reply_id, created, model, [], usage(prompt_tokens, completion_tokens)))
    yield SSE_DONE
