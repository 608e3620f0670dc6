#!/usr/bin/env python3
"""kvpress's KVzipPress on HF transformers + PyTorch, timed the way `kvz compile
--json` times KVzip: prefill of the document, then KVzip scoring (the context
reconstruction passes and the global selection), on the same model shape and
document length, for the side-by-side table in bench/RESULTS.md.

Weights are random (LlamaForCausalLM initialised from a config of the shape,
like kvz's synthetic GGUF models): the time of a forward pass does not depend
on them. The document is token ids (a file of whitespace-separated ids, as
`kvz tokenize --ids` writes, or a deterministic random stream). KVzipPress asks
for a tokenizer by the model's name_or_path; a word-level one covering the few
words of its repeat prompts is written beside the config, so nothing is
downloaded (the GPU machine reaches no network).

    bench/kvpress_compare.py --shape llama3-8b --tokens 8000,30000 --device cuda

Prints one JSON object per run. Needs torch, transformers (< 5.3, kvpress's
bound, though 5.17 runs it) and kvpress: bench/gpu.sh session sets them up from
carried wheels.
"""
import argparse
import json
from importlib import metadata
import os
import sys
import tempfile
import time

SHAPES = {
    # layers, dim, heads, kv heads, ff, vocab, rope base, tied embeddings
    # (the same as model/synth_model.c)
    "tiny": (2, 64, 4, 2, 128, 512, 10000.0, True),
    "smollm2-135m": (30, 576, 9, 3, 1536, 49152, 100000.0, True),
    "llama3-8b": (32, 4096, 32, 8, 14336, 128256, 500000.0, False),
}


def write_model_dir(path, shape, max_positions):
    """config.json and a word-level tokenizer, so from_pretrained(path) works offline."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, PreTrainedTokenizerFast

    layers, dim, heads, kv_heads, ff, vocab, rope_base, tied = SHAPES[shape]
    config = LlamaConfig(
        num_hidden_layers=layers, hidden_size=dim, num_attention_heads=heads,
        num_key_value_heads=kv_heads, intermediate_size=ff, vocab_size=vocab,
        rope_theta=rope_base, tie_word_embeddings=tied, rms_norm_eps=1e-5,
        max_position_embeddings=max_positions)
    config.save_pretrained(path)
    words = ("Repeat the previous context exactly. part of starting with \n # : , ! ? "
             "<unk>").split(" ")
    vocab_map = {w: i for i, w in enumerate(dict.fromkeys(words))}
    tok = Tokenizer(models.WordLevel(vocab=vocab_map, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>").save_pretrained(path)
    return config


def document_ids(args, n, vocab):
    import torch
    if args.ids:
        ids = [int(t) for t in open(args.ids).read().split()]
        if not ids:
            sys.exit(f"kvpress_compare: {args.ids} holds no token ids")
        ids = (ids * (n // len(ids) + 1))[:n]
        return torch.tensor([ids], dtype=torch.long)
    g = torch.Generator().manual_seed(1)
    return torch.randint(0, vocab, (1, n), generator=g)


def sync(device):
    import torch
    if device == "cuda":
        torch.cuda.synchronize()


def run(model, press, ids, device):
    """(prefill s, scoring s, kept fraction) of one KVzipPress compile."""
    import torch
    from transformers import DynamicCache

    cache = DynamicCache()
    ids = ids.to(model.device)
    sync(device)
    t0 = time.perf_counter()
    with torch.inference_mode():
        with press(model):
            model.model(input_ids=ids, past_key_values=cache)
            sync(device)
            t1 = time.perf_counter()
        sync(device)  # leaving the block runs the reconstruction passes and the selection
    t2 = time.perf_counter()
    pruned = sum(len(layer.self_attn.masked_key_indices[0]) for layer in model.model.layers
                 if getattr(layer.self_attn, "masked_key_indices", None) is not None)
    total = model.config.num_hidden_layers * model.config.num_key_value_heads * ids.shape[1]
    return t1 - t0, t2 - t1, 1.0 - pruned / total


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", choices=sorted(SHAPES), default="smollm2-135m")
    p.add_argument("--tokens", default="8000", help="comma-separated document lengths")
    p.add_argument("--ratio", type=float, default=0.3, help="fraction of KV pairs kept (kvz's --ratio)")
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    p.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    p.add_argument("--ids", help="token ids of the document (repeated to each length)")
    p.add_argument("--repeat", type=int, default=2, help="runs per length; the best is reported")
    args = p.parse_args()
    if not 0 < args.ratio <= 1:
        sys.exit("kvpress_compare: --ratio must be in (0, 1]")
    lengths = [int(t) for t in args.tokens.split(",")]

    import torch
    import transformers
    import kvpress
    from transformers import LlamaForCausalLM

    dtype = getattr(torch, args.dtype)
    with tempfile.TemporaryDirectory() as path:
        config = write_model_dir(path, args.shape, max(lengths) * 2 + 64)
        config._attn_implementation = "sdpa"  # KVzipPress refuses eager attention
        torch.manual_seed(1)
        t = time.perf_counter()
        with torch.device(args.device):
            model = LlamaForCausalLM(config).to(dtype)
        model.config.name_or_path = path
        model.eval()
        sync(args.device)
        load_s = time.perf_counter() - t
        press = kvpress.KVzipPress(compression_ratio=1.0 - args.ratio)
        name = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
        for n in lengths:
            ids = document_ids(args, n, config.vocab_size)
            best = None
            for _ in range(args.repeat):
                r = run(model, press, ids, args.device)
                if best is None or r[0] + r[1] < best[0] + best[1]:
                    best = r
                if args.device == "cuda":
                    torch.cuda.empty_cache()
            prefill_s, scoring_s, kept = best
            print(json.dumps({
                "engine": "kvpress", "press": "KVzipPress", "kvpress": metadata.version("kvpress"),
                "transformers": transformers.__version__, "torch": torch.__version__,
                "device": name, "dtype": args.dtype, "shape": args.shape, "tokens": n,
                "ratio": args.ratio, "kept": round(kept, 4), "init_s": round(load_s, 2),
                "prefill_s": round(prefill_s, 4), "scoring_s": round(scoring_s, 4),
                "tok_s": round(n / (prefill_s + scoring_s), 1),
                "peak_gpu_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2) if args.device == "cuda" else None,
            }), flush=True)


if __name__ == "__main__":
    main()
