"""The OpenAPI document: valid OpenAPI 3.1, in sync with the routes the app serves, its schemas matching
what the service sends and accepts; /openapi.json and /docs serve it."""
import json

import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from services.transformers_lm.api import openai_protocol as api
from common.http import HTTPError, dream_body, openai_body
from services.transformers_lm.service import LMService
from services.transformers_lm.api.openapi import openapi_document
from services.transformers_lm.server import create_app
from services.transformers_lm.settings import Settings
from tests.helpers.tiny_model import tiny_loaded

# Documented ahead of their routes, which the lead adds to server.py; once they are served, empty this set.
NOT_SERVED_YET = set()
IMPLICIT_METHODS = {"HEAD"}  # Flask adds it to every GET rule


@pytest.fixture(scope="module")
def app():
    settings = Settings()
    return create_app(settings, LMService(settings, tiny_loaded()))


@pytest.fixture(scope="module")
def spec(app):
    """The document of the app's service, within its limits."""
    return openapi_document(Settings().service_name, app.extensions["transformers_lm"].service.limits)


def served(app) -> dict:
    """{path: {method, ...}} of the app's URL map, lowercase methods as in OpenAPI."""
    routes = {}
    for rule in app.url_map.iter_rules():
        if rule.endpoint != "static":
            routes.setdefault(rule.rule, set()).update(method.lower() for method in rule.methods - IMPLICIT_METHODS)
    return routes


def documented(spec) -> dict:
    return {path: set(operations) for path, operations in spec["paths"].items()}


def test_the_document_is_valid_openapi_3_1(spec):
    validate(spec)
    assert spec["openapi"].startswith("3.1")


def test_every_served_route_is_documented_with_its_methods(app, spec):
    docs = documented(spec)
    for path, methods in served(app).items():
        assert path in docs, f"{path} is served but not documented"
        assert docs[path] == methods, f"{path}: served {methods}, documented {docs[path]}"


def test_every_documented_route_is_served(app, spec):
    routes = served(app)
    assert not NOT_SERVED_YET & routes.keys(), "these are served now: remove them from NOT_SERVED_YET"
    assert documented(spec).keys() - routes.keys() <= NOT_SERVED_YET


def test_openapi_json_and_docs_serve_the_document(app, spec):
    client = app.test_client()
    response = client.get("/openapi.json")
    assert response.status_code == 200 and response.json == json.loads(json.dumps(spec))
    docs = client.get("/docs")
    assert docs.status_code == 200 and docs.content_type.startswith("text/html")
    page = docs.get_data(as_text=True)
    assert all(path in page for path in spec["paths"]) and 'href="openapi.json"' in page
    assert "http://" not in page and "https://" not in page and "<script" not in page  # self-contained


def schema(spec, name: str) -> Draft202012Validator:
    """A validator for components.schemas[name], its $refs resolved in the document."""
    return Draft202012Validator({"$ref": f"#/components/schemas/{name}", "components": spec["components"]})


@pytest.mark.parametrize("name,body", [
    ("RespondRequest", {"dialog_contexts": [["Hi", "Hello"]], "prompts": ["Be brief."], "configs": [None],
                        "openai_api_keys": ["sk-..."]}),
    ("RespondRequest", {"dialog_contexts": [["Hi"]], "prompts": None, "configs": None}),
    ("GoalsRequest", {"prompts": ["Be a travel agent."], "configs": [{"max_new_tokens": 30}]}),
    ("DreamError", dream_body(HTTPError(400, "must be a finite number", "configs[0].temperature"))),
    ("ChatCompletionRequest", {"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "a"}]}],
                               "max_tokens": 5, "temperature": None, "stop": ["\n"], "stream": True,
                               "stream_options": {"include_usage": True}, "presence_penalty": 0}),
    ("CompletionRequest", {"model": "m", "prompt": ["a", "b"], "n": 2, "echo": False}),
    ("ChatCompletion", api.chat_completion("c", 1, "m", [(0, "Hi", "stop")], api.usage(1, 1))),
    ("ChatCompletionChunk", api.chat_chunk("c", 1, "m", [(0, "Hi", None)], with_role=True)),
    ("ChatCompletionChunk", api.chat_chunk("c", 1, "m", [], api.usage(1, 1))),
    ("Completion", api.text_completion("c", 1, "m", [(0, "Hi", "length")], api.usage(1, 1))),
    ("Completion", api.completion_chunk("c", 1, "m", [(0, "Hi", None)])),
    ("ModelList", api.model_list("m", 1)),
    ("OpenAIError", openai_body(HTTPError(400, "bad", "temperature"))),
])
def test_schemas_accept_what_the_service_accepts_and_sends(spec, name, body):
    schema(spec, name).validate(body)


@pytest.mark.parametrize("name,body", [
    ("RespondRequest", {"dialog_contexts": [[]]}),
    ("ChatCompletionRequest", {"messages": [{"role": "user", "content": "a"}], "presence_penalty": 0.5}),
    ("ChatCompletionRequest", {"messages": [{"role": "tool", "content": "a"}]}),
    ("ChatCompletionRequest", {"messages": [{"role": "user", "content": "a"}], "frobnicate": 1}),
    ("CompletionRequest", {"prompt": "a", "stop": ["1", "2", "3", "4", "5"]}),
])
def test_schemas_refuse_what_the_service_refuses(spec, name, body):
    assert not schema(spec, name).is_valid(body)
