"""HEAD's successor, as a test makes it: HEAD's code with its read models
changed the three ways a release changes them, each needing no hand work.

- a column added: docs/read-models.md's worked example (`server_count` in the
  order lists);
- a column renamed: the servers' `updated_at` is stored as `changed_at`;
- a view added: `destination_counts`, how many orders each project was sent.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from tests.integration.test_worked_example import followed as with_a_column_added

# A read model of its own module, as a newcomer would add one.
ADDED_VIEW: Final = '''"""How many orders each project has been sent."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from domain.event_kinds import ORDER_TOPICS
from domain.order import Order
from projections.page_writer import Changes, Table
from projections.view import ReadModel


@dataclass(slots=True)
class DestinationCount:
    project: str
    n: int


COUNTS: Final = Table("destination_counts", DestinationCount, key=["project"])


class DestinationCounts(ReadModel):
    name = "destination_counts"
    layout = (COUNTS,)
    topics = ORDER_TOPICS

    def fold(self, event: Any, changes: Changes) -> None:
        match event:
            case Order.Requested():
                changes.add(COUNTS, DestinationCount(event.dest_project, 1))
'''

# (file, text, what it becomes): each once in its file.
EDITS: Final = (
    (
        "projections/server_ownership.py",
        '    key=["snid"],\n',
        '    key=["snid"],\n    stored_as={"updated_at": "changed_at"},\n',
    ),
    (
        "service/store.py",
        " self.mail_outbox, self.reports]\n",
        " self.mail_outbox, self.reports, DestinationCounts()]\n",
    ),
    (
        "service/store.py",
        " MailOutbox(), Reports()]\n",
        " MailOutbox(), Reports(), DestinationCounts()]\n",
    ),
    (
        "service/store.py",
        "from projections.database import (\n",
        "from projections.destination_counts import DestinationCounts\n"
        "from projections.database import (\n",
    ),
)


def successor(tree: Path) -> Path:
    """A copy of HEAD's code in `tree`, its read models changed three ways."""
    with_a_column_added(tree)
    (tree / "projections" / "destination_counts.py").write_text(
        ADDED_VIEW, encoding="utf-8"
    )
    for file, text, becomes in EDITS:
        path = tree / file
        code = path.read_text(encoding="utf-8")
        assert code.count(text) == 1, f"{file} no longer has {text!r} once"
        path.write_text(code.replace(text, becomes), encoding="utf-8")
    return tree
