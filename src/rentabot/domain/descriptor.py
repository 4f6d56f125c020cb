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

import difflib
import enum
import re
from collections.abc import Callable
from typing import Any, Final, Literal

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from rentabot.domain.errors import DescriptorError
from rentabot.domain.model import ResourceSpec

try:
    from yaml import CSafeLoader as _BaseLoader
except ImportError:  # PyYAML built without libyaml: same API, several times slower
    from yaml import SafeLoader as _BaseLoader  # type: ignore[assignment]  # same loader API

#: Longest resource name accepted, in characters.
MAX_NAME_LENGTH: Final = 200

_ALLOWED_KEYS: Final = ("description", "endpoint", "tags", "properties")
_ALLOWED_TEXT: Final = ", ".join(_ALLOWED_KEYS)
_FIELDS: Final = frozenset(_ALLOWED_KEYS)

_YAML_TAG: Final = "tag:yaml.org,2002:"
_STR: Final = _YAML_TAG + "str"
_NULL: Final = _YAML_TAG + "null"
_BOOL: Final = _YAML_TAG + "bool"
_INT: Final = _YAML_TAG + "int"
_FLOAT: Final = _YAML_TAG + "float"
_BINARY: Final = _YAML_TAG + "binary"
_MERGE: Final = _YAML_TAG + "merge"
_SEQ: Final = _YAML_TAG + "seq"
_MAP: Final = _YAML_TAG + "map"
#: Scalars YAML 1.1 resolves to types a descriptor has no use for (`2024-05-01`, `=`, `<<` as
#: a value): the operator meant the text, so keep it as written rather than refuse it.
_AS_WRITTEN: Final = frozenset((_YAML_TAG + "timestamp", _YAML_TAG + "value", _MERGE))
_CONSTRUCTORS: Final[dict[str, Callable[[SafeConstructor, ScalarNode], object]]] = {
    _BOOL: SafeConstructor.construct_yaml_bool,
    _INT: SafeConstructor.construct_yaml_int,
    _FLOAT: SafeConstructor.construct_yaml_float,
}

# The YAML reader refuses characters outside this set, but reports a character offset, not a
# line; finding them first gives the operator a line. Lone surrogates are outside it too, and
# would otherwise crash libyaml's UTF-8 encoding of the text.
_NOT_PRINTABLE: Final = re.compile(
    r"[^\t\n\r\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"
)
_LINE_BREAK: Final = re.compile(r"\r\n|[\r\n\x85\u2028\u2029]")
_CONTROL_IN_NAME: Final = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_CONTROL_IN_VALUE: Final = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")
# A description is for people: a block scalar (`|`) may spread it over several lines.
_CONTROL_IN_TEXT: Final = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
# \s is Unicode whitespace, exactly what str.split() (and so ResourceSpec.tags) splits on.
_BAD_IN_TAG: Final = re.compile(r"[\s\x00-\x1f\x7f-\x9f]")
_PROPERTY_KEY: Final = re.compile(r"[A-Za-z0-9_.-]+")

_EMPTY_REASON: Final = (
    "the descriptor is empty; to run with no resources, leave RENTABOT_RESOURCE_DESCRIPTOR"
    " unset, or write {} in the file"
)
_SECOND_DOCUMENT: Final = "but found another document"


class _Unsupported(enum.Enum):
    """Marks a scalar whose YAML type no descriptor field accepts (binary data, custom tags)."""

    VALUE = 0


_UNSUPPORTED: Final = _Unsupported.VALUE

_Scalar = str | int | float | bool | None | Literal[_Unsupported.VALUE]
#: A checked key with its key node and value node.
_Pair = tuple[str, Node, Node]


class _KeyKind(enum.Enum):
    """Which mapping a key belongs to; the value names it in messages."""

    ENTRY = "key"
    PROPERTY = "property"


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
        return _Walker(loader, source).resources(root)
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
                return _STR
            tag = self._plain_tags.get(value)
            if tag is None:
                # types-PyYAML leaves Resolver.resolve unannotated; it returns the tag string.
                tag = super().resolve(kind, value, implicit)  # type: ignore[no-untyped-call]
                self._plain_tags[value] = tag
            return tag
        return _SEQ if kind is SequenceNode else _MAP


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
            f"the file contains {_char_name(bad.group())}, which YAML does not allow;"
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
    if isinstance(root, ScalarNode) and root.tag == _NULL:
        # A written `null` or `~` has a line; a bare `---` has nothing to point at.
        raise DescriptorError(source, _line(root) if root.value else None, _EMPTY_REASON)
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


class _Walker:
    """Turns the composed node tree into ResourceSpecs, checking every rule on the way."""

    def __init__(self, loader: _Loader, source: str) -> None:
        self._loader = loader
        self._source = source
        # Merge sources already flattened, by (node identity, key kind): an anchor merged into
        # many entries is checked once, and a chain of merges stays linear.
        self._flattened: dict[tuple[int, _KeyKind], list[_Pair]] = {}
        self._flattening: set[tuple[int, _KeyKind]] = set()

    def resources(self, root: Node) -> list[ResourceSpec]:
        """Every entry of the top-level mapping, in file order."""
        if not isinstance(root, MappingNode):
            raise self._error(
                root,
                "the descriptor must be a mapping of resource names to entries,"
                f" got {_describe(root)}",
            )
        specs: list[ResourceSpec] = []
        first_lines: dict[str, int] = {}
        for key_node, body in root.value:
            name = self._name(key_node)
            line = _line(key_node)
            first = first_lines.get(name)
            if first is not None:
                raise self._error(
                    key_node, f"duplicate resource name {name!r} (first declared on line {first})"
                )
            first_lines[name] = line
            specs.append(self._entry(name, line, body))
        return specs

    def _name(self, node: Node) -> str:
        """The resource name a top-level key gives, checked."""
        if not isinstance(node, ScalarNode):
            raise self._error(node, f"a resource name must be a string, got {_describe(node)}")
        if node.tag == _STR:
            name: str = node.value
        elif node.tag == _MERGE:
            raise self._error(
                node,
                "the merge key '<<' cannot be used at the top level, where every key is a"
                " resource; use '<<: *anchor' inside an entry",
            )
        else:
            value = self._scalar(node, "")
            if value is None or isinstance(value, bool) or value is _UNSUPPORTED:
                raise self._error(
                    node,
                    f"a resource name must be a string, got {_describe(node)};"
                    " quote it to use it as a name",
                )
            name = str(value)
        stripped = name.strip()
        if not stripped:
            raise self._error(node, "a resource name is empty")
        if name != stripped:
            raise self._error(
                node, f"resource name {name!r} starts or ends with whitespace; remove it"
            )
        bad = _CONTROL_IN_NAME.search(name)
        if bad is not None:
            raise self._error(node, f"resource name {name!r} contains {_char_name(bad.group())}")
        if len(name) > MAX_NAME_LENGTH:
            raise self._error(
                node,
                f"resource name {name[:20]!r}... is {len(name)} characters long;"
                f" the limit is {MAX_NAME_LENGTH}",
            )
        return name

    def _entry(self, name: str, line: int, body: Node) -> ResourceSpec:
        """The ResourceSpec one `name: {...}` entry declares."""
        if not isinstance(body, MappingNode):
            if isinstance(body, ScalarNode) and body.tag == _NULL:
                raise DescriptorError(
                    self._source,
                    line,
                    f"entry {name!r} has no body; expected a mapping with {_ALLOWED_TEXT}",
                )
            raise self._error(
                body,
                f"entry {name!r} must be a mapping with {_ALLOWED_TEXT}, got {_describe(body)}",
            )
        fields: dict[str, Node] = {}
        for key_node, value_node in body.value:
            key = key_node.value
            if (
                type(key_node) is not ScalarNode
                or key_node.tag != _STR
                or key not in _FIELDS
                or key in fields
            ):
                # Merge keys, unknown or repeated keys: the general path expands or reports them.
                fields = {key: value for key, _, value in self._pairs(body, name, _KeyKind.ENTRY)}
                break
            fields[key] = value_node
        node = fields.get("description")
        description = (
            None if node is None else self._text(node, name, "description", multiline=True)
        )
        node = fields.get("endpoint")
        endpoint = None if node is None else self._text(node, name, "endpoint")
        node = fields.get("tags")
        tags_text = None if node is None else self._tags(node, name)
        node = fields.get("properties")
        properties = {} if node is None else self._properties(node, name)
        return ResourceSpec(
            name=name,
            description=description,
            endpoint=endpoint,
            tags_text=tags_text,
            properties=properties,
            line=line,
        )

    def _text(
        self,
        node: Node,
        name: str,
        label: str,
        expected: str = "a string",
        *,
        booleans: bool = False,
        multiline: bool = False,
    ) -> str | None:
        """A string field: text, or a number (or boolean if allowed) as text; None for null."""
        if not isinstance(node, ScalarNode):
            raise self._wrong_type(node, name, label, expected)
        if node.tag == _STR:
            text: str = node.value
        else:
            value = self._scalar(node, name)
            if value is None:
                return None
            if isinstance(value, bool) and booleans:
                text = "true" if value else "false"
            elif isinstance(value, bool) or value is _UNSUPPORTED:
                raise self._wrong_type(node, name, label, expected)
            else:
                text = str(value)
        bad = (_CONTROL_IN_TEXT if multiline else _CONTROL_IN_VALUE).search(text)
        if bad is not None:
            allowed = (
                "tab and line breaks are the only control characters"
                if multiline
                else "tab is the only control character"
            )
            raise self._error(
                node,
                f"entry {name!r}: {label} contains {_char_name(bad.group())}; {allowed} allowed",
            )
        return text

    def _tags(self, node: Node, name: str) -> str | None:
        """The tags as the original's display string, from a string or a list of tags."""
        if not isinstance(node, SequenceNode):
            return self._text(node, name, "tags", "a string or a list of strings")
        items: list[str] = []
        for item in node.value:
            if type(item) is ScalarNode and item.tag == _STR:
                tag: str = item.value
            else:
                value = self._scalar(item, name) if isinstance(item, ScalarNode) else None
                if value is None or isinstance(value, bool) or value is _UNSUPPORTED:
                    raise self._wrong_type(item, name, "each tag", "a string")
                tag = str(value)
            if not tag:
                raise self._error(item, f"entry {name!r}: a tag in the list is empty")
            bad = _BAD_IN_TAG.search(tag)
            if bad is not None:
                problem = "whitespace" if bad.group().isspace() else _char_name(bad.group())
                raise self._error(
                    item,
                    f"entry {name!r}: tag {tag!r} contains {problem};"
                    " write each tag as its own list item",
                )
            items.append(tag)
        return " ".join(items)

    def _properties(self, node: Node, name: str) -> dict[str, str]:
        """The properties map; null gives an empty one."""
        if not isinstance(node, MappingNode):
            if isinstance(node, ScalarNode) and node.tag == _NULL:
                return {}
            raise self._wrong_type(node, name, "properties", "a mapping of names to values")
        properties: dict[str, str] = {}
        for key_node, value_node in node.value:
            key = key_node.value
            if (
                type(key_node) is not ScalarNode
                or key_node.tag != _STR
                or key in properties
                or _PROPERTY_KEY.fullmatch(key) is None
            ):
                # Merge keys, bad or repeated names: the general path expands or reports them.
                return {
                    key: self._property_value(value, name, key)
                    for key, _, value in self._pairs(node, name, _KeyKind.PROPERTY)
                }
            properties[key] = self._property_value(value_node, name, key)
        return properties

    def _property_value(self, node: Node, name: str, key: str) -> str:
        """One property value as text: strings, numbers and booleans ("true", "false")."""
        if (
            type(node) is ScalarNode
            and node.tag == _STR
            and _CONTROL_IN_VALUE.search(node.value) is None
        ):
            text: str = node.value
            return text
        label = f"property {key!r}"
        expected = "a string, number or boolean"
        value = self._text(node, name, label, expected, booleans=True)
        if value is None:
            raise self._error(
                node,
                f"entry {name!r}: wrong type: {label} must be {expected}, got null;"
                ' write "" for an empty value',
            )
        return value

    def _entry_key(self, node: Node, name: str) -> str:
        """One key of an entry's body: one of the allowed keys."""
        if not isinstance(node, ScalarNode):
            raise self._error(
                node,
                f"entry {name!r}: a key must be one of {_ALLOWED_TEXT}, got {_describe(node)}",
            )
        written: str = node.value
        if node.tag == _STR and written in _FIELDS:
            return written
        close = difflib.get_close_matches(written, _ALLOWED_KEYS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise self._error(
            node,
            f"entry {name!r}: unknown key {written!r}{hint}; allowed keys are {_ALLOWED_TEXT}",
        )

    def _property_key(self, node: Node, name: str) -> str:
        """One property name: letters, digits, '_', '-' and '.'."""
        key: str | None = None
        if isinstance(node, ScalarNode):
            if node.tag == _STR:
                key = node.value
            else:
                value = self._scalar(node, name)
                if isinstance(value, str | int | float) and not isinstance(value, bool):
                    key = str(value)
        if key is None:
            raise self._error(
                node, f"entry {name!r}: a property name must be a string, got {_describe(node)}"
            )
        if not key:
            raise self._error(node, f"entry {name!r}: a property name is empty")
        if _PROPERTY_KEY.fullmatch(key) is None:
            raise self._error(
                node,
                f"entry {name!r}: property name {key!r} may only contain letters, digits,"
                " '_', '-' and '.'",
            )
        return key

    def _pairs(self, mapping: MappingNode, name: str, kind: _KeyKind) -> list[_Pair]:
        """The mapping's (key, key node, value node) triples, checked, merge keys expanded.

        Keys written twice are refused. Keys a merge brings in yield, as YAML intends, to the
        mapping's own keys and to those of earlier merges.
        """
        read_key = self._entry_key if kind is _KeyKind.ENTRY else self._property_key
        written: list[tuple[str | None, Node, Node]] = []
        first: dict[str, Node] = {}
        for key_node, value_node in mapping.value:
            if key_node.tag == _MERGE:
                written.append((None, key_node, value_node))
                continue
            key = read_key(key_node, name)
            previous = first.setdefault(key, key_node)
            if previous is not key_node:
                raise self._error(
                    key_node,
                    f"entry {name!r}: duplicate {kind.value} {key!r}"
                    f" (first on line {_line(previous)})",
                )
            written.append((key, key_node, value_node))
        pairs: list[_Pair] = []
        for own_key, key_node, value_node in written:
            if own_key is not None:
                pairs.append((own_key, key_node, value_node))
                continue
            for merged in self._merged(key_node, value_node, name, kind):
                if merged[0] not in first:
                    first[merged[0]] = merged[1]
                    pairs.append(merged)
        return pairs

    def _merged(self, merge_key: Node, node: Node, name: str, kind: _KeyKind) -> list[_Pair]:
        """The pairs `<<: node` brings: from one mapping, or a list of them in priority."""
        sources = node.value if isinstance(node, SequenceNode) else [node]
        pairs: list[_Pair] = []
        for source in sources:
            if not isinstance(source, MappingNode):
                raise self._error(
                    source,
                    f"entry {name!r}: the merge key '<<' needs a mapping or a list of mappings"
                    f" (<<: *anchor), got {_describe(source)}",
                )
            memo = (id(source), kind)
            flattened = self._flattened.get(memo)
            if flattened is None:
                if memo in self._flattening:
                    raise self._error(
                        merge_key,
                        f"entry {name!r}: the merge key '<<' refers back to the mapping"
                        " that contains it",
                    )
                self._flattening.add(memo)
                try:
                    flattened = self._pairs(source, name, kind)
                finally:
                    self._flattening.discard(memo)
                self._flattened[memo] = flattened
            pairs.extend(flattened)
        return pairs

    def _scalar(self, node: ScalarNode, name: str) -> _Scalar:
        """The scalar typed the YAML way; text as written for types the descriptor ignores."""
        tag = node.tag
        if tag == _STR or tag in _AS_WRITTEN:
            written: str = node.value
            return written
        if tag == _NULL:
            return None
        construct = _CONSTRUCTORS.get(tag)
        if construct is None:
            return _UNSUPPORTED
        try:
            value = construct(self._loader, node)
        except (ValueError, KeyError, IndexError, yaml.YAMLError) as exc:
            # Only an explicit tag (`!!int abc`) can pair a type with text it cannot read.
            where = f"entry {name!r}: " if name else ""
            raise self._error(
                node, f"{where}{node.value!r} is not a valid {_short_tag(tag)} value"
            ) from exc
        assert isinstance(value, bool | int | float)  # what the three constructors return
        return value

    def _wrong_type(self, node: Node, name: str, label: str, expected: str) -> DescriptorError:
        """The error for a field holding the wrong kind of YAML value."""
        return self._error(
            node, f"entry {name!r}: wrong type: {label} must be {expected}, got {_describe(node)}"
        )

    def _error(self, node: Node, reason: str) -> DescriptorError:
        """A DescriptorError at the node's line."""
        return DescriptorError(self._source, _line(node), reason)


def _line(node: Node) -> int:
    """The 1-based line where the node starts."""
    line: int = node.start_mark.line
    return line + 1


def _line_at(text: str, index: int) -> int:
    """The 1-based line of text[index], counting line breaks the way YAML does."""
    return len(_LINE_BREAK.findall(text, 0, index)) + 1


def _describe(node: Node) -> str:
    """What kind of YAML value the node is, for messages."""
    if isinstance(node, SequenceNode):
        return "a list"
    if isinstance(node, MappingNode):
        return "a mapping"
    tag = node.tag
    if tag == _NULL:
        return "null"
    if tag == _BOOL:
        return f"a boolean ({node.value})"
    if tag in (_INT, _FLOAT):
        return f"a number ({node.value})"
    if tag == _BINARY:
        return "binary data"
    if tag == _STR or tag in _AS_WRITTEN:
        return "a string"
    return f"a value tagged {_short_tag(tag)!r}"


def _short_tag(tag: str) -> str:
    """A tag the way it is written in YAML: `!!int`, `!custom`."""
    return "!!" + tag.removeprefix(_YAML_TAG) if tag.startswith(_YAML_TAG) else tag


def _char_name(char: str) -> str:
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
