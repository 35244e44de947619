"""Talking to a model: ``generation`` (prompts within the context, sampling, streaming, best-of),
``chat`` (the terminal session of ``chatloom chat``), ``server`` and ``schema`` (the
OpenAI-compatible API of ``chatloom serve``), ``vllm`` (handing a model to vLLM instead)."""
