"""Tables: ``csv`` (one row per message), ``parquet`` and ``hf`` (a ``datasets`` folder).

``parquet`` and ``hf`` hold the ``openai`` shape as typed columns: ``messages`` is a list of
``{role, content, name, tool_calls, tool_call_id, train, meta}`` structs (a tool call is
``{id, type, function: {name, arguments}}``, ``meta`` a JSON string), ``tools`` a JSON string, and
``id, title, language, tags, source, meta, created_at, updated_at`` beside them (``meta=False``
leaves these out). Both are written in batches of ``BATCH`` conversations (the ``batch`` option),
one Parquet row group each, so memory stays flat.
"""

from __future__ import annotations

import functools
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import orjson

from ..model import Conversation, Message
from .base import TOOL_CALLS, TOOL_SCHEMAS, Format, RowsFormat, WriteReport, train_flags
from .openai import OpenAIFormat

BATCH = 1024  # conversations per row group
CSV_COLUMNS = ("conversation_id", "turn", "role", "name", "content")


class CSVFormat(RowsFormat):
    name = "csv"
    summary = "CSV with a header, one row per message: conversation_id, turn, role, name, content"
    header = CSV_COLUMNS

    def rows(self, conv: Conversation, dropped: Counter[str]) -> Iterator[tuple[Any, ...]]:
        for turn, m in enumerate(conv.messages):
            if m.tool_calls:
                dropped[TOOL_CALLS] += len(m.tool_calls)
            yield (conv.id or "", turn, m.role, m.name or "", m.content)
        if conv.tools:
            dropped[TOOL_SCHEMAS] += len(conv.tools)
        train_flags(conv.messages, dropped)


# -- Arrow: parquet and hf --------------------------------------------------------------------------


@functools.cache
def arrow_schema(meta: bool = True) -> Any:
    import pyarrow as pa

    string = pa.string()
    call = pa.struct([("id", string), ("type", string), ("function", pa.struct([("name", string), ("arguments", string)]))])
    message = pa.struct([("role", string), ("content", string), ("name", string), ("tool_calls", pa.list_(call)),
                         ("tool_call_id", string), ("train", pa.bool_()), ("meta", string)])  # fmt: skip
    fields = [("messages", pa.list_(message)), ("tools", string)]
    if meta:
        fields = [("id", string), *fields, ("title", string), ("language", string), ("tags", pa.list_(string)),
                  ("source", string), ("meta", string), ("created_at", string), ("updated_at", string)]  # fmt: skip
    return pa.schema(fields)


def _json(value: Any) -> str | None:
    return orjson.dumps(value).decode() if value else None


def _call(call: dict[str, Any]) -> dict[str, Any]:
    fn = call.get("function") or {}
    args = fn.get("arguments", "")
    return {"id": call.get("id"), "type": call.get("type", "function"),
            "function": {"name": fn.get("name", ""), "arguments": args if isinstance(args, str) else orjson.dumps(args).decode()}}  # fmt: skip


def _message(m: Message) -> dict[str, Any]:
    return {"role": m.role, "content": m.content, "name": m.name, "tool_calls": [_call(c) for c in m.tool_calls] if m.tool_calls else None,
            "tool_call_id": m.tool_call_id, "train": m.train, "meta": _json(m.meta)}  # fmt: skip


def arrow_row(conv: Conversation, meta: bool = True) -> dict[str, Any]:
    row = {"messages": [_message(m) for m in conv.messages], "tools": _json(conv.tools)}
    if meta:
        row |= {"id": conv.id, "title": conv.title, "language": conv.language, "tags": conv.tags, "source": _json(conv.source),
                "meta": _json(conv.meta), "created_at": conv.created_at, "updated_at": conv.updated_at}  # fmt: skip
    return row


def from_arrow_row(row: dict[str, Any]) -> Conversation:
    """The conversation a ``parquet`` / ``hf`` row holds (the inverse of ``arrow_row``)."""
    messages = []
    for m in row["messages"]:
        fields = {k: v for k, v in m.items() if v is not None}
        if "meta" in fields:
            fields["meta"] = orjson.loads(fields["meta"])
        messages.append(Message(**fields))
    conv = Conversation(messages=messages, tools=orjson.loads(row["tools"]) if row.get("tools") else [])
    for key in ("id", "title", "language", "created_at", "updated_at"):
        setattr(conv, key, row.get(key))
    conv.tags = list(row.get("tags") or [])
    for key in ("source", "meta"):
        if row.get(key):
            setattr(conv, key, orjson.loads(row[key]))
    return conv


def arrow_batches(convs: Iterable[Conversation], report: WriteReport, meta: bool = True, size: int = BATCH) -> Iterator[Any]:
    """Record batches of ``size`` conversations (``report.written`` counts them)."""
    import pyarrow as pa

    schema = arrow_schema(meta)
    rows = []
    for conv in convs:
        rows.append(arrow_row(conv, meta))
        if len(rows) == size:
            yield pa.RecordBatch.from_pylist(rows, schema=schema)
            report.written += len(rows)
            rows = []
    if rows:
        yield pa.RecordBatch.from_pylist(rows, schema=schema)
        report.written += len(rows)


class ParquetFormat(Format):
    name = "parquet"
    summary = "Parquet with OpenAI-shaped columns (messages as structs, tools as JSON) and metadata"
    extension = ".parquet"
    llamafactory = OpenAIFormat.llamafactory
    axolotl = OpenAIFormat.axolotl

    def write(self, convs: Iterable[Conversation], fp: IO[bytes]) -> WriteReport:
        import pyarrow.parquet as pq

        report = WriteReport()
        meta = self.options.get("meta", True)
        with pq.ParquetWriter(fp, arrow_schema(meta)) as writer:  # one row group per batch
            for batch in arrow_batches(convs, report, meta, self.options.get("batch") or BATCH):
                writer.write_batch(batch)
        return report


class HFFormat(Format):
    name = "hf"
    summary = "A Hugging Face datasets folder (save_to_disk; a DatasetDict with --split), columns as parquet's"
    extension = ""
    folder = True
    llamafactory = ParquetFormat.llamafactory
    axolotl = ParquetFormat.axolotl

    def write_folder(self, parts: dict[str, Iterable[Conversation]], folder: Path) -> dict[str, WriteReport]:
        """Each part is streamed into an Arrow file, memory-mapped by ``Dataset.from_file`` and
        saved as one shard (so LLaMA-Factory can name it); a split saves a DatasetDict with
        ``train`` and ``validation``."""
        import datasets
        import pyarrow as pa

        meta = self.options.get("meta", True)
        reports: dict[str, WriteReport] = {}
        loaded = {}
        scratch = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".arrow", dir=folder.parent))
        quiet = datasets.utils.are_progress_bars_disabled()
        datasets.disable_progress_bars()
        try:
            for part, convs in parts.items():
                report = reports[part] = WriteReport()
                path = scratch / f"{part}.arrow"
                with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, arrow_schema(meta)) as writer:
                    for batch in arrow_batches(convs, report, meta):
                        writer.write_batch(batch)
                loaded[HF_SPLITS.get(part, part)] = datasets.Dataset.from_file(str(path))
            if list(loaded) == ["data"]:
                loaded["data"].save_to_disk(str(folder), num_shards=1)
            else:
                datasets.DatasetDict(loaded).save_to_disk(str(folder), num_shards=dict.fromkeys(loaded, 1))
        finally:
            if not quiet:
                datasets.enable_progress_bars()
            loaded.clear()
            shutil.rmtree(scratch, ignore_errors=True)
        return reports

    def part_path(self, folder: Path, part: str) -> Path:
        return folder if part == "data" else folder / HF_SPLITS.get(part, part)


HF_SPLITS = {"val": "validation"}  # chatloom's split names → the Hugging Face ones
