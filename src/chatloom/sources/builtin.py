from ..hookspecs import hookimpl
from .corpora import ChatterbotSource, ChitchatSource
from .discord import DiscordSource
from .openai import OpenAISource


@hookimpl
def register_sources(register):
    for cls in (OpenAISource, ChitchatSource, ChatterbotSource, DiscordSource):
        register(cls)
