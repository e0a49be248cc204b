"""A tiny random sentence-transformers model (BERT, word-level vocabulary), built offline."""

import pytest

from tests.unit.evaluation.formats import WORDS


@pytest.fixture(scope="session")
def tiny_st_model(tmp_path_factory):
    import torch
    from sentence_transformers import SentenceTransformer, models
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder = tmp_path_factory.mktemp("tiny_st")
    hf = folder / "hf"
    hf.mkdir()
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "query", "passage", ":", "?", "."]
    vocab += [str(i) for i in range(40)] + WORDS + [w.upper() for w in WORDS] + [w[::-1] for w in WORDS]
    vocab += sorted({c for w in WORDS for c in w + w[::-1] + w.upper()})
    (hf / "vocab.txt").write_text("\n".join(dict.fromkeys(vocab)) + "\n")
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(dict.fromkeys(vocab)), hidden_size=32, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=64)
    BertModel(config).save_pretrained(hf)
    BertTokenizerFast(vocab_file=str(hf / "vocab.txt"), do_lower_case=False).save_pretrained(hf)
    transformer = models.Transformer(str(hf), max_seq_length=48)
    model = SentenceTransformer(modules=[transformer, models.Pooling(32, "mean"), models.Normalize()],
                                prompts={"query": "query: ", "passage": "passage: "})
    model.save(str(folder / "st"))
    return folder / "st"
