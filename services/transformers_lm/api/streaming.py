"""Hypothesis pieces of a request's samples, in the order the engine produces them, for server-sent events."""
import queue
import time
from functools import partial

from ..engine.errors import EngineError, GenerationFailed, GenerationTimeout
from ..errors import ClientGone
from ..service import GONE_POLL_S


class PieceStream:
    """Submits the samples at once (so a full queue is refused before the stream starts), then iterates over
    ("piece", choice, text) and ("end", choice, Hypothesis) events; choice = sample position * n + index.

    Closing the iteration early (a write to the departed client failed), `gone()` turning true while nothing
    arrives (the client left before anything was written: a queued sample, a stalled ENGINE=openai server) or
    passing the deadline takes the samples out of the queue or the running batch.
    """

    def __init__(self, engine, samples: list, timeout: float, gone=lambda: False):
        self.engine = engine
        self.samples = samples
        self.gone = gone
        self.events = queue.SimpleQueue()
        for position, sample in enumerate(samples):
            base = position * sample.params.num_return_sequences
            sample.listener = partial(self._piece, base)
            sample.future.add_done_callback(partial(self._end, base))
        engine.submit(samples)
        self.deadline = time.monotonic() + timeout

    def _piece(self, base: int, index: int, text: str):
        self.events.put(("piece", base + index, text))

    def _end(self, base: int, future):
        self.events.put(("end", base, future))

    def __iter__(self):
        streamed = {}
        open_samples = len(self.samples)
        try:
            while open_samples:
                try:
                    wait = min(GONE_POLL_S, self.deadline - time.monotonic())
                    kind, choice, value = self.events.get(timeout=max(0.0, wait))
                except queue.Empty:
                    if time.monotonic() >= self.deadline:
                        raise GenerationTimeout() from None
                    if self.gone():
                        raise ClientGone() from None
                    continue
                if kind == "piece":
                    streamed[choice] = streamed.get(choice, 0) + len(value)
                    yield kind, choice, value
                    continue
                open_samples -= 1
                if value.cancelled():
                    raise GenerationFailed()
                if value.exception() is not None:
                    error = value.exception()
                    raise error if isinstance(error, EngineError) else GenerationFailed()
                for index, hypothesis in enumerate(value.result()):
                    # An engine that streams nothing (static batching) delivers the whole text here.
                    rest = hypothesis.text[streamed.get(choice + index, 0):]
                    if rest:
                        yield "piece", choice + index, rest
                    yield "end", choice + index, hypothesis
        finally:
            for sample in self.samples:
                if not sample.future.done():
                    self.engine.withdraw(sample)
