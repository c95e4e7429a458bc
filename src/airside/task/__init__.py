"""The Concourse task config schema (issue 6)."""
