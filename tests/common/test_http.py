"""common/http.py: the two error shapes, the one handler installer (routing errors included), JSON bodies."""
import pytest
from openai.types.shared import ErrorObject

from common.http import HTTPError, json_app, json_body, openai_body


class Domain(Exception):
    """An app's own exception, which its classify() turns into an HTTPError."""


def app_with_routes():
    app = json_app(__name__, lambda error: HTTPError(409, "domain", "x") if isinstance(error, Domain) else None,
                   openai_prefix="/v1")
    app.config["MAX_CONTENT_LENGTH"] = 10

    @app.post("/v1/chat/completions")
    @app.post("/respond")
    def both():
        return {"body": json_body()}

    @app.get("/v1/boom")
    @app.get("/boom")
    def boom():
        raise ZeroDivisionError("secret detail")

    @app.get("/v1/domain")
    def domain():
        raise Domain()

    return app


@pytest.mark.parametrize("status,error_type", [
    (400, "invalid_request_error"), (413, "invalid_request_error"), (401, "authentication_error"),
    (429, "rate_limit_error"), (500, "server_error"), (503, "server_error"),
])
def test_openai_body_has_openais_shape(status, error_type):
    body = openai_body(HTTPError(status, "bad", "temperature"))
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    error = ErrorObject.model_validate(body["error"])
    assert (error.message, error.param, error.type) == ("bad", "temperature", error_type)


def test_405_keeps_allow_in_either_shape():
    client = app_with_routes().test_client()
    openai = client.get("/v1/chat/completions")
    assert openai.status_code == 405 and openai.headers["Allow"] == "POST"
    assert openai.json["error"]["type"] == "invalid_request_error" and openai.json["error"]["param"] is None
    dream = client.get("/respond")
    assert dream.status_code == 405 and dream.headers["Allow"] == "POST" and dream.json["field"] is None


def test_404_and_413_and_bad_json_are_json_in_the_shape_of_their_path():
    client = app_with_routes().test_client()
    assert client.get("/v1/nothing").json["error"]["type"] == "not_found_error"
    assert client.get("/nothing").status_code == 404 and set(client.get("/nothing").json) == {"error", "field"}
    too_big = client.post("/respond", data=b"[" + b"1," * 20 + b"1]")
    assert (too_big.status_code, too_big.json["field"]) == (413, "body")
    bad = client.post("/v1/chat/completions", data=b"{not json")
    assert (bad.status_code, bad.json["error"]["param"]) == (400, "body")


def test_own_exceptions_are_classified_and_others_are_a_bare_500():
    client = app_with_routes().test_client()
    assert client.get("/v1/domain").status_code == 409 and client.get("/v1/domain").json["error"]["param"] == "x"
    for path in ("/boom", "/v1/boom"):
        response = client.get(path)
        assert response.status_code == 500 and "secret detail" not in response.get_data(as_text=True)


def test_retry_after_and_other_headers_go_out():
    app = json_app(__name__)

    @app.get("/busy")
    def busy():
        raise HTTPError(429, "later", headers={"Retry-After": "3"})

    response = app.test_client().get("/busy")
    assert (response.status_code, response.headers["Retry-After"], response.json) == (
        429, "3", {"error": "later", "field": None})
