"""Whether a chat template renders every message's content and name as they are, read from its
syntax tree: then a layout's text is the template's render for any contents of its shape, and
tokenize need not render each conversation to check it (SmolLM2's template: 0.9 s of a worker's
3.8 M tokens).

    plain_contents("{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] }}{% endfor %}")  # True
    plain_contents("{% for m in messages %}{{ m['content'] | trim }}{% endfor %}")                                 # False

The answer is conservative: True only where every way a content or a name can reach the text is
one this module follows, and False at the first it does not (a filter, a method, a comparison, a
macro, a variable holding it, a block that captures its output, the whole message handed to
anything). A template it refuses is checked per conversation, as before. What it follows:

- *message values*: ``messages``, the targets of a ``for`` over one, variables set from one, and
  ``loop`` in such a ``for`` (its ``previtem``/``nextitem``). Of these only keys are read:
  ``role``, ``tool_calls``, ``tool_call_id`` and loop counters are part of the shape (``shape()``
  keys on them); ``content`` and ``name`` are *contents*; any other key is again a message value.
  A message value may also be iterated, assigned, tested for type or truthiness (its length is in
  the shape), measured with ``length``, narrowed by ``first``/``last``/``list``/``reverse``/
  ``selectattr``/``rejectattr``, or joined to another with ``+``;
- *contents* may only be written to the output as they are, alone or joined with ``+`` or ``~``
  (outside a macro and outside any block that captures or filters what it writes; the
  ``{% generation %}`` tag writes its body as it is), tested for their type, or, for a content
  (whose emptiness is in the shape, a name's is not), tested for truthiness in an ``if``.
"""

from __future__ import annotations

from typing import Any

SHAPE_KEYS = frozenset({"role", "tool_calls", "tool_call_id"})  # what shape() keys on besides emptiness and names
LOOP_KEYS = frozenset({"first", "last", "index", "index0", "revindex", "revindex0", "length", "depth", "depth0"})
CONTENT_KEYS = frozenset({"content", "name"})
TYPE_TESTS = frozenset({"defined", "undefined", "none", "string", "mapping", "iterable", "sequence", "boolean", "number",
                        "integer", "float", "callable"})
NARROWING = frozenset({"first", "last", "list", "reverse", "selectattr", "rejectattr"})

_M, _C, _S, _I = "message", "content", "shape", "indexed"  # _I: a message value at a key not known here
# the functions a message-by-message template may call: none keeps a state from one call to the
# next (a cycler's or a joiner's would carry from one message to the next)
STATELESS_CALLS = frozenset({"raise_exception", "range", "namespace", "dict"})
# what renders differently from one call to the next: a layout (cached by shape) would keep one
# render's value, where the check per conversation renders it again
UNSTEADY_CALLS = frozenset({"strftime_now", "lipsum", "cycler", "joiner"})
UNSTEADY_FILTERS = frozenset({"random", "shuffle"})


class _Refused(Exception):
    pass


def plain_contents(source: str) -> bool:
    """Whether the template ``source`` writes each content and name as they are (see the module)."""
    from . import _environment

    try:
        tree = _environment().parse(source)
    except Exception:  # noqa: BLE001  (a template that does not parse is refused elsewhere, with its error)
        return False
    try:
        _Reader(tree).check()
    except (_Refused, RecursionError):
        return False
    return True


class _Reader:
    def __init__(self, tree: Any):
        from jinja2 import nodes

        self.nodes = nodes
        self.tree = tree
        self.parent: dict[int, Any] = {}
        self.all: list[Any] = []
        stack = [tree]
        while stack:
            node = stack.pop()
            self.all.append(node)
            for child in node.iter_child_nodes():
                self.parent[id(child)] = node
                stack.append(child)
        self.messages = {"messages"}  # names that may hold a message (or a list of them)
        self._kinds: dict[int, str] = {}

    # -- what an expression may hold -----------------------------------------------------------

    def kind(self, node: Any) -> str:
        known = self._kinds.get(id(node))
        if known is None:
            known = self._kinds[id(node)] = self._kind(node)
        return known

    def _kind(self, node: Any) -> str:
        n = self.nodes
        if isinstance(node, n.Name):
            return _M if node.name in self.messages else _S
        if isinstance(node, (n.Getattr, n.Getitem)):
            base = self.kind(node.node)
            if base not in (_M, _I):
                return _S  # (a content's attribute is refused where it is read: check())
            if isinstance(node, n.Getitem) and isinstance(node.arg, (n.Slice, n.Const)) and not isinstance(node.arg.value if isinstance(node.arg, n.Const) else None, str):
                return base  # messages[0], messages[1:]
            key = node.attr if isinstance(node, n.Getattr) else (node.arg.value if isinstance(node.arg, n.Const) else None)
            if key is None:  # messages[i], or m[k]: a message, or any value of one ('con' ~ 'tent')
                return _I
            if key in CONTENT_KEYS:
                return _C
            if key in SHAPE_KEYS or (base == _M and isinstance(node.node, n.Name) and node.node.name == "loop" and key in LOOP_KEYS):
                return _S
            return base
        if isinstance(node, n.Filter) and node.node is not None and self.kind(node.node) == _M:
            return _S if node.name in ("length", "count") else _M
        if isinstance(node, (n.List, n.Tuple, n.Add, n.CondExpr)):
            kinds = {self.kind(c) for c in node.iter_child_nodes() if c is not getattr(node, "test", None)}
            return _M if _M in kinds else _S  # (a content inside is read where it is: check())
        return _S

    def _learn(self) -> bool:
        """Add the names that come to hold a message value; True when one was new."""
        n = self.nodes
        self._kinds.clear()
        before = len(self.messages)
        for node in self.all:
            if isinstance(node, n.For) and self.kind(node.iter) == _M:
                self.messages |= _names(node.target, n) | {"loop"}
            elif isinstance(node, n.Assign) and self.kind(node.node) == _M:
                self.messages |= _names(node.target, n)
            elif isinstance(node, n.With):
                for target, value in zip(node.targets, node.values):
                    if self.kind(value) == _M:
                        self.messages |= _names(target, n)
        return len(self.messages) > before

    # -- where each is read ----------------------------------------------------------------------

    def check(self) -> None:
        n = self.nodes
        while self._learn():
            pass
        self._kinds.clear()
        for node in self.all:
            if _beyond(node, n) or isinstance(node, n.EvalContextModifier) or (isinstance(node, n.Name) and node.name in ("self", "super")):
                raise _Refused  # ({% autoescape %} escapes what it writes; a block can be written again, through self)
            if isinstance(node, n.Const) and isinstance(node.value, str) and CONTENT_KEYS & set(node.value.split(".")):
                up = self.parent.get(id(node))
                if not (isinstance(up, n.Getitem) and up.arg is node):  # selectattr('content.0'), map(attribute='name'), .get('content')
                    raise _Refused
            if isinstance(node, n.Expr) and getattr(node, "ctx", "load") == "load":  # (a name assigned to is no read)
                kind = self.kind(node)
                if kind == _C:
                    self._content_read(node)
                elif kind == _M:
                    self._message_read(node)
                elif kind == _I:  # only read at a key: messages[i].role, messages[i].content
                    up = self.parent.get(id(node))
                    if not (isinstance(up, (n.Getattr, n.Getitem)) and up.node is node):
                        raise _Refused

    def _content_read(self, node: Any) -> None:
        n = self.nodes
        up = self.parent.get(id(node))
        if isinstance(up, n.Test) and up.node is node and up.name in TYPE_TESTS:
            return
        key = node.attr if isinstance(node, n.Getattr) else node.arg.value
        if key == "content" and self._truthiness(node):
            return
        at = node
        while isinstance(up, (n.Add, n.Concat)) or (isinstance(up, n.CondExpr) and up.test is not at):  # joined as text, or chosen
            at, up = up, self.parent.get(id(up))
        if isinstance(up, n.Output) and at in up.nodes and self._written(up):
            return
        raise _Refused

    def _message_read(self, node: Any) -> None:
        n = self.nodes
        up = self.parent.get(id(node))
        if isinstance(up, (n.Getattr, n.Getitem)) and up.node is node:
            return  # the key decides (kind)
        if isinstance(up, n.For) and up.iter is node:
            return
        if isinstance(up, n.Assign) and up.node is node:
            return
        if isinstance(up, n.With) and node in up.values:
            return
        if isinstance(up, n.Test) and up.node is node and up.name in TYPE_TESTS:
            return
        if isinstance(up, n.Filter) and up.node is node and (up.name in ("length", "count") or (
                up.name in NARROWING and all(isinstance(a, n.Const) for a in up.args) and not up.kwargs
                and up.dyn_args is None and up.dyn_kwargs is None)):
            return
        if isinstance(up, (n.List, n.Tuple, n.Add)) or (isinstance(up, n.CondExpr) and up.test is not node):
            return  # itself a message value, read where it is read
        if isinstance(up, n.Operand) and up.op in ("in", "notin") and up.expr is node:
            compare = self.parent.get(id(up))
            if (isinstance(compare, n.Compare) and isinstance(compare.expr, n.Const) and isinstance(compare.expr.value, str)
                    and len(compare.ops) == 1):  # fmt: skip  ('role' in m in messages: then m == a message)
                return  # 'tool_calls' in message: a key that is there or not, by the shape
        if self._truthiness(node):
            return
        raise _Refused

    def _truthiness(self, node: Any) -> bool:
        """Whether only the truth of ``node`` is used: the test of an ``if``, of an inline ``if``,
        or of a ``for``'s filter, alone or under ``not``, ``and``, ``or``."""
        n = self.nodes
        at, up = node, self.parent.get(id(node))
        while isinstance(up, (n.Not, n.And, n.Or)):
            at, up = up, self.parent.get(id(up))
        return isinstance(up, (n.If, n.CondExpr, n.For)) and getattr(up, "test", None) is at

    def _written(self, output: Any) -> bool:
        """Whether what ``output`` writes goes to the rendered text as it is: no macro, block
        assignment, filter block or call block (but ``{% generation %}``) around it."""
        n = self.nodes
        up = self.parent.get(id(output))
        while up is not None:
            if isinstance(up, (n.Macro, n.AssignBlock, n.FilterBlock)):
                return False
            if isinstance(up, n.CallBlock) and not _generation(up, n):
                return False
            up = self.parent.get(id(up))
        return True


def _names(target: Any, n: Any) -> set[str]:
    if isinstance(target, n.Name):
        return {target.name}
    if isinstance(target, n.NSRef):
        return {target.name}
    if isinstance(target, n.Tuple):
        return {name for item in target.items for name in _names(item, n)}
    return set()


def _beyond(node: Any, n: Any) -> bool:
    """What neither reader follows: another template (include, import, extends), a block (which
    can be written again, through ``self``), what renders differently each time (``UNSTEADY_*``),
    and a known function's name given another meaning (``{% set range = joiner('|') %}``)."""
    if isinstance(node, (n.Include, n.Import, n.FromImport, n.Extends, n.Block)):
        return True
    if isinstance(node, n.Name):
        return node.name in UNSTEADY_CALLS or (node.name in STATELESS_CALLS and node.ctx != "load")
    return isinstance(node, n.Filter) and node.name in UNSTEADY_FILTERS


def _generation(block: Any, n: Any) -> bool:
    """``{% generation %}``: a call block of chatloom's own extension, which writes its body as it is."""
    call = block.call
    return isinstance(call, n.Call) and isinstance(call.node, n.ExtensionAttribute) and call.node.name == "_body" and not block.args


def message_by_message(source: str) -> bool:
    """Whether the template renders a chat as a head, then each message alone, then (only with
    the generation prompt) a tail, read from its syntax: one ``{% for m in messages %}`` at the
    top, whose body reads of the chat only its message, ``loop.first`` and ``messages[0]``, and
    sets nothing; before it, text that reads of the chat only ``messages[0]``; after it, nothing
    but ``{% if add_generation_prompt %}`` blocks that do not read the chat.

    Then for a prefix of two messages or more, ``render(m[:j]) == render(m[:j-1]) + B``, where
    ``B`` is what ``render([m[0], m[j-1]])`` adds to ``render([m[0]])`` (the body of a message that
    is not the first reads nothing that tells it apart), and the generation prompt adds what it
    adds to ``render([m[0]])``: a layout's prefixes then cost two short renders each, not the
    whole prefix's (SmolLM2's template; ChatML is ``verbatim``, which goes further).
    """
    from jinja2 import nodes as n

    from . import _environment

    try:
        tree = _environment().parse(source)
        return _message_by_message(tree, n)
    except Exception:  # noqa: BLE001  (one that does not parse is refused elsewhere, with its error; RecursionError)
        return False


def _message_by_message(tree: Any, n: Any) -> bool:
    loops = [i for i, node in enumerate(tree.body) if isinstance(node, n.For)]
    if len(loops) != 1:
        return False
    at = loops[0]
    loop = tree.body[at]
    if not (isinstance(loop.iter, n.Name) and loop.iter.name == "messages" and isinstance(loop.target, n.Name)
            and not loop.else_ and loop.test is None and not loop.recursive):
        return False
    for node in _all(tree, n):
        if _beyond(node, n) or (isinstance(node, (n.Macro, n.CallBlock, n.FilterBlock)) and not (isinstance(node, n.CallBlock) and _generation(node, n))):
            return False
        if isinstance(node, n.Call) and not (isinstance(node.node, n.Name) and node.node.name in STATELESS_CALLS):
            return False  # a cycler's next(), a joiner: what one message's render calls changes the next one's
    if any(isinstance(x, n.Break) for node in loop.body for x in _all(node, n)):
        return False  # (a break ends the chat's render at a message)
    reads_chat = {"messages", "loop", "add_generation_prompt"}
    for node in tree.body[:at]:
        if not _reads_only(node, n, {"messages": "first", "loop": None, "add_generation_prompt": None}):
            return False
    for node in loop.body:
        if any(isinstance(x, (n.Assign, n.AssignBlock, n.With)) for x in _all(node, n)):
            return False  # (a variable set for one message could be read at the next)
        if not _reads_only(node, n, {"messages": "first", "loop": "first", "add_generation_prompt": None}):
            return False
    for node in tree.body[at + 1:]:
        if not (isinstance(node, n.If) and isinstance(node.test, n.Name) and node.test.name == "add_generation_prompt"
                and not node.elif_ and not node.else_):
            return False
        if any(isinstance(x, n.Name) and x.name in reads_chat for child in node.body for x in _all(child, n)):
            return False
    return True


def _reads_only(node: Any, n: Any, allowed: dict[str, str | None]) -> bool:
    """Whether every read of a name in ``allowed`` under ``node`` is the one allowed: ``messages``
    as ``messages[0]`` ("first"), ``loop`` as ``loop.first`` ("first"; any use inside a loop of
    its own), None: no read at all."""
    parent: dict[int, Any] = {}
    inner: set[int] = set()  # nodes inside a nested loop's body, where `loop` is that loop's
    stack = [(node, False)]
    while stack:
        at, nested = stack.pop()
        if nested:
            inner.add(id(at))
        for child in at.iter_child_nodes():
            parent[id(child)] = at
            stack.append((child, nested or (isinstance(at, n.For) and any(child is b for b in at.body))))  # (not its else, nor its filter)
    for name in _all(node, n):
        if not isinstance(name, n.Name) or name.ctx != "load" or name.name not in allowed:
            continue
        if name.name == "loop" and id(name) in inner:
            continue
        rule = allowed[name.name]
        up = parent.get(id(name))
        if rule is None:
            return False
        if name.name == "messages":
            if not (isinstance(up, n.Getitem) and up.node is name and isinstance(up.arg, n.Const) and up.arg.value == 0):
                return False
        elif not (isinstance(up, n.Getattr) and up.node is name and up.attr == "first"):
            return False
    return True


def _all(node: Any, n: Any) -> list[Any]:
    """``node`` and every node under it (jinja's ``find_all`` leaves out the node itself)."""
    return [node, *node.find_all(n.Node)]
