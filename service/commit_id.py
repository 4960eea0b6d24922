"""The commit a `git archive` of the repository was made from.

`git archive` replaces the placeholder below with the commit's id, because
.gitattributes marks this file `export-subst`; in a checkout it stays as written
and service/release.py asks git instead. Do not edit the placeholder.
"""

from __future__ import annotations

from typing import Final

ARCHIVED: Final = "$Format:%H$"
