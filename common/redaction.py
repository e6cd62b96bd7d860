"""Keeping secrets (forwarded API keys, HF_ACCESS_TOKEN, ...) out of logs, error messages and Sentry events.

Two rules, applied together:
- a field whose name says it holds a secret (it contains `key`, `token`, `secret` or `credential`, any case)
  has its value replaced, wherever it sits in nested dicts and lists;
- a known secret value is cut out of any text, so an upstream error message that echoes a key is harmless.
  Values become known from such fields of incoming requests (`remember_fields`) and from such environment
  variables (`remember_environ`).
"""
import logging
import os
import re
import threading
from collections import OrderedDict

REDACTED = "[REDACTED]"
SECRET_NAME = re.compile(r"key|token|secret|credential", re.IGNORECASE)
# Names the rule would catch that hold counts, token ids or Sentry's public DSN key (which Sentry itself
# reads back from the event): redacting them would only make logs and events useless.
NOT_SECRET_NAMES = frozenset({
    "max_new_tokens", "min_new_tokens", "max_tokens", "max_completion_tokens", "prompt_tokens",
    "completion_tokens", "total_tokens", "eos_token_id", "pad_token_id", "bos_token_id", "public_key",
})
MIN_SECRET_LENGTH = 6  # shorter values would blank out ordinary words
MAX_KNOWN_SECRETS = 1024  # the most recent request secrets are kept; the oldest are forgotten
MAX_DEPTH = 32  # deeper parts of logged data or events are dropped whole rather than walked


def is_secret_name(name) -> bool:
    return isinstance(name, str) and name.lower() not in NOT_SECRET_NAMES and bool(SECRET_NAME.search(name))


class KnownSecrets:
    """Secret values to cut out of text: a bounded, thread-safe set, the most recently seen kept."""

    def __init__(self, limit: int = MAX_KNOWN_SECRETS):
        self.limit = limit
        self.values = OrderedDict()
        self.longest_first = ()  # what scrub() walks: a secret containing another is removed whole
        self.lock = threading.Lock()

    def add(self, value):
        if not isinstance(value, str) or len(value) < MIN_SECRET_LENGTH:
            return
        with self.lock:
            if value in self.values:
                self.values.move_to_end(value)
                return
            self.values[value] = None
            while len(self.values) > self.limit:
                self.values.popitem(last=False)
            self.longest_first = tuple(sorted(self.values, key=len, reverse=True))

    def scrub(self, text: str) -> str:
        for value in self.longest_first:
            if value in text:
                text = text.replace(value, REDACTED)
        return text


KNOWN = KnownSecrets()


def remember(value):
    """Treat `value` as a secret from now on (strings only; too-short values are ignored)."""
    KNOWN.add(value)


def remember_fields(data):
    """Remember every string held under a secret field name anywhere in `data` (e.g. a request body)."""
    stack = [(data, False)]  # iterative: request bodies may nest deeper than the recursion limit
    while stack:
        value, secret = stack.pop()
        if isinstance(value, dict):
            stack.extend((item, secret or is_secret_name(name)) for name, item in value.items())
        elif isinstance(value, list):
            stack.extend((item, secret) for item in value)
        elif secret:
            remember(value)


def remember_environ(environ=os.environ):
    """Remember the values of environment variables named like secrets (HF_ACCESS_TOKEN, OPENAI_API_KEY, ...)."""
    for name, value in environ.items():
        if is_secret_name(name):
            remember(value)


def scrub(text: str) -> str:
    """`text` with every known secret value replaced."""
    return KNOWN.scrub(text)


def redact(data, depth: int = 0):
    """A copy of `data` with secret-named fields replaced and known secret values cut out of strings."""
    if depth > MAX_DEPTH and isinstance(data, (dict, list, tuple)):
        return REDACTED
    if isinstance(data, dict):
        return {name: REDACTED if is_secret_name(name) and not _blank(value) else redact(value, depth + 1)
                for name, value in data.items()}
    if isinstance(data, (list, tuple)):
        items = [redact(item, depth + 1) for item in data]
        return items if isinstance(data, list) else tuple(items)
    if isinstance(data, str):
        return scrub(data)
    return data


def _blank(value) -> bool:
    # An absent key stays visible: "no key was sent" is worth seeing when a call is refused.
    return value is None or value == ""


class RedactingFilter(logging.Filter):
    """Rewrites each record before a handler formats it: structured arguments redacted, known secret
    values cut out of the message and of the traceback text."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, dict):
            args = redact(args)
        elif isinstance(args, tuple):
            args = tuple(redact(arg) if isinstance(arg, (dict, list, tuple)) else arg for arg in args)
        try:
            message = str(record.msg) % args if args else str(record.msg)
        except (TypeError, ValueError, KeyError):
            # Logging would print the raw arguments in its own error report: keep them, scrubbed, in the line.
            message = f"{record.msg} (arguments that do not fit it: {args!r})"
        record.msg, record.args = scrub(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = scrub(record.stack_info)
        return True


LOGGERS_WITH_HANDLERS = ("", "gunicorn.error", "gunicorn.access")  # root, and gunicorn's own (no propagation)


def install_logging_filter(logger_names=LOGGERS_WITH_HANDLERS):
    """Add a RedactingFilter to every handler of these loggers (once); call after logging is configured."""
    for name in logger_names:
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(existing, RedactingFilter) for existing in handler.filters):
                handler.addFilter(RedactingFilter())


def before_send(event, hint):
    """Sentry hook: the event with secrets redacted (breadcrumbs, exception messages and request data too)."""
    return redact(event)
