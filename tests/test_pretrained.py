"""`--model DIR`: any local HF seq2seq checkpoint, with its own tokenizer (here tiny checkpoints
with random weights, built and saved on the spot: no weights can be downloaded) — the four families
KgCLUE users fine-tune (`lookalikes.py`: uer's T5 and fnlp's BART with a BERT vocabulary, a
sentencepiece T5, mT5), a byte-level BART and BPE T5s."""
import asyncio
import json

import pytest
import torch
from aiohttp.test_utils import TestClient, TestServer
from click.testing import CliRunner
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (BartConfig, BartForConditionalGeneration, MT5Config, MT5ForConditionalGeneration,
                          PreTrainedTokenizerFast, T5Config, T5ForConditionalGeneration)

from kgqa.cli import main
from kgqa.kb.build import ensure_index
from kgqa.kb.triples import read_kb
from kgqa.model.tokenizer import HFTokenizer
from kgqa.kb.trie import ROOT, value_of
from kgqa.source import Source
from kgqa.serve.app import make_app
from kgqa.serve.workers import ThreadWorker

import lookalikes
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


def test_train_and_predict_with_a_local_bart(bart_dir, tmp_path):
    with open(f"{SAMPLE}/train.json", encoding="utf-8") as handle:
        train = write(tmp_path / "train.json", "".join(handle.readlines()[:16]))
    env = {"KGQA_CACHE": str(tmp_path / "cache")}
    result = CliRunner().invoke(main, ["train", "--model", bart_dir, "--train", train, "--kb", f"{SAMPLE}/kb.tsv",
                                       "--output", str(tmp_path / "ck"), "--epochs", "2", "--batch-size", "8",
                                       "--kb-questions", "0", "--channel-epochs", "2"], env=env)
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
    assert tokenizer.add_lost_characters(["张三", "毕业院校", "毕业院系"]) == {"校": [2], "系": [2]}  # were <unk>
    assert tokenizer.add_lost_characters(["毕业院校"]) == {}  # idempotent
    index = ensure_index(kb, tokenizer, str(tmp_path / "index"))
    sid = index.names.surface_id("张三")
    trie = index.tail_trie(sid)
    for key, predicate, disambiguation in index.keys(sid):
        target = tokenizer.encode(predicate) + [tokenizer.sep_id] + tokenizer.encode(disambiguation) + [tokenizer.eos_id]
        assert _reached(trie, target) == key  # each key its own path


@pytest.fixture(scope="module", params=sorted(lookalikes.FAMILIES))
def family(tmp_path_factory, request):
    """(name, directory) of a tiny look-alike of a checkpoint users fine-tune; its vocabulary lacks UNKNOWN."""
    directory = str(tmp_path_factory.mktemp(request.param))
    return request.param, lookalikes.FAMILIES[request.param](directory, _texts(), leave_out=UNKNOWN)


# (end token, decoder start, label prefix, separator) as HFTokenizer's rule gives them
ROLES = {"uer-t5": ("[SEP]", "[CLS]", [], "[KGQA_SEP]"), "fnlp-bart": ("[SEP]", "[SEP]", ["[CLS]"], "[KGQA_SEP]"),
         "mengzi-t5": ("</s>", "<pad>", [], "[SEP]"), "mt5": ("</s>", "<pad>", [], "[SEP]")}


def test_each_familys_end_start_prefix_and_separator_follow_one_rule(family, tmp_path):
    name, directory = family
    tokenizer = HFTokenizer.from_pretrained(directory)
    names = tokenizer.tok.convert_ids_to_tokens
    end, start, prefix, separator = ROLES[name]
    assert (names(tokenizer.eos_id), names(tokenizer.decoder_start_id), names(tokenizer.target_prefix),
            names(tokenizer.sep_id)) == (end, start, prefix, separator)
    assert tokenizer.sep_id != tokenizer.eos_id
    for text in ("a[SEP]b", "a[KGQA_SEP]b", "刘[SEP]华"):  # no text forges the separator or a BERT vocabulary's end
        assert tokenizer.sep_id not in tokenizer.encode(text)
        assert tokenizer.sep_id not in tokenizer.encode_question(text)
        assert tokenizer.eos_id not in tokenizer.encode(text) or names(tokenizer.eos_id) == "</s>"
    tokenizer.save(str(tmp_path / "saved"))  # as a checkpoint keeps it: the same roles read back
    again = HFTokenizer.from_pretrained(str(tmp_path / "saved"))
    assert (again.eos_id, again.decoder_start_id, again.target_prefix, again.sep_id, again.sha256) == (
        tokenizer.eos_id, tokenizer.decoder_start_id, tokenizer.target_prefix, tokenizer.sep_id, tokenizer.sha256)


def test_each_family_trains_an_epoch_and_answers_dev_ask_and_serve_with_kb_triples(family, tmp_path):
    name, directory = family
    env = {"KGQA_CACHE": str(tmp_path / "cache")}
    result = CliRunner().invoke(main, ["train", "--model", directory, "--train", f"{SAMPLE}/train.json",
                                       "--kb", f"{SAMPLE}/kb.tsv", "--output", str(tmp_path / "ck"), "--epochs", "1",
                                       "--batch-size", "16", "--kb-questions", "50", "--channel-epochs", "2",
                                       "--device", "cpu"], env=env)
    assert result.exit_code == 0, result.output
    assert "characters the checkpoint's tokenizer loses (unknown, dropped or normalised) as tokens" in result.output
    checkpoint = str(tmp_path / "ck/best")
    saved = HFTokenizer.from_pretrained(f"{checkpoint}/tokenizer")
    assert all(saved.tok.unk_token_id not in saved.encode(c) for c in UNKNOWN)
    out = tmp_path / "pred.json"
    result = CliRunner().invoke(main, ["predict", f"{SAMPLE}/dev.json", "-o", str(out), "--checkpoint", checkpoint,
                                       "--kb", f"{SAMPLE}/kb.tsv", "--device", "cpu"], env=env)
    assert result.exit_code == 0, result.output
    triples = {(f"{t.surface}（{t.disambiguation}）" if t.disambiguation else t.surface, t.predicate, t.obj)
               for t in read_kb(f"{SAMPLE}/kb.tsv")}
    with open(f"{SAMPLE}/dev.json", encoding="utf-8") as handle:
        ids = [json.loads(line)["id"] for line in handle]
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in records] == ids
    assert all(tuple(r["answer"].split(" ||| ")) in triples for r in records)
    question = "马磊静的配偶是谁？"
    result = CliRunner().invoke(main, ["ask", question, "--explain", "--checkpoint", checkpoint, "--kb",
                                       f"{SAMPLE}/kb.tsv", "--device", "cpu"], env=env)
    assert result.exit_code == 0 and "Traceback" not in result.output, result.output
    qa = Source(checkpoint, f"{SAMPLE}/kb.tsv", device="cpu").open()

    async def serve():
        async with TestClient(TestServer(make_app([ThreadWorker(qa)]))) as client:
            response = await client.post("/ask", json={"questions": [question, "高军英是在哪里出生的？"],
                                                       "explain": True})
            return response.status, await response.json()

    status, body = asyncio.run(serve())
    assert status == 200
    for reply in body:  # answered, or refused below the checkpoint's threshold: its guesses are KB triples all the same
        guesses = [c["answer"] for c in reply["candidates"]]
        assert guesses and all(tuple(g.split(" ||| ")) in triples for g in guesses)
        assert reply["answer"] in (None, guesses[0])


# keys that differ only in case, spaces, or full/half width; a BERT vocabulary lowercases and drops
# spaces, a sentencepiece one (NFKC) narrows full-width characters
COLLIDING = ["iPhone 4\t价格\t4999元", "IPHONE4\t价格\t5299元", "iphone 4\t价格\t3999元", "iphone  4\t价格\t1元",
             "ｉｐｈｏｎｅ4\t价格\t2元", "ＩＰＨＯＮＥ４\t价格\t3元", "iPhone 4\tCPU\tA4", "iPhone 4\tcpu\ta4",
             "iPhone 4\tＣＰＵ\tＡ4", "苹果（iPhone）\t产地\t美国", "苹果（IPHONE）\t产地\t中国", "苹果（i phone）\t产地\t日本"]


@pytest.mark.parametrize("name", ["uer-t5", "fnlp-bart", "mengzi-t5"])
def test_kb_keys_that_a_checkpoints_tokenizer_would_merge_each_stay_answerable(name, tmp_path):
    directory = lookalikes.FAMILIES[name](str(tmp_path / "model"), _texts())
    kb = write(tmp_path / "kb.tsv", "\n".join(COLLIDING) + "\n")
    tokenizer = HFTokenizer.from_pretrained(directory)
    strings = [part for line in COLLIDING for part in line.split("\t")[:2]]
    merged = len({tuple(tokenizer.encode(s)) for s in strings}) < len(set(strings))
    assert merged  # the tokenizer as it comes would give some keys one trie path
    tokenizer.add_lost_characters(strings)
    assert len({tuple(tokenizer.encode(s)) for s in strings}) == len(set(strings))
    index = ensure_index(kb, tokenizer, str(tmp_path / "index"))
    triples = list(read_kb(kb))
    reached = set()
    for triple in triples:
        sid = _reached(index.surface_trie, tokenizer.encode(triple.surface) + [tokenizer.sep_id])
        assert sid is not None and index.names.surface(sid) == triple.surface
        key = _reached(index.tail_trie(sid), tokenizer.encode(triple.predicate) + [tokenizer.sep_id]
                       + tokenizer.encode(triple.disambiguation) + [tokenizer.eos_id])
        fact = index.fact(key)
        assert (fact.surface, fact.predicate, fact.disambiguation, fact.objects) == (
            triple.surface, triple.predicate, triple.disambiguation, [triple.obj])
        reached.add(key)
    assert len(reached) == len(triples)  # every key its own path, each answer the KB's own strings


def _no_end_tokenizer(directory):
    """A T5 whose tokenizer has neither an eos nor a sep token."""
    core = Tokenizer(models.BPE(unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    core.train_from_iterator(_texts(), trainers.BpeTrainer(vocab_size=300, special_tokens=["<pad>", "<unk>"]))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", unk_token="<unk>")
    T5ForConditionalGeneration(T5Config(vocab_size=len(tokenizer), d_model=16, d_kv=8, d_ff=32, num_layers=1,
                                        num_heads=2)).save_pretrained(directory)
    tokenizer.save_pretrained(directory)


def _unusable(kind, directory):
    from transformers import BertConfig, BertModel, GPT2Config, GPT2LMHeadModel

    if kind == "encoder-only":
        lookalikes._write_bert_vocab(directory, lookalikes.bert_vocab(_texts()))
        BertModel(BertConfig(vocab_size=400, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                             intermediate_size=32)).save_pretrained(directory)
    elif kind == "causal":
        GPT2LMHeadModel(GPT2Config(vocab_size=400, n_embd=16, n_layer=1, n_head=2)).save_pretrained(directory)
    elif kind == "no-tokenizer":
        T5ForConditionalGeneration(T5Config(vocab_size=400, d_model=16, d_kv=8, d_ff=32, num_layers=1,
                                            num_heads=2)).save_pretrained(directory)
    else:
        _no_end_tokenizer(directory)


@pytest.mark.parametrize("kind, message", [
    ("encoder-only", "not a sequence-to-sequence checkpoint (bert: an encoder-only model)"),
    ("causal", "not a sequence-to-sequence checkpoint (gpt2: a decoder-only (causal) language model)"),
    ("no-tokenizer", "cannot load the checkpoint's tokenizer"),
    ("no-end-token", "the checkpoint's tokenizer has no end token (neither an eos_token nor a sep_token)"),
])
def test_a_checkpoint_kgqa_cannot_use_is_refused_in_one_line(kind, message, tmp_path):
    directory = str(tmp_path / kind)
    _unusable(kind, directory)
    result = CliRunner().invoke(main, ["train", "--model", directory, "--train", f"{SAMPLE}/train.json",
                                       "--kb", f"{SAMPLE}/kb.tsv", "--output", str(tmp_path / "ck"),
                                       "--device", "cpu"], env={"KGQA_CACHE": str(tmp_path / "cache")})
    assert result.exit_code == 1 and result.exception is None or isinstance(result.exception, SystemExit), \
        result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and directory in lines[0], result.output
    assert not (tmp_path / "ck").exists() or not any((tmp_path / "ck").iterdir())


def test_an_added_character_starts_from_what_the_tokenizer_made_of_it(tmp_path):
    from kgqa.model.seq2seq import pretrained_start

    directory = lookalikes.uer_t5(str(tmp_path / "uer"), _texts())
    model, tokenizer, lost = pretrained_start(directory, ["iPhone 4", "期"])
    assert set(lost) == {"P", " "}  # "期" is in this vocabulary; a capital is lowercased, a space dropped
    table = model.get_input_embeddings().weight
    capital, lower = tokenizer.tok.convert_tokens_to_ids("P"), tokenizer.encode("p")
    assert lower != [tokenizer.tok.unk_token_id] and len(table) == len(tokenizer)
    assert torch.equal(table[capital], table[lower].mean(0))
