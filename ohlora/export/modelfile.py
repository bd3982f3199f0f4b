"""An Ollama `Modelfile` for an exported GGUF: ohlora's prompt format for a single turn.

The TEMPLATE is the adapter's PromptFormat rendered with Ollama's variables in place of the
message (`{{ .Prompt }}`) and of the persona's facts line (`{{ .System }}`, whose default, the
SYSTEM line, is the card's facts on the day of the export: her age there does not move on by
itself). What ohlora adds around a turn (recalled memories, the time hint for date questions,
earlier turns and their summary) stays in ohlora; sampling is set as ohlora samples (temperature
0.6, top-k 50, no top-p, no repeat penalty: Ollama's defaults would change the answers).
"""

from __future__ import annotations

from pathlib import Path

from ohlora.errors import OhloraError
from ohlora.prompt import PromptFormat

FILENAME = "Modelfile"
GEMMA_LICENCE = (
    "Gemma is provided under and subject to the Gemma Terms of Use (https://ai.google.dev/gemma/terms); "
    "this model is a derivative of Gemma 3 270M and carries the same terms (a copy: GEMMA_TERMS.html)."
)
_MESSAGE = "\x00MESSAGE\x00"  # placeholders no prompt format contains
_FACTS = "\x00FACTS\x00"


def ollama_template(fmt: PromptFormat, with_system: bool) -> str:
    """The single-turn prompt of `fmt` as an Ollama (Go) template; `fmt.render(m, facts=f)` equals
    it with `{{ .Prompt }}` -> m and `{{ .System }}` -> f."""
    text = fmt.render(_MESSAGE, facts=_FACTS if with_system else None)
    text = text.replace("{{", '{{ "{{" }}')  # literal braces in a preamble stay literal
    if with_system and fmt.persona_template:
        persona = fmt.persona_template.format(facts=_FACTS).replace("{{", '{{ "{{" }}')
        text = text.replace(persona, "{{ if .System }}" + persona + "{{ end }}", 1)
    return text.replace(_FACTS, "{{ .System }}").replace(_MESSAGE, "{{ .Prompt }}")


def render_modelfile(gguf_name: str, fmt: PromptFormat, facts: str | None, *, temperature: float = 0.6,
                     num_predict: int = 80, top_k: int = 50, licence: str = GEMMA_LICENCE) -> str:
    with_system = bool(facts and fmt.persona_template)
    template = ollama_template(fmt, with_system)
    for name, text in (("the prompt format", template), ("the facts line", facts or ""), ("the stop phrase", fmt.stop_phrase)):
        if '"""' in text:
            raise OhloraError(f"{name} contains \"\"\", which a Modelfile cannot quote")
    lines = [
        "# Oh-LoRA (오로라) for Ollama: ollama create oh-lora -f Modelfile && ollama run oh-lora",
        "# Written by `ohlora export gguf`: one turn in ohlora's prompt format (no memory, no date hint).",
        f"FROM ./{gguf_name}",
        f'TEMPLATE """{template}"""',
    ]
    if with_system:
        lines.append(f'SYSTEM """{facts}"""')
    lines += [
        f'PARAMETER stop "{fmt.stop_phrase}"',
        f"PARAMETER temperature {temperature:g}",
        f"PARAMETER top_k {top_k}",
        "PARAMETER top_p 1",
        "PARAMETER min_p 0",
        "PARAMETER repeat_penalty 1",
        f"PARAMETER num_predict {num_predict}",
        f'LICENSE """{licence}"""',
    ]
    return "\n".join(lines) + "\n"


def write_modelfile(directory: Path, gguf_name: str, fmt: PromptFormat, facts: str | None, **kw) -> Path:
    path = Path(directory) / FILENAME
    path.write_text(render_modelfile(gguf_name, fmt, facts, **kw), encoding="utf-8")
    return path
