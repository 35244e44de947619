"""The studio in a real browser (Debian's chromium through Playwright) against ``chatloom studio``
on a loopback port: write a chat, reload and find it; two tabs and the conflict choice; bulk-tag
a search's results; undo; generate a reply from ``chatloom serve`` and stop it mid-stream."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from playwright.sync_api import Page, expect

from chatloom.store import ListQuery, Store
from tests.serve.conftest import start_server, stop_server
from tests.studio.conftest import Studio, start_studio, stop_studio

pytestmark = pytest.mark.slow


def _open_first_chat(page: Page, studio: Studio, query: str = "") -> str:
    page.goto(studio.url + query)
    page.locator("#chats tbody tr:first-child .title a").click()
    page.wait_for_selector("#messages .message")
    expect(page.locator("#save-state")).to_have_text("saved")
    return page.url


def _saved(page: Page) -> None:
    expect(page.locator("#save-state")).to_have_text("saved", timeout=10_000)


def test_create_a_chat_edit_it_reload_and_find_the_edit(page: Page, studio: Studio) -> None:
    page.goto(studio.url)
    page.click("#new-chat")
    page.wait_for_url("**/chat/**")
    page.wait_for_selector("#messages .message")
    page.fill("#title", "Written by hand")
    page.locator("#messages .content").first.fill("What is a good name for a cat?")
    page.click("#add-message")  # the next turn is the assistant's
    expect(page.locator("#messages .message")).to_have_count(2)
    assert page.locator("#messages .role").nth(1).input_value() == "assistant"
    page.locator("#messages .content").nth(1).fill("Mittens <b>not bold</b>")
    page.fill("#tags", "handmade, cats")
    _saved(page)
    expect(page.locator("#token-total")).to_contain_text("tokens (gpt2-chatml, template chatml)")
    url = page.url
    page.reload()
    page.wait_for_selector("#messages .message")
    assert page.locator("#title").input_value() == "Written by hand"
    assert page.locator("#messages .content").nth(1).input_value() == "Mittens <b>not bold</b>"
    assert page.locator("#tags").input_value() == "handmade, cats"
    conv_id = url.split("/chat/", 1)[1].replace("%3A", ":")
    with Store(studio.dataset) as store:
        conv = store.get(conv_id)
    assert [m.content for m in conv.messages] == ["What is a good name for a cat?", "Mittens <b>not bold</b>"]
    assert conv.tags == ["handmade", "cats"] and conv.title == "Written by hand"
    # the list shows it, its markup as text
    page.goto(studio.url + "?tag=handmade")
    expect(page.locator("#chats tbody tr")).to_have_count(1)
    expect(page.locator("#chats tbody tr .title")).to_have_text("Written by hand")


def test_two_tabs_get_the_conflict_choice(page: Page, studio: Studio) -> None:
    url = _open_first_chat(page, studio, "?sort=messages&dir=asc&min_messages=4")
    other = page.context.new_page()
    other.goto(url)
    other.wait_for_selector("#messages .message")
    original = page.locator("#messages .content").first.input_value()
    page.locator("#messages .content").first.fill(original + " (tab A)")
    _saved(page)
    other.locator("#messages .content").nth(1).fill("tab B was here")
    expect(other.locator("#conflict")).to_be_visible(timeout=10_000)
    expect(other.locator("#save-state")).to_contain_text("not saved")
    # "keep mine": B's version goes on top of A's as a new revision; nothing is silently lost
    other.click("#keep-mine")
    _saved(other)
    expect(other.locator("#conflict")).to_be_hidden()
    conv_id = url.split("/chat/", 1)[1].replace("%3A", ":")
    with Store(studio.dataset) as store:
        e = store.entry(conv_id)
        assert e.conversation.messages[1].content == "tab B was here"
        assert e.conversation.messages[0].content == original  # B's copy, made before A's edit
        history = [h.op for h in store.history(conv_id)]
        a_state = store.state_at(conv_id, e.revision - 1)
    assert a_state is not None and a_state.messages[0].content == original + " (tab A)"  # A's edit is in the history
    assert history[-2:] == ["edit", "edit"]
    # now A is the stale one: "reload theirs" shows B's version
    page.locator("#messages .content").first.fill("A again")
    expect(page.locator("#conflict")).to_be_visible(timeout=10_000)
    page.click("#reload-theirs")
    expect(page.locator("#conflict")).to_be_hidden()
    assert page.locator("#messages .content").nth(1).input_value() == "tab B was here"
    _saved(page)


def test_bulk_tag_everything_a_search_finds(page: Page, studio: Studio) -> None:
    with Store(studio.dataset) as store:
        found = {i for batch in store.matching_ids(ListQuery(search="pizza")) for i in batch}
    assert len(found) > 50  # more than one page: the action covers the query, not the page
    page.goto(studio.url + "?q=pizza")
    expect(page.locator("#chats tbody tr mark").first).to_have_text("pizza", ignore_case=True)
    page.check("#whole-query")
    page.select_option("#bulk-action", "tag")
    page.fill("#bulk-value", "pizza-talk")
    page.click("#bulk-apply")
    expect(page.locator("#bulk-result")).to_contain_text(f"{len(found)} of {len(found)} changed", timeout=30_000)
    with Store(studio.dataset) as store:
        assert set(store.ids(tag="pizza-talk")) == found
    # and over a selection: two rows of the list
    page.goto(studio.url + "?tag=pizza-talk")
    rows = page.locator("#chats tbody tr")
    picked = [rows.nth(0).get_attribute("data-id"), rows.nth(1).get_attribute("data-id")]
    page.keyboard.press("j")
    page.keyboard.press("x")
    page.keyboard.press("j")
    page.keyboard.press("x")
    expect(page.locator("#selected-count")).to_have_text("2 selected")
    page.select_option("#bulk-action", "untag")
    page.fill("#bulk-value", "pizza-talk")
    page.click("#bulk-apply")
    expect(page.locator("#bulk-result")).to_contain_text("2 of 2 changed")
    with Store(studio.dataset) as store:
        assert set(store.ids(tag="pizza-talk")) == found - set(picked)


def test_undo_the_last_change_from_the_keyboard(page: Page, studio: Studio) -> None:
    _open_first_chat(page, studio, "?sort=title&dir=asc")
    area = page.locator("#messages .content").first
    before = area.input_value()
    area.fill("a change to take back")
    _saved(page)
    area.press("Escape")  # leave the field: Ctrl+Z in a text field is the browser's own undo
    page.keyboard.press("Control+z")
    expect(page.locator("#messages .content").first).to_have_value(before, timeout=10_000)
    page.click("#show-history")
    expect(page.locator("#history-list li").first).to_contain_text("undo")


def test_keyboard_list_navigation_and_search(page: Page, studio: Studio) -> None:
    page.goto(studio.url)
    page.keyboard.press("/")
    expect(page.locator("#search")).to_be_focused()
    page.keyboard.type("weekend")
    page.keyboard.press("Enter")
    page.wait_for_url("**q=weekend**")
    page.keyboard.press("j")
    page.keyboard.press("j")
    second = page.locator("#chats tbody tr").nth(1).get_attribute("data-id")
    page.keyboard.press("Enter")
    page.wait_for_url("**/chat/**")
    assert page.url.endswith(second.replace(":", "%3A"))
    page.keyboard.press("?")
    expect(page.locator("#help")).to_be_visible()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    srv = start_server("tiny:llama", home=tmp_path_factory.mktemp("serve") / "home")
    model = openai.OpenAI(base_url=srv.base_url, api_key="x").models.list().data[0].id
    yield srv.base_url, model
    stop_server(srv)


@pytest.fixture(scope="module")
def assisted(chitchat_db: Path, served: tuple[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Studio]:
    base_url, model = served
    s = start_studio(chitchat_db, "--base-url", base_url, "--model", model, home=tmp_path_factory.mktemp("home"))
    yield s
    stop_studio(s)


def test_generate_a_reply_from_chatloom_serve_and_stop_it_mid_stream(page: Page, assisted: Studio, served: tuple[str, str]) -> None:
    url = _open_first_chat(page, assisted, "?sort=messages&dir=asc&min_messages=2")
    conv_id = url.split("/chat/", 1)[1].replace("%3A", ":")
    with Store(assisted.dataset) as store:
        before = store.entry(conv_id)
    n = len(before.conversation.messages)
    page.fill("#gen-temperature", "1")
    page.fill("#gen-max", "900")  # long enough to be stopped in the middle (the tiny model's context is 1,024)
    page.locator("#messages .content").first.click()  # a user message selected: the reply goes at the end
    page.keyboard.press("Control+Enter")
    expect(page.locator("#gen-stop")).to_be_enabled()
    target = page.locator("#messages .content").nth(n)
    deadline = time.monotonic() + 60
    while len(target.input_value()) < 20 and time.monotonic() < deadline:  # streamed into the editor piece by piece
        time.sleep(0.05)
    assert len(target.input_value()) >= 20
    page.keyboard.press("Escape")
    expect(page.locator("#gen-state")).to_contain_text("stopped", timeout=20_000)
    shown = page.locator("#messages .content").nth(n).input_value()
    with Store(assisted.dataset) as store:
        e = store.entry(conv_id)
    msg = e.conversation.messages[n]
    assert e.revision == before.revision + 1 and len(e.conversation.messages) == n + 1
    assert msg.role == "assistant" and msg.content == shown and len(msg.content) >= 20
    g = msg.meta["generated"]
    assert g["stopped"] is True and g["mode"] == "reply" and g["params"]["max_tokens"] == 900
    assert g["model"] and "key" not in str(g).lower()
    # the upstream request was closed: the model server has nothing running any more
    health = served[0].removesuffix("/v1") + "/health"
    deadline = time.monotonic() + 20
    while httpx.get(health, timeout=10).json()["active_generations"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert httpx.get(health, timeout=10).json()["active_generations"] == 0
