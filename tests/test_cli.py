import json
import os
import signal
import subprocess
import sys
import time
import zipfile

import pytest
from click.testing import CliRunner

from cli import main

from conftest import ROOT, SAMPLE, write


def test_train_predict_returns_the_exact_answers_it_learned(overfit):
    tmp, train, gold, env = overfit
    out = tmp / "pred.json"
    result = CliRunner().invoke(main, ["predict", train, "-o", str(out), "--checkpoint", str(tmp / "ck/best"),
                                       "--kb", f"{SAMPLE}/kb.tsv", "--top-k", "2"], env=env)
    assert result.exit_code == 0, result.output
    predicted = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [p["id"] for p in predicted] == [g["id"] for g in gold]
    assert [p["answer"] for p in predicted] == [g["answer"] for g in gold]
    assert all(len(p["candidates"]) == 2 for p in predicted)
    result = CliRunner().invoke(main, ["evaluate", str(out), train, "--json"])
    assert json.loads(result.output)["score"] == 100.0


def test_submit_writes_every_test_id_in_order_and_a_zip(overfit):
    tmp, _, _, env = overfit
    result = CliRunner().invoke(main, ["submit", f"{SAMPLE}/test.json", "-o", str(tmp / "sub"),
                                       "--checkpoint", str(tmp / "ck/best"), "--kb", f"{SAMPLE}/kb.tsv"], env=env)
    assert result.exit_code == 0, result.output
    lines = (tmp / "sub/kgclue_predict.json").read_text(encoding="utf-8").splitlines()
    with open(f"{SAMPLE}/test.json", encoding="utf-8") as handle:
        ids = [json.loads(line)["id"] for line in handle]
    assert [json.loads(line)["id"] for line in lines] == ids
    assert all(json.loads(line)["answer"].count(" ||| ") == 2 for line in lines)
    with zipfile.ZipFile(tmp / "sub/kgclue_predict.zip") as archive:
        assert archive.read("kgclue_predict.json").decode("utf-8").splitlines() == lines


@pytest.mark.parametrize("content,message", [
    ('{"id": 1, "question": "a"}\nnot json\n', "q.json:2: not JSON"),
    ('{"id": 1, "question": "a"}\n{"question": "b"}\n', 'q.json:2: missing "id"'),
    ('{"id": 1, "question": "a"}\n{"id": 1, "question": "b"}\n', "q.json:2: duplicate id 1"),
    ('{"id": 1, "question": "  "}\n', "q.json:1: empty question"),
    ('{"id": 1, "question": "a"}\n{"id": 2}\n', 'q.json:2: missing or non-string "question"'),
    ('{"id": 1, "question": "a"}\n[1, 2]\n', "q.json:2: expected a JSON object"),
    (b'{"id": 1, "question": "\xff"}\n', "q.json:1: bytes that are not UTF-8"),
])
def test_bad_question_files_get_one_line_and_leave_no_output(overfit, content, message):
    tmp, _, _, env = overfit
    questions = write(tmp / "q.json", content)
    out = tmp / "never.json"
    result = CliRunner().invoke(main, ["predict", questions, "-o", str(out), "--checkpoint", str(tmp / "ck/best"),
                                       "--kb", f"{SAMPLE}/kb.tsv"], env=env)
    assert result.exit_code == 1
    assert message in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not out.exists()


def test_missing_checkpoint_and_kb_are_named(overfit, tmp_path):
    tmp, train, _, env = overfit
    result = CliRunner().invoke(main, ["predict", train, "-o", str(tmp_path / "o"), "--checkpoint",
                                       str(tmp_path / "nope"), "--kb", f"{SAMPLE}/kb.tsv"], env=env)
    assert result.exit_code == 1 and "no such checkpoint directory" in result.output
    result = CliRunner().invoke(main, ["predict", train, "-o", str(tmp_path / "o"), "--checkpoint",
                                       str(tmp / "ck/best"), "--kb", str(tmp_path / "missing.tsv")], env=env)
    assert result.exit_code == 1 and "missing.tsv: no such file" in result.output


def test_evaluate_counts_missing_predictions_as_wrong(tmp_path):
    gold = write(tmp_path / "gold.json", '{"id": 1, "question": "q", "answer": "A ||| p ||| o"}\n'
                                        '{"id": 2, "question": "q", "answer": "B ||| p ||| o"}\n')
    pred = write(tmp_path / "pred.json", '{"id": 2, "answer": "B ||| p ||| o"}\n')
    result = CliRunner().invoke(main, ["evaluate", pred, gold, "--json"])
    table = json.loads(result.output)
    assert table["missing"] == 1 and table["EM_O"] == 50.0


def test_predict_killed_mid_run_resumes_without_redoing_finished_batches(overfit, tmp_path):
    tmp, _, gold, env = overfit
    n = 300
    questions = write(tmp_path / "many.json", "".join(
        json.dumps({"id": i, "question": gold[i % len(gold)]["question"]}, ensure_ascii=False) + "\n"
        for i in range(n)))
    out = tmp_path / "pred.json"
    partial = tmp_path / "pred.json.partial"
    command = [sys.executable, os.path.join(ROOT, "cli.py"), "predict", questions, "--checkpoint",
               str(tmp / "ck" / "best"), "--kb", f"{SAMPLE}/kb.tsv", "-o", str(out), "--batch-size", "1"]
    env = dict(os.environ, OMP_NUM_THREADS="1", **env)
    child = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and (not partial.exists() or partial.read_bytes().count(b"\n") < 11):
        time.sleep(0.02)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert not out.exists()  # nothing half-written where the answers go
    finished = partial.read_bytes().count(b"\n") - 1
    assert 10 <= finished < n
    with open(partial, "ab") as handle:
        handle.write(b'{"position": 9')  # as if the kill had torn a line
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    resumed = int(again.stderr.split("resuming: ")[1].split()[0])
    assert resumed >= finished
    predicted = [json.loads(line) for line in open(out, encoding="utf-8")]
    assert [p["id"] for p in predicted] == list(range(n))
    assert all(p["answer"] == gold[p["id"] % len(gold)]["answer"] for p in predicted)
    assert not partial.exists()


def test_odd_but_valid_questions_each_get_one_answer_line(overfit, tmp_path):
    tmp, _, _, env = overfit
    odd = ["马磊静" * 3400, "🙂马磊静的配偶是谁？🙂", "𠀀𠀁的配偶是谁", "劉曉華主要講什麼課？", "?"]
    text = "\n\n".join(json.dumps({"id": f"q{i}", "question": q}, ensure_ascii=False) for i, q in enumerate(odd))
    questions = write(tmp_path / "odd.json", text + "\n\n")
    out = tmp_path / "pred.json"
    result = CliRunner().invoke(main, ["predict", questions, "--checkpoint", str(tmp / "ck/best"), "--kb",
                                       f"{SAMPLE}/kb.tsv", "-o", str(out)], env=env)
    assert result.exit_code == 0, result.output
    predicted = [json.loads(line) for line in open(out, encoding="utf-8")]
    assert [p["id"] for p in predicted] == [f"q{i}" for i in range(len(odd))]
    assert all(p["answer"] == "" or p["answer"].count(" ||| ") == 2 for p in predicted)


def _truncate(path):
    with open(path, "r+b") as handle:
        handle.truncate(os.path.getsize(path) // 2)


def _foreign_tokenizer(checkpoint):
    import shutil

    from kgqa.tokenizer import SentencePieceTokenizer

    shutil.rmtree(checkpoint / "tokenizer")
    SentencePieceTokenizer.train(["另一个检查点的分词器"], 100).save(str(checkpoint / "tokenizer"))


@pytest.mark.parametrize("damage, message", [
    (lambda ck: os.unlink(ck / "model.safetensors"), "cannot load model"),
    (lambda ck: _truncate(ck / "model.safetensors"), "cannot load model"),
    (_foreign_tokenizer, "tokenizer differs from the one this model was trained with"),
])
def test_damaged_checkpoints_are_refused_in_one_line(overfit, tmp_path, damage, message):
    import shutil

    tmp, train, _, env = overfit
    checkpoint = tmp_path / "ck"
    shutil.copytree(tmp / "ck" / "best", checkpoint)
    damage(checkpoint)
    out = tmp_path / "pred.json"
    result = CliRunner().invoke(main, ["predict", train, "--checkpoint", str(checkpoint), "--kb",
                                       f"{SAMPLE}/kb.tsv", "-o", str(out)], env=env)
    assert result.exit_code == 1
    assert message in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not out.exists()


def test_ask_answers_explains_and_keeps_a_prompt_open(overfit):
    tmp, _, gold, env = overfit
    decode = ["--checkpoint", str(tmp / "ck/best"), "--kb", f"{SAMPLE}/kb.tsv"]
    result = CliRunner().invoke(main, ["ask", gold[0]["question"], "--explain", "--json"] + decode, env=env)
    assert result.exit_code == 0, result.output
    info = json.loads(result.output.strip().splitlines()[-1])
    assert info["answer"] == gold[0]["answer"]
    surface = gold[0]["answer"].split(" ||| ")[0].split("（")[0]
    assert surface in info["mentions"]
    assert info["candidates"][0]["answer"] == info["answer"]
    assert set(info["candidates"][0]["features"]) >= {"log_likelihood", "predicate_covered"}
    assert any(h["chosen"] and h["has_predicate"] for h in info["homonyms"])
    typed = gold[1]["question"] + "\n\n" + gold[2]["question"] + "\n"
    result = CliRunner().invoke(main, ["ask", "--top-k", "2"] + decode, input=typed, env=env)
    assert result.exit_code == 0, result.output
    for g in gold[1:3]:
        assert g["answer"] in result.output
