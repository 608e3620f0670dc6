"""kvz: precompiled, compressed KV caches for LLaMA-family models (ctypes binding).

    import kvz
    with kvz.Engine("corpus.store", model="model.gguf") as engine:
        print(engine.documents())
        with engine.session(["handbook.md"]) as s:
            print(s.ask("Who signs expense reports?"))

The shared library is found through $KVZ_LIBRARY, then the build folder of the
source checkout this file is in, then the system's library path: this version's
soname (libkvz.so.0.3, which a distribution's runtime package holds beside other
versions'), else any libkvz.so; one of another version (major.minor) than this
binding is refused.
Errors the library reports raise kvz.Error with .code (a negative kvz_status)
and the library's message; an argument of the wrong type or range raises
TypeError or ValueError before the library is called, as does using an engine
or session after close(). An engine or session may be closed on one thread
while another uses it: the close takes effect once that call returns (an
answer being generated stops at its next token). Neither can be pickled or
copied: open an engine in each process (multiprocessing's workers).
"""
import codecs
import contextlib
import ctypes
import ctypes.util
import operator
import os
import signal
import threading

__version__ = "0.3.16"  # the kvz.h this binding declares (KVZ_VERSION_STRING)

__all__ = ["Engine", "Session", "Error", "library_version",
           "ERR_ARG", "ERR_NOMEM", "ERR_IO", "ERR_FORMAT", "ERR_UNSUPPORTED", "ERR_MODEL_MISMATCH", "ERR_NOT_FOUND",
           "ERR_BACKEND", "ERR_RANGE", "ERR_INTERNAL",
           "STOP_END_OF_TURN", "STOP_MAX_TOKENS", "STOP_CALLBACK", "STOP_RESERVE"]

_MAX_THREADS = 1024  # KVZ_MAX_THREADS

_char_pp = ctypes.POINTER(ctypes.c_char_p)
_STREAM = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.POINTER(ctypes.c_char), ctypes.c_size_t)

_DEVICES = {"cpu": 0, "cuda": 1, "auto": 2}


class _EngineOptions(ctypes.Structure):
    _fields_ = [("device", ctypes.c_int), ("threads", ctypes.c_int), ("idle_sessions", ctypes.c_int)]


class _SessionOptions(ctypes.Structure):
    _fields_ = [("reserve", ctypes.c_int32), ("config", ctypes.c_int32), ("config_id", ctypes.c_uint64)]


class _ConfigInfo(ctypes.Structure):
    _fields_ = [("number", ctypes.c_int32), ("this_model", ctypes.c_int32), ("id", ctypes.c_uint64),
                ("model_fingerprint", ctypes.c_uint64), ("created", ctypes.c_uint64),
                ("stored_bytes", ctypes.c_uint64), ("tokens", ctypes.c_int32), ("segments", ctypes.c_int32),
                ("summary", ctypes.c_char * 128)]


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

# Why an answer ended: Session.last["stopped_by"] (kvz_stop in kvz.h), and
# Session.last["stop"] its name, the value `kvz query --json` writes as "stopped_by".
STOP_END_OF_TURN, STOP_MAX_TOKENS, STOP_CALLBACK, STOP_RESERVE = 1, 2, 3, 4
_STOP_NAMES = {STOP_END_OF_TURN: "end_of_turn", STOP_MAX_TOKENS: "max_tokens", STOP_CALLBACK: "callback",
               STOP_RESERVE: "reserve"}


class _AskInfo(ctypes.Structure):
    _fields_ = [("question_tokens", ctypes.c_int32), ("answer_tokens", ctypes.c_int32),
                ("first_token_ms", ctypes.c_double), ("decode_tokens_per_s", ctypes.c_double),
                ("ended_turn", ctypes.c_int), ("stopped_by", ctypes.c_int32)]


def _find_library():
    explicit = os.environ.get("KVZ_LIBRARY")
    if explicit:
        return explicit
    # this checkout's own build first: an install may be older. Only where this file is
    # the checkout's python/kvz/__init__.py: an installed package's folder two up is
    # anyone's (pip --target /tmp/x: /tmp/build, where any user may put a kvz.h too)
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
    own = os.path.join(root, "python", "kvz", "__init__.py")
    if os.path.isfile(os.path.join(root, "include", "kvz.h")) and os.path.isfile(own) and \
            os.path.samefile(own, __file__):
        for build in ("build", "build-asan"):
            candidate = os.path.join(root, build, "libkvz.so")
            if os.path.exists(candidate):
                return candidate
    # the Makefile's SO_NAME: before 1.0 the minor version is in it. Asked of the loader
    # first: find_library takes the first libkvz it sees (another version's, where two
    # are installed side by side) and, outside ldconfig's cache, only through libkvz.so
    major, minor = __version__.split(".")[:2]
    soname = f"libkvz.so.{major}.{minor}" if major == "0" else f"libkvz.so.{major}"
    try:
        ctypes.CDLL(soname)
        return soname
    except OSError:
        pass
    found = ctypes.util.find_library("kvz")
    if found:
        return found
    raise OSError("libkvz.so not found: set KVZ_LIBRARY, install kvz (make install) or build it (make)")


_lib_path = _find_library()
_lib = ctypes.CDLL(_lib_path)


def _declare(name, restype, *argtypes):
    f = getattr(_lib, name)
    f.restype, f.argtypes = restype, list(argtypes)
    return f


_strerror = _declare("kvz_strerror", ctypes.c_char_p, ctypes.c_int)
_last_error = _declare("kvz_last_error", ctypes.c_char_p)
_version = _declare("kvz_version", ctypes.c_char_p)
if _version().decode().split(".")[:2] != __version__.split(".")[:2]:
    raise ImportError(f"{_lib_path} is kvz {_version().decode()}, this binding is for {__version__}: "
                      "build this checkout (make) or set KVZ_LIBRARY")
_free = _declare("kvz_free", None, ctypes.c_void_p)
_engine_open = _declare("kvz_engine_open", ctypes.c_int, ctypes.POINTER(ctypes.c_void_p), ctypes.c_char_p,
                        ctypes.c_char_p, ctypes.POINTER(_EngineOptions))
_engine_close = _declare("kvz_engine_close", None, ctypes.c_void_p)
_engine_documents = _declare("kvz_engine_documents", ctypes.c_int, ctypes.c_void_p,
                             ctypes.POINTER(_char_pp), ctypes.POINTER(ctypes.c_size_t))
_engine_text = _declare("kvz_engine_document_text", ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p,
                        ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_size_t))
_engine_segment_text = _declare("kvz_engine_segment_text", ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p,
                                ctypes.c_int32, ctypes.c_uint64, ctypes.c_int32, ctypes.POINTER(ctypes.c_void_p),
                                ctypes.POINTER(ctypes.c_size_t))
_engine_segments = _declare("kvz_engine_document_segments", ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p,
                            ctypes.c_int32, ctypes.c_uint64, ctypes.POINTER(ctypes.POINTER(ctypes.c_int32)),
                            ctypes.POINTER(ctypes.c_size_t))
_engine_configs = _declare("kvz_engine_document_configs", ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p,
                           ctypes.POINTER(ctypes.POINTER(_ConfigInfo)), ctypes.POINTER(ctypes.c_size_t))
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


def _take_string(ptr, length=None, whole_characters=False):
    """Copy a kvz-allocated string into Python and free it. whole_characters:
    the first bytes of a character the text stops inside (an answer cut by
    max_tokens) are left out, as `kvz query` leaves them."""
    if not ptr.value:
        return ""
    try:
        raw = ctypes.string_at(ptr.value, length) if length is not None else ctypes.string_at(ptr.value)
    finally:
        _free(ptr)
    if whole_characters:
        return codecs.getincrementaldecoder("utf-8")("replace").decode(raw, final=False)
    return raw.decode("utf-8", "replace")


def _whole_characters(raw):
    """raw's whole UTF-8 characters, and the first bytes of one it stops inside
    (to come with the rest). Bytes that are not UTF-8 go on as they are."""
    for back in range(1, min(3, len(raw)) + 1):
        lead = raw[-back]
        if lead & 0xC0 != 0x80:  # not a continuation byte: how long is its character?
            need = 2 if lead & 0xE0 == 0xC0 else 3 if lead & 0xF0 == 0xE0 else 4 if lead & 0xF8 == 0xF0 else 1
            return (raw[:-back], raw[-back:]) if need > back else (raw, b"")
    return raw, b""


def _c_string(text, what):
    """UTF-8 for C: names as documents() gives them (undecodable bytes as
    surrogates) go back as the same bytes; a NUL would end the string early."""
    if not isinstance(text, str):
        raise TypeError(f"{what} must be a str (got {type(text).__name__})")
    raw = text.encode("utf-8", "surrogateescape")
    if b"\0" in raw:
        raise ValueError(f"{what} holds a NUL character")
    return raw


def _c_name(name):
    """A document's name as the store has it: a str, or a pathlib.Path of it."""
    return _c_string(os.fspath(name) if isinstance(name, os.PathLike) else name, "a document name")


def _form(config, config_id):
    """A compiled form: this store's number, or a configuration's id (an int, or
    its 16 hex digits as `kvz ls --json` writes them); not both."""
    config = _c_int(config, 0, 2**31 - 1, "config")
    if isinstance(config_id, str):
        if len(config_id) != 16 or any(c not in "0123456789abcdefABCDEF" for c in config_id):
            raise ValueError(f"config_id as a string is the id's 16 hex digits (kvz ls --json), not {config_id!r}")
        config_id = int(config_id, 16)
    config_id = _c_int(config_id, 0, 2**64 - 1, "config_id")
    if config and config_id:
        raise ValueError("give config or config_id, not both")
    return config, config_id


def _c_int(value, low, high, what):
    """ctypes wraps integers silently: out of range is an error here instead."""
    if isinstance(value, bool) or not hasattr(type(value), "__index__"):
        raise TypeError(f"{what} must be an int (got {type(value).__name__})")
    value = operator.index(value)  # numpy's integers too
    if not low <= value <= high:
        raise ValueError(f"{what} must be in {low}..{high} (got {value})")
    return value


def _c_float(value, low, high, what):
    """As C's float will hold it: out of range (NaN too) or changed by the
    rounding to float (1e39 to inf, 1e-50 to 0) is an error here instead."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) and not hasattr(type(value), "__float__"):
        raise TypeError(f"{what} must be a number (got {type(value).__name__})")
    value = float(value)
    held = ctypes.c_float(value).value
    if not low <= held <= high or held in (float("inf"), float("-inf")) or (held == 0) != (value == 0):
        raise ValueError(f"{what} must be a finite number in {low}..{high} that a C float holds (got {value})")
    return held


def library_version():
    return _version().decode()


@contextlib.contextmanager
def _sigint_held():
    """Ctrl-C (SIGINT) during a call that runs Python callbacks: Python runs a signal's
    handler as the next Python function starts, the callback, before any try of its own,
    and ctypes drops what the handler raised there ("Exception ignored on calling ctypes
    callback function"): the KeyboardInterrupt was lost and the answer cut short as if
    whole. On the main thread (the only one Python runs handlers on), Python's own
    handler (KeyboardInterrupt; an application's handler is left as it is) is held back
    while the call runs: a SIGINT is recorded (the yielded list, with .released() to run
    a callback's own code under the real handler, where a raise is caught), and the
    handler runs on it once the call returned."""
    class Held(list):
        @contextlib.contextmanager
        def released(self):
            yield

        def hold_again(self):
            pass

    caught = Held()
    previous = signal.getsignal(signal.SIGINT) if threading.current_thread() is threading.main_thread() else None
    if previous is not signal.default_int_handler:  # another thread, SIG_IGN, SIG_DFL, an application's
        yield caught
        return

    def hold(_signum, frame):
        caught.append(frame)

    @contextlib.contextmanager
    def released():  # a stream blocked (a full queue) is interrupted as before, inside forward's try
        signal.signal(signal.SIGINT, previous)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, hold)

    def hold_again():  # a KeyboardInterrupt raised as released() put `hold` back left the real handler
        signal.signal(signal.SIGINT, hold)

    caught.released, caught.hold_again = released, hold_again
    signal.signal(signal.SIGINT, hold)
    try:
        yield caught
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught:
            previous(signal.SIGINT, caught[0])


class _Handle:
    """A kvz handle closed by close(), `with` or garbage collection. Calls
    into the library hold it in use (_use); a close while one does is carried
    out by the last of them as it returns, never under it."""

    _handle = None
    _guard = None  # set with the handle
    _closed = False
    _users = 0
    _what = "handle"

    def _release(self, handle):
        raise NotImplementedError

    def _adopt(self, handle):
        self._guard = threading.RLock()  # re-entrant: a signal handler's close() on a thread inside it
        self._handle = handle

    def _take_if_unused(self):
        """Under the guard: the handle to release now, or None."""
        if not self._closed or self._users or not self._handle:
            return None
        handle, self._handle = self._handle, None
        return handle

    @contextlib.contextmanager
    def _use(self):
        if self._guard is None:
            raise ValueError(f"the {self._what} is closed")
        counted = False
        try:
            with self._guard:
                if self._closed or not self._handle:
                    raise ValueError(f"the {self._what} is closed")
                self._users += 1
                counted = True
            yield self._handle
        finally:
            if counted:
                with self._guard:
                    self._users -= 1
                    handle = self._take_if_unused()
                if handle:
                    self._release(handle)

    def close(self):
        if self._guard is None:
            return
        with self._guard:
            self._closed = True
            handle = self._take_if_unused()
        if handle:
            self._release(handle)

    __del__ = close

    def __reduce__(self):
        # pickle (a Pool's arguments) would fail on the lock with words of its own; copy.copy
        # shared the handle, which each copy then freed (use after free, a crash)
        raise TypeError(f"a kvz {self._what} cannot be copied or pickled (sent to another process): "
                        "open an Engine in each process, e.g. in the worker function or a Pool's initializer")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Engine(_Handle):
    """A model and a store, opened together (kvz_engine_open). model: a GGUF
    path (None: $KVZ_MODEL; there is no other default), the model that compiled
    the documents; device: "auto", "cpu" or "cuda"; threads: host threads (0:
    $OMP_NUM_THREADS, else every CPU this process may use); idle_sessions: closed sessions' working
    memory kept for the next ones (0: 4, -1: none). An engine belongs to the process that
    opened it: in a child of fork (gunicorn --preload, multiprocessing's fork) it raises
    kvz.Error (ERR_ARG); open one in each worker after the fork (one thread there when the
    parent ran kvz with several)."""

    _release = staticmethod(_engine_close)
    _what = "engine"

    def __init__(self, store, model=None, device="auto", threads=0, idle_sessions=0):
        if device not in _DEVICES:
            raise ValueError(f"device must be one of {sorted(_DEVICES)}")
        opts = _EngineOptions(_DEVICES[device], _c_int(threads, 0, _MAX_THREADS, "threads"),
                              _c_int(idle_sessions, -1, 2**31 - 1, "idle_sessions"))
        handle = ctypes.c_void_p()
        _check(_engine_open(ctypes.byref(handle), os.fsencode(store),
                            os.fsencode(model) if model else None, ctypes.byref(opts)))
        self._adopt(handle)

    def documents(self):
        """Names of the store's documents compiled for this model, sorted.

        Raises kvz.Error (code ERR_FORMAT) naming a document whose record does not decode."""
        names, count = _char_pp(), ctypes.c_size_t()
        with self._use() as engine:
            _check(_engine_documents(engine, ctypes.byref(names), ctypes.byref(count)))
        try:
            return [names[i].decode("utf-8", "surrogateescape") for i in range(count.value)]
        finally:
            _free(ctypes.cast(names, ctypes.c_void_p))

    def text(self, name):
        """The document's (normalised) text, rebuilt from its artifacts."""
        ptr, length = ctypes.c_void_p(), ctypes.c_size_t()
        raw = _c_name(name)
        with self._use() as engine:
            _check(_engine_text(engine, raw, ctypes.byref(ptr), ctypes.byref(length)))
        return _take_string(ptr, length.value)

    def configs(self, name):
        """The compiled forms of a document, as dicts: "number" (this store's,
        in the order the forms arrived: the `config` of segments(),
        segment_text() and session()), "id" (the configuration's, the same in
        every store: session(config_id=)), "this_model" (only those load),
        "model_fingerprint", "created" (seconds since 1970), "stored_bytes",
        "tokens", "segments" and "summary"."""
        forms, count = ctypes.POINTER(_ConfigInfo)(), ctypes.c_size_t()
        raw = _c_name(name)
        with self._use() as engine:
            _check(_engine_configs(engine, raw, ctypes.byref(forms), ctypes.byref(count)))
        try:
            return [{f: (getattr(forms[i], f).decode("utf-8", "replace") if f == "summary"
                         else bool(forms[i].this_model) if f == "this_model" else getattr(forms[i], f))
                     for f, _ in _ConfigInfo._fields_} for i in range(count.value)]
        finally:
            _free(ctypes.cast(forms, ctypes.c_void_p))

    def segments(self, name, config=0, config_id=0):
        """The number of tokens of each segment of a compiled document (one
        entry unless it was longer than a segment), in the form `config` or
        `config_id` names (as session() takes them; neither: the newest)."""
        tokens, count = ctypes.POINTER(ctypes.c_int32)(), ctypes.c_size_t()
        raw, (config, config_id) = _c_name(name), _form(config, config_id)
        with self._use() as engine:
            _check(_engine_segments(engine, raw, config, config_id, ctypes.byref(tokens), ctypes.byref(count)))
        try:
            return [tokens[i] for i in range(count.value)]
        finally:
            _free(ctypes.cast(tokens, ctypes.c_void_p))

    def segment_text(self, name, segment, config=0, config_id=0):
        """The (normalised) text of one segment (counted from 0) of a document,
        in the compiled form `config` or `config_id` names (as segments())."""
        ptr, length = ctypes.c_void_p(), ctypes.c_size_t()
        raw = _c_name(name)
        (config, config_id), segment = _form(config, config_id), _c_int(segment, 0, 2**31 - 1, "segment")
        with self._use() as engine:
            _check(_engine_segment_text(engine, raw, config, config_id, segment, ctypes.byref(ptr),
                                        ctypes.byref(length)))
        return _take_string(ptr, length.value)

    def session(self, names, reserve=0, config=0, config_id=0):
        """Load documents (composed in the order given) for questions. An
        entry is a name, or (name, first, count) for `count` segments from
        segment `first` (counted from 0; count 0: to the last). The form
        loaded: `config` (this store's number), or `config_id` (a
        configuration's id, as configs() gives it, or its 16 hex digits as
        `kvz ls --json` writes them), or the newest."""
        return Session(self, names, reserve, config, config_id)


class Session(_Handle):
    """Documents loaded from the store; ask question after question."""

    _release = staticmethod(_session_close)
    _what = "session"

    def __init__(self, engine, names, reserve=0, config=0, config_id=0):
        if isinstance(names, (str, os.PathLike, bytes)):  # one name (bytes: refused below, not as its numbers)
            names = [names]
        parts = []
        for entry in names:
            if isinstance(entry, (str, os.PathLike)):
                name, first, count = entry, 0, 0
            elif isinstance(entry, (tuple, list)) and len(entry) == 3:
                name, first, count = entry
            else:
                raise TypeError(f"a document is a name or (name, first segment, segments), not {entry!r}")
            parts.append(_DocPart(_c_name(name), _c_int(first, 0, 2**31 - 1, "first segment"),
                                  _c_int(count, 0, 2**31 - 1, "segments")))
        encoded = (_DocPart * len(parts))(*parts)
        opts = _SessionOptions(_c_int(reserve, 0, 2**31 - 1, "reserve"), *_form(config, config_id))
        handle = ctypes.c_void_p()
        with engine._use() as engine_handle:
            _check(_session_open(ctypes.byref(handle), engine_handle, encoded, len(parts), ctypes.byref(opts)))
        self._engine = engine  # keeps the engine alive while the session is
        self._adopt(handle)
        info = _LoadInfo()
        _check(_session_info(handle, ctypes.byref(info)))
        self.load_info = {f: getattr(info, f) for f, _ in _LoadInfo._fields_}
        self.last = None

    def ask(self, question, max_tokens=256, temperature=0.0, top_p=0.95, seed=1, stream=None):
        """The answer as a string. `stream(piece)` gets the answer's bytes as
        they come, in whole UTF-8 characters (a model may still emit bytes
        that are not UTF-8: piece.decode(errors="replace"); the first bytes of
        a character an answer stops inside never come, as the answer leaves
        them out) (return True to stop; True alone, so that a write, which
        returns a count, can stream: stream=sys.stdout.buffer.write).
        Timings land in self.last. A Ctrl-C (SIGINT) under Python's own handler
        stops the answer at its next piece and raises KeyboardInterrupt as the
        ask returns (a stream blocked meanwhile is interrupted at once).
        max_tokens=0 means the library's default (256) and top_p=0 its 0.95,
        as in kvz.h; an empty or blank question raises (KVZ_ERR_ARG).
        self.last: question_tokens, answer_tokens, first_token_ms (`kvz query
        --json`'s ttft_ms), decode_tokens_per_s (its decode_tok_s, 0 where it
        writes null), ended_turn, stopped_by (kvz.h's KVZ_STOP_* number) and
        stop (its name, the query's "stopped_by")."""
        self.last = None  # a failed ask leaves no numbers of an earlier one
        if stream is not None and not callable(stream):  # not after the question's prefill, from the first piece
            raise TypeError(f"stream must be a function of the answer's bytes (got {type(stream).__name__})")
        failure, held = [], [b""]

        def forward(_user, data, length):
            # closed meanwhile (by stream or another thread): the answer stops at this piece, as a
            # callback's stop, and the session is released as the ask returns
            try:
                piece = b""
                if stream:  # whole characters: a token may end inside one (CJK, emoji), its rest in the next
                    piece, held[0] = _whole_characters(held[0] + ctypes.string_at(data, length))
                stop = False
                if piece:
                    with interrupted.released():
                        stop = stream(piece)
            except BaseException as e:  # never unwind through C
                failure.append(e)
                if isinstance(e, KeyboardInterrupt):
                    interrupted.hold_again()
                return 1
            # `stop is True`: stream=f.write returns the bytes written, which stopped every answer at its
            # first piece
            return 1 if stop is True or self._closed or interrupted else 0

        temperature, top_p = _c_float(temperature, 0, 3.4e38, "temperature"), _c_float(top_p, 0, 1, "top_p")
        opts = _AskOptions(_c_int(max_tokens, 0, 2**31 - 1, "max_tokens"), temperature, top_p,
                           _c_int(seed, 0, 2**64 - 1, "seed"), _STREAM(forward), None)
        answer, info = ctypes.c_void_p(), _AskInfo()
        raw = _c_string(question, "the question")
        # a Ctrl-C stops the answer at its next piece and raises KeyboardInterrupt as the ask returns
        with _sigint_held() as interrupted:
            with self._use() as session:
                _check(_session_ask(session, raw, ctypes.byref(opts), ctypes.byref(answer), ctypes.byref(info)))
            text = _take_string(answer, whole_characters=True)
        if failure:
            raise failure[0]
        self.last = {f: getattr(info, f) for f, _ in _AskInfo._fields_}
        self.last["stop"] = _STOP_NAMES.get(info.stopped_by, "unknown")
        return text
