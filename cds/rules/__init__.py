"""Rule packs as data: the pack schema (pydantic), the expression language of `when:`
conditions, the loader with errors that name file, line, rule and field, and the registry of
installed pack versions. Nothing here compiles or evaluates rules: cds/engine does."""
