"""Typed errors. Library code raises these; the CLI turns each into one line and exit code 2.

Every message says what is wrong and, where it can, how to fix it.
"""

from __future__ import annotations

from typing import Any


class ChatloomError(Exception):
    """Base class of every error chatloom reports to a user."""

    exit_code = 2

    def render(self, names: dict[str, str]) -> str:
        """The message with each parameter it names called as ``names`` says (see ``ParamError``);
        most messages name none."""
        return str(self)


class SourceError(ChatloomError):
    """Bad input: names the file and where in it (line number or JSON path)."""

    def __init__(self, message: str, *, file: str | None = None, where: str | int | None = None):
        self.message = message
        self.file = file
        self.where = where
        super().__init__(str(self))

    def __reduce__(self) -> tuple[Any, ...]:  # pickled whole (an import's worker process sends it)
        return (type(self), (self.message,), {"file": self.file, "where": self.where})

    def __str__(self) -> str:
        return self.render({})

    def render(self, names: dict[str, str]) -> str:
        return self.prefix() + self.text(names)

    def prefix(self) -> str:
        """``FILE:WHERE: `` (or less, as far as they are known)."""
        prefix = ""
        if self.file is not None:
            prefix = f"{self.file}:"
            if self.where is not None:
                prefix += f"{self.where}:"
            prefix += " "
        return prefix

    def text(self, names: dict[str, str]) -> str:
        """The message without the file and place."""
        return self.message


class StoreError(ChatloomError):
    """The dataset file cannot be opened, read or written."""


class NotFoundError(StoreError):
    """No conversation with that id."""


class ConflictError(StoreError):
    """An update was based on a revision that has since moved (another editor saved first)."""

    def __init__(self, conv_id: str, base: int, current: int):
        self.conv_id, self.base, self.current = conv_id, base, current
        super().__init__(
            f"{conv_id}: conflict: your change is based on revision {base}, but the dataset "
            f"holds revision {current}; reload it and apply your change again"
        )


class UsageError(ChatloomError):
    """A call that cannot work as given (an unknown format, tokenizer, option value)."""


class ParamError(UsageError):
    """A parameter's value cannot work. The message names parameters as ``{name}`` placeholders:
    the library shows them as its own parameter names (``split must be …``), and the CLI as the
    flags the user typed (``--val must be …``, see ``cli.ChatloomGroup``), so that no library
    message names a flag of a command it may not have been called from.

        raise ParamError("{split} must be a ratio in (0, 1) or a count ≥ 1, not {value}", value=split)
    """

    def __init__(self, template: str, **values: Any):
        self.template = template
        self.values = values
        super().__init__(self.render({}))

    def __reduce__(self) -> tuple[Any, ...]:
        return (_param_error, (type(self), self.template, self.values))

    def params(self) -> list[str]:
        """The parameters the message names, in order."""
        import string

        return [name for _, name, _, _ in string.Formatter().parse(self.template) if name and name not in self.values]

    def render(self, names: dict[str, str]) -> str:
        """The message with each parameter called as ``names`` says (else by its own name)."""
        fields = {p: names.get(p, p) for p in self.params()}
        return self.template.format(**fields, **self.values)


def _param_error(cls: type[ParamError], template: str, values: dict[str, Any]) -> ParamError:
    return cls(template, **values)


class SourceParamError(SourceError, ParamError):
    """Bad input whose fix names a parameter: a ``SourceError``'s file and place, a ``ParamError``'s
    ``{name}`` placeholders (``pass {date_format} dmy`` reads ``pass --date-format dmy`` on the
    command line and ``pass date_format dmy`` from the library or a recipe).

        raise SourceParamError("cannot tell …; pass {date_format} dmy or mdy", file=path)
    """

    def __init__(self, template: str, *, file: str | None = None, where: str | int | None = None, **values: Any):
        self.template, self.values = template, values
        self.file, self.where = file, where
        self.message = ParamError.render(self, {})
        Exception.__init__(self, str(self))  # not SourceError's: its super() is ParamError here

    def __reduce__(self) -> tuple[Any, ...]:
        return (_source_param_error, (type(self), self.template, self.values), {"file": self.file, "where": self.where})

    def render(self, names: dict[str, str]) -> str:
        return SourceError.render(self, names)

    def text(self, names: dict[str, str]) -> str:
        return ParamError.render(self, names)


def _source_param_error(cls: type[SourceParamError], template: str, values: dict[str, Any]) -> SourceParamError:
    return cls(template, **values)
