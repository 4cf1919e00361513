"""Translations: which language netprobe speaks, and the gettext lookups behind every message.

    from netprobe.i18n import _, use_language
    use_language("zh_CN")       # or None: the locale's LANGUAGE / LC_ALL / LC_MESSAGES / LANG
    _("download")               # "下载"

The catalogues are gettext `.po` files shipped in the package (`netprobe/i18n/<lang>/netprobe.po`)
and read here with the standard library, so the runtime needs no compiler and no dependency.
Babel (a dev dependency) extracts the messages; `tests/test_i18n.py` checks every extracted
message has a translation. Untranslated messages and unknown languages fall back to English.
"""

from __future__ import annotations

import ast
import gettext
import os
from functools import cache
from pathlib import Path

LANGUAGES = ("en", "zh_CN")
_HERE = Path(__file__).parent
_active: gettext.NullTranslations = gettext.NullTranslations()
_language = "en"


class _Catalogue(gettext.NullTranslations):
    """One `.po` file's translations (single plural form: Chinese has no plural)."""

    def __init__(self, messages: dict[str, str]) -> None:
        super().__init__()
        self.messages = messages

    def gettext(self, message: str) -> str:
        return self.messages.get(message) or message

    def ngettext(self, msgid1: str, msgid2: str, n: int) -> str:
        translated = self.messages.get(msgid1)
        if translated:
            return translated
        return msgid1 if n == 1 else msgid2


def read_po(path: Path) -> dict[str, str]:
    """msgid → msgstr of a `.po` file (the subset Babel writes: no contexts, one plural form)."""
    messages: dict[str, str] = {}
    key: str | None = None
    fields: dict[str, str] = {}

    def flush() -> None:
        msgid = fields.get("msgid", "")
        text = fields.get("msgstr") or fields.get("msgstr[0]", "")
        if msgid and text:
            messages[msgid] = text

    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith('"'):
            if key is not None:
                fields[key] += ast.literal_eval(line)
            continue
        name, _, value = line.partition(" ")
        if name == "msgid":
            flush()
            fields = {}
        key = name
        fields[key] = ast.literal_eval(value)
    flush()
    return messages


@cache
def _catalogue(language: str) -> gettext.NullTranslations:
    path = _HERE / language / "netprobe.po"
    return _Catalogue(read_po(path)) if path.exists() else gettext.NullTranslations()


def resolve(language: str | None) -> str:
    """The supported language meant by `language` (e.g. "zh", "zh-CN", "zh_CN.UTF-8") or the locale."""
    candidates = [language] if language else []
    if not language:
        for variable in ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG"):
            if os.environ.get(variable):
                candidates = os.environ[variable].split(":")
                break
    for candidate in candidates:
        code = candidate.split(".")[0].replace("-", "_").lower()
        if code.startswith("zh"):
            return "zh_CN"
        if code.startswith("en") or code in ("c", "posix"):
            return "en"
    if language:
        raise ValueError(f"--lang {language!r} is not available (known: {', '.join(LANGUAGES)})")
    return "en"


def use_language(language: str | None) -> str:
    """Make `language` (or the locale's) the one every later message is written in."""
    global _active, _language
    _language = resolve(language)
    _active = _catalogue(_language)
    return _language


def current_language() -> str:
    """The language in use, e.g. "zh_CN"; its BCP 47 form is `html_lang()`."""
    return _language


def html_lang() -> str:
    """The language in use as an HTML `lang` value ("en", "zh-CN")."""
    return _language.replace("_", "-")


def _(message: str) -> str:
    """The message in the language in use."""
    return _active.gettext(message)


def N_(message: str) -> str:
    """Marks a message for extraction whose text is picked at run time; returns it as is."""
    return message


def ngettext(singular: str, plural: str, n: int) -> str:
    """The singular or plural message for `n`, in the language in use."""
    return _active.ngettext(singular, plural, n)
