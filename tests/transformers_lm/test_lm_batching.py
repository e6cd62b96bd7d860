"""The batching engine on a tiny random model: batches form, results match solo runs, rows stop on their own."""
import threading
import time

import pytest

from services.transformers_lm.engine.continuous import ContinuousEngine
from services.transformers_lm.engine.errors import EngineStopped, GenerationTimeout, QueueFull
from services.transformers_lm.engine.generation import generate_group
from services.transformers_lm.engine.static import BatchEngine
from services.transformers_lm.server import create_app
from services.transformers_lm.service import LMService, Task
from services.transformers_lm.settings import Settings
from tests.helpers.tiny_model import tiny_loaded

GREEDY = {"do_sample": False, "max_new_tokens": 12, "num_return_sequences": 1, "min_new_tokens": 12}
CONTEXTS = [["Hello there"], ["What is the capital of France?"], ["a", "b", "c"], ["Tell me a long story " * 3]]


class CountingGenerate:
    """Counts real generate() calls on the model (and still runs them)."""

    def __init__(self, model):
        self.calls, self.batch_sizes = 0, []
        self.real = model.generate
        model.generate = self

    def __call__(self, *args, **kwargs):
        self.calls += 1
        self.batch_sizes.append(kwargs["input_ids"].shape[0])
        return self.real(*args, **kwargs)


@pytest.fixture(scope="module")
def loaded():
    return tiny_loaded()


def make_service(loaded, batch_rows=16, wait_s=0.05, run_group=generate_group):
    engine = BatchEngine(loaded, max_batch_rows=batch_rows, batch_wait_s=wait_s, run_group=run_group)
    return LMService(Settings(), loaded, engine=engine)


def tasks(config, contexts=CONTEXTS, prompt="Be brief."):
    return [Task(prompt, context, config) for context in contexts]


def solo_results(loaded, config, contexts=CONTEXTS, prompt="Be brief."):
    """Hypotheses of each context, generated one context at a time."""
    service = make_service(loaded, batch_rows=1, wait_s=0)
    return [service.respond([task])[0][0] for task in tasks(config, contexts, prompt)]


def test_one_request_with_many_contexts_is_one_batch_with_solo_results(loaded):
    expected = solo_results(loaded, GREEDY)
    service = make_service(loaded)
    counter = CountingGenerate(loaded.model)
    try:
        results, errors = service.respond(tasks(GREEDY))
    finally:
        loaded.model.generate = counter.real
    assert errors == [None] * len(CONTEXTS)
    assert results == expected
    assert counter.calls == 1 and counter.batch_sizes == [len(CONTEXTS)]


def test_concurrent_requests_share_generate_calls(loaded):
    expected = solo_results(loaded, GREEDY)
    service = make_service(loaded, wait_s=0.2)
    counter = CountingGenerate(loaded.model)
    answers = {}
    start = threading.Barrier(len(CONTEXTS))

    def client(index):
        start.wait()
        answers[index] = service.respond(tasks(GREEDY, [CONTEXTS[index]]))

    threads = [threading.Thread(target=client, args=(index,)) for index in range(len(CONTEXTS))]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    finally:
        loaded.model.generate = counter.real
    assert [answers[index] for index in range(len(CONTEXTS))] == [([hyps], [None]) for hyps in expected]
    assert counter.calls < len(CONTEXTS)
    assert service.engine.stats["samples"] == len(CONTEXTS)


def test_different_lengths_and_sequence_counts_share_a_batch(loaded):
    service = make_service(loaded)
    counter = CountingGenerate(loaded.model)
    short = dict(GREEDY, max_new_tokens=3, min_new_tokens=3)
    several = dict(GREEDY, num_return_sequences=2, min_new_tokens=3)
    try:
        results, _ = service.respond([Task("", ["x"], short), Task("", ["y"], several)])
    finally:
        loaded.model.generate = counter.real
    assert counter.calls == 1 and counter.batch_sizes == [3]
    assert len(results[0]) == 1 and len(results[1]) == 2 and results[1][0] == results[1][1]
    assert results[0] == solo_results(loaded, short, [["x"]], prompt="")[0]
    assert results[1][0] == solo_results(loaded, dict(several, num_return_sequences=1), [["y"]], prompt="")[0][0]
    assert len(results[0][0]) < len(results[1][0])


def test_a_stop_string_ends_only_its_own_sequence(loaded):
    config = dict(GREEDY, max_new_tokens=40, min_new_tokens=40)
    free = [hyps[0] for hyps in solo_results(loaded, config, CONTEXTS[:2])]
    # A printable pair from the middle of the first reply that the second reply lacks.
    stop = next(pair for pair in (free[0][i:i + 2] for i in range(2, len(free[0]) - 1))
                if pair.isascii() and pair.isprintable() and pair.strip() and pair not in free[1])
    service = make_service(loaded)
    results, _ = service.respond([Task("Be brief.", CONTEXTS[0], dict(config, stop_strings=[stop])),
                                  Task("Be brief.", CONTEXTS[1], config)])
    assert results[0][0] == free[0][:free[0].index(stop)].strip()
    assert results[1][0] == free[1]


def test_seeded_sampling_is_reproducible_under_concurrent_traffic(loaded):
    seeded = {"do_sample": True, "temperature": 1.0, "max_new_tokens": 10, "min_new_tokens": 10, "seed": 1234}
    service = make_service(loaded)
    first = service.respond([Task("", ["hi"], seeded)])[0][0]
    crowd = tasks({"do_sample": True, "max_new_tokens": 10})
    second = service.respond(crowd + [Task("", ["hi"], seeded)] + crowd)[0][len(crowd)]
    assert first == second
    other_seed = service.respond([Task("", ["hi"], dict(seeded, seed=99))])[0][0]
    assert other_seed != first


def test_a_failing_sample_does_not_blank_the_others(loaded):
    def fail_on_poison(loaded_model, samples):
        if any(sample.input_ids == poison.input_ids for sample in samples):
            raise RuntimeError("boom")
        return generate_group(loaded_model, samples)

    service = make_service(loaded, run_group=fail_on_poison)
    poison = service.sample(Task("", ["poison"], GREEDY), service.defaults, "configs[1]")
    results, errors = service.respond([Task("", ["fine"], GREEDY), Task("", ["poison"], GREEDY),
                                       Task("", ["also fine"], GREEDY)])
    assert errors[0] is None and errors[2] is None and errors[1]
    assert results[1] == [""]
    assert results[0] == solo_results(loaded, GREEDY, [["fine"]], prompt="")[0]
    assert results[2] == solo_results(loaded, GREEDY, [["also fine"]], prompt="")[0]



def test_over_http_a_failed_sample_is_empty_and_named_in_x_sample_errors(loaded):
    def fail_on_poison(loaded_model, samples):
        if any(loaded_model.tokenizer.decode(sample.input_ids).endswith("poison\nAI:") for sample in samples):
            raise RuntimeError("boom")
        return generate_group(loaded_model, samples)

    settings = Settings(prompt_format="dream")
    app = create_app(settings, LMService(settings, loaded, engine=BatchEngine(loaded, batch_wait_s=0,
                                                                             run_group=fail_on_poison)))
    client = app.test_client()
    configs = [GREEDY, GREEDY]
    response = client.post("/respond", json={"dialog_contexts": [["fine"], ["poison"]], "configs": configs})
    assert response.status_code == 200 and response.json[1] == [""] and response.json[0] != [""]
    assert response.headers["X-Sample-Errors"] == '{"1": "generation failed"}'
    every = client.post("/respond", json={"dialog_contexts": [["poison"]], "configs": [GREEDY]})
    assert (every.status_code, every.json) == (500, {"error": "generation failed", "field": "dialog_contexts[0]"})


def test_a_withdrawn_sample_leaves_the_queue_and_is_never_generated(loaded):
    release, generated = threading.Event(), []

    def slow_group(loaded_model, samples):
        release.wait(30)
        generated.extend(samples)
        return generate_group(loaded_model, samples)

    service = make_service(loaded, wait_s=0, run_group=slow_group)
    running, waiting = (service.sample(Task("", [text], GREEDY), service.defaults, "c") for text in ("a", "b"))
    service.engine.submit([running])
    while not running.future.running():
        threading.Event().wait(0.01)
    service.engine.submit([waiting])
    assert service.engine.withdraw(waiting) and not service.engine.withdraw(running)
    assert len(service.engine.pending) == 0
    release.set()
    running.future.result(30)
    assert waiting.future.cancelled() and generated == [running]


@pytest.mark.parametrize("kind", ["static", "continuous"])
def test_a_burst_at_an_idle_engine_fills_its_free_rows_and_its_queue_then_is_refused(loaded, kind):
    """MAX_BATCH_SIZE 2 + MAX_QUEUE 2: four requests arriving together all wait (the door admitted them), a fifth
    does not; once two run, two more may wait."""
    release = threading.Event()

    def held(loaded_model, samples):
        release.wait(30)
        return generate_group(loaded_model, samples)

    engine = (BatchEngine(loaded, max_batch_rows=2, batch_wait_s=0.2, run_group=held, max_queue=2) if kind == "static"
              else ContinuousEngine(loaded, max_batch_rows=2, max_queue=2))
    service = LMService(Settings(), loaded, engine=engine)
    long = {**GREEDY, "max_new_tokens": 300, "min_new_tokens": 300}  # the continuous engine runs seconds on it
    one = lambda text: service.sample(Task("", [text], long), service.defaults, "c")  # noqa: E731
    futures = engine.submit([one(text) for text in "abcd"])
    with pytest.raises(QueueFull):
        engine.submit([one("e")])
    release.set()
    assert all(future.result(60) for future in futures)


def test_a_request_past_its_deadline_gets_504_and_its_queued_samples_are_dropped(loaded):
    release = threading.Event()

    def slow_group(loaded_model, samples):
        release.wait(30)
        return generate_group(loaded_model, samples)

    engine = BatchEngine(loaded, max_batch_rows=1, batch_wait_s=0, run_group=slow_group)
    service = LMService(Settings(request_timeout=0.3), loaded, engine=engine)
    results, errors = service.respond([Task("", [text], GREEDY, f"dialog_contexts[{index}]")
                                       for index, text in enumerate("ab")])
    assert results == [[""], [""]] and all(isinstance(error.cause, GenerationTimeout) for error in errors)
    assert errors[1].field == "dialog_contexts[1]"
    assert len(engine.pending) == 0
    release.set()


def test_goals_defaults_are_lowered_to_the_max_new_tokens_limit(loaded):
    service = LMService(Settings(max_new_tokens=8), loaded, engine=BatchEngine(loaded, batch_wait_s=0))
    replies, errors = service.generate_goals(["Be kind."], [None])
    assert errors == [None] and len(replies) == 1


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # the death is the point
def test_waiting_requests_get_503_at_once_when_the_inference_thread_dies(loaded):
    class ThreadDeath(BaseException):
        """Not an Exception: the engine's failure isolation does not catch it, the thread ends."""

    def die(loaded_model, samples):
        raise ThreadDeath()

    service = LMService(Settings(request_timeout=60), loaded,
                        engine=BatchEngine(loaded, batch_wait_s=0, run_group=die))
    started = time.monotonic()
    with pytest.raises(EngineStopped):
        service.respond([Task("", ["hi"], GREEDY)])
    assert time.monotonic() - started < 5


def test_bad_words_work_in_beam_search_and_an_empty_list_bans_nothing(loaded):
    """Found by schemathesis: generate() refused `bad_words_ids` as tuples, and `[]`: 500s for valid requests."""
    service = LMService(Settings(), loaded, engine=BatchEngine(loaded, batch_wait_s=0))
    beams = {"num_beams": 2, "num_return_sequences": 1, "max_new_tokens": 3, "do_sample": False}
    results, errors = service.respond([Task("", ["hi"], {**beams, "bad_words_ids": []}), Task("", ["hi"], beams),
                                       Task("", ["hi"], {**beams, "bad_words_ids": [[7], [101, 0]]})])
    assert errors == [None, None, None] and results[0] == results[1]
