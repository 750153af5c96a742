"""`--model DIR`: any local HF seq2seq checkpoint, with its own tokenizer (here tiny BART, T5 and
mT5 checkpoints with random weights, built and saved on the spot: no weights can be downloaded)."""
import json

import pytest
from click.testing import CliRunner
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (BartConfig, BartForConditionalGeneration, MT5Config, MT5ForConditionalGeneration,
                          PreTrainedTokenizerFast, T5Config, T5ForConditionalGeneration)

from cli import main
from kgqa.kb.build import ensure_index
from kgqa.kb.triples import read_kb
from kgqa.model.tokenizer import HFTokenizer
from kgqa.kb.trie import ROOT, value_of

from conftest import SAMPLE, write


def _texts():
    texts = [t.surface + t.predicate + t.disambiguation + t.obj for t in read_kb(f"{SAMPLE}/kb.tsv")]
    with open(f"{SAMPLE}/train.json", encoding="utf-8") as handle:
        return texts + [json.loads(line)["question"] for line in handle]


UNKNOWN = "期地"  # characters of KB strings the T5 checkpoints' vocabulary lacks, as CJK in an English T5's


@pytest.fixture(scope="module", params=["t5", "mt5"])
def t5_dir(tmp_path_factory, request):
    """A T5-family checkpoint as its hub releases are laid out: pad 0, eos 1, no bos, the decoder
    starting from pad; its vocabulary lacks the characters in UNKNOWN."""
    directory = tmp_path_factory.mktemp(request.param)
    core = Tokenizer(models.BPE(unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    texts = [text.translate({ord(c): None for c in UNKNOWN}) for text in _texts()]
    core.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=600, special_tokens=["<pad>", "</s>", "<unk>"]))
    core.decoder = decoders.Fuse()
    core.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, eos_token="</s>", pad_token="<pad>", unk_token="<unk>")
    shape = dict(vocab_size=len(tokenizer), d_model=32, d_kv=16, d_ff=64, num_layers=1, num_decoder_layers=1,
                 num_heads=2, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    family = {"t5": (T5Config, T5ForConditionalGeneration), "mt5": (MT5Config, MT5ForConditionalGeneration)}
    config_class, model_class = family[request.param]
    model_class(config_class(**shape)).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return str(directory)


@pytest.fixture(scope="module")
def bart_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("bart")
    texts = [t.surface + t.predicate + t.disambiguation + t.obj for t in read_kb(f"{SAMPLE}/kb.tsv")]
    with open(f"{SAMPLE}/train.json", encoding="utf-8") as handle:
        texts += [json.loads(line)["question"] for line in handle]
    core = Tokenizer(models.BPE(unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Split("", "isolated")  # one token a character
    core.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=600, special_tokens=["<s>", "<pad>", "</s>", "<unk>"]))
    core.decoder = decoders.Fuse()
    core.post_processor = processors.TemplateProcessing(single="<s> $A </s>", special_tokens=[("<s>", 0), ("</s>", 2)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                        unk_token="<unk>")
    config = BartConfig(vocab_size=len(tokenizer), d_model=32, encoder_layers=1, decoder_layers=1,
                        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
                        max_position_embeddings=128, pad_token_id=1, bos_token_id=0, eos_token_id=2,
                        decoder_start_token_id=2, forced_bos_token_id=0)
    BartForConditionalGeneration(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return str(directory)


def test_a_checkpoints_own_tokenizer_gets_sep_and_keeps_bos_first(bart_dir):
    tokenizer = HFTokenizer.from_pretrained(bart_dir)
    assert tokenizer.target_prefix == [0]
    ids = tokenizer.encode_target("马磊静", "出生地", "广州画家")
    assert ids[0] == 0 and ids[-1] == 2 and ids.count(tokenizer.sep_id) == 2
    assert tokenizer.decode_target(ids) == ("马磊静", "出生地", "广州画家")


def test_train_and_predict_with_a_local_bart(bart_dir, tmp_path):
    with open(f"{SAMPLE}/train.json", encoding="utf-8") as handle:
        train = write(tmp_path / "train.json", "".join(handle.readlines()[:16]))
    env = {"KGQA_CACHE": str(tmp_path / "cache")}
    result = CliRunner().invoke(main, ["train", "--model", bart_dir, "--train", train, "--kb", f"{SAMPLE}/kb.tsv",
                                       "--output", str(tmp_path / "ck"), "--epochs", "2", "--batch-size", "8",
                                       "--kb-questions", "0"], env=env)
    assert result.exit_code == 0, result.output
    out = tmp_path / "pred.json"
    result = CliRunner().invoke(main, ["predict", train, "-o", str(out), "--checkpoint", str(tmp_path / "ck/best"),
                                       "--kb", f"{SAMPLE}/kb.tsv"], env=env)
    assert result.exit_code == 0, result.output
    kb = {f"{t.surface}（{t.disambiguation}）" if t.disambiguation else t.surface for t in read_kb(f"{SAMPLE}/kb.tsv")}
    answers = [json.loads(line)["answer"] for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(answers) == 16
    assert all(answer.split(" ||| ")[0] in kb for answer in answers)


def test_train_resume_and_predict_with_a_local_t5_or_mt5(t5_dir, tmp_path):
    with open(f"{SAMPLE}/train.json", encoding="utf-8") as handle:
        train = write(tmp_path / "train.json", "".join(handle.readlines()[:16]))
    env = {"KGQA_CACHE": str(tmp_path / "cache")}
    common = ["train", "--model", t5_dir, "--train", train, "--kb", f"{SAMPLE}/kb.tsv", "--output",
              str(tmp_path / "ck"), "--batch-size", "8", "--kb-questions", "0", "--holdout", "0", "--device", "cpu"]
    assert HFTokenizer.from_pretrained(t5_dir).encode(UNKNOWN) == [2, 2]  # <unk> <unk>
    result = CliRunner().invoke(main, common + ["--epochs", "1"], env=env)
    assert result.exit_code == 0, result.output
    assert "added 2 characters" in result.output and "peak learning rate 0.0003" in result.output  # the T5 recipe
    tokenizer = HFTokenizer.from_pretrained(str(tmp_path / "ck/last/tokenizer"))
    assert all(2 not in tokenizer.encode(t.surface + t.predicate + t.disambiguation) for t in read_kb(f"{SAMPLE}/kb.tsv"))
    result = CliRunner().invoke(main, common + ["--epochs", "2", "--resume"], env=env)
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["epoch"] for line in open(tmp_path / "ck/metrics.jsonl", encoding="utf-8")] == [1, 2]
    out = tmp_path / "pred.json"
    result = CliRunner().invoke(main, ["predict", train, "-o", str(out), "--checkpoint", str(tmp_path / "ck/best"),
                                       "--kb", f"{SAMPLE}/kb.tsv", "--device", "cpu"], env=env)
    assert result.exit_code == 0, result.output
    triples = {(f"{t.surface}（{t.disambiguation}）" if t.disambiguation else t.surface, t.predicate, t.obj)
               for t in read_kb(f"{SAMPLE}/kb.tsv")}
    answers = [tuple(json.loads(line)["answer"].split(" ||| ")) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(answers) == 16 and all(answer in triples for answer in answers)


def _reached(trie, tokens):
    """The value the trie stores at the end of `tokens` (None where the path is missing)."""
    node = ROOT
    for token in tokens[:-1]:
        node = trie.step(node, token)
        if node is None or node < 0:
            return None
    end = trie.step(node, tokens[-1])
    return None if end is None else value_of(end)


def test_characters_a_vocabulary_lacks_become_tokens_so_no_kb_key_is_unreachable(tmp_path):
    core = Tokenizer(models.BPE(unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    core.train_from_iterator(["张三毕业院大学", "北京物理"], trainers.BpeTrainer(special_tokens=["<pad>", "</s>", "<unk>"]))
    tokenizer = HFTokenizer(PreTrainedTokenizerFast(tokenizer_object=core, eos_token="</s>", pad_token="<pad>",
                                                    unk_token="<unk>"))
    assert tokenizer.encode("毕业院校") == tokenizer.encode("毕业院系")  # the collision: one trie path for two keys
    kb = write(tmp_path / "kb.tsv", "张三\t毕业院校\t北京大学\n张三\t毕业院系\t物理系\n")
    assert tokenizer.add_unknown_characters(["张三", "毕业院校", "毕业院系"]) == ["校", "系"]
    assert tokenizer.add_unknown_characters(["毕业院校"]) == []  # idempotent
    index = ensure_index(kb, tokenizer, str(tmp_path / "index"))
    sid = index.surfaces["张三"]
    trie = index.tail_trie(sid)
    for key, predicate, disambiguation in index.keys(sid):
        target = tokenizer.encode(predicate) + [tokenizer.sep_id] + tokenizer.encode(disambiguation) + [tokenizer.eos_id]
        assert _reached(trie, target) == key  # each key its own path
