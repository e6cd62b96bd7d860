"""Request bodies of every endpoint: JSON objects, whose secret-named fields are remembered for redaction."""
from common.redaction import remember_fields

from ..errors import InvalidField


def require_object(body) -> dict:
    if not isinstance(body, dict):
        raise InvalidField("body", "the body must be a JSON object")
    remember_fields(body)  # forwarded keys (openai_api_keys, ...) are cut out of any log line or Sentry event
    return body
