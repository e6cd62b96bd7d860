"""`make chat`: talk to the Dream agent of `make serve-dist` from a terminal, one line per turn.

The prompt and the LLM settings travel as the agent's message attributes, as a Dream client sends them:

    make chat CHAT_ARGS='--prompt "You are a pirate." --config "{\\"max_new_tokens\\": 40}"'
"""
import argparse
import json
import sys
import uuid

import requests


def turn(url: str, user_id: str, text: str, attributes: dict, timeout: float) -> dict:
    response = requests.post(url, json={"user_id": user_id, "payload": text, **attributes}, timeout=timeout)
    response.raise_for_status()
    return response.json()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:4242/")
    parser.add_argument("--prompt", help="the skill's instruction (default: the skill's)")
    parser.add_argument("--lm-service-url", help="one of the distribution's LLMs (default: the skill's)")
    parser.add_argument("--config", type=json.loads, help="generation config, JSON (merged over the LLM's)")
    parser.add_argument("--timeout", type=float, default=180.0)
    args = parser.parse_args(argv)
    attributes = {name: value for name, value in (("prompt", args.prompt), ("lm_service_url", args.lm_service_url),
                                                  ("lm_service_config", args.config)) if value is not None}
    user_id = f"chat-{uuid.uuid4().hex[:8]}"  # one dialog per session
    print(f"Talking to {args.url} as {user_id}; an empty line or Ctrl-D ends.", flush=True)
    for line in sys.stdin if not sys.stdin.isatty() else iter(lambda: input("you> "), ""):
        text = line.strip()
        if not text:
            break
        try:
            answer = turn(args.url, user_id, text, attributes, args.timeout)
        except requests.RequestException as error:
            print(f"(the agent did not answer: {error})", flush=True)
            continue
        print(f"bot ({answer.get('active_skill', '?')})> {answer.get('response', '')}", flush=True)


if __name__ == "__main__":
    try:
        main()
    except (EOFError, KeyboardInterrupt):
        print()
