"""Continuous (iteration-level) batching: the default engine (BATCHING=continuous).

Each loop turn runs at most PREFILL_CHUNK prompt tokens of newly arrived samples, then one decode step
for every running sequence. A sample joins the running batch as soon as its prompt is in the cache and
a finished sequence leaves at once, so nobody waits for the longest reply of a batch, and a long prompt
is spread over several turns instead of stalling the running decodes. Each sequence keeps its own
length limit, stop strings, penalties, sampling parameters and seed.

Beam search keeps its sequences in one search, so a beam sample runs as a static `generate()` call.
"""
import logging
from collections import deque
from concurrent.futures import CancelledError

import torch

from .batching import BatchEngine
from .decoding import choose_tokens
from .generation import eos_ids, generate_group
from .kv_batch import KVBatch, Prefill
from .sequences import Sequence

logger = logging.getLogger(__name__)


class ContinuousEngine(BatchEngine):
    def __init__(self, loaded, max_batch_rows: int = 16, prefill_chunk: int = 256, max_queue: int = 256,
                 run_group=generate_group):
        self.prefill_chunk = prefill_chunk
        self.batch = KVBatch(loaded.model, loaded.device)
        self.running = []  # Sequences, in the batch's row order
        self.prefills = deque()  # samples admitted, prompt not cached yet
        self.prefilling = None  # (samples, Prefill) in progress
        self.sequences = {}  # sample -> its Sequences, until its future is resolved
        super().__init__(loaded, max_batch_rows, 0.0, run_group, max_queue)

    @torch.inference_mode()
    def _loop(self):
        while True:
            for sample in self._admit():
                self._run([sample])
            spent = 0
            while (self.prefills or self.prefilling) and (not self.running or spent < self.prefill_chunk):
                spent += self._prefill(self.prefill_chunk - spent if self.running else self.prefill_chunk)
            if self.running:
                self._decode()

    def _admit(self) -> list:
        """Move waiting samples into prefill while rows are free; returns beam samples to run statically."""
        beams = []
        with self.condition:
            while not (self.pending or self.running or self.prefills or self.prefilling):
                self.condition.wait()
            starting = list(self.prefills) + (self.prefilling[0] if self.prefilling else [])
            rows = len(self.running) + sum(sample.rows for sample in starting)
            while self.pending and (rows == 0 or rows + self.pending[0].rows <= self.max_batch_rows):
                sample = self.pending.popleft()
                if not sample.future.set_running_or_notify_cancel():
                    continue
                if sample.params.beam_search:
                    beams.append(sample)
                    continue
                self.prefills.append(sample)
                rows += sample.rows
        return beams

    def _prefill(self, budget: int) -> int:
        """One chunk of prefill; the sequences of its samples start once their prompts are cached."""
        if self.prefilling is None:
            self.prefilling = self._group(budget)
            if self.prefilling is None:
                return 0
        samples, prefill = self.prefilling
        try:
            spent = prefill.advance(self.loaded.model, budget)
            self.count(prefill_tokens=spent, prefill_passes=1)
            if prefill.finished:
                self.prefilling = None
                self._start(samples, prefill)
            return spent
        except Exception:
            logger.exception("prefill failed")
            self.prefilling = None
            for sample in samples:
                self.sequences.pop(sample, None)
                sample.future.set_exception(RuntimeError("generation failed"))
            return budget

    def _group(self, budget: int):
        """(samples, Prefill): the oldest admitted prompt, plus the next ones while their left-padded batch
        fits `budget` tokens."""
        group = []
        while self.prefills:
            sample = self.prefills[0]
            if sample.abandoned:
                self.prefills.popleft()
                sample.future.set_exception(CancelledError())
                continue
            width = max(len(member.input_ids) for member in group + [sample])
            if group and width * (len(group) + 1) > budget:
                break
            group.append(self.prefills.popleft())
        if not group:
            return None
        return group, Prefill([sample.input_ids for sample in group], self.loaded.device)

    def _start(self, samples: list, prefill: Prefill):
        """First tokens from the prompts' logits; sequences that go on join the running batch."""
        copies, alive = [], []
        for position, sample in enumerate(samples):
            eos = frozenset(eos_ids(self.loaded.model, sample.params))
            sequences = [Sequence(sample, index, eos, self.loaded.tokenizer) for index in range(sample.rows)]
            self.sequences[sample] = sequences
            self._take(sequences, prefill.logits[position:position + 1].expand(len(sequences), -1).clone())
            self.first_token(sample)
            going_on = [sequence for sequence in sequences if not sequence.finished]
            copies.append(len(going_on))
            alive.extend(going_on)
        if alive:
            self.batch.join(prefill, copies)
            self.running.extend(alive)
        for sample in samples:
            self._settle(sample)

    def _decode(self):
        try:
            logits = self.batch.step([sequence.next_token for sequence in self.running])
            self._take(self.running, logits)
        except Exception:
            logger.exception("decode step failed; failing the running samples")
            for sample in {sequence.sample for sequence in self.running}:
                self.sequences.pop(sample, None)
                sample.future.set_exception(RuntimeError("generation failed"))
            self.running = []
            self.batch.keep([])
            return
        self.count(steps=1, rows=len(self.running))
        self.observe_batch(len(self.running))
        for sample in {sequence.sample for sequence in self.running if sequence.finished or sequence.sample.abandoned}:
            self._settle(sample)
        keep = [index for index, sequence in enumerate(self.running)
                if not sequence.finished and not sequence.sample.abandoned]
        if len(keep) < len(self.running):
            self.batch.keep(keep)
            self.running = [self.running[index] for index in keep]

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
