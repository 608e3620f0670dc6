#!/usr/bin/env python3
"""Write kvz's golden files from independent references.

References:
  * llama.cpp, through llama-cpp-python: token ids, logits, greedy continuations;
  * Jinja2 rendering the GGUF's own chat template: chat prompts;
  * gguf-py (ggml's Python package): block dequantization of every type kvz reads;
  * llama.cpp again on random-weight models that kvz synth-model writes
    (build/kvz must be built): the qwen2 architecture (q, k and v biases, RoPE
    on the halves of a head) and Llama 3.1's RoPE frequency factors, for which
    no small real model is on PyPI.

Run in the test-only environment (tests/reference/setup_venv.sh), from the
repository root:
    tests/reference/.venv/bin/python tests/reference/make_golden.py
CI never runs this; it reads the committed files under tests/golden/.
"""
import argparse
import importlib.metadata
import os
import subprocess
import sys
import tempfile

import jinja2
import numpy as np
import gguf
from gguf import quants
import llama_cpp
from llama_cpp import Llama

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_MODEL = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")

# Texts for the tokenizer: prose, code, numbers, whitespace runs, Unicode,
# contractions, control-token texts. (name, text, parse_special)
TOKENIZER_CASES = [
    ("empty", "", 1),
    ("single_space", " ", 1),
    ("prose", "The quick brown fox jumps over the lazy dog. It wasn't the fox's fault, they'd say.", 1),
    ("prose_paragraphs", "First paragraph ends here.\n\nSecond paragraph starts here, and it goes on for a while before ending.\n", 1),
    ("contractions", "I'm sure you'll see we've done what they'd do; isn't it? DON'T SHOUT, it's O'Neil's.", 1),
    ("numbers", "In 2024, 3.14159 × 10^5 = 314159; call +1-555-0100 or pay $1,234.56 (about €1.1k).", 1),
    ("long_number", "123456789012345678901234567890", 1),
    ("spaces", "a  b   c    d     e\t\tf \t g", 1),
    ("leading_trailing_spaces", "   padded text   ", 1),
    ("newlines", "line1\nline2\r\nline3\n\n\nline4\n", 1),
    ("only_newlines", "\n\n\n\n", 1),
    ("mixed_whitespace", " \n \n\t\n  x \n", 1),
    ("code_c", "int main(int argc, char **argv) {\n    for (int i = 0; i < argc; i++)\n        printf(\"%s\\n\", argv[i]);\n    return 0;\n}\n", 1),
    ("code_python", "def f(x: int) -> list[int]:\n    return [i ** 2 for i in range(x) if i % 3 != 0]  # squares\n", 1),
    ("json", "{\"name\": \"kvz\", \"ratio\": 0.3, \"bits\": [16, 8, 4, 2], \"ok\": true, \"none\": null}", 1),
    ("markdown", "# Title\n\n* item one\n* item **two**\n\n| a | b |\n|---|---|\n| 1 | 2 |\n", 1),
    ("url_email", "See https://example.com/path?q=1&r=two#frag or mail dev@example.org.", 1),
    ("accents", "Café, naïve, façade, jalapeño, Übermaß, Ångström, déjà vu, São Paulo.", 1),
    ("german_french", "Straße und Größe. L'été dernier, nous étions à Montréal.", 1),
    ("cyrillic_greek", "Привет, мир! Καλημέρα κόσμε. Ελληνικά και русский язык.", 1),
    ("cjk", "你好，世界！日本語のテキストです。한국어 문장도 있습니다。", 1),
    ("arabic_hebrew", "مرحبا بالعالم. שלום עולם.", 1),
    ("hindi_thai", "नमस्ते दुनिया। สวัสดีชาวโลก", 1),
    ("emoji", "I love 🍕 and 🎉! Family: 👨‍👩‍👧‍👦, flags: 🇫🇷🇯🇵, skin: 👍🏽.", 1),
    ("math_symbols", "∀x ∈ ℝ: x² ≥ 0, ∑ᵢ aᵢ ≤ ∞, √2 ≈ 1.414, α→β ⇒ γ.", 1),
    ("unicode_digits", "Roman Ⅻ, fractions ½ ¾, superscript ³, Arabic-Indic ١٢٣, full-width ４５.", 1),
    ("punctuation_runs", "Wait... what?!?! ---- *** ((nested)) [[brackets]] {{braces}} <<<>>> ~~~", 1),
    ("apostrophes_unicode", "It’s “quoted” text — with dashes – and ‘single’ quotes…", 1),
    ("chatml_special", "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n", 1),
    ("chatml_not_special", "<|im_start|>user\nWhat is 2+2?<|im_end|>\n", 0),
    ("special_inside_word", "abc<|im_end|>def<|endoftext|>ghi", 1),
    ("special_tokens_adjacent", "<|im_start|><|im_end|><|im_start|>system", 1),
    ("repeated_letters", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 1),
    ("mixed_scripts", "kvz компилирует 上下文 into caches — ça marche! 🚀 v0.1.0", 1),
    ("tabs_code", "\tif (x) {\n\t\treturn y;\n\t}\n", 1),
    ("control_chars", "bell\x07 and escape\x1b[0m and nul-free text\x0b\x0c end", 1),
    # where the system's PCRE2 and llama.cpp's tables differ (model/pretokenize.c): U+180E is no
    # whitespace to llama.cpp; letters and digits of Unicode 15/15.1 (Kawi, Nag Mundari, CJK Ext H
    # and I, Kaktovik numerals) that PCRE2 10.42 (Unicode 14) calls neither
    ("mongolian_vowel_separator", "  \u180e word \u180ea \u180e's end", 1),
    ("unicode15_letters", "Kawi \U00011F57's, \U00011F05\U00011F06  \U0001E4F8 \U00031350\U00031351 \U0002EBF0x \U0001E030", 1),
    ("unicode15_digits", "Kaktovik \U0001D2C0\U0001D2C1\U0001D2C2\U0001D2C3 Kawi \U00011F50\U00011F51 and 7\U0001E4F0", 1),
]

CHAT_CASES = [
    # (name, system or None, user)
    ("default_system", None, "What is the capital of France?"),
    ("custom_system", "You answer in one word.", "Name a primary colour."),
    ("multiline_user", None, "Summarise this:\n\nKV caches store keys and values.\nThey grow with context."),
    ("unicode_user", "Réponds en français.", "Quelle est la capitale du Japon ? 🗾"),
    # kvz's own prompt as one user turn: model/prompt.h's instruction, a
    # document, a blank line and a question (tests/unit/test_runtime.c builds
    # the same turn from kvz's prefix, document and question tokens)
    ("document_question", None,
     "Answer the question that follows the context, using only the context.\n\nContext:\n"
     "The ferry leaves Kestrel Point at dawn.\nIt returns at six.\n\nWhen does the ferry return?"),
]

# Meta's Llama-3-8B-Instruct chat template (tokenizer_config.json), rendered by
# Jinja2 for the Llama-3 golden; kvz has no Llama-3 GGUF to test against.
LLAMA3_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    "+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
    "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)

# A template of the shape of Meta's Llama 3.1 and later ones (written for
# kvz, not copied): a system turn always opens the conversation, stating a
# knowledge cutoff and a date (date_string: the day's as 3.2 takes it when the
# renderer offers strftime_now, which this one does not, else a literal), then
# the trimmed system message if any; "Environment: ipython" only with tools,
# which kvz never passes.
LLAMA31_TEMPLATE = r"""{{- bos_token }}
{%- if not date_string is defined %}
    {%- if strftime_now is defined %}{%- set date_string = strftime_now("%d %b %Y") %}
    {%- else %}{%- set date_string = "26 Jul 2024" %}{%- endif %}
{%- endif %}
{%- if not tools is defined %}{%- set tools = none %}{%- endif %}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}
{{- "<|start_header_id|>system<|end_header_id|>\n\n" }}
{%- if tools is not none %}{{- "Environment: ipython\n" }}{%- endif %}
{{- "Cutting Knowledge Date: December 2023\n" }}
{{- "Today Date: " + date_string + "\n\n" }}
{{- system_message }}
{{- "<|eot_id|>" }}
{%- for message in messages %}
    {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' }}
{%- endfor %}
{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{%- endif %}
"""

LOGIT_TEXTS = ["gpl3_excerpt.txt", "zpipe.c", "python_datamodel.txt"]
LOGIT_TOKENS = 600
GREEDY_TOKENS = 32


def hexs(s):
    return s.encode("utf-8").hex() if isinstance(s, str) else s.hex()


def write_tokenizer(vocab, out_dir):
    path = os.path.join(out_dir, "tokenizer.golden")
    with open(path, "w") as f:
        f.write("# token ids from llama.cpp (llama-cpp-python %s), no BOS\n" % llama_cpp.__version__)
        f.write("# case NAME / special 0|1 / text HEX(utf-8) / ids N id...\n")
        for name, text, special in TOKENIZER_CASES:
            ids = vocab.tokenize(text.encode("utf-8"), add_bos=False, special=bool(special))
            f.write("case %s\nspecial %d\ntext %s\nids %d%s\n" % (
                name, special, hexs(text), len(ids), "".join(" %d" % i for i in ids)))
    print("wrote", path, len(TOKENIZER_CASES), "cases")


def write_chat(vocab, template, out_dir):
    env = jinja2.Environment()
    tpl = env.from_string(template)
    path = os.path.join(out_dir, "chat.golden")
    with open(path, "w") as f:
        f.write("# the GGUF's chat template rendered by Jinja2 %s, tokenized by llama.cpp\n" % jinja2.__version__)
        f.write("# case NAME / system HEX or - / user HEX / rendered HEX / ids N id...\n")
        for name, system, user in CHAT_CASES:
            msgs = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]
            rendered = tpl.render(messages=msgs, add_generation_prompt=True)
            ids = vocab.tokenize(rendered.encode("utf-8"), add_bos=False, special=True)
            f.write("case %s\nsystem %s\nuser %s\nrendered %s\nids %d%s\n" % (
                name, hexs(system) if system else "-", hexs(user), hexs(rendered), len(ids),
                "".join(" %d" % i for i in ids)))
    print("wrote", path, len(CHAT_CASES), "cases")


# Llama-3 templates trim every message (Jinja's trim: Python's str.isspace,
# Unicode spaces too; U+200B is not one).
LLAMA3_PADDED_CASES = [
    ("padded", "  spaced system \n", "\n user with padding  \n"),
    ("padded_unicode", "\u3000\u00a0 system\u2003\x0b\x1c", "\u2028\u0085 user\u200b\u205f\u00a0\u202f\n"),
]


def write_chat_llama3(out_dir, template, file_name, what):
    tpl = jinja2.Environment().from_string(template)
    path = os.path.join(out_dir, file_name)
    with open(path, "w") as f:
        f.write("# %s chat template rendered by Jinja2 %s\n" % (what, jinja2.__version__))
        f.write("# template HEX, then: case NAME / system HEX or - / user HEX / rendered HEX\n")
        f.write("template %s\n" % hexs(template))
        for name, system, user in CHAT_CASES + LLAMA3_PADDED_CASES:
            msgs = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]
            rendered = tpl.render(messages=msgs, add_generation_prompt=True, bos_token="<|begin_of_text|>")
            f.write("case %s\nsystem %s\nuser %s\nrendered %s\n" % (
                name, hexs(system) if system else "-", hexs(user), hexs(rendered)))
    print("wrote", path)


def requantize_f32(model_path, out_path):
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_cpp.LLAMA_FTYPE_ALL_F32
    params.allow_requantize = True
    rc = llama_cpp.llama_model_quantize(model_path.encode(), out_path.encode(), params)
    if rc != 0:
        sys.exit("requantizing to F32 failed: %d" % rc)


def eval_and_write(llm, ids, path, header, topk):
    """Evaluate ids (all logits), then GREEDY_TOKENS greedy tokens; write the golden file."""
    llm.reset()
    llm.eval(ids)
    scores = np.array(llm.scores[: len(ids)], dtype=np.float32)
    greedy = []
    for _ in range(GREEDY_TOKENS):
        nxt = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        greedy.append(nxt)
        llm.eval([nxt])
    with open(path, "w") as f:
        f.write(header + "\n")
        f.write("tokens %d%s\n" % (len(ids), "".join(" %d" % i for i in ids)))
        f.write("topk %d\n" % topk)
        for p in range(len(ids)):
            row = scores[p]
            top = np.argsort(-row, kind="stable")[:topk]
            f.write("row %d%s\n" % (p, "".join(" %d %.5f" % (t, row[t]) for t in top)))
        f.write("greedy %d%s\n" % (len(greedy), "".join(" %d" % i for i in greedy)))
    print("wrote", path)


def write_logits(model_path, label, topk, out_dir, texts, vocab):
    llm = Llama(model_path=model_path, n_ctx=1024, n_batch=512, n_ubatch=512, n_threads=2,
                logits_all=True, type_k=0, type_v=0, flash_attn=False, verbose=False)
    for fname in texts:
        text = open(os.path.join(ROOT, "tests", "data", fname), encoding="utf-8").read()
        ids = vocab.tokenize(text.encode("utf-8"), add_bos=False, special=False)[:LOGIT_TOKENS]
        if len(ids) < 512:
            sys.exit("%s has only %d tokens" % (fname, len(ids)))
        stem = os.path.splitext(fname)[0]
        eval_and_write(llm, ids, os.path.join(out_dir, "logits_%s_%s.golden" % (stem, label)),
                       "# llama.cpp (llama-cpp-python %s) logits, weights %s, KV cache f32, "
                       "n_batch 512, text tests/data/%s" % (llama_cpp.__version__, label, fname), topk)
    del llm


# Random-weight models that kvz synth-model writes, for what no small real model
# on PyPI has: F32 weights, so that llama.cpp computes in f32 as kvz does.
# tests/unit/test_forward.c writes the same files from the same specs.
SYNTH_MODELS = {
    # the qwen2 architecture: q, k and v biases, RoPE on the halves of a head
    "qwen2": (["--shape", "qwen2-0.5b", "--layers", "2", "--vocab", "1024", "--type", "F32"],
              "logits_qwen2_synth.golden"),
    # Llama 3.1's RoPE frequency factors (rope_freqs.weight), for an original
    # context of 512 so that the factors turn most pairs at these positions
    "rope_freqs": (["--shape", "smollm2-135m", "--layers", "2", "--vocab", "1024", "--type", "F32",
                    "--rope-freqs", "512"], "logits_rope_freqs_synth.golden"),
}
SYNTH_TEXT, SYNTH_TOKENS = "python_datamodel.txt", 300


def write_synth(out_dir, which):
    args, golden = SYNTH_MODELS[which]
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, which + ".gguf")
        subprocess.run([os.path.join(ROOT, "build", "kvz"), "synth-model", *args, "-o", path], check=True)
        llm = Llama(model_path=path, n_ctx=1024, n_batch=512, n_ubatch=512, n_threads=2, logits_all=True,
                    type_k=0, type_v=0, flash_attn=False, verbose=False)
        text = open(os.path.join(ROOT, "tests", "data", SYNTH_TEXT), encoding="utf-8").read()
        ids = llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)[:SYNTH_TOKENS]
        eval_and_write(llm, ids, os.path.join(out_dir, golden),
                       "# llama.cpp (llama-cpp-python %s) logits of kvz synth-model %s, KV cache f32, "
                       "n_batch 512, text tests/data/%s" % (llama_cpp.__version__, " ".join(args), SYNTH_TEXT), 5)
        del llm


# ---- dequantization -------------------------------------------------------

DEQUANT_TYPES = ["F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q4_K", "Q5_K", "Q6_K"]


def random_blocks(qtype, n_blocks, rng):
    """Random raw blocks with finite, modest fp16 scales."""
    block_elems, block_bytes = gguf.GGML_QUANT_SIZES[qtype]
    raw = rng.integers(0, 256, size=(n_blocks, block_bytes), dtype=np.uint8)

    def set_half(col, lo, hi):
        vals = rng.uniform(lo, hi, size=n_blocks).astype(np.float16)
        raw[:, col:col + 2] = vals.view(np.uint8).reshape(n_blocks, 2)

    name = qtype.name
    if name in ("Q4_0", "Q5_0", "Q8_0"):
        set_half(0, -0.1, 0.1)
    elif name in ("Q4_1", "Q5_1"):
        set_half(0, -0.1, 0.1)
        set_half(2, -1.0, 1.0)
    elif name in ("Q4_K", "Q5_K"):
        set_half(0, -0.01, 0.01)
        set_half(2, -0.01, 0.01)
    elif name == "Q6_K":
        set_half(block_bytes - 2, -0.01, 0.01)
    return raw


def write_dequant(out_dir):
    rng = np.random.default_rng(20261123)
    path = os.path.join(out_dir, "dequant.gguf")
    w = gguf.GGUFWriter(path, arch="kvz-dequant-golden")
    w.add_string("kvz.golden.source", "gguf-py %s quants.dequantize" % importlib.metadata.version("gguf"))
    for name in DEQUANT_TYPES:
        qtype = gguf.GGMLQuantizationType[name]
        rows, n_blocks_per_row = 2, 2
        block_elems, _ = gguf.GGML_QUANT_SIZES[qtype]
        cols = block_elems * n_blocks_per_row if block_elems > 1 else 64
        if name == "F16":
            vals = rng.standard_normal((rows, cols)).astype(np.float16)
            raw = vals.view(np.uint8).reshape(rows, -1)
        elif name == "BF16":
            f = rng.standard_normal((rows, cols)).astype(np.float32)
            raw = (f.view(np.uint32) >> 16).astype(np.uint16).view(np.uint8).reshape(rows, -1)
        else:
            raw = random_blocks(qtype, rows * n_blocks_per_row, rng).reshape(rows, -1)
        ref = quants.dequantize(raw, qtype).astype(np.float32).reshape(rows, cols)
        w.add_tensor("%s.src" % name.lower(), raw, raw_shape=raw.shape, raw_dtype=qtype)
        w.add_tensor("%s.ref" % name.lower(), ref)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print("wrote", path)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "golden"))
    ap.add_argument("--only", choices=["tokenizer", "chat", "logits", "dequant", *SYNTH_MODELS], action="append")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    only = set(args.only or ["tokenizer", "chat", "logits", "dequant", *SYNTH_MODELS])
    vocab = Llama(model_path=args.model, vocab_only=True, verbose=False)
    if "tokenizer" in only:
        write_tokenizer(vocab, args.out)
    if "chat" in only:
        write_chat(vocab, vocab.metadata["tokenizer.chat_template"], args.out)
        write_chat_llama3(args.out, LLAMA3_TEMPLATE, "chat_llama3.golden", "Llama-3 Instruct")
        write_chat_llama3(args.out, LLAMA31_TEMPLATE, "chat_llama31.golden",
                          "Llama 3.1-shaped (kvz's own, tests/reference/make_golden.py)")
    if "dequant" in only:
        write_dequant(args.out)
    if "logits" in only:
        with tempfile.TemporaryDirectory() as tmp:
            f32 = os.path.join(tmp, "model-f32.gguf")
            requantize_f32(args.model, f32)
            write_logits(f32, "f32", 5, args.out, LOGIT_TEXTS, vocab)
        write_logits(args.model, "q4_1", 2, args.out, LOGIT_TEXTS, vocab)
    for which in SYNTH_MODELS:
        if which in only:
            write_synth(args.out, which)


if __name__ == "__main__":
    main()
