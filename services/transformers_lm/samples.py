"""What request handlers hand to an engine (a Sample) and what they get back (Hypotheses)."""
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Callable, Optional

from .generation_params import GenerationParams
from .replies import StopMatcher


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
    def rows(self) -> int:
        """Batch rows this sample takes: beam search returns its sequences from one row."""
        return 1 if self.params.beam_search else self.params.num_return_sequences
