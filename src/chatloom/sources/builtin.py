from ..hookspecs import hookimpl
from .chatgpt import ChatGPTSource
from .corpora import ChatterbotSource, ChitchatSource
from .discord import DiscordSource
from .kajiwoto import KajiwotoSource
from .openai import OpenAISource
from .records import AlpacaSource, LimaSource, LlamaFactorySource, ShareGPTSource
from .telegram import TelegramSource
from .text import TextSource
from .whatsapp import WhatsAppSource

# Detection tries these in order: the formats that are special cases of others come first
# (LIMA-GUI and LLaMA-Factory records also have "messages", as OpenAI's do).
BUILTIN = (
    DiscordSource, TelegramSource, ChatGPTSource, ChitchatSource, ChatterbotSource, LimaSource,
    LlamaFactorySource, ShareGPTSource, AlpacaSource, OpenAISource, KajiwotoSource, WhatsAppSource, TextSource,
)  # fmt: skip


@hookimpl
def register_sources(register):
    for cls in BUILTIN:
        register(cls)
