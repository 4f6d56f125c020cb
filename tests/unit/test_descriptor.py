"""The resource descriptor parser: every rule, with the line and reason an operator sees."""

from __future__ import annotations

import gc
import importlib.util
import itertools
import re
import string
import textwrap
from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from rentabot.domain import descriptor
from rentabot.domain.descriptor import MAX_NAME_LENGTH, parse_descriptor
from rentabot.domain.errors import DescriptorError
from rentabot.domain.model import ResourceSpec
from tests.support import EXAMPLES

Parse = Callable[[str | bytes, str], list[ResourceSpec]]

SOURCE = "resources.yml"


def _pure_python_copy() -> ModuleType:
    """A separate copy of the descriptor module, imported while libyaml is hidden."""
    spec = importlib.util.spec_from_file_location(
        "_descriptor_without_libyaml", descriptor.__file__
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    with pytest.MonkeyPatch.context() as patch:
        patch.delattr(yaml, "CSafeLoader", raising=False)
        spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def pure_python() -> ModuleType:
    """The descriptor module as it runs on a PyYAML built without libyaml."""
    return _pure_python_copy()


@pytest.fixture(params=["libyaml", "pure-python"])
def parse(request: pytest.FixtureRequest, pure_python: ModuleType) -> Parse:
    """parse_descriptor, on libyaml and on the pure-Python fallback: both must agree."""
    if request.param == "libyaml":
        return parse_descriptor
    fallback: Parse = pure_python.parse_descriptor
    return fallback


def yml(text: str) -> str:
    """A descriptor written indented in a test, its first line being line 1."""
    return textwrap.dedent(text).lstrip("\n")


def error_of(parse: Parse, data: str | bytes) -> DescriptorError:
    """The DescriptorError parsing `data` raises."""
    with pytest.raises(DescriptorError) as caught:
        parse(data, SOURCE)
    assert caught.value.source == SOURCE
    return caught.value


def only(parse: Parse, text: str) -> ResourceSpec:
    """The single resource a descriptor declares."""
    specs = parse(text, SOURCE)
    assert len(specs) == 1
    return specs[0]


# --- The fallback itself ------------------------------------------------------------------


def test_fallback_copy_really_runs_without_libyaml(pure_python: ModuleType) -> None:
    """The pure-Python parametrisation exercises PyYAML's SafeLoader, not the C one."""
    assert issubclass(pure_python._Loader, yaml.SafeLoader)
    if yaml.__with_libyaml__:
        assert issubclass(descriptor._Loader, yaml.CSafeLoader)


# --- Encoding and characters ----------------------------------------------------------------


def test_bytes_that_are_not_utf8_are_refused_at_their_line(parse: Parse) -> None:
    """A byte that is not UTF-8 is reported on its own line, with its value."""
    error = error_of(parse, b"a: {}\nb:\n  description: caf\xe9\n")
    assert error.line == 3
    assert "not valid UTF-8 (byte 0xe9)" in error.reason


def test_nul_byte_is_refused_at_its_line(parse: Parse) -> None:
    """A NUL byte in the file is reported on its line, as bytes or as text."""
    for data in (b"a: {}\nb: {}\nc: x\x00\n", "a: {}\nb: {}\nc: x\x00\n"):
        error = error_of(parse, data)
        assert error.line == 3
        assert "NUL character (U+0000)" in error.reason


def test_other_raw_control_characters_are_refused_at_their_line(parse: Parse) -> None:
    """A raw control character YAML forbids is reported on its line, not as an offset."""
    error = error_of(parse, "a: {}\r\nb: \x07\r\n")
    assert error.line == 2
    assert "control character (U+0007)" in error.reason


def test_unpaired_surrogate_in_text_is_refused_at_its_line(parse: Parse) -> None:
    """Text that cannot be UTF-8 at all (a lone surrogate) is refused on its line."""
    error = error_of(parse, "a: {}\nb: {}\nc: x\ud800\n")
    assert error.line == 3
    assert "an unpaired surrogate (U+D800)" in error.reason


def test_utf8_bytes_and_byte_order_mark_are_accepted(parse: Parse) -> None:
    """UTF-8 bytes, with or without a byte order mark, read like the text."""
    text = "café-1:\n  description: crème\n"
    expected = [ResourceSpec(name="café-1", description="crème", line=1)]
    assert parse(text.encode(), SOURCE) == expected
    assert parse(b"\xef\xbb\xbf" + text.encode(), SOURCE) == expected
    assert parse("\ufeff" + text, SOURCE) == expected


# --- YAML syntax and document shape ---------------------------------------------------------


def test_yaml_syntax_error_reports_pyyaml_line_and_problem(parse: Parse) -> None:
    """A syntax error carries PyYAML's problem text and its line, made 1-based."""
    error = error_of(
        parse,
        yml("""
        a:
          description: x
        b: c: d
    """),
    )
    assert error.line == 3
    assert error.reason.startswith("invalid YAML: mapping values are not allowed")


def test_tab_indentation_gets_a_hint(parse: Parse) -> None:
    """A tab used for indentation is pointed out, since YAML's own text does not say so."""
    error = error_of(parse, "a:\n  tags: x\nb:\n\tdescription: y\n")
    assert error.line == 4
    assert "indent with spaces" in error.reason


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("", None),
        ("# only a comment\n\n# and another\n", None),
        ("---\n", None),
        ("# nothing yet\nnull\n", 2),
        ("~\n", 1),
    ],
)
def test_empty_descriptor_is_refused_with_the_way_out(
    parse: Parse, text: str, line: int | None
) -> None:
    """An empty descriptor says how to run with no resources instead."""
    error = error_of(parse, text)
    assert error.line == line
    assert error.reason.startswith("the descriptor is empty")
    assert "leave RENTABOT_RESOURCE_DESCRIPTOR unset, or write {}" in error.reason


def test_empty_mapping_declares_no_resources(parse: Parse) -> None:
    """`{}` is the explicit way to declare no resources."""
    assert parse("{}\n", SOURCE) == []
    assert parse("# no resources yet\n{}  # really\n", SOURCE) == []


@pytest.mark.parametrize(
    ("text", "got"),
    [("- a\n- b\n", "got a list"), ("just words\n", "got a string"), ("42\n", "got a number")],
)
def test_top_level_must_be_a_mapping(parse: Parse, text: str, got: str) -> None:
    """A list or a scalar at the top level is refused, saying what was found."""
    error = error_of(parse, text)
    assert error.line == 1
    assert "must be a mapping of resource names to entries" in error.reason
    assert got in error.reason


def test_second_document_is_refused_at_its_start(parse: Parse) -> None:
    """A second `---` document is refused on the line it starts."""
    error = error_of(parse, "---\na: {}\n---\nb: {}\n")
    assert error.line == 3
    assert "a second YAML document" in error.reason


# --- Resource names -------------------------------------------------------------------------


def test_numeric_names_become_strings(parse: Parse) -> None:
    """An int or float name is accepted and converted with str()."""
    specs = parse("42: {}\n1.5: {}\n'007': {}\n", SOURCE)
    assert [(spec.name, spec.line) for spec in specs] == [("42", 1), ("1.5", 2), ("007", 3)]


@pytest.mark.parametrize(
    ("key", "got"),
    [
        ("yes", "got a boolean (yes)"),
        ("false", "got a boolean (false)"),
        ("~", "got null"),
        ("null", "got null"),
        ("? [a, b]\n", "got a list"),
        ("? {a: 1}\n", "got a mapping"),
    ],
)
def test_names_that_are_not_strings_are_refused(parse: Parse, key: str, got: str) -> None:
    """Boolean, null, list and mapping keys cannot name a resource."""
    error = error_of(parse, f"ok: {{}}\n{key}: {{}}\n")
    assert error.line == 2
    assert "a resource name must be a string" in error.reason
    assert got in error.reason


@pytest.mark.parametrize("key", ["''", "'   '"])
def test_empty_name_is_refused(parse: Parse, key: str) -> None:
    """A name that is empty, or only spaces, is refused."""
    error = error_of(parse, f"ok: {{}}\n{key}: {{}}\n")
    assert error.line == 2
    assert "a resource name is empty" in error.reason


@pytest.mark.parametrize("key", ["' board'", "'board '", '"board\\t"'])
def test_name_with_surrounding_whitespace_is_refused(parse: Parse, key: str) -> None:
    """Leading or trailing whitespace in a name is refused, never silently stripped."""
    error = error_of(parse, f"ok: {{}}\n\n{key}: {{}}\n")
    assert error.line == 3
    assert "starts or ends with whitespace" in error.reason


def test_name_with_control_character_is_refused(parse: Parse) -> None:
    """A control character inside a name (here BEL, written as an escape) is refused."""
    error = error_of(parse, 'ok: {}\n"bo\\aard": {}\n')
    assert error.line == 2
    assert "contains a control character (U+0007)" in error.reason


def test_name_length_is_limited(parse: Parse) -> None:
    """A name of 200 characters is accepted, one of 201 is refused."""
    longest = "n" * MAX_NAME_LENGTH
    assert only(parse, f"{longest}: {{}}\n").name == longest
    error = error_of(parse, f"ok: {{}}\n{longest}x: {{}}\n")
    assert error.line == 2
    assert "is 201 characters long; the limit is 200" in error.reason


def test_duplicate_name_is_refused_naming_the_first(parse: Parse) -> None:
    """A second entry with a name already used is refused, pointing back to the first."""
    lines = ["board-1: {}", "board-2: {}", "board-3:", "  description: first", "  tags: x"]
    lines += [f"other-{n}: {{}}" for n in range(8)] + ["board-3: {}"]
    error = error_of(parse, "\n".join(lines) + "\n")
    assert (
        str(error)
        == "resources.yml:14: duplicate resource name 'board-3' (first declared on line 3)"
    )


def test_names_differing_only_in_type_are_duplicates(parse: Parse) -> None:
    """`1` and `'1'` name the same resource once converted, so the second is refused."""
    error = error_of(parse, "1: {}\n'1': {}\n")
    assert error.line == 2
    assert "duplicate resource name '1' (first declared on line 1)" in error.reason


# --- Entry bodies ---------------------------------------------------------------------------


def test_entry_without_body_is_refused(parse: Parse) -> None:
    """`name:` with nothing after it is refused on the name's line."""
    error = error_of(parse, "ok: {}\nboard:\nother: {}\n")
    assert error.line == 2
    assert error.reason == (
        "entry 'board' has no body; expected a mapping with description, endpoint, tags, properties"
    )


@pytest.mark.parametrize(
    ("body", "line", "got"),
    [(" just a string", 1, "got a string"), ("\n  - a\n  - b", 2, "got a list")],
)
def test_entry_body_must_be_a_mapping(parse: Parse, body: str, line: int, got: str) -> None:
    """A scalar or list body is refused at the body's line."""
    error = error_of(parse, f"board:{body}\n")
    assert error.line == line
    assert "entry 'board' must be a mapping with description, endpoint, tags" in error.reason
    assert got in error.reason


def test_empty_body_declares_a_bare_resource(parse: Parse) -> None:
    """`name: {}` is a resource with every field absent."""
    spec = only(parse, "board: {}\n")
    assert spec == ResourceSpec(name="board", line=1)
    assert spec.properties == {}


def test_unknown_key_is_refused_listing_the_allowed_ones(parse: Parse) -> None:
    """A misspelt key is refused at its own line, with a suggestion and the allowed keys."""
    error = error_of(parse, "board:\n  endpoint: x\n  descripton: y\n")
    assert error.line == 3
    assert error.reason == (
        "entry 'board': unknown key 'descripton' (did you mean 'description'?);"
        " allowed keys are description, endpoint, tags, properties"
    )


def test_duplicate_key_in_an_entry_is_refused(parse: Parse) -> None:
    """A key written twice in one entry is refused instead of the last one winning."""
    error = error_of(parse, "board:\n  tags: a\n  endpoint: x\n  tags: b\n")
    assert error.line == 4
    assert "entry 'board': duplicate key 'tags' (first on line 2)" in error.reason


# --- description and endpoint ---------------------------------------------------------------


def test_description_and_endpoint_accept_text_numbers_and_null(parse: Parse) -> None:
    """Strings stay as written, numbers become str(value), null and absence become None."""
    specs = parse(
        yml("""
            a: {description: "Kitchen", endpoint: "tcp://10.0.0.1"}
            b: {description: 42, endpoint: 2.5}
            c: {description: null, endpoint: ~}
            d: {description: "", endpoint: 0x1F}
            e: {description: 2024-05-01}
        """),
        SOURCE,
    )
    fields = [(spec.description, spec.endpoint) for spec in specs]
    assert fields == [
        ("Kitchen", "tcp://10.0.0.1"),
        ("42", "2.5"),
        (None, None),
        ("", "31"),
        ("2024-05-01", None),  # a date is kept as the text the operator wrote
    ]


@pytest.mark.parametrize("field", ["description", "endpoint"])
@pytest.mark.parametrize(
    ("value", "got"),
    [
        ("true", "got a boolean (true)"),
        ("[a, b]", "got a list"),
        ("{a: b}", "got a mapping"),
        ("!!binary aGVsbG8=", "got binary data"),
        ("!custom x", "got a value tagged '!custom'"),
    ],
)
def test_text_fields_refuse_other_types(parse: Parse, field: str, value: str, got: str) -> None:
    """Booleans, lists, mappings and other YAML types are refused in text fields."""
    error = error_of(parse, f"board:\n  tags: t\n  {field}: {value}\n")
    assert error.line == 3
    assert f"entry 'board': wrong type: {field} must be a string, {got}" in error.reason


def test_explicit_tag_with_unreadable_value_is_refused(parse: Parse) -> None:
    """`!!int abc` cannot be read as the type it claims, and says so."""
    error = error_of(parse, "board:\n  description: !!int abc\n")
    assert error.line == 2
    assert "'abc' is not a valid !!int value" in error.reason


# --- tags -----------------------------------------------------------------------------------


def test_tags_string_is_kept_as_written(parse: Parse) -> None:
    """The original's space-separated string is kept verbatim, even `""`."""
    specs = parse('a: {tags: "coffee  kitchen food"}\nb: {tags: ""}\nc: {tags: 7}\n', SOURCE)
    assert [spec.tags_text for spec in specs] == ["coffee  kitchen food", "", "7"]
    assert specs[0].tags == ("coffee", "kitchen", "food")


def test_upstream_1x_comma_separated_tags_are_separate_tags(parse: Parse) -> None:
    """1.x's `"coffee,kitchen"` is two tags; commas and spaces together split on both, and
    empty pieces are no tags."""
    specs = parse(
        'a: {tags: "coffee,kitchen"}\nb: {tags: "a b,c"}\nc: {tags: " x, y,,z, "}\n', SOURCE
    )
    assert [spec.tags for spec in specs] == [
        ("coffee", "kitchen"),
        ("a", "b", "c"),
        ("x", "y", "z"),
    ]
    assert specs[0].tags_text == "coffee kitchen"


def test_tags_list_becomes_the_display_string(parse: Parse) -> None:
    """A list of tags is joined with spaces; numbers convert; duplicates and [] are fine."""
    specs = parse("a: {tags: [nrf52, ble, 3, ble]}\nb: {tags: []}\nc: {tags: null}\n", SOURCE)
    assert [spec.tags_text for spec in specs] == ["nrf52 ble 3 ble", "", None]
    assert specs[0].tags == ("nrf52", "ble", "3")


@pytest.mark.parametrize(
    ("item", "phrase"),
    [
        ("''", "a tag in the list is empty"),
        ("'two words'", "tag 'two words' contains whitespace"),
        ('"tab\\there"', "tag 'tab\\there' contains whitespace"),
        ("~", "wrong type: each tag must be a string, got null"),
        ("yes", "wrong type: each tag must be a string, got a boolean (yes)"),
        ("[nested]", "wrong type: each tag must be a string, got a list"),
        ("{a: b}", "wrong type: each tag must be a string, got a mapping"),
    ],
)
def test_bad_tag_in_a_list_is_refused_at_its_line(parse: Parse, item: str, phrase: str) -> None:
    """Each list item must be one non-empty word; the error points at the item itself."""
    error = error_of(parse, f"board:\n  tags:\n    - good\n    - {item}\n")
    assert error.line == 4
    assert f"entry 'board': {phrase}" in error.reason


@pytest.mark.parametrize(("value", "got"), [("yes", "a boolean (yes)"), ("{a: b}", "a mapping")])
def test_tags_of_another_type_are_refused(parse: Parse, value: str, got: str) -> None:
    """Tags are a string or a list; anything else is refused."""
    error = error_of(parse, f"board:\n  tags: {value}\n")
    assert error.line == 2
    assert f"wrong type: tags must be a string or a list of strings, got {got}" in error.reason


# --- properties -----------------------------------------------------------------------------


def test_properties_become_strings(parse: Parse) -> None:
    """Property values become text: numbers via str(), booleans as true/false."""
    spec = only(
        parse,
        yml("""
            board:
              properties:
                serial: "683012345"
                baud: 115200
                ratio: 0.5
                debug: yes
                lab.rack_3-slot: off
        """),
    )
    assert spec.properties == {
        "serial": "683012345",
        "baud": "115200",
        "ratio": "0.5",
        "debug": "true",
        "lab.rack_3-slot": "false",
    }


def test_properties_null_or_absent_are_empty(parse: Parse) -> None:
    """`properties:` with nothing, or no properties at all, give an empty map."""
    specs = parse("a: {properties: null}\nb: {properties: {}}\nc: {}\n", SOURCE)
    assert [spec.properties for spec in specs] == [{}, {}, {}]


@pytest.mark.parametrize(
    ("key", "phrase"),
    [
        ("'bad key'", "property name 'bad key' may only contain letters, digits, '_', '-' and '.'"),
        ("'a/b'", "property name 'a/b' may only contain"),
        ("'é'", "property name 'é' may only contain"),
        ("''", "a property name is empty"),
        ("yes", "a property name must be a string, got a boolean (yes)"),
    ],
)
def test_bad_property_name_is_refused_at_its_line(parse: Parse, key: str, phrase: str) -> None:
    """Property names are non-empty words of letters, digits, '_', '-' and '.'."""
    error = error_of(parse, f"board:\n  properties:\n    good: 1\n    {key}: 2\n")
    assert error.line == 4
    assert f"entry 'board': {phrase}" in error.reason


@pytest.mark.parametrize(
    ("value", "got"),
    [("", "got null"), (" ~", "got null"), (" [1, 2]", "got a list"), (" {a: 1}", "got a mapping")],
)
def test_property_value_must_be_a_scalar(parse: Parse, value: str, got: str) -> None:
    """Null, list and mapping property values are refused."""
    error = error_of(parse, f"board:\n  properties:\n    serial:{value}\n")
    assert error.line in (3, 4)  # an empty value's node may start on the following line
    assert "wrong type: property 'serial' must be a string, number or boolean" in error.reason
    assert got in error.reason


def test_property_value_error_line_is_the_value_line(parse: Parse) -> None:
    """A wrong property value is reported on the line where the value is written."""
    error = error_of(parse, "board:\n  properties:\n    serial: [1]\n")
    assert error.line == 3


def test_properties_must_be_a_mapping(parse: Parse) -> None:
    """A list or string in place of the properties map is refused."""
    error = error_of(parse, "board:\n  tags: a\n  properties: [serial, baud]\n")
    assert error.line == 3
    assert "wrong type: properties must be a mapping of names to values, got a list" in error.reason


def test_duplicate_property_is_refused(parse: Parse) -> None:
    """A property written twice is refused instead of the last one winning."""
    error = error_of(parse, "board:\n  properties:\n    serial: 1\n    serial: 2\n")
    assert error.line == 4
    assert "entry 'board': duplicate property 'serial' (first on line 3)" in error.reason


# --- Control characters in values -----------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "label"),
    [
        ("description", "description"),
        ("endpoint", "endpoint"),
        ("tags", "tags"),
        ("properties: {serial", "property 'serial'"),
    ],
)
def test_escaped_control_character_in_a_value_is_refused(
    parse: Parse, field: str, label: str
) -> None:
    """A NUL written as an escape is refused in any text value; its line is reported."""
    close = "}" if "{" in field else ""
    error = error_of(parse, f'board:\n  {field}: "x\\0y"{close}\n')
    assert error.line == 2
    assert f"entry 'board': {label} contains a NUL character (U+0000)" in error.reason


def test_control_character_in_a_tag_item_is_refused(parse: Parse) -> None:
    """A control character inside a tag list item is refused at the item."""
    error = error_of(parse, 'board:\n  tags:\n    - "a\\x01b"\n')
    assert error.line == 3
    assert "tag 'a\\x01b' contains a control character (U+0001)" in error.reason


def test_line_break_in_a_value_is_refused(parse: Parse) -> None:
    """A line break is a control character in an endpoint or a property: they are one line."""
    error = error_of(parse, "board:\n  endpoint: |\n    two\n    lines\n")
    assert error.line == 2
    assert "endpoint contains a line break (U+000A)" in error.reason
    error = error_of(parse, 'board:\n  properties: {k: "a\\nb"}\n')
    assert "property 'k' contains a line break (U+000A)" in error.reason


def test_a_description_may_span_several_lines(parse: Parse) -> None:
    """A description written as a block scalar keeps its lines; other controls are refused."""
    spec = only(parse, "board:\n  description: |\n    two\n    lines\n")
    assert spec.description == "two\nlines\n"
    error = error_of(parse, 'board:\n  description: "a\\x07b"\n')
    assert "description contains a control character (U+0007)" in error.reason


def test_tab_is_allowed_in_values(parse: Parse) -> None:
    """Tab is the one control character a value may hold."""
    spec = only(parse, 'board:\n  description: "a\\tb"\n  properties: {k: "1\\t2"}\n')
    assert spec.description == "a\tb"
    assert spec.properties == {"k": "1\t2"}


# --- Anchors, aliases and merge keys --------------------------------------------------------


def test_merge_key_copies_an_earlier_entry_and_lets_keys_override(parse: Parse) -> None:
    """`<<: *anchor` brings in an earlier entry's fields; the entry's own keys win."""
    specs = parse(
        yml("""
            board-1: &bench
              description: nRF52840 DK
              endpoint: ssh://bench/dev/ttyACM0
              tags: [nrf52, ble]
              properties: &props {baud: 115200, serial: "1"}
            board-2:
              <<: *bench
              endpoint: ssh://bench/dev/ttyACM1
              properties: {<<: *props, serial: "2"}
        """),
        SOURCE,
    )
    assert specs[1] == ResourceSpec(
        name="board-2",
        description="nRF52840 DK",
        endpoint="ssh://bench/dev/ttyACM1",
        tags_text="nrf52 ble",
        properties={"baud": "115200", "serial": "2"},
        line=6,
    )


def test_merge_of_several_mappings_gives_the_first_priority(parse: Parse) -> None:
    """With `<<: [*a, *b]` a key from *a wins over the same key from *b, as YAML says."""
    specs = parse(
        yml("""
            a: &a {description: from-a}
            b: &b {description: from-b, endpoint: from-b}
            c:
              <<: [*a, *b]
        """),
        SOURCE,
    )
    assert (specs[2].description, specs[2].endpoint) == ("from-a", "from-b")


def test_aliases_reuse_values(parse: Parse) -> None:
    """An alias repeats an anchored value (here a tag list and a description)."""
    specs = parse(
        "a: {description: &d shared, tags: &t [x, y]}\nb: {description: *d, tags: *t}\n", SOURCE
    )
    assert [(spec.description, spec.tags_text) for spec in specs] == [("shared", "x y")] * 2


def test_merged_keys_are_checked_too(parse: Parse) -> None:
    """Keys a merge brings in obey the entry rules: a properties map is not an entry body."""
    error = error_of(
        parse,
        yml("""
            board-1:
              properties: &props
                serial: "1"
            board-2:
              <<: *props
        """),
    )
    assert error.line == 3
    assert "entry 'board-2': unknown key 'serial'" in error.reason


def test_merge_key_needs_a_mapping(parse: Parse) -> None:
    """`<<:` followed by something other than a mapping (or list of them) is refused."""
    error = error_of(parse, "board:\n  <<: [oops]\n")
    assert error.line == 2
    assert "the merge key '<<' needs a mapping or a list of mappings" in error.reason


def test_merge_key_cycle_is_refused(parse: Parse) -> None:
    """A mapping merging itself is refused instead of looping forever."""
    error = error_of(parse, "board: &self\n  description: x\n  <<: *self\n")
    assert error.line == 3
    assert "refers back to the mapping that contains it" in error.reason


def test_merge_key_at_the_top_level_is_refused(parse: Parse) -> None:
    """At the top level every key is a resource, so `<<` is refused there."""
    error = error_of(parse, "a: {}\n<<: {b: {}}\n")
    assert error.line == 2
    assert "the merge key '<<' cannot be used at the top level" in error.reason


# --- Whole files ----------------------------------------------------------------------------


def test_valid_file_with_every_form(parse: Parse) -> None:
    """Every accepted form, in one file, gives exactly the expected specs."""
    text = yml("""
        # Lab inventory
        coffee-machine:
            description: "Kitchen coffee machine"
            endpoint: "tcp://192.168.1.50"
            tags: "coffee kitchen food"
        nrf52-board-1: &nrf
            description: nRF52840 DK
            endpoint: ssh://bench3.lab/dev/ttyACM0
            tags: [nrf52, ble]
            properties: {serial: "683012345", baud: 115200, debug: true}
        nrf52-board-2:
            <<: *nrf
            properties:
              serial: 683012346
        12: {}
        empty-fields:
            description:
            endpoint: null
            tags: []
            properties:
        numbers: {description: 3.25, endpoint: 8080, tags: [1, two]}
    """)
    assert parse(text, SOURCE) == [
        ResourceSpec(
            name="coffee-machine",
            description="Kitchen coffee machine",
            endpoint="tcp://192.168.1.50",
            tags_text="coffee kitchen food",
            properties={},
            line=2,
        ),
        ResourceSpec(
            name="nrf52-board-1",
            description="nRF52840 DK",
            endpoint="ssh://bench3.lab/dev/ttyACM0",
            tags_text="nrf52 ble",
            properties={"serial": "683012345", "baud": "115200", "debug": "true"},
            line=6,
        ),
        ResourceSpec(
            name="nrf52-board-2",
            description="nRF52840 DK",
            endpoint="ssh://bench3.lab/dev/ttyACM0",
            tags_text="nrf52 ble",
            properties={"serial": "683012346"},
            line=11,
        ),
        ResourceSpec(name="12", line=15),
        ResourceSpec(name="empty-fields", tags_text="", line=16),
        ResourceSpec(
            name="numbers", description="3.25", endpoint="8080", tags_text="1 two", line=21
        ),
    ]


def test_example_descriptor_parses(parse: Parse) -> None:
    """examples/resources.yml declares its five resources, in file order."""
    specs = parse(EXAMPLES.read_bytes(), str(EXAMPLES))
    assert [spec.name for spec in specs] == [
        "coffee-machine",
        "3d-printer-1",
        "another-resource",
        "nrf52-board-1",
        "nrf52-board-2",
    ]
    assert [spec.line for spec in specs] == [5, 10, 15, 20, 28]
    assert specs[2].endpoint == ""
    assert specs[2].tags_text == ""
    assert specs[3].tags == ("nrf52", "ble", "bench3")
    assert specs[4].properties == {"serial": "683012346", "jlink": "50123457"}


def test_crlf_line_endings_keep_line_numbers(parse: Parse) -> None:
    """A file saved with Windows line endings reports the same lines."""
    assert [spec.line for spec in parse("a: {}\r\n\r\nb: {}\r\n", SOURCE)] == [1, 3]
    assert error_of(parse, "a: {}\r\nb: {}\r\na: {}\r\n").line == 3


def test_parsing_leaves_the_garbage_collector_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pure code keeps no process-wide switch: parsing (well or badly) never turns the cyclic
    collector off or on (the start-up child, which owns its process, turns it off)."""
    switched: list[str] = []
    monkeypatch.setattr(gc, "disable", lambda: switched.append("disable"))
    monkeypatch.setattr(gc, "enable", lambda: switched.append("enable"))
    parse_descriptor("a: {}\n", SOURCE)
    with pytest.raises(DescriptorError):
        parse_descriptor("a:\n", SOURCE)
    assert switched == []


# --- Round trip of generated descriptors ----------------------------------------------------

_SAFE_NAME = st.text(string.ascii_letters + string.digits + "-_.", min_size=1, max_size=24)
# Any text a value may hold: no surrogates, no control character but tab.
_VALUE_TEXT = st.text(
    st.characters(codec="utf-8", exclude_categories=["Cc"], include_characters="\t"),
    max_size=30,
)
_TAG = st.text(string.ascii_letters + string.digits + "-_.:/", min_size=1, max_size=12)
_PROPERTY_NAME = st.text(string.ascii_letters + string.digits + "-_.", min_size=1, max_size=12)
_ABSENT = object()


@st.composite
def _entries(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any]]:
    """A random valid entry body, and the fields parse_descriptor should give for it."""
    body: dict[str, Any] = {}
    expected: dict[str, Any] = {}
    for field in ("description", "endpoint"):
        value = draw(st.sampled_from([_ABSENT, None, "text", "number"]))
        if value == "text":
            value = draw(_VALUE_TEXT)
        elif value == "number":
            value = draw(st.integers(-(10**12), 10**12))
        if value is not _ABSENT:
            body[field] = value
            expected[field] = None if value is None else str(value)
    tags = draw(st.sampled_from([_ABSENT, None, "text", "list"]))
    if tags == "text":
        body["tags"] = text = draw(_VALUE_TEXT)
        # With a comma, the string is 1.x's: split on commas and whitespace.
        pieces = re.split(r"[\s,]+", text) if "," in text else None
        expected["tags_text"] = text if pieces is None else " ".join(p for p in pieces if p)
    elif tags == "list":
        items = draw(st.lists(_TAG, max_size=4))
        body["tags"] = items
        expected["tags_text"] = " ".join(items)
    elif tags is None:
        body["tags"] = None
    if draw(st.booleans()):
        values = st.one_of(_VALUE_TEXT, st.integers(-1000, 1000), st.booleans())
        properties = draw(st.dictionaries(_PROPERTY_NAME, values, max_size=3))
        body["properties"] = properties
        expected["properties"] = {
            key: (str(value).lower() if isinstance(value, bool) else str(value))
            for key, value in properties.items()
        }
    return body, expected


@settings(deadline=None)
@given(
    entries=st.dictionaries(_SAFE_NAME, _entries(), max_size=6),
    # The top level stays in block style, one entry after another: flow style would put
    # several names on one line.
    flow_style=st.sampled_from([None, False]),
    allow_unicode=st.booleans(),
)
@pytest.mark.parametrize("parser", ["libyaml", "pure-python"])
def test_generated_descriptors_round_trip(
    parser: str,
    pure_python: ModuleType,
    entries: dict[str, tuple[dict[str, Any], dict[str, Any]]],
    flow_style: bool | None,
    allow_unicode: bool,
) -> None:
    """Any valid descriptor yaml.safe_dump writes parses back to its entries, lines ascending,
    on libyaml and on the pure-Python fallback alike."""
    document = {name: body for name, (body, _) in entries.items()}
    text = yaml.safe_dump(
        document, sort_keys=False, default_flow_style=flow_style, allow_unicode=allow_unicode
    )
    parse: Parse = parse_descriptor if parser == "libyaml" else pure_python.parse_descriptor
    specs = parse(text, SOURCE)
    assert [spec.name for spec in specs] == list(entries)
    for spec, (_, expected) in zip(specs, entries.values(), strict=True):
        assert spec.description == expected.get("description")
        assert spec.endpoint == expected.get("endpoint")
        assert spec.tags_text == expected.get("tags_text")
        assert spec.properties == expected.get("properties", {})
    lines = [spec.line for spec in specs if spec.line is not None]
    assert len(lines) == len(specs)
    assert all(before < after for before, after in itertools.pairwise(lines))
    assert lines[:1] == ([1] if specs else [])
