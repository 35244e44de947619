"""The built-in transforms: each returns the changed conversation (None drops it) and counts what
it changed.

- ``cleanup.py``: ``cleanup`` (ftfy, whitespace)
- ``roles.py``: ``merge_turns``, ``fix_roles``
- ``pii.py``: ``pii`` (redact or drop personal data)
- ``prompts.py``: ``system_prompt``, ``persona`` (a task's prompts and names)
- ``truncate.py``: ``truncate``
- ``window.py``: ``window`` (several conversations for one: it runs its own loop)
"""
