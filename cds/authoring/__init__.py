"""Tools for rule authors: lint warnings, pack test cases and their runner, version diffs,
and `cds explain` (why a rule did or did not fire for a patient)."""
