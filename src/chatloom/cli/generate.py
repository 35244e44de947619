"""LLM-assisted data: ``generate`` (reply, qa, selfchat, status, collect) through any
OpenAI-compatible endpoint; the keys and endpoints it uses are ``keys.py``'s."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from ..errors import ChatloomError, UsageError
from . import cli, console, dataset_option, err_console, json_option, print_json
from .keys import json_object

# -- generate ---------------------------------------------------------------------------------


@cli.group("generate")
def generate() -> None:
    """LLM-assisted data through any OpenAI-compatible endpoint (OpenAI, vLLM, llama.cpp,
    'chatloom serve'): replies, Q&A in a persona's voice, self-chat between two personas.

    Every request is a row of the run's journal in the dataset: the same command run again after
    Ctrl+C, a crash or kill -9 sends only what is not done. A failed request stays failed with
    its error ('generate status RUN'), until --retry-failed.

    \b
    Example usage:
        chatloom endpoints add local http://127.0.0.1:8000/v1 --model my-run
        chatloom generate qa questions.txt --endpoint local --system "You are Ada, terse and kind."
        chatloom generate reply --tag needs-reply --endpoint local
        chatloom generate selfchat --persona ada.yaml --persona bob.yaml --topics topics.txt --endpoint local
        chatloom generate status
    """


def generation_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The options every generator shares: where to send, what to send, how hard, how far."""
    o = click.option
    for option in reversed([
        dataset_option,
        o("--endpoint", default=None, help="A saved endpoint ('chatloom endpoints add')."),
        o("--serve", "serve_target", default=None, metavar="RUN|MODEL",
          help="Start 'chatloom serve RUN|MODEL' on a free loopback port for this command, and stop it after."),
        o("--base-url", default=None, envvar="OPENAI_BASE_URL", help="An endpoint's base URL, unsaved; also $OPENAI_BASE_URL."),
        o("--model", default=None, help="The model (overrides the endpoint's)."),
        o("--key", "key_name", default=None, help="The key's name in the key store (overrides the endpoint's)."),
        o("--key-env", default=None, help="Read the key from this environment variable (default: the endpoint's key, else $OPENAI_API_KEY)."),
        o("--temperature", type=click.FloatRange(0, 2), default=None, help="Overrides the endpoint's default."),
        o("--max-tokens", type=click.IntRange(1), default=None, help="Longest reply; overrides the endpoint's default."),
        o("--seed", type=int, default=None, help="Sent to the endpoint (those that honour it repeat their replies)."),
        o("--extra-body", default=None, help="Extra request fields, as a JSON object (e.g. '{\"top_k\": 40}')."),
        o("--templates", "templates_dir", type=click.Path(file_okay=False), default=None,
          help="A folder of prompt templates that override the shipped ones (same file names)."),
        o("--add-tag", "tags", multiple=True, help="Another tag for what is written, besides 'generated' (repeatable)."),
        o("--run", "run_name", default=None, help="The run's name (default: KIND-HASH of the command's settings)."),
        o("--concurrency", type=click.IntRange(1, 1024), default=8, show_default=True, help="Requests in flight."),
        o("--rpm", type=click.FloatRange(0, min_open=True), default=None, help="At most this many requests a minute."),
        o("--tpm", type=click.FloatRange(0, min_open=True), default=None, help="At most this many tokens a minute (estimated)."),
        o("--timeout", type=click.FloatRange(0, min_open=True), default=120.0, show_default=True, help="Seconds a request may take."),
        o("--max-attempts", type=click.IntRange(1), default=6, show_default=True,
          help="Tries of a request on 429, 5xx, timeouts and dropped connections before it is failed."),
        o("--max-items", type=click.IntRange(0), default=None, help="Do at most this many items this time."),
        o("--budget-tokens", type=click.IntRange(1), default=None,
          help="Stop sending once the run has used this many tokens (the requests in flight may pass it)."),
        o("--retry-failed", is_flag=True, help="Send the run's failed requests again."),
        o("--dry-run", is_flag=True, help="Print the first requests and the estimated tokens and cost; send and write nothing."),
        o("--batch", is_flag=True, help="Write OpenAI Batch API files and submit them where the endpoint can; 'generate collect RUN' later."),
        o("--batch-dir", type=click.Path(file_okay=False), default=".", show_default=True, help="Where --batch writes its files."),
        json_option,
    ]):  # fmt: skip
        fn = option(fn)
    return fn


class _served:
    """``chatloom serve TARGET --port 0`` in a subprocess for the length of a run: its base URL and
    model name once it listens; stopped (SIGTERM) when the run ends, however it ends."""

    def __init__(self, target: str | None):
        self.target = target
        self.proc: Any = None

    def __enter__(self) -> tuple[str, str] | None:
        import re
        import subprocess
        import threading

        if self.target is None:
            return None
        self.proc = subprocess.Popen([sys.executable, "-m", "chatloom", "serve", self.target, "--port", "0"],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
        err: list[str] = []
        threading.Thread(target=lambda: err.extend(self.proc.stderr), daemon=True).start()
        for line in self.proc.stdout:
            found = re.search(r"serving (\S+) at (http://\S+/v1)", line)
            if found:
                threading.Thread(target=lambda: [None for _ in self.proc.stdout], daemon=True).start()
                return found.group(2), found.group(1)
        self.proc.wait()
        last = "".join(err).strip().splitlines()[-1:] or [f"exit {self.proc.returncode}"]
        raise ChatloomError(f"--serve {self.target}: the server did not start: {last[0].removeprefix('error: ')}")

    def __exit__(self, *exc: object) -> None:
        import subprocess

        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _settings(o: dict[str, Any], *, system: str | None = None, keep_system: bool = True, n: int = 1) -> Any:
    from ..generate.jobs import Settings
    from ..generate.settings import Endpoint, get_endpoint

    if o["serve_target"]:  # the server lives as long as the command (click closes it after)
        url, model = click.get_current_context().with_resource(_served(o["serve_target"]))
        o = {**o, "base_url": url, "model": o["model"] or model, "endpoint": None, "served_as": f"serve:{o['serve_target']}"}
    if o["endpoint"]:
        ep = get_endpoint(o["endpoint"])
        if o["base_url"] and o["base_url"] != os.environ.get("OPENAI_BASE_URL"):
            ep.base_url = o["base_url"]
    elif o["base_url"]:
        if not o["model"]:
            raise UsageError("--base-url needs --model (or save both: 'chatloom endpoints add NAME URL --model MODEL')")
        ep = Endpoint(o["base_url"].rstrip("/"), o["model"], name=o.get("served_as"))
    else:
        raise UsageError("say where to send: --endpoint NAME, or --base-url URL --model MODEL")
    if o["model"]:
        ep.model = o["model"]
    if o["key_name"]:
        ep.key, ep.key_env = o["key_name"], None
    if o["key_env"]:
        ep.key_env = o["key_env"]
    ep.api_key()  # a missing key is said now, before anything is planned
    return Settings(ep, o["templates_dir"], o["temperature"], o["max_tokens"], n, o["seed"], json_object(o["extra_body"], "--extra-body"),
                    system, keep_system, tuple(o["tags"]))  # fmt: skip


def _open(dataset: str, dry_run: bool) -> Any:
    """The dataset to write into (made when new); for a dry run, one that does not exist yet is
    not made: an empty one in memory stands in."""
    from ..store import Store

    if dry_run and not Path(dataset).exists():
        return Store(":memory:", create=True)
    return Store(dataset, create=True)


def _execute(job: Any, store: Any, o: dict[str, Any]) -> None:
    """Plan the run, then a dry run, a batch, or the requests; print how it went."""
    import asyncio

    from ..generate.api import estimate, generate, prepare
    from ..generate.client import Limits

    plan = prepare(store, job, run=o["run_name"], retry_failed=o["retry_failed"], max_items=o["max_items"], dry_run=o["dry_run"])
    skipped = getattr(job, "skipped", 0)
    if o["dry_run"]:
        _print_estimate(estimate(job, plan), plan, o["as_json"])
        return
    if o["batch"]:
        _submit_batch(job, store, plan, Path(o["batch_dir"]), o["as_json"])
        return
    limits = Limits(
        concurrency=o["concurrency"], rpm=o["rpm"], tpm=o["tpm"], timeout=o["timeout"], max_attempts=o["max_attempts"]
    )
    with _progress(f"{plan.run}", len(plan.todo), o["as_json"]) as update:
        stats = asyncio.run(generate(store, job, plan, limits, budget_tokens=o["budget_tokens"], retry_failed=o["retry_failed"],
                                     on_update=update))  # fmt: skip
    counts = store.gen_counts(plan.run)
    failed_items = plan.failed + stats.failed
    result = {"run": plan.run, "items": len(plan.items), "done_before": plan.done, "done": stats.done, "failed": stats.failed,
              "failed_total": failed_items, "left": stats.left, "in_batch": plan.in_batch, "skipped": skipped,
              "requests": stats.requests, "retries": stats.retries, "tokens": stats.tokens, "seconds": round(stats.seconds, 3),
              "stopped": stats.stopped, "journal": counts}  # fmt: skip
    if o["as_json"]:
        print_json(result)
    else:
        rate = stats.done / stats.seconds if stats.seconds > 0 else 0.0
        click.echo(f"run {plan.run}: {stats.done:,} done now ({plan.done:,} before), {stats.failed:,} failed, {stats.left:,} left; "
                   f"{stats.requests:,} requests ({stats.retries:,} retried), {stats.tokens:,} tokens in {stats.seconds:.1f} s "
                   f"({rate:.1f} items/s)")  # fmt: skip
        if getattr(job, "missing", 0):
            click.echo(f"{job.missing:,} conversations are no longer in the dataset (deleted since): left out")
        if skipped:
            click.echo(
                f"{skipped:,} conversations had nothing to {'fill' if getattr(job, 'mode', '') == 'fill' else 'regenerate'}"
            )
        if plan.counts.stale_done:
            click.echo(f"note: {plan.counts.stale_done:,} done requests were made with a different prompt (the input or a template "
                       "changed); they are kept — give another --run NAME to make them again")  # fmt: skip
        if failed_items:
            click.echo(f"{failed_items:,} items failed: 'chatloom generate status {plan.run}' lists them; "
                       "run again with --retry-failed to retry them")  # fmt: skip
        if stats.stopped == "budget":
            click.echo(f"stopped: the token budget is spent; {stats.left:,} items left (pending)")
    if stats.stopped == "interrupted":
        click.echo("interrupted: what was done is kept; run the same command again to finish", err=True)
        raise click.exceptions.Exit(130)
    if failed_items:
        raise click.exceptions.Exit(1)


class _progress:
    """A progress bar on a terminal: items done of all, items/s, tokens/s, failures, ETA."""

    def __init__(self, description: str, total: int, quiet: bool):
        self.description, self.total, self.quiet = description, total, quiet
        self.progress: Any = None

    def __enter__(self) -> Callable[[Any], None]:
        if self.quiet or not err_console.is_terminal or not self.total:
            return lambda stats: None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[rates]}"), TimeRemainingColumn(), console=err_console, transient=True)  # fmt: skip
        self.progress.__enter__()
        task = self.progress.add_task(self.description, total=self.total, rates="")

        def update(stats: Any) -> None:
            s = max(stats.seconds, 1e-9)
            rates = f"{(stats.done + stats.failed) / s:.1f} items/s · {stats.tokens / s:,.0f} tok/s · {stats.failed} failed"
            self.progress.update(task, completed=stats.done + stats.failed, rates=rates)

        return update

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.__exit__(*exc)


def _print_estimate(est: dict[str, Any], plan: Any, as_json: bool) -> None:
    if as_json:
        print_json(est)
        return
    for i, request in enumerate(est["first_requests"], 1):
        console.print(f"[bold]request {i}[/bold] ({request['model']})")
        for m in request["messages"]:
            console.print(f"  [dim]{m['role']}:[/dim] ", end="")
            console.print(str(m.get("content") or ""), markup=False, highlight=False)
    cost = est["max_cost_usd"]
    price = est["price_per_million"]
    click.echo(f"run {est['run']}: {est['items']:,} items to do ({plan.done:,} done before), {est['requests']:,} requests; "
               f"prompts ≈ {est['prompt_tokens']:,} tokens, replies ≤ {est['max_output_tokens']:,} tokens")  # fmt: skip
    if cost is None:
        click.echo("cost: no price for this model ('chatloom endpoints price MODEL --input USD --output USD' sets one)")
    else:
        click.echo(f"cost ≤ ${cost:,.4f} (at ${price['input']}/M prompt, ${price['output']}/M reply tokens)")
    click.echo("dry run: nothing was sent")


def _submit_batch(job: Any, store: Any, plan: Any, folder: Path, as_json: bool) -> None:
    from ..generate.batch import submit, write_files

    if not plan.todo:
        click.echo(f"run {plan.run}: nothing to submit ({plan.done:,} done, {plan.in_batch:,} in a batch)")
        return
    files = write_files(job, plan, folder)
    ids = submit(store, job, plan.run, files)
    if as_json:
        print_json({"run": plan.run, "files": [str(f) for f in files], "batches": ids, "requests": len(plan.todo)})
        return
    for f in files:
        click.echo(f"wrote {f}")
    if ids is None:
        click.echo(f"{job.settings.endpoint.base_url} has no batch API (/v1/batches): run the file elsewhere, e.g.\n"
                   f"  vllm run-batch -i {files[0]} -o {plan.run}.out.jsonl --model {job.settings.endpoint.model}\n"
                   f"then: chatloom generate collect {plan.run} --file {plan.run}.out.jsonl")  # fmt: skip
    else:
        click.echo(f"submitted {len(plan.todo):,} requests as batch {', '.join(ids)}; "
                   f"'chatloom generate collect {plan.run}' fetches the results when it is done")  # fmt: skip


@generate.command("qa")
@click.argument("questions", type=click.Path(dir_okay=False))
@click.option(
    "--question",
    "question_field",
    default=None,
    help="The question's field (JSONL, CSV); default: question, prompt, instruction, …",
)
@click.option(
    "--answers",
    "answers_field",
    default=None,
    help="A field with short answers to rewrite into full replies in the persona's voice.",
)
@click.option("--system", default=None, help="The persona's system prompt, or a file holding it.")
@click.option("--no-system-in-data", is_flag=True, help="Do not keep the system prompt in the conversations written.")
@click.option(
    "--n",
    "n",
    type=click.IntRange(1, 16),
    default=1,
    show_default=True,
    help="Replies per question (the rest kept as alternatives).",
)
@generation_options
def generate_qa(questions: str, question_field: str | None, answers_field: str | None, system: str | None, no_system_in_data: bool,
                n: int, dataset: str, **o: Any) -> None:  # fmt: skip
    """Answer each question of QUESTIONS (JSONL, CSV, or one per line) in a persona's voice, or
    rewrite each given short answer into a full reply (--answers FIELD): one conversation each.

    \b
    Example usage:
        chatloom generate qa questions.txt --endpoint local --system persona.txt
        chatloom generate qa squad.jsonl --answers answer --endpoint openai --dry-run
        chatloom generate qa q.csv --base-url http://127.0.0.1:8000/v1 --model my-run --concurrency 16
        chatloom generate qa questions.txt --serve runs/my-run --max-tokens 60   # serves the run for this command
    """
    from ..generate.inputs import read_questions, read_text_or_file
    from ..generate.jobs import QAJob

    path = Path(questions)
    qs = read_questions(path, question=question_field, answers=answers_field)
    settings = _settings(o, system=read_text_or_file(system), keep_system=not no_system_in_data, n=n)
    job = QAJob(settings, qs, path, fields={"question": question_field, "answers": answers_field})
    with _open(dataset, o["dry_run"]) as store:
        _execute(job, store, o)


@generate.command("reply")
@click.option("--ids", default=None, help="These conversations (comma-separated ids).")
@click.option("--tag", "with_tag", default=None, help="The conversations with this tag.")
@click.option("--search", default=None, help="The conversations a full-text search finds.")
@click.option("--all", "every", is_flag=True, help="Every conversation of the dataset.")
@click.option(
    "--mode",
    type=click.Choice(["fill", "regenerate"]),
    default="fill",
    show_default=True,
    help="fill: write the missing last assistant turn; regenerate: write chosen assistant turns anew (the old text stays in the history).",
)
@click.option("--turns", default="last", show_default=True, help="regenerate: last, all, or message indexes (1,3).")
@click.option("--system", default=None, help="A system prompt (or a file) sent in place of the conversation's own.")
@click.option(
    "--n", "n", type=click.IntRange(1, 16), default=1, show_default=True, help="Replies per turn (the rest kept as alternatives)."
)
@generation_options
def generate_reply(ids: str | None, with_tag: str | None, search: str | None, every: bool, mode: str, turns: str, system: str | None, n: int, dataset: str,
                   **o: Any) -> None:  # fmt: skip
    """Fill the missing last assistant turn of conversations, or regenerate chosen assistant
    turns, with each conversation's own tools. Pick them with --ids, --tag, --search (--tag and
    --search together: the matches with the tag) or --all.

    \b
    Example usage:
        chatloom generate reply --search "pizza" --endpoint local
        chatloom generate reply --tag needs-reply --endpoint local --add-tag filled
        chatloom generate reply --ids chitchat:abc,chitchat:def --mode regenerate --turns all --endpoint local
        chatloom generate reply --all --endpoint openai --dry-run
    """
    from ..generate.inputs import read_text_or_file
    from ..generate.jobs import ReplyJob
    from ..store import Store

    if turns not in ("last", "all") and not all(t.strip().isdigit() for t in turns.split(",")):
        raise UsageError(f"--turns {turns!r}: last, all, or message indexes such as 1,3")
    picked = [x for x in (ids, with_tag or search, every) if x]
    if len(picked) != 1:
        raise UsageError("pick the conversations with one of --ids, --tag/--search or --all")
    settings = _settings(o, system=read_text_or_file(system), n=n)
    with Store(dataset) as store:
        if ids:
            chosen = [i.strip() for i in ids.split(",") if i.strip()]
            for i in chosen:
                store.entry(i)  # an unknown id is said now
            selection: dict[str, Any] = {"ids": chosen}
        elif search:
            chosen = [s.id for s in store.search(search, tag=with_tag, limit=None)]
            selection = {"search": search, "tag": with_tag}
        elif with_tag:
            chosen = store.ids(tag=with_tag)
            selection = {"tag": with_tag}
        else:
            chosen = store.ids()
            selection = {"all": True}
        job = ReplyJob(settings, store, chosen, mode=mode, turns=turns, selection=selection)
        _execute(job, store, o)


def _turn_range(value: str) -> tuple[int, int]:
    lo, sep, hi = value.partition("..")
    try:
        a, b = int(lo), int(hi if sep else lo)
    except ValueError:
        raise UsageError(f"--turns {value!r}: a number or a range such as 6..12") from None
    if a < 1 or b < a:
        raise UsageError(f"--turns {value!r}: a range from 1 up, such as 6..12")
    return a, b


@generate.command("selfchat")
@click.option(
    "--persona",
    "personas",
    multiple=True,
    required=True,
    type=click.Path(dir_okay=False),
    help="A persona file (YAML: name, description, style, system); give two. The first opens.",
)
@click.option(
    "--topics", required=True, type=click.Path(dir_okay=False), help="Seed topics: one per line, or JSONL with 'topic'."
)
@click.option("--turns", default="6..12", show_default=True, help="Lines per conversation: N or LO..HI (drawn per conversation).")
@click.option("--per-topic", type=click.IntRange(1), default=1, show_default=True, help="Conversations per topic.")
@click.option(
    "--assistant", "assistant_name", default=None, help="The persona whose lines become the assistant's (default: the second)."
)
@click.option("--no-system-in-data", is_flag=True, help="Do not keep the assistant persona's system prompt in the conversations.")
@generation_options
def generate_selfchat(personas: tuple[str, ...], topics: str, turns: str, per_topic: int, assistant_name: str | None,
                      no_system_in_data: bool, dataset: str, **o: Any) -> None:  # fmt: skip
    """Two personas talk about each seed topic. A conversation ends at its drawn number of lines,
    or earlier when one says goodbye or repeats itself. Each line is one request in the journal,
    so a stopped conversation goes on from its last line.

    \b
    Example usage:
        chatloom generate selfchat --persona ada.yaml --persona bob.yaml --topics topics.txt --endpoint local
        chatloom generate selfchat --persona a.yaml --persona b.yaml --topics t.txt --turns 4..8 --assistant Bob --endpoint local
    """
    from ..generate.inputs import read_persona, read_topics
    from ..generate.jobs import SelfChatJob

    if len(personas) != 2:
        raise UsageError(f"give two --persona files, not {len(personas)}")
    if o["batch"]:
        raise UsageError("--batch cannot run a self-chat: each line waits for the one before")
    pair = (read_persona(Path(personas[0])), read_persona(Path(personas[1])))
    names = [p.name for p in pair]
    if assistant_name is not None and assistant_name not in names:
        raise UsageError(f"--assistant {assistant_name!r}: not a persona's name ({', '.join(names)})")
    assistant = 1 if assistant_name is None else names.index(assistant_name)
    settings = _settings(o, keep_system=not no_system_in_data)
    job = SelfChatJob(settings, pair, read_topics(Path(topics)), turns=_turn_range(turns), per_topic=per_topic, assistant=assistant,
                      seed=o["seed"] or 0, topics_file=Path(topics).name)  # fmt: skip
    with _open(dataset, o["dry_run"]) as store:
        _execute(job, store, o)


@generate.command("status")
@click.argument("run", required=False)
@dataset_option
@json_option
def generate_status(run: str | None, dataset: str, as_json: bool) -> None:
    """The generation runs of the dataset, or where RUN stands: requests by status, items, tokens,
    cost, and every failed request with its error.

    \b
    Example usage:
        chatloom generate status
        chatloom generate status qa-1a2b3c4d --json
    """
    from ..generate.api import status
    from ..store import Store

    with Store(dataset) as store:
        if run is None:
            runs = store.gen_runs()
            if as_json:
                print_json(runs)
                return
            if not runs:
                click.echo("no generation runs in this dataset")
                return
            table = Table("run", "kind", "done", "pending", "submitted", "failed", "updated", box=None, header_style="bold")
            for r in runs:
                table.add_row(
                    r["run"],
                    r["kind"],
                    f"{r['done']:,}",
                    f"{r['pending']:,}",
                    f"{r['submitted']:,}",
                    f"{r['failed']:,}",
                    r["updated_at"],
                )
            console.print(table)
            return
        st = status(store, run)
    if as_json:
        print_json(st)
        return
    ep = st["endpoint"]
    click.echo(f"run {run} ({st['kind']}): {ep.get('model')} at {ep.get('base_url')}")
    items, req = st["items"], st["requests"]
    click.echo(
        f"items: {items['done']:,} done, {items['pending']:,} pending, {items['submitted']:,} in a batch, {items['failed']:,} failed"
    )
    click.echo(
        f"requests: {req['done']:,} done, {req['pending']:,} pending, {req['submitted']:,} submitted, {req['failed']:,} failed"
    )
    usage = st["usage"]
    cost = f"; ≈ ${st['cost_usd']:,.4f}" if st["cost_usd"] is not None else ""
    click.echo(f"tokens: {usage['prompt_tokens']:,} prompt + {usage['completion_tokens']:,} reply{cost}")
    if st["batches"]:
        click.echo(f"batches: {', '.join(st['batches'])} ('chatloom generate collect {run}')")
    if st["failed"]:
        table = Table("request", "attempts", "error", box=None, header_style="bold")
        for f in st["failed"]:
            table.add_row(f["key"], str(f["attempts"]), f["error"] or "")
        console.print(table, markup=False)


@generate.command("collect")
@click.argument("run")
@click.option(
    "--file",
    "results",
    type=click.Path(dir_okay=False),
    default=None,
    help="Read the results from this file (e.g. vllm run-batch's output) instead of the endpoint's batches.",
)
@dataset_option
@json_option
def generate_collect(run: str, results: str | None, dataset: str, as_json: bool) -> None:
    """Fetch the results of RUN's batches ('generate … --batch') into the dataset: each reply is
    written as the run would have; a failed line, or one missing from a finished batch, is
    failed with why.

    \b
    Example usage:
        chatloom generate collect qa-1a2b3c4d
        chatloom generate collect qa-1a2b3c4d --file qa-1a2b3c4d.out.jsonl
    """
    from ..generate.batch import collect
    from ..store import Store

    with Store(dataset) as store:
        out = collect(store, run, results=Path(results) if results else None)
    if as_json:
        print_json({"run": run, "done": out.done, "failed": out.failed, "waiting": out.waiting})
    else:
        click.echo(f"run {run}: {out.done:,} collected, {out.failed:,} failed")
        for batch, state in out.waiting.items():
            click.echo(f"batch {batch} is {state}: collect again later")
    if out.failed:
        raise click.exceptions.Exit(1)


__all__ = ["generate"]
