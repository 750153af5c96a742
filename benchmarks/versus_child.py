"""One side of `versus.py`: answer a question list with whichever kgqa PYTHONPATH names, and write
the timings and top answers as JSON. Kept free of the harness and of this checkout's kgqa, so the
same file runs against an earlier commit's code.

    PYTHONPATH=CHECKOUT python benchmarks/versus_child.py CK KB INDEX QUESTIONS.json BATCH OUT.json
"""
import json
import sys
import time
from dataclasses import replace

import torch

from kgqa.source import Source


def main() -> None:
    checkpoint, kb, index, questions_file, batch_size, out = sys.argv[1:7]
    size = int(batch_size)
    with open(questions_file, encoding="utf-8") as handle:
        questions = json.load(handle)
    qa = Source(checkpoint, kb, index or None, device="cpu").open()
    qa.settings = replace(qa.settings, batch_size=size)
    ask = getattr(qa, "ask", None) or qa.answer  # `KGQA.answer` before the name `ask`
    ask(questions[:size])  # warm: tail tries, allocator
    times, answers = [], []
    started = time.perf_counter()
    for start in range(0, len(questions), size):
        batch = questions[start:start + size]
        began = time.perf_counter()
        ranked = ask(batch)
        times.append((time.perf_counter() - began) / len(batch))
        answers.extend(candidates[0].as_json()["answer"] if candidates else "" for candidates in ranked)
    with open(out, "w", encoding="utf-8") as handle:
        json.dump({"wall": time.perf_counter() - started, "times": times, "answers": answers,
                   "threads": torch.get_num_threads()}, handle, ensure_ascii=False)


if __name__ == "__main__":
    main()
