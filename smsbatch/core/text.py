"""Small text helpers for what smsbatch prints: plurals, display widths (a
CJK character takes two terminal columns), shortening to one line, hiding
the password in a broker URL, and counting the SMS segments of the alert."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

ELLIPSIS = "..."


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """`1 message`, `2 messages`."""
    return f"{count} {noun if count == 1 else nouns or noun + 's'}"


# ---- terminal columns ----


def share_text(share: float) -> str:
    """A share as a percentage to one decimal place, with as many more as it
    takes (up to four) never to say 100% of what is not all, or 0% of what is not none."""
    text = f"{share:.1%}"
    for digits in range(2, 5):
        if not (0.0 < share < 1.0 and float(text[:-1]) in (0.0, 100.0)):
            break
        text = f"{share:.{digits}%}"
    return text


def char_width(char: str) -> int:
    if unicodedata.combining(char) or unicodedata.category(char) in ("Mn", "Me", "Cf"):
        return 0  # drawn on top of the character before it
    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1


def display_width(text: str) -> int:
    return sum(char_width(char) for char in text)


def pad_right(text: str, width: int) -> str:
    """str.ljust, counting terminal columns rather than characters."""
    return text + " " * max(0, width - display_width(text))


def pad_left(text: str, width: int) -> str:
    return " " * max(0, width - display_width(text)) + text


def visible(text: str) -> str:
    """`text` on one line: newlines, tabs and escapes shown as `\\n`, `\\t`, `\\x1b`,
    so a message cannot break a line or drive the terminal."""
    return "".join(char if char.isprintable() else _escaped(char) for char in text)


def _escaped(char: str) -> str:
    return repr(char)[1:-1] if char != " " else char


def shorten(text: str, width: int) -> str:
    """`text` cut to at most `width` columns, ending in `...` if it was cut."""
    if display_width(text) <= width:
        return text
    kept, used = [], display_width(ELLIPSIS)
    for char in text:
        used += char_width(char)
        if used > width:
            break
        kept.append(char)
    return "".join(kept).rstrip() + ELLIPSIS


# ---- broker URLs ----


def redact_url(url: str) -> str:
    """`redis://user:pw@host` as `redis://user:***@host` (and `?password=pw` as
    `?password=***`), so no message, log or summary shows a password. Works
    on text that is not a valid URL too: bad input is echoed back as well."""
    scheme, sep, rest = str(url).partition("//")
    if not sep:
        return _redact_query(url)
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    netloc, tail = rest[:end], rest[end:]
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        if ":" in userinfo:
            netloc = userinfo.split(":", 1)[0] + ":***@" + host
    return scheme + sep + netloc + _redact_query(tail)


def _redact_query(text: str) -> str:
    before, sep, query = text.partition("?")
    if not sep:
        return text
    fields = [
        f"{key}=***" if key.lower() == "password" else field
        for field in query.split("&")
        for key in [field.partition("=")[0]]
    ]
    return before + sep + "&".join(fields)


# ---- SMS segments ----

# GSM 03.38: the basic character set (one septet each; ESC, 0x1B, is left out:
# it only introduces the extension table) and the extension table (ESC + one
# septet, so two each).
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")


@dataclass(frozen=True)
class Segments:
    count: int
    encoding: str  # "GSM-7" or "UCS-2"

    def describe(self) -> str:
        return f"{plural(self.count, 'segment')}, {self.encoding}"


def sms_segments(text: str) -> Segments:
    """How many SMS the text takes. GSM-7 if every character is in GSM 03.38
    (160 septets in one SMS, 153 per part of a longer one; an extension
    character takes 2 and is never split); UCS-2 otherwise (70 UTF-16 units in
    one, 67 per part; a surrogate pair is never split)."""
    if all(char in GSM7_BASIC or char in GSM7_EXTENSION for char in text):
        units = [2 if char in GSM7_EXTENSION else 1 for char in text]
        return Segments(_parts(units, single=160, part=153), "GSM-7")
    units = [2 if ord(char) > 0xFFFF else 1 for char in text]
    return Segments(_parts(units, single=70, part=67), "UCS-2")


def _parts(units: list[int], single: int, part: int) -> int:
    if sum(units) <= single:
        return 1
    count, room = 1, part
    for size in units:  # a character that does not fit starts the next part
        if size > room:
            count, room = count + 1, part
        room -= size
    return count
