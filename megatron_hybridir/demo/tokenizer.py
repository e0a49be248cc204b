"""Train the demo's SentencePiece tokenizer and write it in both forms.

Why it exists: preprocessing reads the SentencePiece ``.model``; the exported model needs a
``tokenizer.json`` that ``AutoTokenizer`` / sentence-transformers load offline. The Unigram pieces
and scores are copied into a ``tokenizers`` Unigram model with SentencePiece's NFKC normalisation
and "▁" word-boundary handling (what transformers' SentencePiece converter does), so both produce
the same ids — a test checks it on the whole demo corpus.
"""

from __future__ import annotations

from pathlib import Path


def train_sentencepiece(text_file: str | Path, output: str | Path, *, vocab_size: int = 1000,
                        seed: int = 0) -> Path:
    import sentencepiece as spm
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    spm.SentencePieceTrainer.train(
        input=str(text_file), model_prefix=str(output / "spm"), vocab_size=vocab_size,
        model_type="unigram", character_coverage=1.0, pad_id=3, pad_piece="<pad>",
        hard_vocab_limit=False, num_threads=1, minloglevel=2)
    sp = spm.SentencePieceProcessor(model_file=str(output / "spm.model"))
    vocab = [(sp.id_to_piece(i), sp.get_score(i)) for i in range(sp.get_piece_size())]
    tok = Tokenizer(models.Unigram(vocab, unk_id=sp.unk_id(), byte_fallback=False))
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>",
                            bos_token="<s>", eos_token="</s>").save_pretrained(str(output))
    return output
