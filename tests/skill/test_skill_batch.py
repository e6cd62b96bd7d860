"""Batch handling in process: order kept, failures isolated per dialog."""
from concurrent.futures import ThreadPoolExecutor

from skills.dff_universal_prompted_skill.batch import respond_to_batch
from skills.dff_universal_prompted_skill.replies import empty_reply
from skills.dff_universal_prompted_skill.settings import Settings
from tests.helpers.dream_dialogs import make_dialog
from tests.helpers.http_doubles import RecordingServer, closed_port_url


def test_replies_keep_the_batch_order_and_failures_stay_per_dialog():
    with RecordingServer(answer=[["Sure thing!"]]) as llm, ThreadPoolExecutor(4) as executor:
        settings = Settings(
            service_name="skill",
            generative_timeout=2.0,
            n_utterances_context=7,
            default_lm_service_url=llm.url,
            default_lm_service_config={},
            envvars_to_send={},
        )
        batch = [
            make_dialog(("one", {})),
            {"human_utterances": "broken"},
            make_dialog(("three", {"lm_service_url": closed_port_url()})),
            make_dialog(("four", {})),
        ]
        replies = respond_to_batch(batch, settings, executor)
    assert replies[0][:2] == replies[3][:2] == [["Sure thing!"], [0.9]]
    assert replies[1] == replies[2] == empty_reply()
    assert sorted(body["dialog_contexts"][0][0] for body in llm.bodies) == ["four", "one"]
