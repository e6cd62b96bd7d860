"""ENGINE=openai: an OpenAI-compatible server (vLLM, llama.cpp's server, ...) generates; the rest stays ours.

Samples queue here as with the local engines (bounded: QueueFull past MAX_QUEUE) and at most MAX_BATCH_SIZE rows
are in flight at the server, so our deadline and a departed client can still take a waiting sample back, and the
server batches what it gets. Each sample is one streamed /v1/completions request whose text our StopMatcher cuts
(speaker labels included), streamed on to the sample's listener as the local engines do.

One asyncio loop on its own thread holds every connection: a stream costs a coroutine, not a thread. Cancelling a
sample's task closes its connection, which vLLM and llama.cpp's server take as an abort. A probe reads
ENGINE_URL/models every PROBE_INTERVAL_S: it names the model and the kind of server, and tells /health whether
the server is up.
"""
import asyncio
import json
import logging
import threading
import time
from collections import deque
from concurrent.futures import CancelledError
from dataclasses import dataclass
from functools import partial
from urllib.parse import urlsplit

import httpx

from .errors import EngineError, EngineFailed, EngineRejected, EngineTimeout, EngineUnavailable, GenerationFailed
from .instruments import Instruments
from .queueing import enqueue, take_back
from .samples import Hypothesis
from .reply_text import ReplyText
from .upstream_protocol import error_message, server_of, upstream_stops

logger = logging.getLogger(__name__)
logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request (the probe's every 2 s) is noise

PROBE_INTERVAL_S = 2.0
PROBE_TIMEOUT_S = 2.0
CONNECT_TIMEOUT_S = 5.0
MAX_ERROR_CHARS = 500  # of a server's error message relayed to our caller


@dataclass(frozen=True)
class UpstreamState:
    """What the last probe found. `model` is None until the server was first seen."""
    up: bool = False
    error: str = "not probed yet"
    model: str = None
    server: object = None  # an upstream_protocol.Server
    window: int = None  # the server's context length, where its /models tells


class ProbeFailed(Exception):
    pass


def describe(error: Exception) -> str:
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


class UpstreamEngine(Instruments):
    embeddings = False  # a generation server serves no embeddings

    def __init__(self, tokenizer, url: str, api_key: str = "", model: str = "", server: str = "auto",
                 timeout: float = 600.0, max_batch_rows: int = 16, max_queue: int = 256):
        super().__init__({"samples": 0, "rows": 0})
        self.tokenizer = tokenizer
        self.url = url
        self.host = urlsplit(url).netloc.rpartition("@")[2]  # what errors and /health name: no credentials
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.wanted_model = model
        self.wanted_server = server
        self.timeout = timeout
        self.max_batch_rows = max_batch_rows
        self.max_queue = max_queue
        self.pending = deque()
        self.lock = threading.Lock()
        self.tasks = {}  # sample -> its asyncio task, while in flight
        self.rows_in_flight = 0
        self.state = UpstreamState()
        self.seen = threading.Event()  # set once the server answered /models
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run_loop, name="upstream", daemon=True)
        self.thread.start()

    @property
    def alive(self) -> bool:
        return self.thread.is_alive()

    def failure(self):
        if not self.alive:
            return "the thread talking to the engine stopped"
        return None if self.state.up else self.state.error

    def describe(self) -> dict:
        state = self.state
        return {"engine": "openai", "engine_url": self.url.replace(urlsplit(self.url).netloc, self.host),
                "engine_server": state.server and state.server.kind, "engine_model": state.model,
                "batching": self.stats}

    def wait_until_seen(self) -> int:
        """Block until the server first answered /models; its context length, or None if it tells none."""
        self.seen.wait()
        return self.state.window

    def unsupported(self, params) -> list:
        return self.state.server.unsupported(params)

    def submit(self, samples: list) -> list:
        with self.lock:
            enqueue(self.pending, samples, self.max_queue, self.max_batch_rows - self.rows_in_flight)
        self.loop.call_soon_threadsafe(self._dispatch)
        return [sample.future for sample in samples]

    def withdraw(self, sample) -> bool:
        with self.lock:
            queued = take_back(self.pending, sample)
        if queued:
            return sample.future.cancel()
        sample.abandoned = True
        self.loop.call_soon_threadsafe(self._cancel, sample)
        return False

    # The rest runs on the loop's thread.
    def _run_loop(self):
        asyncio.set_event_loop(self.loop)
        self.client = httpx.AsyncClient(timeout=httpx.Timeout(self.timeout, connect=CONNECT_TIMEOUT_S),
                                        limits=httpx.Limits(max_connections=None, max_keepalive_connections=64))
        self.loop.create_task(self._probe_forever())
        self.loop.run_forever()

    def _dispatch(self):
        with self.lock:
            while self.pending and (self.rows_in_flight == 0
                                    or self.rows_in_flight + self.pending[0].rows <= self.max_batch_rows):
                sample = self.pending.popleft()
                if sample.future.set_running_or_notify_cancel():
                    self.rows_in_flight += sample.rows
                    task = self.loop.create_task(self._generate(sample))
                    task.add_done_callback(partial(self._finished, sample, time.monotonic()))
                    self.tasks[sample] = task

    def _cancel(self, sample):
        task = self.tasks.get(sample)
        if task is not None:
            task.cancel()

    async def _generate(self, sample) -> str:
        """Resolve the sample's future; how it ended, for the metrics."""
        try:
            hypotheses = await self._complete(sample)
        except EngineError as error:
            self._free(sample)
            sample.future.set_exception(error)
            return type(error).__name__
        except Exception:
            logger.exception("a request to the engine at %s failed", self.host)
            self._free(sample)
            sample.future.set_exception(GenerationFailed())
            return "GenerationFailed"
        self._free(sample)
        sample.future.set_result(hypotheses)
        self.count(samples=1, rows=sample.rows)
        return "ok"

    def _free(self, sample):
        """Its rows back, once, and before its client hears: one that asks again at once finds the room."""
        with self.lock:
            if self.tasks.pop(sample, None) is not None:
                self.rows_in_flight -= sample.rows

    def _finished(self, sample, started: float, task):
        self._free(sample)  # cancelled: _generate did not
        if not sample.future.done():  # withdrawn: nobody reads it (maybe cancelled before it began)
            sample.future.set_exception(CancelledError())
        self.observe_upstream(time.monotonic() - started, "cancelled" if task.cancelled() else task.result())
        self._dispatch()

    async def _complete(self, sample) -> list:
        state = self.state
        if state.model is None:
            raise EngineUnavailable(state.error)
        server = state.server
        prompt = sample.input_ids if server.token_ids else self.tokenizer.decode(sample.input_ids)
        body = server.body(state.model, prompt, sample.params, upstream_stops(sample.matcher))
        self.add_prompt_tokens(len(sample.input_ids))
        try:
            async with self.client.stream("POST", f"{self.url}/completions", json=body,
                                          headers=self.headers) as response:
                if response.status_code >= 400:
                    raise self._refusal(response.status_code, await response.aread())
                return await self._read(sample, response)
        except httpx.TimeoutException as error:
            if isinstance(error, httpx.ConnectTimeout):
                raise EngineUnavailable(f"{self.host} does not accept connections ({describe(error)})") from None
            raise EngineTimeout(self.timeout) from None
        except httpx.ConnectError as error:
            raise EngineUnavailable(f"cannot connect to {self.host} ({describe(error)})") from None
        except httpx.HTTPError as error:
            raise EngineFailed(f"the connection to {self.host} broke ({describe(error)})") from None

    @staticmethod
    def _refusal(status: int, content: bytes) -> EngineError:
        try:
            message = error_message(json.loads(content))
        except ValueError:
            message = content.decode("utf-8", "replace")
        message = message[:MAX_ERROR_CHARS]
        if status == 429 or status == 503:
            return EngineUnavailable(f"HTTP {status}: {message}")
        return EngineRejected(message) if status < 500 else EngineFailed(f"HTTP {status}: {message}")

    async def _read(self, sample, response) -> list:
        """The server's events until every choice is finished: by the server, or by our stop matcher (then the
        rest is not read, and leaving closes the connection, so the server stops generating)."""
        replies = [ReplyText(sample, index) for index in range(sample.params.num_return_sequences)]
        usage, cut, first, done = None, False, True, False
        async for line in response.aiter_lines():
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                done = True
                break
            try:
                event = json.loads(data)
            except ValueError:
                raise EngineFailed(f"an unreadable event: {data[:MAX_ERROR_CHARS]}") from None
            if "error" in event:
                raise EngineFailed(error_message(event)[:MAX_ERROR_CHARS])
            usage = event.get("usage") or usage
            for choice in event.get("choices") or ():
                index = choice.get("index", 0)
                if not 0 <= index < len(replies):
                    raise EngineFailed(f"choice {index} of {len(replies)} asked for")
                reply = replies[index]
                if reply.finished:
                    continue
                if first:
                    self.first_token(sample)
                    first = False
                if reply.extend(choice.get("text") or ""):
                    cut = True
                    reply.finish("stop")
                elif choice.get("finish_reason"):
                    reply.finish("length" if choice["finish_reason"] == "length" else "stop")
                else:
                    reply.hold()
            if cut and all(reply.finished for reply in replies):
                break
        unfinished = [reply for reply in replies if not reply.finished]
        if unfinished and not done:
            raise EngineFailed(f"{self.host} ended its stream before the reply ended")
        for reply in unfinished:  # the server said it was done, not why
            reply.finish("stop")
        return self._hypotheses(replies, usage if not cut else None)

    def _hypotheses(self, replies: list, usage) -> list:
        """Our Hypotheses; a hypothesis's tokens are the server's count where it has one for it alone (a single
        choice it ended itself), else its text's tokens counted here."""
        hypotheses = []
        for reply in replies:
            text = reply.text[:reply.stop]
            if usage and len(replies) == 1 and "completion_tokens" in usage:
                tokens = usage["completion_tokens"]
            else:
                tokens = len(self.tokenizer(text, add_special_tokens=False)["input_ids"])
            hypotheses.append(Hypothesis(text, reply.finish_reason, tokens))
        self.add_tokens(sum(hypothesis.tokens for hypothesis in hypotheses))
        return hypotheses

    async def _probe_forever(self):
        while True:
            await self._probe()
            await asyncio.sleep(PROBE_INTERVAL_S)

    async def _probe(self):
        try:
            response = await self.client.get(f"{self.url}/models", headers=self.headers, timeout=PROBE_TIMEOUT_S)
            if response.status_code >= 400:
                raise ProbeFailed(f"GET {self.host}/v1/models answered HTTP {response.status_code}")
            models = response.json()["data"]
            ids = [entry["id"] for entry in models]
            wanted = self.wanted_model or ids[0]
            if wanted not in ids:
                raise ProbeFailed(f"ENGINE_MODEL {wanted!r} is not served at {self.host} (it serves {', '.join(ids)})")
        except ProbeFailed as error:
            reason = str(error)
        except httpx.HTTPError as error:
            reason = f"cannot reach {self.host} ({describe(error)})"
        except (ValueError, KeyError, IndexError, TypeError) as error:
            reason = f"{self.host}/v1/models is not an OpenAI model list ({describe(error)})"
        else:
            self._seen(models[ids.index(wanted)], wanted)
            return
        if self.state.up or self.state.error != reason:
            logger.warning("the engine at %s is down: %s", self.host, reason)
        self.state = UpstreamState(False, reason, self.state.model, self.state.server, self.state.window)

    def _seen(self, entry: dict, model: str):
        window = entry.get("max_model_len") or (entry.get("meta") or {}).get("n_ctx")  # vLLM's, llama.cpp's
        state = UpstreamState(True, None, model, server_of(self.wanted_server, entry.get("owned_by")),
                              window if isinstance(window, int) and window > 0 else None)
        if not self.state.up:
            logger.info("the engine at %s is up: model %s, %s server", self.host, model, state.server.kind)
        self.state = state
        self.seen.set()
