"""The errors of the query API, with the `errorType` and status Prometheus answers them with."""

from __future__ import annotations


class PromQLError(Exception):
    """An error answered in Prometheus' envelope."""

    error_type = "execution"
    status = 422


class BadData(PromQLError):
    """Invalid parameters or an expression that does not parse."""

    error_type = "bad_data"
    status = 400


class ExecutionError(PromQLError):
    """A valid expression that cannot be evaluated (Prometheus' runtime errors)."""


class Unsupported(ExecutionError):
    """Valid PromQL that this evaluator does not implement: answered rather than guessed."""

    def __init__(self, what: str) -> None:
        super().__init__(f"{what} is not supported by this server")


class TooManySamples(ExecutionError):
    def __init__(self, limit: int) -> None:
        super().__init__(
            "query processing would load too many samples into memory in query execution"
            f" (more than PROMQL_MAX_SAMPLES, {limit:,})"
        )


class EvaluationTimeout(PromQLError):
    error_type = "timeout"
    status = 503

    def __init__(self, seconds: float) -> None:
        super().__init__(f"query timed out in expression evaluation (after {seconds:g}s)")
