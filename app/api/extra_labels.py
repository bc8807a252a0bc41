"""`extra_label=name=value` (repeatable): labels added to every series of an import, winning over
a label of the same name, as VictoriaMetrics' import endpoints take them."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query

from app.protocols.names import LABEL_NAME_RE
from app.validation import MAX_LABEL_VALUE, InvalidInput


def extra_labels(
    extra_label: Annotated[
        list[str] | None,
        Query(description="name=value, added to every series (repeatable).", examples=["env=prod"]),
    ] = None,
) -> tuple[tuple[str, str], ...]:
    pairs: dict[str, str] = {}
    for raw in extra_label or []:
        name, eq, value = raw.partition("=")
        if not eq or not LABEL_NAME_RE.fullmatch(name):
            raise InvalidInput(
                f"extra_label: {raw!r} must be name=value, the name matching"
                " ^[a-zA-Z_][a-zA-Z0-9_]*$"
            )
        if len(value) > MAX_LABEL_VALUE:
            raise InvalidInput(f"extra_label: the value of {name} is longer than {MAX_LABEL_VALUE}")
        pairs[name] = value
    return tuple(pairs.items())


ExtraLabels = Annotated[tuple[tuple[str, str], ...], Depends(extra_labels)]
