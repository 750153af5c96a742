"""`kgqa`: a thin click layer over the library; every command is a few lines over `kgqa.*`
(`cli.py` at the repository's top runs it from a source tree)."""
from __future__ import annotations

import functools
import json
import os
import sys
import zipfile
from typing import TYPE_CHECKING

import click

from kgqa.errors import KgqaError

if TYPE_CHECKING:  # imported inside the commands: `kgqa --help` loads no torch
    from kgqa.explanation import Explanation


def _user_errors(command):
    """A KgqaError becomes one line on stderr and exit code 1, never a traceback."""
    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except KgqaError as error:
            raise click.ClickException(str(error)) from None
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)
    return wrapper


_device_option = click.option("--device", default="auto", show_default=True,
                              help="Where the model runs: auto (a GPU where one is present), cpu, cuda, cuda:N, mps.")


_skip_bad_lines_option = click.option(
    "--skip-bad-lines", is_flag=True,
    help="Skip lines of the KB (or change file) that are no triple, counting them and naming the first by number "
         "(without it, the first bad line is named, file and line, and the command stops).")


_INDEX_COMMANDS = ("index", "update", "merge")  # no model: transformers (half a second to import) left unloaded


@click.group()
@click.version_option(package_name="kgqa", message="kgqa %(version)s")
@click.pass_context
def main(context: click.Context) -> None:
    """Answer Chinese one-hop questions over a knowledge graph (KgCLUE)."""
    if context.invoked_subcommand in _INDEX_COMMANDS:
        return
    from transformers.utils import logging

    logging.disable_progress_bar()
    logging.set_verbosity_error()


def _tokenizer_of(checkpoint: str | None):
    """The tokenizer of a checkpoint, its model left unloaded: the index commands need no torch
    (seconds to import)."""
    from kgqa.model.checkpoint_settings import checkpoint_tokenizer

    if checkpoint is None:
        raise click.UsageError("--checkpoint is needed: the index stores token ids of its tokenizer")
    return checkpoint_tokenizer(checkpoint)[0]


@main.command()
@click.argument("kb", type=click.Path())
@click.option("-o", "--output", required=True, type=click.Path(), help="Index directory to write.")
@click.option("--checkpoint", type=click.Path(), help="Tokenize with this checkpoint's tokenizer.")
@_skip_bad_lines_option
@click.option("--segment-triples", type=click.IntRange(min=1), default=None,
              help="Split a larger KB into segments of about this many triples; the build's memory is "
                   "about 250 bytes a triple of one segment [25,000,000].")
@click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True,
              help="Build this many segments at once (memory: that many segments').")
@_user_errors
def index(kb: str, output: str, checkpoint: str | None, skip_bad_lines: bool, segment_triples: int | None, jobs: int) -> None:
    """Build the persistent KB index (key trie + object store) once.

    OUTPUT may be new, empty, or an earlier kgqa index; any other directory is refused."""
    from kgqa.files import readable_file
    from kgqa.kb.build import SEGMENT_TRIPLES, bad_lines_checked, build_index, index_lock
    from kgqa.files import file_sha256

    readable_file(kb, "a KB file")
    tokenizer = _tokenizer_of(checkpoint)
    with index_lock(output):
        built = build_index(kb, tokenizer, output, skip_bad_lines=skip_bad_lines, kb_sha256=file_sha256(kb),
                            progress=True, segment_triples=segment_triples or SEGMENT_TRIPLES, jobs=jobs)
    bad_lines_checked(built, kb, skip_bad_lines, progress=True)
    m = built.manifest
    click.echo(f"{output}: {m.triples} triples in {len(m.segments)} segment(s), "
               f"{sum(len(s.surfaces) for s in built.segments)} surfaces, {len(built.predicates.names())} predicates"
               + (f"; left out: {', '.join(f'{n} {why}' for why, n in sorted(m.skipped.items()))}" if m.skipped else ""))


@main.command()
@click.argument("changes", type=click.Path())
@click.option("--index", "index_dir", required=True, type=click.Path(), help="Index directory to update.")
@click.option("--checkpoint", type=click.Path(), help="Tokenize with this checkpoint's tokenizer.")
@_skip_bad_lines_option
@click.option("--no-merge", is_flag=True, help="Leave merging segments to a later `kgqa merge`.")
@_user_errors
def update(changes: str, index_dir: str, checkpoint: str | None, skip_bad_lines: bool, no_merge: bool) -> None:
    """Apply CHANGES (`+<TAB>S<TAB>P<TAB>O` adds a triple, `-<TAB>S<TAB>P<TAB>O` removes one) to
    an index in place, without a rebuild: one new segment of the subjects they touch, then the
    merge policy; `kgqa serve --index` takes the update up between batches."""
    from kgqa.kb.update import update_index

    updated, report = update_index(index_dir, changes, _tokenizer_of(checkpoint), skip_bad_lines=skip_bad_lines,
                                   merge=not no_merge)
    for warning in report.warnings(changes):
        click.echo(f"warning: {warning}", err=True)
    click.echo(f"{index_dir}: {report.added} triples added, {report.removed} removed; {updated.triples} triples "
               f"in {len(updated.segments)} segment(s); committed in {report.seconds:.2f} s"
               + (f", then {len(report.merges)} merges in {report.merge_seconds:.2f} s" if report.merges else ""))


@main.command()
@click.option("--index", "index_dir", required=True, type=click.Path(), help="Index directory to merge.")
@click.option("--checkpoint", type=click.Path(), help="Tokenize with this checkpoint's tokenizer.")
@click.option("--segments", type=click.IntRange(min=1), default=None,
              help="Merge the smallest segments until at most this many are left (default: the merge policy's merges).")
@_user_errors
def merge(index_dir: str, checkpoint: str | None, segments: int | None) -> None:
    """Merge an index's segments in place (`kgqa update` runs the policy itself unless --no-merge)."""
    from kgqa.kb.build import is_index
    from kgqa.kb.index import KBIndex
    from kgqa.kb.merge import MergeDownTo, TieredMergePolicy, merge_index

    if not is_index(index_dir):
        raise KgqaError("not a kgqa index (build one with `kgqa index`)", index_dir)
    tokenizer = _tokenizer_of(checkpoint)
    counts = merge_index(index_dir, tokenizer, TieredMergePolicy() if segments is None else MergeDownTo(segments))
    merged = KBIndex(index_dir, tokenizer)
    click.echo(f"{index_dir}: {len(counts)} merges; {merged.triples} triples in {len(merged.segments)} segment(s)")


def _field_options(settings_class: type) -> list:
    """One option per field of the dataclass `settings_class` that has `help` metadata: named for
    the field (or its `flag`), typed by its default (or its `type`: int, float, "path", "text"),
    bounded by its `min`/`max` (`min_open`/`max_open`: bounds excluded), required where the field
    has no default, its default shown from the field (or as `shown` says, for a default of None);
    a flag pair for a boolean."""
    from dataclasses import MISSING, fields

    options = []
    for setting in fields(settings_class):
        meta = setting.metadata
        if "help" not in meta:
            continue
        flag = meta.get("flag", setting.name.replace("_", "-"))
        required = setting.default is MISSING
        default = None if required else setting.default
        kind = meta.get("type", type(default))
        if kind is bool:
            options.append(click.option(f"--{flag}/--no-{flag}", setting.name, default=default, show_default=True,
                                        help=meta["help"]))
            continue
        if kind in ("path", "text"):
            value = click.Path() if kind == "path" else str
        elif "min" in meta or "max" in meta:
            value = (click.IntRange if kind is int else click.FloatRange)(
                min=meta.get("min"), max=meta.get("max"), min_open=meta.get("min_open", False),
                max_open=meta.get("max_open", False))
        else:
            value = click.INT if kind is int else click.FLOAT
        given = {"required": True} if required else {"default": default,
                                                     "show_default": meta.get("shown", default is not None)}
        options.append(click.option(f"--{flag}", setting.name, type=value, help=meta["help"], **given))
    return options


def _with_options(command, options: list):
    """`command` with `options`, in the order given (as decorators listed top to bottom)."""
    for option in reversed(options):
        command = option(command)
    return command


def _train_options(command):
    """`kgqa train`'s options: one per `TrainConfig` field that has help, the width and depth of a
    model trained from scratch, the device and --skip-bad-lines."""
    from kgqa.settings import ScratchShape, TrainConfig

    shape = ScratchShape()
    options = _field_options(TrainConfig) + [
        click.option("--d-model", type=click.IntRange(min=1), default=shape.d_model, show_default=True,
                     help="Width of a model trained from scratch (its feed-forward layers four times as wide)."),
        click.option("--layers", type=click.IntRange(min=1), default=shape.num_layers, show_default=True,
                     help="Encoder and decoder layers of a model trained from scratch."),
        _device_option, _skip_bad_lines_option]
    return _with_options(command, options)


@main.command()
@_train_options
@_user_errors
def train(d_model: int, layers: int, **options) -> None:
    """Fine-tune (or train from scratch) question -> S [SEP] P [SEP] M [EOS] (then the object's first
    --object-tokens); keep OUTPUT/best by the held-out predicates' score, then fit the reranker and
    the confidence calibrator beside it."""
    from kgqa.train import train as run
    from kgqa.settings import ScratchShape, TrainConfig

    config = TrainConfig(**options, shape=ScratchShape().sized(d_model, layers))
    best = run(config)
    click.echo(f"best held-out: {json.dumps(best, ensure_ascii=False)}" if best else f"saved {config.output}/best")


@main.command("fit-reranker")
@click.option("--checkpoint", required=True, type=click.Path(), help="A kgqa checkpoint directory.")
@click.option("--train", "train_file", required=True, type=click.Path(), help="The train.json it was trained on.")
@click.option("--kb", required=True, type=click.Path(), help="Knowledge base file.")
@click.option("--index", "index_dir", type=click.Path(), help="Index directory (default: cache).")
@click.option("--channel-epochs", type=click.IntRange(min=0), default=None,
              help="Passes of the noisy channel over the training questions (default: as the checkpoint was "
                   "trained, else 24; 0: no channel).")
@_device_option
@_skip_bad_lines_option
@_user_errors
def fit_reranker(checkpoint, train_file, kb, index_dir, channel_epochs, device, skip_bad_lines) -> None:
    """Fit the checkpoint's answer kinds, naming weights, question wording and noisy channel (on the
    questions it trained on), reranker and confidence calibrator (on the predicates and questions its
    training held out) again: for a checkpoint an older kgqa fitted (other features, no calibrator, no
    answer kinds, no wording to try two-character near names by, no channel)."""
    from kgqa.refit import refit
    from kgqa.source import Source

    fitted, reach, held = refit(Source(checkpoint, kb, index_dir, device, skip_bad_lines=skip_bad_lines), train_file,
                                channel_epochs)
    if fitted.reranker is None:
        raise KgqaError(f"too few of the {held} held-out questions have their gold key among the candidates")
    said = ("answer kinds, naming weights, question wording, " + ("noisy channel, " if fitted.channel else "")
            + "reranker" + (" and calibrator" if fitted.calibrator else ""))
    click.echo(f"{checkpoint}: {said} fitted (named in fitted.json), the reranker on {held} held-out questions "
               f"(gold among candidates: {100 * reach:.1f}%)")


def _paths_checked(command):
    """A checkpoint or KB path that names none is said at once, once every option is parsed (a
    usage error first) and before seconds of loading torch."""
    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        from kgqa.files import readable_file
        from kgqa.model.checkpoint_settings import read_settings

        try:
            read_settings(kwargs["checkpoint"])
            readable_file(kwargs["kb"], "a KB file")
        except KgqaError as error:
            raise click.ClickException(str(error)) from None
        return command(*args, **kwargs)
    return wrapper


def _decode_options(command):
    """The options of the commands that answer: the checkpoint, the KB, and one per
    `DecodeSettings` field that has help (a flag pair for a boolean)."""
    from kgqa.settings import DecodeSettings

    options = [
        click.option("--checkpoint", required=True, type=click.Path(), help="A kgqa checkpoint directory."),
        click.option("--kb", required=True, type=click.Path(), help="Knowledge base file."),
        click.option("--index", "index_dir", type=click.Path(), help="Index directory (default: cache)."),
    ]
    options += _field_options(DecodeSettings)
    return _with_options(_paths_checked(command), options + [_device_option, _skip_bad_lines_option])


def _source(checkpoint: str, kb: str, index_dir: str | None, device: str, skip_bad_lines: bool, top_k: int = 1,
            **settings):
    """Where the answering commands' pipeline comes from: `settings` are `DecodeSettings` fields, by name."""
    from kgqa.settings import DecodeSettings
    from kgqa.source import Source

    return Source(checkpoint, kb, index_dir, device, DecodeSettings(top_k=top_k, **settings), skip_bad_lines)


def _open(**options):
    """The pipeline the answering commands run (`_source`'s options)."""
    return _source(**options).open(progress=True)


@main.command()
@click.argument("questions", type=click.Path())
@click.option("-o", "--output", required=True, type=click.Path(), help="Answers, JSON lines.")
@click.option("--top-k", type=click.IntRange(min=1), default=1, show_default=True, help="Candidates listed per question.")
@_decode_options
@_user_errors
def predict(questions, output, top_k, **decode) -> None:
    """Answer a KgCLUE question file: one `{"id", "question", "answer", "confidence"}` line per id,
    in order ("answer" empty where no KB key is reachable or the confidence is below
    --min-confidence; "confidence" where the checkpoint has a calibrator; with --top-k above 1,
    "candidates" too, each with its score and confidence).

    Killed and run again with the same arguments, it resumes from OUTPUT.partial. Under
    `torchrun --nproc_per_node N`, N processes (one GPU each, or CPU processes) share the file
    and write the one output."""
    from kgqa.data import write_answers
    from kgqa.journal import answer_file

    decode["min_confidence"] = _every_question_answered(decode["min_confidence"])
    for records in answer_file(questions, output, lambda: _open(top_k=top_k, **decode), "prediction"):
        write_answers(output, records)  # under torchrun, by rank 0 alone
        unanswered = sum(1 for record in records if not record["answer"])
        click.echo(f"{output}: {len(records)} answers" + (f", {unanswered} with no KB key reachable" if unanswered else ""))


def _every_question_answered(min_confidence: float | None) -> float:
    """An answer file's threshold: the one given, else 0 (the leaderboard counts every question
    answered; `kgqa ask` and `kgqa serve` refuse below the checkpoint's own)."""
    return 0.0 if min_confidence is None else min_confidence


@main.command()
@click.argument("question", required=False)
@click.option("--top-k", type=click.IntRange(min=1), default=5, show_default=True, help="Candidates shown.")
@click.option("--explain", "evidence", is_flag=True,
              help="Also show the mentions, the beam, each candidate's evidence, the homonyms.")
@click.option("--json", "as_json", is_flag=True,
              help="Print the answer as one JSON line, as the service's /ask gives it (with --explain: the whole "
                   "explanation).")
@_decode_options
@_user_errors
def ask(question, top_k, evidence, as_json, **decode) -> None:
    """Answer QUESTION, or with none, each question typed at the prompt (model and index stay loaded)."""
    from kgqa.data import asked_question

    from kgqa.candidate import answer_record
    from kgqa.explanation import explain

    qa = _open(top_k=top_k, **decode)

    def show(text: str) -> None:
        try:
            text = asked_question(text)
        except ValueError as problem:
            raise KgqaError(str(problem)) from None
        explanation = explain(qa, text)
        if as_json:  # the service's record; with --explain, the service's explanation
            record = explanation.as_json() if evidence else answer_record(text, explanation.top, qa.settings.min_confidence)
            click.echo(json.dumps(record, ensure_ascii=False))
        else:
            _print_explanation(explanation, top_k, evidence)

    if question is not None:  # given, even empty (bad input, said as such); none: the prompt
        show(question)
        return
    while True:
        try:
            text = input("问题> ").strip()
        except EOFError:
            break
        if text:
            try:
                show(text)
            except KgqaError as error:  # a question that cannot be asked ends that question, not the prompt
                click.echo(f"error: {error}", err=True)


# `kgqa ask --explain`'s evidence table: (label, width, feature name, decimals), and what each label means
_EVIDENCE_COLUMNS = [("score", 8, "score", 3), ("named", 5, "named_share", 2), ("kind", 5, "kind_share", 2),
                     ("own", 5, "object_in_subject", 2), ("loglik", 8, "log_likelihood", 2),
                     ("channel", 7, "channel_gain", 2)]
_EVIDENCE_LEGEND = [("score", "the reranker's"), ("named", "share of the question naming the predicate"),
                    ("kind", "fit of the object's kind to the kind of answer the question asks for, as a share among "
                             "its subject's predicates"),
                    ("own", "share of the object its subject's name holds"), ("loglik", "model log-likelihood"),
                    ("channel", "how much better the predicate and object explain the question than nothing, "
                                "log P(q|P,O) - log P(q)")]


def _print_explanation(explanation: "Explanation", top_k: int, everything: bool) -> None:
    """`kgqa ask`'s text: the object first, where it came from, the top-k candidates; with
    `everything` the mentions, the beam, each candidate's evidence and the homonyms too."""
    chosen = explanation.chosen
    confidence = f" · confidence {chosen.confidence:.2f}" if chosen and chosen.confidence is not None else ""
    if chosen is None:
        click.echo("(no KB key reachable)")
    elif explanation.answered:
        click.echo(chosen.obj)
        click.echo(f"  from {chosen.subject} · {chosen.predicate}{confidence}")
    else:
        click.echo(f"(no answer in the KB: the best candidate's confidence {chosen.confidence:.2f} is below "
                   f"{explanation.min_confidence:.2f})")
        click.echo(f"  best guess: {chosen.obj}, from {chosen.subject} · {chosen.predicate}")
    for match in explanation.reading.matches:  # the answer's own name, and any name read from a near one
        if everything or match.differing or chosen and match.surface == chosen.surface:
            click.echo(f"  {match}")
    if chosen and chosen.alternatives:
        click.echo(f"  ambiguous: the question does not say which {chosen.surface}; side by side:")
        for subject, obj in [(chosen.subject, chosen.obj)] + chosen.alternatives:
            click.echo(f"    {subject}: {obj}")
    listed = [r.candidate for r in explanation.candidates] if explanation.reranked else explanation.beam
    for rank, c in enumerate(listed[:top_k], start=1):
        click.echo(f"  {rank}. {c.score:8.3f}  {c.answer()}")
    if not everything:
        return
    if explanation.reading.text != explanation.question:
        click.echo(f"read as: {explanation.reading.text}")
    click.echo(f"refused below confidence {explanation.min_confidence:.3g}"
               + (" (0: every question answered)" if not explanation.min_confidence else ""))
    click.echo(f"mentions in the question: {', '.join(explanation.mentions) or '(none: any KB subject)'}")
    click.echo("beam (model + look-ahead): " + "; ".join(f"{b.answer()} ({b.score:.3f})" for b in explanation.beam))
    click.echo("candidates, in the reranker's order:")
    click.echo("  " + "  ".join(f"{label:>{width}}" for label, width, _, _ in _EVIDENCE_COLUMNS) + "  candidate")
    for r in explanation.candidates:
        values = {"score": r.candidate.score, **r.features}
        click.echo("  " + "  ".join(f"{values[name]:>{width}.{places}f}" for _, width, name, places in _EVIDENCE_COLUMNS)
                   + f"  {r.candidate.answer()}")
    click.echo("  " + "; ".join(f"{label}: {meaning}" for label, meaning in _EVIDENCE_LEGEND))
    click.echo("homonyms of the chosen subject: " + ", ".join(
        (h.disambiguation or "(none)") + (" [chosen]" if h.chosen else "")
        + (" [has the predicate]" if h.has_predicate else "") for h in explanation.homonyms))


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind (loopback by default).")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option("--top-k", type=click.IntRange(min=1), default=5, show_default=True, help="Candidates per answer.")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Answering processes (1: a thread of the serving process); from 2 on, each has its own model, all "
                   "share the index, and one more process answers lone questions at once (see --no-lane).")
@click.option("--lane/--no-lane", default=True, show_default=True,
              help="With --workers 2 or more: a process kept for lone questions, so one never waits behind a batch.")
@click.option("--api-key", envvar="KGQA_API_KEY", help="Key /ask and /metrics require (Authorization: Bearer KEY); "
                                                      "also read from KGQA_API_KEY.")
@click.option("--api-key-file", type=click.Path(), help="A file holding the key (its first line).")
@click.option("--client-header", help="Tell clients apart by this header (set by a trusted proxy) instead of their "
                                      "address.")
@click.option("--drain-timeout", type=click.FloatRange(min=0), default=30.0, show_default=True,
              help="Seconds a stopped service (SIGTERM, Ctrl-C) gives the requests in flight.")
@click.option("--engine", type=click.Choice(["kgqa", "ray"]), default="kgqa", show_default=True,
              help="kgqa: this machine's processes; ray: replicas on Ray Serve, on the cluster RAY_ADDRESS names, "
                   "else a Ray started here (pip install 'kgqa[ray]'; README § Past one machine).")
@click.option("--replicas", type=click.IntRange(min=1), default=None,
              help="With --engine ray: replicas, each with its own model  [default: 1]")
@_decode_options
@_user_errors
def serve(host, port, top_k, workers, lane, api_key, api_key_file, client_header, drain_timeout, engine, replicas,
          **decode) -> None:
    """HTTP service: POST /ask, GET /health, GET /metrics, and a page at / to ask from a browser."""
    import time

    from kgqa.serve.app import is_loopback, listen, serve as run
    from kgqa.serve.workers import ThreadWorker, start_processes

    started = time.time()  # /health's uptime counts the workers' loading too
    key = _api_key(api_key, api_key_file)
    if engine == "ray":
        if workers != 1 or client_header:
            raise click.UsageError("--workers and --client-header are kgqa's engine's; Ray Serve has --replicas")
        _serve_on_ray(_source(top_k=top_k, **decode), replicas or 1, host, port, key)
        return
    if replicas is not None:
        raise click.UsageError("--replicas is for --engine ray (kgqa's engine has --workers)")
    sock = listen(host, port)
    if workers == 1:
        answering = [ThreadWorker(_open(top_k=top_k, **decode))]
    else:
        answering = start_processes(_source(top_k=top_k, **decode), workers, lane)
    if not is_loopback(host) and key is None:
        click.echo(f"warning: {host} is not loopback and kgqa serve has no API key: anyone who can reach "
                   f"{host}:{port} can ask it questions (give --api-key-file or KGQA_API_KEY)", err=True)
    click.echo(f"kgqa: serving on http://{host}:{port}" + (f" with {workers} workers" if workers > 1 else ""), err=True)
    run(answering, sock, api_key=key, client_header=client_header, drain_s=drain_timeout, started=started)


def _serve_on_ray(source, replicas: int, host: str, port: int, key: str | None) -> None:
    """`kgqa serve --engine ray`: the service as Ray Serve replicas (`kgqa.serve.ray_app.run`)."""
    try:
        from kgqa.serve.ray_app import run
    except ImportError as missing:
        raise KgqaError(f"--engine ray needs Ray Serve ({missing}): pip install 'kgqa[ray]'") from None
    click.echo(f"kgqa: serving on http://{host}:{port} with {replicas} Ray Serve replicas", err=True)
    run(source, replicas, host, port, key)


def _api_key(given: str | None, path: str | None) -> str | None:
    """The service's key, from --api-key (or KGQA_API_KEY) or the first line of --api-key-file."""
    if given is not None and path is not None:
        raise click.UsageError("give the key once: --api-key (or KGQA_API_KEY) or --api-key-file")
    if path is not None:
        try:
            with open(path, encoding="utf-8") as handle:
                given = handle.readline().strip()
        except (OSError, UnicodeDecodeError) as error:
            raise KgqaError(f"cannot read the API key ({getattr(error, 'strerror', None) or error})", path) from None
        if not given:
            raise KgqaError("the API key file's first line is empty", path)
    elif given is not None and not given.strip():
        raise click.UsageError("the API key is empty")
    return given.strip() if given is not None else None


@main.command()
@click.argument("test", type=click.Path())
@click.option("-o", "--output", required=True, type=click.Path(), help="Directory for the upload files.")
@_decode_options
@_user_errors
def submit(test, output, **decode) -> None:
    """Write kgclue_predict.json and kgclue_predict.zip, the CLUE leaderboard upload."""
    from kgqa.data import write_answers
    from kgqa.files import atomic_file
    from kgqa.journal import answer_file

    if os.path.exists(output) and not os.path.isdir(output):
        raise KgqaError("is a file, expected a directory for the upload files", output)
    json_path = os.path.join(output, "kgclue_predict.json")
    decode["min_confidence"] = _every_question_answered(decode["min_confidence"])
    for records in answer_file(test, json_path, lambda: _open(**decode), "leaderboard"):
        write_answers(json_path, records)
        with atomic_file(os.path.join(output, "kgclue_predict.zip"), "wb") as handle:
            with zipfile.ZipFile(handle, "w", zipfile.ZIP_DEFLATED) as archive:
                archive.write(json_path, "kgclue_predict.json")
        click.echo(f"{output}: kgclue_predict.json and kgclue_predict.zip, {len(records)} answers")


@main.command()
@click.argument("pred", type=click.Path())
@click.argument("gold", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print the metric table as JSON.")
@_user_errors
def evaluate(pred: str, gold: str, as_json: bool) -> None:
    """KgCLUE's official metric; score = (EM_O + F1_O) / 2. Missing predictions count as wrong."""
    from kgqa.metrics import score_files

    table, near = score_files(pred, gold)
    if near:  # 1, "1" and 1.0 are different ids to KgCLUE's scorer too, but nobody means that
        gold_id, pred_id = near[0]
        click.echo(f"warning: {len(near)} gold ids match a prediction id only as text (gold {json.dumps(gold_id)}, "
                   f"prediction {json.dumps(pred_id)}); they count as missing", err=True)
    if as_json:
        click.echo(json.dumps(table, ensure_ascii=False))
        return
    for name, value in table.items():
        click.echo(f"{name:>8}  {value}")
