"""What a benchmark run found: its measured runs, each workload's verdict, the table, the JSON."""

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class Run:
    """One load, measured in a process of its own (or a transfer: F's; the peak RSS is then
    the agent's, or none for OpenSSH's server)."""

    label: str
    rows: int
    seconds: float
    peak_rss_mb: float | None
    idle_rss_mb: float | None  # before the load: the interpreter and its libraries
    database: str = "postgresql"
    counts: dict = field(default_factory=dict)

    @property
    def rows_per_s(self):
        return self.rows / self.seconds

    def as_dict(self):
        return {**asdict(self), "rows_per_s": self.rows_per_s}


@dataclass(frozen=True)
class Result:
    """A workload's outcome: its runs (the main one first), its figure against its target.

    `ratio` is the workload's figure: its speed over the COPY baseline's for W1-W3 and A, the
    time on the big base over the time on an empty one for W5, the peak RSS on 5N over N for
    M, our SFTP speed over OpenSSH's for F, the export's speed over the database's own COPY's
    for X, the gzipped upload's import time over the plain file's for Z (the encrypted one's
    is in its label); none for W4 (its runs are the p50 and the p99),
    W6 and S. `lean` is the speed over the lean baseline's (W1-W3 and A), reported beside
    it, with no target.
    """

    id: str
    name: str
    target: str
    runs: tuple = ()
    ratio: float | None = None
    met: bool | None = None
    lean: float | None = None

    def as_dict(self):
        return {"name": self.name, "status": "run", "target": self.target, "ratio": self.ratio,
                "lean_ratio": self.lean, "met": self.met,
                "runs": [run.as_dict() for run in self.runs]}


HEADINGS = ("workload", "rows", "seconds", "rows/s", "ratio", "vs lean", "peak RSS MB",
            "target", "met")
#: The columns of figures, aligned right.
FIGURES = range(1, 7)


def _lines(result):
    """The table lines of one workload: its main run (named after it), then the others."""
    title = f"{result.id} {result.name}"
    lines = []
    for n, run in enumerate(result.runs):
        figures = (f"{run.rows:,}", f"{run.seconds:.2f}", f"{run.rows_per_s:,.0f}")
        rss = "-" if run.peak_rss_mb is None else f"{run.peak_rss_mb:.0f}"
        if n == 0:
            ratios = ("-" if ratio is None else f"{ratio:.2f}x"
                      for ratio in (result.ratio, result.lean))
            met = "-" if result.met is None else "yes" if result.met else "no"
            lines.append((f"{title}: {run.label}", *figures, *ratios, rss, result.target, met))
        else:
            lines.append((f"  {run.label}", *figures, "", "", rss, "", ""))
    return lines


def table(results):
    """The results as a plain-text table, one line per run."""
    rows = [HEADINGS] + [line for result in results for line in _lines(result)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADINGS))]
    widths[-1] = 0  # the last column is not padded
    lines = [
        "  ".join(
            cell.rjust(width) if i in FIGURES else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    ]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def document(results, **about):
    """The JSON document of a run: `about` it (sizes, machine...), then every workload."""
    return {**about, "workloads": {result.id: result.as_dict() for result in results}}
