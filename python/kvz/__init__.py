"""kvz: precompiled, compressed KV caches for LLaMA-family models (ctypes binding).

    import kvz
    with kvz.Engine("corpus.store", model="model.gguf") as engine:
        print(engine.documents())
        with engine.session(["handbook.md"]) as s:
            print(s.ask("Who signs expense reports?"))

The shared library is found through $KVZ_LIBRARY, then the system's library
path (an installed libkvz.so), then the build folder of a source checkout.
Errors the library reports raise kvz.Error with .code (a negative kvz_status)
and the library's message; an argument of the wrong type or range raises
TypeError or ValueError before the library is called, as does using an engine
or session after close().
"""
import ctypes
import ctypes.util
import operator
import os

__all__ = ["Engine", "Session", "Error", "library_version"]

_char_pp = ctypes.POINTER(ctypes.c_char_p)
_STREAM = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.POINTER(ctypes.c_char), ctypes.c_size_t)

_DEVICES = {"cpu": 0, "cuda": 1, "auto": 2}


class _EngineOptions(ctypes.Structure):
    _fields_ = [("device", ctypes.c_int), ("threads", ctypes.c_int), ("idle_sessions", ctypes.c_int)]


class _SessionOptions(ctypes.Structure):
    _fields_ = [("reserve", ctypes.c_int32), ("config", ctypes.c_int32)]


class _DocPart(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("first_segment", ctypes.c_int32), ("segments", ctypes.c_int32)]


class _LoadInfo(ctypes.Structure):
    _fields_ = [("load_ms", ctypes.c_double), ("artifact_bytes", ctypes.c_uint64),
                ("documents", ctypes.c_int32), ("segments", ctypes.c_int32),
                ("document_tokens", ctypes.c_int32), ("kept_pairs", ctypes.c_uint64)]


class _AskOptions(ctypes.Structure):
    _fields_ = [("max_tokens", ctypes.c_int32), ("temperature", ctypes.c_float),
                ("top_p", ctypes.c_float), ("seed", ctypes.c_uint64),
                ("stream", _STREAM), ("stream_user", ctypes.c_void_p)]


# kvz.Error.code: a kvz_status of kvz.h.
(ERR_ARG, ERR_NOMEM, ERR_IO, ERR_FORMAT, ERR_UNSUPPORTED, ERR_MODEL_MISMATCH, ERR_NOT_FOUND, ERR_BACKEND, ERR_RANGE,
 ERR_INTERNAL) = range(-1, -11, -1)

# Why an answer ended: Session.last["stopped_by"] (kvz_stop in kvz.h).
STOP_END_OF_TURN, STOP_MAX_TOKENS, STOP_CALLBACK, STOP_RESERVE = 1, 2, 3, 4


class _AskInfo(ctypes.Structure):
    _fields_ = [("question_tokens", ctypes.c_int32), ("answer_tokens", ctypes.c_int32),
                ("first_token_ms", ctypes.c_double), ("decode_tokens_per_s", ctypes.c_double),
                ("ended_turn", ctypes.c_int), ("stopped_by", ctypes.c_int32)]


def _find_library():
    explicit = os.environ.get("KVZ_LIBRARY")
    if explicit:
        return explicit
    found = ctypes.util.find_library("kvz")
    if found:
        return found
    here = os.path.dirname(os.path.abspath(__file__))
    for build in ("build", "build-asan"):
        candidate = os.path.join(here, "..", "..", build, "libkvz.so")
        if os.path.exists(candidate):
            return candidate
    raise OSError("libkvz.so not found: set KVZ_LIBRARY, install kvz (make install) or build it (make)")


_lib = ctypes.CDLL(_find_library())


def _declare(name, restype, *argtypes):
    f = getattr(_lib, name)
    f.restype, f.argtypes = restype, list(argtypes)
    return f


_strerror = _declare("kvz_strerror", ctypes.c_char_p, ctypes.c_int)
_last_error = _declare("kvz_last_error", ctypes.c_char_p)
_version = _declare("kvz_version", ctypes.c_char_p)
_free = _declare("kvz_free", None, ctypes.c_void_p)
_engine_open = _declare("kvz_engine_open", ctypes.c_int, ctypes.POINTER(ctypes.c_void_p), ctypes.c_char_p,
                        ctypes.c_char_p, ctypes.POINTER(_EngineOptions))
_engine_close = _declare("kvz_engine_close", None, ctypes.c_void_p)
_engine_documents = _declare("kvz_engine_documents", ctypes.c_int, ctypes.c_void_p,
                             ctypes.POINTER(_char_pp), ctypes.POINTER(ctypes.c_size_t))
_engine_text = _declare("kvz_engine_document_text", ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p,
                        ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_size_t))
_engine_segment_text = _declare("kvz_engine_segment_text", ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p,
                                ctypes.c_int32, ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_size_t))
_engine_segments = _declare("kvz_engine_document_segments", ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p,
                            ctypes.c_int32, ctypes.POINTER(ctypes.POINTER(ctypes.c_int32)),
                            ctypes.POINTER(ctypes.c_size_t))
_session_open = _declare("kvz_session_open_parts", ctypes.c_int, ctypes.POINTER(ctypes.c_void_p), ctypes.c_void_p,
                         ctypes.POINTER(_DocPart), ctypes.c_size_t, ctypes.POINTER(_SessionOptions))
_session_close = _declare("kvz_session_close", None, ctypes.c_void_p)
_session_info = _declare("kvz_session_load_info", ctypes.c_int, ctypes.c_void_p, ctypes.POINTER(_LoadInfo))
_session_ask = _declare("kvz_session_ask", ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p,
                        ctypes.POINTER(_AskOptions), ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(_AskInfo))


class Error(Exception):
    """A failed kvz call: .code is the kvz_status, the text the library's message."""

    def __init__(self, code):
        self.code = code
        detail = (_last_error() or b"").decode("utf-8", "replace")
        generic = (_strerror(code) or b"").decode("utf-8", "replace")
        super().__init__(f"{generic}: {detail}" if detail else generic)


def _check(code):
    if code != 0:
        raise Error(code)


def _take_string(ptr, length=None):
    """Copy a kvz-allocated string into Python and free it."""
    if not ptr.value:
        return ""
    try:
        raw = ctypes.string_at(ptr.value, length) if length is not None else ctypes.string_at(ptr.value)
    finally:
        _free(ptr)
    return raw.decode("utf-8", "replace")


def _c_string(text, what):
    """UTF-8 for C: names as documents() gives them (undecodable bytes as
    surrogates) go back as the same bytes; a NUL would end the string early."""
    if not isinstance(text, str):
        raise TypeError(f"{what} must be a str (got {type(text).__name__})")
    raw = text.encode("utf-8", "surrogateescape")
    if b"\0" in raw:
        raise ValueError(f"{what} holds a NUL character")
    return raw


def _c_int(value, low, high, what):
    """ctypes wraps integers silently: out of range is an error here instead."""
    if isinstance(value, bool) or not hasattr(type(value), "__index__"):
        raise TypeError(f"{what} must be an int (got {type(value).__name__})")
    value = operator.index(value)  # numpy's integers too
    if not low <= value <= high:
        raise ValueError(f"{what} must be in {low}..{high} (got {value})")
    return value


def library_version():
    return _version().decode()


class _Handle:
    """A kvz handle closed by close(), `with` or garbage collection."""

    _handle = None

    def _release(self, handle):
        raise NotImplementedError

    def close(self):
        if self._handle:
            self._release(self._handle)
            self._handle = None

    __del__ = close

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Engine(_Handle):
    """A model and a store, opened together (kvz_engine_open). threads: host
    threads (0: every CPU this process may use); idle_sessions: closed sessions' working memory kept
    for the next ones (0: 4, -1: none)."""

    _release = staticmethod(_engine_close)

    def __init__(self, store, model=None, device="auto", threads=0, idle_sessions=0):
        if device not in _DEVICES:
            raise ValueError(f"device must be one of {sorted(_DEVICES)}")
        opts = _EngineOptions(_DEVICES[device], _c_int(threads, -2**31, 2**31 - 1, "threads"),
                              _c_int(idle_sessions, -2**31, 2**31 - 1, "idle_sessions"))
        handle = ctypes.c_void_p()
        _check(_engine_open(ctypes.byref(handle), os.fsencode(store),
                            os.fsencode(model) if model else None, ctypes.byref(opts)))
        self._handle = handle

    def _live(self):
        if not self._handle:
            raise ValueError("the engine is closed")
        return self._handle

    def documents(self):
        """Names of the store's documents compiled for this model, sorted."""
        names, count = _char_pp(), ctypes.c_size_t()
        _check(_engine_documents(self._live(), ctypes.byref(names), ctypes.byref(count)))
        try:
            return [names[i].decode("utf-8", "surrogateescape") for i in range(count.value)]
        finally:
            _free(ctypes.cast(names, ctypes.c_void_p))

    def text(self, name):
        """The document's (normalised) text, rebuilt from its artifacts."""
        ptr, length = ctypes.c_void_p(), ctypes.c_size_t()
        _check(_engine_text(self._live(), _c_string(name, "a document name"), ctypes.byref(ptr), ctypes.byref(length)))
        return _take_string(ptr, length.value)

    def segments(self, name, config=0):
        """The number of tokens of each segment of a compiled document (one
        entry unless it was longer than a segment)."""
        tokens, count = ctypes.POINTER(ctypes.c_int32)(), ctypes.c_size_t()
        _check(_engine_segments(self._live(), _c_string(name, "a document name"),
                                _c_int(config, 0, 2**31 - 1, "config"), ctypes.byref(tokens), ctypes.byref(count)))
        try:
            return [tokens[i] for i in range(count.value)]
        finally:
            _free(ctypes.cast(tokens, ctypes.c_void_p))

    def segment_text(self, name, segment):
        """The (normalised) text of one segment (counted from 0) of a document."""
        ptr, length = ctypes.c_void_p(), ctypes.c_size_t()
        _check(_engine_segment_text(self._live(), _c_string(name, "a document name"),
                                    _c_int(segment, 0, 2**31 - 1, "segment"), ctypes.byref(ptr), ctypes.byref(length)))
        return _take_string(ptr, length.value)

    def session(self, names, reserve=0, config=0):
        """Load documents (composed in the order given) for questions. An
        entry is a name, or (name, first, count) for `count` segments from
        segment `first` (counted from 0; count 0: to the last)."""
        return Session(self, names, reserve, config)


class Session(_Handle):
    """Documents loaded from the store; ask question after question."""

    _release = staticmethod(_session_close)

    def __init__(self, engine, names, reserve=0, config=0):
        if isinstance(names, str):
            names = [names]
        parts = []
        for entry in names:
            if isinstance(entry, str):
                name, first, count = entry, 0, 0
            elif isinstance(entry, (tuple, list)) and len(entry) == 3:
                name, first, count = entry
            else:
                raise TypeError(f"a document is a name or (name, first segment, segments), not {entry!r}")
            parts.append(_DocPart(_c_string(name, "a document name"), _c_int(first, 0, 2**31 - 1, "first segment"),
                                  _c_int(count, 0, 2**31 - 1, "segments")))
        encoded = (_DocPart * len(parts))(*parts)
        opts = _SessionOptions(_c_int(reserve, -2**31, 2**31 - 1, "reserve"),
                               _c_int(config, -2**31, 2**31 - 1, "config"))
        handle = ctypes.c_void_p()
        _check(_session_open(ctypes.byref(handle), engine._live(), encoded, len(parts), ctypes.byref(opts)))
        self._engine = engine  # keeps the engine alive while the session is
        self._handle = handle
        info = _LoadInfo()
        _check(_session_info(handle, ctypes.byref(info)))
        self.load_info = {f: getattr(info, f) for f, _ in _LoadInfo._fields_}
        self.last = None

    def ask(self, question, max_tokens=256, temperature=0.0, top_p=0.95, seed=1, stream=None):
        """The answer as a string. `stream(piece)` gets the answer's bytes as
        they come (return True to stop). Timings land in self.last."""
        if not self._handle:
            raise ValueError("the session is closed")
        self.last = None  # a failed ask leaves no numbers of an earlier one
        failure = []

        def forward(_user, data, length):
            try:
                return 1 if stream(ctypes.string_at(data, length)) else 0
            except BaseException as e:  # never unwind through C
                failure.append(e)
                return 1

        callback = _STREAM(forward) if stream else _STREAM()
        opts = _AskOptions(_c_int(max_tokens, -2**31, 2**31 - 1, "max_tokens"), temperature, top_p,
                           _c_int(seed, 0, 2**64 - 1, "seed"), callback, None)
        answer, info = ctypes.c_void_p(), _AskInfo()
        _check(_session_ask(self._handle, _c_string(question, "the question"), ctypes.byref(opts), ctypes.byref(answer),
                            ctypes.byref(info)))
        text = _take_string(answer)
        if failure:
            raise failure[0]
        self.last = {f: getattr(info, f) for f, _ in _AskInfo._fields_}
        return text
