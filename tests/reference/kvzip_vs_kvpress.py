#!/usr/bin/env python3
"""kvz's KVzip selection against two implementations it shares no code with,
on the same model and the same tokens.

kvz compiles a document (`--method kvzip --bits 16`); its artifact (read with
tests/format/spec_reader.py, not with kvz) gives the pairs it kept. The same
GGUF is loaded into HF transformers (dequantized to f32) and scores the same
tokens ([kvz's prefix | the document]) twice:

* reference: DESIGN.md §4's KVzip computed from transformers' eager attention
  probabilities over kvz's own pass tokens (each pass's rows renormalised over
  [prefix | its chunk | the pass], max over the GQA group and the rows). It
  shares only the tokens with kvz, so kvz should keep exactly its pairs.
* kvpress: kvpress's KVzipPress, its own passes and scoring code. Two settings
  align it with DESIGN.md's KVzip, which it otherwise follows: its softmax over
  "sinks" spans kvz's whole prefix (n_sink = the prefix's length; its default
  is 4 tokens), and its context starts after that prefix. Its pass prompts are
  its own tokens, the same as kvz's since kvz tokenizes the blank line and
  the prompt as one string (--reference-prompts kvpress scores the reference
  with kvpress's prompt tokens instead).

Each reference's scores are cut at kvz's count of kept pairs, the highest over
all layers and heads (DESIGN §4's global threshold), so the sets have the same
size. Prints, per document, the share of kvz's kept pairs each also keeps
(two random selections of that size would share the ratio), the Jaccard
index, the share of kvpress's the reference keeps, and the pairs kept per
layer. Exit 1 when a share is under its least
(--min-reference, --min-kvpress).

    python3 tests/reference/kvzip_vs_kvpress.py --doc tests/data/gpl3_excerpt.txt

Needs torch, transformers, gguf and kvpress 0.5.5 (a venv of its own, as
bench/kvpress_cpu.sh's: `pip install kvpress==0.5.5 gguf`), numpy, xxhash and
zstandard (spec_reader), and a built kvz. Documents of one segment only.
Nothing in CI runs it.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TQDM_DISABLE", "1")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "format"))
import numpy as np  # noqa: E402
import spec_reader  # noqa: E402


def kvz_selection(kvz, model, doc, ratio, chunk, tmp):
    """(prefix length, its hash, document token ids, {(layer, head): kept positions})."""
    store = os.path.join(tmp, "store")
    art = os.path.join(tmp, "doc.kvz")
    subprocess.run([kvz, "compile", doc, "--store", store, "--model", model, "--device", "cpu", "--method",
                    "kvzip", "--ratio", str(ratio), "--kvzip-chunk", str(chunk), "--bits", "16", "--quiet"],
                   check=True)
    info = json.loads(subprocess.run([kvz, "inspect", "--store", store, doc, "--json"], check=True,
                                     capture_output=True, text=True).stdout.splitlines()[0])
    if info["n_segments"] != 1:
        sys.exit("kvzip_vs_kvpress: %s compiles to %d segments; give a shorter document" %
                 (doc, info["n_segments"]))
    subprocess.run([kvz, "export", "--store", store, doc, "-o", art, "--quiet"], check=True)
    a = spec_reader.Artifact(open(art, "rb").read(), art)
    return info["prefix_tokens"], a.m["prefix_hash"], [int(t) for t in a.tokens], a.pos


# The passes' prompts (compiler/score.c; kvpress's are the same words) and the
# instruction that ends kvz's prefix (model/prompt.h).
FIRST = "Repeat the previous context exactly."
LATER = "Repeat the part of the previous context exactly, starting with"
INSTRUCTION = "Answer the question that follows the context, using only the context.\n\nContext:\n"


class HfModel:
    """The GGUF loaded once into HF transformers (f32): its tokenizer, the model
    with SDPA attention (kvpress's) and with eager attention (the reference's,
    which needs the probabilities), and the text of kvz's prefix and of the
    close of the user turn, from the template's own rendering."""

    def __init__(self, path):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        folder, name = os.path.split(os.path.abspath(path))
        self.tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        self.sdpa = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32).eval()
        self.eager = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32,
                                                          attn_implementation="eager").eval()
        marker = "\x00DOCUMENT\x00"
        rendered = self.tok.apply_chat_template([{"role": "user", "content": marker}], tokenize=False,
                                                add_generation_prompt=True)
        before, self.close_text = rendered.split(marker)
        self.prefix_text = before + INSTRUCTION

    def encode(self, text):
        return self.tok.encode(text, add_special_tokens=False)


def kvpress_scores(hf, ids, prefix_len, chunk):
    """kvpress's KVzip scores (layers, kv heads, len(ids))."""
    import torch
    from kvpress import KVzipPress
    from kvpress.presses import kvzip_press
    from transformers import DynamicCache

    # KVzipPress loads the tokenizer by the model's name_or_path. A GGUF's,
    # saved with save_pretrained and loaded again, turns spaces and newlines
    # into token 0 (transformers 5.2.0): its passes' prompts would be garbled.
    # So it gets the loaded one.
    class GivenTokenizer:
        @staticmethod
        def from_pretrained(*args, **kwargs):
            return hf.tok

    class AlignedKVzip(KVzipPress):
        def prepare(self, model, tokenizer, prev_postfix_size=8):
            self.prefix_length = prefix_len  # the context starts after kvz's prefix
            pairs = super().prepare(model, tokenizer, prev_postfix_size)
            self.prompts = [r[0, :r.shape[1] - a.shape[1]].tolist() for a, r in pairs]
            return pairs

        def compress_post(self, model):
            self.captured = self.score_val.detach().float().clone()
            super().compress_post(model)

    press = AlignedKVzip(compression_ratio=0.5, n_sink=prefix_len, chunk_size=chunk)
    saved, kvzip_press.AutoTokenizer = kvzip_press.AutoTokenizer, GivenTokenizer
    try:
        with torch.inference_mode():
            with press(hf.sdpa):  # a fresh prefill clears what the last document's masked
                hf.sdpa.model(input_ids=torch.tensor([ids]), past_key_values=DynamicCache())
    finally:
        kvzip_press.AutoTokenizer = saved
    if any(0 in p for p in press.prompts):  # SmolLM2's <|endoftext|>: a garbled prompt
        sys.exit("kvzip_vs_kvpress: a kvpress pass prompt holds token 0: %s" % press.prompts)
    return press.captured[:, 0].numpy()


def kvz_tokenize(kvz, model_path, text):
    """text -> token ids, by kvz (control-token texts become their tokens)."""
    return [int(t) for t in subprocess.run([kvz, "tokenize", "--model", model_path], input=text,
                                           capture_output=True, text=True, check=True).stdout.split()]


def passes(doc_ids, chunk, first, later, close):
    """KVzip's passes as compiler/score.c builds them, (c0, c1, tokens) per
    chunk: the first prompt, or the later one quoting the 8 tokens before the
    chunk; the close of the user turn; the chunk."""
    out = []
    for c0 in range(0, len(doc_ids), chunk):
        c1 = min(c0 + chunk, len(doc_ids))
        prompt = first if c0 == 0 else later + doc_ids[c0 - 8:c0]
        out.append((c0, c1, prompt + close + doc_ids[c0:c1]))
    return out


def prompt_tokens(whose, hf, kvz, model_path):
    """(first, later, close) prompt tokens, "\\n\\n" and the prompt as one
    string: kvz's by kvz (model/prompt.c), kvpress's by transformers
    (KVzipPress.prepare). Before kvz tokenized them as one string (2026-12-05)
    it made the "\\n\\n" one token and kvpress two."""
    if whose == "kvz":
        def tokenize(text):
            return kvz_tokenize(kvz, model_path, text)
        return tokenize("\n\n" + FIRST), tokenize("\n\n" + LATER), tokenize(hf.close_text)
    return hf.encode("\n\n" + FIRST), hf.encode("\n\n" + LATER), hf.encode(hf.close_text)


def reference_scores(hf, prefix, doc_ids, pass_list):
    """DESIGN §4's KVzip scores computed from HF transformers' eager attention
    probabilities (f32), with the passes' tokens: for each pass, the rows of its
    tokens renormalised over [prefix | the chunk | the pass], then the max over
    the GQA group and the rows. Shares only the tokens with kvz (or kvpress)."""
    import torch

    cfg = hf.eager.config
    L, H = cfg.num_hidden_layers, cfg.num_key_value_heads
    G = cfg.num_attention_heads // H
    P, n = len(prefix), len(doc_ids)
    scores = np.zeros((L, H, n), dtype=np.float32)
    for c0, c1, pass_ids in pass_list:
        q = len(pass_ids)

        def reduce(module, args, kwargs, output, c0=c0, c1=c1, q=q):
            rows = output[1][0, :, -q:, :]  # (heads, q, P + n + q): the pass's rows
            mass = rows[..., :P].sum(-1) + rows[..., P + c0:P + c1].sum(-1) + rows[..., P + n:].sum(-1)
            s = rows[..., P + c0:P + c1] / mass[..., None]
            s = s.reshape(H, G, q, c1 - c0).amax(dim=(1, 2))
            scores[module.layer_idx, :, c0:c1] = s.numpy()
            return (output[0], None)  # the probabilities are not kept

        hooks = [layer.self_attn.register_forward_hook(reduce, with_kwargs=True) for layer in hf.eager.model.layers]
        try:
            with torch.inference_mode():
                hf.eager.model(input_ids=torch.tensor([prefix + doc_ids + pass_ids]))
        finally:
            for h in hooks:
                h.remove()
    return scores


def top_pairs(scores, k):
    """The k highest scores over all layers and heads (DESIGN §4's global
    threshold), as a mask of scores' shape."""
    mask = np.zeros(scores.size, dtype=bool)
    mask[np.argsort(-scores.reshape(-1), kind="stable")[:k]] = True
    return mask.reshape(scores.shape)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--doc", action="append", required=True, help="a document (repeatable)")
    p.add_argument("--model", default=os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    p.add_argument("--kvz", default=os.path.join(ROOT, "build", "kvz"))
    p.add_argument("--ratio", type=float, default=0.3)
    p.add_argument("--min-kvpress", type=float, default=0.9,
                   help="least share of kvz's kept pairs that kvpress must keep too")
    p.add_argument("--min-reference", type=float, default=0.99,
                   help="least share of kvz's kept pairs that the eager-attention reference must keep too")
    p.add_argument("--chunk", type=int, default=2048, help="document tokens per KVzip pass (kvz's --kvzip-chunk)")
    p.add_argument("--reference-prompts", choices=["kvz", "kvpress"], default="kvz",
                   help="whose pass prompt tokens the reference scores with (kvpress: then it should "
                        "keep kvpress's pairs, and kvz's less; lower --min-reference)")
    args = p.parse_args()
    hf = HfModel(args.model)
    prefix = kvz_tokenize(args.kvz, args.model, hf.prefix_text)
    first, later, close = prompt_tokens(args.reference_prompts, hf, args.kvz, args.model)
    failed = []
    for doc in args.doc:
        with tempfile.TemporaryDirectory() as tmp:
            P, prefix_hash, doc_ids, kept = kvz_selection(args.kvz, args.model, doc, args.ratio, args.chunk, tmp)
        if len(prefix) != P or spec_reader.xxh64(np.asarray(prefix, dtype="<u4").tobytes()) != prefix_hash:
            sys.exit("kvzip_vs_kvpress: the prefix rebuilt here (%d tokens) is not kvz's (%d tokens, "
                     "manifest prefix_hash)" % (len(prefix), P))
        n = len(doc_ids)
        reference = reference_scores(hf, prefix, doc_ids, passes(doc_ids, args.chunk, first, later, close))
        L, H = reference.shape[:2]
        ours = np.zeros((L, H, n), dtype=bool)
        for (l, h), pos in kept.items():
            ours[l, h, np.asarray(pos, dtype=np.int64)] = True
        k = int(ours.sum())
        theirs = top_pairs(kvpress_scores(hf, prefix + doc_ids, P, args.chunk)[:, :, P:P + n], k)
        ref = top_pairs(reference, k)
        row = {"document": doc, "tokens": n, "prefix": P, "chunks": (n + args.chunk - 1) // args.chunk,
               "kept_pairs": k, "random_share": round(k / (L * H * n), 4)}
        for label, other, least in (("kvpress", theirs, args.min_kvpress), ("reference", ref, args.min_reference)):
            both = int((ours & other).sum())
            share = both / k
            row["share_kept_by_" + label] = round(share, 4)
            row["jaccard_" + label] = round(both / int((ours | other).sum()), 4)
            if share < least:
                failed.append("%s: %.4f of kvz's kept pairs are %s's too (least %.2f)" % (doc, share, label, least))
        row["share_of_kvpress_kept_by_reference"] = round(int((ref & theirs).sum()) / k, 4)
        row["kept_per_layer"] = {"kvz": ours.sum(axis=(1, 2)).tolist(), "kvpress": theirs.sum(axis=(1, 2)).tolist(),
                                 "reference": ref.sum(axis=(1, 2)).tolist()}
        print(json.dumps(row), flush=True)
    for f in failed:
        print("kvzip_vs_kvpress: " + f, file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
