#!/usr/bin/env python3
"""Make the fuzzers' seed corpora (tests/fuzz/corpus/{artifact,gguf,doc_record}).

    python3 tests/fuzz/make_seeds.py [--kvz build/kvz] [--out tests/fuzz/corpus]

Everything comes from the project's own tools, deterministically:

* gguf: `kvz synth-model --shape tiny` writes a random-weight GGUF; its header
  (metadata, tokenizer, tensor infos) is kept and every tensor shrunk to one
  block so a seed is a few KB. Also smaller hand-made vocabularies (ChatML and
  Llama-3 flavours, with merges and mixed tensor types) and a file with one key
  of every value type and an array of every element type.
* artifact: `kvz compile` of short documents with the tiny model into a
  temporary store (several methods, 16/8/4/2 bits, a multi-segment document),
  extracted with `mdb_dump -s artifacts`; plus copies re-laid out with every
  section stored uncompressed (mutations then reach the manifest and payloads
  directly) or zstd-compressed (zstd positions, which small documents never get).
* doc_record: the store's `docs` values (`mdb_dump -s docs`).

Needs python3, lmdb-utils (mdb_dump), libzstd and libxxhash (ctypes).
"""
import argparse
import ctypes
import ctypes.util
import hashlib
import os
import shutil
import struct
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def load_lib(names):
    for n in names:
        try:
            return ctypes.CDLL(n)
        except OSError:
            pass
    sys.exit("make_seeds: cannot load any of %s" % names)


XXH = load_lib(["libxxhash.so.0", ctypes.util.find_library("xxhash") or "libxxhash.so"])
XXH.XXH3_64bits.restype = ctypes.c_uint64
XXH.XXH3_64bits.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
ZSTD = load_lib(["libzstd.so.1", ctypes.util.find_library("zstd") or "libzstd.so"])
ZSTD.ZSTD_decompress.restype = ctypes.c_size_t
ZSTD.ZSTD_decompress.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_size_t]
ZSTD.ZSTD_isError.argtypes = [ctypes.c_size_t]


ZSTD.ZSTD_compress.restype = ctypes.c_size_t
ZSTD.ZSTD_compress.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_size_t,
                               ctypes.c_int]
ZSTD.ZSTD_compressBound.restype = ctypes.c_size_t
ZSTD.ZSTD_compressBound.argtypes = [ctypes.c_size_t]
CREATED = 1700000000  # seeds carry this instead of the compile time: same bytes every run


def xxh3(b):
    return XXH.XXH3_64bits(bytes(b), len(b))


def unzstd(b, size):
    out = ctypes.create_string_buffer(max(size, 1))
    got = ZSTD.ZSTD_decompress(out, size, bytes(b), len(b))
    if ZSTD.ZSTD_isError(got) or got != size:
        sys.exit("make_seeds: zstd frame does not decode to %d bytes" % size)
    return out.raw[:size]


def zstd(b, level=9):
    cap = ZSTD.ZSTD_compressBound(len(b))
    out = ctypes.create_string_buffer(cap)
    got = ZSTD.ZSTD_compress(out, cap, bytes(b), len(b), level)
    if ZSTD.ZSTD_isError(got):
        sys.exit("make_seeds: zstd compression failed")
    return out.raw[:got]


def run(*cmd, **kw):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)
    if r.returncode != 0:
        sys.exit("make_seeds: %s failed (%d):\n%s" % (" ".join(cmd), r.returncode,
                                                        r.stderr.decode(errors="replace")))
    return r.stdout


# ---- GGUF ------------------------------------------------------------------

T_U8, T_I8, T_U16, T_I16, T_U32, T_I32, T_F32, T_BOOL, T_STR, T_ARR, T_U64, T_I64, T_F64 = range(13)
SCALAR = {T_U8: "B", T_I8: "b", T_U16: "H", T_I16: "h", T_U32: "I", T_I32: "i", T_F32: "f",
          T_BOOL: "B", T_U64: "Q", T_I64: "q", T_F64: "d"}
# ggml types: (id, block elements, block bytes)
GGML = {"F32": (0, 1, 4), "F16": (1, 1, 2), "Q4_0": (2, 32, 18), "Q4_1": (3, 32, 20),
        "Q5_0": (6, 32, 22), "Q5_1": (7, 32, 24), "Q8_0": (8, 32, 34), "Q4_K": (12, 256, 144),
        "Q5_K": (13, 256, 176), "Q6_K": (14, 256, 210), "BF16": (30, 1, 2)}
GGML_BY_ID = {v[0]: v for v in GGML.values()}


def gguf_parse(b):
    """(version, [(key, type, raw value bytes)], [(name, dims, type)], tensor data, alignment)"""
    pos = 0

    def rd(fmt):
        nonlocal pos
        v = struct.unpack_from("<" + fmt, b, pos)
        pos += struct.calcsize("<" + fmt)
        return v[0]

    def skip(t):
        nonlocal pos
        if t == T_STR:
            n = rd("Q")
            pos += n
        elif t == T_ARR:
            et, n = rd("I"), rd("Q")
            for _ in range(n):
                skip(et)
        else:
            pos += struct.calcsize(SCALAR[t])

    assert b[:4] == b"GGUF"
    pos = 4
    version, n_t, n_kv = rd("I"), rd("Q"), rd("Q")
    kvs, tensors, align = [], [], 32
    for _ in range(n_kv):
        klen = rd("Q")
        key = b[pos:pos + klen]
        pos += klen
        t = rd("I")
        start = pos
        skip(t)
        kvs.append((key, t, b[start:pos]))
        if key == b"general.alignment":
            align = struct.unpack("<I", b[start:pos])[0]
    for _ in range(n_t):
        nlen = rd("Q")
        name = b[pos:pos + nlen]
        pos += nlen
        nd = rd("I")
        dims = [rd("Q") for _ in range(nd)]
        t, off = rd("I"), rd("Q")
        tensors.append((name, dims, t, off))
    data_start = (pos + align - 1) // align * align
    return version, kvs, tensors, b[data_start:], align


def gguf_str(s):
    s = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(s)) + s


def kv_scalar(t, v):
    return gguf_str(v) if t == T_STR else struct.pack("<" + SCALAR[t], v)


def kv_array(et, vals):
    return struct.pack("<IQ", et, len(vals)) + b"".join(kv_scalar(et, v) for v in vals)


def gguf_build(kvs, tensors, version=3, align=32):
    """kvs: [(key, type, raw value bytes)]; tensors: [(name, dims, ggml type id, data bytes)]."""
    out = bytearray(b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(kvs)))
    for key, t, raw in kvs:
        out += gguf_str(key) + struct.pack("<I", t) + raw
    off, blobs = 0, []
    for name, dims, t, data in tensors:
        out += gguf_str(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
        out += struct.pack("<IQ", t, off)
        blobs.append((off, data))
        off = (off + len(data) + align - 1) // align * align
    out += b"\0" * (-len(out) % align)
    data = bytearray(off)
    for o, d in blobs:
        data[o:o + len(d)] = d
    return bytes(out + data)


def shrink_tensors(tensors, data, type_for=None):
    """Each tensor becomes one block per row and one row, its rank kept; its
    bytes are the first bytes of its original data."""
    out = []
    for i, (name, dims, t, off) in enumerate(tensors):
        if type_for:
            t = GGML[type_for(i, name)][0]
        _, be, bb = GGML_BY_ID[t]
        new_dims = [be] + [1] * (len(dims) - 1)
        size = bb
        out.append((name, new_dims, t, (data[off:off + size] + b"\x11" * size)[:size]))
    return out


def byte_level_alphabet():
    """GPT-2's printable stand-ins for the 256 byte values (bytes_to_unicode)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xa1, 0xad)) + list(range(0xae, 0x100))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for _, c in sorted(zip(bs, cs))]


LLAMA31_TEMPLATE = (
    "{{- bos_token }}{%- if messages[0]['role'] == 'system' %}"
    "{%- set system_message = messages[0]['content']|trim %}{%- set messages = messages[1:] %}"
    "{%- else %}{%- set system_message = \"\" %}{%- endif %}"
    "{%- if not date_string is defined %}{%- set date_string = \"26 Jul 2024\" %}{%- endif %}"
    "{{- \"<|start_header_id|>system<|end_header_id|>\\n\\n\" }}"
    "{{- \"Cutting Knowledge Date: December 2023\\n\" }}{{- \"Today Date: \" + date_string + \"\\n\\n\" }}"
    "{{- system_message }}{{- \"<|eot_id|>\" }}"
    "{%- for message in messages %}{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'"
    " + message['content'] | trim + '<|eot_id|>' }}{%- endfor %}")


def small_vocab_kvs(llama3):
    """A GPT-2 byte-level vocabulary: the 256 bytes and a few merges."""
    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                "<|eot_id|>"] if llama3 else ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    plain = byte_level_alphabet() + ["he", "ll", "llo", "\u0120w", "or"]
    merges = ["h e", "l l", "ll o", "\u0120 w", "o r"]
    tokens = specials + plain
    types = [3] * len(specials) + [1] * len(plain)
    if llama3:
        tpl = ("{% set loop_messages = messages %}{% for message in loop_messages %}"
               "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + "
               "message['content'] | trim + '<|eot_id|>' }}{% endfor %}")
    else:
        tpl = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
               "{{ '<|im_start|>system\nYou are a helpful AI assistant.<|im_end|>\n' }}{% endif %}"
               "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
               "{% endfor %}")
    kvs = [
        (b"general.architecture", T_STR, kv_scalar(T_STR, "llama")),
        (b"general.name", T_STR, kv_scalar(T_STR, "fuzz seed")),
        (b"llama.block_count", T_U32, kv_scalar(T_U32, 1)),
        (b"llama.context_length", T_U32, kv_scalar(T_U32, 256)),
        (b"llama.embedding_length", T_U32, kv_scalar(T_U32, 64)),
        (b"llama.feed_forward_length", T_U32, kv_scalar(T_U32, 128)),
        (b"llama.attention.head_count", T_U32, kv_scalar(T_U32, 4)),
        (b"llama.attention.head_count_kv", T_U32, kv_scalar(T_U32, 2)),
        (b"llama.rope.freq_base", T_F32, kv_scalar(T_F32, 500000.0 if llama3 else 10000.0)),
        (b"llama.attention.layer_norm_rms_epsilon", T_F32, kv_scalar(T_F32, 1e-5)),
        (b"tokenizer.ggml.model", T_STR, kv_scalar(T_STR, "gpt2")),
        (b"tokenizer.ggml.pre", T_STR, kv_scalar(T_STR, "llama-bpe" if llama3 else "smollm")),
        (b"tokenizer.ggml.tokens", T_ARR, kv_array(T_STR, tokens)),
        (b"tokenizer.ggml.token_type", T_ARR, kv_array(T_I32, types)),
        (b"tokenizer.ggml.merges", T_ARR, kv_array(T_STR, merges)),
        (b"tokenizer.ggml.bos_token_id", T_U32, kv_scalar(T_U32, 0 if llama3 else 1)),
        (b"tokenizer.ggml.eos_token_id", T_U32, kv_scalar(T_U32, 4 if llama3 else 2)),
        (b"tokenizer.chat_template", T_STR, kv_scalar(T_STR, tpl)),
    ]
    if llama3:
        kvs += [(b"llama.attention.key_length", T_U32, kv_scalar(T_U32, 16)),
                (b"llama.rope.dimension_count", T_U64, kv_scalar(T_U64, 16)),
                (b"tokenizer.ggml.add_bos_token", T_BOOL, kv_scalar(T_BOOL, 1))]
    return kvs


def all_types_kvs():
    kvs = [(b"general.alignment", T_U32, kv_scalar(T_U32, 64))]
    samples = {T_U8: 200, T_I8: -5, T_U16: 60000, T_I16: -300, T_U32: 4000000000, T_I32: -7,
               T_F32: 1.5, T_BOOL: 1, T_U64: 1 << 40, T_I64: -(1 << 40), T_F64: 2.25, T_STR: "text"}
    for t, v in samples.items():
        kvs.append((b"scalar.%d" % t, t, kv_scalar(t, v)))
        kvs.append((b"array.%d" % t, T_ARR, kv_array(t, [v, v, v])))
    kvs.append((b"array.empty", T_ARR, kv_array(T_U32, [])))
    return kvs


def make_gguf_seeds(kvz, tmp, out):
    seeds = {}
    path = os.path.join(tmp, "tiny.gguf")
    run(kvz, "synth-model", "--shape", "tiny", "--layers", "1", "-o", path)
    version, kvs, tensors, data, _ = gguf_parse(open(path, "rb").read())
    seeds["synth_tiny_q8_0.gguf"] = gguf_build(kvs, shrink_tensors(tensors, data))
    # the same tensors in every block type kvz reads, spread over the tensors
    names = list(GGML)
    seeds["small_chatml_mixed_types.gguf"] = gguf_build(
        small_vocab_kvs(False), shrink_tensors(tensors, data, lambda i, n: names[i % len(names)]))
    seeds["small_llama3_k_quants.gguf"] = gguf_build(
        small_vocab_kvs(True),
        shrink_tensors(tensors, data, lambda i, n: ["Q4_K", "Q5_K", "Q6_K", "F32"][i % 4]))
    # Llama 3.1's dated system turn and RoPE frequency factors (one f32 per rotated pair)
    kvs = [kv for kv in small_vocab_kvs(True) if kv[0] != b"tokenizer.chat_template"]
    kvs.append((b"tokenizer.chat_template", T_STR, kv_scalar(T_STR, LLAMA31_TEMPLATE)))
    factors = struct.pack("<8f", 1.0, 1.0, 1.5, 2.5, 4.0, 6.0, 8.0, 8.0)
    seeds["small_llama31_rope_freqs.gguf"] = gguf_build(
        kvs, shrink_tensors(tensors, data) + [(b"rope_freqs.weight", [8], GGML["F32"][0], factors)])
    seeds["all_value_types_v2.gguf"] = gguf_build(all_types_kvs(), [], version=2, align=64)
    seeds["all_value_types_v3_tensor.gguf"] = gguf_build(
        all_types_kvs(), [(b"t", [4, 2], GGML["F16"][0], bytes(range(16)))], version=3, align=64)
    return seeds


# ---- artifacts ---------------------------------------------------------------

def mdb_values(store, db):
    """(key, value) pairs of one LMDB database, via mdb_dump's hex format."""
    lines = run("mdb_dump", "-s", db, store).decode().splitlines()
    body = lines[lines.index("HEADER=END") + 1:lines.index("DATA=END")]
    return [(bytes.fromhex(body[i].strip()), bytes.fromhex(body[i + 1].strip()))
            for i in range(0, len(body), 2)]


def relayout(art, compress):
    """The same artifact with every section stored as is (compressor 0), or
    every section zstd-compressed (compressor 1, positions included)."""
    n = struct.unpack_from("<I", art, 32)[0]
    entries, payloads = [], []
    for i in range(n):
        e = bytearray(art[64 + 48 * i:64 + 48 * (i + 1)])
        kind = struct.unpack_from("<H", e, 0)[0]
        off, stored, raw = struct.unpack_from("<QQQ", e, 8)
        p = art[off:off + stored]
        if e[7] == 1 and not compress:
            # positions: the varint or bitmap stream, its size in the frame
            p = unzstd(p, frame_content_size(p) if kind == 3 else raw)
            e[7] = 0
        elif e[7] == 0 and compress:
            p = zstd(p)
            e[7] = 1
        entries.append(e)
        payloads.append(p)
    return layout(art[:64], entries, payloads)


def frame_content_size(frame):
    ZSTD.ZSTD_getFrameContentSize.restype = ctypes.c_ulonglong
    ZSTD.ZSTD_getFrameContentSize.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
    size = ZSTD.ZSTD_getFrameContentSize(bytes(frame), len(frame))
    if size >= (1 << 63):
        sys.exit("make_seeds: a zstd frame without its content size")
    return size


def layout(header, entries, payloads):
    n = len(entries)
    at = 64 + 48 * n
    for e, p in zip(entries, payloads):
        struct.pack_into("<QQ", e, 8, at, len(p))
        struct.pack_into("<Q", e, 40, xxh3(p))
        at += len(p)
    total = at + 16
    h = bytearray(header)
    table = b"".join(bytes(e) for e in entries)
    struct.pack_into("<Q", h, 16, total)
    struct.pack_into("<I", h, 32, n)
    struct.pack_into("<Q", h, 40, xxh3(table))
    struct.pack_into("<Q", h, 56, xxh3(bytes(h[:56])))
    body = bytes(h) + table + b"".join(payloads) + b"KVZEND\0\0"
    return body + struct.pack("<Q", xxh3(body))


DOCS = {
    "lighthouse.txt": "The lighthouse was first lit in 1851. Its keeper, Ada Morrow, kept the lamp "
                      "for forty years and logged every ship that passed the harbour.\n",
    "notes.md": "# Notes\n\nKV caches store keys and values.\n\nEviction keeps the pairs that matter.\n",
}
LONG_DOC = "\n\n".join("Paragraph %d: the tide rose over the rocks and the bell rang %d times." % (i, i)
                       for i in range(3)) + "\n"


def make_store_seeds(kvz, tmp):
    model = os.path.join(tmp, "tiny2.gguf")
    run(kvz, "synth-model", "--shape", "tiny", "--layers", "2", "--ctx", "4096", "-o", model)
    short = os.path.join(tmp, "short_model.gguf")
    run(kvz, "synth-model", "--shape", "tiny", "--layers", "1", "--ctx", "166", "-o", short)
    docs = os.path.join(tmp, "docs")
    os.makedirs(docs)
    for name, text in DOCS.items():
        open(os.path.join(docs, name), "w").write(text)
    long_dir = os.path.join(tmp, "long")
    os.makedirs(long_dir)
    open(os.path.join(long_dir, "tide.txt"), "w").write(LONG_DOC)
    store = os.path.join(tmp, "store")
    configs = [
        (model, docs, ["--method", "kvzip", "--ratio", "0.3", "--bits", "4"]),
        (model, docs, ["--method", "kvzip", "--ratio", "0.5", "--bits", "16"]),
        (model, docs, ["--method", "snapkv", "--ratio", "0.3", "--bits", "2", "--key-group", "8",
                       "--value-group", "8"]),
        (model, docs, ["--method", "recent", "--ratio", "0.4", "--bits", "8", "--fp16-tokens", "0"]),
        (short, long_dir, ["--method", "recent", "--ratio", "0.3", "--bits", "4"]),
    ]
    for m, src, args in configs:  # relative names: the manifests hold them
        run(os.path.abspath(kvz), "compile", os.path.relpath(src, tmp), "--store", "store", "--model", m,
            "--quiet", "--threads", "1", "--reserve", "16", *args, cwd=tmp,
            env=dict(os.environ, OMP_NUM_THREADS="1"))
    arts = [fix_created(v) for _, v in mdb_values(store, "artifacts")]
    recs = [fix_record_created(v) for _, v in mdb_values(store, "docs")]
    return arts, recs


def manifest_fields(art):
    """{key: raw value} of the artifact's manifest (section 0)."""
    e = art[64:112]
    off, stored, raw = struct.unpack_from("<QQQ", e, 8)
    m = art[off:off + stored]
    if e[7] == 1:
        m = unzstd(m, raw)
    fields, at = {}, 0
    while at < len(m):
        key, _, length = struct.unpack_from("<HBxI", m, at)
        fields[key] = m[at + 8:at + 8 + length]
        at += 8 + length
    return fields


def fix_created(art):
    """The artifact with its manifest's `created` (key 51) set to CREATED."""
    n = struct.unpack_from("<I", art, 32)[0]
    entries, payloads = [], []
    for i in range(n):
        e = bytearray(art[64 + 48 * i:64 + 48 * (i + 1)])
        off, stored, raw = struct.unpack_from("<QQQ", e, 8)
        p = art[off:off + stored]
        if i == 0:  # the manifest
            m = bytearray(unzstd(p, raw) if e[7] == 1 else p)
            at = 0
            while at < len(m):
                key, _, length = struct.unpack_from("<HBxI", m, at)
                if key == 51:
                    struct.pack_into("<Q", m, at + 8, CREATED)
                at += 8 + length
            p = zstd(m) if e[7] == 1 else bytes(m)
        entries.append(e)
        payloads.append(p)
    return layout(art[:64], entries, payloads)


def fix_record_created(rec):
    """A doc record with every entry's `created` set to CREATED."""
    r = bytearray(rec)
    n, at = struct.unpack_from("<I", r, 20)[0], 24
    for _ in range(n):
        struct.pack_into("<Q", r, at + 16, CREATED)
        summary_len = struct.unpack_from("<H", r, at + 40)[0]
        segments = struct.unpack_from("<I", r, at + 36)[0]
        at += 42 + summary_len + 16 * segments
    return bytes(r)


def describe(art):
    """method_bits_layers_segment_size_hash: what a seed is, at a glance."""
    f = manifest_fields(art)
    u32 = lambda k: struct.unpack("<I", f[k])[0]
    return "%s_%dbit_%dl_seg%d_%db_%s" % (f[40].decode(), u32(45), u32(3), u32(33), len(art),
                                           hashlib.sha1(art).hexdigest()[:6])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kvz", default=os.environ.get("KVZ_BIN", os.path.join(ROOT, "build", "kvz")))
    ap.add_argument("--out", default=os.path.join(HERE, "corpus"))
    a = ap.parse_args()
    if not os.access(a.kvz, os.X_OK):
        sys.exit("make_seeds: %s not found (run make first)" % a.kvz)
    tmp = tempfile.mkdtemp(prefix="kvz-seeds-")
    try:
        gguf = make_gguf_seeds(a.kvz, tmp, a.out)
        arts, recs = make_store_seeds(a.kvz, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    written = {}
    for name, data in gguf.items():
        written[os.path.join("gguf", name)] = data
    # all artifacts: deduplicated by content, named by shape
    arts = sorted(set(arts), key=len)
    for art in arts:
        written[os.path.join("artifact", "compiled_%s.kvz" % describe(art))] = art
    # the three smallest with every section stored as is, and all zstd
    for art in arts[:3]:
        flat = relayout(art, False)
        written[os.path.join("artifact", "flat_%s.kvz" % describe(flat))] = flat
        packed = relayout(art, True)
        written[os.path.join("artifact", "zstd_%s.kvz" % describe(packed))] = packed
    for r in sorted(set(recs)):
        written[os.path.join("doc_record", "store_%s.rec" % hashlib.sha1(r).hexdigest()[:12])] = r

    for sub in ("gguf", "artifact", "doc_record"):
        d = os.path.join(a.out, sub)
        os.makedirs(d, exist_ok=True)
        for f in os.listdir(d):  # regenerate our own seeds; keep regression inputs
            if f.startswith(("synth_", "small_", "all_value_", "compiled_", "flat_", "zstd_", "store_")):
                os.remove(os.path.join(d, f))
    total = 0
    for rel, data in sorted(written.items()):
        with open(os.path.join(a.out, rel), "wb") as f:
            f.write(data)
        total += len(data)
        print("%7d  %s" % (len(data), rel))
    print("%7d  bytes in %d seeds" % (total, len(written)))


if __name__ == "__main__":
    main()
