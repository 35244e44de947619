"""The built-in filters: each answers ``keep(conv)`` with True or ``(False, reason)``.

- ``dedup.py``: ``exact_dedup``, ``near_dedup`` (dataset-wide; the MinHash engine is ``minhash.py``,
  its shingling ``shingles.py``)
- ``bounds.py``: ``turns``, ``tokens``
- ``structure.py``: ``regex``, ``structure``
- ``language.py``: ``language``
- ``phrases.py``: ``phrases`` (the shipped lists are ``phrase_lists/*.txt``)
- ``quality.py``: ``quality``
"""
