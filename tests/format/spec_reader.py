#!/usr/bin/env python3
"""A reader of `.kvz` artifacts (format/SPEC.md 1.0) and bundles
(format/BUNDLE.md 1) written from those documents alone, without kvz's code:
it holds the specification to what kvz writes (tests/cli/test_spec.sh). Any
deviation from a MUST, or from what the text says the bytes hold, refuses.

usage: spec_reader.py FILE.kvz...          decode and check, print a summary line
       spec_reader.py --json FILE.kvz...   one JSON summary per artifact
       spec_reader.py --bundle B.tar.zst   check a bundle and every artifact in it
       spec_reader.py --doc-hash FILE      SPEC §8's doc_hash of a text file (hex)
Exit 1 when something is refused.
"""
import io, json, math, re, struct, sys, tarfile

import numpy as np
import xxhash
import zstandard

MAGIC = bytes.fromhex("4B565A4152540D0A")
TRAILER = bytes.fromhex("4B565A454E440000")
KINDS = {1: "MANIFEST", 2: "TOKENS", 3: "POSITIONS", 4: "KEYS", 5: "VALUES",
         6: "KEY_SCALES", 7: "VALUE_SCALES"}
WHOLE = 0xFFFF


class Refused(Exception):
    pass


def need(cond, msg):
    if not cond:
        raise Refused(msg)


def xxh64(b):
    return xxhash.xxh3_64_intdigest(b, seed=0)


def xxh128_bytes(b):
    """SPEC §1: 16 bytes, low 64 bits first (each half little-endian, §8)."""
    v = xxhash.xxh3_128_intdigest(b, seed=0)
    return struct.pack("<QQ", v & (2**64 - 1), v >> 64)


# manifest: key -> (type, name); types 1 u32, 2 u64, 3 f32, 4 str, 5 bytes, 6 i32
MKEYS = {
    1: (4, "model_arch"), 2: (4, "model_name"), 3: (1, "n_layers"), 4: (1, "n_heads"),
    5: (1, "n_kv_heads"), 6: (1, "head_dim"), 7: (1, "embedding_dim"), 8: (1, "vocab"),
    9: (3, "rope_base"), 10: (1, "rope_dim"), 11: (1, "rope_mode"),
    12: (2, "tokenizer_hash"), 13: (2, "weights_hash"), 14: (2, "model_fingerprint"),
    20: (4, "template"), 21: (2, "prefix_hash"), 22: (1, "prefix_tokens"),
    30: (4, "doc_name"), 31: (5, "doc_hash"), 32: (1, "n_tokens"), 33: (1, "segment"),
    34: (1, "n_segments"), 40: (4, "method"), 41: (4, "level"), 42: (3, "ratio"),
    43: (1, "budget"), 44: (4, "budget_shape"), 45: (1, "bits"), 46: (1, "key_group"),
    47: (1, "value_group"), 48: (1, "fp16_tokens"), 49: (4, "options"),
    50: (4, "compiler"), 51: (2, "created"), 52: (4, "config"), 53: (4, "summary"),
}
SCALAR_LEN = {1: 4, 2: 8, 3: 4, 6: 4}


def parse_manifest(raw):
    m, records, unknown = {}, {}, []
    p = 0
    while p < len(raw):
        need(p + 8 <= len(raw), "manifest: truncated record header at %d" % p)
        key, typ, res, length = struct.unpack_from("<HBBI", raw, p)
        need(p + 8 + length <= len(raw), "manifest: record %d overruns section" % key)
        val = raw[p + 8:p + 8 + length]
        rec = raw[p:p + 8 + length]
        p += 8 + length
        need(res == 0, "manifest: reserved byte %d of key %d" % (res, key))
        if key not in MKEYS:
            unknown.append(key)
            continue
        want, name = MKEYS[key]
        need(typ == want, "manifest: key %d (%s) has type %d, want %d" % (key, name, typ, want))
        if typ in SCALAR_LEN:
            need(length == SCALAR_LEN[typ], "manifest: key %d length %d" % (key, length))
        if key == 31:
            need(length == 16, "manifest: doc_hash length %d" % length)
        need(key not in records, "manifest: key %d twice" % key)
        if typ == 1:
            v = struct.unpack("<I", val)[0]
        elif typ == 2:
            v = struct.unpack("<Q", val)[0]
        elif typ == 3:
            v = struct.unpack("<f", val)[0]
        elif typ == 6:
            v = struct.unpack("<i", val)[0]
        elif typ == 4:
            v = val.decode("utf-8")
        else:
            v = bytes(val)
        m[name] = v
        records[key] = bytes(rec)
    return m, records, unknown


def seal(body):
    """For tests that change an artifact: body (header, table, payloads, no trailer) with its
    file_size, table and header checksums made right and its trailer appended."""
    body = bytearray(body)
    entries = struct.unpack_from("<I", body, 32)[0]
    struct.pack_into("<Q", body, 16, len(body) + 16)
    struct.pack_into("<Q", body, 40, xxh64(bytes(body[64:64 + 48 * entries])))
    struct.pack_into("<Q", body, 56, xxh64(bytes(body[:56])))
    body += TRAILER
    body += struct.pack("<Q", xxh64(bytes(body)))
    return bytes(body)


def append_section(data, kind, layer, head, payload, count=0, minor=None):
    """For tests that change an artifact: data with one more section (raw, stored whole) at the
    table's end, every payload moved one entry further, the minor version set if given, sealed."""
    n = struct.unpack_from("<I", data, 32)[0]
    table = bytearray(data[64:64 + 48 * n])
    for i in range(n):
        struct.pack_into("<Q", table, i * 48 + 8, struct.unpack_from("<Q", table, i * 48 + 8)[0] + 48)
    table += struct.pack("<HHHBBQQQIIQ", kind, layer, head, 0, 0, len(data) - 16 + 48, len(payload),
                         len(payload), count, 0, xxh64(payload))
    body = bytearray(data[:64]) + table + data[64 + 48 * n:-16] + payload
    if minor is not None:
        struct.pack_into("<H", body, 10, minor)
    struct.pack_into("<I", body, 32, n + 1)
    return seal(body)


def zstd_decompress(stored, expect):
    """SPEC §4.2: one frame, nothing after it, declaring its content size, equal to `expect`."""
    params = zstandard.get_frame_parameters(stored)
    need(params.content_size not in (zstandard.CONTENTSIZE_UNKNOWN, zstandard.CONTENTSIZE_ERROR),
         "zstd frame without content size")
    if expect is not None:
        need(params.content_size == expect,
             "zstd content size %d != expected %d" % (params.content_size, expect))
    d = zstandard.ZstdDecompressor().decompressobj()
    out = d.decompress(stored)
    need(d.eof and not d.unused_data, "not one whole zstd frame")
    need(len(out) == params.content_size, "zstd output size")
    return out


def unshuffle(b, w):
    n = len(b) // w
    body = np.frombuffer(b[:n * w], dtype=np.uint8).reshape(w, n).T.reshape(-1)
    return body.tobytes() + b[n * w:]


def read_varint(b, p):
    v = shift = 0
    while True:
        need(p < len(b), "varint truncated")
        c = b[p]; p += 1
        v |= (c & 0x7F) << shift
        if not c & 0x80:
            return v, p
        shift += 7
        need(shift < 64, "varint too long")


class Artifact:
    def __init__(self, data, name="?"):
        self.name = name
        self.data = data = bytes(data)
        size = len(data)
        need(size >= 64 + 16, "too small")
        (magic, vmaj, vmin, hbytes, fsize, toff, tent, flags, tsum, reserved,
         hsum) = struct.unpack_from("<8sHHIQQIIQQQ", data, 0)
        need(magic == MAGIC, "bad magic")
        need(vmaj == 1, "unknown major %d" % vmaj)
        need(hbytes == 64, "header_bytes %d" % hbytes)
        need(xxh64(data[:56]) == hsum, "header checksum")
        need(fsize == size, "file_size %d != %d" % (fsize, size))
        need(flags == 0, "unknown flags %#x" % flags)
        need(reserved == 0, "reserved header field %#x" % reserved)
        need(data[size - 16:size - 8] == TRAILER, "bad trailer magic")
        need(xxh64(data[:size - 8]) == struct.unpack_from("<Q", data, size - 8)[0],
             "trailer checksum")
        need(toff == 64, "table_offset %d (64 in version 1.0)" % toff)
        need(toff + tent * 48 <= size - 16, "table out of bounds")
        table = data[toff:toff + tent * 48]
        need(xxh64(table) == tsum, "table checksum")
        self.version = (vmaj, vmin)
        self.table_offset = toff
        self.entries = []
        seen = set()
        for i in range(tent):
            (kind, layer, head, tr, comp, off, stored, raw, count, aux,
             csum) = struct.unpack_from("<HHHBBQQQIIQ", table, i * 48)
            need(off + stored <= size - 16 and off >= 64, "section %d out of bounds" % i)
            need((kind, layer, head) not in seen, "duplicate section %d/%d/%d" % (kind, layer, head))
            seen.add((kind, layer, head))
            need(comp in (0, 1), "unknown compressor %d" % comp)
            need(tr in (0, 1, 2, 3, 4), "unknown transform %d" % tr)
            need(xxh64(data[off:off + stored]) == csum, "section %d checksum" % i)
            # SPEC §9: a kind a later minor added is skipped; in a 1.0 artifact it is damage
            need(kind in KINDS or vmin > 0, "a version 1.0 artifact has no section kind %d" % kind)
            need(kind != 3 or tr in (3, 4), "POSITIONS with transform %d" % tr)
            self.entries.append(dict(kind=kind, layer=layer, head=head, transform=tr,
                                     compressor=comp, offset=off, stored=stored, raw=raw,
                                     count=count, aux=aux))
        # contiguous, in table order: from the table's end to the trailer
        at = toff + tent * 48
        for i, e in enumerate(self.entries):
            need(e["offset"] == at, "section %d starts at %d, expected %d" % (i, e["offset"], at))
            at += e["stored"]
        need(at == size - 16, "sections end at %d, the trailer starts at %d" % (at, size - 16))
        self.skipped = [e for e in self.entries if e["kind"] not in KINDS]
        self.entries = [e for e in self.entries if e["kind"] in KINDS]
        self.by = {(e["kind"], e["layer"], e["head"]): e for e in self.entries}

        man = [e for e in self.entries if e["kind"] == 1]
        need(len(man) == 1, "manifest sections: %d" % len(man))
        need(man[0]["layer"] == WHOLE and man[0]["head"] == WHOLE, "manifest layer/head")
        self.m, self.mrecords, self.unknown_keys = parse_manifest(self.decode(man[0]))
        m = self.m
        for k in ("n_layers", "n_kv_heads", "head_dim", "n_tokens", "bits", "key_group",
                  "value_group", "fp16_tokens", "model_fingerprint"):
            need(k in m, "manifest lacks %s" % k)
        need(m["bits"] in (16, 8, 4, 2), "bits %d" % m["bits"])
        # model fingerprint: xxh3 of records 1, 3..13 in key order
        fp_keys = [1] + list(range(3, 14))
        present = [k for k in fp_keys if k in self.mrecords]
        need(present == fp_keys, "manifest lacks model identity keys")
        need(xxh64(b"".join(self.mrecords[k] for k in present)) == m["model_fingerprint"],
             "model_fingerprint is not the xxh3 of records 1, 3..13")

        tok = self.by.get((2, WHOLE, WHOLE))
        need(tok is not None, "no TOKENS")
        tb = self.decode(tok)
        need(len(tb) == 4 * tok["count"], "TOKENS raw length")
        need(tok["count"] == m["n_tokens"], "TOKENS count %d != n_tokens %d" % (tok["count"], m["n_tokens"]))
        for e in self.entries:
            if e["kind"] in (1, 2, 3, 6, 7):
                need(e["aux"] == 0, "%s aux %d, not 0" % (KINDS.get(e["kind"]), e["aux"]))
        need(man[0]["count"] == 0, "MANIFEST count %d, not 0" % man[0]["count"])
        self.tokens = np.frombuffer(tb, dtype="<u4")
        if "vocab" in m:
            need(int(self.tokens.max(initial=0)) < m["vocab"], "token id >= vocab")
        self.decode_all()

    # ---- sections ----
    def decode(self, e, expect_transformed=None):
        stored = self.data[e["offset"]:e["offset"] + e["stored"]]
        tr = e["transform"]
        if tr in (0, 1, 2):
            expect_transformed = e["raw"]
        elif tr == 4:
            expect_transformed = (self.m["n_tokens"] + 7) // 8
        if e["compressor"] == 1:
            b = zstd_decompress(stored, expect_transformed)
        else:
            b = stored
            if expect_transformed is not None:
                need(len(b) == expect_transformed, "uncompressed length %d != %d" % (len(b), expect_transformed))
        if tr == 1:
            b = unshuffle(b, 2)
        elif tr == 2:
            b = unshuffle(b, 4)
        elif tr == 3:
            need(e["kind"] == 3, "delta-varint on kind %d" % e["kind"])
            vals, p, prev = [], 0, 0
            while p < len(b):
                v, p = read_varint(b, p)
                prev = v if not vals else prev + v
                vals.append(prev)
            need(len(vals) == e["count"], "delta-varint holds %d values, count %d" % (len(vals), e["count"]))
            b = np.array(vals, dtype="<u4").tobytes()
        elif tr == 4:
            need(e["kind"] == 3, "bitmap on kind %d" % e["kind"])
            bits = np.unpackbits(np.frombuffer(b, dtype=np.uint8), bitorder="little")
            need(not bits[self.m["n_tokens"]:].any(), "bitmap bits at n_tokens and above")
            idx = np.nonzero(bits)[0]
            need(len(idx) == e["count"], "bitmap has %d bits set, count %d" % (len(idx), e["count"]))
            b = idx.astype("<u4").tobytes()
        need(len(b) == e["raw"], "%s %d/%d raw %d != %d" % (KINDS.get(e["kind"]), e["layer"],
                                                           e["head"], len(b), e["raw"]))
        return b

    def decode_all(self):
        m = self.m
        L, H, d, b = m["n_layers"], m["n_kv_heads"], m["head_dim"], m["bits"]
        G, C = m["key_group"], m["value_group"]
        need(d % C == 0, "value_group does not divide head_dim")
        ntok = m["n_tokens"]
        self.pos, self.keys, self.vals, self.n16 = {}, {}, {}, {}
        kinds_seen = {e["kind"] for e in self.entries}
        for e in self.entries:
            if e["kind"] in (3, 4, 5, 6, 7):
                need(e["layer"] < L and e["head"] < H, "section layer/head out of range")
        for l in range(L):
            for h in range(H):
                P, K, V = (self.by.get((k, l, h)) for k in (3, 4, 5))
                need(P and K and V, "missing section for %d/%d" % (l, h))
                n = P["count"]
                need(n >= 1 and K["count"] == n and V["count"] == n, "count mismatch %d/%d" % (l, h))
                need(K["aux"] == V["aux"] and K["aux"] <= n, "n16 mismatch %d/%d" % (l, h))
                pos = np.frombuffer(self.decode(P), dtype="<u4")
                need(len(pos) == n, "positions length")
                need(np.all(np.diff(pos.astype(np.int64)) > 0), "positions not increasing %d/%d" % (l, h))
                need(int(pos[-1]) < ntok, "position >= n_tokens %d/%d" % (l, h))
                n16 = K["aux"]
                fp = m["fp16_tokens"]
                need(n16 == int(np.sum(pos < fp)), "n16 %d != kept indices below fp16_tokens %d at %d/%d" % (
                    n16, int(np.sum(pos < fp)), l, h))
                mm = n - n16
                self.pos[l, h] = pos
                self.n16[l, h] = n16
                self.keys[l, h] = self._kv(K, self.by.get((6, l, h)), n, n16, mm, d, b, G, C, True)
                self.vals[l, h] = self._kv(V, self.by.get((7, l, h)), n, n16, mm, d, b, G, C, False)
        if b == 16:
            need(6 not in kinds_seen and 7 not in kinds_seen, "scales present at 16 bits")

    def _kv(self, E, S, n, n16, mm, d, b, G, C, is_key):
        raw = self.decode(E)
        f16n = n16 * d * 2
        if b == 16:
            need(len(raw) == n * d * 2, "f16 payload length %d != %d" % (len(raw), n * d * 2))
            return np.frombuffer(raw, dtype="<f2").reshape(n, d).astype(np.float32)
        codebytes = (mm * d * b + 7) // 8
        need(len(raw) == f16n + codebytes, "payload length %d != %d+%d" % (len(raw), f16n, codebytes))
        head = np.frombuffer(raw[:f16n], dtype="<f2").reshape(n16, d).astype(np.float32)
        cb = np.frombuffer(raw[f16n:], dtype=np.uint8)
        bits = np.unpackbits(cb, bitorder="little")
        nbits = mm * d * b
        need(not bits[nbits:].any(), "padding bits not zero")
        codes = bits[:nbits].reshape(-1, b).astype(np.uint32)
        codes = (codes << np.arange(b, dtype=np.uint32)).sum(axis=1).reshape(mm, d)
        if mm == 0:  # SPEC §3: scales only for quantized pairs
            need(S is None, "scales for a head without quantized pairs")
            return head
        need(S is not None, "missing scales")
        sraw = self.decode(S)
        sc = np.frombuffer(sraw, dtype="<f2").astype(np.float32).reshape(-1, 2)
        if is_key:
            ng = (mm + G - 1) // G
            need(len(sc) == ng * d, "KEY_SCALES pairs %d != %d" % (len(sc), ng * d))
            need(S["count"] == len(sc), "KEY_SCALES count %d != pairs %d" % (S["count"], len(sc)))
            sc = sc.reshape(ng, d, 2)
            gi = np.arange(mm) // G
            scale, mn = sc[gi, :, 0], sc[gi, :, 1]
        else:
            ng = d // C
            need(len(sc) == mm * ng, "VALUE_SCALES pairs %d != %d" % (len(sc), mm * ng))
            need(S["count"] == len(sc), "VALUE_SCALES count %d != pairs %d" % (S["count"], len(sc)))
            sc = sc.reshape(mm, ng, 2)
            scale = np.repeat(sc[:, :, 0], C, axis=1)
            mn = np.repeat(sc[:, :, 1], C, axis=1)
        q = (mn + codes.astype(np.float32) * scale).astype(np.float32)
        return np.concatenate([head, q], axis=0)

    def section_bytes(self):
        out = {}
        for e in self.entries:
            k = KINDS.get(e["kind"], str(e["kind"]))
            out[k] = out.get(k, 0) + e["stored"]
        return out

    def summary(self):
        m = self.m
        L, H = m["n_layers"], m["n_kv_heads"]
        layers = []
        for l in range(L):
            ks = [len(self.pos[l, h]) for h in range(H)]
            layers.append({"layer": l, "kept": sum(ks), "min": min(ks), "max": max(ks), "heads": ks})
        allk = np.concatenate([v.ravel() for v in self.keys.values()])
        allv = np.concatenate([v.ravel() for v in self.vals.values()])
        return {
            "file": self.name, "version": "%d.%d" % self.version, "bytes": len(self.data),
            "sections": len(self.entries), "skipped_sections": len(self.skipped),
            "transforms": sorted({(KINDS[e["kind"]], e["transform"], e["compressor"]) for e in self.entries}),
            "manifest": {k: (v.hex() if isinstance(v, bytes) else v) for k, v in m.items()},
            "unknown_manifest_keys": self.unknown_keys,
            "n_tokens_in_TOKENS": int(len(self.tokens)),
            "kept_pairs": int(sum(len(p) for p in self.pos.values())),
            "layers": layers, "section_bytes": self.section_bytes(),
            "keys": {"absmax": float(np.abs(allk).max()), "rms": float(np.sqrt(np.mean(allk ** 2))),
                     "nan": int(np.isnan(allk).sum()), "inf": int(np.isinf(allk).sum()),
                     "zero_frac": float(np.mean(allk == 0))},
            "values": {"absmax": float(np.abs(allv).max()), "rms": float(np.sqrt(np.mean(allv ** 2))),
                       "nan": int(np.isnan(allv).sum()), "inf": int(np.isinf(allv).sum()),
                       "zero_frac": float(np.mean(allv == 0))},
        }


def normalise(text):
    if text.startswith(b"\xef\xbb\xbf"):
        text = text[3:]
    return text.replace(b"\r\n", b"\n")


def artifact_id(config, doc_hash, segment, n_segments):
    return xxh128_bytes(config.encode() + doc_hash + struct.pack("<II", segment, n_segments))


# ---------------- bundles ----------------
def read_bundle(path):
    raw = open(path, "rb").read()
    if raw[:4] == b"\x28\xb5\x2f\xfd":
        # one zstd stream; frames may lack content size, so stream-decode
        dctx = zstandard.ZstdDecompressor()
        raw = dctx.stream_reader(io.BytesIO(raw), read_across_frames=True).read()
    tf = tarfile.open(fileobj=io.BytesIO(raw), mode="r:")
    members = tf.getmembers()
    need(members and members[0].name == "kvz-bundle.json", "first entry not kvz-bundle.json")
    need(members[0].isreg(), "manifest not a regular file")

    def no_dups(pairs):
        keys = [k for k, _ in pairs]
        need(len(keys) == len(set(keys)), "duplicate JSON key")
        return dict(pairs)
    mraw = tf.extractfile(members[0]).read()
    man = json.loads(mraw.decode("utf-8"), object_pairs_hook=no_dups)
    # §2: the manifest's own checksum, over its bytes with the value's digits as '0's
    keys = list(re.finditer(rb'"manifest_xxh3"[ \t\r\n]*:[ \t\r\n]*', mraw))
    writer = re.fullmatch(r"kvz (\d+)\.(\d+)\.(\d+)", str(man.get("compiler", "")))
    need(keys or not writer or tuple(map(int, writer.groups())) < (0, 2, 2),
         "written by %s, which writes manifest_xxh3, and it has none" % man.get("compiler"))
    if keys or "manifest_xxh3" in man:
        need(len(keys) == 1, "manifest_xxh3 named %d times" % len(keys))
        at = keys[0].end()
        digits = mraw[at + 1:at + 17]
        need(mraw[at:at + 1] == b'"' and mraw[at + 17:at + 18] == b'"' and
             digits.decode("ascii", "replace") == man.get("manifest_xxh3"), "manifest_xxh3 malformed")
        zeroed = mraw[:at + 1] + b"0" * 16 + mraw[at + 17:]
        need("%016x" % xxh64(zeroed) == man["manifest_xxh3"], "the manifest does not match its manifest_xxh3")
    need(man.get("format") == "kvz-bundle", "format")
    need(man.get("version") == 1, "version")
    listed = {}
    for p in man.get("prefixes", []):
        need(p["path"] == "prefixes/%s-%s.kvz" % (p["model"], p["prefix_hash"]), "prefix path")
        listed[p["path"]] = ("prefix", p)
    ids = [a["id"] for a in man.get("artifacts", [])]
    need(ids == sorted(ids) and len(ids) == len(set(ids)), "artifacts not sorted/unique")
    for a in man.get("artifacts", []):
        need(a["path"] == "artifacts/%s.kvz" % a["id"], "artifact path")
        need(len(a["id"]) == 32 and a["id"] == a["id"].lower(), "id form")
        listed[a["path"]] = ("artifact", a)
    names = [d["name"] for d in man.get("documents", [])]
    need(len(names) == len(set(names)), "document named twice")
    art_model = {a["id"]: a["model"] for a in man.get("artifacts", [])}
    art_bytes = {a["id"]: a["bytes"] for a in man.get("artifacts", [])}
    seen, arts, order = set(), {}, []
    for mem in members[1:]:
        need(mem.isreg(), "%s not a regular file" % mem.name)
        need(not mem.name.startswith("/") and ".." not in mem.name.split("/"), "bad name")
        need(mem.name in listed and mem.name not in seen, "%s unlisted or repeated" % mem.name)
        seen.add(mem.name)
        order.append(mem.name)
        kind, ent = listed[mem.name]
        need(mem.size == ent["bytes"], "%s size" % mem.name)
        data = tf.extractfile(mem).read()
        need(len(data) == mem.size, "short")
        need("%016x" % xxh64(data) == ent["xxh3"], "%s xxh3" % mem.name)
        a = Artifact(data, mem.name)
        need("%016x" % a.m["model_fingerprint"] == ent["model"], "%s model" % mem.name)
        if kind == "prefix":  # SPEC §7
            m = a.m
            need(m.get("method") == "prefix", "prefix method")
            need("%016x" % m["prefix_hash"] == ent["prefix_hash"], "prefix hash")
            need(m.get("doc_name") == "(prefix)" and m["doc_hash"] == struct.pack("<Q", m["prefix_hash"]) + bytes(8),
                 "the prefix artifact's doc_name or doc_hash")
            need(m["prefix_tokens"] == 0 and m["fp16_tokens"] == 0 and m["bits"] == 16 and m.get("level", "") == ""
                 and m.get("config", "") == "", "the prefix artifact's manifest")
            need(all(len(p) == m["n_tokens"] for p in a.pos.values()), "a prefix position not kept")
            need(xxh64(a.tokens.astype("<u4").tobytes()) == m["prefix_hash"], "prefix_hash of the prefix's tokens")
        elif a.m.get("config"):
            need(artifact_id(a.m["config"], a.m["doc_hash"], a.m["segment"],
                             a.m["n_segments"]).hex() == ent["id"], "%s id" % mem.name)
        arts[mem.name] = a
    need(seen == set(listed), "listed files missing")
    # entry order: manifest, prefixes, then artifacts in id order
    pk = [n for n in order if n.startswith("prefixes/")]
    ak = [n for n in order if n.startswith("artifacts/")]
    need(order == pk + ak, "entry order")
    need(ak == sorted(ak), "artifacts not in id order")
    for d in man.get("documents", []):
        cfgs = [c["config"] for c in d["configs"]]
        need(len(cfgs) == len(set(cfgs)), "config listed twice")
        for c in d["configs"]:
            need(all(x in art_model and art_model[x] == c["model"] for x in c["artifacts"]), "doc artifacts")
            need(sum(art_bytes[x] for x in c["artifacts"]) == c["bytes"], "doc bytes")
            segs = [arts["artifacts/%s.kvz" % x] for x in c["artifacts"]]
            need([s.m["segment"] for s in segs] == list(range(len(segs))), "segment order")
            toks = sum(s.m["n_tokens"] for s in segs)
            need(toks == c["tokens"], "document tokens %d != the segments' n_tokens %d" % (c["tokens"], toks))
            need(all(s.m["n_segments"] == len(segs) for s in segs), "n_segments")
            cid = "%016x" % xxh64(segs[0].m["config"].encode())
            need(cid == c["config"], "config id %s != %s" % (cid, c["config"]))
            need(all(s.m["doc_hash"].hex() == d["hash"] for s in segs), "document hash")
            prefixes = {p["prefix_hash"] for p in man.get("prefixes", [])}
            need(all("%016x" % s.m["prefix_hash"] in prefixes for s in segs), "a segment's prefix is not in the bundle")
    return man, arts


def main(argv):
    if argv and argv[0] == "--doc-hash":
        print(xxh128_bytes(normalise(open(argv[1], "rb").read())).hex())
        return 0
    if argv and argv[0] == "--bundle":
        try:
            man, arts = read_bundle(argv[1])
        except (Refused, tarfile.TarError, zstandard.ZstdError, EOFError, ValueError, KeyError) as e:
            # a damaged container or manifest is refused like any other deviation
            print("%s: REFUSED: %s" % (argv[1], e))
            return 1
        for n, a in arts.items():
            print(n, a.m.get("method"), "bits", a.m["bits"], "kept", sum(len(p) for p in a.pos.values()), "OK")
        return 0
    as_json = argv and argv[0] == "--json"
    if as_json:
        argv = argv[1:]
    rc = 0
    for f in argv:
        try:
            a = Artifact(open(f, "rb").read(), f)
        except Refused as e:
            print("%s: REFUSED: %s" % (f, e)); rc = 1; continue
        s = a.summary()
        if as_json:
            print(json.dumps(s))
        else:
            mm = s["manifest"]
            print("%s: v%s OK, %d sections, %s %s bits %d, n_tokens %d, kept %d" % (
                f, s["version"], s["sections"], mm.get("method"), mm.get("level"), mm["bits"],
                mm["n_tokens"], s["kept_pairs"]))
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
