"""The rules of a descriptor's entries: names, fields, tags, properties, and merges; the
composed node tree in, ResourceSpecs (or the first DescriptorError) out."""

from __future__ import annotations

import difflib
import enum
import re
from collections.abc import Callable
from typing import Final, Literal

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from rentabot.domain.errors import DescriptorError
from rentabot.domain.model import ResourceSpec
from rentabot.domain.yaml_nodes import (
    AS_WRITTEN,
    BOOL,
    FLOAT,
    INT,
    MERGE,
    NULL,
    STR,
    char_name,
    describe,
    line_of,
    short_tag,
)

#: Longest resource name accepted, in characters.
MAX_NAME_LENGTH: Final = 200
_ALLOWED_KEYS: Final = ("description", "endpoint", "tags", "properties")
_ALLOWED_TEXT: Final = ", ".join(_ALLOWED_KEYS)
_FIELDS: Final = frozenset(_ALLOWED_KEYS)
_CONSTRUCTORS: Final[dict[str, Callable[[SafeConstructor, ScalarNode], object]]] = {
    BOOL: SafeConstructor.construct_yaml_bool,
    INT: SafeConstructor.construct_yaml_int,
    FLOAT: SafeConstructor.construct_yaml_float,
}

_CONTROL_IN_NAME: Final = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_CONTROL_IN_VALUE: Final = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")
# A description is for people: a block scalar (`|`) may spread it over several lines.
_CONTROL_IN_TEXT: Final = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
# \s is Unicode whitespace, exactly what str.split() (and so ResourceSpec.tags) splits on.
_BAD_IN_TAG: Final = re.compile(r"[\s\x00-\x1f\x7f-\x9f]")
_PROPERTY_KEY: Final = re.compile(r"[A-Za-z0-9_.-]+")
# What separates the tags of one string: 0.x's whitespace and 1.x's commas.
_TAG_SEPARATORS: Final = re.compile(r"[\s,]+")


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


class EntryWalker:
    """Turns the composed node tree into ResourceSpecs, checking every rule on the way."""

    def __init__(self, loader: SafeConstructor, source: str) -> None:
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
                f" got {describe(root)}",
            )
        specs: list[ResourceSpec] = []
        first_lines: dict[str, int] = {}
        for key_node, body in root.value:
            name = self._name(key_node)
            line = line_of(key_node)
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
            raise self._error(node, f"a resource name must be a string, got {describe(node)}")
        if node.tag == STR:
            name: str = node.value
        elif node.tag == MERGE:
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
                    f"a resource name must be a string, got {describe(node)};"
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
            raise self._error(node, f"resource name {name!r} contains {char_name(bad.group())}")
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
            if isinstance(body, ScalarNode) and body.tag == NULL:
                raise DescriptorError(
                    self._source,
                    line,
                    f"entry {name!r} has no body; expected a mapping with {_ALLOWED_TEXT}",
                )
            raise self._error(
                body,
                f"entry {name!r} must be a mapping with {_ALLOWED_TEXT}, got {describe(body)}",
            )
        fields: dict[str, Node] = {}
        for key_node, value_node in body.value:
            key = key_node.value
            if (
                type(key_node) is not ScalarNode
                or key_node.tag != STR
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
        if node.tag == STR:
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
                f"entry {name!r}: {label} contains {char_name(bad.group())}; {allowed} allowed",
            )
        return text

    def _tags(self, node: Node, name: str) -> str | None:
        """The tags as the original's display string, from a string or a list of tags.

        A string is split on whitespace (the original 0.x) and on commas (upstream 1.x's
        `"coffee,kitchen"`): `"a b,c"` is three tags, a, b and c (1.x reads two, "a b" and
        "c"; a tag never holds whitespace here). Empty pieces (`"a,,b"`, a trailing comma)
        are no tags."""
        if not isinstance(node, SequenceNode):
            text = self._text(node, name, "tags", "a string or a list of strings")
            if text is None or "," not in text:
                return text
            return " ".join(piece for piece in _TAG_SEPARATORS.split(text) if piece)
        items: list[str] = []
        for item in node.value:
            if type(item) is ScalarNode and item.tag == STR:
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
                problem = "whitespace" if bad.group().isspace() else char_name(bad.group())
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
            if isinstance(node, ScalarNode) and node.tag == NULL:
                return {}
            raise self._wrong_type(node, name, "properties", "a mapping of names to values")
        properties: dict[str, str] = {}
        for key_node, value_node in node.value:
            key = key_node.value
            if (
                type(key_node) is not ScalarNode
                or key_node.tag != STR
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
            and node.tag == STR
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
                f"entry {name!r}: a key must be one of {_ALLOWED_TEXT}, got {describe(node)}",
            )
        written: str = node.value
        if node.tag == STR and written in _FIELDS:
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
            if node.tag == STR:
                key = node.value
            else:
                value = self._scalar(node, name)
                if isinstance(value, str | int | float) and not isinstance(value, bool):
                    key = str(value)
        if key is None:
            raise self._error(
                node, f"entry {name!r}: a property name must be a string, got {describe(node)}"
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
            if key_node.tag == MERGE:
                written.append((None, key_node, value_node))
                continue
            key = read_key(key_node, name)
            previous = first.setdefault(key, key_node)
            if previous is not key_node:
                raise self._error(
                    key_node,
                    f"entry {name!r}: duplicate {kind.value} {key!r}"
                    f" (first on line {line_of(previous)})",
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
                    f" (<<: *anchor), got {describe(source)}",
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
        if tag == STR or tag in AS_WRITTEN:
            written: str = node.value
            return written
        if tag == NULL:
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
                node, f"{where}{node.value!r} is not a valid {short_tag(tag)} value"
            ) from exc
        assert isinstance(value, bool | int | float)  # what the three constructors return
        return value

    def _wrong_type(self, node: Node, name: str, label: str, expected: str) -> DescriptorError:
        """The error for a field holding the wrong kind of YAML value."""
        return self._error(
            node, f"entry {name!r}: wrong type: {label} must be {expected}, got {describe(node)}"
        )

    def _error(self, node: Node, reason: str) -> DescriptorError:
        """A DescriptorError at the node's line."""
        return DescriptorError(self._source, line_of(node), reason)
