"""The engine: compiled packs matched against a patient's Facts (one module per rule kind in
`kinds/`), then findings deduplicated, prioritized and explained as Alerts. Two backends sit
behind one interface: the indexed evaluator (default) and durable-rules."""
