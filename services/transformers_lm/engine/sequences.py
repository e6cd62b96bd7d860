"""One hypothesis being generated: its tokens, its text so far, and when it ends."""
import torch

from .decoding import RowDecoder
from .reply_text import ReplyText
from .samples import Hypothesis


class Sequence(ReplyText):
    """Text is detokenized incrementally (decoding a few tokens back and keeping the difference, as TGI
    does), so stop checks and streaming cost the same at token 5 and token 500."""

    def __init__(self, sample, index: int, eos: frozenset, tokenizer):
        super().__init__(sample, index)
        self.eos = eos
        self.tokenizer = tokenizer
        seed = None if sample.params.seed is None else sample.params.seed + index
        self.decoder = RowDecoder(sample.params.generate_kwargs, eos, seed)
        self.generated = []
        self.prefix_offset = self.read_offset = 0

    @property
    def next_token(self) -> int:
        return self.generated[-1]

    def history(self) -> torch.Tensor:
        return torch.tensor([self.sample.input_ids + self.generated], dtype=torch.long)

    def add(self, token: int):
        """Take the chosen token; afterwards `finished` tells whether this sequence is done."""
        if token in self.eos:
            self.finish("stop")
            return
        self.generated.append(token)
        if self.extend(self._detokenize()):
            self.finish("stop")
        elif len(self.generated) >= self.sample.params.max_new_tokens:
            self.finish("length")
        else:
            self.hold()

    def hypothesis(self) -> Hypothesis:
        return Hypothesis(self.text[:self.stop], self.finish_reason, len(self.generated))

    def _detokenize(self, final: bool = False) -> str:
        """The text the tokens since the last call add ("" while it is half a character)."""
        decode = self.tokenizer.decode
        before = decode(self.generated[self.prefix_offset:self.read_offset], skip_special_tokens=True)
        after = decode(self.generated[self.prefix_offset:], skip_special_tokens=True)
        # A trailing U+FFFD is half of a multi-byte character: wait for the next token, unless none comes.
        if len(after) > len(before) and (final or not after.endswith("\ufffd")):
            self.prefix_offset, self.read_offset = self.read_offset, len(self.generated)
            return after[len(before):]
        return ""

    def finish(self, reason: str):
        if self.stop is None and self.read_offset < len(self.generated):
            self.text += self._detokenize(final=True)
        super().finish(reason)
