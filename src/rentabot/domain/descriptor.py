"""Read the resource descriptor: the YAML file that lists the lab's resources.

The format is the original rent-a-bot map ``name: {description, endpoint, tags}``, extended
with ``tags`` as a YAML list and a ``properties`` map of strings. Where the original crashed
with a traceback or silently guessed (empty file, entry without a body, duplicate names), this
parser stops with one DescriptorError naming the file, the line and what to fix.

The YAML is composed into nodes and walked here rather than loaded into Python objects: only
the nodes still know their line, and only they show duplicate keys, which a plain load would
silently collapse into "the last one wins".
"""

from __future__ import annotations

import re
from typing import Any, Final

import yaml
from yaml.nodes import Node, ScalarNode, SequenceNode

from rentabot.domain.descriptor_entries import MAX_NAME_LENGTH, EntryWalker
from rentabot.domain.errors import DescriptorError
from rentabot.domain.model import ResourceSpec
from rentabot.domain.yaml_nodes import MAP, NULL, SEQ, STR, char_name, line_of

__all__ = ["MAX_NAME_LENGTH", "parse_descriptor"]

try:
    from yaml import CSafeLoader as _BaseLoader
except ImportError:  # PyYAML built without libyaml: same API, several times slower
    from yaml import SafeLoader as _BaseLoader  # type: ignore[assignment]  # same loader API


# The YAML reader refuses characters outside this set, but reports a character offset, not a
# line; finding them first gives the operator a line. Lone surrogates are outside it too, and
# would otherwise crash libyaml's UTF-8 encoding of the text.
_NOT_PRINTABLE: Final = re.compile(
    r"[^\t\n\r\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"
)
_LINE_BREAK: Final = re.compile(r"\r\n|[\r\n\x85\u2028\u2029]")

_EMPTY_REASON: Final = (
    "the descriptor is empty; to run with no resources, leave RENTABOT_RESOURCE_DESCRIPTOR"
    " unset, or write {} in the file"
)
_SECOND_DOCUMENT: Final = "but found another document"


def parse_descriptor(data: str | bytes, source: str) -> list[ResourceSpec]:
    """Parse a resource descriptor (YAML). Raises DescriptorError(source, line, reason).

    `data` is the file's content (bytes must be UTF-8); `source` names the file in messages.
    Returns the resources in file order, each with the 1-based line of its name.
    """
    return _parse(_decode(data, source), source)


def _parse(text: str, source: str) -> list[ResourceSpec]:
    """Compose and walk the text; the node tree dies when this returns."""
    loader = _Loader(text)
    try:
        root = _compose(loader, text, source)
        return EntryWalker(loader, source).resources(root)
    finally:
        loader.dispose()


class _Loader(_BaseLoader):
    """The safe loader, with PyYAML's tag resolution memoized.

    Composing spends much of its time resolving tags, yet a large lab repeats the same
    words thousands of times (keys, tags) and the resolution of a plain scalar depends on its
    text alone: resolving each distinct text once gives the same tags, faster.
    """

    def __init__(self, stream: str | bytes) -> None:
        super().__init__(stream)
        self._plain_tags: dict[str, str] = {}

    def resolve(self, kind: type[Node], value: Any, implicit: Any) -> str:
        """The tag YAML gives a node written without one, as Resolver.resolve would."""
        # With no path resolvers registered (none are), Resolver.resolve makes a quoted scalar
        # a str, a collection a seq or map, and a plain scalar whatever its text matches.
        # For scalars `value` is the text and `implicit` is (plain, quoted); for collections
        # they are None and a bool: hence Any.
        if kind is ScalarNode:
            if not implicit[0]:
                return STR
            tag = self._plain_tags.get(value)
            if tag is None:
                # types-PyYAML leaves Resolver.resolve unannotated; it returns the tag string.
                tag = super().resolve(kind, value, implicit)  # type: ignore[no-untyped-call]
                self._plain_tags[value] = tag
            return tag
        return SEQ if kind is SequenceNode else MAP


def _decode(data: str | bytes, source: str) -> str:
    """The text of the descriptor, refused if it is not UTF-8 or holds characters YAML bans."""
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            before = data[: exc.start].decode("utf-8")
            raise DescriptorError(
                source,
                _line_at(before, len(before)),
                f"the file is not valid UTF-8 (byte 0x{data[exc.start]:02x}); save it as UTF-8",
            ) from exc
    else:
        text = data
    bad = _NOT_PRINTABLE.search(text)
    if bad is not None:
        raise DescriptorError(
            source,
            _line_at(text, bad.start()),
            f"the file contains {char_name(bad.group())}, which YAML does not allow;"
            " a descriptor must be plain UTF-8 text",
        )
    return text


def _compose(loader: _Loader, text: str, source: str) -> Node:
    """The document's root node; refuses syntax errors, several documents and emptiness."""
    try:
        root = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        raise _syntax_error(exc, text, source) from exc
    except yaml.YAMLError as exc:  # unmarked errors: not expected once _decode has passed
        raise DescriptorError(source, None, f"invalid YAML: {exc}") from exc
    if root is None:
        raise DescriptorError(source, None, _EMPTY_REASON)
    if isinstance(root, ScalarNode) and root.tag == NULL:
        # A written `null` or `~` has a line; a bare `---` has nothing to point at.
        raise DescriptorError(source, line_of(root) if root.value else None, _EMPTY_REASON)
    return root


def _syntax_error(exc: yaml.MarkedYAMLError, text: str, source: str) -> DescriptorError:
    """A DescriptorError at the line PyYAML blames, with its own words for the problem."""
    mark = exc.problem_mark or exc.context_mark
    line = mark.line + 1 if mark is not None else None
    # PyYAML reports a second document only through this text (C and Python loaders alike).
    if exc.problem == _SECOND_DOCUMENT:
        return DescriptorError(
            source,
            line,
            "a second YAML document starts here (a second '---');"
            " the descriptor must be a single mapping of resources",
        )
    reason = f"invalid YAML: {exc.problem or exc.context}"
    if exc.problem and exc.context and exc.context_mark is not None:
        reason += f" ({exc.context} on line {exc.context_mark.line + 1})"
    if line is not None:
        lines = _LINE_BREAK.split(text)
        if line <= len(lines) and lines[line - 1].lstrip(" ").startswith("\t"):
            reason += "; indent with spaces, YAML does not allow tabs for indentation"
    return DescriptorError(source, line, reason)


def _line_at(text: str, index: int) -> int:
    """The 1-based line of text[index], counting line breaks the way YAML does."""
    return len(_LINE_BREAK.findall(text, 0, index)) + 1
