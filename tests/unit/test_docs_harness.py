"""The docs harness (tests/support/docs.py): how blocks are found and output is compared."""

from __future__ import annotations

import pytest

from tests.support.docs import _console_steps, matches, normalise, parse_blocks

DOC = """# Title

```bash
echo hi
```

```output
hi
```

```python
# not run: needs a real OpenAI key
print(1)
```

```json
{"a": 1}
```

````console
$ modelport endpoints list
NAME  STATE
```inner```
````
"""


def test_blocks_are_found_with_their_tags_lines_and_outputs() -> None:
    blocks = parse_blocks(DOC, "doc.md")
    assert [(b.lang, b.line) for b in blocks] == [("bash", 3), ("python", 11), ("json", 16), ("console", 20)]
    assert blocks[0].expected == "hi\n"
    assert blocks[0].runnable
    assert blocks[1].skip_reason == "needs a real OpenAI key" and not blocks[1].runnable
    assert not blocks[2].runnable
    assert blocks[3].text == "$ modelport endpoints list\nNAME  STATE\n```inner```\n"


def test_an_output_block_must_follow_a_runnable_block() -> None:
    with pytest.raises(ValueError, match=r"doc\.md:1: an output block"):
        parse_blocks("```output\nx\n```\n", "doc.md")


def test_a_not_run_marker_needs_a_reason() -> None:
    with pytest.raises(ValueError, match="not run: <reason>"):
        parse_blocks("```bash\n# not run\nls\n```\n", "doc.md")


def test_normalise_collapses_blanks_and_replaces_volatile_values() -> None:
    text = "\nNAME   CREATED              TOKEN\nx  2026-11-21T22:49:57Z  dapi0123456789abcdef\n\n"
    assert normalise(text) == ["NAME CREATED TOKEN", "x <TIME> <TOKEN>"]
    assert normalise("id 0feb14433eb672f26e7ef4d725dee7b1 at 2026-11-21 22:49:57") == ["id <ID> at <TIME>"]


def test_matches_with_ellipses_inside_lines_and_as_whole_lines() -> None:
    assert matches("a\n...\nz", "a\nb\nc\nz")
    assert matches("a\n...\nz", "a\nz")
    assert matches('{"predictions": [...]}', '{"predictions": [0, 1]}')
    assert not matches("a\nz", "a\nb\nz")
    assert not matches("a\n...\nz", "a\nb")
    assert not matches("x...", "yx")


def test_console_steps_split_commands_and_outputs_with_continuations() -> None:
    text = "$ echo a \\\n  b\na b\n$ true\n$ echo c\nc\n"
    assert _console_steps(text) == [("echo a \\\n  b", "a b"), ("true", ""), ("echo c", "c")]
