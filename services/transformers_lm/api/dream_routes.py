"""Dream's endpoints: /respond, /generate_goals, /embeddings and /ping, and /respond/prompts to see what /respond
feeds the model."""
import json
from functools import partial

from flask import Blueprint, jsonify, request

from common.http import json_body

from .disconnects import client_gone
from .dream_protocol import parse_embeddings, parse_goals, parse_respond, prompt_texts


def answer(results: list, errors: list):
    """200 with every result; failed samples hold empty strings and are listed in X-Sample-Errors.
    If every sample failed, the first failure is the answer (500, or 504 past the deadline)."""
    failed = {index: error for index, error in enumerate(errors) if error}
    if failed and len(failed) == len(results):
        raise failed[0]
    response = jsonify(results)
    if failed:
        response.headers["X-Sample-Errors"] = json.dumps({index: error.message for index, error in failed.items()})
    return response


def dream_blueprint(holder) -> Blueprint:
    blueprint = Blueprint("dream", __name__)

    @blueprint.post("/respond")
    def respond():
        service = holder.ready()
        tasks = parse_respond(json_body(), service.limits)
        return answer(*service.respond(tasks, gone=partial(client_gone, request.environ)))

    @blueprint.post("/respond/prompts")
    def respond_prompts():
        """The model input of each context of a /respond body, generating nothing."""
        service = holder.ready()
        return jsonify(prompt_texts(service.prompt_texts(parse_respond(json_body(), service.limits))))

    @blueprint.post("/generate_goals")
    def generate_goals():
        service = holder.ready()
        prompts, configs = parse_goals(json_body(), service.limits)
        return answer(*service.generate_goals(prompts, configs, gone=partial(client_gone, request.environ)))

    @blueprint.post("/embeddings")
    def embeddings():
        service = holder.ready()
        texts = parse_embeddings(json_body(), service.limits)
        return jsonify(service.embeddings(texts, "texts", partial(client_gone, request.environ))[0])

    @blueprint.route("/ping", methods=["GET", "POST"])
    def ping():
        return "pong", 200, {"Content-Type": "text/plain; charset=utf-8"}

    return blueprint
