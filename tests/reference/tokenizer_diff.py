#!/usr/bin/env python3
"""Differential test: kvz tokenize/detokenize vs llama.cpp (llama-cpp-python, vocab_only).

Usage (in the test-only environment of tests/reference/setup_venv.sh, from the repository root):
    python tests/reference/tokenizer_diff.py [--seed 1234] [--per-cat 400] [--kvz build/kvz]
        [--model models/SmolLM2-135M-Instruct.Q4_1.gguf] [--out /tmp/tokenizer_diff]
        [--no-minimize] [--no-vocab-detok]

Text that is not UTF-8 differs by design (kvz's tokenizer takes it byte by byte, llama.cpp
reads each bad byte as U+FFFD; compile, query and generate refuse it): every other mismatch
is a bug. 2026-12-06, seed 4242, 4,066 texts: none on valid UTF-8 (before the fix of
model/pretokenize.c's classes: U+180E and Unicode 15 letters and digits).

Generates deterministic texts per category, tokenizes each with `kvz tokenize`
(special mode: default; no-special mode: --no-special) and with llama.cpp
(tokenize(text, add_bos=False, special=True/False)), compares ids exactly,
detokenizes kvz's ids with `kvz detokenize` (and --no-special) and compares with
llama.cpp's detokenize(ids, special=True/False). Mismatches are minimised (ddmin
over code points; invalid bytes are units of their own) and written to
OUT/mismatches.json; a summary to OUT/summary.json.
"""
import argparse
import collections
import concurrent.futures as cf
import json
import multiprocessing as mp
import os
import random
import subprocess
import sys
import time

os.environ.setdefault("GGML_NO_BACKTRACE", "1")  # llama.cpp aborts on some invalid UTF-8; no gdb dump
KVZ = "build/kvz"
MODEL = "models/SmolLM2-135M-Instruct.Q4_1.gguf"

# --------------------------------------------------------------------------- generators

WORDS = ("the of and to in is was that for it with as his on be at by had are but from or have an they "
         "which one you were her all she there would their we him been has when who will more no if out so "
         "said what up its about into than them can only other new some could time these two may then do "
         "first any my now such like our over man me even most made after also did many before must through "
         "back years where much your way well down should because each just those people how too little state "
         "good very make world still own see men work long get here between both life being under never day "
         "same another know while last might us great old year off come since against go came right used take "
         "three tokenizer merges byte encoding Unicode llama kvz cache compile Python JSON quick brown fox lazy "
         "dog naïve café résumé coöperate façade jalapeño Übermaß Ångström São Paulo déjà vu").split()
CAP = lambda w: w[:1].upper() + w[1:]

ASCII_PUNCT = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"
UNI_PUNCT = "—–…«»“”„‚‘’¿¡·•§¶†‡‰′″‹›、。，！？：；（）【】「」『』〈〉《》・"
SPACES = [" ", "\t", "\n", "\r\n", "\r", "\x0b", "\x0c", "\u00a0", "\u1680", "\u2000", "\u2001", "\u2002",
          "\u2003", "\u2004", "\u2005", "\u2006", "\u2007", "\u2008", "\u2009", "\u200a", "\u200b", "\u2028",
          "\u2029", "\u202f", "\u205f", "\u3000", "\u0085", "\u180e", "\ufeff", "\u2060", "\x1c", "\x1d",
          "\x1e", "\x1f", "\n\n\n", "  ", "    "]
APOS = ["'", "'", "'", "’", "‘", "ʼ", "`", "´", "＇"]
CONTR = ["s", "t", "re", "ve", "m", "ll", "d"]
MARKS = [chr(c) for c in list(range(0x300, 0x370)) + list(range(0x1AB0, 0x1ACF)) + list(range(0x20D0, 0x20F1))
         + list(range(0xFE20, 0xFE30)) + [0x0483, 0x0591, 0x05B0, 0x064B, 0x0670, 0x093C, 0x094D, 0x0E31, 0x0E48]]
EMOJI = ["😀", "😂", "🥲", "🍕", "🎉", "🚀", "❤", "❤️", "✨", "👍", "👋", "🤖", "🐍", "🦀", "🌍", "☕", "⭐", "🔥",
         "💯", "🙏", "👨", "👩", "👧", "👦", "🧑", "🏳", "🏴", "⚧", "☠", "🫠", "🪿", "🩷"]
SKIN = [chr(c) for c in range(0x1F3FB, 0x1F400)]
ZWJ_SEQ = ["👨\u200d👩\u200d👧\u200d👦", "👩\u200d❤️\u200d💋\u200d👨", "🏳️\u200d🌈", "🏴\u200d☠️", "🧑🏽\u200d💻",
           "👩🏿\u200d🚀", "🐕\u200d🦺", "👁️\u200d🗨️", "🧔\u200d♀️", "🏃🏻\u200d♂️\u200d➡️"]
FLAGS = ["🇫🇷", "🇯🇵", "🇺🇸", "🇩🇪", "🇧🇷", "🇺🇳", "🏴\U000e0067\U000e0062\U000e0065\U000e006e\U000e0067\U000e007f"]
KEYCAPS = [d + "\ufe0f\u20e3" for d in "0123456789#*"] + ["1\u20e3"]
UNIDIGITS = "٠١٢٣٤٥٦٧٨٩۰۱۲۳۴۵۶۷۸۹०१२३४५६७८९০১২৩০১๐๑๒๓๔๕๖๗๘๙０１２３４５６７８９¹²³⁰⁴⁵⁶⁷⁸⁹₀₁₂₃½¼¾⅓ⅠⅡⅢⅣⅤⅫⅰⅱ①②③⑩⑳𝟎𝟏𝟐𝟗𝟘𝟙𝟿〇"


def rch(r, lo, hi):
    return chr(r.randint(lo, hi))


def rword(r):
    w = r.choice(WORDS)
    x = r.random()
    if x < 0.15:
        w = CAP(w)
    elif x < 0.2:
        w = w.upper()
    elif x < 0.3:
        w = "".join(r.choice("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(r.randint(1, 14)))
    return w


def g_prose(r):
    out = []
    for _ in range(r.randint(1, 4)):
        s = [CAP(rword(r))] + [rword(r) for _ in range(r.randint(0, 18))]
        for i in range(1, len(s)):
            if r.random() < 0.1:
                s[i] = s[i] + r.choice([",", ";", ":", " -", " —", "'s", "n't", "(", ")"])
        out.append(" ".join(s) + r.choice([".", "!", "?", "...", "", ".\n", ".\n\n", ". ", "?!"]))
    return r.choice(["", " ", "\n"]) * (r.random() < 0.2) + " ".join(out)


def ident(r):
    return r.choice(["x", "i", "n", "buf", "self", "argv", "kv_cache", "tokenizeText", "__init__", "_p", "MAX_LEN",
                     "fooBar2", "a1", "list", "dict", "np", "std", "ptr"]) + (str(r.randint(0, 99)) if r.random() < .2 else "")


def g_code(r):
    k = r.randint(0, 5)
    ind = r.choice(["    ", "\t", "  ", "        ", "\t\t"])
    if k == 0:  # python
        return ("def %s(%s, %s=%d):\n%sreturn [%s ** 2 for %s in range(%s) if %s %% %d != 0]  # %s\n" %
                (ident(r), ident(r), ident(r), r.randint(0, 9999), ind, ident(r), ident(r), ident(r), ident(r),
                 r.randint(1, 9), rword(r)) + ("\n" * r.randint(0, 3)) +
                "class %s(object):\n%s'''%s'''\n%sx: dict[str, int] = {'a': 1, \"b\": 2.5e-3}\n" %
                (CAP(ident(r)), ind, rword(r), ind))
    if k == 1:  # C
        return ("#include <stdio.h>\nint %s(int argc, char **argv) {\n%sfor (int i = 0; i < argc; i++) {\n%s%sprintf(\"%%s\\n\", argv[i]);\n%s}\n%sreturn %d;\n}\n" %
                (ident(r), ind, ind, ind, ind, ind, r.randint(-5, 5)) +
                "x->y += 0x%X; a[i]<<=2; /* %s */ // %s\r\n" % (r.randint(0, 1 << 32), rword(r), rword(r)))
    if k == 2:  # json
        d = {rword(r): r.choice([r.randint(-10**9, 10**9), r.random(), True, None, rword(r), [1, 2, {"k": "v"}]])
             for _ in range(r.randint(1, 6))}
        return json.dumps(d, indent=r.choice([None, 2, 4, "\t"]), ensure_ascii=r.random() < 0.5)
    if k == 3:  # shell
        return ("#!/bin/sh\nset -eu\nfor f in *.%s; do\n%sgrep -rn '%s' \"$f\" | awk '{print $%d}' >> out.log 2>&1 && echo ok || exit 1\ndone\n" %
                (rword(r), ind, rword(r), r.randint(1, 9)) + "export PATH=$HOME/bin:$PATH; ls -la ~/ && cd -\n")
    if k == 4:  # misc operators
        ops = ["==", "!=", "<=", ">=", "->", "=>", "::", "&&", "||", "**", "//", "...", "+=", "<<", ">>", "?.", "??", ":=", "===", "!==", "<>"]
        return " ".join(r.choice([ident(r), r.choice(ops), str(r.randint(0, 1000)), "(", ")", "{", "}", ";", "\n" + ind]) for _ in range(r.randint(3, 40)))
    return "```%s\n%s\n```\n" % (r.choice(["py", "c", "json", "sh", ""]), "\n".join(ind * r.randint(0, 3) + ident(r) + " = " + ident(r) + "(" + str(r.random()) + ")" for _ in range(r.randint(1, 6))))


def g_numbers(r):
    parts = []
    for _ in range(r.randint(1, 8)):
        n = "".join(r.choice("0123456789") for _ in range(r.choice([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 16, 20, 33, r.randint(1, 60)])))
        k = r.random()
        if k < 0.2:
            n = "{:,}".format(int(n))
        elif k < 0.3:
            n = n[:max(1, len(n) // 2)] + "." + n[len(n) // 2:]
        elif k < 0.35:
            n = n + "e" + r.choice(["+", "-", ""]) + str(r.randint(0, 300))
        elif k < 0.4:
            n = "_".join(n[i:i + 3] for i in range(0, len(n), 3))
        elif k < 0.45:
            n = r.choice(["0x", "0b", "0o", "#", "$", "€", "£", "-", "+", "−"]) + n
        elif k < 0.5:
            n = n + r.choice(["%", "px", "kg", "th", "st", "ms", "°C", "k", "M"])
        elif k < 0.6:
            n = "".join(r.choice(UNIDIGITS) for _ in range(r.randint(1, 12)))
        elif k < 0.65:
            n = "%d-%02d-%02dT%02d:%02d:%02d" % (r.randint(1900, 2100), r.randint(1, 12), r.randint(1, 28), r.randint(0, 23), r.randint(0, 59), r.randint(0, 59))
        elif k < 0.7:
            n = ".".join(str(r.randint(0, 255)) for _ in range(4))
        elif k < 0.75:
            n = "+1 (%03d) %03d-%04d" % (r.randint(0, 999), r.randint(0, 999), r.randint(0, 9999))
        elif k < 0.8:
            n = n + r.choice(["/", ":", "x", "×", "-", " "]) + n[::-1]
        parts.append(n)
    return r.choice([" ", ", ", "\n", "", " and ", "\t", "a", "\u00a0"]).join(parts)


def g_whitespace(r):
    out = []
    for _ in range(r.randint(1, 10)):
        x = r.random()
        if x < 0.5:
            out.append("".join(r.choice(SPACES) for _ in range(r.randint(1, 6))))
        elif x < 0.8:
            out.append(rword(r))
        else:
            out.append(r.choice(["1", "42", "!", "(", "'s", "😀", "中", "é", "-", "\u0301"]))
    s = "".join(out)
    if r.random() < 0.3:
        s += " " * r.randint(1, 4)
    return s


def g_contractions(r):
    out = []
    for _ in range(r.randint(1, 8)):
        c = r.choice(CONTR)
        c = "".join(ch.upper() if r.random() < 0.3 else ch for ch in c)
        pre = r.choice(["", rword(r), "I", "don", "can", "we", "they", " ", "  ", "\n", "1", "'", "!", "(", "é", "中", "😀"])
        post = r.choice(["", " ", "s", "x", "'", ".", "est", "\n", "1", "ll", "é", "   "])
        out.append(pre + r.choice(APOS) + c + post)
    return r.choice([" ", "", "\n", ", "]).join(out)


def g_punct(r):
    out = []
    for _ in range(r.randint(1, 8)):
        pool = ASCII_PUNCT if r.random() < 0.7 else UNI_PUNCT
        run = "".join(r.choice(pool) for _ in range(r.randint(1, 12)))
        if r.random() < 0.3:
            run = r.choice(pool) * r.randint(2, 20)
        out.append(run)
    return "".join(x + r.choice(["", " ", "  ", "\n", rword(r), " " + rword(r), "1", "\t"]) for x in out)


def g_combining(r):
    out = []
    for _ in range(r.randint(1, 10)):
        base = r.choice(["a", "e", "o", "u", "A", "n", "c", "z", "α", "ω", "д", "я", " ", "1", "!", "", "ı", "ß", "中"])
        out.append(base + "".join(r.choice(MARKS) for _ in range(r.randint(0, 4))) + (rword(r) if r.random() < 0.3 else ""))
    return r.choice(["", " ", "\n"]).join(out)


def g_cjk(r):
    out = []
    for _ in range(r.randint(1, 8)):
        k = r.random()
        if k < 0.3:
            s = "".join(rch(r, 0x4E00, 0x9FFF) for _ in range(r.randint(1, 10)))
        elif k < 0.4:
            s = "".join(rch(r, 0x3400, 0x4DBF) if r.random() < .5 else rch(r, 0x20000, 0x2A6DF) for _ in range(r.randint(1, 5)))
        elif k < 0.55:
            s = "".join(rch(r, 0x3041, 0x3096) for _ in range(r.randint(1, 10)))
        elif k < 0.7:
            s = "".join(rch(r, 0x30A1, 0x30FA) for _ in range(r.randint(1, 10))) + r.choice(["", "ー", "ッ"])
        elif k < 0.85:
            s = "".join(rch(r, 0xAC00, 0xD7A3) for _ in range(r.randint(1, 8)))
        elif k < 0.9:
            s = "".join(rch(r, 0x1100, 0x11FF) if r.random() < .5 else rch(r, 0x3131, 0x318E) for _ in range(r.randint(1, 6)))
        else:
            s = "".join(rch(r, 0xFF01, 0xFF9F) if r.random() < .6 else rch(r, 0x3000, 0x303F) for _ in range(r.randint(1, 6)))
        out.append(s)
    return "".join(x + r.choice(["", "", " ", "。", "、", "，", "\n", rword(r), "1", "２"]) for x in out)


def g_rtl(r):
    out = []
    for _ in range(r.randint(1, 8)):
        k = r.random()
        if k < 0.45:
            s = "".join(rch(r, 0x0621, 0x064A) + ("".join(rch(r, 0x064B, 0x065F) for _ in range(r.randint(0, 2))) if r.random() < .3 else "") for _ in range(r.randint(1, 8)))
        elif k < 0.8:
            s = "".join(rch(r, 0x05D0, 0x05EA) + (rch(r, 0x05B0, 0x05BD) if r.random() < .3 else "") for _ in range(r.randint(1, 8)))
        else:
            s = r.choice(["\u200e", "\u200f", "\u061c", "ـ", "،", "؛", "؟", "٪", "٫", "٬", "׳", "״", "\u202b", "\u202c"]) + "".join(rch(r, 0x0660, 0x0669) for _ in range(r.randint(0, 4)))
        out.append(s)
    return r.choice([" ", "", "\n", ". "]).join(out)


def g_indic_thai(r):
    out = []
    for _ in range(r.randint(1, 8)):
        k = r.random()
        if k < 0.4:
            s = "".join(rch(r, 0x0905, 0x0939) + r.choice(["", "", "\u094d", "\u093e", "\u093f", "\u0940", "\u0947", "\u0902", "\u093c", "\u0903"]) for _ in range(r.randint(1, 8)))
        elif k < 0.75:
            s = "".join(rch(r, 0x0E01, 0x0E2E) + r.choice(["", "", "\u0e31", "\u0e34", "\u0e48", "\u0e49", "\u0e47", "\u0e38"]) for _ in range(r.randint(1, 10)))
        elif k < 0.85:
            s = "".join(rch(r, 0x0980, 0x09FF) for _ in range(r.randint(1, 6)))
        else:
            s = "".join(rch(r, 0x0B80, 0x0BFF) for _ in range(r.randint(1, 6))) + r.choice(["।", "॥", "๏", "ๆ", "๚"])
        out.append(s)
    return r.choice([" ", "", "\n"]).join(out)


def g_emoji(r):
    out = []
    for _ in range(r.randint(1, 10)):
        k = r.random()
        if k < 0.3:
            s = r.choice(EMOJI) + (r.choice(SKIN) if r.random() < 0.3 else "") + ("\ufe0f" if r.random() < 0.2 else "")
        elif k < 0.5:
            s = r.choice(ZWJ_SEQ)
        elif k < 0.65:
            s = r.choice(FLAGS) if r.random() < 0.7 else "".join(rch(r, 0x1F1E6, 0x1F1FF) for _ in range(r.randint(1, 5)))
        elif k < 0.75:
            s = r.choice(KEYCAPS)
        elif k < 0.9:
            s = "".join(rch(r, 0x1F300, 0x1FAFF) for _ in range(r.randint(1, 4)))
        else:
            s = r.choice(SKIN) + r.choice(["\u200d", "\ufe0e", "\ufe0f", "\u20e3"]) * r.randint(1, 3)
        out.append(s)
    return "".join(x + r.choice(["", "", " ", "  ", "\n", rword(r), "!", " " + rword(r)]) for x in out)


def g_math(r):
    out = []
    for _ in range(r.randint(1, 10)):
        k = r.random()
        if k < 0.4:
            s = "".join(rch(r, 0x1D400, 0x1D7FF) for _ in range(r.randint(1, 8)))
        elif k < 0.55:
            s = "".join(rch(r, 0x2100, 0x214F) for _ in range(r.randint(1, 4)))
        elif k < 0.75:
            s = "".join(rch(r, 0x2200, 0x22FF) for _ in range(r.randint(1, 4)))
        elif k < 0.85:
            s = "".join(r.choice("⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻⁼⁽⁾ⁿ₀₁₂₃₄₅₆₇₈₉₊₋ₐₑₒₓᵢⱼ") for _ in range(r.randint(1, 5)))
        else:
            s = r.choice(["∀x ∈ ℝ", "∑ᵢ aᵢ", "√2 ≈ 1.414", "α→β", "x² + y² = z²", "∫₀^∞ e^{-x} dx", "𝔼[X]", "ℏω", "⟨ψ|φ⟩"])
        out.append(s)
    return r.choice([" ", "", " = ", "\n", "+"]).join(out)


OVERLONG = [b"\xc0\x80", b"\xc0\xaf", b"\xc1\xbf", b"\xe0\x80\x80", b"\xe0\x80\xaf", b"\xe0\x9f\xbf",
            b"\xf0\x80\x80\x80", b"\xf0\x8f\xbf\xbf", b"\xc1\x81"]
SURR = [b"\xed\xa0\x80", b"\xed\xbf\xbf", b"\xed\xa0\xbd\xed\xb8\x80", b"\xed\xb0\x80", b"\xed\x9f\xbf"]
BAD = [b"\x80", b"\xbf", b"\x8f\x8f", b"\xc2", b"\xe4\xb8", b"\xf0\x9f\x98", b"\xf0\x9f", b"\xe2\x82",
       b"\xf5\x80\x80\x80", b"\xf8\x88\x80\x80\x80", b"\xfc\x84\x80\x80\x80\x80", b"\xfe", b"\xff", b"\xfe\xff",
       b"\xff\xfe", b"\xf4\x90\x80\x80", b"\xf7\xbf\xbf\xbf", b"\xc2\x41", b"\xe0\xa0\x41", b"\xc3\x28",
       b"\xa0\xa1", b"\xef\xbf\xbd", b"\xef\xbf\xbe", b"\xf4\x8f\xbf\xbf", b"\xc3\xa9\x80"]


def g_invalid(r):
    base = r.choice([g_prose, g_cjk, g_emoji, g_whitespace, g_contractions, g_numbers])(r).encode("utf-8")
    out = bytearray(base)
    for _ in range(r.randint(1, 4)):
        k = r.random()
        if k < 0.3:
            ins = r.choice(OVERLONG)
        elif k < 0.5:
            ins = r.choice(SURR)
        elif k < 0.85:
            ins = r.choice(BAD)
        else:
            ins = bytes(r.randint(0x80, 0xFF) for _ in range(r.randint(1, 4)))
        pos = r.randint(0, len(out))
        if r.random() < 0.2 and len(out) > 2:  # truncate a multibyte char in the middle
            out = out[:pos]
        out[pos:pos] = ins
    return bytes(out)


def g_control(r):
    ctrls = [chr(c) for c in list(range(1, 32)) + [127]] + [chr(c) for c in range(0x80, 0xA0)] + ["\u200e", "\u061c", "\u00ad", "\u2066", "\u2069", "\ufff9", "\U000e0001"]
    out = []
    for _ in range(r.randint(1, 10)):
        out.append("".join(r.choice(ctrls) for _ in range(r.randint(1, 4))) if r.random() < 0.5 else rword(r))
    return r.choice(["", " ", "\n"]).join(out)


def g_long(r):
    n = r.choice([100, 255, 256, 257, 500, 1000, 2000, 5000, r.randint(50, 3000)])
    k = r.randint(0, 11)
    if k == 0:
        s = "".join(r.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(n))
    elif k == 1:
        s = "".join(r.choice("0123456789") for _ in range(n))
    elif k == 2:
        s = r.choice(["a", "e", "z", "ab", "the", "0", "9", "!", "-", "=", "é", "中", "😀", "ー", "\u0301"]) * (n // 2)
    elif k == 3:
        s = r.choice([" ", "\n", "\t", "\r\n", "\u00a0", "\u3000", " \n"]) * n + r.choice(["", "x", " x", "\n"])
    elif k == 4:
        import base64
        s = base64.b64encode(bytes(r.getrandbits(8) for _ in range(n))).decode()
    elif k == 5:
        s = "".join(r.choice("ABCDEFabcdef0123456789") for _ in range(n))
    elif k == 6:
        s = "Pneumonoultramicroscopicsilicovolcanoconiosis" * (n // 45 + 1)
    elif k == 7:
        s = "".join(rch(r, 0x4E00, 0x9FFF) for _ in range(n // 3))
    elif k == 8:
        s = "x" + "\u0301" * (n // 2)
    elif k == 9:
        s = " " + "".join(r.choice("abcdefghij") for _ in range(n)) + " " + "1" * n
    elif k == 10:
        s = "".join(r.choice(["ab", "ba", "aab", "abb"]) for _ in range(n // 2))
    else:
        s = "".join(rch(r, 0x0430, 0x044F) for _ in range(n))
    return s


SPECIAL_TEXTS = []  # filled from the vocabulary at start-up


def g_special(r):
    sp = SPECIAL_TEXTS or ["<|im_start|>", "<|im_end|>", "<|endoftext|>"]
    out = []
    for _ in range(r.randint(1, 8)):
        k = r.random()
        if k < 0.5:
            s = r.choice(sp)
        elif k < 0.6:
            t = r.choice(sp)
            s = t[:r.randint(1, len(t) - 1)]
        elif k < 0.7:
            t = r.choice(sp)
            s = t[r.randint(1, len(t) - 1):]
        elif k < 0.8:
            a, b = r.choice(sp), r.choice(sp)
            s = a[:-1] + b if r.random() < 0.5 else a[: len(a) // 2] + b + a[len(a) // 2:]
        else:
            s = r.choice(["user\n", "assistant\n", "system\n", "\n", " ", "", "Hello", "<", ">", "|", "<|", "|>", "<<", ">>"])
        out.append(s)
    return "".join(x + r.choice(["", "", "", " ", "\n", rword(r), " " + rword(r), "'s", "😀", "1"]) for x in out)


U15 = [(0x11F04, 0x11F10), (0x1E030, 0x1E06D), (0x31350, 0x323AF), (0x2EBF0, 0x2EE5D), (0x1E4D0, 0x1E4EB),
       (0x11F50, 0x11F59), (0x1D2C0, 0x1D2D3), (0x1E4F0, 0x1E4F9), (0x180E, 0x180E), (0x0085, 0x0085)]


def g_randcp(r):
    out = []
    for _ in range(r.randint(1, 12)):
        k = r.random()
        if k < 0.35:
            c = r.randint(0x80, 0xFFFF)
        elif k < 0.6:
            c = r.randint(0x10000, 0x10FFFF)
        elif k < 0.7:
            c = r.randint(0x10000, 0x3FFFF)
        elif k < 0.8:
            lo, hi = r.choice(U15)
            c = r.randint(lo, hi)
        elif k < 0.85:
            c = r.choice([0xFFFE, 0xFFFF, 0x10FFFF, 0xFDD0, 0xE000, 0xF8FF, 0xFFFD, 0x1FFFE, 0xF0000])
        else:
            out.append(r.choice([" ", "a", "1", "!", "  ", "\n", rword(r)]))
            continue
        if 0xD800 <= c <= 0xDFFF:
            c = 0xFFFD
        out.append(chr(c))
        if r.random() < 0.3:
            out.append(r.choice([" ", "a", "1", "'s", "!"]))
    return "".join(out)


CATS = collections.OrderedDict([
    ("prose", g_prose), ("code", g_code), ("numbers", g_numbers), ("whitespace", g_whitespace),
    ("contractions", g_contractions), ("punctuation", g_punct), ("combining", g_combining), ("cjk_kana_korean", g_cjk),
    ("arabic_hebrew", g_rtl), ("devanagari_thai", g_indic_thai), ("emoji", g_emoji), ("math", g_math),
    ("invalid_utf8", g_invalid), ("control", g_control), ("long", g_long), ("special", g_special),
    ("random_codepoints", g_randcp),
])


def g_mixed(r):
    names = [n for n in CATS if n not in ("long", "invalid_utf8")]
    parts = []
    for _ in range(r.randint(2, 7)):
        p = CATS[r.choice(names)](r)
        parts.append(p if isinstance(p, bytes) else p.encode("utf-8"))
    return r.choice([b"", b" ", b"\n", b"  "]).join(parts)


CATS["mixed"] = g_mixed


def targeted():
    """Deterministic tables: every invalid-UTF-8 shape (and every lone byte 0x80-0xff) in a few
    contexts; Unicode-version and U+180E probes; a few very long single pieces."""
    out = []
    seqs = [(b.hex(), b) for b in OVERLONG + SURR + BAD] + [("%02x" % x, bytes([x])) for x in range(0x80, 0x100)]
    seen = set()
    for label, x in seqs:
        if label in seen:
            continue
        seen.add(label)
        for ctx in (b"%s", b"a%sb", b" %s", b"%s's", b"1%s2", "中%s".encode(), b"%s%s"):
            out.append(("invalid_table", ctx.replace(b"%s", x), label))
    for cp in [0x180E, 0x0085, 0x200B, 0xFEFF, 0x2060, 0x1C, 0x1F, 0x11F04, 0x11F50, 0x1D2C0, 0x1E030, 0x1E4D0,
               0x1E4F0, 0x2EBF0, 0x31350, 0x1123F, 0x1342F, 0x1B132, 0x1DF25, 0x2B739, 0x10D40, 0x1CC00]:
        x = chr(cp)
        for ctx in ("%s", "a%s", "%sa", " %s", "  %s", "%s's", "1%s", "%s1", "!%s!", "%s %s"):
            out.append(("unicode_probe", (ctx % ((x,) * ctx.count("%s"))).encode(), "U+%04X" % cp))
    r = random.Random(99)
    for n in (20000, 100000):
        out.append(("very_long", "".join(r.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(n)).encode(), "letters%d" % n))
        out.append(("very_long", "".join(r.choice("0123456789") for _ in range(n)).encode(), "digits%d" % n))
        out.append(("very_long", (" " * n + "x").encode(), "spaces%d" % n))
        out.append(("very_long", ("ab" * (n // 2)).encode(), "abab%d" % n))
        out.append(("very_long", ("😀" * (n // 4)).encode(), "emoji%d" % n))
        out.append(("very_long", "".join(chr(r.randint(0x4E00, 0x9FFF)) for _ in range(n // 3)).encode(), "cjk%d" % n))
    return out


def generate(seed, per_cat):
    texts = []
    for ci, (name, fn) in enumerate(CATS.items()):
        r = random.Random(seed * 1000 + ci)
        seen = set()
        tries = 0
        while sum(1 for t in texts if t[0] == name) < per_cat and tries < per_cat * 5:
            tries += 1
            t = fn(r)
            b = t if isinstance(t, bytes) else t.encode("utf-8", "surrogatepass")
            b = b.replace(b"\x00", b"")
            if b in seen:
                continue
            seen.add(b)
            texts.append((name, b))
    return texts + [(c, b) for c, b, _ in targeted()]

# --------------------------------------------------------------------------- references


def llama_detok(v, ids, special):
    """llama_detokenize through the C API (llama-cpp-python's own detokenize() reads each piece
    through a 32-byte buffer and strips a space after BOS, so it is not used)."""
    import ctypes
    import llama_cpp
    vocab = llama_cpp.llama_model_get_vocab(v.model)
    arr = (llama_cpp.llama_token * max(1, len(ids)))(*ids)
    size = 4 * len(ids) + 64
    while True:
        buf = ctypes.create_string_buffer(size)
        n = llama_cpp.llama_detokenize(vocab, arr, len(ids), buf, size, False, special)
        if n >= 0:
            return buf.raw[:n]
        size = -n + 1


def _llama_worker(model, jobs, conn):
    import llama_cpp  # noqa: F401
    from llama_cpp import Llama
    v = Llama(model_path=model, vocab_only=True, verbose=False)
    for i, (kind, payload, special) in jobs:
        conn.send(("start", i))
        if kind == "tok":
            res = v.tokenize(payload, add_bos=False, special=special)
        else:
            res = llama_detok(v, payload, special)
        conn.send(("done", i, res))
    conn.send(("end",))


def llama_batch(model, jobs):
    """jobs: list of (kind, payload, special). Returns list of results; None where llama.cpp crashed."""
    results = [None] * len(jobs)
    crashed = []
    todo = list(enumerate(jobs))
    while todo:
        parent, child = mp.Pipe()
        p = mp.Process(target=_llama_worker, args=(model, todo, child))
        p.start()
        child.close()
        cur = None
        done_upto = set()
        while True:
            try:
                msg = parent.recv()
            except EOFError:
                break
            if msg[0] == "start":
                cur = msg[1]
            elif msg[0] == "done":
                results[msg[1]] = msg[2]
                done_upto.add(msg[1])
                cur = None
            else:
                break
        p.join()
        if cur is None:
            break
        crashed.append(cur)
        todo = [(i, j) for i, j in todo if i not in done_upto and i != cur]
    return results, crashed


def kvz_tokenize(kvz, model, b, special):
    cmd = [kvz, "tokenize", "-m", model] + ([] if special else ["--no-special"])
    p = subprocess.run(cmd, input=b, capture_output=True, timeout=120)
    if p.returncode != 0:
        return ("error", p.returncode, p.stderr.decode(errors="replace")[-300:])
    return [int(x) for x in p.stdout.split()]


def kvz_detokenize(kvz, model, ids, special):
    cmd = [kvz, "detokenize", "-m", model] + ([] if special else ["--no-special"])
    p = subprocess.run(cmd, input=" ".join(map(str, ids)).encode(), capture_output=True, timeout=120)
    if p.returncode != 0:
        return ("error", p.returncode, p.stderr.decode(errors="replace")[-300:])
    return p.stdout

# --------------------------------------------------------------------------- minimisation


def units_of(b):
    return list(b.decode("utf-8", "surrogateescape"))


def bytes_of(units):
    return "".join(units).encode("utf-8", "surrogateescape")


def _oracle_worker(model, conn):
    from llama_cpp import Llama
    v = Llama(model_path=model, vocab_only=True, verbose=False)
    while True:
        b, special = conn.recv()
        conn.send(v.tokenize(b, add_bos=False, special=special))


class Oracle:
    """kvz and llama.cpp on one input; llama.cpp runs in a child that is restarted if it dies."""
    def __init__(self, args):
        self.args = args
        self.calls = 0
        self.proc = None

    def _start(self):
        self.conn, child = mp.Pipe()
        self.proc = mp.Process(target=_oracle_worker, args=(self.args.model, child), daemon=True)
        self.proc.start()
        child.close()

    def llama(self, b, special):
        if self.proc is None or not self.proc.is_alive():
            self._start()
        try:
            self.conn.send((b, special))
            return self.conn.recv()
        except (EOFError, OSError):
            self.proc.join()
            self.proc = None
            return "llama.cpp crashed"

    def pair(self, b, special):
        self.calls += 1
        return kvz_tokenize(self.args.kvz, self.args.model, b, special), self.llama(b, special)

    def differs(self, b, special):
        k, l = self.pair(b, special)
        return k != l


def ddmin(units, test, budget=400):
    n = 2
    calls = 0
    while len(units) >= 2 and calls < budget:
        chunk = max(1, len(units) // n)
        subsets = [units[i:i + chunk] for i in range(0, len(units), chunk)]
        reduced = False
        for i in range(len(subsets)):
            comp = [u for j, s in enumerate(subsets) if j != i for u in s]
            calls += 1
            if comp and test(comp):
                units = comp
                n = max(n - 1, 2)
                reduced = True
                break
        if not reduced:
            if n >= len(units):
                break
            n = min(len(units), n * 2)
    # one-unit removal pass to a fixpoint
    changed = True
    while changed and calls < budget:
        changed = False
        for i in range(len(units)):
            cand = units[:i] + units[i + 1:]
            calls += 1
            if cand and test(cand):
                units = cand
                changed = True
                break
    return units


def simplify(units, test):
    """Replace units by simpler ones (ASCII letter 'a', space, '1') while the mismatch remains."""
    for i in range(len(units)):
        for rep in ("a", " ", "1", "."):
            if units[i] != rep and len(units[i].encode("utf-8", "surrogateescape")) >= 1:
                cand = units[:i] + [rep] + units[i + 1:]
                if test(cand):
                    units = cand
                    break
    return units

# --------------------------------------------------------------------------- main


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--per-cat", type=int, default=400)
    ap.add_argument("--kvz", default=KVZ)
    ap.add_argument("--model", default=MODEL)
    ap.add_argument("--out", default="/tmp/tokenizer_diff")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--no-minimize", action="store_true")
    ap.add_argument("--min-per-cat", type=int, default=10, help="mismatches minimised per category and mode")
    ap.add_argument("--no-vocab-detok", action="store_true")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    t0 = time.time()

    # special-token texts from the vocabulary (control + user-defined)
    from llama_cpp import Llama
    import llama_cpp
    v = Llama(model_path=args.model, vocab_only=True, verbose=False)
    n_vocab = v.n_vocab()
    vocab_ptr = llama_cpp.llama_model_get_vocab(v.model)
    specials = []
    for i in range(n_vocab):
        attr = llama_cpp.llama_vocab_get_attr(vocab_ptr, i)
        if attr & (llama_cpp.LLAMA_TOKEN_ATTR_CONTROL | llama_cpp.LLAMA_TOKEN_ATTR_USER_DEFINED):
            txt = llama_cpp.llama_vocab_get_text(vocab_ptr, i)
            specials.append((i, attr, txt))
    SPECIAL_TEXTS[:] = [t.decode("utf-8", "replace") for _, _, t in specials if t]
    print("special tokens:", [(i, a, t.decode()) for i, a, t in specials])
    del v

    texts = generate(args.seed, args.per_cat)
    print("generated %d texts in %.1fs" % (len(texts), time.time() - t0))
    spec_bytes = [t for _, _, t in specials if t]
    has_special = [any(s in b for s in spec_bytes) for _, b in texts]

    # jobs: (text index, special mode)
    runs = [(i, True) for i in range(len(texts))] + [(i, False) for i in range(len(texts)) if has_special[i]]
    lres, crashed = llama_batch(args.model, [("tok", texts[i][1], sp) for i, sp in runs])
    print("llama.cpp tokenized %d runs (%d crashed) at %.1fs" % (len(runs), len(crashed), time.time() - t0))
    with cf.ThreadPoolExecutor(args.jobs) as ex:
        kres = list(ex.map(lambda run: kvz_tokenize(args.kvz, args.model, texts[run[0]][1], run[1]), runs))
    print("kvz tokenized at %.1fs" % (time.time() - t0))

    per_cat = collections.Counter()
    per_cat_runs = collections.Counter()
    mism = []
    for (i, sp), k, l, ri in zip(runs, kres, lres, range(len(runs))):
        cat, b = texts[i]
        per_cat_runs[(cat, sp)] += 1
        if sp:
            per_cat[cat] += 1
        if l is None:
            mism.append(dict(kind="llama_crash", cat=cat, special=sp, hex=b.hex(), kvz=k))
        elif k != l:
            mism.append(dict(kind="ids", cat=cat, special=sp, hex=b.hex(), kvz=k, llama=l))

    # detokenization of the (kvz) ids, both implementations
    det_runs = [(ri, runs[ri]) for ri in range(len(runs)) if isinstance(kres[ri], list)]
    ldet, dcrash = llama_batch(args.model, [("detok", kres[ri], sp) for ri, (i, sp) in det_runs])
    with cf.ThreadPoolExecutor(args.jobs) as ex:
        kdet = list(ex.map(lambda x: kvz_detokenize(args.kvz, args.model, kres[x[0]], x[1][1]), det_runs))
    print("detokenized at %.1fs" % (time.time() - t0))
    detok_mism = []
    roundtrip_bad = collections.Counter()
    for (ri, (i, sp)), kd, ld in zip(det_runs, kdet, ldet):
        cat, b = texts[i]
        if kd != ld:
            detok_mism.append(dict(cat=cat, special=sp, hex=b.hex(), ids=kres[ri], kvz=kd.hex() if isinstance(kd, bytes) else kd,
                                   llama=ld.hex() if isinstance(ld, bytes) else ld))
        if sp and kd != b:
            roundtrip_bad[cat] += 1

    # every vocabulary entry detokenized on its own, both modes
    vocab_detok_mism = []
    if not args.no_vocab_detok:
        # every vocabulary entry on its own: kvz detokenizes all ids in one run, the
        # output is compared with llama_detokenize of the same sequence and, piece by
        # piece, with llama.cpp's single-token detokenization
        from llama_cpp import Llama as L2
        v2 = L2(model_path=args.model, vocab_only=True, verbose=False)
        allids = list(range(n_vocab))
        for sp in (True, False):
            kd = kvz_detokenize(args.kvz, args.model, allids, sp)
            ld = llama_detok(v2, allids, sp)
            pieces = [llama_detok(v2, [t], sp) for t in allids]
            if kd != ld or b"".join(pieces) != ld:
                # locate the first differing token
                off = 0
                for t in allids:
                    p = pieces[t]
                    if kd[off:off + len(p)] != p:
                        vocab_detok_mism.append(dict(id=t, special=sp, llama=p.hex(), kvz_at=kd[off:off + len(p) + 8].hex()))
                        break
                    off += len(p)
                vocab_detok_mism.append(dict(id="all", special=sp, kvz_len=len(kd), llama_len=len(ld)))
        print("vocab detok checked (%d ids x 2 modes) at %.1fs" % (n_vocab, time.time() - t0))

    # minimise
    minimized = []
    if mism and not args.no_minimize:
        orc = Oracle(args)
        seen_min = {}
        tried = collections.Counter()
        for m in mism:
            if m["kind"] != "ids":
                continue
            b = bytes.fromhex(m["hex"])
            sp = m["special"]
            key = None
            test = lambda us: orc.differs(bytes_of(us), sp)
            per_key = (m["cat"], sp)
            tried[per_key] += 1
            if tried[per_key] > args.min_per_cat:
                continue
            u = ddmin(units_of(b), test)
            u = simplify(u, test)
            u = ddmin(u, test, budget=100)
            mb = bytes_of(u)
            k, l = orc.pair(mb, sp)
            key = (mb, sp)
            if key in seen_min:
                seen_min[key]["count"] += 1
                seen_min[key]["cats"][m["cat"]] += 1
                continue
            rec = dict(hex=mb.hex(), text=mb.decode("utf-8", "backslashreplace"), special=sp, kvz=k, llama=l, count=1,
                       cats=collections.Counter({m["cat"]: 1}), example_hex=m["hex"][:400])
            seen_min[key] = rec
            minimized.append(rec)
        print("minimised %d mismatches to %d distinct inputs (%d oracle calls) at %.1fs" %
              (len(mism), len(minimized), orc.calls, time.time() - t0))

    labels = {}
    for c, b, lab in targeted():
        labels.setdefault(b, (c, lab))
    table = collections.OrderedDict()
    for (i, sp), k, l in zip(runs, kres, lres):
        cat, b = texts[i]
        if cat in ("invalid_table", "unicode_probe", "very_long") and sp:
            lab = labels[b][1]
            e = table.setdefault("%s %s" % (cat, lab), dict(n=0, mismatch=0, llama_crash=0, examples=[]))
            e["n"] += 1
            if l is None:
                e["llama_crash"] += 1
            elif k != l:
                e["mismatch"] += 1
            if (l is None or k != l) and len(e["examples"]) < 3:
                e["examples"].append(dict(hex=b.hex(), kvz=k, llama=l))
    json.dump(table, open(os.path.join(args.out, "targeted.json"), "w"), indent=1)

    summary = dict(
        seed=args.seed, n_texts=len(texts), elapsed_s=round(time.time() - t0, 1),
        texts_per_category=dict(per_cat),
        runs_per_category_and_mode={"%s/%s" % (c, "special" if s else "no-special"): n for (c, s), n in per_cat_runs.items()},
        id_mismatches=len([m for m in mism if m["kind"] == "ids"]),
        id_mismatches_per_category=dict(collections.Counter("%s/%s" % (m["cat"], "special" if m["special"] else "no-special") for m in mism)),
        llama_crashes=len(crashed), detok_runs=len(det_runs), detok_mismatches=len(detok_mism),
        roundtrip_not_identity_per_category=dict(roundtrip_bad),
        vocab_detok_mismatches=len(vocab_detok_mism),
        minimized=[dict(m, cats=dict(m["cats"])) for m in minimized],
    )
    json.dump(dict(id_mismatches=mism, detok_mismatches=detok_mism, vocab_detok=vocab_detok_mism,
                   minimized=summary["minimized"]), open(os.path.join(args.out, "mismatches.json"), "w"), indent=1)
    json.dump(summary, open(os.path.join(args.out, "summary.json"), "w"), indent=1)
    json.dump([dict(cat=c, hex=b.hex()) for c, b in texts], open(os.path.join(args.out, "texts.json"), "w"))
    s2 = dict(summary)
    s2.pop("minimized")
    print(json.dumps(s2, indent=1))
    for m in minimized:
        print("MIN special=%d count=%d cats=%s hex=%s text=%r\n   kvz=%s\n   llama=%s" %
              (m["special"], m["count"], dict(m["cats"]), m["hex"], m["text"], m["kvz"], m["llama"]))


if __name__ == "__main__":
    main()
