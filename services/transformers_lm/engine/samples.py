"""What request handlers hand to an engine (a Sample with its GenerationParams, or an EmbeddingJob) and what they
get back (Hypotheses)."""
import json
from concurrent.futures import Future
from dataclasses import dataclass, field
from functools import cached_property
from typing import Callable, Optional

from .stops import StopMatcher


@dataclass(frozen=True)
class GenerationParams:
    generate_kwargs: dict  # batch-wide generate() arguments: decoding mode, sampling, penalties
    max_new_tokens: int
    num_return_sequences: int
    stop_strings: tuple = ()
    seed: int = None
    replacement: tuple = ()

    @property
    def beam_search(self) -> bool:
        return self.generate_kwargs.get("num_beams", 1) > 1

    @cached_property  # compared against every waiting sample each time a batch forms
    def batch_key(self) -> str:
        """Samples with equal keys can share one generate() call. Length, stop strings and the
        number of returned sequences are handled per row, so they don't split batches; beam
        search returns its sequences itself, and a seeded sample runs alone to stay reproducible."""
        key = dict(self.generate_kwargs)
        if self.beam_search:
            key["num_return_sequences"] = self.num_return_sequences
        if self.seed is not None:
            key["seed"] = self.seed
            key["solo"] = id(self)
        return json.dumps(key, sort_keys=True, default=list)


@dataclass(frozen=True)
class Hypothesis:
    text: str  # decoded up to the end of generation, cut where a stop string or speaker label begins
    finish_reason: str  # "stop" (EOS, stop string, label) or "length" (max_new_tokens reached)
    tokens: int  # generated tokens the text comes from


@dataclass(eq=False)
class Sample:
    """One context to answer: its input ids, its parameters and where its hypotheses go.

    `listener(index, text)` (optional) receives each new piece of hypothesis `index` as soon as it is
    known not to belong to a stop string; the future then resolves to the list of Hypotheses.
    """
    input_ids: list
    params: GenerationParams
    matcher: StopMatcher
    listener: Optional[Callable[[int, str], None]] = None
    future: Future = field(default_factory=Future)
    abandoned: bool = False  # set when nobody waits any more: the engine drops its rows at the next step
    submitted_at: float = 0.0  # time.monotonic() when queued, for time-to-first-token

    @property
    def batch_key(self) -> str:
        return self.params.batch_key

    @property
    def rows(self) -> int:
        """Batch rows this sample takes: beam search returns its sequences from one row."""
        return 1 if self.params.beam_search else self.params.num_return_sequences


@dataclass(eq=False)
class EmbeddingJob:
    """One text's token ids; the future resolves to its embedding, a list of floats of unit length."""
    input_ids: list
    future: Future = field(default_factory=Future)
    abandoned: bool = False
    submitted_at: float = 0.0
    # It takes no row of a running batch: an engine admits it whatever the batch holds.
    rows = 0
    batch_key = "embedding"  # no generation sample's key (a JSON object) can equal it
