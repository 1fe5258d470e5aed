"""Chat templates: the named ones mgtui offers, the choice between one of them and the tokenizer's
own, and rendering a conversation as transformers' `apply_chat_template` does (Jinja in a sandbox,
with the same filters and globals), so the form counts the tokens the engine will train on.
Pure: jinja2 is imported when a template is first compiled."""

from __future__ import annotations

import functools
import json
from datetime import datetime
from pathlib import Path
from typing import Any

from .scan import DatasetError

NAMED_TEMPLATES = {
    "chatml": (
        "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + "
        "'<|im_end|>\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
    ),
    # ChatML with tool calls as Hermes and Qwen2.5 write them: <tool_call> JSON in the assistant's turn,
    # results as <tool_response> in a user turn, and the row's tools listed in the system turn.
    "hermes": (
        "{% set sys = messages[0]['content'] if messages and messages[0]['role'] == 'system' else none %}"
        "{% if tools %}{{ '<|im_start|>system\\n' }}{% if sys %}{{ sys + '\\n\\n' }}{% endif %}"
        "{{ '# Tools\\n\\nYou may call one or more functions. Their signatures are within <tools></tools>:\\n<tools>' }}"
        "{% for tool in tools %}{{ '\\n' + tool | tojson }}{% endfor %}"
        "{{ '\\n</tools>\\n\\nReturn each call as a JSON object with its name and arguments within "
        "<tool_call></tool_call>.<|im_end|>\\n' }}"
        "{% elif sys %}{{ '<|im_start|>system\\n' + sys + '<|im_end|>\\n' }}{% endif %}"
        "{% for message in messages %}{% if message['role'] == 'system' and loop.first %}"
        "{% elif message['role'] == 'tool' %}"
        "{{ '<|im_start|>user\\n<tool_response>\\n' + message['content'] + '\\n</tool_response><|im_end|>\\n' }}"
        "{% else %}{{ '<|im_start|>' + message['role'] }}"
        "{% if message['content'] %}{{ '\\n' + message['content'] }}{% endif %}"
        "{% for call in message['tool_calls'] or [] %}"
        "{{ '\\n<tool_call>\\n{\"name\": \"' + call['function']['name'] + '\", \"arguments\": ' "
        "+ call['function']['arguments'] | tojson + '}\\n</tool_call>' }}"
        "{% endfor %}{{ '<|im_end|>\\n' }}{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
    ),
    "llama-3": (
        "{{ bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + "
        "'<|end_header_id|>\\n\\n' + message['content'] + '<|eot_id|>' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
    ),
    "gemma": (
        "{{ bos_token }}{% for message in messages %}{% set role = 'model' if message['role'] == 'assistant' "
        "else 'user' %}{{ '<start_of_turn>' + role + '\\n' + message['content'] + '<end_of_turn>\\n' }}"
        "{% endfor %}{% if add_generation_prompt %}{{ '<start_of_turn>model\\n' }}{% endif %}"
    ),
    "zephyr": (
        "{% for message in messages %}{{ '<|' + message['role'] + '|>\\n' + message['content'] + eos_token + "
        "'\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
    ),
}


def unknown_template(setting: str) -> str | None:
    """Why the chat_template setting names no template (a name we don't know, and not inline Jinja)."""
    if setting and setting not in NAMED_TEMPLATES and "{%" not in setting and "{{" not in setting:
        return f"--chat-template: unknown template {setting!r} (known: {', '.join(NAMED_TEMPLATES)})"
    return None


def template_for(fmt: str, setting: str, own: str | None, base_model: str) -> str | None:
    """The template rows of `fmt` need: chat formats' (refused without one), none for text ones,
    and for TRL's types that may be either the template when there is one (a chat row without it
    is refused as it is rendered)."""
    from .scan import CHAT_FORMATS, MAYBE_CHAT, DatasetError

    if fmt in CHAT_FORMATS:
        return pick_template(setting, own, base_model)
    if fmt in MAYBE_CHAT:
        try:
            return pick_template(setting, own, base_model)
        except DatasetError:
            return None
    return None


def pick_template(setting: str, own: str | None, base_model: str) -> str:
    """The template chat rows are rendered with: the chat_template setting (a name or inline Jinja),
    else the tokenizer's own. Raises DatasetError when there is none."""
    if setting:
        problem = unknown_template(setting)
        if problem:
            raise DatasetError(problem)
        return NAMED_TEMPLATES.get(setting, setting)
    if own:
        return own
    raise DatasetError(
        f"{base_model}: its tokenizer has no chat template; pass --chat-template ({', '.join(NAMED_TEMPLATES)})"
    )


def _config(directory: Path) -> dict[str, Any]:
    try:
        return json.loads((directory / "tokenizer_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def saved_template(directory: Path) -> str | None:
    """The chat template saved with a tokenizer: chat_template.jinja, else tokenizer_config.json's."""
    try:
        return (directory / "chat_template.jinja").read_text(encoding="utf-8")
    except OSError:
        pass
    found = _config(directory).get("chat_template")
    if isinstance(found, list):  # several named templates: the default one
        found = next((t.get("template") for t in found if t.get("name") == "default"), None)
    return found if isinstance(found, str) else None


def special_tokens(directory: Path) -> dict[str, str]:
    """bos_token, eos_token, ... as the tokenizer's config names them (templates may use them)."""
    out = {}
    for key, value in _config(directory).items():
        if key.endswith("_token") and value:
            out[key] = value["content"] if isinstance(value, dict) else str(value)
    return out


@functools.lru_cache(maxsize=8)
def _compiled(template: str):
    import jinja2
    from jinja2.ext import Extension, loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class Generation(Extension):  # {% generation %} marks assistant text for masks; rendering ignores it
        tags = {"generation"}

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return jinja2.nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

        def _body(self, caller):
            return caller()

    def raise_exception(message: str):
        raise jinja2.exceptions.TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[Generation, loopcontrols])
    env.filters["tojson"] = lambda x, ensure_ascii=False, indent=None, separators=None, sort_keys=False: json.dumps(
        x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
    )
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env.from_string(template)


def render_chat(
    template: str,
    messages: list[dict[str, Any]],
    specials: dict[str, str],
    tools: list[dict[str, Any]] | None = None,
    generation_prompt: bool = False,
) -> str:
    """The conversation as the engine renders it: for training (no generation prompt), or the prompt
    before a reply."""
    return _compiled(template).render(
        messages=messages, tools=tools, add_generation_prompt=generation_prompt, **specials
    )


def refused(where: str, error: Exception) -> DatasetError:
    """A row the chat template rejects (many raise on roles they don't take, such as a system turn):
    one line naming the row, from the form's count and from the engine alike."""
    first = str(error).splitlines()[0] if str(error) else type(error).__name__
    return DatasetError(f"{where}: the chat template refused this row: {first}")
