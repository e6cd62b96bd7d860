"""One hypothesis being generated: its tokens, its text so far, and when it ends."""
import torch

from .decoding import RowDecoder
from .samples import Hypothesis


class Sequence:
    """Text is detokenized incrementally (decoding a few tokens back and keeping the difference, as TGI
    does), so stop checks and streaming cost the same at token 5 and token 500."""

    def __init__(self, sample, index: int, eos: frozenset, tokenizer):
        self.sample = sample
        self.index = index
        self.eos = eos
        self.tokenizer = tokenizer
        seed = None if sample.params.seed is None else sample.params.seed + index
        self.decoder = RowDecoder(sample.params.generate_kwargs, eos, seed)
        self.generated = []
        self.text = ""
        self.prefix_offset = self.read_offset = 0
        self.streamed = 0  # characters handed to the sample's listener
        self.finish_reason = None
        self.stop = None  # where a stop string begins in `text`

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None

    @property
    def next_token(self) -> int:
        return self.generated[-1]

    def history(self) -> torch.Tensor:
        return torch.tensor([self.sample.input_ids + self.generated], dtype=torch.long)

    def add(self, token: int):
        """Take the chosen token; afterwards `finished` tells whether this sequence is done."""
        if token in self.eos:
            self._finish("stop")
            return
        self.generated.append(token)
        changed_from = len(self.text)
        self._detokenize()
        self.stop = self.sample.matcher.find(self.text, changed_from)
        if self.stop is not None:
            self._finish("stop")
        elif len(self.generated) >= self.sample.params.max_new_tokens:
            self._finish("length")
        else:
            self._stream(len(self.text) - self.sample.matcher.holdback(self.text))

    def hypothesis(self) -> Hypothesis:
        return Hypothesis(self.text[:self.stop], self.finish_reason, len(self.generated))

    def _detokenize(self, final: bool = False):
        decode = self.tokenizer.decode
        before = decode(self.generated[self.prefix_offset:self.read_offset], skip_special_tokens=True)
        after = decode(self.generated[self.prefix_offset:], skip_special_tokens=True)
        # A trailing U+FFFD is half of a multi-byte character: wait for the next token, unless none comes.
        if len(after) > len(before) and (final or not after.endswith("\ufffd")):
            self.text += after[len(before):]
            self.prefix_offset, self.read_offset = self.read_offset, len(self.generated)

    def _finish(self, reason: str):
        self.finish_reason = reason
        if self.stop is None and self.read_offset < len(self.generated):
            self._detokenize(final=True)
        self._stream(len(self.text) if self.stop is None else self.stop)

    def _stream(self, upto: int):
        if self.sample.listener is not None and upto > self.streamed:
            self.sample.listener(self.index, self.text[self.streamed:upto])
            self.streamed = upto
