"""Train the demo's SentencePiece tokenizer and write it in both forms.

Why it exists: preprocessing reads the SentencePiece ``.model``; the exported model needs a
``tokenizer.json`` that ``AutoTokenizer`` / sentence-transformers load offline. The Unigram pieces
and scores are copied into a ``tokenizers`` Unigram model with SentencePiece's ``nmt_nfkc``
normalisation (control characters dropped, NMT spaces, NFKC, extra whitespace removed) and "▁"
word-boundary handling, so both produce the same ids — tests check it on the whole demo corpus, on
whitespace edge cases and on every character up to U+30FF (tests/real/test_tokenization_contract.py).
"""

from __future__ import annotations

from pathlib import Path


def train_sentencepiece(text_file: str | Path, output: str | Path, *, vocab_size: int = 1000,
                        seed: int = 0) -> Path:
    import sentencepiece as spm
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
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
    tok.normalizer = nmt_nfkc()
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>",
                            bos_token="<s>", eos_token="</s>").save_pretrained(str(output))
    return output


# SentencePiece's nmt_nfkc rules (normalizer.cc): these control characters are dropped, these
# spaces become U+0020, before NFKC; then remove_extra_whitespaces strips and collapses spaces.
# Checked character by character against sentencepiece (one known difference: U+0344 after a letter,
# which SentencePiece's per-character map does not recompose).
_SP_DROPPED = [*range(0x01, 0x09), 0x0B, *range(0x0E, 0x20), 0x7F, 0x8F, 0x9F]
_SP_SPACES = [0x09, 0x0A, 0x0C, 0x0D, 0x061C, 0x1680, 0x200B, 0x200C, 0x200E, 0x200F, 0x2028,
              0x2029, 0x2581, 0xFEFF, 0xFFFD]


def nmt_nfkc():
    """A ``tokenizers`` normalizer giving SentencePiece's default ``nmt_nfkc`` normalisation."""
    from tokenizers import Regex, normalizers

    def chars(codes: list[int]) -> Regex:
        return Regex("[" + "".join(f"\\x{{{c:x}}}" for c in codes) + "]")

    return normalizers.Sequence([
        normalizers.Replace(chars(_SP_DROPPED), ""), normalizers.Replace(chars(_SP_SPACES), " "),
        normalizers.NFKC(), normalizers.Strip(), normalizers.Replace(Regex(" {2,}"), " ")])
