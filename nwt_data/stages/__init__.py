"""Pipeline stages. Each has a pure core, a per-item function run by workers, and one `run_*`."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class StageReport:
    """What a stage run did: ordered counts for the summary table and each failure."""

    stage: str
    counts: dict[str, int] = field(default_factory=dict)
    failures: list[tuple[str, str, str]] = field(default_factory=list)  # (item, kind, message)
    warnings: list[str] = field(default_factory=list)  # printed after the summary; the run still succeeds

    def add(self, name: str, n: int = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + n

    @property
    def failed(self) -> bool:
        return bool(self.failures)
