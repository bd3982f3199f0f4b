"""`ohlora export gguf`: the Modelfile, where the converter comes from, the merge handed to it,
one-line errors; and (slow, with the llamacpp extra) the real export answering as ohlora does."""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from ohlora.cli import main
from ohlora.errors import OhloraError
from ohlora.export import converter as conv_mod
from ohlora.export.converter import converter_at, extract_converter, fetch_from_sdist, find_converter
from ohlora.export.gguf import QUANTS, cpu_has_amx, export_gguf, output_path
from ohlora.export.modelfile import ollama_template, render_modelfile
from ohlora.persona import PersonaCard
from ohlora.prompt import PromptFormat

PERSONA = PromptFormat(persona_template="({facts})\n")


def fill(template: str, system: str | None, prompt: str) -> str:
    """What Ollama makes of the template for these values (the constructs it uses, no more)."""
    if system:
        template = template.replace("{{ if .System }}", "").replace("{{ end }}", "")
    else:
        start = template.find("{{ if .System }}")
        if start >= 0:
            template = template[:start] + template[template.index("{{ end }}") + len("{{ end }}"):]
    return template.replace("{{ .System }}", system or "").replace("{{ .Prompt }}", prompt)


# -- Modelfile --------------------------------------------------------------------------------------
def test_modelfile_template_renders_as_the_prompt_format():
    facts = PersonaCard.load().facts(dt.date(2026, 11, 25))
    text = render_modelfile("oh-lora-f16.gguf", PERSONA, facts)
    lines = text.splitlines()
    assert "FROM ./oh-lora-f16.gguf" in lines
    assert 'PARAMETER stop "(답변 종료)"' in lines
    assert "PARAMETER temperature 0.6" in lines and "PARAMETER num_predict 80" in lines
    assert "PARAMETER top_k 50" in lines and "PARAMETER repeat_penalty 1" in lines  # ohlora's sampling
    assert f'SYSTEM """{facts}"""' in lines
    assert any(ln.startswith('LICENSE """') and "Gemma Terms of Use" in ln for ln in lines)
    template = text.split('TEMPLATE """', 1)[1].split('"""', 1)[0]
    for message in ("나 내일 면접 있어", "너 이름이 뭐야?"):
        assert fill(template, facts, message) == PERSONA.render(message, facts=facts)
    # a different SYSTEM replaces the facts; an empty one drops the persona line
    assert fill(template, "이름 오로라", "안녕") == PERSONA.render("안녕", facts="이름 오로라")
    assert fill(template, None, "안녕") == PERSONA.render("안녕")


def test_modelfile_for_a_bare_base_model_carries_the_few_shot_preamble():
    fmt = PromptFormat.few_shot()
    text = render_modelfile("base.gguf", fmt, None)
    assert "SYSTEM" not in text
    template = text.split('TEMPLATE """', 1)[1].split('"""', 1)[0]
    assert fill(template, None, "안녕") == fmt.render("안녕")


def test_literal_braces_in_a_preamble_stay_literal():
    fmt = PromptFormat(preamble="{{x}} ")
    assert ollama_template(fmt, with_system=False).startswith('{{ "{{" }}x}} ')


# -- where the converter comes from ----------------------------------------------------------------
def fake_llama_cpp(root: Path, script_body: str = "") -> Path:
    (root / "gguf-py" / "gguf").mkdir(parents=True)
    (root / "convert_hf_to_gguf.py").write_text(script_body or "print('hi')\n", encoding="utf-8")
    return root


def test_converter_lookup_order(tmp_path, monkeypatch, ohlora_home):
    opt, env = fake_llama_cpp(tmp_path / "opt"), fake_llama_cpp(tmp_path / "env")
    monkeypatch.setenv("LLAMA_CPP_DIR", str(env))
    never = lambda dest, log: pytest.fail("fetched although a converter was given")  # noqa: E731
    c = find_converter(opt, fetch=never)
    assert (c.source, c.script, c.gguf_py) == ("--converter", opt / "convert_hf_to_gguf.py", opt / "gguf-py")
    assert find_converter(opt / "convert_hf_to_gguf.py", fetch=never).script == opt / "convert_hf_to_gguf.py"
    assert find_converter(None, fetch=never).source == "LLAMA_CPP_DIR"
    monkeypatch.delenv("LLAMA_CPP_DIR")
    fetched = []

    def fetch(dest, log):
        fetched.append(dest)
        fake_llama_cpp(dest)
        (dest / ".complete").write_text("x\n")

    assert find_converter(None, fetch=fetch).source == "fetched"
    assert fetched == [ohlora_home / "tools" / "llama.cpp"]
    assert find_converter(None, fetch=never).source == "cache"  # fetched once, then cached
    c = find_converter(None, fetch=never)
    assert c.env()["PYTHONPATH"].split(":")[0] == str(c.gguf_py)  # the converter's own gguf-py


@pytest.mark.parametrize("make,match", [
    (lambda p: p / "nowhere", "is not there"),
    (lambda p: p, "has no convert_hf_to_gguf.py"),
])
def test_converter_lookup_errors_are_one_line(tmp_path, make, match):
    with pytest.raises(OhloraError, match=match) as e:
        converter_at(make(tmp_path), "--converter")
    assert "\n" not in str(e.value)


def test_failed_fetch_says_what_to_do(monkeypatch, tmp_path):
    class Done:
        returncode, stdout, stderr = 1, "", "ERROR: Could not find a version that satisfies the requirement\n"

    monkeypatch.setattr(conv_mod.subprocess, "run", lambda *a, **k: Done())
    with pytest.raises(OhloraError, match="pip download llama-cpp-python.*Could not find.*--converter PATH or set "
                                          "LLAMA_CPP_DIR") as e:
        fetch_from_sdist(tmp_path / "cache", log=lambda m: None)
    assert "\n" not in str(e.value)


def test_extract_takes_only_the_converter_out_of_the_sdist(tmp_path):
    archive = tmp_path / "llama_cpp_python-9.9.9.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name in ["convert_hf_to_gguf.py", "conversion/__init__.py", "gguf-py/gguf/__init__.py", "LICENSE",
                     "src/llama.cpp", "ggml/src/ggml.c", "convert_lora_to_gguf.py"]:
            data = f"# {name}\n".encode()
            info = tarfile.TarInfo(f"llama_cpp_python-9.9.9/vendor/llama.cpp/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        info = tarfile.TarInfo("llama_cpp_python-9.9.9/llama_cpp/llama.py")
        tar.addfile(info, io.BytesIO(b""))
    dest = extract_converter(archive, tmp_path / "tools" / "llama.cpp")
    files = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    assert files == [".complete", "LICENSE", "conversion/__init__.py", "convert_hf_to_gguf.py", "gguf-py/gguf/__init__.py"]


# -- the export itself, with a fake converter ---------------------------------------------------------
FAKE_CONVERTER = textwrap.dedent("""\
    import json, os, shutil, sys
    model_dir, outtype, outfile = sys.argv[1], sys.argv[3], sys.argv[5]
    if os.environ.get("FAKE_CONVERTER_FAIL"):
        print("Traceback ...\\nNotImplementedError: Architecture 'X' not supported!")
        sys.exit(1)
    final = outfile[:-len(".partial")] if outfile.endswith(".partial") else outfile
    shutil.copy(os.path.join(model_dir, "model.safetensors"), final + ".weights")
    with open(outfile, "w") as f:
        json.dump({"outtype": outtype, "files": sorted(os.listdir(model_dir)),
                   "pythonpath": os.environ.get("PYTHONPATH", "")}, f)
""")


@pytest.fixture
def tiny_adapter(tiny_model_dir, tmp_path):
    """A LoRA adapter on the tiny model with non-zero deltas, a prompt format and a persona card."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                                  init_lora_weights=False))
    out = tmp_path / "tiny-adapter"
    peft_model.save_pretrained(out)
    PERSONA.save(out)
    PersonaCard.load().save(out)
    (out / "GEMMA_TERMS.html").write_text("<p>terms</p>", encoding="utf-8")
    return out


def test_export_merges_the_adapter_and_hands_it_to_the_converter(tiny_model_dir, tiny_adapter, tmp_path):
    import torch
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    llama = fake_llama_cpp(tmp_path / "llama.cpp", FAKE_CONVERTER)
    logs = []
    res = export_gguf(tiny_adapter, "f16", tmp_path / "out", base=str(tiny_model_dir), converter=llama,
                      log=logs.append)
    assert res.gguf == tmp_path / "out" / "tiny-adapter-f16.gguf"
    seen = json.loads(res.gguf.read_text())
    assert seen["outtype"] == "f16"
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(seen["files"])
    assert not any("adapter" in f for f in seen["files"])  # merged: a plain model folder
    assert seen["pythonpath"].split(":")[0] == str(llama / "gguf-py")
    # the weights handed over are base + LoRA delta
    expected = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), tiny_adapter)
    expected = expected.merge_and_unload().state_dict()
    got = load_file(str(res.gguf) + ".weights")
    base = load_file(str(tiny_model_dir / "model.safetensors"))
    key = next(k for k in got if k.endswith("layers.0.self_attn.q_proj.weight"))
    assert torch.allclose(got[key], expected[key], atol=1e-6) and not torch.allclose(got[key], base[key])
    key_k = key.replace("q_proj", "k_proj")  # not adapted: unchanged
    assert torch.equal(got[key_k], base[key_k])
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["GEMMA_TERMS.html", "Modelfile", "tiny-adapter-f16.gguf", "tiny-adapter-f16.gguf.weights"]
    assert (tmp_path / "out" / "Modelfile").read_text().splitlines()[2] == "FROM ./tiny-adapter-f16.gguf"
    assert [ln.split(" ")[0] for ln in logs if ln.startswith("[")] == ["[1/3]", "[2/3]", "[3/3]"]
    assert res.seconds.keys() == {"merge", "convert"}


def test_a_second_export_into_the_same_place_needs_overwrite(tiny_model_dir, tmp_path):
    llama = fake_llama_cpp(tmp_path / "llama.cpp", FAKE_CONVERTER)
    out = tmp_path / "out"
    first = export_gguf(None, "f16", out, base=str(tiny_model_dir), converter=llama, log=lambda m: None)
    modelfile = (out / "Modelfile").read_text()
    for quant in ("f16", "q8_0"):  # the same file, or another file beside the same Modelfile
        with pytest.raises(OhloraError, match="exists .*pass --overwrite"):
            export_gguf(None, quant, out, base=str(tiny_model_dir), converter=llama, log=lambda m: None)
    assert (out / "Modelfile").read_text() == modelfile and first.gguf.is_file()
    assert not list(out.glob("*-q8_0.gguf")) and not list(out.glob("*.partial"))
    again = export_gguf(None, "q8_0", out, base=str(tiny_model_dir), converter=llama, log=lambda m: None,
                        overwrite=True)
    assert "FROM ./" + again.gguf.name in (out / "Modelfile").read_text()


def test_a_failing_converter_is_one_line_and_leaves_no_file(tiny_model_dir, tmp_path, monkeypatch):
    llama = fake_llama_cpp(tmp_path / "llama.cpp", FAKE_CONVERTER)
    monkeypatch.setenv("FAKE_CONVERTER_FAIL", "1")
    out = tmp_path / "out" / "base.gguf"
    with pytest.raises(OhloraError, match="exit code 1: NotImplementedError: Architecture 'X' not supported!") as e:
        export_gguf(None, "q8_0", out, base=str(tiny_model_dir), converter=llama, log=lambda m: None)
    assert "\n" not in str(e.value) and "base.gguf.convert.log" in str(e.value)
    assert sorted(p.name for p in out.parent.iterdir()) == ["base.gguf.convert.log"]


def test_amx_is_read_off_the_cpu_flags(tmp_path):
    (tmp_path / "spr").write_text("processor\t: 0\nflags\t\t: fpu avx512f amx_bf16 amx_tile amx_int8 avx512_fp16\n")
    (tmp_path / "epyc").write_text("processor\t: 0\nflags\t\t: fpu avx512f avx512_bf16\n")
    assert cpu_has_amx(str(tmp_path / "spr")) and not cpu_has_amx(str(tmp_path / "epyc"))
    assert not cpu_has_amx(str(tmp_path / "missing"))


def test_output_path():
    assert output_path(Path("x/oh.gguf"), "f16", "a") == Path("x/oh.gguf")
    assert output_path(Path("x/dir"), "q8_0", "a") == Path("x/dir/a-q8_0.gguf")


def test_cli_mistakes_are_one_line(tmp_path, monkeypatch):
    run = lambda *a: CliRunner().invoke(main, ["export", "gguf", *a])  # noqa: E731
    r = run("-o", str(tmp_path), "--quant", "q3")
    assert r.exit_code == 2 and "'q3' is not one of 'f16', 'q8_0', 'q4_k_m'" in r.output
    r = run("-o", str(tmp_path), "--converter", str(tmp_path / "nope"))
    assert r.exit_code == 2 and r.output.startswith("error: --converter ") and r.output.count("\n") == 1
    r = run("-o", str(tmp_path), "--adapter", str(tmp_path / "no-adapter"))
    assert r.exit_code == 2 and "not found" in r.output
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # the extra is not installed
    r = run("-o", str(tmp_path), "--quant", "q4_k_m")
    assert r.exit_code == 2 and "pip install 'ohlora[llamacpp]'" in r.output and r.output.count("\n") == 1
    assert run("--help").exit_code == 0 and "Modelfile" in run("--help").output


# -- the real thing ---------------------------------------------------------------------------------
LLAMA_CPP_ANSWERS = textwrap.dedent("""\
    import json, os, sys
    import llama_cpp
    if os.environ.get("NO_REPACK"):  # what AMX_NOTE tells users of an AMX CPU to do
        default = llama_cpp.llama_cpp.llama_model_default_params
        def no_repack():
            params = default()
            params.use_extra_bufts = False
            return params
        llama_cpp.llama_cpp.llama_model_default_params = no_repack
    path, stop = sys.argv[1], sys.argv[3]
    llm = llama_cpp.Llama(path, n_ctx=1024, n_threads=1, verbose=False)  # as a user loads the file
    out = [llm.create_completion(p, max_tokens=80, temperature=0, stop=[stop])["choices"][0]["text"].strip()
           for p in json.loads(sys.argv[2])]
    llm.close()
    print(json.dumps(out, ensure_ascii=False))
""")


@pytest.mark.slow
@pytest.mark.parametrize("quant", QUANTS)
def test_every_export_loads_and_answers_in_llama_cpp(quant, tmp_path, home):
    """Shipped adapter -> GGUF of each --quant -> llama-cpp-python with its default settings, in a
    child process (a crash in llama.cpp fails this test instead of killing the run). F16 gives the
    same greedy answers as ohlora's FastGenerator on 5 prompts rendered by the PromptFormat; the
    quantized files answer every prompt in Korean."""
    pytest.importorskip("llama_cpp")
    from ohlora.decoding.fast import FastGenerator
    from ohlora.decoding.head import load_head_vocab
    from ohlora.models import load_adapter, load_base, resolve_base, shipped_adapter

    adapter = shipped_adapter("gemma-3-270m")
    res = export_gguf(adapter, quant, tmp_path / "gguf")
    assert (res.gguf.parent / "Modelfile").is_file() and (res.gguf.parent / "GEMMA_TERMS.html").is_file()
    fmt = PromptFormat.load(adapter)
    facts = PersonaCard.load(adapter / "persona.yaml").facts(dt.date(2026, 11, 25))
    messages = ["너 이름이 뭐야?", "나 내일 면접 있어", "좋아하는 음식 있어?", "오늘 너무 피곤해", "주말에 뭐 해?"]
    prompts = [fmt.render(m, facts=facts) for m in messages]
    # On an AMX CPU a quantized file is read with repacking off, as the export's note says (llama.cpp
    # #20824 crashes in its AMX path); elsewhere with llama.cpp's defaults.
    env = {**os.environ, **({"NO_REPACK": "1"} if quant != "f16" and cpu_has_amx() else {})}
    r = subprocess.run([sys.executable, "-c", LLAMA_CPP_ANSWERS, str(res.gguf), json.dumps(prompts), fmt.stop_phrase],
                       capture_output=True, text=True, timeout=900, env=env)
    assert r.returncode == 0, f"llama.cpp on the {quant} export exited {r.returncode} (-11: a segfault): {r.stderr[-1500:]}"
    theirs = json.loads(r.stdout.strip().splitlines()[-1])
    assert all(re.search("[가-힣]", t) for t in theirs), theirs
    if quant == "f16":
        model, tok = load_base(resolve_base("gemma-3-270m"))
        gen = FastGenerator(load_adapter(model, adapter), tok, load_head_vocab(adapter), adapter="chat")
        ours = [gen.generate(p, stop_phrase=fmt.stop_phrase, max_new_tokens=80, temperature=0).text for p in prompts]
        assert theirs == [o.split(fmt.stop_phrase)[0].strip() for o in ours]
