"""``chatloom import`` as a library: files in, rows in the store out, journaled and resumable.

    from chatloom.importing import ImportOptions, import_paths

    results = import_paths("chatloom.db", ["chats.jsonl", "WhatsApp.txt"], ImportOptions(me=("Ana",)))
    for result in results:
        print(result.file, result.counts.added, result.error)

- ``files.py``: ``plan`` — the paths resolved to files, each with its importer, checked up front;
  a plan is a context manager that removes its temporary files (unzipped members, UTF-8 copies);
- ``run.py``: ``import_paths`` (the whole way) and ``import_files`` (journal, results);
- ``worker.py``: the process that parses a large file while this one writes.

The importer options are ``ImportOptions`` (``sources/options.py``: importers read them).
"""

from ..sources.options import ImportOptions
from .files import Plan, Staging, plan
from .run import FileResult, ImportResult, check_me, import_files, import_paths

__all__ = ["FileResult", "ImportOptions", "ImportResult", "Plan", "Staging", "check_me", "import_files", "import_paths", "plan"]
