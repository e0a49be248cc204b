"""Checkpoint folders read and written by both training and conversion.

Why it exists: a run's ``checkpoints/step_N``, a folder written by ``convert_hf_to_megatron`` and
the ``provenance.json`` beside either are read by the trainer (``checkpoint.init_from``, the LoRA
base, the run's identity), by export and by ``--verify``. Keeping that here lets ``training/`` and
``convert/`` share it without importing each other:

- ``folders``: which model config and distributed-checkpoint folder a path names
  (:func:`~megatron_hybridir.checkpointing.folders.resolve_checkpoint`);
- ``model_state``: the model's sharded state dict and the one way model weights are read from a
  checkpoint folder into model chunks;
- ``checksums``: ``checksums.json`` written at save and verified before a load;
- ``provenance``: the ``provenance.json`` record (where weights, tokenizer and prompts came from).

What it does not do: save or resume training state (``training/checkpoint.py``), convert tensors
to or from Hugging Face (``convert/``).
"""
