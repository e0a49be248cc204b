"""Training records from public sources: mMARCO (parallel), MIRACL, NQ/DPR and BEIR (monolingual).

Why it exists: without it every user writes a converter, and converters are where translations
get paired by line number and test queries leak into training. One module per source
(``mmarco.py``, ``miracl.py``, ``dpr.py``, ``beir.py``) streams the source's own files (or its
``datasets`` copy), joins texts strictly by id (``tables.py``), and hands records to ``writer.py``,
which checks them against evaluation queries (``leakage.py``) and the training readers'
parser, writes JSONL and a :class:`~megatron_hybridir.data.sources.report.BuildReport`.
``build.py`` holds the one-call entry points that ``tools/build_training_data.py`` uses.

What it does not do: tokenize (``data/preprocess.py``), mine negatives (``mining/``), download
anything unless a hub name is given.
"""
