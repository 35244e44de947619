"""Malformed recipes: every one ends in one line ``error: recipe.yaml[:LINE]: KEY: what`` (exit 2,
no traceback) and leaves no output folder behind, whether the recipe fails when it loads (its
file, its YAML, its keys and types, its steps' parameters, what validates but makes no sense) or
when it runs (a missing input, a split count larger than what the steps leave, a regex that
backtracks catastrophically).

Each case is a recipe's text and a fragment its error line must hold (with the line number where
the YAML has one). The recipes read ``chats.jsonl``, three small conversations written per test,
so that a recipe that gets as far as running runs in milliseconds.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from tests.conftest import conv, write_jsonl
from tests.malformed.common import outcome

IN = "inputs:\n  - file: chats.jsonl\n"  # lines 1-2: what follows starts on line 3


def bomb(levels: int) -> str:
    """The "billion laughs": each anchor is nine of the one before."""
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, levels)]
    return IN + "\n".join(lines) + "\n"


def nested_block(levels: int) -> str:
    return IN + "".join(f"{'  ' * i}k{i}:\n" for i in range(levels)) + f"{'  ' * levels}leaf\n"


CASES: list[tuple[str, str | bytes, str]] = [
    # -- the file ------------------------------------------------------------------------------
    ("empty", b"", "recipe.yaml: empty, not a recipe"),
    ("only-comments", "# nothing here\n", "recipe.yaml: empty, not a recipe"),
    ("a-list", "- inputs\n- filters\n", "recipe.yaml: a YAML list, not a recipe"),
    ("a-scalar", "build me a dataset\n", "recipe.yaml: a YAML str, not a recipe"),
    ("latin-1", (IN + "seed: 1\n# café\n").encode("latin-1"), "recipe.yaml:4: not UTF-8 text (byte 0xe9)"),
    ("utf-16", (IN + "seed: 1\n").encode("utf-16"), "recipe.yaml:1: not UTF-8 text (byte 0xff)"),
    ("nul-byte", IN + "seed: 1\x00\n", "recipe.yaml:3: not valid YAML (the character #x0000 is not allowed)"),
    ("over-1-MiB", IN + "# " + "x" * (1 << 20) + "\n", "recipe.yaml: over 1 MiB, too large for a recipe"),
    ("unclosed-bracket", "inputs: [{file: chats.jsonl}\nseed: 1\n", "recipe.yaml:2: not valid YAML (expected ',' or ']'"),
    ("bad-indentation", IN + "   seed: 1\n", "recipe.yaml:3: not valid YAML"),
    ("tab-indentation", "inputs:\n\t- file: chats.jsonl\n", "recipe.yaml:2: not valid YAML"),
    ("python-tag", IN + "seed: !!python/object/apply:os.system ['true']\n", "recipe.yaml:3: not valid YAML (could not determine a constructor"),
    ("undefined-alias", IN + "seed: *nope\n", "recipe.yaml:3: not valid YAML (found undefined alias"),
    ("impossible-date", IN + "seed: 2024-13-45\n", "recipe.yaml:3: not valid YAML (cannot read '2024-13-45': month must be in 1..12)"),
    ("5000-digit-integer", IN + "seed: " + "9" * 5000 + "\n", "recipe.yaml:3: not valid YAML (cannot read"),
    ("nested-5000-deep", IN + "filters: " + "[" * 5000 + "]" * 5000 + "\n", "recipe.yaml:3: nested deeper than 32 levels"),
    ("nested-40-deep-block", nested_block(40), "nested deeper than 32 levels"),
    ("nested-deep-through-aliases", IN + "a: &a " + "[" * 20 + "1" + "]" * 20 + "\nb: " + "[" * 15 + "*a" + "]" * 15 + "\n",
     "recipe.yaml:4: nested deeper than 32 levels (through aliases)"),
    ("billion-laughs", bomb(9), "more than 100,000 values once its aliases are expanded"),
    ("alias-in-its-own-anchor", IN + "tasks: &t [{name: a, inputs: *t}]\n", "recipe.yaml:3: an alias inside its own anchor"),
    ("key-twice", IN + "seed: 1\nseed: 2\n", "recipe.yaml:4: seed: given twice in one mapping (first on line 3)"),
    ("key-twice-in-a-step", IN + "filters:\n  - turns: {min: 1, min: 2}\n", "recipe.yaml:4: min: given twice in one mapping"),
    ("key-twice-in-an-input", IN + "    file: other.jsonl\n", "recipe.yaml:3: file: given twice in one mapping (first on line 2)"),
    # -- keys and types ------------------------------------------------------------------------
    ("unknown-key", IN + "filterz: []\n", "recipe.yaml:3: filterz: unknown key; the keys here are: inputs, tasks, filters"),
    ("unknown-input-key", IN + "    fomat: openai\n", "recipe.yaml:3: inputs[0].fomat: unknown key; the keys here are: name, dataset"),
    ("unknown-task-key", IN + "tasks:\n  - name: t\n    prompts: [hi]\n", "recipe.yaml:5: tasks[0].prompts: unknown key"),
    ("unknown-step-key", IN + "filters:\n  - near_dedup: {treshold: 0.5}\n",
     "recipe.yaml:4: filters[0].near_dedup.treshold: unknown key; the keys here are: threshold, ngram"),
    ("no-inputs", "seed: 1\n", "recipe.yaml:1: inputs: Field required"),
    ("inputs-empty", "inputs: []\n", "recipe.yaml:1: inputs: List should have at least 1 item"),
    ("inputs-a-string", "inputs: chats.jsonl\n", "recipe.yaml:1: inputs: Input should be a valid list"),
    ("input-a-string", "inputs: [chats.jsonl]\n", "recipe.yaml:1: inputs[0]: Input should be a valid dictionary"),
    ("seed-text", IN + "seed: abc\n", "recipe.yaml:3: seed: Input should be a valid integer"),
    ("seed-fraction", IN + "seed: 1.5\n", "recipe.yaml:3: seed: Input should be a valid integer"),
    ("max-tokens-0", IN + "max_tokens: 0\n", "recipe.yaml:3: max_tokens: Input should be greater than or equal to 1"),
    ("max-tokens-list", IN + "max_tokens: [1]\n", "recipe.yaml:3: max_tokens: Input should be a valid integer"),
    ("tokenizer-unknown", IN + "tokenizer: gpt5\n", "recipe.yaml:3: tokenizer: unknown tokenizer 'gpt5'"),
    ("format-unknown", IN + "format: jsonx\n", "recipe.yaml:3: format: unknown format 'jsonx'"),
    ("split-1.5", IN + "split: 1.5\n", "recipe.yaml:3: split: 1.5 is neither a validation ratio in (0, 1) nor a whole count"),
    ("split-0", IN + "split: 0\n", "recipe.yaml:3: split: 0 is neither"),
    ("split-negative", IN + "split: -1\n", "recipe.yaml:3: split: -1 is neither"),
    ("split-nan", IN + "split: .nan\n", "recipe.yaml:3: split: nan is neither"),
    ("split-inf", IN + "split: .inf\n", "recipe.yaml:3: split: inf is neither"),
    ("split-text", IN + "split: ten\n", "recipe.yaml:3: split: Input should be a valid number"),
    ("output-empty", IN + "output: ''\n", "recipe.yaml:3: output: String should have at least 1 character"),
    ("filters-a-mapping", IN + "filters: {turns: {}}\n", "recipe.yaml:3: filters: Input should be a valid list"),
    ("step-a-list", IN + "filters:\n  - [turns]\n", "recipe.yaml:4: filters[0]: a step is a name or one 'name: {params}' mapping, not a list"),
    ("step-two-keys", IN + "filters:\n  - {turns: {}, tokens: {}}\n", "recipe.yaml:4: filters[0]: a step is a name or one 'name: {params}' mapping, not a mapping of 2 keys"),
    ("step-a-number", IN + "filters:\n  - 5\n", "recipe.yaml:4: filters[0]: a step is a name or one 'name: {params}' mapping, not 5"),
    ("step-params-a-list", IN + "filters:\n  - turns: [1, 2]\n", "recipe.yaml:4: filters[0]: turns: a step's parameters are a mapping"),
    ("step-params-a-number", IN + "filters:\n  - turns: 2\n", "recipe.yaml:4: filters[0]: turns: a step's parameters are a mapping"),
    ("tasks-a-mapping", IN + "tasks: {name: t}\n", "recipe.yaml:3: tasks: Input should be a valid list"),
    ("task-without-name", IN + "tasks:\n  - inputs: [chats]\n", "recipe.yaml:4: tasks[0].name: Field required"),
    ("task-empty-name", IN + "tasks:\n  - name: ''\n", "recipe.yaml:4: tasks[0].name: String should have at least 1 character"),
    ("task-no-inputs", IN + "tasks:\n  - name: t\n    inputs: []\n", "recipe.yaml:5: tasks[0].inputs: List should have at least 1 item"),
    ("task-system-mode", IN + "tasks:\n  - name: t\n    system_mode: swap\n", "recipe.yaml:5: tasks[0].system_mode: Input should be 'replace', 'add' or 'keep'"),
    ("structure-not-bool", IN + "filters: [{structure: {alternate: maybe}}]\n", "recipe.yaml:3: filters[0].structure.alternate: Input should be a valid boolean"),
    ("exact-dedup-not-bool", IN + "filters: [{exact_dedup: {per_turn: [1]}}]\n", "filters[0].exact_dedup.per_turn: Input should be a valid boolean"),
    # -- steps -----------------------------------------------------------------------------------
    ("unknown-filter", IN + "filters: [dedup]\n", "recipe.yaml:3: filters[0]: unknown step 'dedup'; choose one of:"),
    ("unknown-transform", IN + "transforms: [{clean: {}}]\n", "recipe.yaml:3: transforms[0]: unknown step 'clean'"),
    ("unknown-task-filter", IN + "tasks:\n  - name: t\n    filters: [nope]\n", "recipe.yaml:5: tasks[0].filters[0]: unknown step 'nope'"),
    ("a-filter-as-transform", IN + "transforms: [turns]\n", "recipe.yaml:3: transforms[0]: 'turns' is a filter; list it under filters"),
    ("turns-min-over-max", IN + "filters:\n  - turns:\n      min: 5\n      max: 2\n", "recipe.yaml:6: filters[0].turns.max: min 5 is greater than max 2"),
    ("tokens-min-over-max", IN + "filters:\n  - tokens: {min: 500, max: 100}\n", "recipe.yaml:4: filters[0].tokens.max: min 500 is greater than max 100"),
    ("turns-max-under-default-min", IN + "filters: [{turns: {max: 1}}]\n", "filters[0].turns.max: min 2 is greater than max 1"),
    ("task-turns-min-over-max", IN + "tasks:\n  - name: t\n    filters: [{turns: {min: 9, max: 3}}]\n",
     "recipe.yaml:5: tasks[0].filters[0].turns.max: min 9 is greater than max 3"),
    ("turns-negative", IN + "filters: [{turns: {min: -1}}]\n", "filters[0].turns.min: Input should be greater than or equal to 0"),
    ("near-dedup-ngram-1e9", IN + "filters: [{near_dedup: {ngram: 1000000000}}]\n", "filters[0].near_dedup.ngram: Input should be less than or equal to 32"),
    ("near-dedup-permutations-1e6", IN + "filters: [{near_dedup: {permutations: 1000000}}]\n",
     "filters[0].near_dedup.permutations: Input should be less than or equal to 1024"),
    ("near-dedup-permutations-4", IN + "filters: [{near_dedup: {permutations: 4}}]\n", "near_dedup.permutations: Input should be greater than or equal to 8"),
    ("near-dedup-threshold-0", IN + "filters: [{near_dedup: {threshold: 0}}]\n", "near_dedup.threshold: Input should be greater than 0"),
    ("near-dedup-threshold-2", IN + "filters: [{near_dedup: {threshold: 2}}]\n", "near_dedup.threshold: Input should be less than or equal to 1"),
    ("quality-ratio-2", IN + "filters: [{quality: {max_symbol_ratio: 2}}]\n", "quality.max_symbol_ratio: Input should be less than or equal to 1"),
    ("language-keep-missing", IN + "filters: [language]\n", "filters[0].language.keep: Field required"),
    ("language-keep-empty", IN + "filters: [{language: {keep: []}}]\n", "language.keep: List should have at least 1 item"),
    ("language-unknown-code", IN + "filters:\n  - language: {keep: [en, english]}\n", "recipe.yaml:4: filters[0].language.keep[1]: unknown language 'english'"),
    ("language-unsure", IN + "filters: [{language: {keep: [en], unsure: maybe}}]\n", "language.unsure: Input should be 'keep' or 'drop'"),
    ("phrases-unknown-list", IN + "filters: [{phrases: {lists: [cliches]}}]\n", "phrases.lists[0]: Input should be 'slop' or 'refusals'"),
    ("phrases-empty-phrase", IN + "filters: [{phrases: {extra: ['as an ai', '']}}]\n", "filters[0].phrases: extra: an empty phrase is in every reply"),
    ("phrases-none", IN + "filters: [{phrases: {lists: []}}]\n", "filters[0].phrases: no phrases to look for"),
    ("regex-invalid", IN + "filters:\n  - regex: {pattern: 'a('}\n", "recipe.yaml:4: filters[0].regex.pattern: not a valid regular expression: missing )"),
    ("regex-no-pattern", IN + "filters: [regex]\n", "filters[0].regex.pattern: Field required"),
    ("regex-empty-pattern", IN + "filters: [{regex: {pattern: ''}}]\n", "regex.pattern: String should have at least 1 character"),
    ("regex-huge-repeat", IN + "filters: [{regex: {pattern: 'a{100000000}'}}]\n", "regex.pattern: too large: it unrolls to about 100,000,000 parts"),
    ("regex-nested-repeats", IN + "filters: [{regex: {pattern: '(?:(?:x{1000}){1000}){1000}'}}]\n", "regex.pattern: too large"),
    ("regex-no-roles", IN + "filters: [{regex: {pattern: x, roles: []}}]\n", "regex.roles: List should have at least 1 item"),
    ("regex-unknown-role", IN + "filters: [{regex: {pattern: x, roles: [bot]}}]\n", "regex.roles[0]: Input should be"),
    ("regex-timeout-0", IN + "filters: [{regex: {pattern: x, timeout: 0}}]\n", "regex.timeout: Input should be greater than 0"),
    ("regex-timeout-an-hour", IN + "filters: [{regex: {pattern: x, timeout: 3600}}]\n", "regex.timeout: Input should be less than or equal to 60"),
    ("pii-mode", IN + "transforms: [{pii: {mode: mask}}]\n", "transforms[0].pii.mode: Input should be 'redact' or 'drop'"),
    ("pii-no-kinds", IN + "transforms: [{pii: {kinds: []}}]\n", "transforms[0].pii.kinds: List should have at least 1 item"),
    ("truncate-without-a-limit", IN + "transforms:\n  - truncate\n", "recipe.yaml:4: transforms[0].truncate.max_tokens: no limit to truncate to"),
    ("window-negative", IN + "transforms: [{window: {min_context: -1}}]\n", "window.min_context: Input should be greater than or equal to 0"),
    # -- inputs and tasks ------------------------------------------------------------------------
    ("two-inputs-one-name", "inputs:\n  - {name: a, file: chats.jsonl}\n  - {name: a, corpus: chitchat}\n",
     "recipe.yaml:3: inputs[1].name: a second input named 'a' (inputs[0] is the first)"),
    ("two-inputs-one-derived-name", "inputs:\n  - file: chats.jsonl\n  - file: sub/chats.jsonl\n",
     "recipe.yaml:3: inputs[1].name: a second input named 'chats'"),
    ("input-no-source", "inputs:\n  - name: x\n", "recipe.yaml:2: inputs[0]: give exactly one of dataset, file, corpus (got none)"),
    ("input-two-sources", "inputs:\n  - {file: chats.jsonl, corpus: chitchat}\n", "inputs[0]: give exactly one of dataset, file, corpus (got file, corpus)"),
    ("input-empty-path", "inputs:\n  - file: ''\n", "recipe.yaml:2: inputs[0].file: give a path"),
    ("input-no-paths", "inputs:\n  - file: []\n", "recipe.yaml:2: inputs[0].file: give a path"),
    ("input-unknown-importer", "inputs:\n  - {file: chats.jsonl, format: whatsap}\n", "inputs[0].format: unknown importer 'whatsap'; choose auto or one of:"),
    ("input-unknown-option", IN + "    options: {me: [Ana], sesion_gap: 2h}\n", "recipe.yaml:3: inputs[0].options: unknown importer option 'sesion_gap'"),
    ("input-option-not-a-duration", IN + "    options: {session_gap: soon}\n", "inputs[0].options: 'soon' is not a duration"),
    ("input-option-infinite-duration", IN + "    options: {session_gap: 1e999}\n", "recipe.yaml:3: inputs[0].options: not a usable value"),
    ("input-option-me-a-number", IN + "    options: {me: 5}\n", "inputs[0].options: me must be a name or a list of names"),
    ("options-on-a-corpus", "inputs:\n  - {corpus: chitchat, options: {me: [Ana]}}\n", "inputs[0]: options is for a file input, and this one reads a corpus"),
    ("tag-on-a-file", "inputs:\n  - {file: chats.jsonl, tag: keep}\n", "inputs[0]: tag is for a dataset input, and this one reads a file"),
    ("format-on-a-dataset", "inputs:\n  - {dataset: chatloom.db, format: openai}\n", "inputs[0]: format is for a file input, and this one reads a dataset"),
    ("unknown-corpus", "inputs:\n  - corpus: wikipedia\n", "inputs[0].corpus: Input should be 'chitchat' or 'chatterbot'"),
    ("task-of-an-unknown-input", IN + "tasks:\n  - name: t\n    inputs: [chats, other]\n", "recipe.yaml:5: tasks[0].inputs[1]: no input named 'other' (inputs: chats)"),
    ("two-tasks-one-name", IN + "tasks:\n  - name: t\n  - name: t\n", "recipe.yaml:5: tasks[1].name: a second task named 't'"),
    # -- found while running -----------------------------------------------------------------------
    ("missing-input-file", "inputs:\n  - file: nothere.jsonl\n", "recipe.yaml:2: inputs[0].file: nothere.jsonl: no such file or folder"),
    ("missing-input-in-a-list", "inputs:\n  - file: [chats.jsonl, gone.jsonl]\n", "recipe.yaml:2: inputs[0].file[1]: gone.jsonl: no such file or folder"),
    ("missing-dataset", "inputs:\n  - dataset: none.db\n", "recipe.yaml:2: inputs[0].dataset: none.db: no such dataset"),
    ("dataset-not-a-dataset", "inputs:\n  - dataset: chats.jsonl\n", "recipe.yaml:2: inputs[0]: "),
    ("input-a-binary-file", "inputs:\n  - {file: binary.jsonl, format: openai}\n", "recipe.yaml:2: inputs[0]: binary.jsonl: this is a binary file"),
    ("input-of-no-known-format", "inputs:\n  - file: other.json\n", "recipe.yaml:2: inputs[0]: other.json: cannot tell the format of this file; pass format FORMAT"),
    ("split-count-of-all", IN + "split: 3\n", "recipe.yaml:3: split: a count of 3 leaves no conversation for training: there are 3 after the steps"),
    ("split-count-over-what-filters-leave", IN + "split: 2\nfilters: [{turns: {min: 4}}]\n",
     "recipe.yaml:3: split: a count of 2 leaves no conversation for training: there are 1 after the steps"),
    ("catastrophic-regex", IN + "filters:\n  - regex: {pattern: '(a|aa)+$', timeout: 0.2}\n",
     "recipe.yaml:4: filters[0].regex.pattern: a search took over 0.2 s (a message of 51 characters in conversation"),
    ("catastrophic-regex-default-timeout", IN + "filters: [{regex: {pattern: '(a|aa)+$'}}]\n",
     "recipe.yaml:3: filters[0].regex.pattern: a search took over 1 s"),
    ("catastrophic-regex-in-a-task", IN + "tasks:\n  - name: t\n    filters: [{regex: {pattern: '(a|aa)+$', timeout: 0.2, keep_matching: true}}]\n",
     "recipe.yaml:5: tasks[0].filters[0].regex.pattern: a search took over 0.2 s"),
]


@pytest.fixture
def chats(tmp_path: Path) -> Path:
    (tmp_path / "binary.jsonl").write_bytes(bytes(range(256)) * 8)
    (tmp_path / "other.json").write_text('{"what": "not a chat"}\n')
    return write_jsonl(tmp_path / "chats.jsonl", [conv("hi", "hello", id="c1"), conv("a" * 50 + "b", "ok", id="c2"),
                                                  conv("q1", "a1", "q2", "a2", id="c3")])


def test_there_are_enough_cases() -> None:
    assert len(CASES) >= 70 and len({name for name, _, _ in CASES}) == len(CASES)


@pytest.mark.parametrize(("text", "expected"), [pytest.param(text, expected, id=name) for name, text, expected in CASES])
def test_a_malformed_recipe(tmp_path: Path, run: Callable, chats: Path, text: str | bytes, expected: str) -> None:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_bytes(text if isinstance(text, bytes) else text.encode())
    ran = {}

    def once(*args: str) -> Result:  # outcome's run, kept to read its line
        ran[args] = ran.get(args) or run(*args)
        return ran[args]

    assert outcome(once, ["build", "recipe.yaml", "-o", "out"], file=recipe) == "error"
    line = once("build", "recipe.yaml", "-o", "out").stderr.strip()
    assert line.startswith("error: recipe.yaml") and expected in line, line
    assert not (tmp_path / "out").exists()  # nothing half-written, not even the folder


def test_a_folder_or_a_missing_file_as_the_recipe(tmp_path: Path, run: Callable) -> None:
    (tmp_path / "recipe.yaml").mkdir()
    assert outcome(run, ["build", "recipe.yaml"], file="recipe.yaml") == "error"
    assert run("build", "recipe.yaml").stderr == "error: recipe.yaml: a folder, not a recipe file (chatloom build --example prints one)\n"
    assert outcome(run, ["build", "missing.yaml", "--dry-run"], file="missing.yaml") == "error"
    assert run("build", "missing.yaml").stderr == "error: missing.yaml: No such file or directory\n"


def test_the_recipes_output_is_a_file(tmp_path: Path, run: Callable, chats: Path) -> None:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(IN + "output: chats.jsonl\n")
    assert outcome(run, ["build", "recipe.yaml"], file=recipe) == "error"
    assert run("build", "recipe.yaml").stderr == "error: recipe.yaml:3: output: chats.jsonl: a file, not an output folder\n"


def test_dry_run_names_the_recipe_too(tmp_path: Path, run: Callable, chats: Path) -> None:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("inputs:\n  - file: chats.jsonl\n  - file: gone.jsonl\n")
    assert outcome(run, ["build", "recipe.yaml", "--dry-run"], file=recipe) == "error"
    assert run("build", "recipe.yaml", "--dry-run").stderr == "error: recipe.yaml:3: inputs[1].file: gone.jsonl: no such file or folder\n"


def test_a_regex_timeout_in_a_worker_process_names_the_key(tmp_path: Path, run: Callable, chats: Path) -> None:
    """The step's error crosses the process boundary whole (a RecipeError pickles its key)."""
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(IN + "filters:\n  - regex: {pattern: '(a|aa)+$', timeout: 0.2}\n")
    assert outcome(run, ["build", "recipe.yaml", "-o", "out", "--workers", "2"], file=recipe) == "error"
    assert not (tmp_path / "out").exists()


def test_a_failed_build_keeps_an_existing_output_folder_as_it_was(tmp_path: Path, run: Callable, chats: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    (tmp_path / "recipe.yaml").write_text(IN + "split: 3\n")
    assert outcome(run, ["build", "recipe.yaml", "-o", "out"], file="recipe.yaml") == "error"
    assert sorted(p.name for p in out.iterdir()) == ["mine.txt"]


def test_a_sound_recipe_with_every_limit_at_its_edge_builds(tmp_path: Path, run: Callable, chats: Path) -> None:
    """The limits are no tighter than they say: at each one, the recipe builds."""
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(IN + "split: 1\nmax_tokens: 64\n"
                      "filters:\n  - {near_dedup: {ngram: 32, permutations: 1024}}\n  - {turns: {min: 2, max: 2}}\n"
                      "  - {regex: {pattern: '(?:x{100}){980}', timeout: 60}}\n"
                      "transforms: [truncate]\n" + "# " + "x" * 1000 + "\n")
    result = run("build", "recipe.yaml", "-o", "out")
    assert result.exit_code == 0, result.stderr
    assert "wrote 1 conversations to out/data/val.jsonl" in result.stdout
