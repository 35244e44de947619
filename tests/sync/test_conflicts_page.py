"""The studio's conflicts page: both versions of a conflicting chat, escaped; resolving it from the
page; the next sync carries the choice."""

from __future__ import annotations

import shutil
from pathlib import Path

from chatloom.store import Store
from chatloom.sync.diff import diff
from chatloom.sync.merge import sync
from chatloom.sync.sides import DatasetSide
from tests.studio.conftest import start_studio, stop_studio
from tests.sync.conftest import edit


def test_resolve_a_conflict_from_the_studio(chitchat: Path, tmp_path: Path) -> None:
    a, b = tmp_path / "a.db", tmp_path / "b.db"
    shutil.copy(chitchat, a)
    shutil.copy(chitchat, b)
    with Store(a) as s:
        x, y = s.ids()[:2]
    for path, mark in ((a, " <b>ours</b>"), (b, " <script>alert('theirs')</script>")):
        edit(path, x, mark)
        edit(path, y, mark)
    sa, sb = DatasetSide(a), DatasetSide(b)
    assert sorted(sync(sa, sb).conflicts) == sorted([x, y])
    sa.close()
    studio = start_studio(a, home=tmp_path / "home")
    try:
        with studio.client() as c:
            page = c.get("/conflicts").text
            assert page.count('class="card conflict-card"') == 2
            assert "&lt;script&gt;alert(&#39;theirs&#39;)&lt;/script&gt;" in page and "<script>alert" not in page
            assert "&lt;b&gt;ours&lt;/b&gt;" in page
            listed = c.get("/api/conflicts").json()
            assert {i["id"] for i in listed} == {x, y}
            csrf = studio.csrf(c)
            assert c.post(f"/api/conflicts/{x}/resolve", json={"how": "theirs"}).status_code == 403  # no CSRF token
            assert c.post(f"/api/conflicts/{x}/resolve", json={"how": "theirs"}, headers={"X-CSRF-Token": csrf}).status_code == 200
            assert c.post(f"/api/conflicts/{y}/resolve", json={"how": "ours"}, headers={"X-CSRF-Token": csrf}).status_code == 200
            assert c.post(f"/api/conflicts/{y}/resolve", json={"how": "ours"}, headers={"X-CSRF-Token": csrf}).status_code == 404
            assert c.get("/api/conflicts").json() == []
    finally:
        stop_studio(studio)
    sa = DatasetSide(a)
    try:
        assert not sync(sa, sb).conflicts
        assert diff(sa, sb).empty
        assert sa.get(x).messages[0].content.endswith("</script>")  # theirs taken
        assert sb.get(y).messages[0].content.endswith("<b>ours</b>")  # ours carried
    finally:
        sa.close()
        sb.close()
