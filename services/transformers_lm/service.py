"""What the endpoints do, minus HTTP: tasks in, hypotheses out, through the batch engine."""
import logging
import time
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, replace
from functools import lru_cache

from .engine.errors import EngineError, EngineStopped, GenerationFailed, GenerationTimeout
from .engine.samples import EmbeddingJob, Sample
from .engine.stops import StopMatcher
from .engine.upstream import UpstreamEngine
from .errors import ClientGone, InvalidField, NotReady, SampleFailed
from .generation_params import Limits, capped_defaults, load_defaults, merge, parse
from .model.source import load_tokenizer
from .prompting import PromptBuilder, apply_replacement
from .replies import finish_reply

logger = logging.getLogger(__name__)

GOALS_INSTRUCTION = "You read instructions written for an AI assistant and summarise the goals they set."
GOALS_QUESTION = ("Here is the instruction an AI assistant was given:\n\n{prompt}\n\n"
                  "In one or two sentences, what goals does this instruction give the assistant?")
GONE_POLL_S = 0.5  # how often a waiting handler checks that its client and the engine are still there
# Goals are a summary, not a chat reply: one deterministic answer unless the caller says otherwise.
GOALS_DEFAULTS = {"num_return_sequences": 1, "do_sample": False, "max_new_tokens": 100}


@dataclass(frozen=True)
class Task:
    """One thing to generate for: an instruction, the dialog so far, the caller's config (or None)."""
    prompt: str
    turns: list
    config: dict = None
    field: str = ""  # where the context sits in the body, for error messages


@lru_cache(maxsize=64)
def stop_matcher(stop_strings: tuple, labels: bool = True) -> StopMatcher:
    return StopMatcher(stop_strings, labels)


# The local engines and their weights are imported only when chosen: a front (ENGINE=openai) never imports torch,
# so its image can leave torch out (requirements-front.txt).
def load(settings):
    """ENGINE=openai: the tokenizer only. Else the weights too."""
    if settings.engine == "openai":
        return load_tokenizer(settings)
    from .model.loading import load_model
    return load_model(settings)


def build_engine(settings, loaded):
    """ENGINE=openai: the server at ENGINE_URL. Else the continuous engine unless BATCHING=static or the model
    can't run ragged attention."""
    if settings.engine == "openai":
        return UpstreamEngine(loaded.tokenizer, settings.engine_url, settings.engine_api_key, settings.engine_model,
                              settings.engine_server, settings.engine_timeout, settings.max_batch_size,
                              settings.max_queue)
    from .engine.continuous import ContinuousEngine, pass_of
    from .engine.static import BatchEngine
    if settings.batching == "continuous":
        run_pass = pass_of(loaded)
        if run_pass:
            return ContinuousEngine(loaded, settings.max_batch_size, settings.prefill_chunk,
                                    max_queue=settings.max_queue,
                                    prefix_cache_bytes=int(settings.prefix_cache_mb * (1 << 20)), run_pass=run_pass)
        logger.warning("%s can't run ragged attention: using static batching", loaded.name)
    return BatchEngine(loaded, settings.max_batch_size, settings.batch_wait_ms / 1000, max_queue=settings.max_queue)


def service_limits(settings, loaded=None) -> Limits:
    """What requests may ask for: the settings' limits, and once a model is loaded its window (a reply needs at
    least one prompt token beside it), vocabulary and hidden size (the size of its embeddings)."""
    limits = Limits(max_new_tokens=settings.max_new_tokens, max_return_sequences=settings.max_return_sequences,
                    max_contexts=settings.max_contexts)
    if loaded is None:
        return limits
    return replace(limits, max_new_tokens=min(limits.max_new_tokens, loaded.window - 1),
                   vocab_size=len(loaded.tokenizer),
                   embedding_size=loaded.config and loaded.config.hidden_size)


class LMService:
    def __init__(self, settings, loaded, engine=None):
        self.settings = settings
        self.loaded = loaded
        self.limits = service_limits(settings, loaded)
        self.defaults = self.capped(load_defaults(settings.generative_config))
        self.builder = PromptBuilder(loaded.tokenizer, settings.prompt_format, settings.speakers)
        self.engine = engine or build_engine(settings, loaded)

    def respond(self, tasks: list, gone=None) -> tuple:
        """(hypotheses per task, SampleFailed per task or None); bad input raises InvalidField first.
        `gone()` tells whether the client left (see collect)."""
        samples = [self.sample(task, self.defaults, f"configs[{index}]") for index, task in enumerate(tasks)]
        return self._replies(samples, [task.field for task in tasks], gone)

    def generate_goals(self, prompts: list, configs: list, gone=None) -> tuple:
        defaults = self.capped(merge(self.defaults, GOALS_DEFAULTS))
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
        `request.defaults` go under its config, and errors name parameters as `request.names` call them.
        Chat templates end turns with EOS, so only stop strings end a reply there, not Dream's speaker labels."""
        params = self._params(merge(merge(self.defaults, request.defaults), request.config), None, request.names)
        if request.kind == "chat":
            inputs = [(self.builder.message_ids(request.messages), "messages")]
            labels = not self.builder.use_chat_template
        else:
            inputs = [(self._ids(prompt), f"prompt[{index}]") for index, prompt in enumerate(request.prompts)]
            labels = False
        matcher = stop_matcher(tuple(self.settings.stop_strings) + params.stop_strings, labels)
        for input_ids, field in inputs:
            self._check_input(input_ids, field, "prompt")
            if len(input_ids) + params.max_new_tokens > self.loaded.window:
                raise InvalidField(field, f"{len(input_ids)} prompt tokens plus max_tokens {params.max_new_tokens} "
                                          f"exceed the model's context length ({self.loaded.window} tokens)")
        return [Sample(input_ids=input_ids, params=params, matcher=matcher) for input_ids, _ in inputs]

    def embeddings(self, inputs: list, field: str, gone=None) -> tuple:
        """(embedding per input, tokens of them all): each input, a text or its token ids, goes through the
        engine's queue as an EmbeddingJob and errors name it `{field}[i]`; one failure fails the request."""
        if not self.engine.embeddings:
            raise InvalidField(field, "embeddings need ENGINE=transformers: a generation server has none")
        fields = [f"{field}[{index}]" for index in range(len(inputs))]
        jobs = [EmbeddingJob(self._embedding_ids(item, name)) for item, name in zip(inputs, fields)]
        vectors, errors = self.collect(jobs, fields, gone)
        failed = next((error for error in errors if error), None)
        if failed:
            raise failed
        return vectors, sum(len(job.input_ids) for job in jobs)

    def _ids(self, item) -> list:
        """A text's token ids, or the token ids the caller gave."""
        return self.loaded.tokenizer(item)["input_ids"] if isinstance(item, str) else item

    def _embedding_ids(self, item, field: str) -> list:
        input_ids = self._ids(item)
        self._check_input(input_ids, field, "text")
        if len(input_ids) > self.loaded.window:
            raise InvalidField(field, f"{len(input_ids)} tokens exceed the model's context length "
                                      f"({self.loaded.window} tokens)")
        return input_ids

    def _check_input(self, input_ids: list, field: str, what: str):
        if not input_ids:
            raise InvalidField(field, f"the {what} is empty")
        if len(input_ids) > self.settings.max_input_tokens:
            raise InvalidField(field, f"{len(input_ids)} {what} tokens; at most {self.settings.max_input_tokens} "
                                      "(MAX_INPUT_TOKENS)")

    def capped(self, defaults: dict) -> dict:
        return capped_defaults(defaults, self.limits.max_new_tokens, self.limits.max_return_sequences)

    def _params(self, config: dict, field: str, names: dict = None):
        params = parse(config, field, self.limits, names)
        for name in self.engine.unsupported(params):
            name = (names or {}).get(name, name)
            raise InvalidField(f"{field}.{name}" if field else name,
                               f"is not supported by the engine ({self.engine.state.server.kind} at ENGINE_URL)")
        return params

    def sample(self, task, defaults: dict, config_field: str) -> Sample:
        params, input_ids = self._fitted(task, defaults, config_field)
        matcher = stop_matcher(tuple(self.settings.stop_strings) + params.stop_strings)
        return Sample(input_ids=input_ids, params=params, matcher=matcher)

    def prompt_texts(self, tasks: list) -> list:
        """(text, token count) of the model input /respond builds for each task: its fitted ids decoded as they
        are, special tokens included, so what is shown is what the model reads."""
        fitted = [self._fitted(task, self.defaults, f"configs[{index}]")[1] for index, task in enumerate(tasks)]
        return [(self.loaded.tokenizer.decode(ids, clean_up_tokenization_spaces=False), len(ids)) for ids in fitted]

    def _fitted(self, task, defaults: dict, config_field: str) -> tuple:
        """(GenerationParams, input ids) of a task: its config merged over `defaults`, replacements applied."""
        params = self._params(merge(defaults, task.config), config_field)
        # The dialog is fitted (oldest turns dropped) into the window and MAX_INPUT_TOKENS, whichever is less;
        # the limits keep max_new_tokens below the window.
        budget = min(self.loaded.window - params.max_new_tokens, self.settings.max_input_tokens)
        prompt = apply_replacement(task.prompt, params.replacement)
        turns = [apply_replacement(turn, params.replacement) for turn in task.turns]
        return params, self.builder.fit(prompt, turns, budget, task.field)

    def _replies(self, samples: list, fields: list, gone=None) -> tuple:
        """Dream's replies: hypotheses post-processed, "" for a failed sample."""
        results, errors = self.collect(samples, fields, gone)
        replies = [[finish_reply(hypothesis.text, sample.matcher, sample.params.replacement)
                    for hypothesis in hypotheses] if hypotheses else [""] * sample.params.num_return_sequences
                   for sample, hypotheses in zip(samples, results)]
        return replies, errors

    def collect(self, samples: list, fields: list, gone=None) -> tuple:
        """(Hypotheses or None, SampleFailed or None) per sample. Waits for every sample until one shared
        deadline; a sample past it leaves the queue (or the running batch) and fails with GenerationTimeout.
        Every GONE_POLL_S it checks that the engine is alive (else EngineStopped) and asks `gone()` whether the
        client left; then all the samples are dropped and ClientGone is raised."""
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
                    errors.append(SampleFailed(field, GenerationTimeout()))
                except EngineError as error:  # the engine says why (ENGINE=openai: the server's fault)
                    results.append(None)
                    errors.append(SampleFailed(field, error))
                except Exception:  # the engine already logged the cause
                    results.append(None)
                    errors.append(SampleFailed(field, GenerationFailed()))
                break
        return results, errors

    def _check_waiting(self, samples: list, gone):
        """Stop waiting when nothing can come (the inference thread died: now, not at the deadline) or
        nobody will read it (the client left: its samples are dropped)."""
        if not self.engine.alive:
            raise EngineStopped()
        if gone is not None and gone():
            for waiting in samples:
                self.engine.withdraw(waiting)
            raise ClientGone()


class ServiceHolder:
    """The LMService once the model is loaded; /health and the endpoints read its state."""

    def __init__(self, metrics):
        self.metrics = metrics
        self.service = None
        self.error = None
        self.waiting_for = None  # ENGINE=openai: the UpstreamEngine until its server was first seen

    def serve(self, service: LMService):
        service.engine.metrics = self.metrics
        self.service = service

    def load(self, settings):
        try:
            loaded = load(settings)
            engine = build_engine(settings, loaded)
            if isinstance(engine, UpstreamEngine):
                self.waiting_for = engine  # /health says why it is not ready yet
                window = engine.wait_until_seen()
                loaded.window = min(loaded.window, window or loaded.window)
            self.serve(LMService(settings, loaded, engine))
        except Exception as error:
            logger.exception("model loading failed")
            self.error = f"model loading failed: {type(error).__name__}"

    def ready(self) -> LMService:
        if self.service is None:
            raise NotReady(self.error or self.loading_state())
        return self.service

    def loading_state(self) -> str:
        if self.waiting_for is not None:
            return f"waiting for the engine at {self.waiting_for.host}: {self.waiting_for.state.error}"
        return "the model is loading"

    def queue_length(self) -> int:
        """Samples waiting for the model; 0 while it loads (getattr: the engine's internals may change)."""
        engine = getattr(self.service, "engine", None)
        return len(getattr(engine, "pending", ()))
