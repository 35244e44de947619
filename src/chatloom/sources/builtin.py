from ..hookspecs import hookimpl
from .corpora import ChatterbotSource, ChitchatSource
from .discord import DiscordSource
from .chatgpt import ChatGPTSource
from .openai import OpenAISource
from .telegram import TelegramSource
from .whatsapp import WhatsAppSource


@hookimpl
def register_sources(register):
    for cls in (OpenAISource, ChitchatSource, ChatterbotSource, DiscordSource, WhatsAppSource, TelegramSource, ChatGPTSource):
        register(cls)
