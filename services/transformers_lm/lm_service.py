"""What the endpoints do, minus HTTP: tasks in, hypotheses out, through the batch engine."""
import logging
import time
from concurrent.futures import TimeoutError as FutureTimeout
from functools import lru_cache

from .batching import BatchEngine
from . import ragged_attention
from .continuous import ContinuousEngine
from .errors import RequestError
from .generation_params import capped_defaults, load_defaults, merge, parse
from .openai_api import OPENAI_DEFAULTS
from .prompting import PromptBuilder, apply_replacement
from .replies import StopMatcher, finish_reply
from .request_parsing import Task
from .samples import Sample

logger = logging.getLogger(__name__)

GOALS_INSTRUCTION = "You read instructions written for an AI assistant and summarise the goals they set."
GOALS_QUESTION = ("Here is the instruction an AI assistant was given:\n\n{prompt}\n\n"
                  "In one or two sentences, what goals does this instruction give the assistant?")
GONE_POLL_S = 0.5  # how often a waiting handler checks that its client and the engine are still there
# Limit errors name our parameters; an OpenAI client knows them by these names.
OPENAI_NAMES = {"max_new_tokens": "max_tokens", "num_return_sequences": "n", "stop_strings": "stop"}
# Goals are a summary, not a chat reply: one deterministic answer unless the caller says otherwise.
GOALS_DEFAULTS = {"num_return_sequences": 1, "do_sample": False, "max_new_tokens": 100}


@lru_cache(maxsize=64)
def stop_matcher(stop_strings: tuple, labels: bool = True) -> StopMatcher:
    return StopMatcher(stop_strings, labels)


def build_engine(settings, loaded) -> BatchEngine:
    """The continuous engine unless BATCHING=static or the model can't run ragged attention."""
    if settings.batching == "continuous":
        if ragged_attention.enable(loaded.model):
            return ContinuousEngine(loaded, settings.max_batch_size, settings.prefill_chunk,
                                    max_queue=settings.max_queue,
                                    prefix_cache_bytes=int(settings.prefix_cache_mb * (1 << 20)))
        logger.warning("%s can't run ragged attention: using static batching", loaded.name)
    return BatchEngine(loaded, settings.max_batch_size, settings.batch_wait_ms / 1000, max_queue=settings.max_queue)


class LMService:
    def __init__(self, settings, loaded, engine=None):
        self.settings = settings
        self.loaded = loaded
        self.defaults = capped_defaults(load_defaults(settings.generative_config), settings.max_new_tokens,
                                        settings.max_return_sequences)
        self.vocab_size = len(loaded.tokenizer)
        self.builder = PromptBuilder(loaded.tokenizer, settings.prompt_format, settings.speakers)
        self.engine = engine or build_engine(settings, loaded)

    def respond(self, tasks: list, gone=None) -> tuple:
        """(hypotheses per task, RequestError per task or None); bad input raises RequestError first.
        `gone()` tells whether the client left (see collect)."""
        self._check_count(len(tasks), "dialog_contexts")
        samples = [self.sample(task, self.defaults, f"configs[{index}]") for index, task in enumerate(tasks)]
        return self._replies(samples, [task.field for task in tasks], gone)

    def generate_goals(self, prompts: list, configs: list, gone=None) -> tuple:
        self._check_count(len(prompts), "prompts")
        defaults = capped_defaults(merge(self.defaults, GOALS_DEFAULTS), self.settings.max_new_tokens,
                                   self.settings.max_return_sequences)
        tasks = [self.goals_task(prompt, config, f"prompts[{index}]")
                 for index, (prompt, config) in enumerate(zip(prompts, configs))]
        samples = [self.sample(task, defaults, f"configs[{index}]") for index, task in enumerate(tasks)]
        results, errors = self._replies(samples, [task.field for task in tasks], gone)
        return [hypotheses[0] for hypotheses in results], errors

    @staticmethod
    def goals_task(prompt: str, config, field: str) -> Task:
        return Task(GOALS_INSTRUCTION, [GOALS_QUESTION.format(prompt=prompt)], config, field)

    def openai_samples(self, request) -> list:
        """An OpenAI request's samples: one for a chat, one per prompt for a completion (each with n choices).
        Chat templates end turns with EOS, so only stop strings end a reply there, not Dream's speaker labels."""
        try:
            params = self._params(merge(merge(self.defaults, OPENAI_DEFAULTS), request.config), "request")
        except RequestError as error:
            name = error.field.rsplit(".", 1)[-1]
            openai_name = OPENAI_NAMES.get(name, name)
            raise RequestError(openai_name, error.message.replace(name, openai_name, 1), error.status) from None
        if request.kind == "chat":
            inputs = [(self.builder.message_ids(request.messages), "messages")]
            labels = not self.builder.use_chat_template
        else:
            self._check_count(len(request.prompts), "prompt")
            inputs = [(self.loaded.tokenizer(prompt)["input_ids"], f"prompt[{index}]")
                      for index, prompt in enumerate(request.prompts)]
            labels = False
        matcher = stop_matcher(tuple(self.settings.stop_strings) + params.stop_strings, labels)
        for input_ids, field in inputs:
            if not input_ids:
                raise RequestError(field, "the prompt is empty")
            if len(input_ids) > self.settings.max_input_tokens:
                raise RequestError(field, f"{len(input_ids)} prompt tokens; at most {self.settings.max_input_tokens} "
                                          "(MAX_INPUT_TOKENS)")
            if len(input_ids) + params.max_new_tokens > self.loaded.window:
                raise RequestError(field, f"{len(input_ids)} prompt tokens plus max_tokens {params.max_new_tokens} "
                                          f"exceed the model's context length ({self.loaded.window} tokens)")
        return [Sample(input_ids=input_ids, params=params, matcher=matcher) for input_ids, _ in inputs]

    def _params(self, config: dict, field: str):
        return parse(config, field, vocab_size=self.vocab_size, max_new_tokens_limit=self.settings.max_new_tokens,
                     max_return_sequences=self.settings.max_return_sequences)

    def sample(self, task, defaults: dict, config_field: str) -> Sample:
        params = self._params(merge(defaults, task.config), config_field)
        # The dialog is fitted (oldest turns dropped) into the window and MAX_INPUT_TOKENS, whichever is less.
        budget = min(self.loaded.window - params.max_new_tokens, self.settings.max_input_tokens)
        if budget <= 0:
            raise RequestError(f"{config_field}.max_new_tokens",
                               f"max_new_tokens must be below the model window ({self.loaded.window} tokens)")
        prompt = apply_replacement(task.prompt, params.replacement)
        turns = [apply_replacement(turn, params.replacement) for turn in task.turns]
        input_ids = self.builder.fit(prompt, turns, budget, task.field)
        matcher = stop_matcher(tuple(self.settings.stop_strings) + params.stop_strings)
        return Sample(input_ids=input_ids, params=params, matcher=matcher)

    def _check_count(self, count: int, field: str):
        if count > self.settings.max_contexts:
            raise RequestError(field, f"at most {self.settings.max_contexts} items per request (MAX_CONTEXTS)")

    def _replies(self, samples: list, fields: list, gone=None) -> tuple:
        """Dream's replies: hypotheses post-processed, "" for a failed sample."""
        results, errors = self.collect(samples, fields, gone)
        replies = [[finish_reply(hypothesis.text, sample.matcher, sample.params.replacement)
                    for hypothesis in hypotheses] if hypotheses else [""] * sample.params.num_return_sequences
                   for sample, hypotheses in zip(samples, results)]
        return replies, errors

    def collect(self, samples: list, fields: list, gone=None) -> tuple:
        """(Hypotheses or None, RequestError or None) per sample. Waits for every sample until one shared
        deadline; a sample past it leaves the queue (or the running batch) and is reported as 504.
        Every GONE_POLL_S it checks that the engine is alive (else 503) and asks `gone()` whether the client
        left; then all the samples are dropped and 499 (nginx's "client closed request") is raised for the log."""
        futures = self.engine.submit(samples)
        deadline = time.monotonic() + self.settings.request_timeout
        next_check = 0.0
        results, errors = [], []
        for sample, future, field in zip(samples, futures, fields):
            while True:
                now = time.monotonic()
                if now >= next_check:
                    next_check = now + GONE_POLL_S
                    self._check_waiting(samples, gone)
                try:
                    results.append(future.result(timeout=max(0.0, min(deadline, next_check) - now)))
                    errors.append(None)
                except FutureTimeout:
                    if time.monotonic() < deadline:
                        continue
                    self.engine.withdraw(sample)
                    results.append(None)
                    errors.append(RequestError(field, "generation timed out (REQUEST_TIMEOUT)", status=504))
                except Exception:  # the engine already logged the cause
                    results.append(None)
                    errors.append(RequestError(field, "generation failed", status=500))
                break
        return results, errors

    def _check_waiting(self, samples: list, gone):
        """Stop waiting when nothing can come (the inference thread died: 503 now, not at the deadline) or
        nobody will read it (the client left: its samples are dropped)."""
        if not self.engine.alive:
            raise RequestError("model", "the inference thread stopped; this worker is restarting", status=503,
                               retry_after=5)
        if gone is not None and gone():
            for waiting in samples:
                self.engine.withdraw(waiting)
            raise RequestError("request", "the client closed the connection", status=499)
