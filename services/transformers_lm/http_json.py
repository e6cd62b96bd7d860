"""Reading a JSON request body, for every endpoint."""
import json

from flask import request

from .errors import RequestError


def json_body():
    """The body parsed as JSON whatever the content type: Dream's clients don't all set application/json."""
    try:
        return json.loads(request.get_data() or b"null")
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than the parser's stack
        raise RequestError("body", "the body is not valid JSON") from None
