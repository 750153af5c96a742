"""Writes data/sample/: a small invented KB and question files in KgCLUE's format.

Nothing here comes from KgCLUE: names, predicates and values are drawn from small seeded lists,
so the README's first command trains and answers on a fresh machine with no download. Like
KgCLUE, some subjects are homonyms told apart by a （disambiguation）, and questions come from
several phrasings, some naming the predicate literally and some paraphrasing it. Every question
has one answer: a subject holds each predicate once, and dev's predicates sit on one entity of a
name.
"""
from __future__ import annotations

import json
import os
import random

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰"
PLACES = ["北京", "上海", "广州", "成都", "杭州", "南京", "武汉", "西安", "长沙", "青岛"]
ROLES = ["作家", "教授", "歌手", "演员", "医生", "画家", "工程师", "运动员"]
WORKS = ["星河", "远山", "晨光", "流云", "归途", "长夜", "青石", "海风", "白鹭", "秋水"]
# predicate: (value maker, phrasings; {s} is the subject)
PREDICATES = {
    "出生地": (lambda r: r.choice(PLACES), ["{s}的出生地是哪里？", "{s}是在哪里出生的？", "{s}出生在哪？"]),
    "职业": (lambda r: r.choice(ROLES), ["{s}的职业是什么？", "{s}是做什么工作的？", "{s}干什么的？"]),
    "代表作品": (lambda r: "《" + r.choice(WORKS) + r.choice(WORKS) + "》",
             ["{s}的代表作品是什么？", "{s}有什么代表作？", "{s}最有名的作品是哪部？"]),
    "毕业院校": (lambda r: r.choice(PLACES) + "大学", ["{s}的毕业院校是？", "{s}是哪个学校毕业的？", "{s}在哪上的大学？"]),
    "身高": (lambda r: f"{r.randint(150, 195)}cm", ["{s}的身高是多少？", "{s}有多高？", "{s}个子多高？"]),
    "出生日期": (lambda r: f"{r.randint(1950, 2005)}年{r.randint(1, 12)}月{r.randint(1, 28)}日",
             ["{s}的出生日期是？", "{s}是哪天出生的？", "{s}生日是哪天？"]),
    "国籍": (lambda r: r.choice(["中国", "新加坡", "马来西亚"]), ["{s}的国籍是什么？", "{s}是哪国人？"]),
    "民族": (lambda r: r.choice(["汉族", "回族", "满族", "壮族"]), ["{s}的民族是什么？", "{s}是什么族的？"]),
    "配偶": (lambda r: r.choice(SURNAMES) + r.choice(GIVEN) + r.choice(GIVEN), ["{s}的配偶是谁？", "{s}的爱人是谁？"]),
    "主要成就": (lambda r: r.choice(["金奖", "年度人物", "最佳新人", "终身成就奖"]),
             ["{s}的主要成就有哪些？", "{s}取得过什么成就？"]),
}
DEV_ONLY = ["配偶", "主要成就"]  # like KgCLUE, dev asks about predicates train never shows


def main(directory: str = os.path.join(os.path.dirname(__file__), "sample"), seed: int = 7) -> None:
    rng = random.Random(seed)
    names: list[str] = []
    while len(names) < 60:
        name = rng.choice(SURNAMES) + rng.choice(GIVEN) + rng.choice(GIVEN)
        if name not in names:
            names.append(name)
    kb: list[tuple[str, str, str]] = []
    for i, name in enumerate(names):
        homonyms = 2 if i % 4 == 0 else 1  # a quarter share their name with another entity
        for h in range(homonyms):
            subject = f"{name}（{rng.choice(PLACES)}{ROLES[(i + h) % len(ROLES)]}）" if homonyms > 1 else name
            # dev's predicates on one entity of a name only, and once: each dev question has one answer
            asked = DEV_ONLY if h == 0 else []
            for predicate in rng.sample(sorted(p for p in PREDICATES if p not in DEV_ONLY), 6) + asked:
                kb.append((subject, predicate, PREDICATES[predicate][0](rng)))
    kb = list(dict.fromkeys(kb))
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "kb.tsv"), "w", encoding="utf-8") as out:
        out.writelines(f"{s}\t{p}\t{o}\n" for s, p, o in kb)
    train_rows = [t for t in kb if t[1] not in DEV_ONLY]
    dev_rows = [t for t in kb if t[1] in DEV_ONLY]
    rng.shuffle(train_rows)
    rng.shuffle(dev_rows)

    def questions(rows, with_answer):
        out = []
        for i, (s, p, o) in enumerate(rows):
            surface = s.split("（")[0]
            record = {"id": i, "question": rng.choice(PREDICATES[p][1]).format(s=surface)}
            if with_answer:
                record["answer"] = f"{s} ||| {p} ||| {o}"
            out.append(record)
        return out

    for name, rows, with_answer in (("train", train_rows, True), ("dev", dev_rows[:40], True),
                                     ("test", dev_rows[40:80], False)):
        with open(os.path.join(directory, f"{name}.json"), "w", encoding="utf-8") as out:
            out.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in questions(rows, with_answer))


if __name__ == "__main__":
    main()
