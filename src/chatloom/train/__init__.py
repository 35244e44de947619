"""Fine-tuning: ``chatloom train`` on chatloom's token files (transformers + PEFT), its run folder,
and the models by name that training, chat and serve share.

- ``models.py``: every model the user names (tiny random ones, SmolLM2's GGUF, folders, the Hub
  cache) becomes a Hugging Face folder; ``load`` gives a run's or a model's weights for inference;
- ``config.py``: the YAML configuration (pydantic, unknown keys refused) with flags over it;
- ``data.py``: token files checked against the model, or chats tokenized on the fly into a cache;
  packing with no padding;
- ``run.py``: the loop (transformers' Trainer), checkpoints, resume, best/ and final/;
- ``report.py``: ``loss.png`` and ``report.html`` with the base and tuned models' replies;
- ``merge.py``: a LoRA run folded into a full model folder.
"""

from __future__ import annotations
