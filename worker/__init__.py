"""The import: dramatiq actors (thin), the CSV reader, field types, the template engine, the
contacts store and the reports. Never imports `agent`."""
