"""GET /playground: a page to try the served model in a browser, chatting through /v1/chat/completions (streamed)
or in Dream mode through /respond, with the model input /respond/prompts reports. Its files are in playground/
and it loads nothing from elsewhere (its Content-Security-Policy says so to the browser)."""
from functools import partial
from pathlib import Path

from flask import Blueprint, render_template, send_from_directory

FILES = Path(__file__).with_name("playground")
ASSETS = {"playground.js": "text/javascript", "playground.css": "text/css"}
# data: only for the empty favicon, which keeps the browser from asking for /favicon.ico.
POLICY = "default-src 'self'; img-src 'self' data:"


def playground_blueprint(settings) -> Blueprint:
    blueprint = Blueprint("playground", __name__, template_folder=str(FILES))

    @blueprint.get("/playground")
    def page():
        # The page learns only whether /v1 needs a key, so it can ask for one before the first call.
        html = render_template("playground.html", api_key_required=bool(settings.api_key))
        return html, 200, {"Content-Security-Policy": POLICY}

    for name, media_type in ASSETS.items():
        view = partial(send_from_directory, FILES, name, mimetype=media_type)
        blueprint.add_url_rule(f"/playground/{name}", name.replace(".", "_"), view)  # no dot in an endpoint
    return blueprint
