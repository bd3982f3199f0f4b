"""LoRA SFT on a tiny random Gemma 3: files written, base frozen, adapter moved, resume, loss paths agree."""

import csv

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

from ohlora.datasets.sft import SFTRow
from ohlora.errors import OhloraError
from ohlora.models import load_adapter, load_base, resolve_base
from ohlora.persona import PersonaCard
from ohlora.prompt import PromptFormat
from ohlora.training.llm import train_llm
from ohlora.training.llm_config import load_train_config
from ohlora.training.losses import answer_only_loss, check_answer_only_path, full_logits_loss, lm_head_of
from ohlora.training.sft_batches import IGNORE, collate, encode_row

ROWS = [
    ("안녕", "안녕! 나는 오로라야 😊", "", "", "persona"),
    ("나 내일 면접 있어", "[내일 일정: 면접] 잘할 거야 💪", "", "2026-11-25", "memory"),
    ("오늘 비 온다", "[오늘 날씨: 비] 우산 챙겨", "", "2026-11-25", "memory"),
    ("나 떨려", "면접 때문에 떨리는구나", "[내일 일정: 면접]", "", "recall"),
    ("좋아하는 음식은?", "마라탕 좋아해!", "", "", "persona"),
    ("바보야", "그런 말은 하지 마", "", "", "rude"),
]


def write_csv(path, rows):
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["input", "output", "memory", "today", "category"])
        w.writerows(rows)
    return path


@pytest.fixture
def tiny_cfg(tmp_path, tiny_model_dir):
    return dict(base=str(tiny_model_dir), train_file=str(write_csv(tmp_path / "t.csv", ROWS)),
                valid_file=str(write_csv(tmp_path / "v.csv", ROWS[:2])), output=str(tmp_path / "adapter"),
                epochs=2, batch_size=2, learning_rate=5e-3, lora_rank=4, lora_alpha=8,
                lora_targets=("q_proj", "v_proj"), sample_prompts=2, threads=1,
                dialogues_file=str(write_dialogues(tmp_path / "d.jsonl")))


def write_dialogues(path):
    import json

    d = {"id": "d1", "turns": [{"user": "나 요즘 떡볶이에 빠졌어", "answer": "떡볶이 최고지!"},
                               {"user": "그거 어디가 맛있어?", "answer": "신당동 어때?"}]}
    path.write_text(json.dumps(d, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def test_encode_row_masks_the_prompt_and_ends_with_stop_phrase_and_eos(tiny_model_dir):
    _, tok = load_base(resolve_base(str(tiny_model_dir)), device="cpu")
    fmt, card = PromptFormat(), PersonaCard.load()
    row = SFTRow(2, "나 내일 면접 있어", "[내일 일정: 면접] 잘할 거야", "", "2026-11-25", "memory")
    f = encode_row(row, tok, fmt, card, 256)
    n_prompt = sum(1 for x in f["labels"] if x == IGNORE)
    assert tok.decode(f["input_ids"][:n_prompt], skip_special_tokens=True) == row.prompt(fmt, card)
    assert "(오늘: 2026년 11월 25일 수요일, 오로라 23살)" in row.prompt(fmt, card)
    answer = f["labels"][n_prompt:]
    assert answer[-1] == tok.eos_token_id
    assert tok.decode(answer, skip_special_tokens=True) == "[내일 일정: 면접] 잘할 거야 (답변 종료)"
    assert encode_row(row, tok, fmt, card, n_prompt) is None  # no answer token left: skipped


def test_answer_only_loss_equals_full_logits_loss(tiny_model_dir):
    model, tok = load_base(resolve_base(str(tiny_model_dir)), device="cpu")
    fmt, card = PromptFormat(), PersonaCard.load()
    feats = [encode_row(SFTRow(i, *r), tok, fmt, card, 256) for i, r in enumerate(ROWS)]
    batch = collate(feats, tok.pad_token_id)
    assert check_answer_only_path(model, batch) < 1e-5
    head, softcap = lm_head_of(model)
    # gradients agree too
    model.zero_grad()
    full_logits_loss(model, batch).backward()
    g_full = model.model.layers[0].self_attn.q_proj.weight.grad.clone()
    model.zero_grad()
    answer_only_loss(model, batch, head, softcap).backward()
    assert torch.allclose(g_full, model.model.layers[0].self_attn.q_proj.weight.grad, atol=1e-6)


class InterruptAfterFirstEpoch(TrainerCallback):
    def on_save(self, args, state, control, **kw):
        raise KeyboardInterrupt


def test_train_writes_adapter_and_resumes_after_interrupt(tiny_cfg, tiny_model_dir, tmp_path):
    cfg = load_train_config(**tiny_cfg)
    with pytest.raises(OhloraError, match="--resume"):
        train_llm(cfg, extra_callbacks=[InterruptAfterFirstEpoch()])
    out = tmp_path / "adapter"
    assert list((out / "checkpoints").glob("checkpoint-*"))
    with pytest.raises(OhloraError, match="already holds"):
        train_llm(cfg)  # never silently overwrite a run
    train_llm(cfg, resume=True)
    for name in ["adapter_config.json", "adapter_model.safetensors", "prompt_format.yaml", "persona.yaml",
                 "train_log.csv", "loss.png", "samples.txt", "train_config.yaml", "head_vocab.json"]:
        assert (out / name).exists(), name
    assert not (out / "checkpoints").exists()
    log = list(csv.DictReader((out / "train_log.csv").open(encoding="utf-8")))
    assert {round(float(r["epoch"])) for r in log if r["eval_loss"]} == {1, 2}  # epoch 1 kept, epoch 2 resumed
    weights = load_file(out / "adapter_model.safetensors")
    assert any("lora_B" in k and v.abs().sum() > 0 for k, v in weights.items())  # the adapter moved
    # the base weights did not move, and the adapter loads with its prompt format
    base, _ = load_base(resolve_base(str(tiny_model_dir)), device="cpu")
    fresh, _ = load_base(resolve_base(str(tiny_model_dir)), device="cpu")
    assert torch.equal(base.model.layers[0].self_attn.q_proj.weight, fresh.model.layers[0].self_attn.q_proj.weight)
    peft_model = load_adapter(base, out)
    assert PromptFormat.load(out) == PromptFormat(persona_template="({facts})\n")  # saved as trained
    assert peft_model.active_adapter == "chat"


class InterruptAtStep(TrainerCallback):
    """Ctrl-C in the middle of an epoch: right after optimizer step `step`, before its checkpoint."""

    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, **kw):
        if state.global_step == self.step:
            raise KeyboardInterrupt


def test_interrupt_mid_epoch_resumes_from_the_last_step_checkpoint(tiny_cfg, tmp_path):
    cfg = load_train_config(**{**tiny_cfg, "save_steps": 2, "sample_prompts": 0})  # 3 steps per epoch
    with pytest.raises(OhloraError) as e:
        train_llm(cfg, extra_callbacks=[InterruptAtStep(3)])  # before epoch 1 ends
    out = tmp_path / "adapter"
    assert str(e.value) == (f"interrupted at step 3: the last checkpoint (step 2) is in {out / 'checkpoints'}; "
                            "run the same command with --resume to continue from it")
    with pytest.raises(OhloraError, match=r"unfinished run \(last checkpoint: step 2\): pass --resume"):
        train_llm(cfg)
    with pytest.raises(OhloraError, match=r"interrupted at step 6: the last checkpoint \(step 4\)"):
        train_llm(cfg, resume=True, extra_callbacks=[InterruptAtStep(6)])  # after step 5 was logged
    train_llm(cfg, resume=True)
    assert (out / "adapter_config.json").exists() and not (out / "checkpoints").exists()
    log = list(csv.DictReader((out / "train_log.csv").open(encoding="utf-8")))
    assert [int(r["step"]) for r in log if r["loss"]] == [1, 5]  # step 5 ran twice, is logged once
    assert {round(float(r["epoch"])) for r in log if r["eval_loss"]} == {1, 2}


def test_interrupt_before_the_first_checkpoint_says_overwrite_everywhere(tiny_cfg, tmp_path):
    cfg = load_train_config(**{**tiny_cfg, "epochs": 1, "sample_prompts": 0})  # no checkpoint before step 3
    with pytest.raises(OhloraError) as e:
        train_llm(cfg, extra_callbacks=[InterruptAtStep(1)])
    assert "interrupted at step 1, before the first checkpoint" in str(e.value)
    assert "nothing to resume; run the same command with --overwrite to start again" in str(e.value)
    with pytest.raises(OhloraError, match="the run stopped before its first checkpoint; run the same command "
                                          "with --overwrite instead of --resume"):
        train_llm(cfg, resume=True)
    with pytest.raises(OhloraError, match="unfinished run with no checkpoint: pass --overwrite"):
        train_llm(cfg)
    train_llm(cfg, overwrite=True)
    assert (tmp_path / "adapter" / "adapter_config.json").exists()
    with pytest.raises(OhloraError, match="nothing to resume .* finished adapter; pass --overwrite"):
        train_llm(cfg, resume=True)


def test_wrapping_a_model_with_lora_gives_no_deprecation_warning(tiny_model_dir, tmp_path):
    """peft reads transformers' deprecated `is_gradient_checkpointing` whenever it wraps a model."""
    import warnings

    from peft import LoraConfig, get_peft_model

    from ohlora.models import add_lora

    lora = LoraConfig(r=2, target_modules=["q_proj"], task_type="CAUSAL_LM")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        get_peft_model(load_base(resolve_base(str(tiny_model_dir)), device="cpu")[0], lora)
    assert any("is_gradient_checkpointing" in str(w.message) for w in caught)  # the test can see it
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        add_lora(load_base(resolve_base(str(tiny_model_dir)), device="cpu")[0], lora).save_pretrained(tmp_path / "a")
        load_adapter(load_base(resolve_base(str(tiny_model_dir)), device="cpu")[0], tmp_path / "a")
    assert [str(w.message) for w in caught if issubclass(w.category, FutureWarning)] == []


def test_overwrite_moves_the_old_adapter_aside(tiny_cfg, tmp_path):
    cfg = load_train_config(**{**tiny_cfg, "epochs": 1, "sample_prompts": 0})
    train_llm(cfg)
    train_llm(cfg, overwrite=True)
    assert len(list(tmp_path.glob("adapter.old-*"))) == 1 and (tmp_path / "adapter" / "adapter_config.json").exists()


def test_presets_and_layering(tmp_path):
    c = load_train_config(base="polyglot-ko-1.3b")
    assert (c.lora_rank, c.lora_alpha, c.lora_dropout, c.epochs, c.learning_rate, c.batch_size) == \
        (128, 16, 0.05, 80, 2e-4, 4)
    assert c.resolved().lora_targets == ("query_key_value",)
    p = tmp_path / "t.yaml"
    p.write_text("train_llm:\n  epochs: 5\n  lora_rank: 8\n")
    c = load_train_config(p, base="polyglot-ko-1.3b", lora_rank=32)
    assert (c.epochs, c.lora_rank, c.learning_rate) == (5, 32, 2e-4)
    with pytest.raises(OhloraError, match="unknown settings"):
        p.write_text("epoch: 5\n")
        load_train_config(p)


def test_bench_train_prints_and_writes_its_table(tiny_model_dir, tmp_path):
    import json

    from click.testing import CliRunner

    from ohlora.cli import main

    r = CliRunner().invoke(main, ["bench", "train", "--base", str(tiny_model_dir), "--steps", "2", "--batch-size", "2",
                                  "--threads", "1", "--json", "-o", str(tmp_path / "train.md")])
    assert r.exit_code == 0, r.output
    result = json.loads(r.output.strip().splitlines()[-1])
    assert set(result) == {"baseline_s", "ohlora_s", "ratio"} and result["ratio"] > 0
    table = (tmp_path / "train.md").read_text(encoding="utf-8")
    assert "| baseline: full logits, random batches |" in table and "max loss difference" in table


def test_dialogue_rows_carry_their_history_and_the_persona_facts(tmp_path):
    import json

    from ohlora.datasets.sft import load_dialogue_rows
    from ohlora.persona import PersonaCard

    f = tmp_path / "d.jsonl"
    f.write_text(json.dumps({"id": "d1", "turns": [{"user": "나 요즘 떡볶이에 빠졌어", "answer": "떡볶이 최고지!"},
                                                   {"user": "그거 어디가 맛있어?", "answer": "신당동 어때?"},
                                                   {"user": "거기 멀어?", "answer": "지하철이면 금방이야!"}]},
                            ensure_ascii=False) + "\n", encoding="utf-8")
    fmt = PromptFormat(persona_template="({facts})\n")
    rows = load_dialogue_rows(f, fmt, len, budget=60)  # ~ one history line of characters
    assert [len(r.history) for r in rows] == [0, 1, 1]
    prompt = rows[2].prompt(fmt, PersonaCard.load())
    assert prompt.startswith("(이름 오로라, ") and "그거 어디가 맛있어? ### 답변: 신당동 어때? (답변 종료)\n거기 멀어?" in prompt
    assert "떡볶이에 빠졌어" not in prompt  # cut by the budget, as the chat would
    f.write_text('{"id": "x", "turns": [{"user": "안녕"}]}\n', encoding="utf-8")
    with pytest.raises(OhloraError, match="line 1"):
        load_dialogue_rows(f, fmt, len, 60)


def test_a_dialogue_after_a_summary_shows_it_in_every_row(tmp_path):
    import json

    from ohlora.datasets.sft import load_dialogue_rows
    from ohlora.persona import PersonaCard

    f = tmp_path / "d.jsonl"
    f.write_text(json.dumps({"id": "s1", "summary": "사용자의 고양이 이름은 보리임.",
                             "turns": [{"user": "오늘 비 온대", "answer": "우산 챙겨!"},
                                       {"user": "우리 고양이 이름 기억나?", "answer": "보리잖아! 🐱"}]},
                            ensure_ascii=False) + "\n", encoding="utf-8")
    fmt = PromptFormat(persona_template="({facts})\n")
    rows = load_dialogue_rows(f, fmt, len, budget=200)
    assert [r.category for r in rows] == ["dialogue-summary"] * 2 and [len(r.history) for r in rows] == [0, 1]
    prompt = rows[1].prompt(fmt, PersonaCard.load())
    assert prompt.index("고양이 이름은 보리임") < prompt.index("오늘 비 온대") < prompt.index("우리 고양이 이름 기억나?")
    f.write_text('{"id": "x", "summary": 3, "turns": [{"user": "안녕", "answer": "안녕!"}]}\n', encoding="utf-8")
    with pytest.raises(OhloraError, match="summary must be a string"):
        load_dialogue_rows(f, fmt, len, 60)


def test_training_can_start_from_an_existing_adapter(tiny_cfg, tmp_path):
    import json

    first = train_llm(load_train_config(**{**tiny_cfg, "epochs": 1, "sample_prompts": 0}))
    cfg = load_train_config(**{**tiny_cfg, "epochs": 1, "sample_prompts": 0, "lora_rank": 8,
                               "init_adapter": str(first), "output": str(tmp_path / "second")})
    second = train_llm(cfg)
    conf = json.loads((second / "adapter_config.json").read_text())
    assert conf["r"] == 4  # the init adapter's own LoRA settings, not the flag's
    a, b = load_file(str(first / "adapter_model.safetensors")), load_file(str(second / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and any(not torch.equal(a[k], b[k]) for k in a)  # trained further
    with pytest.raises(OhloraError, match="not an adapter directory"):
        train_llm(load_train_config(**{**tiny_cfg, "init_adapter": str(tmp_path), "output": str(tmp_path / "x")}))
