// The playground: chat through the service's own /v1/chat/completions (streamed), or Dream mode through
// /respond as the prompted skill calls it. Limits are the service's: out-of-range values go to it unchecked
// and its error is shown as it words it. URLs are relative, so the page works behind a proxy's prefix too.
"use strict";

const $ = (id) => document.getElementById(id);
const conversation = [];  // {role: "user" | "assistant", content}, oldest first
let apiKey = "";
let running = null;  // the AbortController of the request in flight
const keyRequired = document.body.dataset.apiKeyRequired === "yes";  // API_KEY is set: /v1 needs it

class ServiceError extends Error {}

function mode() {
  return document.querySelector("input[name=mode]:checked").value;
}

function numberField(id) {
  const value = $(id).value.trim();
  return value === "" ? undefined : Number(value);
}

function stopStrings() {
  const lines = $("stop").value.split("\n").filter((line) => line !== "");
  return lines.length ? lines : undefined;
}

// The controls as generation parameters, in the names of the endpoint (OpenAI's or Dream's config);
// undefined values are left out of the JSON, so the service's defaults apply.
function parameters(names) {
  return {
    temperature: numberField("temperature"), top_p: numberField("top-p"), [names.maxTokens]: numberField("max-tokens"),
    seed: numberField("seed"), [names.stop]: stopStrings(),
  };
}

function addMessage(role, text) {
  const box = document.createElement("div");
  box.className = `message ${role}`;
  const body = document.createElement("div");
  body.className = "text";
  body.textContent = text;
  box.append(body);
  $("messages").append(box);
  box.scrollIntoView({block: "end"});
  return box;
}

function addStats(box, parts) {
  const stats = document.createElement("div");
  stats.className = "stats";
  stats.textContent = parts.filter(Boolean).join(" · ");
  box.append(stats);
}

const seconds = (ms) => `${(ms / 1000).toFixed(2)} s`;

// The service's own words: OpenAI's {"error": {"message", "param"}} or Dream's {"error", "field"}.
async function failure(response) {
  let message = response.statusText, field = null;
  try {
    const body = await response.json();
    const error = body.error;
    [message, field] = typeof error === "object" ? [error.message, error.param] : [error, body.field];
  } catch (error) {
    // not JSON (a proxy's page, say): the status line is all there is
  }
  if (response.status === 401) {
    askForKey();
  }
  return new ServiceError(`HTTP ${response.status}: ${field ? `${field}: ` : ""}${message}`);
}

async function post(path, body, signal) {
  const headers = {"Content-Type": "application/json"};
  if (apiKey && path.startsWith("v1/")) {
    headers.Authorization = `Bearer ${apiKey}`;
  }
  const response = await fetch(path, {method: "POST", headers, body: JSON.stringify(body), signal});
  if (!response.ok) {
    throw await failure(response);
  }
  return response;
}

// The data of each server-sent event, as it arrives.
async function* events(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const {value, done} = await reader.read();
    if (done) {
      return;
    }
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const lines = buffer.slice(0, end).split("\n");
      buffer = buffer.slice(end + 2);
      yield lines.filter((line) => line.startsWith("data:")).map((line) => line.slice(5).trim()).join("\n");
    }
  }
}

async function chat(signal) {
  const system = $("system-prompt").value;
  const messages = (system ? [{role: "system", content: system}] : []).concat(conversation);
  const started = performance.now();
  const response = await post("v1/chat/completions", {
    messages, stream: true, stream_options: {include_usage: true},
    ...parameters({maxTokens: "max_tokens", stop: "stop"}),
  }, signal);
  const box = addMessage("assistant", "");
  const text = box.querySelector(".text");
  let firstToken = null, lastToken = null, usage = null;
  for await (const data of events(response)) {
    if (data === "[DONE]") {
      break;
    }
    const chunk = JSON.parse(data);
    if (chunk.error) {  // the stream had started: an error can only come as an event
      throw new ServiceError(chunk.error.message);
    }
    usage = chunk.usage || usage;
    const piece = chunk.choices.length ? chunk.choices[0].delta.content : "";
    if (piece) {
      lastToken = performance.now();
      firstToken = firstToken ?? lastToken;
      text.textContent += piece;
      box.scrollIntoView({block: "end"});
    }
  }
  conversation.push({role: "assistant", content: text.textContent});
  // Tokens/s is the decoding speed: the tokens after the first over the time after the first.
  const decoding = usage && usage.completion_tokens > 1 && lastToken > firstToken
    ? `${((usage.completion_tokens - 1) / ((lastToken - firstToken) / 1000)).toFixed(1)} tokens/s` : null;
  addStats(box, [firstToken !== null && `first token ${seconds(firstToken - started)}`, decoding,
    usage && `prompt ${usage.prompt_tokens} tokens`, usage && `completion ${usage.completion_tokens} tokens`]);
}

async function dream(signal) {
  const config = {...parameters({maxTokens: "max_new_tokens", stop: "stop_strings"}),
    num_return_sequences: numberField("hypotheses")};
  // The last utterances, as the skill sends N_UTTERANCES_CONTEXT of them.
  const context = conversation.slice(-(numberField("context-size") || conversation.length)).map((turn) => turn.content);
  const body = {dialog_contexts: [context], prompts: [$("system-prompt").value], configs: [config]};
  $("dream-prompt").textContent = "";
  $("dream-hypotheses").replaceChildren();
  const started = performance.now();
  const [built] = await (await post("respond/prompts", body, signal)).json();
  $("dream-prompt").textContent = built.text;
  const [hypotheses] = await (await post("respond", body, signal)).json();
  $("dream-hypotheses").replaceChildren(...hypotheses.map((hypothesis) => {
    const item = document.createElement("li");
    item.textContent = hypothesis;
    return item;
  }));
  conversation.push({role: "assistant", content: hypotheses[0]});
  const box = addMessage("assistant", hypotheses[0]);
  addStats(box, [`${hypotheses.length} hypotheses in ${seconds(performance.now() - started)}`,
    `prompt ${built.tokens} tokens`]);
}

async function send(event) {
  event.preventDefault();
  const text = $("input").value;
  if (running || !text.trim()) {
    return;
  }
  if (keyRequired && !apiKey && mode() === "chat") {
    askForKey();
    return;
  }
  conversation.push({role: "user", content: text});
  addMessage("user", text);
  $("input").value = "";
  running = new AbortController();
  setRunning(true);
  try {
    await (mode() === "chat" ? chat : dream)(running.signal);
  } catch (error) {
    conversation.pop();  // unanswered: the message goes back to the input box, to send again
    $("input").value = text;
    const words = error instanceof ServiceError ? error.message
      : error.name === "AbortError" ? "stopped" : `the service did not answer (${error.message})`;
    addMessage("error", words);
  } finally {
    running = null;
    setRunning(false);
  }
}

function setRunning(on) {
  $("send").disabled = on;
  $("stop-generation").hidden = !on;
}

function askForKey() {
  $("api-key-form").hidden = false;
  $("api-key").focus();
}

function newChat() {
  if (running) {
    running.abort();
  }
  conversation.length = 0;
  $("messages").replaceChildren();
  $("dream-prompt").textContent = "";
  $("dream-hypotheses").replaceChildren();
  $("input").focus();
}

async function showModel() {
  try {
    const health = await (await fetch("health")).json();
    $("model").textContent = health.status === "ok" ? `${health.model} on ${health.device}, ${health.window} tokens`
      : `the model is ${health.status}${health.error ? `: ${health.error}` : ""}`;
  } catch (error) {
    $("model").textContent = `the service did not answer (${error.message})`;
  }
}

function showMode() {
  document.body.classList.toggle("dream", mode() === "dream");
}

$("composer").addEventListener("submit", send);
$("input").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey) {
    send(event);
  }
});
$("stop-generation").addEventListener("click", () => running && running.abort());
$("new-chat").addEventListener("click", newChat);
$("api-key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  apiKey = $("api-key").value.trim();
  $("api-key-form").hidden = apiKey !== "";
});
document.querySelectorAll("input[name=mode]").forEach((radio) => radio.addEventListener("change", showMode));
showMode();
if (keyRequired) {
  askForKey();
}
showModel();
