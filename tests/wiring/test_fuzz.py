"""Fuzzing over real HTTP (hypothesis): transformers_lm's /respond and /generate_goals and the skill's /respond,
1,000 generated bodies each, against gunicorn on the tiny model.

Bodies are valid ones, or a valid one with one thing broken (a wrong type, a length mismatch, an empty list,
a lone surrogate, an unknown or out-of-range generation parameter, too many items), or not JSON at all, sent
with assorted content types. Properties: never a 5xx; a broken body gets a JSON error naming exactly the
broken field; a valid one gets 200 with one hypothesis list per context; the skill gives a broken dialog the
empty reply and its neighbours well-formed ones; the workers that served the first request serve the last.
"""
import json

import pytest
import requests
from hypothesis import HealthCheck, event, example, given, settings, strategies as st

from services.transformers_lm.generation_params import PARAMETERS
from tests.helpers.processes import gunicorn, free_port, save_tiny_model, tiny_lm, wait_http, worker_pids

pytestmark = pytest.mark.processes  # every test here starts real processes

FUZZ = settings(max_examples=1000, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))
# The tiny model's replies are random bytes: stopping at any letter or digit keeps most of them a few tokens
# long, so a body without configs (the defaults allow up to 120 tokens) is still quick.
QUICK_STOPS = ",".join("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
LIMITS = {"MAX_NEW_TOKENS": "120", "MAX_RETURN_SEQUENCES": "2", "MAX_CONTEXTS": "4", "MAX_BODY_BYTES": "60000",
          "ADDITIONAL_EOS_TOKENS": QUICK_STOPS}
DEFAULT_SEQUENCES = 2  # default_generative_config.json
VOCAB = 259  # tests/tiny_model.py: 256 bytes and 3 special tokens
CONTENT_TYPES = [None, "application/json", "text/plain", "application/x-www-form-urlencoded",
                 "multipart/form-data; boundary=x", "application/json; charset=latin-1"]
EMPTY_REPLY = [[""], [0.0], [{}], [{}], [{}]]
SKILL_CONFIG = "skills/dff_universal_prompted_skill/gunicorn.conf.py"


# -- shared pieces -------------------------------------------------------------------------------------------

# Short texts keep every prompt plus its last turn inside the tiny model's 512-token window (byte tokens).
text = st.text(max_size=30)  # hypothesis leaves lone surrogates out; `surrogate` puts one in
surrogate = text.map(lambda value: value + "\ud800")
scalar = st.none() | st.booleans() | st.integers() | st.floats() | text
anything = st.recursive(scalar, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
                        max_leaves=5)
not_list = anything.filter(lambda value: not isinstance(value, list))
not_list_or_null = not_list.filter(lambda value: value is not None)
not_str = anything.filter(lambda value: not isinstance(value, str))
not_object = anything.filter(lambda value: not isinstance(value, dict))
not_object_or_null = not_object.filter(lambda value: value is not None)

VALID_PARAMS = {
    "max_new_tokens": st.integers(1, 8), "min_new_tokens": st.integers(0, 8), "max_length": st.integers(1, 8),
    "do_sample": st.booleans(), "temperature": st.floats(0, 2), "top_p": st.floats(0.05, 1),
    "top_k": st.integers(0, 50), "min_p": st.floats(0, 0.5), "repetition_penalty": st.floats(0.5, 2),
    "no_repeat_ngram_size": st.integers(0, 3), "num_return_sequences": st.integers(1, 2),
    "seed": st.integers(0, 2**63 - 1), "stop_strings": st.lists(st.text(min_size=1, max_size=4), max_size=3),
    "replacement": st.lists(st.tuples(st.text(min_size=1, max_size=3), st.text(max_size=3)).map(list), max_size=2),
}
valid_config = st.fixed_dictionaries({}, optional=VALID_PARAMS) | st.fixed_dictionaries(
    {"num_beams": st.integers(2, 3), "num_return_sequences": st.integers(1, 2), "do_sample": st.just(False),
     "max_new_tokens": st.integers(1, 8)})
# Each value is wrong for its parameter: below or above its range, of the wrong type, or too many items.
BAD_PARAMS = {
    "temperature": st.floats(max_value=-1e-9) | st.floats(min_value=100.5) | st.sampled_from(["hot", True, None]),
    "max_new_tokens": st.integers(max_value=0) | st.integers(min_value=121) | st.floats(1.5, 8.5),
    "num_return_sequences": st.integers(max_value=0) | st.integers(min_value=3) | st.just("2"),
    "top_p": st.floats(max_value=0) | st.floats(min_value=1.01) | st.just(float("nan")),
    "top_k": st.integers(max_value=-1) | st.just(3.5),
    "min_new_tokens": st.integers(max_value=-1),
    "seed": st.integers(max_value=-1) | st.integers(min_value=2**63),
    "num_beams": st.integers(max_value=0) | st.integers(min_value=17),
    "repetition_penalty": st.floats(max_value=0.009) | st.floats(min_value=100.5),
    "length_penalty": st.floats(min_value=10.5) | st.floats(max_value=-10.5),
    "do_sample": st.sampled_from([0, 1, "yes", None]),
    "stop_strings": st.lists(st.text(min_size=1, max_size=3), min_size=257, max_size=260) | st.just([""])
    | st.text(min_size=257, max_size=300) | st.lists(st.integers(), min_size=1, max_size=2) | surrogate.map(list),
    "eos_token_id": st.integers(min_value=VOCAB) | st.integers(max_value=-1) | st.just([]),
    "bad_words_ids": st.just([[]]) | st.integers(min_value=VOCAB).map(lambda token: [[token]]) | st.just([1]),
    "replacement": st.sampled_from([[["", "x"]], [["a"]], "a", [["a", 1]]]),
}
unknown_name = st.text(min_size=1, max_size=12).filter(lambda name: name not in PARAMETERS)


def bad_config(base: dict):
    """(config, name of its broken parameter) from a valid config."""
    known = st.sampled_from(sorted(BAD_PARAMS)).flatmap(lambda name: st.tuples(st.just(name), BAD_PARAMS[name]))
    return (known | st.tuples(unknown_name, anything)).map(lambda item: ({**base, item[0]: item[1]}, item[0]))


@st.composite
def per_item(draw, count: int, item):
    """An optional list parallel to the contexts: absent, null, [] or one item per context."""
    return draw(st.sampled_from(["absent", None, []]) | st.lists(item, min_size=count, max_size=count))


def encode(draw, body, field: str = None, shape=None) -> tuple:
    """A case: (bytes, content type, expected status, expected error field, expected answer shape) for the
    JSON of `body`; a broken body names its field, a valid one the shape of its answer."""
    status = 200 if field is None else 400
    return json.dumps(body).encode(), draw(st.sampled_from(CONTENT_TYPES)), status, field, shape


@st.composite
def not_json(draw, valid_body, field: str = "body", size_limit: bool = True) -> tuple:
    """Bytes that are not JSON (a cut-off valid body, HTML, nothing) or, where there is a size limit, a valid
    body past MAX_BODY_BYTES."""
    whole = json.dumps(draw(valid_body))
    cut = whole[:draw(st.integers(1, len(whole) - 1))].encode()
    choices = [(cut, 400), (b"<html>" + cut, 400), (b"", 400)] + ([(whole.encode() + b" " * 60000, 413)]
                                                                  if size_limit else [])
    payload, status = draw(st.sampled_from(choices))
    return payload, draw(st.sampled_from(CONTENT_TYPES)), status, field, None


@st.composite
def cases(draw, valid, shape_of, broken):
    """Valid bodies, broken ones (twice as often: they come in many kinds) and non-JSON ones."""
    kind = draw(st.sampled_from(["valid", "broken", "broken", "not JSON"]))
    if kind == "valid":
        body = draw(valid)
        return encode(draw, body, shape=shape_of(body))
    return draw(broken) if kind == "broken" else draw(not_json(valid))


def post(session, url, case) -> requests.Response:
    payload, content_type = case[:2]
    return session.post(url, data=payload, headers={"Content-Type": content_type} if content_type else {}, timeout=60)


def check_answer(response, case, check_shape):
    """No 5xx; the expected status; an error names the broken field; a 200 has the expected shape."""
    _, _, status, field, shape = case
    event(f"HTTP {response.status_code}: {field or 'valid'}")  # pytest --hypothesis-show-statistics
    assert response.status_code == status, (response.status_code, response.text[:500])
    answer = response.json()
    if field is not None:
        assert answer["field"] == field and isinstance(answer["error"], str), answer
    else:
        check_shape(answer, shape)


# -- transformers_lm ---------------------------------------------------------------------------------------

@st.composite
def valid_respond(draw) -> dict:
    count = draw(st.integers(1, 4))
    body = {"dialog_contexts": draw(st.lists(st.lists(text, min_size=1, max_size=3), min_size=count, max_size=count))}
    for name, item in (("prompts", st.none() | text), ("configs", st.none() | valid_config)):
        value = draw(per_item(count, item))
        if value != "absent":
            body[name] = value
    # Forwarded values of the skill: accepted and ignored.
    body.update(draw(st.dictionaries(st.sampled_from(["openai_api_keys", "seeds"]),
                                     st.lists(st.none() | text, min_size=count, max_size=count))))
    return body


def start_breaking(draw, valid, main: str, kinds: list) -> tuple:
    """(a valid body, its list `main`, an index into that list, what to break: one of `kinds`)."""
    body = draw(valid)
    items = body[main]
    return body, items, draw(st.integers(0, len(items) - 1)), draw(st.sampled_from(kinds))


def break_a_parameter(draw, body, index: int, count: int) -> tuple:
    """`body` with one parameter of configs[index] unknown or out of range (configs made explicit)."""
    configs = body.get("configs") or [None] * count
    configs[index], name = draw(bad_config(configs[index] or {}))
    body["configs"] = configs
    return encode(draw, body, f"configs[{index}].{name}")


@st.composite
def broken_respond(draw) -> tuple:
    body, contexts, index, kind = start_breaking(draw, valid_respond(), "dialog_contexts", [
        "not an object", "contexts", "context", "utterance", "too many", "prompts", "prompt", "configs", "config",
        "parameter"])
    if kind == "not an object":
        return encode(draw, draw(not_object), "body")
    if kind == "contexts":
        body["dialog_contexts"] = draw(not_list | st.just([]))
        if body["dialog_contexts"] is None or draw(st.booleans()):
            del body["dialog_contexts"]
        return encode(draw, body, "dialog_contexts")
    if kind == "context":
        contexts[index] = draw(not_list | st.just([]))
        return encode(draw, body, f"dialog_contexts[{index}]")
    if kind == "utterance":
        turn = draw(st.integers(0, len(contexts[index]) - 1))
        contexts[index][turn] = draw(not_str | surrogate)
        return encode(draw, body, f"dialog_contexts[{index}][{turn}]")
    if kind == "too many":
        body = {"dialog_contexts": [["hi"]] * draw(st.integers(5, 8))}
        return encode(draw, body, "dialog_contexts")
    if kind in ("prompts", "configs"):
        wrong_length = st.lists(st.none(), min_size=1, max_size=6).filter(lambda value: len(value) != len(contexts))
        body[kind] = draw(not_list_or_null.filter(lambda value: value != []) | wrong_length)
        return encode(draw, body, kind)
    if kind == "prompt":
        body["prompts"] = [None] * len(contexts)
        body["prompts"][index] = draw(not_str.filter(lambda value: value is not None) | surrogate)
        return encode(draw, body, f"prompts[{index}]")
    if kind == "config":
        body["configs"] = body.get("configs") or [None] * len(contexts)
        body["configs"][index] = draw(not_object_or_null)
        return encode(draw, body, f"configs[{index}]")
    return break_a_parameter(draw, body, index, len(contexts))


def expected_respond_shape(body) -> list:
    configs = body.get("configs") or [None] * len(body["dialog_contexts"])
    return [(config or {}).get("num_return_sequences", DEFAULT_SEQUENCES) for config in configs]


@st.composite
def valid_goals(draw) -> dict:
    count = draw(st.integers(1, 4))
    body = {"prompts": draw(st.lists(text, min_size=count, max_size=count))}
    configs = draw(per_item(count, st.none() | valid_config))
    if configs != "absent":
        body["configs"] = configs
    return body


@st.composite
def broken_goals(draw) -> tuple:
    body, prompts, index, kind = start_breaking(draw, valid_goals(), "prompts", [
        "not an object", "prompts", "prompt", "too many", "configs", "parameter"])
    if kind == "not an object":
        return encode(draw, draw(not_object), "body")
    if kind == "prompts":
        body["prompts"] = draw(not_list | st.just([]))
        return encode(draw, body, "prompts")
    if kind == "prompt":
        prompts[index] = draw(not_str | surrogate)
        return encode(draw, body, f"prompts[{index}]")
    if kind == "too many":
        return encode(draw, {"prompts": ["Be kind."] * draw(st.integers(5, 8))}, "prompts")
    if kind == "configs":
        body["configs"] = draw(not_list_or_null.filter(lambda value: value != []))
        return encode(draw, body, "configs")
    return break_a_parameter(draw, body, index, len(prompts))


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    process, url = tiny_lm(save_tiny_model(tmp_path_factory.mktemp("tiny-model")), LIMITS)
    try:
        wait_http(f"{url}/health", timeout=120, process=process)
        yield process, url
    finally:
        process.stop()


@pytest.fixture(scope="module")
def session():
    with requests.Session() as session:
        yield session


def stays_up(process, url):
    """Fixture body: the workers after the test are those from before it, and healthy."""
    workers = worker_pids(process)
    yield
    assert worker_pids(process) == workers, process.log()[-3000:]
    assert requests.get(f"{url}/health", timeout=10).status_code == 200


@pytest.fixture
def lm_stays_up(lm):
    yield from stays_up(*lm)


def config_case(config: dict, field: str = None, context: str = "Hi", shape=None) -> tuple:
    """A one-context /respond case with `config`: a 400 naming `field`, or 200 with `shape` when field is None."""
    body = {"dialog_contexts": [[context]], "configs": [config]}
    return json.dumps(body).encode(), None, 400 if field else 200, field, shape


# Found by probing these categories by hand before the fixes: each was a 500, a runaway text or a wrong reply.
REGRESSIONS = [
    config_case({"seed": 2**64 - 1}, "configs[0].seed"),  # torch seeds overflowed at seed + sequence index
    config_case({"do_sample": True, "temperature": 1e300}, "configs[0].temperature"),  # -inf / inf: NaN
    config_case({"do_sample": True, "temperature": 1e-300}, shape=[DEFAULT_SEQUENCES]),  # greedy, not logits / 0
    config_case({"do_sample": True, "repetition_penalty": 1e-300}, "configs[0].repetition_penalty"),
    config_case({"num_beams": 2, "length_penalty": 1e300}, "configs[0].length_penalty"),  # OverflowError
    config_case({"num_beams": 1000}, "configs[0].num_beams"),  # a thousand batch rows
    config_case({"do_sample": True, "bad_words_ids": [[token] for token in range(VOCAB)]},
                "configs[0].bad_words_ids"),  # every token banned: NaN probabilities
    config_case({"replacement": [["a", "b" * 2000]]}, "configs[0].replacement", context="a" * 1000),  # 2M chars
    config_case({"replacement": [["x", ""]]}, shape=[DEFAULT_SEQUENCES]),  # reversing "" inserted "x" everywhere
]


def with_regressions(test):
    for case in REGRESSIONS:
        test = example(case=case)(test)
    return test


@FUZZ
@given(case=cases(valid_respond(), expected_respond_shape, broken_respond()))
@with_regressions
def test_respond_fuzz(lm, lm_stays_up, session, case):
    def check_shape(answer, counts):
        assert [len(hypotheses) for hypotheses in answer] == counts, answer
        assert all(isinstance(text, str) for hypotheses in answer for text in hypotheses), answer

    check_answer(post(session, f"{lm[1]}/respond", case), case, check_shape)


@FUZZ
@given(case=cases(valid_goals(), lambda body: len(body["prompts"]), broken_goals()))
def test_generate_goals_fuzz(lm, lm_stays_up, session, case):
    def check_shape(answer, count):
        assert len(answer) == count and all(isinstance(text, str) for text in answer), answer

    check_answer(post(session, f"{lm[1]}/generate_goals", case), case, check_shape)


# -- the prompted skill ------------------------------------------------------------------------------------

kwarg = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | text


def human_attributes(lm_url):
    config = st.fixed_dictionaries({"max_new_tokens": st.integers(1, 8)},
                                   optional={"num_return_sequences": st.integers(1, 2), "timeout": st.floats(5, 30)})
    return st.fixed_dictionaries({}, optional={
        "prompt": text, "lm_service_url": st.sampled_from(["", lm_url]), "lm_service_config": config,
        "openai_api_key": text, "lm_service_kwargs": st.dictionaries(st.sampled_from(["seed", "user_id"]), kwarg),
    })


@st.composite
def valid_dialog(draw, lm_url) -> dict:
    """dp-agent's shape: alternating human and bot utterances ending with a human one."""
    utterances = []
    for index in range(draw(st.integers(0, 2)) * 2 + 1):
        human = index % 2 == 0
        utterances.append({"text": draw(text), "annotations": {}, "attributes": draw(human_attributes(lm_url))
                           if human else {}, **({} if human else {"active_skill": "dff_universal_prompted_skill"})})
    return {"utterances": utterances, "human_utterances": utterances[::2], "bot_utterances": utterances[1::2]}


BAD_TIMEOUTS = st.sampled_from(["soon", True, None]) | st.floats(max_value=0) | st.floats(min_value=3600.5)
CLASHING_KWARGS = st.sampled_from([{"prompt": "x"}, {"config": {}}, {"dialog_context": ["x"]}])
# Nested, too long, too many, or an unusable name: lm_service_kwargs stay flat and small.
NESTED_KWARGS = st.sampled_from([{"seed": [1]}, {"user_id": {"a": 1}}, {"user_id": "x" * 1001},
                                 {f"k{index}": 1 for index in range(17)}, {"a b": 1}, {"seed": float("nan")}])


@st.composite
def broken_dialog(draw, lm_url):
    """A valid dialog with one thing the skill cannot read (so its reply must be the empty one)."""
    dialog = draw(valid_dialog(lm_url))
    humans, utterances = dialog["human_utterances"], dialog["utterances"]
    last_human = humans[-1] = dict(humans[-1])  # a copy: the same dict also sits in `utterances`
    attributes = last_human["attributes"]
    kind = draw(st.sampled_from(["dialog", "human_utterances", "last human", "attributes", "prompt", "url",
                                 "config", "timeout", "kwargs", "utterances", "text", "utterance attributes"]))
    if kind == "dialog":
        return draw(not_object)
    if kind in ("human_utterances", "utterances"):
        dialog[kind] = draw(not_list | st.just([]))
        if draw(st.booleans()):
            del dialog[kind]
    elif kind == "last human":
        humans[-1] = draw(not_object)
    elif kind == "attributes":
        last_human["attributes"] = draw(not_object_or_null)
    elif kind == "prompt":
        attributes["prompt"] = draw(not_str)
    elif kind == "url":  # a falsy one means the default URL; an undeclared one is never called
        attributes["lm_service_url"] = draw(not_str.filter(bool) | st.just(lm_url + "/other") | st.just(lm_url + "?q"))
    elif kind == "config":
        attributes["lm_service_config"] = draw(not_object_or_null)
    elif kind == "timeout":
        attributes["lm_service_config"] = {"max_new_tokens": 4, "timeout": draw(BAD_TIMEOUTS)}
    elif kind == "kwargs":
        attributes["lm_service_kwargs"] = draw(not_object.filter(bool) | CLASHING_KWARGS | NESTED_KWARGS)
    elif kind == "text":
        utterances[-1] = {**utterances[-1], "text": draw(not_str)}
    else:
        utterances[-1] = {**utterances[-1], "attributes": draw(not_object_or_null)}
    return dialog


@st.composite
def skill_case(draw, lm_url) -> tuple:
    kind = draw(st.sampled_from(["batch", "batch", "not a batch", "not JSON"]))
    if kind == "batch":
        valid = draw(st.lists(st.booleans(), max_size=3))
        batch = [draw(valid_dialog(lm_url) if ok else broken_dialog(lm_url)) for ok in valid]
        return encode(draw, {"dialog_batch": batch}, shape=valid)
    if kind == "not a batch":
        body = draw(not_object | st.fixed_dictionaries({"dialog_batch": not_list})
                    | st.dictionaries(text.filter(lambda name: name != "dialog_batch"), anything))
        return encode(draw, body, "dialog_batch")
    return draw(not_json(st.lists(valid_dialog(lm_url), max_size=1).map(lambda batch: {"dialog_batch": batch}),
                         field="body", size_limit=False))


def check_skill_replies(answer, valid):
    assert len(answer) == len(valid), answer
    for reply, ok in zip(answer, valid):
        if not ok:
            assert reply == EMPTY_REPLY, reply
            continue
        replies, confidences, human_attributes, bot_attributes, hypothesis_attributes = reply
        event(f"valid dialog: {'empty' if replies == [''] else 'real'} reply")
        assert len({len(part) for part in reply}) == 1 and replies, reply
        assert all(isinstance(text, str) for text in replies), reply
        if replies != [""]:
            assert set(confidences) <= {0.7, 0.9} and hypothesis_attributes[0] == {"can_continue": "no"}, reply


@pytest.fixture(scope="module")
def skill(lm, tmp_path_factory):
    lm_url = f"{lm[1]}/respond"
    envvars = tmp_path_factory.mktemp("skill") / "envvars_to_send.json"
    envvars.write_text(json.dumps({lm_url: ["OPENAI_API_KEY"]}))
    port = free_port()
    process = gunicorn(SKILL_CONFIG, port, {"DEFAULT_LM_SERVICE_URL": lm_url, "GENERATIVE_TIMEOUT": "10",
                                            "ENVVARS_TO_SEND_FILE": str(envvars)})
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/health", timeout=30, process=process)
        yield process, url, lm_url
    finally:
        process.stop()


@pytest.fixture
def skill_stays_up(skill):
    yield from stays_up(*skill[:2])


@FUZZ
@given(data=st.data())
def test_skill_fuzz(skill, skill_stays_up, lm_stays_up, session, data):
    process, url, lm_url = skill
    case = data.draw(skill_case(lm_url))
    check_answer(post(session, f"{url}/respond", case), case, check_skill_replies)


@pytest.mark.parametrize("path,field", [
    ("/respond", "body"),
    ("/generate_goals", "body"),
    ("skill", "body"),
])
def test_json_nested_past_the_recursion_limit_is_a_400(lm, skill, session, path, field):
    url = f"{skill[1]}/respond" if path == "skill" else f"{lm[1]}{path}"
    response = session.post(url, data=b"[" * 20000 + b"]" * 20000, timeout=30)
    assert (response.status_code, response.json()["field"]) == (400, field), response.text
