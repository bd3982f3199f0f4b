"""Text generation: the `Generator` protocol the chat engine uses, and its Hugging Face implementation.

Generation stops as soon as the decoded continuation contains the stop phrase. Token ids of the
stop phrase are never hard-coded: token boundaries differ between models and contexts, so the
check runs on decoded text.

`LoopGuard` is the rule against degenerate repetition (`떡볶이 떡볶이 ...` to the token limit) that
both generators apply to the logits, over the generated tokens only (never the prompt, whose
few-shot examples hold the stop phrase many times).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

from ohlora.loop_guard import LoopGuard
from ohlora.models import use_adapter

OnText = Callable[[str], None]


@dataclass(frozen=True)
class GenerationResult:
    text: str
    """The raw continuation (may include the stop phrase)."""
    finish_reason: str
    """"stop" (stop phrase), "eos" (end-of-sequence token) or "length" (max_new_tokens)."""
    n_tokens: int


class Generator(Protocol):
    def generate(
        self,
        prompt: str,
        *,
        stop_phrase: str,
        max_new_tokens: int,
        temperature: float,
        on_text: OnText | None = None,
        loop_guard: LoopGuard | None = None,
    ) -> GenerationResult: ...


class HFGenerator:
    """Sampling with a transformers causal LM; streams decoded text through `on_text`."""

    def __init__(self, model, tokenizer, adapter: str | None = None):
        self.model = model
        self.tokenizer = tokenizer
        self.adapter = adapter
        """The PEFT adapter generation runs with (None: the bare base model)."""

    def generate(self, prompt, *, stop_phrase, max_new_tokens, temperature, on_text=None, loop_guard=None):
        # lazy: torch, transformers load only when this runs
        import torch
        from transformers import LogitsProcessor, LogitsProcessorList, StoppingCriteria, StoppingCriteriaList

        tok = self.tokenizer
        enc = tok(prompt, return_tensors="pt").to(self.model.device)
        n_prompt = enc["input_ids"].shape[1]
        decode = lambda ids: tok.decode(ids, skip_special_tokens=True)  # noqa: E731

        class StopOnPhrase(StoppingCriteria):
            """Stop once the decoded continuation contains the stop phrase (batch of 1)."""

            def __call__(self, input_ids, scores, **kwargs):  # input_ids: (1, T)
                done = stop_phrase in decode(input_ids[0, n_prompt:])
                return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)

        class GuardLoops(LogitsProcessor):
            """LoopGuard over the generated tokens; generate() runs custom processors before
            temperature and top-k, where FastGenerator applies the guard too."""

            def __init__(self, tracker):
                self.tracker = tracker

            def __call__(self, input_ids, scores):  # input_ids: (1, T), scores: (1, V)
                for t in input_ids[0, n_prompt + len(self.tracker.ids):].tolist():
                    self.tracker.push(t)
                banned = self.tracker.banned()
                if banned:
                    scores[0, banned] = float("-inf")
                return scores

        tracker = loop_guard.tracker() if loop_guard else None
        processors = LogitsProcessorList([GuardLoops(tracker)] if tracker else [])
        streamer = _TextStreamer(decode, on_text) if on_text else None
        sampling = dict(do_sample=True, temperature=temperature) if temperature > 0 else dict(do_sample=False)

        with torch.inference_mode(), use_adapter(self.model, self.adapter):
            out = self.model.generate(
                **enc,
                max_new_tokens=max_new_tokens,
                stopping_criteria=StoppingCriteriaList([StopOnPhrase()]),
                logits_processor=processors,
                streamer=streamer,
                pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id,
                **sampling,
            )
        new_ids = out[0, n_prompt:]
        text = decode(new_ids)
        n = int(new_ids.shape[0])
        if stop_phrase in text:
            reason = "stop"
        elif n > 0 and tok.eos_token_id is not None and int(new_ids[-1]) == tok.eos_token_id:
            reason = "eos"
        else:
            reason = "length" if n >= max_new_tokens else "eos"
        return GenerationResult(text=text, finish_reason=reason, n_tokens=n)


class _TextStreamer:
    """Minimal transformers streamer: decodes the growing continuation and emits the new text.

    Text ending in U+FFFD (an incomplete multi-byte character) is held back until it completes.
    """

    def __init__(self, decode, on_text: OnText):
        self.decode = decode
        self.on_text = on_text
        self.ids: list[int] = []
        self.sent = 0
        self.first = True

    def put(self, value):
        if self.first:  # the first call carries the prompt
            self.first = False
            return
        self.ids.extend(int(v) for v in value.reshape(-1).tolist())
        text = self.decode(self.ids)
        if text.endswith("\ufffd"):
            return
        if len(text) > self.sent:
            self.on_text(text[self.sent:])
            self.sent = len(text)

    def end(self):
        text = self.decode(self.ids)
        if len(text) > self.sent:
            self.on_text(text[self.sent:])
            self.sent = len(text)
