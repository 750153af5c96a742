import json
import os
import signal
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest
from click.testing import CliRunner

from kgqa.cli import main
from kgqa.rank.answer_kinds import AnswerKinds
from kgqa.rank.features import FEATURE_NAMES
from kgqa.rank.naming import Naming
from kgqa.rank.reranker import Reranker

from conftest import ROOT, SAMPLE, TINY, stand_in, write


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


# the overfit questions as people type them: traditional characters, spaces, a homophone in the name
TYPED = {0: "胡洋英在哪上的大學？", 1: "林 刚强 是哪 国人？", 2: "李侠敏的出生日期是？", 3: "楊平敏幹什麼的？",
         4: "郭方强是哪个学校毕业的？", 5: "高娟玉 的民族 是什么？", 6: "趙傑傑是什麼族的？", 7: "林钢强的毕业院校是？"}


def test_questions_typed_otherwise_get_the_answers_they_get_as_written(overfit):
    tmp, _, gold, env = overfit
    typed = write(tmp / "typed.json", "".join(json.dumps({"id": i, "question": q}, ensure_ascii=False) + "\n"
                                               for i, q in TYPED.items()))
    out = tmp / "typed_pred.json"
    decode = ["--checkpoint", str(tmp / "ck/best"), "--kb", f"{SAMPLE}/kb.tsv"]
    result = CliRunner().invoke(main, ["predict", typed, "-o", str(out)] + decode, env=env)
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["answer"] for line in out.read_text(encoding="utf-8").splitlines()] == \
        [g["answer"] for g in gold]
    result = CliRunner().invoke(main, ["ask", TYPED[2], "--explain"] + decode, env=env)
    assert result.exit_code == 0, result.output
    assert "the question's 李侠敏 ≈ the KB's 李霞敏 (one character (sounds alike))" in result.output
    assert "read as: 李霞敏的出生日期是？" in result.output
    result = CliRunner().invoke(main, ["ask", TYPED[3], "--json", "--explain"] + decode, env=env)
    info = json.loads(result.output.strip().splitlines()[-1])
    assert info["answer"] == gold[3]["answer"] and info["read_as"] == gold[3]["question"]
    assert [m["said"] for m in info["matches"]] == ["the question's 楊平敏 matched the KB's 杨平敏 (script)"]


def test_on_a_cpu_int8_is_the_default_and_answers_as_the_models_own_precision_does(overfit):
    tmp, train, gold, env = overfit
    found = {}
    for name, flags in (("default", []), ("int8", ["--int8"]), ("fp32", ["--no-int8"])):
        out = tmp / f"pred_{name}.json"
        result = CliRunner().invoke(main, ["predict", train, "-o", str(out), "--checkpoint", str(tmp / "ck/best"),
                                           "--kb", f"{SAMPLE}/kb.tsv", "--device", "cpu", "--top-k", "2"] + flags, env=env)
        assert result.exit_code == 0, result.output
        found[name] = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [a["answer"] for a in found["default"]] == [a["answer"] for a in found["fp32"]] == [g["answer"] for g in gold]
    assert found["default"] == found["int8"]  # the default is int8: the same lines, candidates' scores included
    assert found["default"] != found["fp32"]  # fp32's scores are its own


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

    from kgqa.model.tokenizer import SentencePieceTokenizer

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
    assert set(info["candidates"][0]["features"]) >= {"log_likelihood", "named_share", "kind_fit"}
    assert any(h["chosen"] and h["has_predicate"] for h in info["homonyms"])
    typed = gold[1]["question"] + "\n\n" + gold[2]["question"] + "\n"
    result = CliRunner().invoke(main, ["ask", "--top-k", "2"] + decode, input=typed, env=env)
    assert result.exit_code == 0, result.output
    for g in gold[1:3]:
        assert g["answer"] in result.output
    result = CliRunner().invoke(main, ["ask", gold[1]["question"]] + decode, env=env)
    subject, predicate, obj = gold[1]["answer"].split(" ||| ")
    assert result.output.splitlines()[:2] == [obj, f"  from {subject} · {predicate}"]  # the object leads
    # --json without --explain: the answer as the service's /ask gives it, with the --top-k candidates
    # the text lists, no explanation
    result = CliRunner().invoke(main, ["ask", gold[1]["question"], "--json", "--top-k", "4"] + decode, env=env)
    info = json.loads(result.output)
    assert set(info) <= {"question", "answer", "confidence", "candidates"} and info["answer"] == gold[1]["answer"]
    assert len(info["candidates"]) == 4 and info["candidates"][0]["answer"] == info["answer"]
    # an empty question is bad input, not the prompt
    _one_line_error(CliRunner().invoke(main, ["ask", ""] + decode, env=env), "empty question")


def _one_line_error(result, message):
    assert result.exit_code == 1, result.output
    assert message in result.output and "Traceback" not in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1, result.output


def test_kgqa_index_never_replaces_a_directory_that_is_not_an_index(overfit, tmp_path):
    tmp, train, _, env = overfit
    checkpoint = str(tmp / "ck/best")
    before = sorted(os.listdir(checkpoint))
    result = CliRunner().invoke(main, ["index", f"{SAMPLE}/kb.tsv", "--checkpoint", checkpoint, "-o", checkpoint],
                                env=env)
    _one_line_error(result, "exists and is not a kgqa index; not replacing it")
    assert sorted(os.listdir(checkpoint)) == before
    index = str(tmp_path / "idx")
    for _ in range(2):  # a new directory, then the index it now holds, may be (re)written
        result = CliRunner().invoke(main, ["index", f"{SAMPLE}/kb.tsv", "--checkpoint", checkpoint, "-o", index],
                                    env=env)
        assert result.exit_code == 0, result.output
    data = tmp_path / "data"
    data.mkdir()
    write(data / "train.json", "mine")
    result = CliRunner().invoke(main, ["predict", train, "-o", str(tmp_path / "p.json"), "--checkpoint", checkpoint,
                                       "--kb", f"{SAMPLE}/kb.tsv", "--index", str(data)], env=env)
    _one_line_error(result, "data: exists and is not a kgqa index")
    assert os.listdir(data) == ["train.json"]


@pytest.mark.parametrize("args, message", [
    (["index", "MISSING", "--checkpoint", "CK", "-o", "OUT"], "MISSING: no such file"),
    (["index", "TMP", "--checkpoint", "CK", "-o", "OUT"], "is a directory, expected a KB file"),
    (["index", f"{SAMPLE}/kb.tsv", "--checkpoint", "TMP/nope", "-o", "OUT"], "no such checkpoint directory"),
    (["ask", "问", "--checkpoint", "LATIN1", "--kb", f"{SAMPLE}/kb.tsv"], "is a file, expected a checkpoint directory"),
    (["evaluate", "LATIN1", f"{SAMPLE}/dev.json"], "latin1.json:1: bytes that are not UTF-8"),
    (["evaluate", "TMP", f"{SAMPLE}/dev.json"], "is a directory"),
    (["predict", "TRAIN", "-o", "TMP", "--checkpoint", "CK", "--kb", f"{SAMPLE}/kb.tsv"],
     "is a directory, expected the answer file to write"),
    (["submit", "TRAIN", "-o", "LATIN1", "--checkpoint", "CK", "--kb", f"{SAMPLE}/kb.tsv"],
     "is a file, expected a directory"),
    (["predict", "TRAIN", "-o", "OUT", "--checkpoint", "BADRERANK", "--kb", f"{SAMPLE}/kb.tsv"],
     "reranker.npz: unreadable reranker"),
    (["predict", "TRAIN", "-o", "OUT", "--checkpoint", "BADKINDS", "--kb", f"{SAMPLE}/kb.tsv"],
     "answer_kinds.npz: unreadable answer kinds"),
    (["ask", "问", "--checkpoint", "BADNAMING", "--kb", f"{SAMPLE}/kb.tsv"], "naming.npz: unreadable naming weights"),
    (["predict", "SURROGATE", "-o", "OUT", "--checkpoint", "CK", "--kb", f"{SAMPLE}/kb.tsv"],
     "surrogate.json:1: the question holds a lone surrogate"),
], ids=["index-missing-kb", "index-kb-dir", "index-no-checkpoint", "ask-checkpoint-file", "evaluate-latin1",
        "evaluate-dir", "predict-o-dir", "submit-o-file", "bad-reranker", "bad-answer-kinds", "bad-naming", "surrogate-question"])
def test_each_failure_is_one_line_before_any_work(overfit, tmp_path, args, message):
    import shutil

    tmp, train, _, env = overfit
    damaged = {}
    n = len(FEATURE_NAMES)
    fitted = {"BADRERANK": Reranker([0.0] * n, [1.0] * n, [1.0] * n),
              "BADKINDS": AnswerKinds(["谁"], ["length 2"], np.ones((2, 1), np.float32)),
              "BADNAMING": Naming({"在": (0, 1)})}
    for name, file, text in [("BADRERANK", "reranker.npz", '{"features": '),
                             ("BADKINDS", "answer_kinds.npz", b"PK\x03\x04 cut short"),
                             ("BADNAMING", "naming.npz", b"")]:
        damaged[name] = str(tmp_path / name.lower())
        shutil.copytree(tmp / "ck/best", damaged[name])
        fitted[name].save(damaged[name])  # one the checkpoint may lack (it held out no predicates), to damage
        write(os.path.join(damaged[name], file), text)
    names = {"MISSING": str(tmp_path / "MISSING"), "TMP": str(tmp_path), "CK": str(tmp / "ck/best"),
             "OUT": str(tmp_path / "out"), "TRAIN": train, **damaged,
             "LATIN1": write(tmp_path / "latin1.json", '{"id": 1, "answer": "caf\xe9"}\n'.encode("latin-1")),
             "SURROGATE": write(tmp_path / "surrogate.json", '{"id": 1, "question": "\\ud800的配偶"}\n')}
    result = CliRunner().invoke(main, [names.get(a, a) for a in args], env=env)
    _one_line_error(result, message)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args", [
    ["predict", "Q", "-o", "O", "--checkpoint", "C", "--kb", "K", "--top-k", "0"],
    ["predict", "Q", "-o", "O", "--checkpoint", "C", "--kb", "K", "--batch-size", "0"],
    ["predict", "Q", "-o", "O", "--checkpoint", "C", "--kb", "K", "--beams", "0"],
    ["predict", "Q", "-o", "O", "--checkpoint", "C", "--kb", "K", "--lookahead", "-1"],
    ["train", "--train", "T", "--kb", "K", "--holdout", "1.5"],
    ["train", "--train", "T", "--kb", "K", "--epochs", "0"],
    ["serve", "--checkpoint", "C", "--kb", "K", "--port", "70000"],
], ids=["top-k", "batch-size", "beams", "lookahead", "holdout", "epochs", "port"])
def test_options_out_of_range_are_usage_errors(args):
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and "Invalid value" in result.output and "Traceback" not in result.output


def test_serve_on_a_port_in_use_says_so_at_once(overfit):
    import socket

    tmp, _, _, env = overfit
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        started = time.time()
        result = CliRunner().invoke(main, ["serve", "--checkpoint", str(tmp / "ck/best"), "--kb", f"{SAMPLE}/kb.tsv",
                                           "--port", str(port)], env=env)
    _one_line_error(result, f"cannot listen on 127.0.0.1:{port}")
    assert time.time() - started < 5  # before the model and index load


def test_serve_on_ray_without_ray_says_how_to_get_it_and_engines_keep_their_own_options(overfit, monkeypatch):
    tmp, _, _, env = overfit
    serve = ["serve", "--checkpoint", str(tmp / "ck/best"), "--kb", f"{SAMPLE}/kb.tsv"]
    monkeypatch.setitem(sys.modules, "kgqa.serve.ray_app", None)  # as where the ray extra is not installed
    _one_line_error(CliRunner().invoke(main, serve + ["--engine", "ray"], env=env), "pip install 'kgqa[ray]'")
    assert "--replicas is for --engine ray" in CliRunner().invoke(main, serve + ["--replicas", "2"], env=env).output
    assert "Ray Serve has --replicas" in CliRunner().invoke(main, serve + ["--engine", "ray", "--workers", "2"],
                                                           env=env).output


def test_a_second_predict_to_the_same_output_fails_at_once_and_spares_the_first(overfit, tmp_path):
    from kgqa.journal import Journal

    tmp, train, _, env = overfit
    out = str(tmp_path / "pred.json")
    with Journal(out).begin("the first run") as first:
        first.append({0: {"id": 1, "answer": "甲"}})
        result = CliRunner().invoke(main, ["predict", train, "-o", out, "--checkpoint", str(tmp / "ck/best"),
                                           "--kb", f"{SAMPLE}/kb.tsv"], env=env)
        _one_line_error(result, "another kgqa run is writing this output now")
    with Journal(out) as again:
        assert again.begin("the first run").done == {0: {"id": 1, "answer": "甲"}}
    assert not os.path.exists(out)


def test_evaluate_says_when_ids_match_only_as_text(tmp_path):
    gold = write(tmp_path / "gold.json", '{"id": 1, "question": "q", "answer": "A ||| p ||| o"}\n'
                                        '{"id": 2, "question": "q", "answer": "B ||| p ||| o"}\n')
    pred = write(tmp_path / "pred.json", '{"id": "1", "answer": "A ||| p ||| o"}\n{"id": 2, "answer": "B ||| p ||| o"}\n')
    result = CliRunner(mix_stderr=False).invoke(main, ["evaluate", pred, gold, "--json"]) \
        if "mix_stderr" in CliRunner.__init__.__code__.co_varnames else CliRunner().invoke(main, ["evaluate", pred, gold, "--json"])
    assert result.exit_code == 0
    assert "1 gold ids match a prediction id only as text (gold 1, prediction \"1\")" in result.stderr
    assert json.loads(result.stdout)["missing"] == 1


def test_train_refuses_an_output_whose_best_is_not_a_checkpoint_before_training(tmp_path):
    (tmp_path / "out/best").mkdir(parents=True)
    write(tmp_path / "out/best/thesis.tex", "mine")
    result = CliRunner().invoke(main, ["train", "--train", f"{SAMPLE}/train.json", "--kb", f"{SAMPLE}/kb.tsv",
                                       "--output", str(tmp_path / "out")])
    _one_line_error(result, "best: exists and is not a kgqa checkpoint")
    assert os.listdir(tmp_path / "out/best") == ["thesis.tex"]


@pytest.mark.parametrize("command", ["predict", "ask", "serve", "submit"])
def test_every_decode_setting_is_an_option_that_reaches_the_pipeline(command, monkeypatch, tmp_path):
    """The answering commands' options are derived from DecodeSettings' fields: each reaches the
    settings the pipeline is opened with, under its own name (booleans as --x/--no-x pairs)."""
    from dataclasses import fields

    from kgqa.settings import DecodeSettings
    from kgqa.source import Source

    class Opened(Exception):
        pass

    def opened(source, progress=False):
        raise Opened(source.settings)

    monkeypatch.setattr(Source, "open", opened)
    given = ["--beams", "7", "--no-mention-restriction", "--lookahead", "0.5", "--mention-lookahead", "0",
             "--batch-size", "3", "--no-rerank", "--max-question-tokens", "64", "--int8", "--near-margin", "0.5",
             "--min-confidence", "0.25"]
    assert {f.name for f in fields(DecodeSettings) if "help" in f.metadata} == {
        "beams", "restrict_mentions", "lookahead", "mention_lookahead", "batch_size", "rerank", "max_question_tokens",
        "int8", "near_margin", "min_confidence"}
    arguments = {"predict": [f"{SAMPLE}/dev.json", "-o", str(tmp_path / "out.json")], "ask": ["问题"],
                 "serve": ["--port", "0"], "submit": [f"{SAMPLE}/test.json", "-o", str(tmp_path / "submit")]}[command]
    result = CliRunner().invoke(main, [command, *arguments, *stand_in(tmp_path / "ck"), *given])
    assert isinstance(result.exception, Opened), result.output
    assert result.exception.args[0] == DecodeSettings(beams=7, top_k=result.exception.args[0].top_k,
                                                      restrict_mentions=False, lookahead=0.5, mention_lookahead=0.0,
                                                      batch_size=3, rerank=False, max_question_tokens=64,
                                                      int8=True, near_margin=0.5, min_confidence=0.25)
    # not given: every question answered in a file (the leaderboard), the checkpoint's refusal threshold where a
    # person asks (None: `KGQA` reads it from the calibrator)
    result = CliRunner().invoke(main, [command, *arguments, *stand_in(tmp_path / "ck")])
    assert result.exception.args[0].min_confidence == {"predict": 0.0, "submit": 0.0, "ask": None, "serve": None}[command]


def test_torchrun_predict_shards_the_file_writes_what_one_process_writes_and_resumes(overfit, tmp_path):
    import socket

    tmp, train, gold, env = overfit
    questions = write(tmp_path / "q.json", "".join(
        json.dumps({"id": i, "question": gold[i % len(gold)]["question"] + "？" * (i // len(gold))},
                   ensure_ascii=False) + "\n" for i in range(40)))
    args = ["predict", questions, "--checkpoint", str(tmp / "ck" / "best"), "--kb", f"{SAMPLE}/kb.tsv",
            "--top-k", "2", "--batch-size", "1"]
    one = CliRunner().invoke(main, args + ["-o", str(tmp_path / "one.json")], env=env)
    assert one.exit_code == 0, one.output

    def torchrun() -> subprocess.Popen:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = str(probe.getsockname()[1])
        command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr",
                   "127.0.0.1", "--master_port", port, os.path.join(ROOT, "cli.py")] + args + [
                   "-o", str(tmp_path / "two.json")]
        return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                                env=dict(os.environ, OMP_NUM_THREADS="1", GLOO_SOCKET_IFNAME="lo", **env))

    first = torchrun()  # stopped (torchrun ends its workers) once each shard has answered a few
    journals = [tmp_path / f"two.json.partial.{rank}-of-2" for rank in (0, 1)]
    deadline = time.time() + 120
    while time.time() < deadline and not all(j.exists() and j.read_bytes().count(b"\n") > 3 for j in journals):
        time.sleep(0.02)
    first.terminate()
    first.communicate(timeout=60)
    assert not (tmp_path / "two.json").exists()
    second = torchrun()
    stdout, stderr = second.communicate(timeout=300)
    assert second.returncode == 0, stderr[-3000:]
    assert "resuming: " in stderr
    assert (tmp_path / "two.json").read_bytes() == (tmp_path / "one.json").read_bytes()
    assert stdout.count("40 answers") == 1  # rank 0 alone writes and says so
    assert sorted(os.listdir(tmp_path)) == ["one.json", "q.json", "two.json"]  # no journal left behind


def test_a_bad_kb_line_is_named_by_every_command_and_skipped_only_when_asked(overfit, tmp_path):
    tmp, train, _, env = overfit
    checkpoint = str(tmp / "ck/best")
    with open(f"{SAMPLE}/kb.tsv", encoding="utf-8") as handle:
        lines = handle.readlines()
    kb = write(tmp_path / "kb.tsv", "".join(lines[:3]) + "有\x00空字符\t谓语\t宾语\n一个字段\n" + "".join(lines[3:]))
    first = "kb.tsv:4: a NUL character in the subject or predicate (--skip-bad-lines skips such lines)"
    commands = {
        "index": ["index", kb, "--checkpoint", checkpoint, "-o", str(tmp_path / "idx")],
        "ask": ["ask", "马磊静的民族是什么？", "--checkpoint", checkpoint, "--kb", kb],
        "predict": ["predict", train, "-o", str(tmp_path / "pred.json"), "--checkpoint", checkpoint, "--kb", kb],
        "serve": ["serve", "--port", "0", "--checkpoint", checkpoint, "--kb", kb],
        "train": ["train", "--train", train, "--kb", kb, "--output", str(tmp_path / "trained"), "--epochs", "1"] + TINY,
    }
    for name, command in commands.items():
        refused = CliRunner().invoke(main, command, env=env)
        assert refused.exit_code == 1 and "Traceback" not in refused.output, (name, refused.output)
        assert refused.output.strip().splitlines()[-1].endswith(first), (name, refused.output, refused.exception)
    assert sorted(os.listdir(tmp_path)) == ["idx.lock", "kb.tsv"]  # nothing written (the index's lock aside)
    said = ("kb.tsv: skipped 2 bad lines (line 4: a NUL character in the subject or predicate; "
            "line 5: expected 3 tab-separated fields, found 1)")
    built = CliRunner().invoke(main, commands["index"] + ["--skip-bad-lines"], env=env)
    assert built.exit_code == 0 and said in built.output, built.output
    header = json.loads((tmp_path / "idx" / "header.json").read_text(encoding="utf-8"))
    assert header["bad_lines"] == 2 and header["first_bad_lines"][0] == [4, "a NUL character in the subject or predicate"]
    asked = CliRunner().invoke(main, commands["ask"] + ["--skip-bad-lines"], env=env)
    assert asked.exit_code == 0 and said in asked.output, asked.output
    # the index it built skipping them, cached, is refused the same way without the flag
    again = CliRunner().invoke(main, commands["ask"], env=env)
    assert again.exit_code == 1 and again.output.strip().splitlines()[-1].endswith(first), again.output


def test_train_options_are_the_config_fields_each_with_help_and_reach_the_run(monkeypatch):
    from dataclasses import fields

    import kgqa.train
    from kgqa.settings import ScratchShape, TrainConfig

    class Ran(Exception):
        pass

    def ran(config):
        raise Ran(config)

    monkeypatch.setattr(kgqa.train, "train", ran)
    helped = [f.name for f in fields(TrainConfig) if "help" in f.metadata]
    shown = CliRunner().invoke(main, ["train", "--help"]).output
    for name in helped + ["d_model", "layers", "device", "skip_bad_lines"]:
        assert f"--{name.replace('_', '-')}" in shown
    # every option explains itself: no option line without words after it
    options = [line.split()[0] for line in shown.splitlines() if line.strip().startswith("--")]
    assert all(len(line.split()) > 2 for line in shown.splitlines() if line.strip().startswith("--")), options
    result = CliRunner().invoke(main, ["train", "--train", "t.json", "--kb", "kb.tsv", "--epochs", "2", "--lr", "0.01",
                                       "--batch-size", "8", "--dev-limit", "0", "--holdout", "0.25", "--d-model", "64",
                                       "--layers", "2", "--output", "out", "--resume"])
    config = result.exception.args[0]
    assert config == TrainConfig(train="t.json", kb="kb.tsv", epochs=2, lr=0.01, batch_size=8, dev_limit=0,
                                 holdout=0.25, output="out", resume=True,
                                 shape=ScratchShape(d_model=64, d_ff=256, num_layers=2, num_decoder_layers=2))
    # not given: the config's own defaults, the recipe's epochs and rate left to the model's family
    result = CliRunner().invoke(main, ["train", "--train", "t.json", "--kb", "kb.tsv"])
    assert result.exception.args[0] == TrainConfig(train="t.json", kb="kb.tsv")
    assert CliRunner().invoke(main, ["train", "--kb", "kb.tsv"]).exit_code == 2  # --train is required


def test_version_and_evaluate_json_end_as_a_terminal_expects(tmp_path):
    from importlib.metadata import version

    assert CliRunner().invoke(main, ["--version"]).output == f"kgqa {version('kgqa')}\n"
    gold = tmp_path / "gold.json"
    gold.write_text(json.dumps({"id": 0, "question": "问", "answer": "甲 ||| 乙 ||| 丙"}, ensure_ascii=False) + "\n")
    result = CliRunner().invoke(main, ["evaluate", str(gold), str(gold), "--json"])
    assert result.output.endswith("}\n") and json.loads(result.output)["score"] == 100.0
