"""docs/benchmarks.md's table of today's figures, made from the newest result record of each
benchmark (benchmarks/results/NAME.jsonl, written by `harness.record`).

    python benchmarks/report.py           # print the table
    python benchmarks/report.py --write   # replace the table between its markers in docs/benchmarks.md
"""
from __future__ import annotations

import argparse
import json
import os

from harness import RESULTS, ROOT

DOC = os.path.join(ROOT, "docs", "benchmarks.md")
BEGIN, END = "<!-- today's figures: made by benchmarks/report.py -->", "<!-- end of today's figures -->"
# the areas in the order the table gives them, each with the benchmarks whose records fill it
AREAS = [("accuracy", ("accuracy",)), ("as typed", ("variants",)), ("trust", ("abstention",)),
         ("speed", ("versus", "serve_load")), ("past one machine", ("ray_serve_load",)), ("scale", ("index_build", "scale")), ("update", ("kb_update",)), ("soak", ("soak",))]


def newest(name: str) -> list[dict]:
    """The records of the last run of benchmark NAME (one run may record several: a service per
    `--serve`), in order; [] where it has none."""
    path = os.path.join(RESULTS, f"{name}.jsonl")
    if not os.path.isfile(path):
        return []
    with open(path, encoding="utf-8") as handle:
        records = [json.loads(line) for line in handle if line.strip()]
    if not records:
        return []
    last = records[-1].get("run")  # records before runs were marked: the last line alone
    return [r for r in records if r.get("run") == last] if last else records[-1:]


def table() -> str:
    """One row per area and record of each benchmark's last run: the figure, the command, where and when."""
    rows = ["| area | figure | command | measured |", "|---|---|---|---|"]
    for area, names in AREAS:
        for name in names:
            if not newest(name):
                rows.append(f"| {area} | (no record yet: `benchmarks/{name}.py`) | | |")
            for found in newest(name):
                rows.append(_row(area, found))
    return "\n".join(rows)


def _row(area: str, found: dict) -> str:
    """One record as a row of the table."""
    machine = found["machine"]
    where = (f"{found['date'][:10]}, {found['commit']}{' + changes' if found['changed_files'] else ''}, "
             f"{machine.get('cores')} cores {machine.get('cpu', '')}".rstrip()
             + (f", {machine['gpu']}" if machine.get("gpu") else ""))
    if found.get("transcribed_from"):  # a figure measured before the records, copied from its section
        where = f"{found['date']}, {found['commit']}, 2-core CPU; transcribed from {found['transcribed_from']}"
    return f"| {area} | {found['summary']} | `{found['command']}` | {where} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="replace the table in docs/benchmarks.md")
    args = parser.parse_args()
    made = table()
    if not args.write:
        print(made)
        return
    with open(DOC, encoding="utf-8") as handle:
        doc = handle.read()
    if BEGIN not in doc or END not in doc:
        raise SystemExit(f"{DOC}: no {BEGIN} ... {END} markers to write between")
    head, rest = doc.split(BEGIN, 1)
    with open(DOC, "w", encoding="utf-8") as out:
        out.write(head + BEGIN + "\n" + made + "\n" + END + rest.split(END, 1)[1])
    print(f"{DOC}: today's figures written from {RESULTS}")


if __name__ == "__main__":
    main()
