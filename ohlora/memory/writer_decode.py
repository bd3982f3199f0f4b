"""The memory writer's decoding: keys from its schema, and calibrated decisions to store.

Free greedy decoding lets a 270M model invent keys (`[반드시 듣는 과목: ...]`, `[싫어하는 곡: ...]`)
that no other memory uses, and it stores whenever "[" narrowly beats "없음". So the writer
decodes in two parts:

1. The opening is constrained to the answers it was trained on: " 없음" or " [key:" for a key of
   its schema (the keys of its training data, `writer_policy.yaml`). A token trie over those
   openings masks every other token, step by step (as grammar-constrained decoders do).
2. After the key, the value is decoded greedily up to "]": freely, or for the schema's span keys
   (`span_keys`: names, foods, titles, places, whose values the training messages hold word for
   word) as a span of the message: at each step the likeliest of the top SPAN_CANDIDATES tokens
   (at least SPAN_MIN_RATIO as likely as the best) that keeps the value a substring of the
   message (spaces ignored), "]" once it is not empty.
   Where no candidate fits, the rest of the value is decoded freely (no span fits).

Two probabilities are read on the way: p_store, the model's probability of opening a tag rather
than "없음" (at the first step where the two part), and p_key, the probability of the chosen key
among the schema's keys (the product of the normalized step probabilities along its path). The
writer stores only if p_store >= min_store_prob and p_key >= min_key_prob; both thresholds are
chosen on the writer's validation split (`ohlora train writer`).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from ohlora.errors import OhloraError
from ohlora.formats import read_yaml
from ohlora.memory.writer import Validated, WriteResult, WriterFormat, validate_tag
from ohlora.parsing import squashed

POLICY_FILE = "writer_policy.yaml"
SPAN_CANDIDATES = 20
"""Span keys: how many of the likeliest next tokens may continue the value before it goes free."""
SPAN_MIN_RATIO = 0.01
"""...and how unlikely one may be against the likeliest (a token the model all but rules out is
no span of the message, only a character that happens to occur in it)."""


@dataclass(frozen=True)
class WriterPolicy:
    keys: tuple[str, ...] = ()
    """The schema: keys the writer may write (empty: any key, free decoding)."""
    min_store_prob: float = 0.5
    min_key_prob: float = 0.0
    span_keys: tuple[str, ...] = ()
    """Keys whose value is decoded as a span of the message (see the module's docstring)."""
    fit: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not (0 <= self.min_store_prob <= 1 and 0 <= self.min_key_prob <= 1):
            raise OhloraError("writer policy: min_store_prob and min_key_prob must be in [0, 1]")

    def save(self, directory: Path) -> Path:
        data = {**asdict(self), "keys": list(self.keys), "span_keys": list(self.span_keys)}
        path = Path(directory) / POLICY_FILE
        path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
        return path

    @classmethod
    def load(cls, directory: Path) -> "WriterPolicy":
        path = Path(directory) / POLICY_FILE
        if not path.is_file():
            return cls()
        data = read_yaml(path, "writer policy", invalid="not a valid writer policy")
        try:
            return cls(**{**data, "keys": tuple(data.get("keys", ())), "span_keys": tuple(data.get("span_keys", ()))})
        except TypeError as e:
            raise OhloraError(f"{path}: not a valid writer policy ({e})") from e


def judge(d: Decision, policy: WriterPolicy, nothing: str = "없음") -> Validated:
    """A decoded answer -> what is stored: the thresholds first, then the validation rules."""
    if d.key is None and d.text == nothing:
        return Validated(None, "nothing")
    if d.p_store < policy.min_store_prob:
        return Validated(None, "nothing")
    if d.p_key < policy.min_key_prob:
        return Validated(None, "unsure of the key")
    return validate_tag(d.text, nothing)


class OpeningTrie:
    """Token-id trie over the writer's allowed openings: the "nothing" answer and " [key:" per key."""

    def __init__(self, tokenizer, fmt: WriterFormat, keys: tuple[str, ...]):
        self.root: dict = {}
        self.ends: dict[int, str] = {}  # id(node) -> "" (nothing) or the key it completes
        nothing = tokenizer(fmt.target(None), add_special_tokens=False)["input_ids"]
        self._add(nothing, "")
        for key in keys:
            ids = tokenizer(fmt.target(f"[{key}: 값]"), add_special_tokens=False)["input_ids"]
            # the shortest prefix that decodes to " [key:" (token boundaries as in training)
            for n in range(1, len(ids) + 1):
                if tokenizer.decode(ids[:n]).strip().startswith(f"[{key}:"):
                    self._add(ids[:n], key)
                    break

    def _add(self, ids: list[int], label: str) -> None:
        node = self.root
        for t in ids:
            node = node.setdefault(t, {})
        self.ends[id(node)] = label


@dataclass
class Decision:
    text: str
    p_store: float
    p_key: float
    key: str | None


class ConstrainedWriter:
    """The writer adapter with schema-constrained openings and calibrated store decisions."""

    def __init__(self, generator, tokenizer, fmt: WriterFormat | None = None, policy: WriterPolicy | None = None):
        self.gen, self.tok = generator, tokenizer
        self.fmt = fmt or WriterFormat()
        self.policy = policy or WriterPolicy()
        self.trie = OpeningTrie(tokenizer, self.fmt, self.policy.keys) if self.policy.keys else None

    def decide(self, message: str, key: str | None = None) -> Decision:
        """Decode the answer (no thresholds applied) with its two probabilities. With `key` (one of
        the schema's), the opening is forced to " [key:" and only the value is decoded: p_store
        and p_key are still read, as the model's own view of that opening."""
        # lazy: torch loads only when this runs
        import torch

        fmt = self.fmt
        if key is not None and (self.trie is None or key not in self.policy.keys):
            raise OhloraError(f"the writer's schema has no key {key!r}")
        with self.gen.session(fmt.render(message), fmt.max_new_tokens) as s:
            vocab = s.vocab
            row_of = {int(t): i for i, t in enumerate(vocab.tolist())} if vocab is not None else None
            out: list[int] = []
            node, p_store, p_key, parted = (self.trie.root if self.trie else None), 1.0, 1.0, False
            while node is not None and id(node) not in self.trie.ends:
                probs = torch.softmax(s.logits(), -1)  # (V',) over the head
                kids = [t for t in node if row_of is None or t in row_of]
                if not kids:
                    raise OhloraError("the writer's head lacks the tokens of its own openings")
                p = probs[[row_of[t] if row_of is not None else t for t in kids]]  # (C,)
                nothing = self._leads_to(node, "")
                is_tag = torch.tensor([t not in nothing for t in kids])
                if not parted and bool(is_tag.any()) and not bool(is_tag.all()):
                    # the first step where "nothing" and the tags part: the store probability
                    p_store, parted = float(p[is_tag].sum() / p.sum()), True
                if key is None:
                    pick = int(p.argmax())
                else:  # forced: the child on the way to the key's opening
                    on_path = self._leads_to(node, key)
                    pick = next((i for i, t in enumerate(kids) if t in on_path), None)
                    if pick is None:
                        raise OhloraError(f"the writer's head lacks the tokens of the key {key!r}")
                if bool(is_tag[pick]):
                    p_key *= float(p[pick] / p[is_tag].sum())  # the key's share among the tags
                out.append(kids[pick])
                s.advance(kids[pick])
                node = node[kids[pick]]
            if node is not None:
                key = self.trie.ends[id(node)] or None
                if key is None:
                    return Decision(fmt.nothing, p_store, 1.0, None)
            opened = len(out)
            span = squashed(message) if key in self.policy.span_keys else None
            for _ in range(fmt.max_new_tokens - len(out)):  # the value: a span of the message, or freely
                logits = s.logits()
                nxt = None
                if span is not None:
                    nxt = self._span_token(logits, vocab, out[opened:], span)
                    span = span if nxt is not None else None  # no candidate fits: free from here
                if nxt is None:
                    nxt = int(logits.argmax())
                    nxt = int(vocab[nxt]) if vocab is not None else nxt
                if nxt == self.tok.eos_token_id:
                    break
                out.append(nxt)
                text = self.tok.decode(out, skip_special_tokens=True)
                if fmt.end in text or "]" in text:
                    break
                s.advance(nxt)
        text = self.tok.decode(out, skip_special_tokens=True).split(fmt.end)[0].strip()
        if "]" in text:
            text = text[:text.index("]") + 1]
        return Decision(text, p_store, p_key, key)

    def _span_token(self, logits, vocab, value: list[int], span: str) -> int | None:
        """The likeliest of the top SPAN_CANDIDATES next tokens (full ids) after the value's
        tokens `value` that keeps it a substring of `span` (the squashed message), or that
        closes it with "]" once it is not empty; None if none does."""
        # lazy: torch loads only when this runs
        import torch

        best, top = torch.topk(logits, min(SPAN_CANDIDATES, logits.shape[-1]))
        floor = float(best[0]) + math.log(SPAN_MIN_RATIO)
        for score, row in zip(best.tolist(), top.tolist()):
            t = int(vocab[row]) if vocab is not None else row
            if score < floor:
                break
            if t == self.tok.eos_token_id:
                continue
            text = self.tok.decode(value + [t], skip_special_tokens=True)
            # a byte token of a rare character decodes to U+FFFD until the character is whole
            pending = text.endswith("\ufffd")
            text = text.rstrip("\ufffd")
            if "\ufffd" in text:
                continue
            if "]" in text:  # closes the value: not empty, and nothing but spaces may end it early
                head = text.split("]")[0]
                if squashed(head) and not pending and self.fmt.end not in head and squashed(head) in span:
                    return t
                continue
            if self.fmt.end not in text and squashed(text) in span:
                if not text[len(text.rstrip()):] or not self.tok.decode(value)[-1:].isspace():
                    return t  # a bare space keeps the span, once
        return None

    def _leads_to(self, node: dict, label: str) -> set[int]:
        """Children of `node` from which an opening with `label` can be reached."""
        def reaches(n: dict) -> bool:
            return self.trie.ends.get(id(n)) == label or any(reaches(c) for c in n.values())
        return {t for t, c in node.items() if reaches(c)}

    def judge(self, d: Decision) -> Validated:
        return judge(d, self.policy, self.fmt.nothing)

    def write(self, message: str, chat_tag=None) -> WriteResult:
        t = time.perf_counter()
        d = self.decide(message)
        v = self.judge(d)
        return WriteResult(v.tag, v.reason, d.text, 1000 * (time.perf_counter() - t))
