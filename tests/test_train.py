import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from conftest import ROOT, SAMPLE, write


def _weights(directory):
    return load_file(os.path.join(directory, "model.safetensors"))


def _train_command(train_file, output, *extra):
    return [sys.executable, os.path.join(ROOT, "cli.py"), "train", "--train", train_file, "--kb", f"{SAMPLE}/kb.tsv",
            "--output", str(output), "--epochs", "6", "--batch-size", "8", "--kb-questions", "8",
            "--d-model", "32", "--layers", "1", "--channel-epochs", "2", *extra]


@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGINT])
def test_resume_after_a_kill_continues_with_the_same_state_and_data_order(tmp_path, stop):
    """Killed (or interrupted) mid-run and resumed, training ends with exactly the weights of an
    unbroken run."""
    with open(f"{SAMPLE}/train.json", encoding="utf-8") as handle:
        train_file = write(tmp_path / "train.json", "".join(handle.readlines()[:40]))
    env = dict(os.environ, OMP_NUM_THREADS="1", KGQA_CACHE=str(tmp_path / "cache"))
    subprocess.run(_train_command(train_file, tmp_path / "straight"), env=env, check=True, capture_output=True)
    # the child starts with SIGINT's default disposition, whatever the test runner's (one ignored
    # at exec stays ignored in Python, and the interrupt would never reach the training)
    killed = subprocess.Popen(_train_command(train_file, tmp_path / "split"), env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while not (tmp_path / "split/metrics.jsonl").exists() and time.time() < deadline:
        time.sleep(0.05)
    killed.send_signal(stop)
    assert killed.wait() == (130 if stop == signal.SIGINT else -signal.SIGKILL)
    steps_done = len(open(tmp_path / "split/metrics.jsonl", encoding="utf-8").readlines())
    assert 1 <= steps_done < 6, "the kill landed mid-run"
    subprocess.run(_train_command(train_file, tmp_path / "split", "--resume"), env=env, check=True,
                   capture_output=True)
    a, b = _weights(tmp_path / "straight/last"), _weights(tmp_path / "split/last")
    for name in a:
        assert torch.equal(a[name], b[name]), name
    epochs = [json.loads(line)["epoch"] for line in open(tmp_path / "split/metrics.jsonl", encoding="utf-8")]
    assert epochs == list(range(1, 7))


def test_two_processes_train_data_parallel_on_gloo(tmp_path):
    with open(f"{SAMPLE}/train.json", encoding="utf-8") as handle:
        train_file = write(tmp_path / "train.json", "".join(handle.readlines()[:32]))
    with socket.socket() as probe:  # a fixed port can be taken by another run on the machine
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
               "--master_port", port,
               os.path.join(ROOT, "cli.py"), "train", "--train", train_file, "--kb", f"{SAMPLE}/kb.tsv",
               "--output", str(tmp_path / "ck"), "--epochs", "2", "--batch-size", "4", "--kb-questions", "0",
               "--d-model", "32", "--layers", "1", "--channel-epochs", "2"]
    env = dict(os.environ, OMP_NUM_THREADS="1", KGQA_CACHE=str(tmp_path / "cache"), GLOO_SOCKET_IFNAME="lo")
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    # each process's traceback, and what a process that aborts in C++ (gloo) says before it dies
    said = [line for line in done.stderr.splitlines()
            if line.startswith("[rank") or any(word in line for word in ("terminate called", "what()", "gloo", "Gloo"))]
    assert done.returncode == 0, "\n".join(said[-30:] + [done.stderr[-2000:]])
    records = [json.loads(line) for line in open(tmp_path / "ck/metrics.jsonl", encoding="utf-8")]
    assert [r["step"] for r in records] == [3, 6]  # 25 kept of 32 (8% of predicates held out) // (4 x 2)
    assert os.path.isfile(tmp_path / "ck/best/model.safetensors")


def test_held_out_predicates_never_occur_among_the_kept_questions():
    from kgqa.data import hold_out_predicates, read_questions

    questions = read_questions(f"{SAMPLE}/train.json", need_answers=True)
    kept, held = hold_out_predicates(questions, 0.3, seed=0)
    assert held and kept and len(kept) + len(held) == len(questions)
    assert not {q.gold()[1] for q in kept} & {q.gold()[1] for q in held}
    again, _ = hold_out_predicates(questions, 0.3, seed=0)
    assert [q.id for q in again] == [q.id for q in kept]  # seeded


def test_questions_held_out_by_question_keep_their_predicates_in_training_and_leave_it():
    from kgqa.data import hold_out_predicates, read_questions, training_split

    questions = read_questions(f"{SAMPLE}/train.json", need_answers=True)
    trained, held, asked = training_split(questions, 0.25, 0.15, seed=0)
    assert len(trained) + len(held) + len(asked) == len(questions)
    assert (held, len(trained) + len(asked)) == (hold_out_predicates(questions, 0.25, seed=0)[1], len(questions) - len(held))
    assert len(asked) == round(0.15 * (len(trained) + len(asked)))
    assert not {q.id for q in asked} & {q.id for q in trained}  # never trained on
    assert {q.gold()[1] for q in asked} <= {q.gold()[1] for q in trained}  # but their predicates are
    assert training_split(questions, 0.25, 0.15, seed=0)[2] == asked  # seeded
    assert training_split(questions, 0.25, 0.0, seed=0)[2] == []
    # nothing held out by predicate, nothing fitted: no question is taken from training either
    assert training_split(questions, 0.0, 0.15, seed=0) == (questions, [], [])


def test_grad_accum_splits_the_batch_without_changing_the_gradient(sample_kb):
    """Micro-batches, each weighted by its share of the target tokens, give the whole batch's
    gradient (dropout off, so only float noise differs)."""
    import numpy as np

    from conftest import TINY_SHAPE
    from kgqa.data import read_questions, training_pairs
    from kgqa.model.seq2seq import scratch_model
    from kgqa.train import teacher_forced_batch, forward_backward

    _, _, tokenizer, _ = sample_kb
    pairs = training_pairs(read_questions(f"{SAMPLE}/train.json", need_answers=True))[:12]
    model = scratch_model(tokenizer, TINY_SHAPE, 0).eval()  # eval: no dropout, gradients still flow
    off = torch.autocast("cpu", enabled=False)
    grads = []
    for accum in (1, 3):
        model.zero_grad(set_to_none=True)
        parts = [teacher_forced_batch(tokenizer, [pairs[i] for i in part], 128) for part in np.array_split(np.arange(12), accum)]
        losses = forward_backward(model, parts, off)
        grads.append(([p.grad.clone() for p in model.parameters()], losses))
    (one, loss_one), (three, loss_three) = grads
    assert abs(loss_one - loss_three) < 1e-5
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(one, three))


def test_each_target_is_its_key_then_its_objects_first_tokens(sample_kb):
    from kgqa.data import Target
    from kgqa.train import teacher_forced_batch

    _, _, tokenizer, _ = sample_kb
    pairs = [("刘晓华讲什么课？", Target("刘晓华", "主讲课程", "广东工业大学教授", "《固体物理》")),
             ("这个东西叫什么？", Target("东西", "别名", "", ""))]
    keys = [tokenizer.encode_target(t.surface, t.predicate, t.disambiguation) for _, t in pairs]
    for tokens in (0, 3, 40):
        labels = teacher_forced_batch(tokenizer, pairs, 128, object_tokens=tokens)["labels"].tolist()
        for row, key, (_, target) in zip(labels, keys, pairs):
            tail = (tokenizer.encode(target.obj) + [tokenizer.eos_id])[:tokens]
            assert [t for t in row if t != -100] == key + tail  # the key's end first: a beam still stops there
    assert tokenizer.encode_object("", 8) == [tokenizer.eos_id]  # an empty object: its end at once


def test_devices_are_chosen_or_refused_in_one_line(monkeypatch):
    from kgqa.errors import KgqaError
    from kgqa.model.seq2seq import pick_device

    assert pick_device("cpu").type == "cpu"
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    assert pick_device("auto").type == ("cuda" if torch.cuda.is_available() else "mps" if mps else "cpu")
    with pytest.raises(KgqaError, match="device 'nonsense' is not usable here"):
        pick_device("nonsense")
    # where CUDA is present, auto takes this process's torchrun GPU (asked of a machine without
    # one, the same choice is refused in one line, not a traceback)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("LOCAL_RANK", "1")
    if torch.cuda.device_count() > 1:
        assert pick_device("auto") == torch.device("cuda:1")
    else:
        with pytest.raises(KgqaError, match="device 'cuda:1' is not usable here"):
            pick_device("auto")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")
def test_a_checkpoint_trained_on_the_gpu_predicts_on_the_cpu(tmp_path):
    from kgqa.source import Source

    with open(f"{SAMPLE}/train.json", encoding="utf-8") as handle:
        train_file = write(tmp_path / "train.json", "".join(handle.readlines()[:40]))
    env = dict(os.environ, KGQA_CACHE=str(tmp_path / "cache"))
    subprocess.run(_train_command(train_file, tmp_path / "ck", "--device", "cuda"), env=env, check=True)
    on_gpu = Source(str(tmp_path / "ck/best"), f"{SAMPLE}/kb.tsv", device="cuda").open()
    on_cpu = Source(str(tmp_path / "ck/best"), f"{SAMPLE}/kb.tsv", device="cpu").open()
    questions = ["马磊静的配偶是谁？", "高军英是在哪里出生的？"]
    assert [c[0].answer() for c in on_gpu.ask(questions)] == [c[0].answer() for c in on_cpu.ask(questions)]


def test_learning_rate_and_epochs_default_by_where_the_weights_come_from():
    from dataclasses import replace

    from kgqa.settings import TrainConfig, recipe

    scratch = TrainConfig(train="train.json", kb="kb.tsv")
    pretrained = replace(scratch, model="/models/some-checkpoint")
    assert (recipe(scratch, "t5").lr, recipe(scratch, "t5").epochs) == (3e-3, 5)  # CopyT5 is a T5 too
    assert [(recipe(pretrained, family).lr, recipe(pretrained, family).epochs)
            for family in ("t5", "mt5", "bart", "pegasus")] == [(3e-4, 3), (3e-4, 3), (3e-5, 3), (1e-4, 3)]
    chosen = recipe(replace(pretrained, lr=1e-2, epochs=7), "bart")
    assert (chosen.lr, chosen.epochs) == (1e-2, 7)  # given values win


def test_fit_reranker_refits_a_checkpoints_reranker_on_its_own_held_out_predicates(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from kgqa.cli import main
    from kgqa.rank.features import FEATURE_NAMES
    from kgqa.rank.storage import read_fitted, remove_fitted, write_fitted
    from kgqa.rank.reranker import Reranker
    from kgqa.rank.trained import TrainedPredicates
    from kgqa.source import Source

    env = {"KGQA_CACHE": str(tmp_path / "cache")}
    train = f"{SAMPLE}/train.json"
    args = ["--train", train, "--kb", f"{SAMPLE}/kb.tsv"]
    result = CliRunner().invoke(main, ["train", *args, "--output", str(tmp_path / "ck"), "--epochs", "1",
                                       "--batch-size", "16", "--kb-questions", "0", "--holdout", "0.25",
                                       "--d-model", "32", "--layers", "1", "--device", "cpu", "--object-tokens", "3",
                                       "--holdout-questions", "0.15"], env=env)
    assert result.exit_code == 0, result.output
    checkpoint = str(tmp_path / "ck/best")
    trained_on = TrainedPredicates.load(checkpoint).predicates  # the fit saw questions held out of them: kept
    assert "出生日期" in trained_on and not trained_on & {"职业", "身高"}  # the held-out predicates are not
    assert f"fitted on {108 + 51} held-out questions" in result.output
    linear = ("features", "mean", "std", "weights")
    fitted = read_fitted(checkpoint, "reranker", "reranker", linear)
    write_fitted(checkpoint, "reranker", {**fitted, "features": np.array(["an_older_feature", *fitted["features"][1:]])})
    assert Reranker.load(checkpoint) is None  # fitted over other features: answered without
    learned = {"answer_kinds": ("cues", "forms", "weights"), "naming": ("characters", "named", "seen")}
    before = {name: read_fitted(checkpoint, name, name, arrays) for name, arrays in learned.items()}
    for name in learned:
        remove_fitted(checkpoint, name)  # as a checkpoint an older kgqa fitted lacks them
    result = CliRunner().invoke(main, ["fit-reranker", "--checkpoint", str(tmp_path / "ck/best"), *args,
                                       "--device", "cpu"], env=env)
    assert result.exit_code == 0, result.output
    assert "held-out questions" in result.output
    for name, arrays in learned.items():  # fitted again, the same: seeded
        again = read_fitted(checkpoint, name, name, arrays)
        assert all(np.array_equal(again[field], before[name][field]) for field in arrays)
    refitted = read_fitted(checkpoint, "reranker", "reranker", linear)
    assert refitted["features"].tolist() == list(FEATURE_NAMES)
    assert refitted["weights"] == pytest.approx(fitted["weights"])  # the same held-out split, the same fit
    monkeypatch.setenv("KGQA_CACHE", env["KGQA_CACHE"])
    qa = Source(checkpoint, f"{SAMPLE}/kb.tsv", device="cpu").open()  # it reads what training taught
    assert qa.object_tokens == 3
    found = qa.candidate_sets(["马磊静的配偶是谁？"])[0]
    tails = [len(qa.tokenizer.encode_object(fact.objects[0], qa.object_tokens)) for fact in found.facts]
    likelihoods = found.evidence["likelihoods"]
    assert found.keys and likelihoods[:, 3].tolist() == tails and (likelihoods[:, 2] < 0).all()
    # the noisy channel, trained by default, read as a feature: each candidate's own gain
    assert qa.fitted.channel is not None and found.evidence["channel"].shape == (len(found.keys),)
    gains = found.features[:, FEATURE_NAMES.index("channel_gain")]
    assert np.array_equal(gains, found.evidence["channel"]) and len(set(gains.tolist())) > 1


def test_a_checkpoints_training_config_reads_back_typed():
    from dataclasses import asdict

    from kgqa.settings import ScratchShape, TrainConfig

    config = TrainConfig(train="t.json", kb="kb.tsv", holdout=0.25, seed=7, beams=6, shape=ScratchShape().sized(64, 2))
    record = asdict(config) | {"shape": asdict(config.shape)}
    assert TrainConfig.saved(record) == config
    # a field another kgqa wrote is left out; one it did not write takes today's default
    older = {name: value for name, value in record.items() if name != "channel_epochs"} | {"retired_option": 1}
    assert TrainConfig.saved(older) == config
