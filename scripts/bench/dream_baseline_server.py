"""The Dream pattern, kept as the benchmark's baseline: Flask in threads, one `generate()` per request.

Same model, same prompt building and same generation parameters as transformers_lm; only the serving
differs (no queue, no batching: concurrent requests' `generate()` calls fight for the cores).
Run: python -m scripts.bench.dream_baseline_server PORT
"""
import sys

import torch
from flask import Flask, jsonify, request

from services.transformers_lm.model.loading import load_model
from services.transformers_lm.prompting import PromptBuilder
from services.transformers_lm.settings import Settings


def create_app(settings: Settings) -> Flask:
    loaded = load_model(settings)
    builder = PromptBuilder(loaded.tokenizer, settings.prompt_format, settings.speakers)
    app = Flask(__name__)

    @app.post("/respond")
    def respond():
        body = request.get_json(force=True)
        configs = body.get("configs") or [None] * len(body["dialog_contexts"])
        replies = []
        for context, prompt, config in zip(body["dialog_contexts"], body["prompts"], configs):
            ids = torch.tensor([builder.ids(prompt, context)])
            with torch.inference_mode():
                output = loaded.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **(config or {}))
            replies.append([loaded.tokenizer.decode(output[0, ids.shape[1]:], skip_special_tokens=True)])
        return jsonify(replies)

    @app.get("/health")
    def health():
        return "ok"

    return app


if __name__ == "__main__":
    create_app(Settings.from_env()).run(host="127.0.0.1", port=int(sys.argv[1]), threaded=True)
