"""Checkpoint conversion: Hugging Face LLMs into Megatron-Core, trained retrievers out to HF and
sentence-transformers (``mappings.py`` holds all per-architecture knowledge)."""
