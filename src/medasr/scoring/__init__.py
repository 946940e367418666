"""Scoring: corpus WER / CER with confidence intervals (`metrics`), medical terms, numbers and
doses (`medical`), the `medasr score` object (`summary`), evaluation over datasets (`spec`,
`evaluate`) and its report (`report`)."""
