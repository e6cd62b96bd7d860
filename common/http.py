"""The HTTP edge shared by the LLM service and the skill: error answers in Dream's or OpenAI's shape, one
installer of error handlers for an app (routing errors included), and reading a JSON body."""
import json
import logging

from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException

logger = logging.getLogger(__name__)

# Status -> (OpenAI error type, code); other 4xx are invalid_request_error, 5xx server_error.
OPENAI_KINDS = {
    401: ("authentication_error", "invalid_api_key"),
    403: ("permission_error", None),
    404: ("not_found_error", None),
    429: ("rate_limit_error", "rate_limit_exceeded"),
}
# werkzeug's own headers of an error answer that describe its HTML body, which is replaced here.
BODY_HEADERS = {"content-type", "content-length"}


class HTTPError(Exception):
    """An error answer: status, a message for the caller, the request field it is about (None: the request
    as a whole), and extra headers (Retry-After for 429/503, Allow for 405)."""

    def __init__(self, status: int, message: str, field: str = None, headers: dict = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.headers = dict(headers or {})

    @classmethod
    def from_werkzeug(cls, error: HTTPException) -> "HTTPError":
        headers = {name: value for name, value in error.get_headers() if name.lower() not in BODY_HEADERS}
        field = "body" if error.code == 413 else None  # 413: larger than MAX_CONTENT_LENGTH
        return cls(error.code, error.description, field, headers)


def dream_body(error: HTTPError) -> dict:
    return {"error": error.message, "field": error.field}


def openai_body(error: HTTPError) -> dict:
    default = ("server_error", None) if error.status >= 500 else ("invalid_request_error", None)
    error_type, code = OPENAI_KINDS.get(error.status, default)
    return {"error": {"message": error.message, "type": error_type, "param": error.field, "code": code}}


def json_app(name: str, classify=lambda error: None, openai_prefix: str = None) -> Flask:
    """A Flask app whose every answer, errors included, is JSON (readable Russian) or the route's own type.

    Routes answer only the methods they name: Flask's automatic OPTIONS would make a 405's `Allow` list a
    method the API does not document."""
    app = Flask(name)
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = False
    app.json.ensure_ascii = False
    install_error_handlers(app, classify, openai_prefix)
    return app


def install_error_handlers(app: Flask, classify=lambda error: None, openai_prefix: str = None):
    """Answer every error of `app` as JSON: OpenAI's shape for paths under `openai_prefix`, Dream's elsewhere.

    One app-level handler, because Flask gives routing errors (404, 405) to app handlers only, never to a
    blueprint's. `classify(exception)` turns the app's own exceptions into HTTPErrors (None: not one of
    them); anything else unexpected is logged and answered 500 without details.
    """

    @app.errorhandler(Exception)
    def handle(error: Exception):
        answer = to_http_error(error, classify)
        shape = openai_body if openai_prefix and is_under(request.path, openai_prefix) else dream_body
        response = jsonify(shape(answer))
        response.headers.update(answer.headers)
        return response, answer.status


def to_http_error(error: Exception, classify=lambda error: None) -> HTTPError:
    if isinstance(error, HTTPError):
        return error
    if isinstance(error, HTTPException):
        return HTTPError.from_werkzeug(error)
    answer = classify(error)
    if answer is None:
        logger.error("unhandled error", exc_info=error)
        answer = HTTPError(500, "internal error")
    return answer


def is_under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix.rstrip("/") + "/")


def json_body():
    """The body parsed as JSON whatever the content type: Dream's clients don't all set application/json."""
    try:
        return json.loads(request.get_data())
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than the parser's stack; b"" too
        raise HTTPError(400, "the body is not valid JSON", "body") from None
