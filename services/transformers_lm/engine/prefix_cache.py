"""Keys and values of recent prompts, reused by new prompts that start with the same tokens.

Dream sends every request of a skill with the same instruction prompt, and each turn of a dialog repeats the
turns before it; on a CPU the prefill of those shared tokens is most of a request's time to first token. A
causal model's keys and values at position i depend only on tokens 0..i, so a stored prompt's cache cut to the
tokens it shares with a new prompt is exactly the new prompt's cache for those tokens.

Prefixes are reused in whole blocks of ragged_attention.BLOCK tokens: the new prompt's attention then runs in
the calls it would run with nothing cached, and its answer is the same bit for bit.

Entries are whole prompts, least recently used evicted first, within a byte budget (PREFIX_CACHE_MB). A prompt
that extends a stored one replaces it; one that a stored prompt extends only refreshes that entry.
"""
from collections import OrderedDict

from .kv_batch import Prefill
from .ragged_attention import BLOCK


def _shared(stored: tuple, tokens: list, limit: int) -> int:
    """How many leading tokens `stored` and `tokens` share, at most `limit`."""
    limit = min(limit, len(stored))
    for index in range(limit):
        if stored[index] != tokens[index]:
            return index
    return limit


class PrefixCache:
    def __init__(self, max_bytes: int, block: int = BLOCK):
        self.max_bytes = max_bytes
        self.block = block  # prefixes are reused in whole blocks of attention (ragged_attention.BLOCK)
        self.entries = OrderedDict()  # prompt tokens (tuple) -> (keys, values, bytes); least recently used first
        self.bytes = 0

    def prefill(self, tokens: list) -> Prefill:
        """A Prefill of `tokens` that starts after the longest cached prefix of whole blocks. At least the last
        token is left to compute: its logits choose the first new token."""
        best, length = None, 0
        for stored in self.entries:
            shared = _shared(stored, tokens, len(tokens) - 1)
            shared -= shared % self.block
            if shared > length:
                best, length = stored, shared
        prefill = Prefill(tokens)
        if best is not None:
            self.entries.move_to_end(best)
            keys, values, _ = self.entries[best]
            prefill.keys = [layer[:, :, :length] for layer in keys]
            prefill.values = [layer[:, :, :length] for layer in values]
            prefill.done = length
        return prefill

    def store(self, prefill: Prefill):
        """Keep a finished prompt's cache (copied: the pass's tensors it views would stay alive with it)."""
        tokens = tuple(prefill.tokens)
        covering = next((stored for stored in self.entries if stored[:len(tokens)] == tokens), None)
        if covering is not None:
            self.entries.move_to_end(covering)
            return
        size = sum(layer.numel() * layer.element_size() for layer in prefill.keys + prefill.values)
        if size > self.max_bytes:
            return
        for stored in [stored for stored in self.entries if tokens[:len(stored)] == stored]:
            self._drop(stored)
        while self.bytes + size > self.max_bytes:
            self._drop(next(iter(self.entries)))
        self.entries[tokens] = ([layer.clone() for layer in prefill.keys],
                                [layer.clone() for layer in prefill.values], size)
        self.bytes += size

    def _drop(self, stored: tuple):
        self.bytes -= self.entries.pop(stored)[2]
