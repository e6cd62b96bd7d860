"""Choosing each row's next token with that row's own parameters, in one pass over the batch's logits.

The continuous engine's rows come from different requests, so penalties, sampling warpers, minimum
lengths and seeds are per row. transformers' own logits processors do the maths (the same results as
`generate()` with those parameters); rows with equal warpers are warped together in one call.
"""
import json
from functools import lru_cache

import torch
from transformers import (LogitsProcessorList, MinPLogitsWarper, NoBadWordsLogitsProcessor,
                          NoRepeatNGramLogitsProcessor, RepetitionPenaltyLogitsProcessor, TemperatureLogitsWarper,
                          TopKLogitsWarper, TopPLogitsWarper, TypicalLogitsWarper)

WARPER_KEYS = ("temperature", "top_k", "top_p", "min_p", "typical_p")


@lru_cache(maxsize=256)
def _warpers(key: str) -> LogitsProcessorList:
    """Sampling warpers in generate()'s order, for a JSON key of their parameters (shared between rows)."""
    values = json.loads(key)
    warpers = LogitsProcessorList()
    if values.get("temperature", 1.0) != 1.0:
        warpers.append(TemperatureLogitsWarper(values["temperature"]))
    if values.get("top_k"):
        warpers.append(TopKLogitsWarper(values["top_k"]))
    if values.get("top_p", 1.0) < 1.0:
        warpers.append(TopPLogitsWarper(values["top_p"]))
    if "min_p" in values:
        warpers.append(MinPLogitsWarper(values["min_p"]))
    if values.get("typical_p", 1.0) < 1.0:
        warpers.append(TypicalLogitsWarper(values["typical_p"]))
    return warpers


class RowDecoder:
    """One row's token choice: penalties that read its history, then warpers, then greedy or sampling."""

    def __init__(self, kwargs: dict, eos: frozenset, seed: int = None):
        self.do_sample = kwargs.get("do_sample", False)
        self.min_new_tokens = kwargs.get("min_new_tokens", 0)
        self.eos = sorted(eos)
        history = LogitsProcessorList()
        if kwargs.get("repetition_penalty", 1.0) != 1.0:
            history.append(RepetitionPenaltyLogitsProcessor(kwargs["repetition_penalty"]))
        if kwargs.get("no_repeat_ngram_size"):
            history.append(NoRepeatNGramLogitsProcessor(kwargs["no_repeat_ngram_size"]))
        if kwargs.get("bad_words_ids"):
            history.append(NoBadWordsLogitsProcessor(kwargs["bad_words_ids"],
                                                     self.eos or None))
        self.history = history
        warper_values = {name: kwargs[name] for name in WARPER_KEYS if name in kwargs} if self.do_sample else {}
        self.warper_key = json.dumps(warper_values, sort_keys=True)
        self.generator = torch.Generator().manual_seed(seed) if seed is not None else None


def choose_tokens(rows: list, logits: torch.Tensor) -> list:
    """Next token of each row. `rows[i]` has `.decoder` (a RowDecoder), `.generated` (its new tokens so far)
    and `.history()` (prompt + new tokens as a [1, n] tensor); `logits` is [len(rows), vocab], float32."""
    scores = logits
    for index, row in enumerate(rows):
        decoder = row.decoder
        if decoder.eos and len(row.generated) < decoder.min_new_tokens:
            scores[index, decoder.eos] = -float("inf")
        if decoder.history:
            scores[index:index + 1] = decoder.history(row.history(), scores[index:index + 1])

    chosen = torch.empty(len(rows), dtype=torch.long)
    greedy = [index for index, row in enumerate(rows) if not row.decoder.do_sample]
    if greedy:
        chosen[greedy] = scores[greedy].argmax(dim=-1)
    groups = {}
    for index, row in enumerate(rows):
        if row.decoder.do_sample:
            groups.setdefault(row.decoder.warper_key, []).append(index)
    for key, indices in groups.items():
        probs = torch.softmax(_warpers(key)(None, scores[indices]), dim=-1)
        seeded = [position for position, index in enumerate(indices) if rows[index].decoder.generator is not None]
        free = [position for position in range(len(indices)) if rows[indices[position]].decoder.generator is None]
        if free:
            chosen[[indices[position] for position in free]] = torch.multinomial(probs[free], 1).squeeze(1)
        for position in seeded:
            generator = rows[indices[position]].decoder.generator
            chosen[indices[position]] = torch.multinomial(probs[position], 1, generator=generator)[0]
    return chosen.tolist()
