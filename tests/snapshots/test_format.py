"""The line format keeps every Firestore value exactly, including what the npm
emulator cannot store (integers past 2^53): checked on raw protobuf documents,
through JSON and back, byte for byte."""

import json

import pytest
from google.protobuf.struct_pb2 import NULL_VALUE
from google.protobuf.timestamp_pb2 import Timestamp
from google.type.latlng_pb2 import LatLng

from revassure.firestore import FirestoreGateway, encoding

# CI's PostgreSQL pass skips it, having run it in the defaults pass: touches Firestore only, never a database.
pytestmark = pytest.mark.same_on_every_database

Value = encoding.Value


def stamp(seconds, nanos):
    return Timestamp(seconds=seconds, nanos=nanos)


EVERY_KIND = {
    "past_2_53": Value(integer_value=2**53 + 1),
    "max": Value(integer_value=2**63 - 1),
    "min": Value(integer_value=-(2**63)),
    "float": Value(double_value=12.5),
    "tiny": Value(double_value=5e-324),
    "nan": Value(double_value=float("nan")),
    "inf": Value(double_value=float("inf")),
    "minus_zero": Value(double_value=-0.0),
    "string": Value(string_value="120"),
    "unicode": Value(string_value="points ✓ \u2028 \x00"),
    "yes": Value(boolean_value=True),
    "nothing": Value(null_value=NULL_VALUE),
    "nanos": Value(timestamp_value=stamp(1795168800, 123456789)),
    "before_1970": Value(timestamp_value=stamp(-86400 * 365, 1000)),
    "bytes": Value(bytes_value=b"\x00\xff\n\r"),
    "ref": Value(reference_value="projects/p/databases/(default)/documents/wallets/u1"),
    "elsewhere": Value(reference_value="projects/other/databases/(default)/documents/wallets/u1"),
    "geo": Value(geo_point_value=LatLng(latitude=-33.8688, longitude=151.2093)),
    "array": Value(
        array_value=encoding.ArrayValue(
            values=[Value(integer_value=1), Value(array_value=encoding.ArrayValue())]
        )
    ),
    "map": Value(
        map_value=encoding.MapValue(
            fields={"deep": Value(map_value=encoding.MapValue(fields={"x": Value(double_value=1.0)}))}
        )
    ),
    "empty_map": Value(map_value=encoding.MapValue()),
}


@pytest.fixture
def codec():
    return FirestoreGateway("p")  # makes no connection until one is needed


def test_every_value_survives_json_exactly(codec):
    document = encoding.Document(
        name="projects/p/databases/(default)/documents/wallets/u1", fields=EVERY_KIND
    )

    line = json.dumps(codec.snapshot_document(document), sort_keys=True)
    back = codec.raw_document(json.loads(line))

    assert back.SerializeToString(deterministic=True) == document.SerializeToString(deterministic=True)
    assert back.fields["nanos"].timestamp_value.nanos == 123456789


def test_each_type_has_its_own_tag(codec):
    document = encoding.Document(
        name="projects/p/databases/(default)/documents/wallets/u1", fields=EVERY_KIND
    )
    fields = codec.snapshot_document(document)["fields"]

    assert fields["past_2_53"] == {"int": "9007199254740993"}
    assert fields["float"] == {"float": "12.5"}
    assert fields["nan"] == {"float": "nan"} and fields["minus_zero"] == {"float": "-0.0"}
    assert fields["string"] == {"str": "120"}
    assert fields["nanos"] == {"time": "2026-11-20T10:00:00.123456789Z"}
    assert fields["ref"] == {"ref": "wallets/u1"}
    assert fields["elsewhere"] == {"ref": "projects/other/databases/(default)/documents/wallets/u1"}
    assert fields["geo"] == {"geo": [-33.8688, 151.2093]}
    assert fields["bytes"] == {"bytes": "AP8KDQ=="}


def test_a_reference_is_restored_into_the_target_project():
    line = FirestoreGateway("source").snapshot_document(
        encoding.Document(
            name="projects/source/databases/(default)/documents/config/x",
            fields={"r": Value(reference_value="projects/source/databases/(default)/documents/wallets/u1")},
        )
    )
    back = FirestoreGateway("target").raw_document(line)
    assert back.name == "projects/target/databases/(default)/documents/config/x"
    assert back.fields["r"].reference_value == "projects/target/databases/(default)/documents/wallets/u1"


@pytest.mark.parametrize("bad", [{"int": "12.5"}, {"decimal": "1"}, {"int": "1", "str": "1"}, "1"])
def test_a_value_the_format_does_not_write_is_refused(codec, bad):
    with pytest.raises(ValueError):
        codec.raw_document({"path": "config/x", "fields": {"v": bad}})
