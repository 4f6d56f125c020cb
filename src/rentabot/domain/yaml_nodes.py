"""YAML nodes as the descriptor reads them: the standard tags, where a node is, and what
it is, in words for a lab operator."""

from __future__ import annotations

from typing import Final

from yaml.nodes import MappingNode, Node, SequenceNode

YAML_TAG: Final = "tag:yaml.org,2002:"
STR: Final = YAML_TAG + "str"
NULL: Final = YAML_TAG + "null"
BOOL: Final = YAML_TAG + "bool"
INT: Final = YAML_TAG + "int"
FLOAT: Final = YAML_TAG + "float"
BINARY: Final = YAML_TAG + "binary"
MERGE: Final = YAML_TAG + "merge"
SEQ: Final = YAML_TAG + "seq"
MAP: Final = YAML_TAG + "map"
#: Scalars YAML 1.1 resolves to types a descriptor has no use for (`2024-05-01`, `=`, `<<` as
#: a value): the operator meant the text, so keep it as written rather than refuse it.
AS_WRITTEN: Final = frozenset((YAML_TAG + "timestamp", YAML_TAG + "value", MERGE))


def line_of(node: Node) -> int:
    """The 1-based line where the node starts."""
    line: int = node.start_mark.line
    return line + 1


def describe(node: Node) -> str:
    """What kind of YAML value the node is, for messages."""
    if isinstance(node, SequenceNode):
        return "a list"
    if isinstance(node, MappingNode):
        return "a mapping"
    tag = node.tag
    if tag == NULL:
        return "null"
    if tag == BOOL:
        return f"a boolean ({node.value})"
    if tag in (INT, FLOAT):
        return f"a number ({node.value})"
    if tag == BINARY:
        return "binary data"
    if tag == STR or tag in AS_WRITTEN:
        return "a string"
    return f"a value tagged {short_tag(tag)!r}"


def short_tag(tag: str) -> str:
    """A tag the way it is written in YAML: `!!int`, `!custom`."""
    return "!!" + tag.removeprefix(YAML_TAG) if tag.startswith(YAML_TAG) else tag


def char_name(char: str) -> str:
    """A character named for a lab operator: `a NUL character (U+0000)`."""
    code = ord(char)
    if char in _CHAR_NAMES:
        kind = _CHAR_NAMES[char]
    elif code < 0x20 or 0x7F <= code <= 0x9F:
        kind = "a control character"
    elif 0xD800 <= code <= 0xDFFF:
        kind = "an unpaired surrogate"
    else:
        kind = "the character"
    return f"{kind} (U+{code:04X})"


_CHAR_NAMES: Final = {"\x00": "a NUL character", "\n": "a line break", "\r": "a carriage return"}
