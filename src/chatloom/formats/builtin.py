from ..hookspecs import hookimpl
from .kajiwoto import KajiwotoFormat
from .openai import CompletionFormat, OpenAIFormat
from .records import AlpacaFormat, LimaFormat, OpenChatFormat, ShareGPTFormat
from .tables import CSVFormat, HFFormat, ParquetFormat
from .template import TemplateFormat
from .text import ChatMLFormat, MetharmeFormat, PygmalionFormat


@hookimpl
def register_formats(register):
    for cls in (
        OpenAIFormat, ShareGPTFormat, AlpacaFormat, ChatMLFormat, MetharmeFormat, PygmalionFormat, OpenChatFormat,
        CompletionFormat, TemplateFormat, KajiwotoFormat, CSVFormat, ParquetFormat, HFFormat, LimaFormat,
    ):  # fmt: skip
        register(cls)
