"""The remote-write 1.0 messages (and remote read's, which the tests use to read Prometheus),
described at run time with the `protobuf` package: no generated code.

Field numbers and types are those of Prometheus' `prompb/remote.proto` and `types.proto`; the
gogoproto options there change nothing on the wire. Enums are declared as their varint `int32`
(the same encoding), and exemplars and native histograms as raw bytes: they are counted, not read.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

PACKAGE = "metrics_service.prompb"
_F = descriptor_pb2.FieldDescriptorProto
_SCALARS = {
    "string": _F.TYPE_STRING,
    "bytes": _F.TYPE_BYTES,
    "double": _F.TYPE_DOUBLE,
    "int64": _F.TYPE_INT64,
    "int32": _F.TYPE_INT32,
}

# message -> [(field name, number, type, repeated)]; a type not in _SCALARS names a message.
MESSAGES: dict[str, list[tuple[str, int, str, bool]]] = {
    "Label": [("name", 1, "string", False), ("value", 2, "string", False)],
    "Sample": [("value", 1, "double", False), ("timestamp", 2, "int64", False)],
    "TimeSeries": [
        ("labels", 1, "Label", True),
        ("samples", 2, "Sample", True),
        ("exemplars", 3, "bytes", True),
        ("histograms", 4, "bytes", True),
    ],
    "MetricMetadata": [
        ("type", 1, "int32", False),
        ("metric_family_name", 2, "string", False),
        ("help", 4, "string", False),
        ("unit", 5, "string", False),
    ],
    "WriteRequest": [
        ("timeseries", 1, "TimeSeries", True),
        ("metadata", 3, "MetricMetadata", True),
    ],
    "LabelMatcher": [
        ("type", 1, "int32", False),  # 0 EQ, 1 NEQ, 2 RE, 3 NRE
        ("name", 2, "string", False),
        ("value", 3, "string", False),
    ],
    "Query": [
        ("start_timestamp_ms", 1, "int64", False),
        ("end_timestamp_ms", 2, "int64", False),
        ("matchers", 3, "LabelMatcher", True),
    ],
    "ReadRequest": [
        ("queries", 1, "Query", True),
        ("accepted_response_types", 2, "int32", True),  # 0 SAMPLES
    ],
    "QueryResult": [("timeseries", 1, "TimeSeries", True)],
    "ReadResponse": [("results", 1, "QueryResult", True)],
}

# MetricMetadata.type, as Prometheus' metadata API spells the types.
METRIC_TYPES = (
    "unknown",
    "counter",
    "gauge",
    "histogram",
    "gaugehistogram",
    "summary",
    "info",
    "stateset",
)


def _file() -> descriptor_pb2.FileDescriptorProto:
    proto = descriptor_pb2.FileDescriptorProto(
        name="metrics_service/prompb.proto", package=PACKAGE, syntax="proto3"
    )
    for name, fields in MESSAGES.items():
        message = proto.message_type.add(name=name)
        for field_name, number, kind, repeated in fields:
            field = message.field.add(name=field_name, number=number)
            field.label = _F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL
            if kind in _SCALARS:
                field.type = _SCALARS[kind]
            else:
                field.type = _F.TYPE_MESSAGE
                field.type_name = f".{PACKAGE}.{kind}"
    return proto


_POOL = descriptor_pool.DescriptorPool()
_POOL.Add(_file())


def message_class(name: str) -> Any:
    return message_factory.GetMessageClass(_POOL.FindMessageTypeByName(f"{PACKAGE}.{name}"))


WriteRequest = message_class("WriteRequest")
TimeSeries = message_class("TimeSeries")
ReadRequest = message_class("ReadRequest")
ReadResponse = message_class("ReadResponse")
