"""The playground (GET /playground) in a real browser: Debian's chromium driven by Playwright against real
gunicorn servers, the tiny model with API_KEY set and the embedded SmolLM2 without; and /respond/prompts, the
model input the page shows in Dream mode, over HTTP."""
import pytest
import requests
from playwright.sync_api import expect, sync_playwright

from tests.helpers.processes import tiny_lm_server
from tests.helpers.tiny_model import tiny_tokenizer

pytestmark = pytest.mark.processes  # gunicorn, and chromium with Playwright's driver

CHROMIUM = "/usr/bin/chromium"  # Debian's package: Playwright's own browser download is never used
KEY = "sk-playground-test"
BEARER = {"Authorization": f"Bearer {KEY}"}
# The tiny random model often ends a reply within a few tokens; this seed samples a reply of many pieces.
STREAMED = {"temperature": "1", "seed": "3", "max-tokens": "48"}
WAIT_MS = 240_000  # a ceiling for SmolLM2 on a busy 2-core machine
# Records every text the last assistant message shows, to see a reply grow piece by piece.
WATCH_REPLY = """() => {
  window.partials = [];
  new MutationObserver(() => {
    const texts = document.querySelectorAll("#messages .assistant .text");
    if (texts.length) window.partials.push(texts[texts.length - 1].textContent);
  }).observe(document.getElementById("messages"), {childList: true, subtree: true, characterData: true});
}"""


@pytest.fixture(scope="module")
def tiny_server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("playground")
    process, url = tiny_lm_server(folder / "model", {"API_KEY": KEY, "MAX_NEW_TOKENS": "64"},
                                  log_path=folder / "server.log")
    yield url
    process.stop()


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                             args=["--no-sandbox", "--disable-background-networking"])
        yield browser
        browser.close()


class Playground:
    """One browser tab on a server's /playground, with what its console and scripts reported."""

    def __init__(self, browser, url: str):
        self.url = url
        self.context = browser.new_context(viewport={"width": 1400, "height": 900})
        self.page = self.context.new_page()
        self.console_errors, self.script_errors = [], []
        self.page.on("console", lambda message: message.type == "error" and self.console_errors.append(message.text))
        self.page.on("pageerror", lambda error: self.script_errors.append(str(error)))
        self.page.goto(f"{url}/playground")
        expect(self.page.locator("#model")).not_to_have_text("connecting…")

    def set(self, **fields):
        for name, value in fields.items():
            self.page.fill(f"#{name}", value)

    def send(self, text: str):
        self.page.fill("#input", text)
        self.page.click("#send")

    def replies(self):
        """Answered assistant messages (their stats line is written last)."""
        return self.page.locator("#messages .message.assistant:has(.stats)")

    def wait_replies(self, count: int):
        """The count-th answered reply; an error shown meanwhile fails the test at once, in the page's words."""
        errors = self.page.locator("#messages .message.error")
        expect(self.replies().or_(errors)).to_have_count(count, timeout=WAIT_MS)
        assert errors.count() == 0, errors.all_text_contents()
        return self.replies().nth(count - 1)

    def use_key(self, key: str):
        self.page.fill("#api-key", key)
        self.page.click("#api-key-form button")

    def dream_mode(self):
        self.page.check("input[name=mode][value=dream]")

    def no_errors(self, *expected_failed_loads: int):
        """No script error, and in the console only the failed loads of the statuses the test provoked."""
        assert not self.script_errors
        allowed = tuple(f"the server responded with a status of {status}" for status in expected_failed_loads)
        assert [error for error in self.console_errors if not any(text in error for text in allowed)] == []


@pytest.fixture
def tiny_page(browser, tiny_server):
    """The playground on the tiny model, its API key given."""
    playground = Playground(browser, tiny_server)
    playground.use_key(KEY)
    yield playground
    playground.context.close()


def chat_body(**parameters) -> dict:
    return {"messages": [{"role": "system", "content": "You are a helpful assistant."},
                         {"role": "user", "content": "Hello"}], **parameters}


def test_the_page_asks_for_the_api_key_and_sends_it(browser, tiny_server):
    playground = Playground(browser, tiny_server)
    form = playground.page.locator("#api-key-form")
    expect(form).to_be_visible()
    playground.send("Hello")  # no key yet: nothing is sent
    expect(playground.page.locator("#messages .message")).to_have_count(0)
    playground.use_key("sk-wrong")
    expect(form).to_be_hidden()
    playground.send("Hello")
    refused = requests.post(f"{tiny_server}/v1/chat/completions", json=chat_body(),
                            headers={"Authorization": "Bearer sk-wrong"}, timeout=30).json()["error"]
    expect(playground.page.locator(".message.error .text")).to_have_text(
        f"HTTP 401: authorization: {refused['message']}")
    expect(form).to_be_visible()  # asked again
    playground.use_key(KEY)
    playground.page.click("#new-chat")
    playground.page.click("#send")  # the unanswered message went back to the input box
    assert playground.wait_replies(1).locator(".text").text_content()
    playground.no_errors(401)
    playground.context.close()


def test_a_reply_streams_in_piece_by_piece_with_its_figures(tiny_page, tiny_server):
    page = tiny_page.page
    tiny_page.set(**STREAMED)
    page.evaluate(WATCH_REPLY)
    tiny_page.send("Hello")
    reply = tiny_page.wait_replies(1)
    text = reply.locator(".text").text_content()
    whole = requests.post(f"{tiny_server}/v1/chat/completions", headers=BEARER, timeout=60,
                          json=chat_body(temperature=1, seed=3, max_tokens=48)).json()
    assert text == whole["choices"][0]["message"]["content"]  # the same seeded sample, streamed
    partials = [partial for partial in page.evaluate("window.partials") if partial]
    assert len(set(partials)) >= 3 and all(text.startswith(partial) for partial in partials)
    stats = reply.locator(".stats").text_content()
    usage = whole["usage"]
    assert f"prompt {usage['prompt_tokens']} tokens" in stats
    assert f"completion {usage['completion_tokens']} tokens" in stats
    assert "first token " in stats and " tokens/s" in stats
    page.click("#new-chat")
    expect(page.locator("#messages .message")).to_have_count(0)
    tiny_page.no_errors()


def test_dream_mode_shows_the_prompt_the_service_built_and_two_hypotheses(tiny_page, tiny_server):
    page = tiny_page.page
    tiny_page.set(**STREAMED)
    tiny_page.send("Hello")  # a chat turn first: Dream mode sends the whole conversation as the dialog context
    answer = tiny_page.wait_replies(1).locator(".text").text_content()
    tiny_page.dream_mode()
    tiny_page.set(**{"system-prompt": "Respond like a friendly chatbot.", "hypotheses": "2"})
    tiny_page.send("How are you?")
    expect(page.locator("#dream-hypotheses li")).to_have_count(2, timeout=WAIT_MS)
    shown = page.locator("#dream-prompt").text_content()
    context = ["Hello", answer, "How are you?"]
    body = {"dialog_contexts": [context], "prompts": ["Respond like a friendly chatbot."],
            "configs": [{"temperature": 1, "seed": 3, "max_new_tokens": 48, "num_return_sequences": 2}]}
    assert shown == requests.post(f"{tiny_server}/respond/prompts", json=body, timeout=30).json()[0]["text"]
    assert shown == tiny_tokenizer().apply_chat_template(
        [{"role": "system", "content": "Respond like a friendly chatbot."}, {"role": "user", "content": "Hello"},
         {"role": "assistant", "content": answer}, {"role": "user", "content": "How are you?"}],
        tokenize=False, add_generation_prompt=True)
    hypotheses = page.locator("#dream-hypotheses li").all_text_contents()
    assert tiny_page.wait_replies(2).locator(".text").text_content() == hypotheses[0]
    tiny_page.no_errors()


def test_a_400_is_shown_as_the_service_words_it(tiny_page, tiny_server):
    page = tiny_page.page
    tiny_page.set(temperature="5")
    tiny_page.send("Hello")
    refused = requests.post(f"{tiny_server}/v1/chat/completions", json=chat_body(temperature=5), headers=BEARER,
                            timeout=30).json()["error"]
    expect(page.locator(".message.error .text")).to_have_text(f"HTTP 400: temperature: {refused['message']}")
    tiny_page.dream_mode()
    tiny_page.set(temperature="", **{"top-p": "1.5"})
    page.click("#send")
    dream_refusal = requests.post(f"{tiny_server}/respond/prompts", timeout=30, json={
        "dialog_contexts": [["Hello"]], "configs": [{"top_p": 1.5, "num_return_sequences": 2}]}).json()
    expect(page.locator(".message.error .text").nth(1)).to_have_text(
        f"HTTP 400: {dream_refusal['field']}: {dream_refusal['error']}")
    expect(page.locator("#input")).to_have_value("Hello")  # kept, to send again
    tiny_page.no_errors(400)


def test_on_the_embedded_smollm2(browser, lm_server, tmp_path):
    playground = Playground(browser, lm_server)
    page = playground.page
    expect(page.locator("#api-key-form")).to_be_hidden()  # no API_KEY: no key asked for
    expect(page.locator("#model")).to_contain_text("SmolLM2")
    playground.set(temperature="0", **{"max-tokens": "8"})  # few tokens: two hypotheses on CPU take long
    page.evaluate(WATCH_REPLY)
    playground.send("Name three colours of the rainbow.")
    reply = playground.wait_replies(1)
    text = reply.locator(".text").text_content()
    partials = [partial for partial in page.evaluate("window.partials") if partial]
    assert text.strip() and len(set(partials)) >= 3 and all(text.startswith(partial) for partial in partials)
    playground.dream_mode()
    playground.set(**{"system-prompt": "Respond like a friendly chatbot.", "temperature": "", "hypotheses": "2"})
    playground.send("And what is your favourite one?")
    expect(page.locator("#dream-hypotheses li")).to_have_count(2, timeout=WAIT_MS)
    shown = page.locator("#dream-prompt").text_content()
    assert shown.startswith("<|im_start|>system\nRespond like a friendly chatbot.<|im_end|>")
    assert shown.endswith("<|im_start|>user\nAnd what is your favourite one?<|im_end|>\n<|im_start|>assistant\n")
    assert f"<|im_start|>assistant\n{text}<|im_end|>" in shown
    playground.wait_replies(2)
    screenshot = tmp_path / "playground.png"
    page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.read_bytes().startswith(b"\x89PNG")
    playground.no_errors()
    playground.context.close()


def test_respond_prompts_is_the_input_respond_generates_from(tiny_server):
    """Fed raw to the model, the reported text gives /respond's own greedy reply; an old turn that does not fit
    the window is left out, as /respond leaves it out."""
    greedy = {"do_sample": False, "num_return_sequences": 1, "min_new_tokens": 0, "max_new_tokens": 16}
    body = {"dialog_contexts": [["x" * 600, "Hello!", "How are you?"]], "prompts": ["Be nice."], "configs": [greedy]}
    [built] = requests.post(f"{tiny_server}/respond/prompts", json=body, timeout=30).json()
    assert built["text"] == tiny_tokenizer().apply_chat_template(
        [{"role": "system", "content": "Be nice."}, {"role": "assistant", "content": "Hello!"},
         {"role": "user", "content": "How are you?"}],
        tokenize=False, add_generation_prompt=True)  # 600 one-byte tokens do not fit a window of 512
    assert built["tokens"] == len(tiny_tokenizer()(built["text"], add_special_tokens=False)["input_ids"])
    [[reply]] = requests.post(f"{tiny_server}/respond", json=body, timeout=60).json()
    completion = requests.post(f"{tiny_server}/v1/completions", headers=BEARER, timeout=60, json={
        "prompt": built["text"], "temperature": 0, "max_tokens": 16}).json()
    assert reply and reply == completion["choices"][0]["text"].strip()
    assert completion["usage"]["prompt_tokens"] == built["tokens"]
