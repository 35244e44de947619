"""``chatloom import``: files in, rows in the store out, journaled and resumable.

    from chatloom.importing import import_paths

    with Store("chatloom.db", create=True) as store:
        for result in import_paths(store, ["chats.jsonl"]):
            print(result.file, result.counts.added)
"""

from .run import FileResult, Plan, check_me, display_name, import_files, import_paths, plan

__all__ = ["FileResult", "Plan", "check_me", "display_name", "import_files", "import_paths", "plan"]
