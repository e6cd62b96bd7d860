"""Continuous (iteration-level) batching: the default engine (BATCHING=continuous).

Each loop turn is one forward pass holding a decode step for every running sequence plus up to PREFILL_CHUNK
tokens of newly admitted prompts (ragged_attention.py). A sample joins the running batch as soon as its prompt
is in the cache and a finished sequence leaves at once, so nobody waits for the longest reply of a batch; a long
prompt is spread over several passes instead of stalling the running decodes; and a new prompt shares its
pass with the decode step rather than taking one of its own. A prompt that starts like a recent one computes
only what differs (prefix_cache.py). Each sequence keeps its own length limit, stop strings, penalties,
sampling parameters and seed.

Beam search keeps its sequences in one search, so a beam sample runs as a static `generate()` call; waiting
embedding jobs run as padded forward passes of their own (embeddings.py) between two passes.
"""
import logging
from collections import deque
from concurrent.futures import CancelledError

import torch

from . import ragged_attention
from .decoding import choose_tokens
from .errors import GenerationFailed
from .generation import eos_ids, generate_group
from .kv_batch import KVBatch, Prefill
from .llama_pass import LlamaPass
from .prefix_cache import PrefixCache
from .samples import EmbeddingJob
from .sequences import Sequence
from .static import BatchEngine

logger = logging.getLogger(__name__)


def pass_of(loaded):
    """What runs the ragged passes of `loaded`: a LlamaPass built from its stored weights where it was loaded as
    such, else model_attention.enable's answer for its transformers model (None where it can't run them)."""
    if loaded.weights is not None:
        return LlamaPass.stored(loaded.config, loaded.weights, loaded.device)
    from .model_attention import enable  # only here: it imports transformers' model code
    return enable(loaded.model)


def prompt_chunk(prefill: Prefill, budget: int, first: bool) -> int:
    """How many of a prompt's remaining tokens a pass with `budget` prompt tokens left takes: all that fit, cut at
    a block's end (its attention calls stay those it would have alone; `done` is always at one); a pass's first
    chunk takes at least a block, so that a PREFILL_CHUNK under BLOCK still moves."""
    end = prefill.done + min(prefill.remaining, budget)
    if end < len(prefill.tokens):
        end -= end % ragged_attention.BLOCK
        if first and end == prefill.done:
            end = min(len(prefill.tokens), prefill.done + ragged_attention.BLOCK)
    return end - prefill.done


class ContinuousEngine(BatchEngine):
    def __init__(self, loaded, max_batch_rows: int = 16, prefill_chunk: int = 256, max_queue: int = 256,
                 run_group=generate_group, prefix_cache_bytes: int = 128 << 20, run_pass=None):
        self.run_pass = run_pass or pass_of(loaded)
        if self.run_pass is None:
            raise ValueError(f"{loaded.name} can't run ragged attention: use BATCHING=static")
        self.prefill_chunk = prefill_chunk
        self.batch = KVBatch(loaded.device)
        self.prefixes = PrefixCache(prefix_cache_bytes)
        self.running = []  # Sequences, in the batch's row order
        self.prefills = deque()  # (sample, Prefill): admitted, prompt not all cached yet, oldest first
        self.sequences = {}  # sample -> its Sequences, until its future is resolved
        super().__init__(loaded, max_batch_rows, 0.0, run_group, max_queue)

    @torch.inference_mode()
    def _loop(self):
        while True:
            beams, jobs = self._admit()
            for sample in beams:
                self._run([sample])
            if jobs:
                self._embed(jobs)
            self._pass()

    def _admit(self) -> tuple:
        """Move waiting samples into prefill while rows are free; returns the beam samples to run statically
        and the embedding jobs (which take no rows)."""
        beams, jobs = [], []
        with self.condition:
            # Only this thread changes the batch, so `rows` holds across the wait (which begins only when it is 0).
            rows = len(self.running) + sum(sample.rows for sample, _ in self.prefills)
            self.rows_busy = rows  # re-synced: a failed pass or a withdrawn prefill frees rows _retire does not see
            while not (self.pending or self.running or self.prefills):
                self.condition.wait()
            while self.pending and (rows == 0 or rows + self.pending[0].rows <= self.max_batch_rows):
                sample = self.pending.popleft()
                if not sample.future.set_running_or_notify_cancel():
                    continue
                if isinstance(sample, EmbeddingJob):
                    jobs.append(sample)
                    continue
                if sample.params.beam_search:
                    beams.append(sample)
                    continue
                prefill = self.prefixes.prefill(sample.input_ids)
                self.add_prompt_tokens(prefill.remaining, prefill.done)
                self.prefills.append((sample, prefill))
                rows += sample.rows
            self.rows_busy = rows
        return beams, jobs

    def _chunks(self) -> list:
        """This pass's prompt work, (sample, Prefill, tokens): the oldest admitted prompts up to PREFILL_CHUNK
        tokens, one that does not fit cut at the end of a block of attention (ragged_attention.BLOCK)."""
        chunks, budget = [], self.prefill_chunk
        for sample, prefill in list(self.prefills):
            if sample.abandoned:
                self.prefills.remove((sample, prefill))
                sample.future.set_exception(CancelledError())
            elif budget > 0:
                length = prompt_chunk(prefill, budget, first=not chunks)
                if length:
                    chunks.append((sample, prefill, length))
                    budget -= length
        return chunks

    def _pass(self):
        chunks = self._chunks()
        if not (chunks or self.running):
            return
        rows = len(self.running)
        try:
            logits = ragged_attention.forward(self.run_pass, self.batch,
                                              [sequence.next_token for sequence in self.running],
                                              [(prefill, length) for _, prefill, length in chunks])
            if rows:
                self._take(self.running, logits[:rows])
            self._start([(sample, prefill) for sample, prefill, _ in chunks if not prefill.remaining], logits[rows:])
        except Exception:
            logger.exception("forward pass failed; failing its samples")
            self._fail({sequence.sample for sequence in self.running} | {sample for sample, _, _ in chunks})
            return
        self.count(passes=1, prefill_tokens=sum(length for _, _, length in chunks), prefill_passes=int(bool(chunks)))
        if rows:
            self.count(steps=1, rows=rows)
            self.observe_batch(rows)
        self._retire()

    def _start(self, started: list, logits):
        """First tokens of prompts now cached (logits[i] for started[i]); sequences that go on join the batch."""
        copies, alive = [], []
        for position, (sample, prefill) in enumerate(started):
            self.prefills.remove((sample, prefill))
            self.prefixes.store(prefill)
            eos = frozenset(eos_ids(self.loaded.generation_config, sample.params))
            sequences = [Sequence(sample, index, eos, self.loaded.tokenizer) for index in range(sample.rows)]
            self.sequences[sample] = sequences
            self._take(sequences, logits[position:position + 1].expand(len(sequences), -1).clone())
            self.first_token(sample)
            going_on = [sequence for sequence in sequences if not sequence.finished]
            copies.append(len(going_on))
            alive.extend(going_on)
        self.batch.join([prefill for _, prefill in started], copies)
        self.running.extend(alive)
        for sample, _ in started:
            self._settle(sample)

    def _retire(self):
        """Resolve finished or abandoned samples and drop their rows from the batch."""
        keep = [index for index, sequence in enumerate(self.running)
                if not sequence.finished and not sequence.sample.abandoned]
        with self.condition:  # free before their clients hear: one that asks again at once finds the room
            self.rows_busy -= len(self.running) - len(keep)
        for sample in {sequence.sample for sequence in self.running if sequence.finished or sequence.sample.abandoned}:
            self._settle(sample)
        if len(keep) < len(self.running):
            self.batch.keep(keep)
            self.running = [self.running[index] for index in keep]

    def _fail(self, samples: set):
        """After a failed pass the caches it touched are unusable: fail its samples, start the batch afresh."""
        self.prefills = deque(entry for entry in self.prefills if entry[0] not in samples)
        self.running = []
        self.batch.keep([])
        for sample in samples:
            self.sequences.pop(sample, None)
            if not sample.future.done():
                sample.future.set_exception(GenerationFailed())

    def _take(self, sequences: list, logits):
        tokens = choose_tokens(sequences, logits)
        for sequence, token in zip(sequences, tokens):
            sequence.add(token)
        self.add_tokens(sum(token not in sequence.eos for sequence, token in zip(sequences, tokens)))

    def _settle(self, sample):
        """Resolve a sample's future once all its sequences are done (or nobody waits any more)."""
        sequences = self.sequences.get(sample)
        if sequences is None:
            return
        if sample.abandoned:
            del self.sequences[sample]
            sample.future.set_exception(CancelledError())
        elif all(sequence.finished for sequence in sequences):
            del self.sequences[sample]
            self.count(samples=1)
            sample.future.set_result([sequence.hypothesis() for sequence in sequences])
