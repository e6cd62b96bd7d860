"""Which LLM endpoint a URL names, and which endpoints a component may call.

Only settings choose where a component sends requests: a URL taken from a request (a Dream utterance attribute,
which end users write) is called only if the settings declare it. Two URLs name the same endpoint when they
differ only in the case of the scheme and host, an explicit default port or a trailing slash; a different
path, port, query or userinfo is another endpoint.
"""
from typing import Iterable
from urllib.parse import urlsplit, urlunsplit

DEFAULT_PORTS = {"http": 80, "https": 443}


def url_key(url: str) -> str:
    """`url` as endpoints are compared; ValueError if it is no URL (a bad port, an unclosed IPv6 bracket)."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    host = f"[{host}]" if ":" in host else host
    port = parts.port  # ValueError when it is not a number
    netloc = host if port in (None, DEFAULT_PORTS.get(parts.scheme.lower())) else f"{host}:{port}"
    if "@" in parts.netloc:
        netloc = f"{parts.netloc.rsplit('@', 1)[0]}@{netloc}"
    return urlunsplit((parts.scheme.lower(), netloc, parts.path.rstrip("/"), parts.query, ""))


def public_url(url: str) -> str:
    """`url` fit for a log line: without userinfo, query and fragment, which may hold credentials."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc.rsplit("@", 1)[-1]
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    except ValueError:
        return "(not a URL)"


class UndeclaredEndpoint(ValueError):
    def __init__(self, url: str):
        super().__init__(f"an undeclared LLM URL was refused: {public_url(url)}")


class Endpoints:
    """The endpoints a component may call."""

    def __init__(self, urls: Iterable[str]):
        self.keys = frozenset(url_key(url) for url in urls)

    def check(self, url: str) -> str:
        """`url` itself if it names a declared endpoint; UndeclaredEndpoint otherwise (ValueError if no URL)."""
        if url_key(url) not in self.keys:
            raise UndeclaredEndpoint(url)
        return url
