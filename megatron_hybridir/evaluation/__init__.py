"""Standalone zero-shot evaluation: loaders, encoding, FAISS search, metrics, language bias, reports.

Why it exists: a trained retriever is judged on BEIR, NQ, MIRACL, XQuAD-R and MLQA-R
(docs/design.md §9). It runs with torch, transformers / sentence-transformers, FAISS and ir_measures
only; it never imports Megatron-Core, so an exported model is evaluated on any machine.
"""
