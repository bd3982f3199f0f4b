"""Memory encoder: combination data, pairs, metrics, training on a tiny model, adapter switching."""

import csv
import itertools
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from ohlora.cli import main
from ohlora.datasets.combinations import key_similarity, parse_combs
from ohlora.errors import OhloraError
from ohlora.evaluation.metrics import regression_metrics, retrieval_metrics
from ohlora.memory.encoder import HiddenStateEncoder
from ohlora.memory.loading import attach_memory_adapter, load_memory_encoder
from ohlora.memory.synonyms import load_synonyms
from ohlora.models import load_base, resolve_base, use_adapter
from ohlora.training.memory import MatrixSampler, load_memory_train_config, train_memory

COMBS = """[오늘 일정: 발표] 나 지금 너무 떨려
[오늘 일정: 면접] 이따 무슨 말 하지
[내일 일정: 시험] 내일 아침 일찍 일어나야 해
[좋아하는 가수: 아이유] 노래 추천해 줘
[좋아하는 아이돌: 뉴진스] 요즘 무대 봤어?
[좋아하는 음식: 떡볶이] 저녁 뭐 먹지
[반려동물: 고양이] 우리 애가 밥을 안 먹어
[오늘 날씨: 비] 우산 챙겨야 하나
"""


def test_parse_combs_and_errors_with_line_numbers():
    combs = parse_combs(COMBS)
    assert len(combs) == 8 and combs[0].memory == "[오늘 일정: 발표]" and combs[0].message == "나 지금 너무 떨려"
    with pytest.raises(OhloraError, match="line 2: expected"):
        parse_combs("[a: b] ok\n[깨진 줄 메시지\n")
    with pytest.raises(OhloraError, match="line 1"):
        parse_combs("[a: b]\n")  # no message


def test_key_similarity_iou_and_synonyms():
    syn = load_synonyms()
    assert key_similarity("오늘 일정", "오늘 일정", syn) == 1.0
    assert key_similarity("오늘 일정", "내일 일정", syn) == pytest.approx(1 / 3)
    assert key_similarity("좋아하는 음식", "좋아하는 가수", syn) == pytest.approx(1 / 3)
    assert key_similarity("좋아하는 아이돌", "좋아하는 가수", syn) == 1.0  # one synonym group
    assert key_similarity("오늘 일정", "기분", syn) == 0.0


def test_memory_pairs_command(tmp_path):
    src = tmp_path / "c.txt"
    src.write_text(COMBS, encoding="utf-8")
    r = CliRunner().invoke(main, ["data", "memory-pairs", str(src), "-o", str(tmp_path / "p.csv")])
    assert r.exit_code == 0 and "wrote 64 pairs" in r.output
    rows = list(csv.DictReader((tmp_path / "p.csv").open(encoding="utf-8")))
    assert list(rows[0]) == ["memory_0", "user_prompt_0", "memory_1", "user_prompt_1", "similarity_score"]
    row = next(x for x in rows if x["memory_0"] == "[좋아하는 가수: 아이유]" and x["user_prompt_1"] == "요즘 무대 봤어?")
    assert float(row["similarity_score"]) == 1.0
    bad = tmp_path / "bad.txt"
    bad.write_text("[a: b] ok\nnot a comb\n", encoding="utf-8")
    r = CliRunner().invoke(main, ["data", "memory-pairs", str(bad), "-o", str(tmp_path / "x.csv")])
    assert r.exit_code == 2 and "line 2" in r.output


def test_memory_pairs_are_streamed_not_held(tmp_path):
    """N lines make N^2 pairs: the pairs are a lazy generator and writing them keeps memory flat."""
    import inspect
    import tracemalloc

    from ohlora.datasets.combinations import pair_rows, write_pairs

    syn = load_synonyms()
    base = parse_combs(COMBS)
    combs = [type(c)(i, c.key, c.value, f"{c.message} {i}") for i, c in enumerate(itertools.islice(
        itertools.cycle(base), 400))]
    rows = pair_rows(combs, syn)
    assert inspect.isgenerator(rows) and len(next(rows)) == 5
    tracemalloc.start()
    n = write_pairs(combs, syn, tmp_path / "p.csv")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert n == 160_000 and peak < 2_000_000, peak  # a list of 160k row dicts would be ~50 MB
    assert sum(1 for _ in (tmp_path / "p.csv").open(encoding="utf-8")) == n + 1


def test_memory_pairs_file_is_the_same_as_before(tmp_path):
    """Row for row what the in-memory version wrote: DictWriter over every (a, b) with key_similarity."""
    import io

    from ohlora.datasets.combinations import PAIR_FIELDS, write_pairs

    combs, syn = parse_combs(COMBS), load_synonyms()
    expected = io.StringIO(newline="")
    w = csv.DictWriter(expected, PAIR_FIELDS)
    w.writeheader()
    w.writerows({"memory_0": a.memory, "user_prompt_0": a.message, "memory_1": b.memory, "user_prompt_1": b.message,
                 "similarity_score": round(key_similarity(a.key, b.key, syn), 6)} for a in combs for b in combs)
    write_pairs(combs, syn, tmp_path / "p.csv")
    assert (tmp_path / "p.csv").read_bytes() == expected.getvalue().encode("utf-8")


def test_interrupted_memory_pairs_leave_no_file(tmp_path, monkeypatch):
    from ohlora.datasets import combinations as memory_data

    def rows_then_ctrl_c(combs, synonyms):
        yield from itertools.islice(real(combs, synonyms), 10)
        raise KeyboardInterrupt

    real = memory_data.pair_rows
    monkeypatch.setattr(memory_data, "pair_rows", rows_then_ctrl_c)
    (tmp_path / "p.csv").write_text("the previous file\n", encoding="utf-8")
    with pytest.raises(KeyboardInterrupt):
        memory_data.write_pairs(parse_combs(COMBS), load_synonyms(), tmp_path / "p.csv")
    assert [f.name for f in tmp_path.iterdir()] == ["p.csv"]  # no partial file beside it
    assert (tmp_path / "p.csv").read_text(encoding="utf-8") == "the previous file\n"


ONCE = "[기분: 좋음] 오늘 최고야\n[날씨: 비] 우산 챙겨야 하나\n[반려동물: 고양이] 우리 애가 밥을 안 먹어\n"


@pytest.mark.parametrize("flags,match", [
    ([], "every key occurs on one line only, but --sampling grouped (the default) pairs two lines of the same "
         "key; add a second line for some keys, or pass --sampling random"),
    (["--sampling", "random", "--k", "8"], "--sampling random draws --k 8 different lines per step but the file "
                                           "has 3; pass --k 3 or less (at least 2), or add lines"),
    (["--loss", "pair", "--batch-size", "10"], "3 lines give 9 pairs, fewer than --batch-size 10"),
    (["--sampling", "random", "--k", "3", "--valid-combs", "TRAIN"], "has 3 lines: at least 10 are needed to fit "
                                                                    "recall (or pass --no-recall-fit"),
])
def test_train_memory_checks_the_data_before_loading_a_model(tmp_path, monkeypatch, flags, match):
    def refuse(*a, **k):
        raise AssertionError("a model was loaded")
    monkeypatch.setattr("ohlora.training.memory.load_encoder_backbone", refuse)
    train = tmp_path / "once.txt"
    train.write_text(ONCE, encoding="utf-8")
    previous = tmp_path / "mem"
    previous.mkdir()
    (previous / "adapter_config.json").write_text("{}")
    flags = [str(train) if f == "TRAIN" else f for f in flags]
    r = CliRunner().invoke(main, ["train", "memory", "--train-combs", str(train), "-o", str(previous), *flags])
    assert r.exit_code == 2, r.output
    assert r.output == f"error: {train}: {match}\n" or (match in r.output and r.output.count("\n") == 1)
    assert (previous / "adapter_config.json").exists()  # the previous adapter was not moved aside


def test_metrics():
    m = regression_metrics([0.0, 0.5, 1.0], [0.0, 0.5, 0.5])
    assert m["mse"] == pytest.approx(0.25 / 3) and m["mae"] == pytest.approx(0.5 / 3)
    scores = np.array([[0.9, 0.7, 0.1], [0.2, 0.5, 0.8], [0.65, 0.1, 0.1]])
    truth = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    r = retrieval_metrics(scores, truth, 0.6)
    # msg0 right; msg1 picks item2 (wrong); msg2 has no match. False recall: msg0 (0.7), msg1 (0.8), msg2 (0.65)
    assert r["top1_accuracy"] == 0.5 and r["false_recall"] == 1.0
    low = retrieval_metrics(scores * 0.5, truth, 0.6)  # same ranking, every score under the threshold
    assert low["top1_accuracy"] == 0.0 and low["rank1_accuracy"] == 0.5 and low["false_recall"] == 0.0


def test_matrix_sampler_truth_and_positives():
    combs = parse_combs(COMBS)
    s = MatrixSampler(combs, load_synonyms(), k=4, positive_share=0.5, seed=0)
    mems, msgs, truth = s.sample()
    assert len(mems) == len(msgs) == 4 and np.array(truth).shape == (4, 4)
    assert truth[0][0] == 1.0 and truth[1][1] == 1.0  # the first half share their memory's key


@pytest.fixture
def tiny_memory_adapter(tmp_path, tiny_model_dir):
    train = tmp_path / "train.txt"
    train.write_text(COMBS, encoding="utf-8")
    cfg = load_memory_train_config(base=str(tiny_model_dir), train_combs=str(train), test_combs=str(train),
                                   output=str(tmp_path / "mem"), steps=4, k=4, learning_rate=1e-2, threads=1)
    out, metrics = train_memory(cfg)
    return out, metrics


def test_train_memory_writes_adapter_metrics_and_plot(tiny_memory_adapter):
    out, metrics = tiny_memory_adapter
    for f in ["adapter_config.json", "adapter_model.safetensors", "memory_encoder.yaml", "memory_pairs.csv",
              "memory_scatter.png", "train_log.csv", "recall.yaml", "recall_bank.npz"]:
        assert (out / f).exists(), f
    assert set(metrics) >= {"mse", "mae", "corr", "top1_accuracy", "false_recall", "n_pairs"}
    assert metrics["n_pairs"] == 64


def test_eval_memory_command_json(tiny_memory_adapter, tmp_path):
    out, metrics = tiny_memory_adapter
    combs = tmp_path / "t.txt"
    combs.write_text(COMBS, encoding="utf-8")
    r = CliRunner().invoke(main, ["eval", "memory", "--combs", str(combs), "--encoder", str(out), "--json",
                                  "-o", str(tmp_path / "ev")])
    assert r.exit_code == 0, r.output
    last = json.loads(r.output.strip().splitlines()[-1])
    assert {"mse", "mae", "corr", "n_pairs", "encoder", "recall"} <= set(last)
    assert last["mse"] == pytest.approx(metrics["mse"], abs=1e-5)  # same encoder, same pairs
    assert last["encoder"]["top1_accuracy"] == pytest.approx(metrics["top1_accuracy"])
    r = last["recall"]  # the two-stage pipeline, with the policy fit beside the adapter
    assert r["method"] == "calibrated" and 0 <= r["top1_accuracy"] <= r["rank1_accuracy"] <= 1
    assert r["recall_at_10"] >= r["recall_at_1"] and r["decision_ms_10"] > 0 and "top1_seen" in r
    assert (tmp_path / "ev" / "memory_scatter.png").exists() and (tmp_path / "ev" / "memory_eval.json").exists()


def test_one_base_model_serves_chat_and_memory(tiny_memory_adapter, tiny_model_dir):
    out, _ = tiny_memory_adapter
    model, tok = load_base(resolve_base(str(tiny_model_dir)), device="cpu")
    ids = tok("안녕 나는", return_tensors="pt")
    with torch.no_grad():
        bare = model(**ids).logits
    model, enc = attach_memory_adapter(model, tok, "tiny", out)
    plain = HiddenStateEncoder(model, tok, name="tiny")  # adapters off
    texts = ["[오늘 일정: 발표]", "나 떨려"]
    assert not np.allclose(enc.encode(texts), plain.encode(texts), atol=1e-4)
    with torch.no_grad(), use_adapter(model, None):
        assert torch.allclose(model(**ids).logits, bare, atol=1e-5)  # chat without adapter = the base model
    assert enc.id != plain.id and "@" in enc.id  # cache key changes with the adapter's content
    assert np.allclose(load_memory_encoder(str(out)).encode(texts), enc.encode(texts), atol=1e-5)


def test_bench_memory_on_the_tiny_model(tiny_memory_adapter, tmp_path):
    out, _ = tiny_memory_adapter
    r = CliRunner().invoke(main, ["bench", "memory", "--encoder", str(out), "--sizes", "5,20", "--queries", "2",
                                  "--json", "-o", str(tmp_path / "m.md")])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.output.strip().splitlines()[-1])
    assert [x["items"] for x in rows] == [5, 20] and all(x["cached_ms"] > 0 for x in rows)
    assert "| stored items |" in (tmp_path / "m.md").read_text(encoding="utf-8")


def test_chat_and_memory_adapters_share_one_base_model(tiny_memory_adapter, tiny_model_dir, tmp_path):
    from peft import LoraConfig

    from ohlora.decoding.generator import HFGenerator
    from ohlora.models import add_lora, load_adapter

    mem_dir, _ = tiny_memory_adapter
    model, tok = load_base(resolve_base(str(tiny_model_dir)), device="cpu")
    chat = add_lora(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    chat.save_pretrained(tmp_path / "chat")
    base, tok = load_base(resolve_base(str(tiny_model_dir)), device="cpu")
    reference = HFGenerator(base, tok).generate("안녕", stop_phrase="\x00", max_new_tokens=8, temperature=0).text
    both = load_adapter(base, tmp_path / "chat", name="chat")
    both, enc = attach_memory_adapter(both, tok, "tiny", mem_dir)
    assert set(both.peft_config) == {"chat", "memory"}
    with_chat = HFGenerator(both, tok, adapter="chat").generate("안녕", stop_phrase="\x00", max_new_tokens=8,
                                                                temperature=0).text
    bare = HFGenerator(both, tok, adapter=None).generate("안녕", stop_phrase="\x00", max_new_tokens=8,
                                                         temperature=0).text
    assert bare == reference and with_chat != reference
    texts = ["[오늘 일정: 발표]", "나 떨려"]
    assert np.allclose(enc.encode(texts), load_memory_encoder(str(mem_dir)).encode(texts), atol=1e-5)
    assert both.active_adapter == "chat"  # encoding switched to memory and back


def test_grouped_sampler_gives_many_same_key_pairs():
    combs = parse_combs(COMBS)
    s = MatrixSampler(combs, load_synonyms(), k=4, positive_share=0.5, seed=0, grouped=True)
    mems, msgs, truth = s.sample()
    t = np.array(truth)
    assert t.shape == (4, 4) and (t == 1.0).sum() >= 8  # 2 keys x (2 memories x 2 messages)


ITEM_T, QUERY_T = '{}\n이 기억의 종류: "', '{}\n이 말과 관련된 기억의 종류: "'


def test_encoder_format_is_checked_and_fingerprinted():
    from ohlora.memory.encoder import EncoderFormat

    with pytest.raises(OhloraError, match="pooling"):
        EncoderFormat(pooling="max")
    with pytest.raises(OhloraError, match="exactly one"):
        EncoderFormat(item_template="no placeholder")
    assert EncoderFormat().fingerprint() == ""  # plain mean pooling keeps its old cache ids
    fmt = EncoderFormat("last", ITEM_T, QUERY_T)
    assert fmt.fingerprint() and EncoderFormat.from_dict(fmt.as_dict()) == fmt
    with pytest.raises(OhloraError, match="key_loss"):
        load_memory_train_config(loss="pair", key_loss=0.1)


def test_last_token_pooling_reads_the_prompts_last_position(tiny_model_dir):
    from ohlora.memory.encoder import EncoderFormat, backbone

    model, tok = load_base(resolve_base(str(tiny_model_dir)), device="cpu")
    enc = HiddenStateEncoder(model, tok, name="tiny", batch_size=2, fmt=EncoderFormat("last", ITEM_T, QUERY_T))
    texts = ["[오늘 일정: 발표]", "나 떨려", "좋아하는 음식은 마라탕이야 진짜로"]
    items, queries = enc.encode(texts), enc.encode_query(texts)
    assert not np.allclose(items, queries, atol=1e-3)  # each side gets its own template
    with torch.no_grad():  # the query vector is the hidden state after the template's last token, alone
        ids = tok(QUERY_T.format(texts[2]), return_tensors="pt").input_ids
        ref = backbone(model)(input_ids=ids).last_hidden_state[0, -1].numpy()
    assert abs(float(queries[2] @ (ref / np.linalg.norm(ref))) - 1) < 1e-4  # padding in a batch changes nothing
    assert enc.id != HiddenStateEncoder(model, tok, name="tiny").id  # another format, another cache


def key_nll(model, tok, combs) -> float:
    """Mean NLL of each line's key right after the query template, over the tokens keys are made
    of (what the key loss trains)."""
    from ohlora.memory.encoder import pooled_states

    vocab = sorted({t for c in combs for t in tok(c.key + '"', add_special_tokens=False).input_ids})
    where = {t: i for i, t in enumerate(vocab)}
    head = model.get_output_embeddings().weight[vocab]  # (V_keys, H)
    total = 0.0
    with torch.no_grad():
        for c in combs:
            p = pooled_states(model, tok, [QUERY_T.format(c.message)], "last", continuations=[c.key + '"'])
            logits = p.hidden[0, p.prompt_lens[0] - 1:p.lens[0] - 1] @ head.T
            target = torch.tensor([where[int(t)] for t in p.input_ids[0, p.prompt_lens[0]:p.lens[0]]])
            total += torch.nn.functional.cross_entropy(logits, target).item()
    return total / len(combs)


def test_key_loss_teaches_the_model_to_name_the_key(tmp_path, tiny_model_dir):
    from peft import PeftModel

    from ohlora.memory.loading import read_meta
    from ohlora.models import quiet_peft_wrap

    train = tmp_path / "train.txt"
    train.write_text(COMBS, encoding="utf-8")
    nll = {}
    for weight in (0.0, 1.0):
        cfg = load_memory_train_config(base=str(tiny_model_dir), train_combs=str(train), test_combs=str(train),
                                       output=str(tmp_path / f"mem{weight}"), steps=25, k=4, learning_rate=1e-2,
                                       threads=1, pooling="last", item_template=ITEM_T, query_template=QUERY_T,
                                       key_loss=weight)
        out, _ = train_memory(cfg)
        base, tok = load_base(resolve_base(str(tiny_model_dir)), device="cpu")
        with quiet_peft_wrap():
            peft_model = PeftModel.from_pretrained(base, out)
        nll[weight] = key_nll(peft_model, tok, parse_combs(COMBS))
    assert read_meta(out)["format"] == {"pooling": "last", "item_template": ITEM_T, "query_template": QUERY_T}
    enc = load_memory_encoder(str(out))  # the format travels with the adapter
    assert enc.fmt.pooling == "last" and enc.fmt.query_template == QUERY_T
    # a random 64-wide model's logits span little (tied head, init std 0.02), so the drop is small
    # in absolute terms: 3.41 -> 3.08 here; without the key loss in the step it would not move
    assert nll[1.0] < nll[0.0] - 0.2, nll


def test_format_defaults_follow_the_kind_of_base():
    cfg = load_memory_train_config()
    causal, enc = cfg.for_kind("causal-lm"), cfg.for_kind("encoder")
    assert (causal.pooling, causal.key_loss, causal.query_template) == ("last", 0.05, QUERY_T)
    assert (enc.pooling, enc.key_loss, enc.item_template) == ("mean", 0.0, "{}")  # klue/roberta-base: the original's
    assert load_memory_train_config(loss="pair").for_kind("causal-lm").key_loss == 0.0
    assert load_memory_train_config(pooling="mean", key_loss=0).for_kind("causal-lm").pooling == "mean"  # flags win


def test_hard_negative_sampler_puts_confused_keys_in_one_step():
    from collections import Counter

    combs = parse_combs(COMBS + "[오늘 일정: 회의] 아 오늘 너무 길다\n[반려동물: 강아지] 산책 가야지\n"
                                "[좋아하는 음식: 김밥] 소풍 가자\n")
    syn = load_synonyms()
    confused = {"오늘 일정": Counter({"좋아하는 음식": 5})}
    hard = MatrixSampler(combs, syn, k=4, positive_share=0.5, seed=0, grouped=True, confusions=confused, hard_share=1.0)
    plain = MatrixSampler(combs, syn, k=4, positive_share=0.5, seed=0, grouped=True)

    def together(s):  # steps whose two keys are the confused pair
        return sum({syn.get(c, c) for c in s.sample(with_keys=True)[3]} == {"오늘 일정", "좋아하는 음식"}
                   for _ in range(300))

    assert together(hard) >= 80 > together(plain)  # about 1/3 of the steps against 1/6 at random
    plain = MatrixSampler(combs, syn, k=4, positive_share=0.5, seed=0, grouped=True)
    again = MatrixSampler(combs, syn, k=4, positive_share=0.5, seed=0, grouped=True, confusions=confused)
    assert plain.sample() == again.sample()  # hard_share 0: the random draw is unchanged
    with pytest.raises(OhloraError, match="hard_negatives"):
        load_memory_train_config(loss="pair", hard_negatives=0.5)


def test_mine_confusions_counts_the_keys_ranked_above_the_own_key():
    from ohlora.training.memory_mining import confusion_table, mine_confusions

    combs = parse_combs(COMBS)
    vectors = {"[오늘 일정: 발표]": [1, 0, 0], "나 지금 너무 떨려": [0.6, 0.8, 0],  # own item is second
               "[좋아하는 음식: 떡볶이]": [0, 1, 0], "저녁 뭐 먹지": [0, 1, 0]}

    def embed(texts, side):
        return torch.tensor([vectors.get(t, [0, 0, 1]) for t in texts], dtype=torch.float32), 0.0

    found = mine_confusions(embed, combs, load_synonyms(), per_message=2)
    assert found["오늘 일정"]["좋아하는 음식"] == 1
    assert "좋아하는 음식" not in found or "오늘 일정" not in found["좋아하는 음식"]  # ranked its own first
    assert confusion_table(found)[0]["key"] in found


def test_train_memory_with_hard_negatives_writes_what_it_mined(tmp_path, tiny_model_dir):
    train = tmp_path / "train.txt"
    train.write_text(COMBS, encoding="utf-8")
    r = CliRunner().invoke(main, ["train", "memory", "--base", str(tiny_model_dir), "--train-combs", str(train),
                                  "--test-combs", str(train), "-o", str(tmp_path / "mem"), "--steps", "2", "--k", "4",
                                  "--hard-negatives", "0.5", "--no-recall-fit", "--threads", "1"])
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader((tmp_path / "mem" / "hard_negatives.csv").open(encoding="utf-8")))
    assert rows and set(rows[0]) == {"key", "confused_with", "messages"} and rows[0]["key"] != rows[0]["confused_with"]
    meta = (tmp_path / "mem" / "memory_encoder.yaml").read_text(encoding="utf-8")
    assert "hard_negatives: 0.5" in meta
