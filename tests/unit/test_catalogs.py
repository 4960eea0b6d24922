"""Every message the code marks has a translation in every catalog, and the
compiled catalogs are those of the .po files: what `make test` checks of the
languages (language/locale/)."""

from __future__ import annotations

import gettext
import string
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import pytest
from babel.messages.catalog import Catalog, Message
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_file
from babel.messages.pofile import read_po

from language import DOMAIN, LOCALE_DIR, Language, available

ROOT: Final = Path(__file__).resolve().parents[2]
# Where the Makefile's `catalogs` target extracts messages from.
PACKAGES: Final = ("domain", "projections", "service", "mail", "api", "cli", "language")
CATALOGS: Final = sorted(LOCALE_DIR.glob(f"*/LC_MESSAGES/{DOMAIN}.po"))


def marked_messages() -> dict[str, str | tuple[str, str]]:
    """msgid -> the message (a (singular, plural) pair for a plural), as Babel
    extracts them from the code with gettext's usual keywords."""
    found: dict[str, str | tuple[str, str]] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for _line, message, _comments, _context in extract_from_file(
                "python", str(path), keywords=DEFAULT_KEYWORDS
            ):
                if isinstance(message, tuple):
                    singular, plural = message[0], message[1]
                    found[singular] = (singular, plural)
                else:
                    found[message] = message
    return found


def read_catalog(path: Path) -> Catalog:
    with path.open("rb") as file:
        return read_po(file)


def translated(catalog: Catalog) -> Iterator[Message]:
    return (m for m in catalog if m.id)


def placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def msgid(message: Message) -> str:
    return message.id[0] if isinstance(message.id, tuple) else message.id


@pytest.fixture(params=CATALOGS, ids=[p.parts[-3] for p in CATALOGS])
def catalog_path(request: pytest.FixtureRequest) -> Path:
    path: Path = request.param
    return path


def test_there_is_a_catalog_besides_the_source_language() -> None:
    assert [p.parts[-3] for p in CATALOGS] == ["zh_CN"]
    assert available() == ["en", "zh_CN"]


def test_the_code_marks_messages_for_translation() -> None:
    messages = marked_messages()
    assert (
        "[pm-order] Order {order} requested: {servers} from {source} to {destination}"
        in messages
    )
    assert messages["{count} server"] == ("{count} server", "{count} servers")


def test_every_marked_message_has_a_translation_in_every_catalog(
    catalog_path: Path,
) -> None:
    # given
    catalog = read_catalog(catalog_path)
    # when
    untranslated = [
        text
        for text, message in marked_messages().items()
        if (entry := catalog.get(text)) is None
        or entry.fuzzy
        or not all(entry.string if isinstance(message, tuple) else [entry.string])
    ]
    # then
    assert untranslated == [], "run `make catalogs` and translate these"


def test_a_catalog_holds_no_message_the_code_no_longer_has(catalog_path: Path) -> None:
    marked = marked_messages()
    stale = [
        msgid(m)
        for m in translated(read_catalog(catalog_path))
        if msgid(m) not in marked
    ]
    assert stale == []


def test_every_translation_keeps_the_placeholders_of_its_message(
    catalog_path: Path,
) -> None:
    # given
    catalog = read_catalog(catalog_path)
    # when
    changed = []
    for message in translated(catalog):
        sources = message.id if isinstance(message.id, tuple) else (message.id,)
        strings = (
            message.string if isinstance(message.string, tuple) else (message.string,)
        )
        wanted = set().union(*(placeholders(s) for s in sources))
        changed += [s for s in strings if placeholders(s) != wanted]
    # then
    assert changed == []


def test_the_compiled_catalog_says_what_its_po_file_says(catalog_path: Path) -> None:
    # given the .mo that `make install` compiled from the .po
    compiled = catalog_path.with_suffix(".mo")
    assert compiled.is_file(), "run `make install`: it compiles the catalogs"
    with compiled.open("rb") as file:
        mo = gettext.GNUTranslations(file)
    # then
    stale = []
    for message in translated(read_catalog(catalog_path)):
        if isinstance(message.id, tuple):
            got = mo.ngettext(message.id[0], message.id[1], 1)
            want = message.string[0]
        else:
            got, want = mo.gettext(message.id), message.string
        if got != want:
            stale.append(message.id)
    assert stale == [], "the .mo is older than the .po: run `make install`"


def test_a_new_catalog_is_a_new_language_without_a_code_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a French catalog compiled into a copy of the locale folder
    from babel.messages.mofile import write_mo

    import language

    french = Catalog(locale="fr")
    french.add("Transfer orders report", "Rapport des ordres de transfert")
    folder = tmp_path / "fr" / "LC_MESSAGES"
    folder.mkdir(parents=True)
    with (folder / f"{DOMAIN}.mo").open("wb") as file:
        write_mo(file, french)
    monkeypatch.setattr(language, "LOCALE_DIR", tmp_path)
    # when
    Language.named.cache_clear()
    try:
        french_language = Language.named("fr")
        # then
        assert french_language.gettext("Transfer orders report") == (
            "Rapport des ordres de transfert"
        )
        assert french_language.tag == "fr"
    finally:
        Language.named.cache_clear()


def test_every_report_column_heading_is_marked_for_the_catalog() -> None:
    # The read model (projections/reports.py) names its columns in English; the
    # page and the terminal translate them through COLUMN_HEADINGS' marks.
    from cli.report_html import COLUMN_HEADINGS
    from projections.reports import DAY_COLUMNS, PROJECT_COLUMNS

    columns = [*DAY_COLUMNS, *PROJECT_COLUMNS]
    headings = {c.heading for c in columns} | {c.short for c in columns}
    assert headings - COLUMN_HEADINGS == set()
