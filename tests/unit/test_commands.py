"""The in-chat command parser: syntax, where commands may not be, stripping, and properties."""

import time
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from protocol.commands import (
    DEFAULT_PREFIX,
    Command,
    parse_commands,
    strip_commands,
    valid_prefix,
)


def names(text: str, prefix: str = DEFAULT_PREFIX) -> list[str]:
    return [c.name for c in parse_commands(text, prefix)]


def stripped(text: str, prefix: str = DEFAULT_PREFIX) -> str:
    return strip_commands(text, parse_commands(text, prefix))


# ------------------------------------------------------------------------------------------------
# Syntax
# ------------------------------------------------------------------------------------------------


def test_bare_command_and_spans() -> None:
    text = "hi !/hello there"
    [command] = parse_commands(text)
    assert command == Command("hello", (), (), 3, 10, "!/hello")
    assert text[command.start : command.end] == command.raw


def test_positional_and_keyword_arguments() -> None:
    [command] = parse_commands("!/set(model=anthropic:claude-sonnet-4-5, temperature = 0.2)")
    assert command.name == "set"
    assert command.args == ()
    assert command.kwargs == (("model", "anthropic:claude-sonnet-4-5"), ("temperature", "0.2"))
    [command] = parse_commands("!/unset( model ,temperature )")
    assert command.args == ("model", "temperature")


def test_quoted_values_hold_commas_parentheses_and_equals() -> None:
    [command] = parse_commands(
        """!/set(project="billing, (v2)", note='a=b, c)', tag="say \\"hi\\"", w='it\\'s \\\\ ok')"""
    )
    assert command.kwargs == (
        ("project", "billing, (v2)"),
        ("note", "a=b, c)"),
        ("tag", 'say "hi"'),
        ("w", "it's \\ ok"),
    )


def test_quoted_positional_keeps_equals_and_other_backslashes() -> None:
    [command] = parse_commands(r'!/help("a=b", "C:\new\dir")')
    assert command.args == ("a=b", r"C:\new\dir")
    assert command.kwargs == ()


def test_bare_values_keep_apostrophes_and_balanced_parentheses() -> None:
    [command] = parse_commands("!/set(project=Bob's app, x=f(a, b))")
    assert command.kwargs == (("project", "Bob's app"), ("x", "f(a, b)"))


def test_empty_parentheses_and_empty_pieces() -> None:
    assert parse_commands("!/help()")[0].args == ()
    assert parse_commands("!/unset(model, , temperature,)")[0].args == ("model", "temperature")
    assert parse_commands('!/set(project="")')[0].kwargs == (("project", ""),)
    assert parse_commands("!/set(project=)")[0].kwargs == (("project", ""),)


def test_arguments_may_span_lines() -> None:
    [command] = parse_commands("!/set(\n  model=openai:gpt-4o,\n  temperature=1\n)\nthen text")
    assert command.kwargs == (("model", "openai:gpt-4o"), ("temperature", "1"))


def test_several_commands_in_one_message() -> None:
    text = "!/set(model=openai:gpt-4o) please !/hello and !/models\n!/oneoff(gemini:x)"
    assert names(text) == ["set", "hello", "models", "oneoff"]
    assert names("!/a!/b !/c()") == ["a", "b", "c"]


@pytest.mark.parametrize(
    "text",
    [
        "!/hello write a poem",
        "write !/hello a poem",
        "write a poem !/hello",
        "write a poem!/hello.",
    ],
)
def test_command_at_start_middle_or_end(text: str) -> None:
    assert names(text) == ["hello"]


def test_names_and_keys_fold_case_and_underscores() -> None:
    [command] = parse_commands("!/Set_Thing(Reasoning_Effort=High, LOOP-detection=on)")
    assert command.name == "set-thing"
    assert command.kwargs == (("reasoning-effort", "High"), ("loop-detection", "on"))
    assert command.kwarg("REASONING_EFFORT") == "High"
    assert command.kwarg("missing") is None
    assert parse_commands("!/x(a=1, a=2)")[0].kwarg("a") == "2"


@pytest.mark.parametrize("prefix", ["##", "@@proxy:", "\u00a7\u00a7", "!!!!!!!!!!"])
def test_custom_prefixes(prefix: str) -> None:
    text = f"first {prefix}hello then {prefix}set(model=openai:gpt-4o) and !/models"
    commands = parse_commands(text, prefix)
    assert [c.name for c in commands] == ["hello", "set"]
    assert commands[1].raw == f"{prefix}set(model=openai:gpt-4o)"
    assert strip_commands(text, commands) == "first then and !/models"


def test_prefix_repeated_characters() -> None:
    assert names("###hello", "##") == ["hello"]
    assert names("## Heading\n##hello", "##") == ["hello"]


@pytest.mark.parametrize(
    "text",
    [
        "!/",
        "just !/ alone",
        "!/ hello",
        "!/1abc",
        "!/(x)",
        "!/-x",
        "!/set(model=x",
        "!/set(model=x, project='unclosed)",
        '!/set(project="a, b)',
        "!/help(",
        "!/set(x=f(a)",
        "no prefix here",
        "",
    ],
)
def test_not_commands(text: str) -> None:
    assert parse_commands(text) == []
    assert stripped(text) == text


def test_unclosed_occurrence_does_not_hide_a_later_command() -> None:
    text = "!/set(model=x and later !/hello"
    [command] = parse_commands(text)
    assert command.name == "hello"
    assert strip_commands(text, [command]) == "!/set(model=x and later"


def test_space_before_parenthesis_ends_the_command() -> None:
    [command] = parse_commands("!/set (model=x)")
    assert (command.name, command.args, command.kwargs) == ("set", (), ())


def test_overlong_arguments_are_not_a_command() -> None:
    assert parse_commands("!/set(project=" + "x" * 5000 + ")") == []


def test_pathological_unclosed_occurrences_stay_linear() -> None:
    started = time.perf_counter()
    assert parse_commands("!/a(" * 20_000) == []
    assert parse_commands('!/a("' * 20_000) == []
    assert time.perf_counter() - started < 2
    # after a few unclosed ones, a real command still counts
    assert names("!/a(" * 100 + "\n!/hello(x)") == ["hello"]


def test_invalid_prefix_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        parse_commands("text", "!")


@pytest.mark.parametrize(
    ("prefix", "valid"),
    [
        ("!/", True),
        ("##", True),
        ("@@proxy:", True),
        ("x" * 10, True),
        ("!", False),
        ("x" * 11, False),
        ("! /", False),
        ("!\t", False),
        ("!\n", False),
        ("!\x00", False),
        ("\u00a0\u00a0", False),
        ("", False),
    ],
)
def test_valid_prefix(prefix: str, valid: bool) -> None:
    assert valid_prefix(prefix) is valid


# ------------------------------------------------------------------------------------------------
# Where commands are never found
# ------------------------------------------------------------------------------------------------


def test_fenced_code_blocks() -> None:
    text = "before !/hello\n```python\n!/set(model=x)\nprint(1)\n```\nafter !/models"
    assert names(text) == ["hello", "models"]
    assert stripped(text) == "before\n```python\n!/set(model=x)\nprint(1)\n```\nafter"


def test_tilde_fences_and_fence_lengths() -> None:
    assert names("~~~\n!/hello\n~~~\n!/models") == ["models"]
    # a closing fence must be at least as long as the opening one and of the same character
    assert names("````\n!/a\n```\n!/b\n~~~~\n!/c\n````\n!/d") == ["d"]


def test_unclosed_fence_runs_to_the_end() -> None:
    assert names("!/hello\n```\n!/set(model=x)\nmore !/models") == ["hello"]


def test_indented_fence() -> None:
    assert names("1. list\n    ```\n    !/hello\n    ```\n!/models") == ["models"]


def test_one_line_triple_backticks_are_inline_code() -> None:
    assert names("```!/hello``` !/models") == ["models"]


def test_inline_code_spans() -> None:
    assert names("type `!/hello` or ``!/set(a=`b`)`` to !/models") == ["models"]
    # an unmatched backtick is literal and hides nothing
    assert names("a ` b !/hello") == ["hello"]
    # a code span does not reach across a blank line (paragraphs)
    assert names("a `b\n\n!/hello `c") == ["hello"]
    # a command that would run into a code span is not a command
    assert names('!/set(project="`x`")') == []


def test_quoted_history_lines() -> None:
    text = "> earlier you said !/hello\n  > !/models\n>!/set(a=1)\nnow !/help"
    assert names(text) == ["help"]
    assert stripped(text) == "> earlier you said !/hello\n  > !/models\n>!/set(a=1)\nnow"


def test_arguments_running_into_a_quote_line_are_not_a_command() -> None:
    assert names("!/set(a=1,\n> b=2)") == []


# ------------------------------------------------------------------------------------------------
# Stripping
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("!/hello", ""),
        ("  !/hello  \n\n", ""),
        ("!/set(model=openai:gpt-4o) !/hello", ""),
        ("!/set(model=openai:gpt-4o)\n\nWrite a poem", "Write a poem"),
        ("Write a poem !/hello", "Write a poem"),
        ("Write  !/hello  a poem", "Write a poem"),
        ("Write a poem!/hello.", "Write a poem."),
        ("a\n!/hello\nb", "a\nb"),
        ("a !/hello\nb", "a\nb"),
        ("a\n!/hello b", "a\nb"),
        ("a\n  !/hello b", "a\n  b"),
        ("a\n!/hello\n  b", "a\n  b"),
        ("Para1\n\n!/hello\n\nPara2", "Para1\n\nPara2"),
        ("Para1\n\n!/hello\nPara2", "Para1\n\nPara2"),
        ("a\n\n!/x\n!/y\n\n\n\nb", "a\n\nb"),
        ("a\r\n!/hello\r\nb", "a\r\nb"),
        ("keep  double  spaces !/hello\n\n\n\nand   here", "keep  double  spaces\n\nand   here"),
    ],
)
def test_strip_tidies_where_commands_were(text: str, expected: str) -> None:
    assert stripped(text) == expected


def test_strip_keeps_everything_else_byte_for_byte() -> None:
    body = "def f(x):\n    return  x\t# done\n\n\n```\n!/hello\n```"
    assert stripped(body + "\n\n!/models") == body
    assert stripped("!/models\n" + body) == body


def test_strip_without_commands_is_identity() -> None:
    text = "  untouched \n\n text  "
    assert strip_commands(text, []) == text


def test_strip_ignores_overlapping_or_foreign_spans() -> None:
    text = "a !/hello b"
    [command] = parse_commands(text)
    assert strip_commands(text, [command, command]) == "a b"
    assert strip_commands(text, [Command("x", (), (), 5, 99, "")]) == "a !/hello b"


# ------------------------------------------------------------------------------------------------
# Properties
# ------------------------------------------------------------------------------------------------

PREFIXES = st.text(
    alphabet=st.characters(blacklist_categories=("C", "Z")), min_size=2, max_size=10
).filter(valid_prefix)
TRICKY = st.sampled_from(
    ["(", ")", '"', "'", "`", "```\n", "~~~", "\n", "> ", ",", "=", "\\", " ", "a", "_", "-"]
)


@st.composite
def texts_with_prefix(draw: st.DrawFn) -> tuple[str, str]:
    prefix = draw(st.one_of(st.just(DEFAULT_PREFIX), PREFIXES))
    parts = draw(st.lists(st.one_of(st.text(max_size=12), st.just(prefix), TRICKY), max_size=30))
    return "".join(parts), prefix


@settings(max_examples=300, deadline=None)
@given(texts_with_prefix())
def test_never_raises_and_spans_are_consistent(case: tuple[str, str]) -> None:
    text, prefix = case
    commands = parse_commands(text, prefix)
    previous_end = 0
    for command in commands:
        assert previous_end <= command.start < command.end <= len(text)
        assert text[command.start : command.end] == command.raw
        assert command.raw.startswith(prefix)
        assert command.name == command.name.lower() and "_" not in command.name
        previous_end = command.end
    strip_commands(text, commands)


@settings(max_examples=200, deadline=None)
@given(st.text(), PREFIXES)
def test_text_without_prefix_is_untouched(text: str, prefix: str) -> None:
    assume(prefix not in text)
    commands = parse_commands(text, prefix)
    assert commands == []
    assert strip_commands(text, commands) == text


LETTERS = "abcxyzABCXYZ"
NAME = st.builds(
    str.__add__, st.sampled_from(LETTERS), st.text(alphabet=LETTERS + "019_-", max_size=8)
)
BARE = st.builds(
    lambda a, b, c: a + b + c,
    st.sampled_from(LETTERS + "019"),
    st.text(alphabet=LETTERS + "09:/. -", max_size=10),
    st.sampled_from(LETTERS + "019"),
)
QUOTED_CONTENT = st.text(alphabet="abc ,()=\"'\\!/", max_size=12)
# fragments hold no prefix character, no backtick and no parenthesis: no quoting tricks
FRAGMENT = st.text(alphabet="abcXYZ019 .,:;?~>-\n\t", max_size=15)
FENCE_FRAGMENT = st.text(alphabet="abcXYZ019 .,:;?>-\n\t", max_size=15)
SEPARATOR = st.sampled_from(["", " ", "  ", "\n", "\n\n", " \n "])
Expected = tuple[str, tuple[str, ...], tuple[tuple[str, str], ...]]


def quoted(value: str) -> tuple[str, str]:
    """(the value written in double quotes with escapes, the value)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"', value


def fold(name: str) -> str:
    return name.lower().replace("_", "-")


@st.composite
def commands(draw: st.DrawFn) -> tuple[str, Expected]:
    """A command's text, and the (name, args, kwargs) the parser should read from it."""
    name = draw(NAME)
    values = draw(
        st.lists(st.one_of(BARE.map(lambda v: (v, v)), QUOTED_CONTENT.map(quoted)), max_size=3)
    )
    keys = [draw(st.one_of(st.none(), NAME)) for _ in values]
    pieces = [
        raw if key is None else f"{key}={raw}" for key, (raw, _) in zip(keys, values, strict=True)
    ]
    parens = bool(pieces) or draw(st.booleans())
    text = f"!/{name}" + (f"({', '.join(pieces)})" if parens else "")
    args = tuple(value for key, (_, value) in zip(keys, values, strict=True) if key is None)
    kwargs = tuple(
        (fold(key), value) for key, (_, value) in zip(keys, values, strict=True) if key is not None
    )
    return text, (fold(name), args, kwargs)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(FRAGMENT, SEPARATOR, commands(), SEPARATOR), max_size=6), FRAGMENT)
def test_strip_removes_every_command(parts: list[tuple[str, str, Any, str]], tail: str) -> None:
    text = "".join(f + s1 + cmd[0] + s2 for f, s1, cmd, s2 in parts) + tail
    assert parse_commands(strip_commands(text, parse_commands(text))) == []


@settings(max_examples=80, deadline=None)
@given(st.lists(commands(), min_size=1, max_size=5), FRAGMENT.map(lambda s: s.strip()))
def test_commands_round_trip(cmds: list[tuple[str, Expected]], words: str) -> None:
    text = " ".join(raw for raw, _ in cmds) + "\n" + words
    parsed = parse_commands(text)
    assert [(c.name, c.args, c.kwargs) for c in parsed] == [expected for _, expected in cmds]
    assert strip_commands(text, parsed) == words.strip()


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.one_of(FENCE_FRAGMENT, commands().map(lambda c: c[0])), max_size=8),
    st.sampled_from([("```", "```"), ("~~~", "~~~~"), ("````", "````"), ("```python", "```")]),
)
def test_commands_inside_fences_are_not_found(inner: list[str], fences: tuple[str, str]) -> None:
    fence, closing = fences
    block = fence + "\n" + "\n".join(inner) + "\n" + closing + "\n"
    text = block + "!/hello after"
    assert [c.start for c in parse_commands(text)] == [len(block)]
    unclosed = "text\n" + fence + "\n" + " ".join(inner)
    assert parse_commands(unclosed) == []
