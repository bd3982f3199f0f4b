"""`ohlora export ...`: the export commands (loaded by the main group in ohlora/cli/__init__.py).

The main group turns an OhloraError raised here into its one `error:` line; help options and
widths are inherited from it."""

from __future__ import annotations

from pathlib import Path

import click

from ohlora.errors import OhloraError
from ohlora.export.gguf import QUANTS, export_gguf
from ohlora.runtime import resolve_adapter


@click.group("export")
def export():
    """Export Oh-LoRA for other runtimes (llama.cpp, Ollama)."""


@export.command("gguf")
@click.option("--adapter", default="default", show_default=True,
              help="Chat adapter merged into the base: 'default' = the adapter shipped for the base, "
                   "'none' = the base model alone, or an adapter directory from `ohlora train llm`.")
@click.option("--base", "-b", default="gemma-3-270m", show_default=True,
              help="Base model: preset, Hugging Face id or local directory.")
@click.option("--quant", type=click.Choice(QUANTS, case_sensitive=False), default="f16", show_default=True,
              help="f16 answers as ohlora does (greedy); q8_0 (converter) and q4_k_m (llama.cpp's quantizer, "
                   "needs the llamacpp extra) are smaller and may differ now and then.")
@click.option("--output", "-o", type=click.Path(path_type=Path), required=True,
              help="The .gguf file to write, or a directory (then <adapter>-<quant>.gguf inside it). "
                   "Modelfile, GEMMA_TERMS.html and NOTICE are written beside it.")
@click.option("--converter", type=click.Path(path_type=Path), default=None,
              help="llama.cpp's convert_hf_to_gguf.py or a llama.cpp checkout [default: $LLAMA_CPP_DIR, "
                   "else a copy under $OHLORA_HOME/tools/llama.cpp, taken from the llama-cpp-python "
                   "source on PyPI the first time].")
@click.option("--overwrite", is_flag=True,
              help="Replace the .gguf and the Modelfile of an earlier export at the same place.")
def export_gguf_cmd(adapter, base, quant, output, converter, overwrite):
    """Write Oh-LoRA as one GGUF file for llama.cpp and Ollama.

    Merges the LoRA adapter into the base weights, converts them with llama.cpp's own converter
    (full vocabulary: the file works in any llama.cpp) and writes an Ollama Modelfile with the
    prompt format, the stop phrase (답변 종료) and ohlora's sampling beside it. Then e.g.

        ollama create oh-lora -f Modelfile

    Gemma 3 is provided under and subject to the Gemma Terms of Use
    (https://ai.google.dev/gemma/terms); the exported model carries the same terms.
    """

    adapter_dir = resolve_adapter(adapter, base)
    if adapter == "default" and adapter_dir is None:
        raise OhloraError(f"no chat adapter is shipped for {base}: pass --adapter DIR, or --adapter none for the base alone")
    result = export_gguf(adapter_dir, quant, output, base=base, converter=converter, overwrite=overwrite)
    click.echo(str(result.gguf))
