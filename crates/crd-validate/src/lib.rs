//! Validate custom resources against a CRD schema and its CEL rules.
