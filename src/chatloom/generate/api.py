"""``chatloom generate`` as a library: name the run, plan it into the journal, run what is not
done, and say where it stands.

    job = QAJob(Settings(endpoint), read_questions(path), path)
    plan = prepare(store, job)                       # the run, its rows; what is left to do
    stats = asyncio.run(generate(store, job, plan, Limits(concurrency=8)))
    status(store, plan.run)                          # counts, usage, the failed requests

The run's name is ``KIND-HASH`` of what the command asks (the endpoint's name or URL, the model, the
parameters, the templates, the input's name: not its contents), so the same command run again
finds its journal and sends only what is not done; an input that grew adds only its new items.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import ChatloomError
from ..store import PlanCounts, Store
from .client import Client, Limits
from .jobs import Job, digest_of
from .runner import Context, Item, Stats, run_job
from .settings import price_of


@dataclass
class Plan:
    """A run as planned: its name, its items, those left to do this time, and what the journal
    already had."""

    run: str
    items: list[Item]
    todo: list[Item]
    done: int = 0
    failed: int = 0
    in_batch: int = 0
    counts: PlanCounts = field(default_factory=PlanCounts)


def run_name(job: Job) -> str:
    s = job.settings
    ep = s.endpoint
    # a saved endpoint by its name (its URL may move; 'serve:RUN' is a fresh port each time)
    return f"{job.kind}-" + digest_of(job.kind, ep.name or ep.base_url, ep.model, s.parameters(), s.system, s.keep_system,
                                      sorted(s.tags), job.identity())[:8]  # fmt: skip


def run_params(job: Job) -> dict[str, Any]:
    """What a run records of itself (no key: the endpoint's key *name* at most), enough to make
    its job again (``rebuild``)."""
    return {**job.settings.record(), "input": job.identity(), "rebuild": job.rebuild()}


def rebuild(store: Store, run: str) -> Job:
    """Run ``run``'s job, made again from its record (its input read again)."""
    from pathlib import Path

    from .inputs import read_questions
    from .jobs import QAJob, ReplyJob, Settings

    kind, params = store.gen_run_info(run)
    settings = Settings.from_record(params)
    args = params.get("rebuild", {})
    if kind == "qa":
        path = Path(args["path"])
        job: Job = QAJob(settings, read_questions(path, question=args.get("question"), answers=args.get("answers")), path,
                         fields={k: args.get(k) for k in ("question", "answers")})  # fmt: skip
    elif kind == "reply":
        job = ReplyJob(settings, store, args["ids"], mode=args["mode"], turns=args["turns"], selection=args.get("selection"))
    else:
        raise ChatloomError(f"run {run} is a {kind} run: it has no batches to collect")
    job.run = run
    return job


def prepare(store: Store, job: Job, *, run: str | None = None, retry_failed: bool = False, max_items: int | None = None,
            dry_run: bool = False) -> Plan:  # fmt: skip
    """Make (or find) the run, add the requests it lacks to the journal, and pick the items to do:
    not done, not in a batch, not failed unless ``retry_failed``; the first ``max_items``. With
    ``dry_run`` nothing is written: the journal is only read."""
    name = run or run_name(job)
    job.run = name
    if not dry_run:
        store.gen_run(name, job.kind, run_params(job))
    items: list[Item] = []
    keys: set[str] = set()
    for item in job.items():  # one item per key (an input line given twice is keyed apart by the job)
        if item.key not in keys:
            keys.add(item.key)
            items.append(item)
    counts = PlanCounts()
    if job.batchable and not dry_run:  # one request per item: all of them planned now
        counts = store.gen_plan(name, (job.planned(item) for item in items))
    states = store.gen_item_states(name)
    plan = Plan(name, items, [], counts=counts)
    for item in items:
        state = states.get(item.key, "pending")
        if state == "done":
            plan.done += 1
        elif state == "submitted":
            plan.in_batch += 1
        elif state == "failed" and not retry_failed:
            plan.failed += 1
        else:
            plan.todo.append(item)
    if max_items is not None:
        plan.todo = plan.todo[:max_items]
    return plan


async def generate(store: Store, job: Job, plan: Plan, limits: Limits, *, budget_tokens: int | None = None, retry_failed: bool = False,
                   on_update: Any = None) -> Stats:  # fmt: skip
    """Run ``plan.todo``; the stats of this run (done, failed, requests, tokens, why it stopped)."""
    stats = Stats(left=len(plan.todo))
    ctx = Context(store, plan.run, None, stats, budget_tokens=budget_tokens, retry_failed=retry_failed,
                  on_update=on_update or (lambda s: None))  # fmt: skip
    client = ctx.client = Client(job.settings.endpoint, limits, stop=ctx.stop) if plan.todo else None
    stats = await run_job(job, plan.todo, ctx, limits.concurrency)
    if client is not None:
        stats.retries = client.retried
    return stats


def estimate(job: Job, plan: Plan, *, show: int = 3) -> dict[str, Any]:
    """``--dry-run``: the first rendered requests, and the tokens and cost of what is left, counted
    with o200k_base (the prompts; the replies at most ``max_tokens`` each, 256 when unbounded)."""
    from ..tokens.tokenizer import get_tokenizer

    tok = get_tokenizer("o200k_base")
    s = job.settings
    max_tokens = s.parameters().get("max_tokens") or 256
    firsts: list[dict[str, Any]] = []
    prompt = output = 0
    requests = 0
    for item in plan.todo:
        first = job.planned(item)
        if len(firsts) < show:
            firsts.append(first.request)
        counted = sum(c + 4 for c in tok.count_batch([str(m.get("content") or "") for m in first.request["messages"]]))
        turns = item.data[1] if job.kind == "selfchat" else 1
        # a self-chat's later lines see the earlier ones: each adds at most max_tokens to the next prompts
        prompt += counted * turns + (max_tokens * turns * (turns - 1)) // 2
        output += max_tokens * s.n * turns
        requests += turns
    price = price_of(s.endpoint)
    cost = None if price is None else (prompt * price["input"] + output * price["output"]) / 1e6
    return {"run": plan.run, "items": len(plan.todo), "requests": requests, "prompt_tokens": prompt, "max_output_tokens": output,
            "price_per_million": price, "max_cost_usd": cost, "first_requests": firsts}  # fmt: skip


def status(store: Store, run: str) -> dict[str, Any]:
    """Where run ``run`` stands: requests by status, items done, usage, and the failed and
    pending requests with their errors."""
    kind, params = store.gen_run_info(run)
    rows = store.gen_rows(run)
    items = store.gen_item_states(run)
    usage = store.gen_usage(run)
    price = price_of_params(params)
    cost = (
        None if price is None else (usage["prompt_tokens"] * price["input"] + usage["completion_tokens"] * price["output"]) / 1e6
    )
    return {
        "run": run, "kind": kind, "endpoint": params.get("endpoint", {}), "parameters": params.get("parameters", {}),
        "requests": store.gen_counts(run),
        "items": {s: sum(1 for v in items.values() if v == s) for s in ("done", "pending", "submitted", "failed")},
        "usage": usage, "cost_usd": cost,
        "failed": [{"key": r.key, "item": r.item, "attempts": r.attempts, "error": r.error} for r in rows if r.status == "failed"],
        "batches": sorted({r.batch for r in rows if r.batch and r.status == "submitted"}),
    }  # fmt: skip


def price_of_params(params: dict[str, Any]) -> dict[str, float] | None:
    from .settings import Endpoint

    ep = params.get("endpoint") or {}
    if not ep.get("base_url") or not ep.get("model"):
        return None
    return price_of(Endpoint(**ep))
