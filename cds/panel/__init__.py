"""Batch review of a whole patient panel (`cds panel`): FHIR Bulk Data NDJSON or CSV in,
partitioned per patient, reviewed in shards on a process pool or Dask, merged into the
worklist, alerts, quarantine and the HTML report. A renderer: the evaluation date is decided
once per run."""
