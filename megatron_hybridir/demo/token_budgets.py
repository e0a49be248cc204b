"""The demo's token budgets, in a module of its own so that every demo step that tokenizes or
exports (the pipeline, mining, the MiniLM fine-tuning) reads the same figures without importing
the pipeline that runs the steps."""

# Token budgets of every demo corpus (the pipeline's data, the mined data, the MiniLM fine-tuning)
# and of the exported model: a negative is a document like the positive and gets its length. The
# quickstart's figures were trained on mined data tokenized with these; the pipeline's own data once
# cut negatives at 32 tokens (only its --negatives data path and the study read those).
MAX_LENGTH = {"query": 32, "positive": 96, "negative": 96}
MAX_SEQ_LENGTH = MAX_LENGTH["positive"]
