"""The decoder's named choices, in one place: the config checks against them, the CLI offers
them, and the engines refuse anything else."""

WEIGHTS = ("auto", "fp32", "bf16", "fp16")
"""How the fast generator stores the decoder's matrices (ChatConfig.weights, --weights)."""
DECODE_KERNELS = ("auto", "native", "torch")
"""What runs each generated token (ChatConfig.decode_kernel): auto = native where it builds."""
ENGINES = ("torch", "llamacpp")
"""Where the fast generator decodes (ChatConfig.engine, --engine)."""
ENGINE_QUANTS = ("f16", "q8_0")
"""The llama.cpp engine file's weights (ChatConfig.llamacpp_weights): f16 answers as ohlora
does, q8_0 is faster."""
