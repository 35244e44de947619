"""Chat content is untrusted: the OWASP XSS filter-evasion payloads, put into every field a chat
has (title, contents, names, tags, notes, tool calls and their arguments, tool schemas, an id),
never execute in the browser on any page: the list, a search's highlighted matches, the editor,
its history, the dashboard. The browser runs with the page's Content-Security-Policy *bypassed*,
so that the CSP (which would block inline scripts anyway) cannot hide an escaping bug.

Payloads: OWASP CheatSheetSeries, cheatsheets/XSS_Filter_Evasion_Cheat_Sheet.md (read 2026-12),
those that need no network, plus template-injection and JSON-in-script breakouts."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import quote

import pytest
from playwright.sync_api import Page

from chatloom.model import Conversation, Message
from chatloom.store import Store
from tests.studio.conftest import Studio, start_studio, stop_studio

pytestmark = pytest.mark.slow

PAYLOADS = [
    "<script>alert('XSS')</script>",
    "javascript:/*--></title></style></textarea></script></xmp><svg/onload='+/\"`/+/onmouseover=1/+/[*/[]/+alert(42);//'>",
    '<a onmouseover="alert(document.cookie)">xxs link</a>',
    '<IMG """><SCRIPT>alert("XSS")</SCRIPT>">',
    "<IMG SRC=javascript:alert(String.fromCharCode(88,83,83))>",
    "<IMG SRC=# onmouseover=\"alert('xxs')\">",
    "<IMG SRC=/ onerror=\"alert(String.fromCharCode(88,83,83))\"></img>",
    '<img src=x onerror="&#0000106&#0000097&#0000118&#0000097&#0000115&#0000099&#0000114&#0000105&#0000112&#0000116'
    '&#0000058&#0000097&#0000108&#0000101&#0000114&#0000116&#0000040&#0000039&#0000088&#0000083&#0000083&#0000039&#0000041">',
    "<IMG SRC=&#106;&#97;&#118;&#97;&#115;&#99;&#114;&#105;&#112;&#116;&#58;&#97;&#108;&#101;&#114;&#116;&#40;&#39;&#88;&#83;&#83;&#39;&#41;>",
    "<IMG SRC=\"jav&#x09;ascript:alert('XSS');\">",
    '<BODY onload!#$%&()*~+-_.,:;?@[/|\\]^`=alert("XSS")>',
    '<<SCRIPT>alert("XSS");//\\<</SCRIPT>',
    "\\\";alert('XSS');//",
    "</script><script>alert('XSS');</script>",
    '</TITLE><SCRIPT>alert("XSS");</SCRIPT>',
    "<INPUT TYPE=\"IMAGE\" SRC=\"javascript:alert('XSS');\">",
    "<svg/onload=alert('XSS')>",
    "Set.constructor`alert\\x28document.domain\\x29",
    "<BODY ONLOAD=alert('XSS')>",
    "<IFRAME SRC=\"javascript:alert('XSS');\"></IFRAME>",
    "<details open ontoggle=alert('XSS')>",
    '<iframe srcdoc="<script>alert(1)</script>"></iframe>',
    "<math><mtext></p><script>alert('XSS')</script>",
    "</textarea><script>alert('XSS')</script>",
    '"><img src=x onerror=alert(1)>',
    "'><svg onload=alert(1)>",
    "{{constructor.constructor('alert(1)')()}}",
    "{{ 7*7 }}{% raw %}{{7*7}}",
    '<META HTTP-EQUIV="refresh" CONTENT="0;url=javascript:alert(\'XSS\');">',
    '<object data="javascript:alert(1)"></object>',
    "<video><source onerror=\"alert('XSS')\"></video>",
    "<style>@import 'javascript:alert(1)';</style>",
    "\u2028\u2029</script><!--<script>alert(1)//",
]
WORD = "zebracorn"  # in every content: a search finds them all and highlights around the payloads


def _conversations() -> list[Conversation]:
    convs = []
    for k in range(0, len(PAYLOADS), 4):
        group = PAYLOADS[k : k + 4]
        p = group[0]
        tools = [{"type": "function", "function": {"name": "lookup", "description": p,
                                                   "parameters": {"type": "object", "properties": {"q": {"type": "string", "description": p}}}}}]  # fmt: skip
        messages = [Message(role="system", content=f"{WORD} {p}")]
        for q in group:
            messages += [
                Message(role="user", content=f"{q} {WORD} {q}", name="u" + str(k)),
                Message(role="assistant", content="", tool_calls=[{"id": f"call_{k}", "type": "function",
                        "function": {"name": "lookup", "arguments": '{"q": ' + __import__("json").dumps(q) + "}"}}]),  # fmt: skip
                Message(role="tool", content=q, tool_call_id=f"call_{k}"),
                Message(role="assistant", content=f"{WORD}: {q}"),
            ]
        convs.append(Conversation(id=f"xss:{k}:{p[:20]}", title=p, tags=[p[:40], "xss"], language=p[:8], messages=messages,
                                  tools=tools, meta={"notes": p}))  # fmt: skip
    return convs


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Studio]:
    path = tmp_path_factory.mktemp("xss") / "hostile.db"
    with Store(path, create=True) as store:
        store.import_conversations(_conversations())
        store.set_setting("languages", [PAYLOADS[0]])
        store.set_setting("tags", [PAYLOADS[1]])
    s = start_studio(path, home=tmp_path_factory.mktemp("home"))
    yield s
    stop_studio(s)


@pytest.fixture
def watched(browser: object) -> Iterator[tuple[Page, list[str]]]:
    context = browser.new_context(bypass_csp=True, viewport={"width": 1280, "height": 900})  # type: ignore[attr-defined]
    page = context.new_page()
    fired: list[str] = []
    page.on("dialog", lambda d: (fired.append(f"{page.url}: {d.type} {d.message}"), d.dismiss()))
    yield page, fired
    context.close()


def _no_injected_markup(page: Page) -> None:
    """No element of the page carries an event-handler attribute or a javascript: URL (ours use
    addEventListener and plain paths), the only scripts are the studio's own, and none of the
    elements the payloads are made of exists (a value that holds a payload is text, not markup)."""
    found = page.evaluate("""() => {
        const bad = [];
        for (const el of document.querySelectorAll('*')) {
            for (const a of el.attributes) {
                const v = (a.value || '').replace(/[\\s\\u0000-\\u001f]/g, '').toLowerCase();
                const url = ['href', 'src', 'action', 'formaction', 'data', 'background', 'dynsrc', 'lowsrc', 'poster', 'xlink:href'].includes(a.name);
                if (a.name.startsWith('on') || (url && v.startsWith('javascript:')) || a.name === 'srcdoc') bad.push(el.tagName + ' ' + a.name);
            }
        }
        for (const s of document.scripts) {
            if (s.type === 'application/json') continue;
            if (!s.src || !new URL(s.src).pathname.startsWith('/static/')) bad.push('SCRIPT ' + (s.src || s.textContent.slice(0, 40)));
        }
        for (const tag of ['iframe', 'object', 'embed', 'meta[http-equiv]', 'svg:not(.hist)', 'img', 'video', 'math', 'style'])
            for (const el of document.querySelectorAll(tag)) bad.push(tag);
        return bad;
    }""")
    assert found == [], found


def _hover_everything(page: Page) -> None:
    """What a user's mouse and keyboard would set off: mouse and focus events on every element."""
    page.evaluate("""() => {
        for (const el of document.querySelectorAll('body *'))
            for (const type of ['mouseover', 'mouseenter', 'focus', 'toggle'])
                el.dispatchEvent(new Event(type, { bubbles: false }));
    }""")
    page.mouse.move(5, 5)
    page.mouse.move(600, 600, steps=10)


def test_the_payloads_never_run_on_any_page(hostile: Studio, watched: tuple[Page, list[str]]) -> None:
    page, fired = watched
    pages = ["", "?q=" + WORD, "?tag=xss&sort=title", "dashboard", "settings", "data"]
    for path in pages:
        page.goto(hostile.url + path)
        page.wait_for_load_state("networkidle")
        _hover_everything(page)
        _no_injected_markup(page)
    # the search's highlighting wraps the word, and the payloads around it are text
    page.goto(hostile.url + "?q=" + WORD)
    marks = page.locator("#chats tbody mark")
    assert marks.count() >= 1 and marks.first.inner_text().lower() == WORD
    titles = page.locator("#chats tbody .title").all_inner_texts()
    assert set(titles) == {c.title for c in _conversations()}  # shown as the text they are
    assert fired == []


def test_the_editor_shows_the_payloads_as_text(hostile: Studio, watched: tuple[Page, list[str]]) -> None:
    page, fired = watched
    page.goto(hostile.url + "?tag=xss")
    links = {row.get_attribute("data-id"): row.locator(".title a").get_attribute("href") for row in page.locator("#chats tbody tr").all()}
    assert set(links) == {c.id for c in _conversations()}
    for conv in _conversations():
        assert links[conv.id] == "/chat/" + quote(conv.id, safe="/")  # the list's own links reach each chat
        page.goto(hostile.url.rstrip("/") + links[conv.id])
        page.wait_for_selector("#messages .message")
        page.wait_for_load_state("networkidle")
        assert page.locator("#title").input_value() == conv.title
        contents = page.locator("#messages .content")
        assert [contents.nth(i).input_value() for i in range(contents.count())] == [m.content for m in conv.messages]
        assert page.locator("#messages .call-args").first.input_value() == conv.messages[2].tool_calls[0]["function"]["arguments"]
        assert page.locator("#notes").input_value() == conv.meta["notes"]
        page.locator("#tools-box summary").click()
        page.click("#show-history")
        _hover_everything(page)
        _no_injected_markup(page)
        page.keyboard.press("Escape")
    assert fired == []
