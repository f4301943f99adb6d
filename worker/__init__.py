"""The import of a spooled file into the contacts store. Never imports `agent`.

- importer.py: one import, from its file event to its record, reports and archived file;
- read/: the file read and checked into contacts; write/: the contacts store and its writes;
- contact.py: the contact model both share; record.py: an import's record and counts;
- runtime/: the dramatiq actors and middleware; cli.py: the worker's commands;
- notify.py, overdue.py, sample.py, status.py, report.py: notices, late files, templates
  from a sample, `dropimport status`, the customer's reports.
"""
