"""proxy/: the rendered nginx template forwards /respond to the real LLM service unchanged."""

import json
import re
import urllib.error
import urllib.request
from urllib.parse import urlsplit

import pytest

from tests.helpers.nginx_proxy import NGINX, TEMPLATE, nginx_proxy, render

pytestmark = pytest.mark.processes  # every test here starts real processes

# Greedy decoding, so the direct and the proxied call must give the same text.
BODY = {
    "dialog_contexts": [["Hi! What is your name?"]],
    "prompts": ["Respond like a friendly chatbot."],
    "configs": [{"do_sample": False, "max_new_tokens": 8, "num_return_sequences": 1}],
}


def post(url: str, body: bytes, timeout: float = 120) -> tuple[int, str, bytes]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.headers.get_content_type(), response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers.get_content_type(), err.read()


@pytest.fixture(scope="module")
def proxy_url(lm_server, tmp_path_factory):
    if NGINX is None:
        pytest.skip("needs nginx (apt-get install nginx)")
    with nginx_proxy(urlsplit(lm_server).netloc, tmp_path_factory.mktemp("nginx")) as url:
        yield url


def test_template_settings():
    conf = render(TEMPLATE.read_text(), {"PORT": "8130", "PROXY_PASS": "proxy.deeppavlov.ai:8130", "host": "x"})
    assert "listen 8130;" in conf
    assert "proxy_pass http://proxy.deeppavlov.ai:8130/;" in conf
    for timeout in ("proxy_read_timeout", "proxy_send_timeout"):
        seconds = int(re.search(rf"{timeout} (\d+)s;", conf).group(1))
        assert seconds > 120, f"{timeout} must exceed the skills' 120 s GENERATIVE_TIMEOUT"
    assert re.search(r"client_max_body_size \d+m;", conf)
    assert "proxy_buffering off;" in conf


def test_render_substitutes_only_filtered_variables():
    text = "listen ${PORT}; $PORT $PORTS ${host} $remote_addr ${PROXY_PASS}"
    env = {"PORT": "1", "PROXY_PASS": "h:2", "PORTS": "no", "host": "no", "remote_addr": "no"}
    assert render(text, env) == "listen 1; 1 $PORTS ${host} $remote_addr h:2"


@pytest.mark.parametrize("path", ["/respond", "/ping"])
def test_proxy_returns_what_upstream_returns(lm_server, proxy_url, path):
    body = json.dumps(BODY).encode()
    direct = post(lm_server + path, body)
    proxied = post(proxy_url + path, body)
    assert direct[0] == 200, direct
    assert proxied == direct
    if path == "/respond":
        replies = json.loads(proxied[2])
        assert isinstance(replies, list) and len(replies) == 1 and all(isinstance(x, str) for x in replies[0])


def test_proxy_passes_bodies_above_nginx_default_limit(lm_server, proxy_url):
    # nginx refuses bodies over 1 MB by default; extra per-sample keys are accepted and ignored by the service.
    body = json.dumps({**BODY, "padding_values": ["x" * 1_500_000]}).encode()
    proxied = post(proxy_url + "/respond", body)
    assert proxied[0] != 413
    assert proxied == post(lm_server + "/respond", body)
