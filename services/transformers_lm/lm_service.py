"""What the endpoints do, minus HTTP: tasks in, hypotheses out, through the batch engine."""
import logging
import time
from concurrent.futures import TimeoutError as FutureTimeout
from functools import lru_cache

from .batching import BatchEngine
from .continuous import ContinuousEngine
from .errors import RequestError
from .generation_params import capped_defaults, load_defaults, merge, parse
from .kv_batch import supports_continuous
from .prompting import PromptBuilder, apply_replacement
from .replies import StopMatcher, finish_reply
from .request_parsing import Task
from .samples import Sample

logger = logging.getLogger(__name__)

GOALS_INSTRUCTION = "You read instructions written for an AI assistant and summarise the goals they set."
GOALS_QUESTION = ("Here is the instruction an AI assistant was given:\n\n{prompt}\n\n"
                  "In one or two sentences, what goals does this instruction give the assistant?")
# Goals are a summary, not a chat reply: one deterministic answer unless the caller says otherwise.
GOALS_DEFAULTS = {"num_return_sequences": 1, "do_sample": False, "max_new_tokens": 100}


@lru_cache(maxsize=64)
def stop_matcher(stop_strings: tuple, labels: bool = True) -> StopMatcher:
    return StopMatcher(stop_strings, labels)


def build_engine(settings, loaded) -> BatchEngine:
    """The continuous engine unless BATCHING=static or the model's cache can't be batched that way."""
    if settings.batching == "continuous":
        if supports_continuous(loaded.model, loaded.device):
            return ContinuousEngine(loaded, settings.max_batch_size, settings.prefill_chunk,
                                    max_queue=settings.max_queue)
        logger.warning("%s's cache is not a plain dynamic cache: using static batching", loaded.name)
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

    def respond(self, tasks: list) -> tuple:
        """(hypotheses per task, RequestError per task or None); bad input raises RequestError first."""
        self._check_count(len(tasks), "dialog_contexts")
        samples = [self.sample(task, self.defaults, f"configs[{index}]") for index, task in enumerate(tasks)]
        return self._replies(samples, [task.field for task in tasks])

    def generate_goals(self, prompts: list, configs: list) -> tuple:
        self._check_count(len(prompts), "prompts")
        defaults = merge(self.defaults, GOALS_DEFAULTS)
        tasks = [self.goals_task(prompt, config, f"prompts[{index}]")
                 for index, (prompt, config) in enumerate(zip(prompts, configs))]
        samples = [self.sample(task, defaults, f"configs[{index}]") for index, task in enumerate(tasks)]
        results, errors = self._replies(samples, [task.field for task in tasks])
        return [hypotheses[0] for hypotheses in results], errors

    @staticmethod
    def goals_task(prompt: str, config, field: str) -> Task:
        return Task(GOALS_INSTRUCTION, [GOALS_QUESTION.format(prompt=prompt)], config, field)

    def sample(self, task, defaults: dict, config_field: str) -> Sample:
        params = parse(merge(defaults, task.config), config_field, vocab_size=self.vocab_size,
                       max_new_tokens_limit=self.settings.max_new_tokens,
                       max_return_sequences=self.settings.max_return_sequences)
        budget = self.loaded.window - params.max_new_tokens
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

    def _replies(self, samples: list, fields: list) -> tuple:
        """Dream's replies: hypotheses post-processed, "" for a failed sample."""
        results, errors = self._collect(samples, fields)
        replies = [[finish_reply(hypothesis.text, sample.matcher, sample.params.replacement)
                    for hypothesis in hypotheses] if hypotheses else [""] * sample.params.num_return_sequences
                   for sample, hypotheses in zip(samples, results)]
        return replies, errors

    def _collect(self, samples: list, fields: list) -> tuple:
        """Wait for every sample until one shared deadline; a sample past it leaves the queue (it is never
        generated if it has not started) and is reported as 504."""
        futures = self.engine.submit(samples)
        deadline = time.monotonic() + self.settings.request_timeout
        results, errors = [], []
        for sample, future, field in zip(samples, futures, fields):
            try:
                results.append(future.result(timeout=max(0.0, deadline - time.monotonic())))
                errors.append(None)
            except FutureTimeout:
                self.engine.withdraw(sample)
                results.append(None)
                errors.append(RequestError(field, "generation timed out (REQUEST_TIMEOUT)", status=504))
            except Exception:  # the engine already logged the cause
                results.append(None)
                errors.append(RequestError(field, "generation failed", status=500))
        return results, errors
