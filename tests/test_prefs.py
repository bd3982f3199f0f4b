"""Preference tuning: pairs from judged candidates, the DPO loss, the answer-only log-probs against
the full-logits path, sampling and a short training run on a tiny random model."""

from __future__ import annotations

import json
import math

import numpy as np

import pytest

from ohlora.errors import OhloraError
from ohlora.training.preference_data import build_pairs, read_judgments, run_build_pairs, with_tag_of

ROW = {"id": "p1", "message": "오늘 점심 뭐 먹지", "history": [], "memory": "[싫어하는 음식: 오이]", "summary": "",
       "candidates": ["[기분: 배고픔] 오이냉국 어때?", "김밥 어때? 오이는 빼고! 😊", "나 가상 인간이라 못 먹어", "비빔밥 추천!"]}


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def test_pairs_put_good_candidates_against_bad_ones():
    j = {"p1": {"verdicts": ["bad", "good", "bad", "good"], "reference": ""}}
    pairs = build_pairs([ROW], j, max_per_prompt=10)
    assert len(pairs) == 4 and {p["source"] for p in pairs} == {"judged"}
    assert {(p["chosen"], p["rejected"]) for p in pairs} == {(g, b) for g in ROW["candidates"][1::2]
                                                            for b in ROW["candidates"][0::2]}
    assert pairs[0]["memory"] == "[싫어하는 음식: 오이]" and "candidates" not in pairs[0]
    assert len(build_pairs([ROW], j, max_per_prompt=3)) == 3


def test_with_no_good_candidate_the_reference_is_chosen_and_keeps_the_tag():
    j = {"p1": {"verdicts": ["bad"] * 4, "reference": "오이 싫어했잖아! 김밥은 어때?"}}
    pairs = build_pairs([ROW], j, max_per_prompt=10)
    assert len(pairs) == 4 and all(p["source"] == "reference" for p in pairs)
    assert pairs[0]["chosen"] == "[기분: 배고픔] 오이 싫어했잖아! 김밥은 어때?"  # the first bad one's tag
    assert with_tag_of("[상태: 배고픔] 응", "[기분: x] 아") == "[상태: 배고픔] 응"
    assert build_pairs([ROW], {"p1": {"verdicts": ["good"] * 4, "reference": ""}}) == []  # nothing to reject


def test_judgments_are_checked_against_the_candidates(tmp_path):
    cands = {"p1": ROW["candidates"]}
    with pytest.raises(OhloraError, match="one verdict .* per candidate"):
        read_judgments(write_jsonl(tmp_path / "j.jsonl", [{"id": "p1", "verdicts": ["good"]}]), cands)
    with pytest.raises(OhloraError, match="no candidates for id"):
        read_judgments(write_jsonl(tmp_path / "j.jsonl", [{"id": "zz", "verdicts": []}]), cands)
    with pytest.raises(OhloraError, match="judged twice"):
        read_judgments(write_jsonl(tmp_path / "j.jsonl", [{"id": "p1", "verdicts": ["bad"] * 4}] * 2), cands)
    c = run_build_pairs(write_jsonl(tmp_path / "c.jsonl", [ROW]),
                        write_jsonl(tmp_path / "j.jsonl", [{"id": "p1", "verdicts": ["bad", "good", "bad", "bad"]}]),
                        tmp_path / "out" / "pairs.jsonl")
    assert c == {"prompts": 1, "judged": 1, "candidates": 4, "good": 1, "pairs": 3, "from_reference": 0}
    assert len((tmp_path / "out" / "pairs.jsonl").read_text(encoding="utf-8").splitlines()) == 3


def test_dpo_loss_is_log2_at_the_reference_and_falls_as_chosen_gains():
    import torch

    from ohlora.training.preference import dpo_loss

    ref = torch.tensor([-10.0, -12.0, -11.0, -9.0])  # chosen (2), then rejected (2)
    counts = torch.tensor([5, 6, 5, 4])
    loss, margin = dpo_loss(ref.clone(), ref, counts, beta=0.1, nll_weight=0.0)
    assert loss.item() == pytest.approx(math.log(2)) and margin.tolist() == [0.0, 0.0]
    better = ref + torch.tensor([2.0, 2.0, -2.0, -2.0])
    assert dpo_loss(better, ref, counts, 0.1, 0.0)[0].item() < math.log(2)
    with_nll, _ = dpo_loss(ref.clone(), ref, counts, 0.1, 1.0)
    assert with_nll.item() == pytest.approx(math.log(2) + (10 / 5 + 12 / 6) / 2)


@pytest.fixture
def chat_adapter(tmp_path, tiny_model_dir):
    from test_train_llm import ROWS, write_csv

    from ohlora.training.llm import train_llm
    from ohlora.training.llm_config import load_train_config

    cfg = load_train_config(base=str(tiny_model_dir), train_file=str(write_csv(tmp_path / "t.csv", ROWS)),
                            valid_file=str(write_csv(tmp_path / "v.csv", ROWS[:2])), output=str(tmp_path / "chat"),
                            epochs=1, batch_size=2, learning_rate=5e-3, lora_rank=4, lora_alpha=8,
                            lora_targets=("q_proj", "v_proj"), sample_prompts=0, threads=1, dialogues_file="none")
    return train_llm(cfg)


PAIRS = [{"id": f"q{i}", "message": m, "history": [], "memory": "", "summary": "", "chosen": c, "rejected": r}
         for i, (m, c, r) in enumerate([("안녕", "안녕! 반가워 😊", "몰라"), ("뭐해?", "음악 듣고 있어 🎵", "몰라"),
                                        ("배고파", "마라탕 먹자!", "몰라"), ("심심해", "같이 수다 떨자!", "몰라")])]


def test_answer_only_logps_match_the_full_logits(tiny_model_dir):
    import torch

    from ohlora.decoding.head import lm_head_of
    from ohlora.models import load_base, resolve_base
    from ohlora.persona import PersonaCard
    from ohlora.prompt import PromptFormat
    from ohlora.training.preference import encode_pair, pair_batch, sequence_logps
    from ohlora.training.sft_batches import IGNORE

    model, tok = load_base(resolve_base(str(tiny_model_dir)), device="cpu")
    feats = [encode_pair(p, tok, PromptFormat(), PersonaCard.load(), 128) for p in PAIRS[:2]]
    batch = pair_batch(feats, tok.pad_token_id)  # (4, T): chosen, chosen, rejected, rejected
    head, softcap = lm_head_of(model)
    with torch.no_grad():
        got, counts = sequence_logps(model, batch, head, softcap)
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
        target = batch["labels"][:, 1:]
        lp = torch.log_softmax(logits.float(), -1).gather(-1, target.clamp(min=0)[..., None])[..., 0]
        want = (lp * (target != IGNORE)).sum(1)
    assert torch.allclose(got, want, atol=1e-4) and counts.tolist() == (target != IGNORE).sum(1).tolist()


def test_preference_training_moves_the_adapter_toward_the_chosen_answers(tmp_path, chat_adapter, tiny_model_dir):
    import torch

    from ohlora.decoding.head import lm_head_of
    from ohlora.models import load_adapter, load_base, resolve_base
    from ohlora.persona import PersonaCard
    from ohlora.prompt import PromptFormat
    from ohlora.training.preference import encode_pair, load_pref_config, pair_batch, sequence_logps, train_prefs

    pairs = write_jsonl(tmp_path / "pairs.jsonl", PAIRS)
    cfg = load_pref_config(base=str(tiny_model_dir), adapter=str(chat_adapter), pairs_file=str(pairs),
                           output=str(tmp_path / "prefs"), epochs=6, batch_size=2, learning_rate=5e-3, threads=1,
                           warmup_ratio=0.0)
    out = train_prefs(cfg, log=lambda m: None)
    assert (out / "adapter_config.json").is_file() and (out / "prompt_format.yaml").is_file()
    log = (out / "prefs_log.csv").read_text(encoding="utf-8").splitlines()
    steps = len(log) - 1  # 6 epochs of batches within one persona prefix (the rows' ages differ)
    assert log[0] == "step,loss,reward_margin,accuracy,elapsed_s" and steps >= 12 and steps % 6 == 0

    def margins(adapter):
        model, tok = load_base(resolve_base(str(tiny_model_dir)), device="cpu")
        model = load_adapter(model, adapter)
        feats = [encode_pair(p, tok, PromptFormat.load(adapter), PersonaCard.load(), 256) for p in PAIRS]
        with torch.no_grad():
            lp, _ = sequence_logps(model, pair_batch(feats, tok.pad_token_id), *lm_head_of(model))
        return lp[:4] - lp[4:]  # chosen - rejected, per pair

    assert (margins(out) - margins(chat_adapter)).mean() > 0.5
    with pytest.raises(OhloraError, match="not empty"):
        train_prefs(cfg, log=lambda m: None)


def test_sampling_gives_n_answers_per_prompt(tmp_path, chat_adapter):
    from ohlora.training.preference_data import run_sample_answers

    prompts = write_jsonl(tmp_path / "p.jsonl", [{k: v for k, v in p.items() if k not in ("chosen", "rejected")}
                                                 for p in PAIRS[:3]])
    out = tmp_path / "c.jsonl"
    base = json.loads((chat_adapter / "adapter_config.json").read_text())["base_model_name_or_path"]
    assert run_sample_answers(base, str(chat_adapter), prompts, out, n=2, max_new_tokens=8, batch_size=4) == 3
    rows = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in rows] == ["q0", "q1", "q2"] and all(len(r["candidates"]) == 2 for r in rows)
    assert all("(답변 종료)" not in c for r in rows for c in r["candidates"])


def test_the_answer_scorer_learns_the_judge_and_reports_best_of_n(tmp_path):
    from conftest import KeywordEncoder

    from ohlora.training.answer_scorer import auc, best_of_n, train_scorer

    rows, judged = [], []
    for i in range(40):  # good answers say 괜찮아, bad ones 몰라; candidate order varies
        cands = ["괜찮아 힘내 😊", "몰라", "몰라 몰라", "괜찮아!"][i % 4:] + ["괜찮아 힘내 😊", "몰라", "몰라 몰라", "괜찮아!"][:i % 4]
        rows.append({"id": str(i), "message": f"오늘 힘들어 {i}", "history": [], "candidates": cands})
        judged.append({"id": str(i), "verdicts": ["good" if "괜찮아" in c else "bad" for c in cands], "reference": ""})
    enc = KeywordEncoder([["괜찮아"], ["몰라"]])
    r = train_scorer(write_jsonl(tmp_path / "c.jsonl", rows), write_jsonl(tmp_path / "j.jsonl", judged),
                     tmp_path / "scorer", encoder=enc, log=lambda m: None)
    assert r["test_auc"] == 1.0 and r["best_of_n_good"] == 1.0 and r["random_good"] == 0.5
    assert (tmp_path / "scorer" / "scorer.json").is_file()
    assert auc(np.array([0.9, 0.1]), np.array([1, 0])) == 1.0 and math.isnan(auc(np.array([0.3]), np.array([1])))
    b = best_of_n([(np.array([0.2, 0.8]), np.array([1, 0])), (np.array([0.9, 0.1]), np.array([1, 0]))])
    assert (b["best_of_n_good"], b["random_good"], b["oracle_good"]) == (0.5, 0.5, 1.0)


def test_a_shared_prefix_gives_the_same_logps_and_gradients(tiny_model_dir):
    import torch
    from peft import LoraConfig

    from ohlora.decoding.head import lm_head_of
    from ohlora.models import add_lora, load_base, resolve_base
    from ohlora.persona import PersonaCard
    from ohlora.prompt import PromptFormat
    from ohlora.training.preference import encode_pair, pair_batch, pair_logps, sequence_logps

    model, tok = load_base(resolve_base(str(tiny_model_dir)), device="cpu")
    model = add_lora(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], lora_dropout=0.0))
    torch.manual_seed(1)
    for n, p in model.named_parameters():
        if "lora_B" in n:
            p.data.normal_(0, 0.1)  # a trained-looking adapter, so its gradients reach the prefix
    fmt, card = PromptFormat(persona_template="({facts})\n"), PersonaCard.load()
    more = [{**PAIRS[0], "id": f"x{i}", "message": m} for i, m in enumerate(["좋은 아침", "잘 자"])]
    feats = [encode_pair(p, tok, fmt, card, 256) for p in PAIRS + more]  # 6 rows, at most 4 ages: 2 share one
    groups = {}
    for f in feats:
        groups.setdefault(f["prefix"], []).append(f)
    group = max(groups.values(), key=len)
    assert group[0]["prefix"] and len(group[0]["prefix"]) > 20  # the persona section
    head, softcap = lm_head_of(model)

    def run(shared):
        model.zero_grad()
        if shared:
            lp, counts = pair_logps(model, group, tok.pad_token_id, head, softcap)
        else:
            lp, counts = sequence_logps(model, pair_batch(group, tok.pad_token_id), head, softcap)
        lp.sum().backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
        return lp.detach(), counts, grads

    a, ca, ga = run(False)
    b, cb, gb = run(True)
    assert torch.allclose(a, b, atol=1e-4) and ca.tolist() == cb.tolist()
    assert all(torch.allclose(ga[n], gb[n], atol=1e-4) for n in ga)
    assert any(ga[n].abs().sum() > 0 for n in ga)


def test_bad_pairs_are_one_line_errors_before_anything_is_moved(tmp_path, tiny_model_dir):
    from ohlora.training.preference import load_pref_config, read_pairs, train_prefs

    with pytest.raises(OhloraError, match="no preference pairs at"):
        read_pairs(tmp_path / "none.jsonl")
    with pytest.raises(OhloraError, match="line 2: needs a chosen and a rejected"):
        read_pairs(write_jsonl(tmp_path / "p.jsonl", [PAIRS[0], {**PAIRS[1], "rejected": ""}]))
    with pytest.raises(OhloraError, match="line 1: needs an id and a message"):
        read_pairs(write_jsonl(tmp_path / "p.jsonl", [{"chosen": "a", "rejected": "b"}]))
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("x", encoding="utf-8")
    (tmp_path / "ad").mkdir()
    (tmp_path / "ad" / "adapter_config.json").write_text("{}", encoding="utf-8")
    cfg = load_pref_config(base=str(tiny_model_dir), adapter=str(tmp_path / "ad"),
                           pairs_file=str(tmp_path / "none.jsonl"), output=str(out))
    with pytest.raises(OhloraError, match="no preference pairs"):
        train_prefs(cfg, overwrite=True, log=lambda m: None)
    assert (out / "keep.txt").is_file()  # nothing moved aside for a run that could not start


def test_a_part_epoch_computes_the_reference_of_the_pairs_it_trains_only(tmp_path, chat_adapter, tiny_model_dir):
    from ohlora.training.preference import load_pref_config, train_prefs

    pairs = write_jsonl(tmp_path / "pairs.jsonl", PAIRS)
    cfg = load_pref_config(base=str(tiny_model_dir), adapter=str(chat_adapter), pairs_file=str(pairs),
                           output=str(tmp_path / "prefs"), epochs=0.5, batch_size=2, threads=1)
    said: list[str] = []
    out = train_prefs(cfg, log=said.append)
    steps = len((out / "prefs_log.csv").read_text(encoding="utf-8").splitlines()) - 1
    # the 4 pairs make 3 batches (one persona prefix each: 2 + 1 + 1), so half an epoch is 2 steps
    assert steps == 2 and any(m.startswith("reference log-probs of the 3 of 4 pairs that train") for m in said), said
