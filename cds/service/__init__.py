"""The CDS Hooks 2.0 service (`cds serve`): discovery, hooks answered with cards, feedback,
JWT verification, prefetch and FHIR fetching, and atomic reload of the rule packs. A renderer:
it reads the clock once per request and hands the engine that evaluation date."""
