"""Fault injection: `kgqa index`, `kgqa update`, `kgqa merge`, `kgqa train` and `kgqa predict`, each killed with
SIGKILL at seeded random moments. After every kill each file the command writes must be whole
(absent, or equal to / loadable like an uninterrupted run's), and the rerun (`--resume` for train)
must complete with exactly the uninterrupted run's result: the same index bytes, the same weights
bit for bit, the same answers. An update or a merge killed must leave the index exactly as
before it or as after it, never between: its manifest and every file the manifest names byte for
byte one or the other's (what a kill leaves unnamed is removed by the next writer: checked once
the rerun is done).

    python benchmarks/fault_injection.py [--kills 20] [--seed 0] [--kb-lines 300000]
                                         [--only index|update|merge|train|predict]

Runs on the sample data; the index is built from the first --kb-lines of ../shared's kb.tsv when
it is there (a build long enough for kills to land mid-write), else from the sample KB.
"""
from __future__ import annotations

import argparse
import filecmp
import json
import os
import random
import shutil
import signal
import subprocess
import tempfile
import time

from harness import CLI, DATA, ROOT  # first: it puts kgqa on sys.path

SAMPLE = os.path.join(ROOT, "data", "sample")
ENV = dict(os.environ, OMP_NUM_THREADS="1")


def run(command: list[str], env: dict) -> float:
    started = time.time()
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.time() - started


def killed_at(command: list[str], env: dict, moment: float) -> bool:
    """Run `command`, SIGKILL it `moment` seconds in; False if it finished first."""
    child = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        child.wait(timeout=moment)
        return False
    except subprocess.TimeoutExpired:
        child.send_signal(signal.SIGKILL)
        child.wait()
        return True


def same_tree(a: str, b: str, skip: tuple[str, ...] = ()) -> bool:
    """Same file names and bytes (the names in `skip` are only required to exist)."""
    names_a = sorted(os.listdir(a))
    if names_a != sorted(os.listdir(b)):
        return False
    for name in names_a:
        pa, pb = os.path.join(a, name), os.path.join(b, name)
        if os.path.isdir(pa):
            if not same_tree(pa, pb, skip):
                return False
        elif name not in skip and not filecmp.cmp(pa, pb, shallow=False):
            return False
    return True


def stray_temporaries(directory: str) -> list[str]:
    return [n for n in os.listdir(directory) if n.endswith((".tmp", ".old"))] if os.path.isdir(directory) else []


def campaign(name: str, kills: int, rng: random.Random, length: float, attempt, check_after_kill, finish) -> str:
    """`kills` rounds of: start, SIGKILL at a random moment, check the files, rerun, compare."""
    survived, landed = 0, 0
    for round_no in range(kills):
        moment = rng.uniform(0.3, length)
        was_killed = attempt(moment)
        landed += was_killed
        whole = check_after_kill()
        final = finish()
        survived += whole and final
        print(f"  {name} kill {round_no + 1:2d} at {moment:5.1f}s: {'killed' if was_killed else 'finished first'}, "
              f"files whole {whole}, rerun equal {final}", flush=True)
    line = f"{name}: kills survived {survived}/{kills} ({landed} landed before the command finished)"
    print(line, flush=True)
    return line


def index_campaign(work: str, kills: int, rng: random.Random, kb: str, checkpoint: str) -> str:
    env = dict(ENV, KGQA_CACHE=os.path.join(work, "cache"))
    reference = os.path.join(work, "index-ref")
    command = CLI + ["index", kb, "--checkpoint", checkpoint, "-o", reference]
    length = run(command, env)
    target = os.path.join(work, "index")
    command = CLI + ["index", kb, "--checkpoint", checkpoint, "-o", target]
    run(command, env)  # an earlier index is there: each kill may land while it is being replaced

    def whole() -> bool:
        from kgqa.kb.index import KBIndex

        if not os.path.exists(target) and not os.path.exists(os.path.join(work, ".index.old")):
            return False  # neither the old nor the new one: the failure this guards against
        from kgqa.files import recover_directory

        recover_directory(target)
        return KBIndex(target).triples > 0 and same_tree(target, reference, skip=("header.json",))

    def finish() -> bool:
        run(command, env)
        return same_tree(target, reference, skip=("header.json",)) and not stray_temporaries(work)

    return campaign("kgqa index", kills, rng, length, lambda t: killed_at(command, env, t), whole, finish)


def same_index(a: str, b: str) -> bool:
    """The same manifest, and every segment and deletes file it names the same bytes."""
    from kgqa.kb.index import read_manifest
    from kgqa.kb.manifest import named_files

    if not filecmp.cmp(os.path.join(a, "header.json"), os.path.join(b, "header.json"), shallow=False):
        return False
    for name in named_files(read_manifest(a)):
        pa, pb = os.path.join(a, name), os.path.join(b, name)
        if not (os.path.isdir(pb) and same_tree(pa, pb) if os.path.isdir(pa) else filecmp.cmp(pa, pb, shallow=False)):
            return False
    return True


def in_place_campaign(name: str, work: str, kills: int, rng: random.Random, base: str, command: list[str]) -> str:
    """Each round runs `command` (`{}`: the index) on a fresh copy of the index `base` (hard links:
    a writer never writes a file it did not create) and kills it; the index must be the one before
    or the one an unbroken run leaves."""
    from kgqa.kb.index import read_manifest
    from kgqa.kb.manifest import named_files

    env = dict(ENV, KGQA_CACHE=os.path.join(work, "cache"))

    def fresh(path: str) -> str:
        shutil.rmtree(path, ignore_errors=True)
        subprocess.run(["cp", "-al", base, path], check=True)
        return path

    reference = fresh(os.path.join(work, f"{name}-ref"))
    length = run([part.format(reference) for part in command], env)
    target = os.path.join(work, f"{name}-target")
    state = {}

    def attempt(moment: float) -> bool:
        fresh(target)
        return killed_at([part.format(target) for part in command], env, moment)

    def whole() -> bool:
        from kgqa.kb.index import KBIndex

        if not os.path.isfile(os.path.join(target, "header.json")):
            return False  # no manifest: the failure this guards against
        KBIndex(target)
        state["before"] = same_index(target, base)
        return state["before"] or same_index(target, reference)

    def finish() -> bool:
        if state.pop("before"):
            run([part.format(target) for part in command], env)
            if sorted(os.listdir(target)) != sorted(named_files(read_manifest(target))):
                return False  # what the kill left is gone
        return same_index(target, reference)

    return campaign(f"kgqa {name}", kills, rng, length, attempt, whole, finish)


def update_campaign(work: str, kills: int, rng: random.Random, kb: str, checkpoint: str, changes: int) -> str:
    """Updates with one change file: removals of KB lines and as many additions."""
    base = os.path.join(work, "update-base")
    run(CLI + ["index", kb, "--checkpoint", checkpoint, "-o", base], dict(ENV, KGQA_CACHE=os.path.join(work, "cache")))
    with open(kb, encoding="utf-8") as handle:
        lines = [line.rstrip("\n") for line in handle if line.strip()]
    picked = random.Random(0).sample(lines, changes // 2)
    change_file = os.path.join(work, "changes.tsv")
    with open(change_file, "w", encoding="utf-8") as out:
        out.writelines(f"-\t{line}\n" for line in picked)
        out.writelines(f"+\t{line.split(chr(9))[0]}\t新谓语{n % 97}\t值{n}\n" for n, line in enumerate(picked))
    return in_place_campaign("update", work, kills, rng, base,
                             CLI + ["update", change_file, "--index", "{}", "--checkpoint", checkpoint])


def merge_campaign(work: str, kills: int, rng: random.Random, kb: str, checkpoint: str) -> str:
    """Merges of an index built in eight parts into one segment."""
    base = os.path.join(work, "merge-base")
    with open(kb, encoding="utf-8") as handle:
        lines = sum(1 for _ in handle)
    run(CLI + ["index", kb, "--checkpoint", checkpoint, "-o", base, "--segment-triples", str(lines // 8)],
        dict(ENV, KGQA_CACHE=os.path.join(work, "cache")))
    return in_place_campaign("merge", work, kills, rng, base,
                             CLI + ["merge", "--index", "{}", "--checkpoint", checkpoint, "--segments", "1"])


def train_command(train: str, output: str, *extra: str) -> list[str]:
    return CLI + ["train", "--train", train, "--kb", f"{SAMPLE}/kb.tsv", "--output", output, "--epochs", "6",
                  "--batch-size", "8", "--kb-questions", "8", "--d-model", "32", "--layers", "1",
                  "--dev-limit", "0", *extra]


def train_campaign(work: str, kills: int, rng: random.Random, train: str) -> tuple[str, str]:
    import torch
    from safetensors.torch import load_file

    env = dict(ENV, KGQA_CACHE=os.path.join(work, "cache"))
    reference = os.path.join(work, "train-ref")
    length = run(train_command(train, reference), env)
    target = os.path.join(work, "train")

    def same_weights(a: str, b: str) -> bool:
        x, y = load_file(os.path.join(a, "model.safetensors")), load_file(os.path.join(b, "model.safetensors"))
        return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)

    def attempt(moment: float) -> bool:
        shutil.rmtree(target, ignore_errors=True)
        return killed_at(train_command(train, target), env, moment)

    def whole() -> bool:
        from kgqa.model.checkpoint import load_checkpoint, load_trainer_state

        for part in ("last", "best"):
            directory = os.path.join(target, part)
            if os.path.exists(directory) or os.path.exists(os.path.join(target, f".{part}.old")):
                load_checkpoint(directory)  # raises on a torn checkpoint
        if os.path.exists(os.path.join(target, "last")):
            return load_trainer_state(os.path.join(target, "last")) is not None
        return True

    def finish() -> bool:
        resume = ("--resume",) if os.path.exists(os.path.join(target, "last")) else ()
        run(train_command(train, target, *resume), env)
        return (same_weights(os.path.join(target, "last"), os.path.join(reference, "last"))
                and same_weights(os.path.join(target, "best"), os.path.join(reference, "best"))
                and not stray_temporaries(target))

    return campaign("kgqa train", kills, rng, length, attempt, whole, finish), os.path.join(reference, "best")


def predict_campaign(work: str, kills: int, rng: random.Random, checkpoint: str) -> str:
    env = dict(ENV, KGQA_CACHE=os.path.join(work, "cache"))
    questions = f"{SAMPLE}/train.json"

    def command(out: str) -> list[str]:
        return CLI + ["predict", questions, "--checkpoint", checkpoint, "--kb", f"{SAMPLE}/kb.tsv", "-o", out,
                      "--batch-size", "4", "--top-k", "3"]

    reference = os.path.join(work, "pred-ref.json")
    length = run(command(reference), env)
    target = os.path.join(work, "pred.json")
    with open(reference, "rb") as handle:
        expected = handle.read()

    def attempt(moment: float) -> bool:
        for path in (target, target + ".partial"):
            if os.path.exists(path):
                os.unlink(path)
        return killed_at(command(target), env, moment)

    def whole() -> bool:
        if os.path.exists(target):  # written only whole, at the end
            with open(target, "rb") as handle:
                return handle.read() == expected
        if os.path.exists(target + ".partial"):
            with open(target + ".partial", "rb") as handle:
                lines = handle.read().split(b"\n")
            return all(json.loads(line) is not None for line in lines[:-1])  # all but a torn last line parse
        return True

    def finish() -> bool:
        run(command(target), env)
        with open(target, "rb") as handle:
            return handle.read() == expected and not os.path.exists(target + ".partial")

    return campaign("kgqa predict", kills, rng, length, attempt, whole, finish)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kb-lines", type=int, default=300_000)
    parser.add_argument("--only", choices=["index", "update", "merge", "train", "predict"])
    parser.add_argument("--changes", type=int, default=20_000, help="Lines of the update's change file.")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    work = tempfile.mkdtemp(prefix="kgqa-faults-")
    with open(f"{SAMPLE}/train.json", encoding="utf-8") as handle:
        train = os.path.join(work, "train.json")
        with open(train, "w", encoding="utf-8") as out:
            out.writelines(handle.readlines()[:40])
    lines = []
    train_line, checkpoint = train_campaign(work, args.kills if args.only in (None, "train") else 0, rng, train)
    if args.only in (None, "train"):
        lines.append(train_line)
    if args.only in (None, "predict"):
        lines.append(predict_campaign(work, args.kills, rng, checkpoint))
    if args.only in (None, "index", "update", "merge"):
        kb = os.path.join(DATA, "kb.tsv")
        if os.path.isfile(kb):
            prefix = os.path.join(work, "kb.tsv")
            with open(kb, encoding="utf-8") as source, open(prefix, "w", encoding="utf-8") as out:
                for number, line in enumerate(source):
                    if number >= args.kb_lines:
                        break
                    out.write(line)
            kb = prefix
        else:
            kb = f"{SAMPLE}/kb.tsv"
        if args.only in (None, "index"):
            lines.append(index_campaign(work, args.kills, rng, kb, checkpoint))
        if args.only in (None, "update"):
            lines.append(update_campaign(work, args.kills, rng, kb, checkpoint, args.changes))
        if args.only in (None, "merge"):
            lines.append(merge_campaign(work, args.kills, rng, kb, checkpoint))
    print("\n".join(lines))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
