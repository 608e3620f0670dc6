"""A corpus of many small documents for bench/scale.sh: ROOT N [SIZES].

N files in nested folders (deptD/teamT/subS), each about one of SIZES bytes
(comma list) of made-up report prose; about 1% empty, 1% binary and 2% a copy
of an earlier file's content (what a real corpus has and compile skips or
shares). Deterministic (seed 42)."""
import os
import random
import sys

random.seed(42)
root, n = sys.argv[1], int(sys.argv[2])
sizes = [int(x) for x in (sys.argv[3] if len(sys.argv) > 3 else "200,400,700,1200").split(",")]
words = ("the a of report meeting budget council river station engineer signed approved "
         "quarterly revenue increased decreased project north south village library museum "
         "contract vendor delivery schedule delay storm bridge repair committee vote minutes "
         "alice bob carol dave erin frank grace heidi ivan judy march april june october "
         "seventeen forty hundred thousand million percent because however therefore").split()


def paragraph(sentences):
    out = []
    for _ in range(sentences):
        w = [random.choice(words) for _ in range(random.randint(6, 18))]
        w[0] = w[0].capitalize()
        out.append(" ".join(w) + ".")
    return " ".join(out)


written = []
for i in range(n):
    folder = os.path.join(root, f"dept{i % 7}", f"team{i % 13}" if i % 3 else "", f"sub{i % 5}" if i % 4 == 0 else "")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"doc{i:05d}.txt" if i % 5 else f"doc{i:05d}.md")
    if i % 97 == 5:
        open(path, "wb").close()
    elif i % 131 == 7:
        open(path, "wb").write(bytes(random.getrandbits(8) for _ in range(800)))
    elif i % 50 == 9 and written:
        open(path, "w").write(open(random.choice(written)).read())
    else:
        target = random.choice(sizes)
        text = f"Document {i}. Title: {random.choice(words)} {random.choice(words)}\n\n"
        while len(text) < target:
            text += paragraph(random.randint(2, 5)) + "\n\n"
        open(path, "w").write(text)
        written.append(path)
