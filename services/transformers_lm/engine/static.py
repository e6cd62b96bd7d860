"""The inference thread: it alone touches the model; request handlers enqueue samples and wait.

`BatchEngine` is static batching (BATCHING=static): waiting samples whose parameters share a batch key
run as one left-padded `generate()` call, so concurrent requests share the model's forward passes.
It also holds the queue that `continuous.ContinuousEngine` inherits, and runs the embedding jobs of both.
"""
import logging
import threading
import time
from collections import deque
from concurrent.futures import CancelledError

from .embeddings import embed
from .errors import GenerationFailed
from .generation import generate_group
from .instruments import Instruments
from .queueing import enqueue, take_back
from .samples import EmbeddingJob

logger = logging.getLogger(__name__)


class BatchEngine(Instruments):
    def __init__(self, loaded, max_batch_rows: int = 16, batch_wait_s: float = 0.01, run_group=generate_group,
                 max_queue: int = 256):
        self.loaded = loaded
        self.max_batch_rows = max_batch_rows
        self.batch_wait_s = batch_wait_s
        self.run_group = run_group
        self.max_queue = max_queue
        self.pending = deque()
        self.rows_busy = 0  # rows of the batch the inference thread runs (under `condition`)
        self.condition = threading.Condition()
        super().__init__({"batches": 0, "samples": 0, "rows": 0})
        self.thread = threading.Thread(target=self._loop, name="inference", daemon=True)
        self.thread.start()

    def submit(self, samples: list) -> list:
        """Queue samples (or EmbeddingJobs) in the bounded queue (queueing.py); returns their futures (each
        resolves to a list of hypotheses)."""
        with self.condition:
            enqueue(self.pending, samples, self.max_queue, self.max_batch_rows - self.rows_busy)
            self.condition.notify()
        return [sample.future for sample in samples]

    def withdraw(self, sample) -> bool:
        """Take back a sample nobody waits for any more: True if it left the queue; if it already
        started, it is marked abandoned (an engine that can drops it at its next step) and False."""
        with self.condition:
            if not take_back(self.pending, sample):
                sample.abandoned = True
                return False
        return sample.future.cancel()

    embeddings = True  # runs EmbeddingJobs too

    @property
    def alive(self) -> bool:
        return self.thread.is_alive()

    def failure(self):
        """Why /health answers 503, or None."""
        return None if self.alive else "the inference thread stopped"

    def describe(self) -> dict:
        """What /health tells of this engine."""
        return {"engine": "transformers", "device": str(self.loaded.device), **self.loaded.precision.describe(),
                "batching": self.stats}

    @staticmethod
    def unsupported(params) -> list:
        """Parameters this engine can't honour: none (the server of ENGINE=openai may not honour some)."""
        return []

    def _next_group(self) -> list:
        """The oldest sample plus every waiting sample with its batch key, up to max_batch_rows rows."""
        with self.condition:
            while not self.pending:
                self.condition.wait()
        # A short pause lets requests that arrive together share the first batch.
        time.sleep(self.batch_wait_s)
        with self.condition:
            first = self.pending.popleft()
            key, group, rows = first.batch_key, [first], first.rows
            for sample in list(self.pending):
                if rows + sample.rows <= self.max_batch_rows and sample.batch_key == key:
                    self.pending.remove(sample)
                    group.append(sample)
                    rows += sample.rows
            self.rows_busy = rows
            return group

    def _loop(self):
        while True:
            group = self._next_group()
            group = [sample for sample in group if sample.future.set_running_or_notify_cancel()]
            if group:
                (self._embed if isinstance(group[0], EmbeddingJob) else self._run)(group)
            with self.condition:
                self.rows_busy = 0

    def _run(self, group: list):
        try:
            results = self.run_group(self.loaded, group)
        except Exception:
            if len(group) > 1:
                # Find the culprit: one bad sample must not blank the others.
                for sample in group:
                    self._run([sample])
                return
            logger.exception("generation failed for one sample")
            group[0].future.set_exception(GenerationFailed())
            return
        rows = sum(sample.rows for sample in group)
        self.count(batches=1, samples=len(group), rows=rows)
        self.observe_batch(rows)
        self.add_prompt_tokens(sum(len(sample.input_ids) for sample in group))
        self.add_tokens(sum(hypothesis.tokens for hypotheses in results for hypothesis in hypotheses))
        with self.condition:  # free before their clients hear: one that asks again at once finds the room
            self.rows_busy = 0
        for sample, hypotheses in zip(group, results):
            self.first_token(sample)  # a static batch shows nothing before it ends
            sample.future.set_result(hypotheses)

    def _embed(self, jobs: list):
        """Embedding jobs, shortest first (least padding), in forward passes of at most max_batch_rows texts."""
        jobs = sorted(jobs, key=lambda job: len(job.input_ids))
        for start in range(0, len(jobs), self.max_batch_rows):
            chunk = []
            for job in jobs[start:start + self.max_batch_rows]:
                if job.abandoned:  # withdrawn after it left the queue: nobody reads it
                    job.future.set_exception(CancelledError())
                else:
                    chunk.append(job)
            if not chunk:
                continue
            try:
                vectors = embed(self.loaded.model, self.loaded.device, chunk).tolist()
            except Exception:
                logger.exception("an embedding pass failed")
                for job in chunk:
                    job.future.set_exception(GenerationFailed())
                continue
            self.count(embedding_passes=1, embedded_texts=len(chunk))
            self.add_embedding_tokens(sum(len(job.input_ids) for job in chunk))
            for job, vector in zip(chunk, vectors):
                job.future.set_result(vector)
