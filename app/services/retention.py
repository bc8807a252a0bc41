"""Pure retention decisions: per-resolution cut-offs from the defaults and per-metric overrides.

Cut-offs are aligned down to the hour, the coarsest rollup, so no bucket of any resolution ever
straddles a cut-off: a bucket is either wholly kept or wholly expired.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from app.services.rollup import BY_NAME, RESOLUTIONS, bucket_start

KINDS = ("raw", *(res.name for res in RESOLUTIONS))
ALIGN = BY_NAME["1h"]


def cutoff(now_ms: int, keep_ms: int) -> int:
    """Data before this has been kept for at least `keep_ms` and may go."""
    return bucket_start(now_ms - keep_ms, ALIGN)


@dataclass(frozen=True)
class RetentionPlan:
    """What may be dropped: per kind, '*' is the default cut-off, other keys are metrics."""

    raw_cutoffs: Mapping[str, int]
    rollup_cutoffs: Mapping[str, Mapping[str, int]]
    overridden: frozenset[str]

    def raw_cutoff(self, metric: str) -> int:
        return self.raw_cutoffs.get(metric, self.raw_cutoffs["*"])


def plan_retention(
    now_ms: int,
    defaults: Mapping[str, int],
    overrides: Mapping[str, Mapping[str, int]],
    rolled_up_before: int | None = None,
) -> RetentionPlan:
    """`defaults` maps each kind to how long it is kept (ms); `overrides` metric -> kind -> ms.
    Raw data at or after `rolled_up_before` (where the coarsest closed bucket ends) is kept
    whatever the policy says: it is not rolled up at every resolution yet."""

    def cutoffs(kind: str, ceiling: int | None = None) -> dict[str, int]:
        out = {"*": cutoff(now_ms, defaults[kind])}
        for metric, policy in overrides.items():
            out[metric] = cutoff(now_ms, policy.get(kind, defaults[kind]))
        if ceiling is not None:
            out = {key: min(value, ceiling) for key, value in out.items()}
        return out

    return RetentionPlan(
        raw_cutoffs=cutoffs("raw", rolled_up_before),
        rollup_cutoffs={res.name: cutoffs(res.name) for res in RESOLUTIONS},
        overridden=frozenset(overrides),
    )


def effective_policy(
    defaults: Mapping[str, int], override: Mapping[str, int] | None
) -> dict[str, int]:
    return {kind: (override or {}).get(kind, defaults[kind]) for kind in KINDS}
