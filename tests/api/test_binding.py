"""The Python binding against a real store (made by tests/cli/test_api.sh)."""
import copy
import importlib.util
import io
import os
import pathlib
import pickle
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))
import kvz  # noqa: E402

store, model, docs = sys.argv[1], sys.argv[2], sys.argv[3]
bridge, orchard = os.path.join(docs, "bridge.txt"), os.path.join(docs, "orchard.txt")
failures = 0


def check(name, ok, detail=""):
    global failures
    print(("ok   " if ok else "FAIL ") + name + ("" if ok else f": {detail}"))
    failures += 0 if ok else 1


check("version", kvz.library_version() == kvz.__version__ == "0.3.16", kvz.library_version())
with kvz.Engine(store, model=model, device="cpu") as engine:
    names = engine.documents()
    check("documents", names == [bridge, orchard], names)
    text = engine.text(bridge)
    check("document text", text == open(bridge, encoding="utf-8").read(), repr(text[:80]))
    with engine.session([bridge]) as s:
        check("load info", s.load_info["documents"] == 1 and s.load_info["document_tokens"] > 50, s.load_info)
        pieces = []
        first = s.ask("Who opened the Vellmar bridge?", max_tokens=32, stream=pieces.append)
        check("answer", "Clara Hobbs" in first, first)
        check("stream pieces make the answer", b"".join(pieces).decode() == first, pieces)
        check("timings", s.last["answer_tokens"] > 0 and s.last["first_token_ms"] > 0, s.last)
        other = s.ask("How long is the bridge?", max_tokens=24)
        check("second question", "212" in other, other)
        again = s.ask("Who opened the Vellmar bridge?", max_tokens=32)
        check("same question, same answer", again == first, (first, again))
        written = io.BytesIO()  # a write returns a count: no stop
        whole = s.ask("Who opened the Vellmar bridge?", max_tokens=32, stream=written.write)
        check("a file's write streams the whole answer", written.getvalue().decode() == whole == first,
              (written.getvalue(), whole))
        stopped = s.ask("Who opened the Vellmar bridge?", max_tokens=32, stream=lambda piece: True)
        check("stream callback stops", s.last["answer_tokens"] == 1 and not s.last["ended_turn"] and
              s.last["stopped_by"] == kvz.STOP_CALLBACK, (stopped, s.last))
        s.ask("Describe the bridge.", max_tokens=2)
        check("stopped by max_tokens, named as query --json names it",
              s.last["stopped_by"] == kvz.STOP_MAX_TOKENS and s.last["stop"] == "max_tokens", s.last)
        sampled = [s.ask("Describe the bridge.", max_tokens=16, temperature=0.8, seed=7) for _ in range(2)]
        check("sampling is seeded", sampled[0] == sampled[1], sampled)
    closing = engine.session([bridge])
    cut = closing.ask("Who opened the Vellmar bridge?", max_tokens=32, stream=lambda piece: closing.close())
    check("closing a session from its stream callback ends the answer there",
          closing.last["answer_tokens"] == 1 and closing.last["stopped_by"] == kvz.STOP_CALLBACK, (cut, closing.last))
    try:
        closing.ask("And then?")
        check("a session closed while answering stays closed", False, "answered")
    except ValueError:
        check("a session closed while answering stays closed", True)
    with engine.session(name for name in [bridge, orchard]) as s:  # any iterable of names
        check("composition loads both", s.load_info["documents"] == 2, s.load_info)
        answer = s.ask("Which family keeps the Linden orchard?", max_tokens=32)
        check("composition: answer in the second document", "Morrow" in answer, answer)
        try:  # a failed ask leaves no numbers of the one before
            s.ask("Why?\0")
            check("a failed ask clears last", False, "no exception")
        except ValueError:
            check("a failed ask clears last", s.last is None, s.last)
        for blank in (" \n", "\u3000\u00a0"):  # an IME's full-width space and a no-break one are blank too
            try:  # as kvz query refuses it: a slip, not a question
                s.ask(blank)
                check(f"a blank question raises ({blank!r})", False, s.last)
            except kvz.Error as e:
                check(f"a blank question raises ({blank!r})", e.code == kvz.ERR_ARG and "empty" in str(e), str(e))
    try:
        engine.session(["no-such.txt"])
        check("missing document raises", False, "no exception")
    except kvz.Error as e:
        check("missing document raises", e.code == -7 and "no-such.txt" in str(e), str(e))
try:
    kvz.Engine(store, model=os.path.join(docs, "bridge.txt"))
    check("bad model raises", False, "no exception")
except kvz.Error as e:
    check("bad model raises", e.code in (-4, -3) and "bridge.txt" in str(e), str(e))
# an argument out of the documented range is a ValueError before the library is called
for label, call in [("idle_sessions -2", lambda: kvz.Engine(store, model=model, idle_sessions=-2)),
                    ("threads -1", lambda: kvz.Engine(store, model=model, threads=-1)),
                    ("threads 5000", lambda: kvz.Engine(store, model=model, threads=5000))]:
    try:
        call()
        check(label + " raises ValueError", False, "opened")
    except ValueError as e:
        check(label + " raises ValueError", label.split()[0] in str(e), str(e))
with kvz.Engine(store, model=model, device="cpu", idle_sessions=-1) as engine:
    for _ in range(2):  # no session kept warm: each starts cold, and answers the same
        with engine.session([bridge]) as s:
            check("answer with no idle sessions kept", s.ask("Who opened the Vellmar bridge?", max_tokens=32) == first)
# a session outlives its engine's `with` (the engine is freed when the session closes)
with kvz.Engine(store, model=model, device="cpu") as engine:
    late = engine.session([bridge])
check("a session asked after its engine closed", late.ask("Who opened the Vellmar bridge?", max_tokens=32) == first)
late.close()
with kvz.Engine(store, model=model, device="cpu") as engine:
    for label, call in [("a NUL in a name", lambda: engine.text(bridge + "\0x")),
                        ("a NUL in a question", lambda: engine.session([bridge]).ask("Who?\0 say HELLO")),
                        ("max_tokens beyond C's int", lambda: engine.session([bridge]).ask("Who?", max_tokens=2**32 + 3)),
                        ("max_tokens -1", lambda: engine.session([bridge]).ask("Who?", max_tokens=-1)),
                        ("temperature NaN", lambda: engine.session([bridge]).ask("Who?", temperature=float("nan"))),
                        ("top_p 2", lambda: engine.session([bridge]).ask("Who?", top_p=2)),
                        ("reserve -1", lambda: engine.session([bridge], reserve=-1)),
                        ("config -1", lambda: engine.session([bridge], config=-1))]:
        try:
            call()
            check(label + " raises ValueError", False, "no exception")
        except ValueError as e:
            check(label + " raises ValueError", True)
    try:  # a name's undecodable bytes (surrogates, as documents() gives them) go back as the same bytes
        engine.text("caf\udce9.txt")
        check("a surrogate-escaped name is looked up", False, "found")
    except kvz.Error as e:
        check("a surrogate-escaped name is looked up", e.code == -7, str(e))

# a document compiled in segments: their lengths, a run of them loaded, a run it does not have
with kvz.Engine(sys.argv[4], model=model, device="cpu") as engine:
    (both,) = engine.documents()
    lengths = engine.segments(both)
    check("segments: each one's tokens", len(lengths) >= 2 and all(n > 0 for n in lengths), lengths)
    with engine.session([both]) as s:
        check("all segments loaded by default", s.load_info["segments"] == len(lengths) and
              s.load_info["document_tokens"] == sum(lengths), s.load_info)
    with engine.session([(both, 1, 1)]) as s:
        check("one segment loaded", s.load_info["segments"] == 1 and s.load_info["document_tokens"] == lengths[1],
              s.load_info)
        check("a segment answers", len(s.ask("What is this about?", max_tokens=4)) > 0, s.last)
    with engine.session([(both, len(lengths) - 1, 0), (both, 0, 1)]) as s:
        check("runs of one document composed, count 0 to the last", s.load_info["segments"] == 2 and
              s.load_info["document_tokens"] == lengths[-1] + lengths[0], s.load_info)
    for label, part in [("a segment past the last", (both, len(lengths), 0)),
                        ("a run past the last", (both, 0, len(lengths) + 1))]:
        try:
            engine.session([part])
            check(label + " raises", False, "loaded")
        except kvz.Error as e:
            check(label + " raises (not found)", e.code == -7 and "segment" in str(e), str(e))
    for label, bad, error in [("a tuple for the list", (both, 0, 1), TypeError),
                              ("a pair", [(both, 1)], TypeError), ("bytes for a name", [b"x"], TypeError),
                              ("a str for a count", [(both, "1", 1)], TypeError),
                              ("True for a count", [(both, 0, True)], TypeError),
                              ("a negative segment", [(both, -1, 1)], ValueError)]:
        try:
            engine.session(bad)
            check(label + " raises " + error.__name__, False, "loaded")
        except error:
            check(label + " raises " + error.__name__, True)
    pieces = [engine.segment_text(both, k) for k in range(len(lengths))]
    check("the segments' texts make the document's", "".join(pieces) == engine.text(both) and all(pieces),
          [p[:40] for p in pieces])
    try:
        engine.segment_text(both, len(lengths))
        check("the text of a segment past the last raises", False, "found")
    except kvz.Error as e:
        check("the text of a segment past the last raises (not found)", e.code == kvz.ERR_NOT_FOUND, str(e))
    try:
        engine.segments("no-such.txt")
        check("segments of a missing document raise", False, "found")
    except kvz.Error as e:
        check("segments of a missing document raise", e.code == -7, str(e))

# a question that takes the whole reserve still gets its one answer token
with kvz.Engine(store, model=model, device="cpu") as engine:
    question = "When was the Vellmar bridge opened?"
    with engine.session([bridge], reserve=64) as s:
        s.ask(question, max_tokens=1)
        needed = s.last["question_tokens"]
    with engine.session([bridge], reserve=needed) as s:
        s.ask(question, max_tokens=8)
        check("a question filling the reserve: one answer token", s.last["answer_tokens"] == 1 and
              s.last["stopped_by"] == kvz.STOP_RESERVE, s.last)
    with engine.session([bridge], reserve=needed - 1) as s:
        try:
            s.ask(question, max_tokens=8)
            check("a question one token over the reserve raises", False, s.last)
        except kvz.Error as e:
            check("a question one token over the reserve raises (range)", e.code == kvz.ERR_RANGE, str(e))

# closed on one thread while another uses it: the call in flight finishes, later ones
# raise ValueError, nothing is freed under it (it crashed before)
with kvz.Engine(store, model=model, device="cpu") as engine:
    outcomes, reading = [], threading.Event()

    def read_texts():
        try:
            while True:
                engine.text(bridge)
                reading.set()
        except ValueError:
            outcomes.append("closed")
        except BaseException as e:  # anything else is a failure
            outcomes.append(repr(e))

    reader = threading.Thread(target=read_texts)
    reader.start()
    check("the reader thread reads", reading.wait(60))
    engine.close()  # while it reads, call after call
    reader.join()
    check("an engine closed under another thread's calls", outcomes == ["closed"], outcomes)
with kvz.Engine(store, model=model, device="cpu") as engine:
    s = engine.session([bridge])
    streaming, closed, outcomes = threading.Event(), threading.Event(), []

    def hold_first_piece(piece):  # the answer waits in its stream callback while the session is closed
        streaming.set()
        closed.wait(60)

    def ask_long():
        try:
            answer = s.ask("Describe the bridge in detail.", max_tokens=200, stream=hold_first_piece)
            outcomes.append(("answered", s.last["answer_tokens"], s.last["stopped_by"], answer))
        except ValueError:
            outcomes.append(("closed",))
        except BaseException as e:
            outcomes.append((repr(e),))

    asker = threading.Thread(target=ask_long)
    asker.start()
    check("the answer streams", streaming.wait(60))
    closers = [threading.Thread(target=s.close) for _ in range(3)]  # closed three times at once: freed once
    for t in closers:
        t.start()
    for t in closers:
        t.join()
    closed.set()
    asker.join()
    check("a session closed while another thread's answer streams: cut at that piece",
          outcomes and outcomes[0][:3] == ("answered", 1, kvz.STOP_CALLBACK), outcomes)
    try:
        s.ask("Again?")
        check("and closed after it", False, s.last)
    except ValueError:
        check("and closed after it", True)

# a document compiled in two forms cut differently: each form's segment texts are its own
with kvz.Engine(sys.argv[5], model=model, device="cpu") as engine:
    (both,) = engine.documents()
    whole = engine.text(both)
    forms = {}
    for config in (1, 2):
        lengths = engine.segments(both, config=config)
        forms[config] = [engine.segment_text(both, k, config=config) for k in range(len(lengths))]
    check("segment_text of each form: its segments make the document",
          all("".join(pieces) == whole for pieces in forms.values()) and forms[1] != forms[2] and
          forms[2][0] == engine.segment_text(both, 0), [len(p) for p in forms.values()])
    # each form by its id (the same in every store), as by its number here
    forms_listed = engine.configs(both)
    check("configs() lists both forms with their numbers and distinct ids",
          [f["number"] for f in forms_listed] == [1, 2] and forms_listed[0]["id"] != forms_listed[1]["id"] and
          all(f["this_model"] and "-bit" in f["summary"] for f in forms_listed), forms_listed)
    for f in forms_listed:
        with engine.session([both], config_id=f["id"]) as by_id:
            check(f"session(config_id=) loads form {f['number']}",
                  by_id.load_info["segments"] == f["segments"] == len(engine.segments(both, config=f["number"])),
                  (by_id.load_info, f))
        by_hex = "%016x" % f["id"]  # as kvz ls --json writes it
        check(f"segments() and segment_text() of form {f['number']} by its id",
              engine.segments(both, config_id=by_hex) == engine.segments(both, config=f["number"]) and
              engine.segment_text(both, 0, config_id=f["id"]) == engine.segment_text(both, 0, config=f["number"]),
              f)
    try:
        engine.session([both], config_id=forms_listed[0]["id"] ^ 1)
        check("session() of an id the document lacks raises", False, "loaded")
    except kvz.Error as e:
        check("session() of an id the document lacks raises (not found)", e.code == kvz.ERR_NOT_FOUND, str(e))
    for bad_args in [{"config": 1, "config_id": forms_listed[0]["id"]}, {"config_id": "daa294f8"},
                     {"config_id": -1}]:
        try:
            engine.session([both], **bad_args)
            check(f"session({bad_args}) raises", False, "loaded")
        except ValueError as e:
            check(f"session({bad_args}) raises ValueError before the library is called", True, str(e))
    try:
        engine.configs("no such document")
        check("configs() of a document not there raises", False, "listed")
    except kvz.Error as e:
        check("configs() of a document not there raises (not found)", e.code == kvz.ERR_NOT_FOUND, str(e))
    try:
        engine.segment_text(both, 0, config=3)
        check("segment_text of a form the document lacks raises", False, "found")
    except kvz.Error as e:
        check("segment_text of a form the document lacks raises (not found)", e.code == kvz.ERR_NOT_FOUND, str(e))

# Ctrl-C during an ask (a notebook's interrupt): Python runs the SIGINT handler as the stream
# callback starts, outside its try, and ctypes dropped the KeyboardInterrupt ("Exception ignored
# on calling ctypes callback function"): the answer came back cut short, as if whole. The signal
# comes while the answer is being computed (between two pieces), from another thread
signal.signal(signal.SIGINT, signal.default_int_handler)  # a test run in the background ignores SIGINT
with kvz.Engine(store, model=model, device="cpu") as engine:
    with engine.session([bridge]) as s:
        for stream in (None, lambda piece: None):
            first_piece = threading.Event()

            def interrupt():
                if first_piece.wait(60):
                    time.sleep(0.1)
                    os.kill(os.getpid(), signal.SIGINT)

            def note_first(piece, stream=stream):
                first_piece.set()
                return stream(piece) if stream else None

            killer = threading.Thread(target=interrupt)
            killer.start()
            try:  # (a signal that came after the answer ended would be raised here, as a failure)
                try:
                    s.ask("Describe the bridge in great detail, every arch and every year.", max_tokens=400,
                          stream=note_first)
                    outcome = ("answered", s.last)
                finally:
                    killer.join()
            except KeyboardInterrupt:
                outcome = ("interrupted", s.last)
            label = "with a stream" if stream else "without a stream of its own"
            check(f"Ctrl-C during an ask ({label}) raises KeyboardInterrupt, no numbers kept",
                  outcome == ("interrupted", None), outcome)
            check(f"after a Ctrl-C ({label}): the SIGINT handler is back, the session answers",
                  signal.getsignal(signal.SIGINT) is signal.default_int_handler and
                  s.ask("Who opened the Vellmar bridge?", max_tokens=32) == first)
        # a stream that blocks (a full queue's put) is interrupted at once, not after its wait: the
        # handler held back for the callback's start is the real one while the stream runs
        blocked, started = threading.Event(), time.monotonic()

        def block(piece):
            blocked.set()
            threading.Event().wait(30)

        def interrupt_blocked():
            if blocked.wait(60):
                time.sleep(0.1)
                os.kill(os.getpid(), signal.SIGINT)

        killer = threading.Thread(target=interrupt_blocked)
        killer.start()
        try:
            try:
                s.ask("Describe the bridge.", max_tokens=64, stream=block)
                outcome = "answered"
            finally:
                killer.join()
        except KeyboardInterrupt:
            outcome = "interrupted"
        waited = time.monotonic() - started
        check("Ctrl-C while a stream blocks: KeyboardInterrupt at once", outcome == "interrupted" and waited < 20,
              (outcome, round(waited, 1)))
        # an application's own SIGINT handler (one that only notes it, to stop later) is left as it is:
        # the answer is not cut (it stopped at the next piece, as a callback's stop)
        noted, first_piece = [], threading.Event()
        signal.signal(signal.SIGINT, lambda _signum, _frame: noted.append(1))
        killer = threading.Thread(target=lambda: first_piece.wait(60) and os.kill(os.getpid(), signal.SIGINT))
        killer.start()
        try:
            answer = s.ask("Who opened the Vellmar bridge?", max_tokens=32, stream=lambda piece: first_piece.set())
        finally:
            killer.join()
            signal.signal(signal.SIGINT, signal.default_int_handler)
        check("an application's SIGINT handler: run, the answer whole", noted == [1] and answer == first,
              (noted, answer, s.last and s.last["stop"]))
    # an engine or session is not sent to another process (a Pool's arguments) nor copied: a copy
    # shared the handle, and the second close freed it again (a crash)
    with engine.session([bridge]) as s:
        for label, call in [("pickle an engine", lambda: pickle.dumps(engine)),
                            ("pickle a session", lambda: pickle.dumps(s)),
                            ("copy a session", lambda: copy.copy(s)), ("copy an engine", lambda: copy.copy(engine))]:
            try:
                made = call()
                if label.startswith("copy"):
                    made.__dict__.clear()  # so that its close, at collection, does not free the handle again
                check(label + " raises TypeError", False, "done")
            except TypeError as e:
                check(label + " raises TypeError saying what to do", "open an Engine in each process" in str(e), str(e))
        check("the session still answers", s.ask("Who opened the Vellmar bridge?", max_tokens=32) == first)
        try:  # not after the question's prefill, from the first piece's call
            s.ask("Who?", stream=5)
            check("a stream that is not a function raises TypeError", False, s.last)
        except TypeError as e:
            check("a stream that is not a function raises TypeError before the library is called",
                  "stream must be a function" in str(e), str(e))
        # a token may end inside a character (this answer's katakana are cut after 2 of their 3 bytes):
        # each piece streamed is whole characters, so that piece.decode() (a notebook's print, where
        # sys.stdout has no .buffer) does not raise
        pieces = []
        answer = s.ask("Translate 'the bridge' into Japanese and Chinese.", max_tokens=40, stream=pieces.append)
        undecodable = []
        for piece in pieces:
            try:
                piece.decode()
            except UnicodeDecodeError:
                undecodable.append(piece)
        check("streamed pieces are whole UTF-8 characters and make the answer",
              not undecodable and b"".join(pieces).decode() == answer and any(ord(c) > 0x3000 for c in answer),
              (undecodable[:4], answer))
    # a document's name as a pathlib.Path, as its path was given to compile; bytes are refused as such
    try:
        with engine.session(pathlib.Path(bridge)) as by_path, engine.session([pathlib.Path(orchard)]) as by_paths:
            check("a name as a pathlib.Path loads", by_path.load_info["documents"] == 1 and
                  by_paths.load_info["documents"] == 1 and engine.text(pathlib.Path(bridge)) == engine.text(bridge)
                  and engine.segments(pathlib.Path(bridge)) == engine.segments(bridge))
    except TypeError as e:
        check("a name as a pathlib.Path loads", False, str(e))
    try:
        engine.session(os.fsencode(bridge))
        check("a name as bytes raises TypeError", False, "loaded")
    except TypeError as e:
        check("a name as bytes raises TypeError naming it (not its first byte's number)",
              repr(os.fsencode(bridge)) in str(e), str(e))

# a pre-fork server (gunicorn --preload, multiprocessing's fork): the parent's engine, of two
# threads and used, is refused in the child with what to do; an engine opened in the child
# answers (one thread: OpenMP's threads stay in the parent, and two would wait for them), as
# one thread answers here, also after the child closed the parent's engine (which would
# have dropped its own engine's locks on lock.mdb)
with kvz.Engine(store, model=model, device="cpu", threads=1) as one_thread:
    with one_thread.session([bridge]) as s:
        want = s.ask("Who opened the Vellmar bridge?", max_tokens=8)
with kvz.Engine(store, model=model, device="cpu", threads=2) as parent_engine:
    with parent_engine.session([bridge]) as parent_session:
        parent_want = parent_session.ask("Who opened the Vellmar bridge?", max_tokens=8)
        read, write = os.pipe()
        child = os.fork()
        if child == 0:
            os.close(read)
            said = []
            for call in (parent_engine.documents, lambda: parent_session.ask("Who?", max_tokens=4)):
                try:
                    call()
                    said.append("answered")
                except kvz.Error as e:
                    said.append("refused" if e.code == kvz.ERR_ARG and "child of fork" in str(e) else str(e))
            try:
                with kvz.Engine(store, model=model, device="cpu", threads=2) as own:
                    parent_session.close()
                    parent_engine.close()
                    locks = [line for line in open("/proc/locks") if f" {os.getpid()} " in line]
                    said.append("locked" if locks else "no locks")
                    with own.session([bridge]) as s:
                        said.append("same" if s.ask("Who opened the Vellmar bridge?", max_tokens=8) == want else "differs")
            except kvz.Error as e:
                said.append(str(e))
            os.write(write, "|".join(said).encode())
            os._exit(0)
        os.close(write)
        deadline = threading.Timer(120, lambda: os.kill(child, 9))  # a hang fails, not blocks
        deadline.start()
        said = b""
        while True:
            chunk = os.read(read, 4096)
            if not chunk:
                break
            said += chunk
        os.close(read)
        _, status = os.waitpid(child, 0)
        deadline.cancel()
        check("a child of fork: the parent's engine and session refused, its own engine answers the same",
              said.decode() == "refused|refused|locked|same" and status == 0, f"{said!r}, status {status}")
        check("the parent's engine still answers after the fork", parent_session.ask(
            "Who opened the Vellmar bridge?", max_tokens=8) == parent_want and parent_engine.documents() == [bridge, orchard])

rag = subprocess.run([sys.executable, os.path.join(os.path.dirname(__file__), "..", "..", "examples", "rag.py"),
                      "--store", store, "--model", model, "--max-tokens", "32",
                      "Which family keeps the Linden orchard?"], capture_output=True, text=True)
check("rag.py retrieves the right document and answers",
      rag.returncode == 0 and f"from: {orchard}" in rag.stdout and "Morrow" in rag.stdout, rag.stdout + rag.stderr)
# rag.py's words in any script: Cyrillic and accented words whole, unspaced scripts (Chinese,
# Thai) by pairs of characters (its ASCII-only words found nothing in them)
spec = importlib.util.spec_from_file_location("rag", os.path.join(os.path.dirname(__file__), "..", "..", "examples",
                                                                   "rag.py"))
rag_module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(rag_module)
check("rag.py's words: any script's, unspaced scripts by character pairs",
      rag_module.words("\u8001\u4eba\u6bcf\u5929 \u0401\u0436\u0438\u043a caf\u00e9") ==
      ["\u8001\u4eba", "\u4eba\u6bcf", "\u6bcf\u5929", "\u0451\u0436\u0438\u043a", "caf\u00e9"],
      repr(rag_module.words("\u8001\u4eba\u6bcf\u5929 \u0401\u0436\u0438\u043a caf\u00e9")))
rag0 = subprocess.run([sys.executable, os.path.join(os.path.dirname(__file__), "..", "..", "examples", "rag.py"),
                       "--store", store, "--model", model, "--top", "0", "a question"], capture_output=True, text=True)
check("rag.py --top 0 is refused (exit 2, the reason)",
      rag0.returncode == 2 and "must be 1 or more" in rag0.stderr, rag0.stdout + rag0.stderr)
# rag.py over a document in segments: it scores each segment and loads the best; with
# the context nearly all reserved, what does not fit is left out, the lowest scored first
for top, reserve, loaded in [(1, 512, 1), (2, 512, 2), (2, 8050, 1)]:
    seg_rag = subprocess.run([sys.executable, os.path.join(os.path.dirname(__file__), "..", "..", "examples", "rag.py"),
                              "--store", sys.argv[4], "--model", model, "--max-tokens", "24", "--top", str(top),
                              "--reserve", str(reserve), "Which family keeps the Linden orchard?"],
                             capture_output=True, text=True)
    sources = [line for line in seg_rag.stdout.splitlines() if line.startswith("from: ")]
    check(f"rag.py --top {top} --reserve {reserve} over segments loads {loaded}",
          seg_rag.returncode == 0 and len(sources) == 1 and sources[0].count(" segment ") == loaded,
          seg_rag.stdout + seg_rag.stderr)
    if top == 1:
        check("rag.py: the orchard's segment answers", "Morrow" in seg_rag.stdout, seg_rag.stdout)
sys.exit(1 if failures else 0)
