#!/usr/bin/env python3
"""The llama.cpp anchor for `make bench`: the same GGUF, text, sizes and
threads as `kvz bench`, through llama-cpp-python. Prints one JSON line per
size, in kvz bench's format."""
import argparse
import json
import resource
import time

import llama_cpp
import numpy as np
from llama_cpp import Llama

TEXTS = ["tests/data/gpl3_excerpt.txt", "tests/data/python_datamodel.txt", "tests/data/zpipe.c"]

ap = argparse.ArgumentParser()
ap.add_argument("--model", required=True)
ap.add_argument("--prefill", type=int, required=True)
ap.add_argument("--decode", type=int, default=64)
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--repeat", type=int, default=1)
args = ap.parse_args()

llm = Llama(model_path=args.model, n_ctx=args.prefill + args.decode + 8, n_batch=512, n_ubatch=512,
            n_threads=args.threads, n_threads_batch=args.threads, verbose=False)
text_ids = []
for path in TEXTS:
    text_ids += llm.tokenize(open(path, "rb").read(), add_bos=False, special=False)
tokens = [text_ids[i % len(text_ids)] for i in range(args.prefill)]
best_pre = best_dec = float("inf")
for _ in range(args.repeat):
    llm.reset()
    t0 = time.perf_counter()
    llm.eval(tokens)
    t1 = time.perf_counter()
    for _ in range(args.decode):
        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(llm.n_vocab(),))
        nxt = int(logits.argmax())
        llm.eval([nxt])
    t2 = time.perf_counter()
    best_pre, best_dec = min(best_pre, t1 - t0), min(best_dec, t2 - t1)
print(json.dumps({"engine": "llama.cpp %s" % llama_cpp.__version__, "prefill_tokens": args.prefill,
                  "prefill_s": round(best_pre, 4), "prefill_tok_s": round(args.prefill / best_pre, 1),
                  "decode_tokens": args.decode, "decode_tok_s": round(args.decode / best_dec, 2) if args.decode else None,
                  "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}))
