import json
import os

import orjson
import pytest

from chatloom.cli import all_commands, cli
from chatloom.errors import SourceError
from chatloom.store import Store
from tests.conftest import conv, write_jsonl


@pytest.fixture
def chats(tmp_path):
    return write_jsonl(tmp_path / "chats.jsonl", [
        conv("hello there", "hi! how are you?", id="c1", tags=["greet"]),
        conv("tell me about pizza", "pizza is bread with toppings", id="c2"),
        conv("and sushi?", "rice and fish", id="c3"),
    ])


def test_every_command_has_help_with_examples(run):
    for name in all_commands():
        result = run(name, "--help")
        assert result.exit_code == 0, name
        if name != "formats":
            assert "Example usage:" in result.output, name


def test_import_ls_show(run, chats):
    result = run("import", str(chats))
    assert result.exit_code == 0
    assert "openai (detected)" in result.stdout
    assert "3 conversations in chatloom.db" in result.stdout
    again = run("import", str(chats), "--json")
    data = json.loads(again.stdout)
    assert data["files"][0]["added"] == 0 and data["files"][0]["unchanged"] == 3
    listing = json.loads(run("ls", "--json").stdout)
    assert [r["id"] for r in listing] == ["c1", "c2", "c3"]
    assert listing[0]["preview"] == "hello there"
    found = json.loads(run("ls", "--search", "pizza", "--json").stdout)
    assert [r["id"] for r in found] == ["c2"] and "pizza" in found[0]["snippet"]
    assert [r["id"] for r in json.loads(run("ls", "--tag", "greet", "--json").stdout)] == ["c1"]
    shown = run("show", "c2")
    assert "pizza is bread with toppings" in shown.stdout
    record = json.loads(run("show", "c2", "--json").stdout)
    assert record["revision"] == 1 and record["messages"][1]["role"] == "assistant"


def test_markup_in_chats_is_printed_as_text(run, tmp_path):
    path = write_jsonl(tmp_path / "m.jsonl", [conv("[bold red]not markup[/] [link=x]y[/link]", id="m")])
    run("import", str(path))
    assert "[bold red]not markup[/]" in run("show", "m").stdout
    assert "[bold red]not markup[/]" in run("ls").stdout


@pytest.mark.parametrize("columns", ["40", "80", "200"])
def test_piped_ls_never_cuts_ids(run, tmp_path, monkeypatch, columns):
    """An id as `ls` prints it, piped (no terminal), is one that `show` finds, however narrow."""
    long_ids = [f"discord:{'9' * 19}:{'8' * 19}-{n}" for n in range(3)]
    path = write_jsonl(tmp_path / "long.jsonl", [conv("a long first message " * 5, "ok", id=i, tags=["t" * 40]) for i in long_ids])
    run("import", str(path))
    monkeypatch.setenv("COLUMNS", columns)
    lines = run("ls").stdout.splitlines()
    shown = [line.split()[0] for line in lines[1:]]
    assert shown == long_ids
    assert all(line.split()[1] == "2" for line in lines[1:])  # the message count stays too
    for conv_id in shown:
        assert run("show", conv_id).exit_code == 0


def test_tokenize_val_error_names_the_flag_typed(run, chats):
    """The library's parameter is `split`; tokenize's flag for it is --val, export's --split."""
    run("import", str(chats))
    result = run("tokenize", "-o", "tokens", "--val", "-1")
    assert result.exit_code == 2 and result.stderr == "error: --val must be a ratio in (0, 1) or a count ≥ 1, not -1.0\n"
    result = run("export", "-o", "out", "--split", "-1")
    assert result.exit_code == 2 and result.stderr == "error: --split must be a ratio in (0, 1) or a count ≥ 1, not -1.0\n"


def test_edit_commands(run, chats):
    run("import", str(chats))
    assert run("tag", "c2", "c3", "--add", "food").stdout.startswith("tagged 2 of 2")
    assert run("tag", "c2", "--remove", "food").exit_code == 0
    history = json.loads(run("history", "c2", "--json").stdout)
    assert [h["op"] for h in history] == ["import", "tag", "tag"]
    out = run("undo", "c2").stdout
    assert "undid revision 3 (tag) of c2; it is now at revision 4" in out
    assert "food" in json.loads(run("show", "c2", "--json").stdout)["tags"]
    assert run("rm", "c3").stdout.startswith("deleted 1")
    assert [r["id"] for r in json.loads(run("ls", "--json").stdout)] == ["c1", "c2"]
    assert run("check").stdout.startswith("ok: 2 conversations")
    assert run("settings", "languages", "en,de").exit_code == 0
    assert json.loads(run("settings", "--json").stdout) == {"languages": ["en", "de"]}


def test_stats_json_and_plot(run, chats):
    run("import", str(chats))
    result = run("stats", "--json", "--plot", "hist.png")
    data = json.loads(result.stdout)
    assert data["conversations"] == 3 and data["messages"] == 6
    assert data["by_role"] == {"user": 3, "assistant": 3}
    assert set(data["tokens"]) == {"tokenizer", "total", "mean", "p50", "p95", "max"}
    assert data["by_tag"] == {"greet": 1} and data["by_source"] == {"openai": 3}
    with open("hist.png", "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    human = run("stats", "--tokenizer", "cl100k_base")
    assert "tokens (cl100k_base)" in human.stdout


def test_export_round_trip_is_lossless(run, tmp_path, fixture):
    lima = fixture("limagui_v0.6.1_function_calling.jsonl")
    run("import", str(lima), "-f", "openai")
    run("import", "-f", "chatterbot", "package")
    assert run("export", "-o", "one.jsonl").exit_code == 0
    run("import", "-d", "copy.db", "one.jsonl")
    run("export", "-d", "copy.db", "-o", "two.jsonl")
    assert (tmp_path / "one.jsonl").read_bytes() == (tmp_path / "two.jsonl").read_bytes()


def test_export_split_is_seeded_and_by_conversation(run, tmp_path):
    run("import", "-f", "chatterbot", "package")
    total = json.loads(run("stats", "--json").stdout)["conversations"]
    run("export", "-o", "a", "--split", "0.1", "--seed", "7")
    run("export", "-o", "b", "--split", "0.1", "--seed", "7")
    run("export", "-o", "c", "--split", "0.1", "--seed", "8")
    for name in ("train.jsonl", "val.jsonl"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    ids = {s: [orjson.loads(line)["id"] for line in open(tmp_path / "a" / f"{s}.jsonl", "rb")] for s in ("train", "val")}
    assert len(ids["val"]) == round(total * 0.1)
    assert not set(ids["train"]) & set(ids["val"]) and len(ids["train"]) + len(ids["val"]) == total
    assert (tmp_path / "c" / "val.jsonl").read_bytes() != (tmp_path / "a" / "val.jsonl").read_bytes()
    counted = run("export", "-o", "n", "--split", "5", "--json")
    assert list(json.loads(counted.stdout)["files"].values())[1] == 5


def test_export_no_meta_is_the_bare_training_shape(run, chats):
    run("import", str(chats))
    out = run("export", "-o", "-", "--no-meta").stdout.splitlines()
    assert orjson.loads(out[0]) == {"messages": [{"role": "user", "content": "hello there"}, {"role": "assistant", "content": "hi! how are you?"}]}


# -- errors: one line, exit code 2, no traceback, nothing written --------------------------------


def _one_error_line(result, *expected):
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for text in expected:
        assert text in lines[0]
    assert "Traceback" not in result.output


def test_error_lines(run, tmp_path, chats):
    _one_error_line(run("import", "missing.jsonl"), "error: missing.jsonl: no such file or folder")
    _one_error_line(run("ls"), "chatloom.db: no such dataset")
    assert not (tmp_path / "chatloom.db").exists()
    _one_error_line(run("import", "-f", "nope", str(chats)), "unknown format 'nope'")
    run("import", str(chats))
    _one_error_line(run("show", "zzz"), "zzz: no such conversation")
    _one_error_line(run("stats", "--tokenizer", "nope"), "unknown tokenizer 'nope'")
    _one_error_line(run("export", "-f", "nope", "-o", "x"), "unknown format 'nope'")
    assert run("undo", "c1").exit_code == 0  # undoes the import: c1 is deleted
    _one_error_line(run("undo", "c1"), "c1: nothing to undo")
    (tmp_path / "notes.db").write_text("hello, this is not SQLite" * 100)
    _one_error_line(run("ls", "-d", "notes.db"), "notes.db: not a chatloom dataset (not an SQLite file)")


def test_bad_records_are_counted_and_strict_writes_nothing(run, tmp_path, chats):
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(chats.read_bytes() + b'{"messages": [{"role": "user", "content": 1}]}\n{"messages": []}\n')
    result = run("import", str(bad), "-d", "strict.db", "--strict")
    _one_error_line(result, f"{bad}:4: $.messages[0].content", "--strict")
    assert not (tmp_path / "strict.db").exists()  # a failed first import leaves nothing behind
    run("import", str(chats), "-d", "strict.db")
    _one_error_line(run("import", str(bad), "-d", "strict.db", "--strict"), "--strict")
    assert json.loads(run("stats", "-d", "strict.db", "--json").stdout)["conversations"] == 3  # and nothing of bad.jsonl
    lenient = run("import", str(bad), "-d", "lenient.db")
    assert lenient.exit_code == 0
    assert f"warning: {bad}:4: $.messages[0].content" in lenient.stderr
    assert "1 bad records skipped" in lenient.stderr
    assert "dropped 1 × empty conversation" in lenient.stdout  # {"messages": []}
    assert json.loads(run("stats", "-d", "lenient.db", "--json").stdout)["conversations"] == 3


def test_debug_shows_the_traceback(run):
    from click.testing import CliRunner

    result = CliRunner().invoke(cli, ["--debug", "import", "missing.jsonl"])
    assert result.exit_code != 0 and result.exception is not None


def test_dataset_from_the_environment(run, chats, monkeypatch):
    monkeypatch.setenv("CHATLOOM_DATASET", "env.db")
    run("import", str(chats))
    assert json.loads(run("stats", "--json").stdout)["dataset"] == "env.db"


def test_formats_lists_plugins(run):
    data = json.loads(run("formats", "--json").stdout)
    assert {"openai", "chitchat", "chatterbot"} <= set(data["import"])
    assert "openai" in data["export"] and "gpt2-chatml" in data["tokenizers"]


def test_chat_export_import_from_the_cli(run, fixture):
    general = str(fixture("discordchatexporter_general.json"))
    _one_error_line(run("import", general), "who are you in this chat?", "Pass --me 'Adam'")
    dry = run("import", general, "--dry-run", "--me", "Adam")
    assert dry.exit_code == 0 and "dry run: nothing was written" in dry.stdout
    assert "Thomas" in dry.stdout and "system message" in dry.stdout
    _one_error_line(run("ls"), "no such dataset")  # the dry run created nothing
    result = run("import", general, "--me", "Adam", "--json")
    data = json.loads(result.stdout)["files"][0]
    assert data["format"] == "discord" and data["added"] == 1 and data["dropped"]["system message"] == 4
    _one_error_line(run("import", general, "--me", "Adam", "--session-gap", "soon"), "'soon' is not a duration")
    _one_error_line(run("import", general, "--date-format", "ddmm"), "--date-format must be dmy, mdy or ymd")
    txt = str(fixture("discordchatexporter_plaintext_DERIVED.txt"))
    _one_error_line(run("import", txt, "--me", "Adam"), "pass --date-format dmy or mdy")
    assert run("import", txt, "--me", "Adam", "--date-format", "mdy").exit_code == 0


def test_of_several_files_one_that_cannot_be_read_does_not_stop_the_others(run, tmp_path, fixture):
    folder = tmp_path / "exports"
    folder.mkdir()
    line = '{"messages": [{"role": "user", "content": "%s"}, {"role": "assistant", "content": "ok"}]}\n'
    (folder / "a.jsonl").write_text(line % "first")
    (folder / "b.json").write_bytes(fixture("discordchatexporter_general.json").read_bytes()[:-3000])  # cut short
    (folder / "c.jsonl").write_text(line % "last")
    result = run("import", str(folder), "--me", "Adam")
    assert result.exit_code == 2 and "Traceback" not in result.output
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 2 and errors[0].startswith(f"error: {folder / 'b.json'}:") and "truncated" in errors[0]
    assert errors[1] == "error: 1 of 3 files could not be read; the others were imported"
    listed = json.loads(run("ls", "--json").stdout)
    assert sorted(c["preview"] for c in listed) == ["first", "last"]
    # the same with --json: each file's result, the failed one with its error
    report = json.loads(run("import", str(folder), "--me", "Adam", "--json").stdout)
    assert [("error" in f, f["unchanged"]) for f in report["files"]] == [(False, 1), (True, 0), (False, 1)]
    # none readable: the errors, and no dataset left behind
    (folder / "a.jsonl").unlink()
    (folder / "c.jsonl").write_text(line % "x" + "{not json\n")
    result = run("import", str(folder), "--me", "Adam", "-d", "new.db", "--strict")
    assert result.exit_code == 2 and not (tmp_path / "new.db").exists(), result.stderr
    assert result.stderr.strip().splitlines()[-1] == "error: none of the 2 files could be read"


def _chatgpt_export(n, tail="", prefix="c"):
    def conv(i):
        node = {"id": "a", "parent": None, "children": [], "message": {
            "id": "a", "author": {"role": "user"}, "content": {"content_type": "text", "parts": [f"t{i}"]}, "metadata": {}}}
        return {"title": f"t{i}", "create_time": 1700000000, "mapping": {"a": node}, "current_node": "a", "id": f"{prefix}{i}"}

    return json.dumps([conv(i) for i in range(n)])[:-1] + tail + "]"


def test_a_file_that_fails_after_some_batches_is_taken_back_whole(run, tmp_path, monkeypatch):
    from chatloom.sources import chatgpt

    monkeypatch.setattr(chatgpt, "STREAM_ABOVE", 0)  # streamed: its first batches are committed before the fault
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "conversations.json").write_text(_chatgpt_export(10, ', {"x": [}'))
    (tmp_path / "b" / "conversations.json").write_text(_chatgpt_export(1, prefix="b"))
    result = run("import", "a/conversations.json", "b/conversations.json", "--batch-size", "3")
    assert result.exit_code == 2
    assert ("note: a/conversations.json: nothing of it was imported (the 9 conversations written before its error "
            "were taken back)") in result.stderr  # fmt: skip
    report = json.loads(run("import", "a/conversations.json", "b/conversations.json", "--batch-size", "3", "--json").stdout)
    assert [(f["added"], f["unchanged"], f.get("taken_back")) for f in report["files"]] == [(0, 0, 9), (0, 1, None)]
    with Store(tmp_path / "chatloom.db") as store:
        assert store.ids() == ["chatgpt:b0"] and store.check().ok
        assert [(r[0], r[1]) for r in store.db.execute("SELECT status, records FROM imports ORDER BY rowid")] == [
            ("failed", 0), ("done", 1), ("failed", 0), ("done", 1)]
        assert store.db.execute("SELECT count(*) FROM revisions").fetchone()[0] == 1  # no trace of a's 9 in any history
    # --strict: one transaction per file, so nothing of it is ever committed
    report = json.loads(run("import", "a/conversations.json", "-d", "s.db", "--strict", "b/conversations.json", "--json").stdout)
    assert [(f["records"], "error" in f, f.get("taken_back")) for f in report["files"]] == [(0, True, 0), (1, False, None)]


def test_me_that_is_nobody_is_an_error_though_another_file_failed_part_way(run, tmp_path, monkeypatch, fixture):
    from chatloom.sources import chatgpt

    monkeypatch.setattr(chatgpt, "STREAM_ABOVE", 0)
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "conversations.json").write_text(_chatgpt_export(10, ', {"x": [}'))
    result = run("import", "a/conversations.json", str(fixture("whatsapp_ios_langchain.txt")), "--me", "Nobody", "--batch-size", "3")
    assert result.exit_code == 2 and "is none of its speakers" in result.stderr and "nothing was imported" in result.stderr
    assert not (tmp_path / "chatloom.db").exists()  # the failed file's 9 were taken back: no dataset is left


def test_of_several_files_only_bad_input_goes_on(run, tmp_path, monkeypatch, fixture):
    """--me that is nobody is still an error when another file fails; a fault of chatloom itself
    stops everything, and the errors of the files before it are still shown."""
    cut = tmp_path / "cut.json"
    cut.write_bytes(fixture("discordchatexporter_general.json").read_bytes()[:-3000])
    chat = str(fixture("whatsapp_ios_langchain.txt"))
    result = run("import", chat, str(cut), "--me", "Nobody")
    assert result.exit_code == 2 and "--me 'Nobody' is none of its speakers" in result.stderr and "nothing was imported" in result.stderr
    (tmp_path / "c.jsonl").write_text('{"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]}\n')
    def broken(self, *args, **kwargs):
        raise TypeError("a bug in chatloom")

    monkeypatch.setattr(Store, "_import_batch", broken)
    result = run("import", str(cut), str(tmp_path / "c.jsonl"), "--me", "Adam")
    errors = result.stderr.strip().splitlines()
    assert result.exit_code == 2 and len(errors) == 2 and "truncated" in errors[0]
    assert errors[1] == f"error: {tmp_path / 'c.jsonl'}: cannot read it: TypeError: a bug in chatloom"
    with pytest.raises(SourceError) as raised:  # --debug: the traceback, down to the fault
        run("--debug", "import", str(cut), str(tmp_path / "c.jsonl"), "--me", "Adam")
    assert isinstance(raised.value.__cause__, TypeError)
    # a dry run too
    monkeypatch.setattr(Store, "preview", broken)
    result = run("import", str(tmp_path / "c.jsonl"), str(cut), "--me", "Adam", "--dry-run")
    errors = result.stderr.strip().splitlines()
    assert result.exit_code == 2 and errors == [f"error: {tmp_path / 'c.jsonl'}: cannot read it: TypeError: a bug in chatloom"]


def test_a_failed_first_import_leaves_no_dataset(run, tmp_path, fixture):
    cut = tmp_path / "cut.json"
    cut.write_bytes(fixture("discordchatexporter_general.json").read_bytes()[:-3000])
    _one_error_line(run("import", str(cut), "--me", "Adam"), "cut.json:", "truncated")
    assert not (tmp_path / "chatloom.db").exists()
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes(b'{"messages": [{"role": "user", "content": "caf\xe9"}]}\n')
    _one_error_line(run("import", str(latin), "-f", "openai"), "latin.jsonl:1: not UTF-8 text")


def test_each_command_is_in_the_module_the_root_imports_for_it():
    """A command's module is imported when it runs (``COMMANDS``): the map holds every built-in
    command, each where its module registers it, and ``--help`` lists them all."""
    from chatloom.cli import COMMANDS

    built_in = {name: cmd for name, cmd in all_commands().items() if cmd.callback.__module__.startswith("chatloom.cli.")}
    assert set(built_in) == set(COMMANDS)
    assert {name: cmd.callback.__module__ for name, cmd in built_in.items()} == {n: f"chatloom.cli.{m}" for n, m in COMMANDS.items()}


def test_a_command_imports_its_own_module_only():
    import subprocess
    import sys

    code = ("import sys\nfrom chatloom.cli import cli\ncli([*sys.argv[1:], '--help'], standalone_mode=False)\n"
            "print(' '.join(sorted(m for m in sys.modules if m.startswith('chatloom.cli.'))))")
    out = subprocess.run([sys.executable, "-c", code, "tokenize"], capture_output=True, text=True, check=True).stdout
    assert out.splitlines()[-1].split() == ["chatloom.cli.tokens"]
    listed = subprocess.run([sys.executable, "-m", "chatloom", "--help"], capture_output=True, text=True, check=True).stdout
    from chatloom.cli import COMMANDS

    assert all(f"  {name} " in listed for name in COMMANDS), listed


def test_an_unknown_command_is_told_the_nearest(run):
    result = run("toknize")
    assert result.exit_code == 2 and "Did you mean 'tokenize'?" in result.output


def test_a_plugins_commands_come_after_the_built_ins():
    """A plugin's register_commands sees every built-in command (to wrap one, or to take its name),
    and what it registers stands, whatever is imported later (--help imports every module)."""
    import subprocess
    import sys

    code = '''
import click
from chatloom.hookspecs import hookimpl
from chatloom.plugins import load_plugins

class Plugin:
    @hookimpl
    def register_commands(self, cli):
        assert "tokenize" in cli.commands and "train" in cli.commands, sorted(cli.commands)
        @cli.command("stats")
        def stats():
            click.echo("the plugin's stats")

load_plugins().register(Plugin(), "test-plugin")
from chatloom.cli import cli
cli(["--help"], standalone_mode=False)
cli(["stats"], standalone_mode=False)
'''
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.rstrip().endswith("the plugin's stats") and "tokenize" in out


def test_an_installed_plugins_commands_are_found_and_the_built_ins_load_only_then(tmp_path):
    """A plugin installed under the ``chatloom`` entry points (a real dist-info on the path) adds its
    command; with none installed, a command does not import the built-in importers and formats
    (0.1 s of every start) to look for plugin commands."""
    import subprocess
    import sys

    from tests.conftest import REPO

    site = tmp_path / "site"
    site.mkdir()
    (site / "hello_plugin.py").write_text(
        "import click\nfrom chatloom.hookspecs import hookimpl\n\n@hookimpl\ndef register_commands(cli):\n"
        "    @cli.command('hello')\n    def hello():\n        click.echo('hello from a plugin')\n")
    dist = site / "hello_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: hello-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[chatloom]\nhello = hello_plugin\n")
    code = ("import sys\nfrom chatloom.cli import cli\ncli(sys.argv[1:], standalone_mode=False)\n"
            "print('importers loaded:', 'chatloom.sources.builtin' in sys.modules)")
    env = {k: v for k, v in os.environ.items() if k != "CHATLOOM_NO_PLUGINS"}

    def run(*args: str, path: str) -> list[str]:
        done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True,
                              env=dict(env, PYTHONPATH=path))
        return done.stdout.splitlines()

    assert run("hello", path=f"{site}{os.pathsep}{REPO / 'src'}") == ["hello from a plugin", "importers loaded: True"]
    from chatloom.tokens.tokenizer import write_hf_gpt2_folder

    chatml = "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{% endfor %}"
    folder = write_hf_gpt2_folder(tmp_path / "gpt2", special_tokens=["<|im_start|>", "<|im_end|>"], chat_template=chatml)
    chats = tmp_path / "chats.jsonl"
    chats.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}) + "\n")
    out = run("tokenize", str(chats), "-o", str(tmp_path / "tokens"), "--tokenizer", str(folder), path=str(REPO / "src"))
    assert out[-1] == "importers loaded: False" and (tmp_path / "tokens" / "train.bin").stat().st_size > 0
