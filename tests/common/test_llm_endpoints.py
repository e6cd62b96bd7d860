"""common/llm_endpoints.py: when two URLs name the same LLM, and what of a URL a log line may show."""
import pytest

from common.llm_endpoints import Endpoints, UndeclaredEndpoint, public_url, url_key


@pytest.mark.parametrize("a,b", [
    ("http://llm:8130/respond", "HTTP://LLM:8130/respond/"),
    ("http://llm/respond", "http://llm:80/respond"),
    ("https://llm/respond", "https://llm:443/respond"),
    ("http://[::1]:8130/respond", "http://[::1]:8130/respond/"),
])
def test_the_same_endpoint_written_differently(a, b):
    assert url_key(a) == url_key(b)


@pytest.mark.parametrize("a,b", [
    ("http://llm:8130/respond", "http://llm:8131/respond"),
    ("http://llm:8130/respond", "http://llm:8130/Respond"),
    ("http://llm:8130/respond", "http://llm:8130/respond?x=1"),
    ("http://llm:8130/respond", "https://llm:8130/respond"),
    ("http://llm/respond", "http://llm:443/respond"),
    ("http://llm:8130/respond", "http://u:p@llm:8130/respond"),
])
def test_other_endpoints(a, b):
    assert url_key(a) != url_key(b)


def test_public_url_drops_credentials():
    assert public_url("http://user:s3cret@llm:8130/respond?token=t#frag") == "http://llm:8130/respond"
    assert public_url("http://[broken/respond") == "(not a URL)"


def test_endpoints_check():
    endpoints = Endpoints(["http://llm:8130/respond"])
    assert endpoints.check("http://LLM:8130/respond/") == "http://LLM:8130/respond/"
    with pytest.raises(UndeclaredEndpoint, match="refused: http://llm:8130/admin$"):
        endpoints.check("http://k:secret@llm:8130/admin?key=1")
    with pytest.raises(ValueError):
        endpoints.check("http://llm:port/respond")
