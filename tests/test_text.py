import pytest

from smsbatch.core.text import (
    GSM7_BASIC,
    GSM7_EXTENSION,
    display_width,
    pad_left,
    pad_right,
    plural,
    redact_url,
    shorten,
    sms_segments,
    visible,
)


def test_plural_says_one_message_and_two_messages():
    assert plural(1, "message") == "1 message"
    assert plural(2, "message") == "2 messages"
    assert plural(0, "sender") == "0 senders"


def test_gsm_tables_have_the_standard_sizes():
    assert len(GSM7_BASIC) == 127  # 128 positions less ESC, which only leads into the extension
    assert len(GSM7_EXTENSION) == 10


@pytest.mark.parametrize(
    ("text", "count", "encoding"),
    [
        ("a" * 160, 1, "GSM-7"),
        ("a" * 161, 2, "GSM-7"),
        ("a" * 306, 2, "GSM-7"),
        ("a" * 307, 3, "GSM-7"),
        ("€" * 80, 1, "GSM-7"),  # an extension character counts 2: 160 septets
        ("€" * 81, 2, "GSM-7"),
        ("a" * 152 + "€", 1, "GSM-7"),  # 154 septets in one SMS
        ("a" * 152 + "€" + "a" * 7, 2, "GSM-7"),  # 161: the € is not split over two parts
        ("Ünìcode? éàü ÄÖÑ", 1, "GSM-7"),  # these accents are in GSM-7
        ("ł" * 70, 1, "UCS-2"),
        ("ł" * 71, 2, "UCS-2"),
        ("ł" * 134, 2, "UCS-2"),
        ("ł" * 135, 3, "UCS-2"),
        ("🌊" * 35, 1, "UCS-2"),  # a surrogate pair is two UTF-16 units
        ("🌊" * 36, 2, "UCS-2"),
        ("a" * 159 + "ç", 3, "UCS-2"),  # one character outside GSM-7 makes the whole text UCS-2
    ],
)
def test_sms_segments_counts_gsm7_and_ucs2(text, count, encoding):
    segments = sms_segments(text)
    assert (segments.count, segments.encoding) == (count, encoding)


def test_segments_describe_themselves():
    assert sms_segments("hi").describe() == "1 segment, GSM-7"
    assert sms_segments("ł" * 71).describe() == "2 segments, UCS-2"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://user:pw@host:6379/0", "redis://user:***@host:6379/0"),
        ("redis://:pw@host/0", "redis://:***@host/0"),
        ("rediss://u:p@ss:w@host/0", "rediss://u:***@host/0"),  # an @ in the password
        ("redis://host:6379/0?password=pw&db=1", "redis://host:6379/0?password=***&db=1"),
        ("unix://u:pw@/run/redis.sock?db=0", "unix://u:***@/run/redis.sock?db=0"),
        ("redis://user:pw@host:99999999/0", "redis://user:***@host:99999999/0"),  # not a valid URL
        ("redis://host:6379/0", "redis://host:6379/0"),
        ("localhost", "localhost"),
    ],
)
def test_redact_url_hides_the_password(url, shown):
    assert redact_url(url) == shown


def test_display_width_counts_wide_characters_twice():
    assert display_width("abc") == 3
    assert display_width("東京") == 4
    assert display_width("e\u0301") == 1  # e + combining acute
    assert pad_right("東京", 6) == "東京  "
    assert pad_left("東京", 6) == "  東京"


def test_shorten_fits_the_width_and_says_it_cut():
    assert shorten("short", 10) == "short"
    cut = shorten("EMERGENCY ALERT: Flash flood warning", 20)
    assert cut.endswith("...")
    assert len(cut) <= 20
    wide = shorten("日本語のテキスト" * 5, 20)
    assert wide.endswith("...")
    assert display_width(wide) <= 20


def test_visible_keeps_one_line_and_no_escapes():
    assert visible("a\nb\tc\x1b[31m d") == "a\\nb\\tc\\x1b[31m d"


@pytest.mark.parametrize(
    ("share", "shown"),
    [(1.0, "100.0%"), (0.0, "0.0%"), (0.9998, "99.98%"), (0.99999, "99.999%"), (0.0004, "0.04%"), (0.5, "50.0%")],
)
def test_a_share_never_says_all_or_none_of_what_is_not(share, shown):
    from smsbatch.core.text import share_text

    assert share_text(share) == shown
