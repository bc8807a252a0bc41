"""PromQL: our evaluator, on `promql-parser`'s syntax tree, vectorized with numpy over series and
steps. `query.instant_query` and `query.range_query` are the entry points; docs/promql.md
describes the semantics and the design."""
