from ..hookspecs import hookimpl
from .openai import OpenAIFormat


@hookimpl
def register_formats(register):
    register(OpenAIFormat)
