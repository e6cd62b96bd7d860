"""A hypothesis's text as it grows, whoever generates it (our engines or the server at ENGINE_URL)."""


class ReplyText:
    """One hypothesis's text as it grows: where the sample's first stop begins in it, and what of it its listener
    has had (all but a tail that may be the start of a stop string)."""

    def __init__(self, sample, index: int):
        self.sample = sample
        self.index = index
        self.text = ""
        self.streamed = 0  # characters handed to the sample's listener
        self.finish_reason = None
        self.stop = None  # where a stop string begins in `text`

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None

    def extend(self, piece: str) -> bool:
        """Append `piece`; True if a stop string or label now appears (see `stop`)."""
        changed_from = len(self.text)
        self.text += piece
        self.stop = self.sample.matcher.find(self.text, changed_from)
        return self.stop is not None

    def hold(self):
        """Stream what can no longer turn out to be part of a stop."""
        self._stream(len(self.text) - self.sample.matcher.holdback(self.text))

    def finish(self, reason: str):
        self.finish_reason = reason
        self._stream(len(self.text) if self.stop is None else self.stop)

    def _stream(self, upto: int):
        if self.sample.listener is not None and upto > self.streamed:
            self.sample.listener(self.index, self.text[self.streamed:upto])
            self.streamed = upto
