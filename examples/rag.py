#!/usr/bin/env python3
"""Retrieval-augmented answers from precompiled caches.

Scores every document of a kvz store against the question with a plain
keyword score (BM25 over the documents' words), loads the caches of the best
documents (no prefill: they were compiled by `kvz compile`) and answers. A
document compiled in segments (longer than the model's context allows) is
scored segment by segment, and its best segments are loaded; what does not
fit the context with the answer is left out, the lowest scored first.

    make demo        # or: build/kvz compile examples/corpus --store STORE
    python3 examples/rag.py --store build/demo-store "When was the lighthouse first lit?"
"""
import argparse
import math
import os
import re
import sys
from collections import Counter

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, os.path.join(ROOT, "python"))
import kvz  # noqa: E402

STOPWORDS = set("""a an and are as at be by did do does for from had has have how i in is it its
of on or that the their there this to was were what when where which who whom why will with
you your""".split())


# Scripts written without spaces between words (Chinese, Japanese, Thai, ...):
# their runs are matched by character pairs, a common stand-in for a segmenter.
UNSPACED = re.compile(r"[\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


def words(text):
    """The text's words (any script's letters and digits, lowercased), and for
    runs of an unspaced script its pairs of characters."""
    out = []
    for w in re.findall(r"\w+", text.lower()):
        if UNSPACED.search(w):
            out.extend(w[i:i + 2] for i in range(max(len(w) - 1, 1)))
        elif w not in STOPWORDS:
            out.append(w)
    return out


def rank(question, texts, k1=1.5, b=0.75):
    """BM25 scores of each text for the question's words."""
    bags = {name: Counter(words(t)) for name, t in texts.items()}
    n = len(bags)
    avg_len = sum(sum(c.values()) for c in bags.values()) / max(n, 1)
    scores = {}
    for name, bag in bags.items():
        length, score = sum(bag.values()), 0.0
        for term in set(words(question)):
            df = sum(1 for other in bags.values() if term in other)
            if not df or not bag[term]:
                continue
            idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
            tf = bag[term]
            score += idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * length / max(avg_len, 1)))
        scores[name] = score
    return sorted(scores.items(), key=lambda item: (-item[1], item[0]))


def positive(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value


def shown(name):
    """A name as printable text: bytes that are not UTF-8 (kept as surrogates) as \\xNN."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--store", required=True, help="a store made by kvz compile")
    p.add_argument("--model", default=os.environ.get("KVZ_MODEL") or
                   os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf"),
                   help="the GGUF the store was compiled with (default: $KVZ_MODEL, else the project's models/ copy)")
    p.add_argument("--top", type=positive, default=1, help="documents to load (default 1)")
    p.add_argument("--max-tokens", type=positive, default=64)
    p.add_argument("--reserve", type=positive, default=512,
                   help="context tokens kept for the question and answer (default 512)")
    p.add_argument("questions", nargs="+")
    a = p.parse_args()
    with kvz.Engine(a.store, model=a.model) as engine:
        texts = {}  # (name, segment or -1 for a whole document): text
        for name in engine.documents():
            segments = len(engine.segments(name))
            if segments == 1:
                texts[(name, -1)] = engine.text(name)
            for k in range(segments if segments > 1 else 0):
                texts[(name, k)] = engine.segment_text(name, k)
        if not texts:
            sys.exit(f"rag: no documents compiled for this model in {a.store}")
        for question in a.questions:
            ranked = [(unit, s) for unit, s in rank(question, texts) if s > 0][: a.top]
            if not ranked:
                print(f"Q: {shown(question)}\n(no document mentions any word of the question)\n")
                continue
            while True:
                parts = [name if k < 0 else (name, k, 1) for (name, k), _ in ranked]
                try:
                    session = engine.session(parts, reserve=a.reserve)
                    break
                except kvz.Error as e:
                    if e.code != kvz.ERR_RANGE or len(ranked) == 1:
                        raise
                    ranked.pop()  # too long for the context with the answer: the lowest scored goes
            with session:
                answer = session.ask(question, max_tokens=a.max_tokens)
                print(f"Q: {shown(question)}")
                print("from: " + ", ".join(f"{shown(n)}{'' if k < 0 else f' segment {k + 1}'} (score {s:.2f})"
                                           for (n, k), s in ranked))
                print(f"A: {answer.strip()}")
                print(f"(loaded {session.load_info['document_tokens']} tokens in "
                      f"{session.load_info['load_ms']:.0f} ms, first token after "
                      f"{session.last['first_token_ms']:.0f} ms)\n")


if __name__ == "__main__":
    try:
        main()
    except kvz.Error as e:  # the library's message, not a traceback
        sys.exit(f"rag: {e}")
