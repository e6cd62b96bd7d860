"""proxy/: the rendered nginx template forwards /respond to the real LLM service unchanged, and balances it over
several replicas, losing no request when one dies."""

import json
import os
import re
import signal
import threading
import time
import urllib.error
import urllib.request
from urllib.parse import urlsplit

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers.nginx_proxy import NGINX, EntrypointError, nginx_proxy, render, render_conf
from tests.helpers.processes import save_tiny_model, tiny_lm, wait_http

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
    conf = render_conf({"PORT": "8130", "PROXY_PASS": "proxy.deeppavlov.ai:8130", "host": "x"})
    assert "listen 8130;" in conf
    assert re.search(r"upstream llm \{[^}]*least_conn;\s*server proxy\.deeppavlov\.ai:8130 max_fails=1 "
                     r"fail_timeout=10s;\s*\}", conf), conf
    assert "proxy_pass http://llm/;" in conf
    assert "proxy_next_upstream error timeout http_502 http_503 non_idempotent;" in conf
    assert 1 < int(re.search(r"proxy_next_upstream_tries (\d+);", conf).group(1)) <= 3
    for timeout in ("proxy_read_timeout", "proxy_send_timeout"):
        seconds = int(re.search(rf"{timeout} (\d+)s;", conf).group(1))
        assert seconds > 120, f"{timeout} must exceed the skills' 120 s GENERATIVE_TIMEOUT"
    assert re.search(r"client_max_body_size \d+m;", conf)
    assert "proxy_buffering off;" in conf


def test_render_substitutes_only_filtered_variables():
    text = "listen ${PORT}; $PORT $PORTS ${host} $remote_addr ${PROXY_UPSTREAM_SERVERS} ${PROXY_PASS}"
    env = {"PORT": "1", "PROXY_UPSTREAM_SERVERS": "server h:2;", "PROXY_PASS": "h:2", "PORTS": "no", "host": "no",
           "remote_addr": "no"}
    assert render(text, env) == "listen 1; 1 $PORTS ${host} $remote_addr server h:2; ${PROXY_PASS}"


@pytest.mark.parametrize("proxy_pass", ["a:8130,b.example:8131", "a:8130 b.example:8131", " a:8130, b.example:8131 "])
def test_proxy_pass_lists_become_upstream_servers(proxy_pass):
    servers = re.findall(r"server (\S+) max_fails", render_conf({"PORT": "8130", "PROXY_PASS": proxy_pass}))
    assert servers == ["a:8130", "b.example:8131"]


@pytest.mark.parametrize("proxy_pass", ["", "a", "a:", ":8130", "a:81x", "a:8130;evil", "a:1:2", "a:8130,b"])
def test_a_proxy_pass_that_is_no_list_of_host_port_stops_the_container(proxy_pass):
    with pytest.raises(EntrypointError, match="PROXY_PASS"):
        render_conf({"PORT": "8130", "PROXY_PASS": proxy_pass})


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


def requests_served(url: str, endpoint: str = "/respond") -> float:
    """The server's own count of `endpoint` requests answered 200 (its /metrics)."""
    text = requests.get(f"{url}/metrics", timeout=10).text
    return sum(sample.value for family in text_string_to_metric_families(text) for sample in family.samples
               if sample.name == "transformers_lm_requests_total" and sample.labels == {"endpoint": endpoint,
                                                                                       "status": "200"})


def in_flight(url: str) -> float:
    text = requests.get(f"{url}/metrics", timeout=10).text
    return next(sample.value for family in text_string_to_metric_families(text) for sample in family.samples
                if sample.name == "transformers_lm_requests_in_flight")


# Long enough (tiny model, greedy, no early stop) to be caught in flight and killed.
SLOW = {**BODY, "configs": [{"do_sample": False, "max_new_tokens": 1500, "min_new_tokens": 1500}]}


@pytest.fixture
def two_replicas(tmp_path):
    """{base URL: process} of two real transformers_lm servers of the tiny model, started side by side."""
    model = save_tiny_model(tmp_path / "model", window=2048)
    started = [tiny_lm(model, {"MAX_NEW_TOKENS": "1500"}, tmp_path / f"{name}.log") for name in ("a", "b")]
    try:
        for process, url in started:
            wait_http(f"{url}/health", timeout=120, process=process)
        yield {url: process for process, url in started}
    finally:
        for process, _ in started:
            process.stop()


def test_replicas_share_requests_and_a_dead_one_loses_none(two_replicas, tmp_path):
    """nginx in front of two real servers: both get requests; one is killed while it generates: that request
    (a POST) and every later one still succeed, answered by the other."""
    if NGINX is None:
        pytest.skip("needs nginx (apt-get install nginx)")
    urls = list(two_replicas)
    body = json.dumps(BODY).encode()
    with nginx_proxy(",".join(urlsplit(url).netloc for url in urls), tmp_path / "nginx") as proxy:
        for _ in range(4):
            assert post(proxy + "/respond", body)[0] == 200
        assert all(requests_served(url) >= 1 for url in urls), [requests_served(url) for url in urls]

        served = {url: requests_served(url) for url in urls}
        answers = []
        slow = threading.Thread(target=lambda: answers.append(post(proxy + "/respond", json.dumps(SLOW).encode())))
        slow.start()
        deadline = time.monotonic() + 30
        while not (busy := [url for url in urls if in_flight(url)]) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert busy and slow.is_alive(), "the slow request was never seen in flight"
        [victim] = busy
        os.killpg(two_replicas[victim].popen.pid, signal.SIGKILL)  # a crash, not a graceful stop
        two_replicas[victim].popen.wait()
        slow.join(timeout=180)
        [(status, _, reply)] = answers
        assert status == 200, reply
        [survivor] = [url for url in urls if url != victim]
        assert requests_served(survivor) == served[survivor] + 1  # the killed one's request, sent again

        for path in ["/respond", "/respond", "/respond", "/ping", "/generate_goals"]:
            payload = {"prompts": ["Be brief."]} if path == "/generate_goals" else BODY
            status, _, reply = post(proxy + path, json.dumps(payload).encode())
            assert status == 200, (path, reply)
