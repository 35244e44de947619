from ..hookspecs import hookimpl
from .corpora import ChatterbotSource, ChitchatSource
from .openai import OpenAISource


@hookimpl
def register_sources(register):
    for cls in (OpenAISource, ChitchatSource, ChatterbotSource):
        register(cls)
