"""The studio: a web app over one dataset to read, edit and write chats by hand, with LLM help
(``chatloom studio``). See ``app.py`` for the server and its guards, ``api.py`` for the JSON API,
``assist.py`` for streaming generation, ``files.py`` for import and export, ``pages.py`` and ``templates/`` for the pages, and
``static/`` for the page scripts (ES modules of our own: no framework, no build step)."""

from .app import Config, create_app

__all__ = ["Config", "create_app"]
