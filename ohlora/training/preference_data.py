"""Preference data for the chat adapter: prompts -> sampled candidates -> judgments -> pairs.

1. `sample_candidates`: the adapter answers each prompt `n` times (sampled, batched HF generate;
   the prompt is rendered exactly as the chat and SFT render it: persona facts, summary,
   history, memory, message).
2. A judge (a person, or a helper working from `docs/review/rubric.md`) reads the candidates and
   writes, per prompt, a verdict per candidate ("good" / "bad") and, when none is good, a
   corrected `reference` answer.
3. `build_pairs`: chosen = a good candidate (or the reference), rejected = a bad one; every pair
   keeps its prompt fields so the trainer renders it the same way.

Files are JSON lines. Prompt: {"id", "message", "history": [{"user", "answer"}], "memory", "summary"}.
Candidates: the prompt + {"candidates": [text, ...]}. Judgment: {"id", "verdicts": ["good"|"bad"],
"reference": text or "", "reasons": [...]} . Pair: the prompt + {"chosen", "rejected", "source"}.
Texts are answers without the stop phrase (a memory tag may lead, as the adapter writes it).
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

from tqdm import tqdm

from ohlora.datasets.jsonlines import read_jsonl
from ohlora.datasets.prompts import PrefPrompt, prompt_from, read_prompts
from ohlora.errors import OhloraError
from ohlora.models import load_adapter, load_base, resolve_base, set_cpu_threads, shipped_adapter
from ohlora.decoding.head import load_head_vocab
from ohlora.parsing import cut_at_stop, parse_answer, split_tag
from ohlora.persona import PersonaCard
from ohlora.prompt import PromptFormat

VERDICTS = ("good", "bad")


def head_mask_processor(vocab: list[int] | None):
    """A logits processor that keeps only the adapter's restricted head (`head_vocab.json`), as
    the chat's decoder does; None without one."""
    # lazy: torch, transformers load only when this runs
    import torch
    from transformers import LogitsProcessor

    if not vocab:
        return None

    class HeadMask(LogitsProcessor):
        def __init__(self):
            self.allowed = torch.tensor(sorted(vocab), dtype=torch.long)
            self.mask = None

        def __call__(self, input_ids, scores):  # scores: (B, V)
            if self.mask is None or self.mask.shape[0] != scores.shape[1]:
                self.mask = torch.full((scores.shape[1],), float("-inf"))
                self.mask[self.allowed[self.allowed < scores.shape[1]]] = 0.0
            return scores + self.mask

    return HeadMask()


def sample_candidates(model, tokenizer, fmt, card, prompts: list[PrefPrompt], n: int = 4, temperature: float = 0.7,
                      max_new_tokens: int = 60, batch_size: int = 8, seed: int = 0, progress=None,
                      head_vocab: list[int] | None = None, top_k: int = 50) -> list[list[str]]:
    """`n` sampled answers per prompt (stop phrase and anything after it cut off), decoded as the
    chat decodes: the adapter's restricted head (`head_vocab`), top-k sampling."""
    # lazy: torch, transformers load only when this runs
    import torch
    from transformers import LogitsProcessorList

    tokenizer.padding_side = "left"
    out: list[list[str]] = []
    torch.manual_seed(seed)
    per = max(1, batch_size // n)  # prompts per generate call; each gives n sequences
    for start in range(0, len(prompts), per):
        chunk = prompts[start:start + per]
        texts = [p.row().prompt(fmt, card) for p in chunk]
        enc = tokenizer(texts, return_tensors="pt", padding=True)
        mask = head_mask_processor(head_vocab)
        with torch.no_grad():
            gen = model.generate(**enc, do_sample=True, temperature=temperature, top_p=1.0, top_k=top_k,
                                 max_new_tokens=max_new_tokens, num_return_sequences=n,
                                 stop_strings=[fmt.stop_phrase], tokenizer=tokenizer,
                                 pad_token_id=tokenizer.pad_token_id,
                                 logits_processor=LogitsProcessorList([mask] if mask else []))
        new = gen[:, enc["input_ids"].shape[1]:]  # (len(chunk) * n, <= max_new_tokens)
        decoded = tokenizer.batch_decode(new, skip_special_tokens=True)
        for i in range(len(chunk)):
            out.append([cut_answer(t, fmt.stop_phrase) for t in decoded[i * n:(i + 1) * n]])
        if progress:
            progress(len(chunk))
    return out


def cut_answer(text: str, stop_phrase: str) -> str:
    """The answer up to the stop phrase (or a half-written one at the end), as the chat cuts it."""
    return cut_at_stop(text, stop_phrase)[0].strip()


def read_judgments(path, prompts_by_id: dict[str, list[str]]) -> dict[str, dict]:
    """id -> judgment, checked against the candidates it judges (one verdict per candidate)."""
    out = {}
    for i, j in enumerate(read_jsonl(path), 1):
        where = f"{path} line {i}"
        pid = str(j.get("id"))
        if pid not in prompts_by_id:
            raise OhloraError(f"{where}: no candidates for id {pid!r}")
        verdicts = [str(v).strip().lower() for v in j.get("verdicts", [])]
        if len(verdicts) != len(prompts_by_id[pid]) or any(v not in VERDICTS for v in verdicts):
            raise OhloraError(f"{where}: needs one verdict (good/bad) per candidate ({len(prompts_by_id[pid])})")
        if pid in out:
            raise OhloraError(f"{where}: id {pid} is judged twice")
        out[pid] = {**j, "verdicts": verdicts, "reference": (j.get("reference") or "").strip()}
    return out


def with_tag_of(reference: str, candidate: str) -> str:
    """A corrected reference keeps the memory tag the adapter led its candidate with (the
    reference judges the answer, not whether something was worth storing)."""
    tag, _ = split_tag(candidate)
    ref_tag, _ = split_tag(reference)
    return f"{tag.text} {reference}" if tag and not ref_tag else reference


def build_pairs(rows: list[dict], judgments: dict[str, dict], max_per_prompt: int = 3, seed: int = 0,
                stop_phrase: str = "(답변 종료)") -> list[dict]:
    """(prompt, chosen, rejected) rows: every good candidate (or the reference) against every bad
    one, at most `max_per_prompt` per prompt (seeded choice); a prompt with no bad candidate
    gives none."""
    rng = random.Random(seed)
    pairs = []
    for row in rows:
        j = judgments.get(str(row["id"]))
        if j is None:
            continue
        cands = row["candidates"]
        bad = [c for c, v in zip(cands, j["verdicts"]) if v == "bad"]
        good = [c for c, v in zip(cands, j["verdicts"]) if v == "good"]
        if not good and j["reference"]:
            good = [with_tag_of(j["reference"], bad[0] if bad else "")]
            source = "reference"
        else:
            source = "judged"
        combos = list(dict.fromkeys((g, b) for g in good for b in bad if g.strip() != b.strip()))
        rng.shuffle(combos)
        prompt = {k: v for k, v in row.items() if k != "candidates"}
        for g, b in combos[:max_per_prompt]:
            if parse_answer(f"{g} {stop_phrase}", stop_phrase).message.strip():
                pairs.append({**prompt, "chosen": g, "rejected": b, "source": source})
    return pairs


def log_progress(total: int, label: str):
    """A tqdm bar on stderr; returns its update function."""
    bar = tqdm(total=total, desc=label, file=sys.stderr)
    return bar.update


def run_sample_answers(base: str, adapter: str, prompts_file, output, n: int = 4, temperature: float = 0.7,
                       max_new_tokens: int = 60, batch_size: int = 8, seed: int = 0, threads: int = 0) -> int:
    """`ohlora data sample-answers`: writes the candidates JSONL; returns how many prompts."""
    prompts = read_prompts(prompts_file)
    spec = resolve_base(base)
    start = shipped_adapter(spec.name) if adapter == "default" else Path(adapter).expanduser()
    if start is None or not (Path(start) / "adapter_config.json").is_file():
        raise OhloraError(f"adapter {adapter!r} is not an adapter directory")
    set_cpu_threads(threads or None)
    fmt, card = PromptFormat.load(Path(start)), PersonaCard.load(Path(start) / "persona.yaml")
    model, tok = load_base(spec, device="cpu")
    model = load_adapter(model, Path(start))
    cands = sample_candidates(model, tok, fmt, card, prompts, n, temperature, max_new_tokens, batch_size, seed,
                              progress=log_progress(len(prompts), "sample answers"),
                              head_vocab=load_head_vocab(Path(start)))
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    with Path(output).open("w", encoding="utf-8") as f:
        for p, c in zip(prompts, cands):
            f.write(json.dumps({**p.as_dict(), "candidates": c}, ensure_ascii=False) + "\n")
    return len(prompts)


def read_candidates(path) -> list[dict]:
    """The rows of a candidates JSONL (`data sample-answers`), each checked with a one-line error."""
    rows = read_jsonl(path)
    for i, r in enumerate(rows, 1):
        if not isinstance(r, dict):
            raise OhloraError(f"{path} line {i}: not a JSON object")
        prompt_from(r, f"{path} line {i}")
        if not isinstance(r.get("candidates"), list) or not r["candidates"] \
                or not all(isinstance(c, str) for c in r["candidates"]):
            raise OhloraError(f"{path} line {i}: needs a list of candidate answers")
    return rows


def run_build_pairs(candidates_file, judgments_file, output, max_per_prompt: int = 3, seed: int = 0) -> dict:
    """`ohlora data pairs`: writes the pairs JSONL; returns counts."""
    rows = read_candidates(candidates_file)
    judgments = read_judgments(judgments_file, {str(r["id"]): r["candidates"] for r in rows})
    pairs = build_pairs(rows, judgments, max_per_prompt, seed)
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    Path(output).write_text("".join(json.dumps(p, ensure_ascii=False) + "\n" for p in pairs), encoding="utf-8")
    verdicts = [v for j in judgments.values() for v in j["verdicts"]]
    return {"prompts": len(rows), "judged": len(judgments), "candidates": len(verdicts),
            "good": verdicts.count("good"), "pairs": len(pairs),
            "from_reference": sum(p["source"] == "reference" for p in pairs)}
