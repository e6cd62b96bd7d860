"""The continuous engine on a tiny random model: its outputs equal one-at-a-time generate(), token for token,
however requests join and leave the running batch."""
import os
import threading
import time
from concurrent.futures import CancelledError

import pytest
import torch
from transformers import MistralConfig, MistralForCausalLM

from services.transformers_lm.engine.static import BatchEngine
from services.transformers_lm.engine.continuous import ContinuousEngine
from services.transformers_lm.engine.ragged_attention import BLOCK
from services.transformers_lm.service import LMService, build_engine
from services.transformers_lm.model.source import LoadedModel
from services.transformers_lm.service import Task
from services.transformers_lm.engine.sequences import Sequence
from services.transformers_lm.settings import Settings
from tests.helpers.tiny_model import tiny_loaded, tiny_tokenizer

GREEDY = {"do_sample": False, "max_new_tokens": 12, "min_new_tokens": 12, "num_return_sequences": 1}
CONTEXTS = [["Hello there"], ["What is the capital of France?"], ["a", "b", "c"], ["Tell me a long story " * 3]]


@pytest.fixture(scope="module")
def loaded():
    return tiny_loaded()


@pytest.fixture
def engine(loaded):
    return ContinuousEngine(loaded, max_batch_rows=16, prefill_chunk=8)


def service(loaded, engine):
    return LMService(Settings(), loaded, engine=engine)


def samples(svc, config, contexts=CONTEXTS):
    return [svc.sample(Task("Be brief.", context, config), svc.defaults, "c") for context in contexts]


def solo(loaded, config, contexts=CONTEXTS):
    """Hypotheses from transformers' generate(), one sample at a time (the static engine, batches of one)."""
    svc = service(loaded, BatchEngine(loaded, max_batch_rows=1, batch_wait_s=0))
    return [svc.engine.submit([sample])[0].result(30) for sample in samples(svc, config, contexts)]


def run(svc, batch):
    return [future.result(30) for future in svc.engine.submit(batch)]


def wait_for(condition, timeout=30):
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.005)


def test_the_default_engine_is_continuous_and_static_is_a_setting(loaded):
    assert isinstance(build_engine(Settings(), loaded), ContinuousEngine)
    assert type(build_engine(Settings(batching="static"), loaded)) is BatchEngine


def test_a_model_ragged_attention_cannot_serve_falls_back_to_static_batching():
    tokenizer = tiny_tokenizer()
    config = MistralConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=2, sliding_window=4)
    model = MistralForCausalLM(config).eval()
    loaded = LoadedModel("tiny-sliding", model, tokenizer, torch.device("cpu"), 512)
    assert type(build_engine(Settings(), loaded)) is BatchEngine
    assert model.config._attn_implementation == "sdpa"  # left as it was


def test_greedy_outputs_equal_solo_generate_token_for_token(loaded, engine):
    expected = solo(loaded, GREEDY)
    assert run(service(loaded, engine), samples(service(loaded, engine), GREEDY)) == expected
    assert engine.stats["steps"] < sum(hypotheses[0].tokens for hypotheses in expected)  # rows shared steps


def test_prompts_arriving_together_share_one_prefill_pass(loaded):
    engine = ContinuousEngine(loaded, prefill_chunk=1024)
    configs = [GREEDY, dict(GREEDY, num_return_sequences=2), dict(GREEDY, max_new_tokens=3, min_new_tokens=0),
               dict(GREEDY, min_new_tokens=0, max_new_tokens=1)]
    expected = [solo(loaded, config, [context])[0] for config, context in zip(configs, CONTEXTS)]
    svc = service(loaded, engine)
    together = [samples(svc, config, [context])[0] for config, context in zip(configs, CONTEXTS)]
    assert run(svc, together) == expected
    assert engine.stats["prefill_passes"] == 1  # four prompts of different lengths, one forward


def test_requests_joining_mid_batch_finish_with_correct_text(loaded, engine):
    long_config = dict(GREEDY, max_new_tokens=80, min_new_tokens=80)
    expected_long = solo(loaded, long_config, CONTEXTS[:1])[0]
    expected = solo(loaded, GREEDY, CONTEXTS[1:])
    svc = service(loaded, engine)
    finished = []
    first = samples(svc, long_config, CONTEXTS[:1])
    first[0].future.add_done_callback(lambda _: finished.append("long"))
    svc.engine.submit(first)
    wait_for(lambda: engine.stats.get("steps", 0) >= 5)
    late = samples(svc, GREEDY, CONTEXTS[1:])
    for index, sample in enumerate(late):
        sample.future.add_done_callback(lambda _, index=index: finished.append(index))
    assert run(svc, late) == expected
    assert first[0].future.result(30) == expected_long
    assert finished[-1] == "long"  # the short late requests did not wait for the long one
    # The late prompts rode along with the long one's decode steps instead of taking passes of their own.
    assert engine.stats["passes"] < engine.stats["steps"] + engine.stats["prefill_passes"]


def test_a_prompt_that_starts_like_a_recent_one_computes_only_the_rest(loaded):
    """A dialog's next turn repeats its earlier prompt, and a retried request repeats the whole of it: their
    cached keys and values are reused in whole blocks of attention, and the replies stay those of a full
    generate()."""
    dialog = ["Hello there", "Hi! How can I help?", "What is the capital of France?"]
    contexts = [dialog[:1], dialog, dialog]
    expected = solo(loaded, GREEDY, contexts)
    for budget, reuse in ((128 << 20, True), (0, False)):
        engine = ContinuousEngine(loaded, prefill_chunk=1024, prefix_cache_bytes=budget)
        svc = service(loaded, engine)
        prompts = [samples(svc, GREEDY, [context])[0] for context in contexts]
        assert [run(svc, [sample])[0] for sample in prompts] == expected  # one after another
        first, turn = prompts[0].input_ids, prompts[1].input_ids
        shared = len(os.path.commonprefix([first, turn]))
        assert shared > len(first) // 2
        blocks = [length - length % BLOCK for length in (shared, len(turn) - 1)]
        assert engine.stats["prefix_cached_tokens"] == (sum(blocks) if reuse else 0)


def test_a_stop_string_ends_only_its_own_sequence(loaded, engine):
    config = dict(GREEDY, max_new_tokens=40, min_new_tokens=40)
    free = [hypotheses[0].text for hypotheses in solo(loaded, config, CONTEXTS[:2])]
    stop = next(pair for pair in (free[0][i:i + 2] for i in range(2, len(free[0]) - 1))
                if pair.isascii() and pair.isprintable() and pair.strip() and pair not in free[1])
    svc = service(loaded, engine)
    stopped, other = run(svc, samples(svc, dict(config, stop_strings=[stop]), CONTEXTS[:1])
                         + samples(svc, config, CONTEXTS[1:2]))
    assert stopped[0].text == free[0][:free[0].index(stop)] and stopped[0].finish_reason == "stop"
    assert other[0].text == free[1] and other[0].finish_reason == "length"


def test_per_sequence_parameters_share_decode_steps(loaded):
    engine = ContinuousEngine(loaded, prefill_chunk=1024)
    configs = [GREEDY, dict(GREEDY, repetition_penalty=1.5), dict(GREEDY, max_new_tokens=5, min_new_tokens=0),
               dict(GREEDY, no_repeat_ngram_size=2)]
    expected = [solo(loaded, config, [context])[0] for config, context in zip(configs, CONTEXTS)]
    svc = service(loaded, engine)
    mixed = [samples(svc, config, [context])[0] for config, context in zip(configs, CONTEXTS)]
    assert run(svc, mixed) == expected
    assert engine.stats["rows"] / engine.stats["steps"] > 2


def test_seeded_sampling_is_reproducible_under_concurrent_traffic(loaded, engine):
    seeded = {"do_sample": True, "temperature": 1.0, "top_k": 20, "max_new_tokens": 10, "min_new_tokens": 10,
              "seed": 1234}
    svc = service(loaded, engine)
    alone = run(svc, samples(svc, seeded, [["hi"]]))[0]
    crowd = samples(svc, {"do_sample": True, "max_new_tokens": 10}, CONTEXTS)
    together = run(svc, crowd[:2] + samples(svc, seeded, [["hi"]]) + crowd[2:])[2]
    assert together == alone
    assert run(svc, samples(svc, dict(seeded, seed=99), [["hi"]]))[0] != alone


def test_n_hypotheses_share_one_prefill_and_sample_independently(loaded, engine):
    config = {"do_sample": True, "max_new_tokens": 16, "min_new_tokens": 16, "num_return_sequences": 3}
    svc = service(loaded, engine)
    sample = samples(svc, config, CONTEXTS[:1])[0]
    hypotheses = run(svc, [sample])[0]
    assert len(hypotheses) == 3 and len({hypothesis.text for hypothesis in hypotheses}) > 1
    assert engine.stats["prefill_tokens"] == len(sample.input_ids)


def test_beam_search_runs_as_a_static_generate(loaded, engine):
    config = {"do_sample": False, "num_beams": 3, "num_return_sequences": 2, "max_new_tokens": 8}
    assert run(service(loaded, engine), samples(service(loaded, engine), config, CONTEXTS[:2])) == \
        solo(loaded, config, CONTEXTS[:2])


def test_an_abandoned_sample_leaves_the_running_batch(loaded, engine):
    svc = service(loaded, engine)
    endless = samples(svc, dict(GREEDY, max_new_tokens=400, min_new_tokens=400), CONTEXTS[:1])[0]
    svc.engine.submit([endless])
    wait_for(lambda: engine.stats.get("steps", 0) >= 3)
    assert not engine.withdraw(endless)  # already running: marked, dropped at the next step
    with pytest.raises(CancelledError):
        endless.future.result(30)
    wait_for(lambda: not engine.running)
    assert engine.stats["steps"] < 50


def test_streamed_pieces_add_up_to_the_reply_and_never_show_a_stop_string(loaded, engine):
    config = dict(GREEDY, max_new_tokens=40, min_new_tokens=40)
    free = solo(loaded, config, CONTEXTS[:1])[0][0].text
    stop = free[10:13]
    svc = service(loaded, engine)
    sample = samples(svc, dict(config, stop_strings=[stop]), CONTEXTS[:1])[0]
    pieces = []
    sample.listener = lambda index, text: pieces.append((index, text))
    hypothesis = run(svc, [sample])[0][0]
    assert len(pieces) > 3 and {index for index, _ in pieces} == {0}
    assert "".join(text for _, text in pieces) == hypothesis.text == free[:free.index(stop)]


def test_incremental_detokenization_matches_a_full_decode(loaded, engine):
    svc = service(loaded, engine)
    sample = samples(svc, dict(GREEDY, max_new_tokens=100), CONTEXTS[:1])[0]
    tokenizer = loaded.tokenizer
    text = "Grüße, мир ✓ 🙂 done"
    sequence = Sequence(sample, 0, frozenset(), tokenizer)
    for token in tokenizer.encode(text, add_special_tokens=False):
        sequence.add(token)
    assert not sequence.finished
    assert sequence.text == tokenizer.decode(sequence.generated) == text


def test_concurrent_clients_all_get_their_solo_answers(loaded, engine):
    static = service(loaded, BatchEngine(loaded, max_batch_rows=1, batch_wait_s=0))
    expected = [static.respond([Task("Be brief.", context, GREEDY)])[0] for context in CONTEXTS]
    svc = service(loaded, engine)
    answers = {}
    start = threading.Barrier(len(CONTEXTS))

    def client(index):
        start.wait()
        answers[index] = svc.respond([Task("Be brief.", CONTEXTS[index], GREEDY)])[0]

    threads = [threading.Thread(target=client, args=(index,)) for index in range(len(CONTEXTS))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert [answers[index] for index in range(len(CONTEXTS))] == expected
