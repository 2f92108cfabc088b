"""The self-check's findings: one row per check, printed as a table."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Verdict(StrEnum):
    MATCH = "match"
    ROUNDING = "match (±1: Stripe rounds each line)"
    MISMATCH = "MISMATCH"


@dataclass(frozen=True, slots=True)
class Row:
    case: str
    mode: str
    check: str  # the step, "setup" or "renewal"
    rules: str  # what BILLING_RULES says
    quote: str  # the connector's quote before the change
    ledger: str  # the connector's ledger entry (expected_charge) / plan view
    stripe: str  # what Stripe invoiced
    verdict: Verdict
    why: str = ""

    @property
    def ok(self) -> bool:
        return self.verdict is not Verdict.MISMATCH


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    # The run could not finish, or could not clean up: each stops a clean pass.
    problems: list[str] = field(default_factory=list)
    year: int | None = None

    @property
    def mismatches(self) -> list[Row]:
        return [row for row in self.rows if not row.ok]

    @property
    def ok(self) -> bool:
        return bool(self.rows) and not self.mismatches and not self.problems

    def render(self) -> str:
        headers = ("case", "mode", "check", "rules", "quote", "ledger", "Stripe invoiced", "")
        table = [
            (
                r.case,
                r.mode,
                r.check,
                r.rules,
                r.quote,
                r.ledger,
                r.stripe,
                r.verdict.value + (f": {r.why}" if r.why else ""),
            )
            for r in self.rows
        ]
        columns = zip(headers, *table, strict=True)
        widths = [max(len(cell) for cell in column) for column in columns]
        widths[-1] = 0  # the verdict runs to the end of the line

        def line(cells: tuple[str, ...]) -> str:
            return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

        out = [line(headers), line((*("-" * w for w in widths[:-1]), "-------"))]
        out += [line(cells) for cells in table]
        matched = sum(1 for r in self.rows if r.ok)
        out.append("")
        out.append(
            f"{matched} of {len(self.rows)} checks match"
            + (f"; {len(self.mismatches)} MISMATCH" if self.mismatches else "")
        )
        out += [f"problem: {p}" for p in self.problems]
        return "\n".join(out)


def money(amount: int) -> str:
    """Minor units as BILLING_RULES writes them: 19,200."""
    return f"{amount:,}"
