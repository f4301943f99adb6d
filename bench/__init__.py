"""The import benchmark: the worker's real code path against PostgreSQL's own COPY.

    python -m bench                                   # the issue's sizes: N = 1M, big base 5M
    python -m bench --rows 20000 --big-base 100000    # about a minute: while developing
    python -m bench --only W1,W3 --json /tmp/w.json   # some workloads, figures elsewhere

It creates its own database (`dropimport_bench`, dropped first) on the PostgreSQL server of
`--database-url` and a temporary home, generates seeded contacts files (datasets.py: the mixed
file of mixed.py for W1-W3 and M by default, the plain one of data.py for the others),
measures every workload (workloads.py) with each load in a process of its own (run_one.py),
W4 and W6 over FTP through the real agent, RabbitMQ and worker (system.py), F (only when
named) over SFTP, beside OpenSSH's own server (sftp.py), X (exports) beside the database's own
COPY to a file, prints one table
and writes the same figures as JSON (default bench/results.json, not to be committed). W1-W3
and A are ratios to the COPY baseline measured in the same run, and to the lean one beside it
(baseline.py).
"""
