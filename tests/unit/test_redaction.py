"""Numbers masked before analysts see them: the cases docs/analysts.md lists, one test each."""

import pytest

from callscribe.redaction import MASK, redact, redact_channel

# (what was said, what analysts see) - the table in docs/analysts.md, "Redaction".
CASES = [
    ("My card is 4111 1111 1111 1111.", "My card is [redacted]."),
    ("It's 4111-1111-1111-1111", "It's [redacted]"),
    ("4111.1111.1111.1111 expires soon", "[redacted] expires soon"),
    ("4111, 1111, 1111, 1111", "[redacted]"),
    ("4111,1111,1111,1111", "[redacted]"),
    ("4111 dash 1111 dash 1111 dash 1111", "[redacted]"),
    ("Call me on 555.123.4567 tonight", "Call me on [redacted] tonight"),
    ("Call me on (555) 123-4567", "Call me on [redacted]"),
    ("the account is 45678", "the account is [redacted]"),
    ("four one one one one one one one", "[redacted]"),
    ("it is four five six seven eight nine.", "it is [redacted]."),
    ("double five one two", "[redacted]"),
    ("five five five dot one two three", "[redacted]"),
    ("four 5 6 7 8", "[redacted]"),
    ("oh two four six", "[redacted]"),
    ("4111 - 1111 - 1111", "[redacted]"),
    ("4111–1111–1111–1111", "[redacted]"),
    ("4111_1111_1111", "[redacted]"),
    ("call +1 555 123 4567", "call [redacted]"),
    ("+15551234567", "[redacted]"),
    ("acct#45678 please", "acct#[redacted] please"),
    ("ext.12345", "ext.[redacted]"),
    ("$4111111111111111", "[redacted]"),
    ("card ４１１１ １１１１ １１１１ １１１１", "card [redacted]"),
    ("٤١١١ ١١١١", "[redacted]"),
    ("ｆｏｕｒ five six seven", "[redacted]"),
    ("four.five.six.seven", "[redacted]"),
    # Kept: amounts, years, times, dates, short numbers, ordinary words.
    ("The price is 12.99 per month.", "The price is 12.99 per month."),
    ("$1,299.99 in total", "$1,299.99 in total"),
    ("about 1,250 dollars", "about 1,250 dollars"),
    ("in 2025 and 2026", "in 2025 and 2026"),
    ("meet at 10:30", "meet at 10:30"),
    ("on 2026-11-26", "on 2026-11-26"),
    ("room 1234", "room 1234"),
    ("one or two", "one or two"),
    ("oh, I see, one moment", "oh, I see, one moment"),
    ("a dash of salt", "a dash of salt"),
    ("$12.99 $45.00", "$12.99 $45.00"),
    ("1,000 2,000", "1,000 2,000"),
    ("in 2023, 2024", "in 2023, 2024"),
    ("26.11.2024", "26.11.2024"),
    ("11/26/2024", "11/26/2024"),
]


@pytest.mark.parametrize(("said", "shown"), CASES, ids=[c[0] for c in CASES])
def test_each_case(said, shown):
    assert redact(said) == shown


def test_luhn_valid_card_numbers_are_masked_in_every_usual_form():
    for card in ("4111111111111111", "5500 0000 0000 0004", "3400-000000-00009", "6011.0000.0000.0004"):
        assert redact(f"number {card} ok") == f"number {MASK} ok"


def test_a_number_split_across_two_segments_is_masked_in_both():
    assert redact_channel(["my card is 4111", "1111 1111 1111 thanks"]) == ["my card is [redacted]",
                                                                          "[redacted] thanks"]
    assert redact_channel(["it is four one", "one one one five, ok"]) == ["it is [redacted]", "[redacted], ok"]
    # Short numbers on both sides of a boundary that do not add up to a number stay.
    assert redact_channel(["room 12", "at 10:30"]) == ["room 12", "at 10:30"]
    assert redact_channel(["", "4111 1111"]) == ["", "[redacted]"]
    # An empty or blank segment inside a number stays as it was; whitespace around a mask stays.
    assert redact_channel(["card 4111", "", "1111 1111"]) == ["card [redacted]", "", "[redacted]"]
    assert redact_channel(["number 45678\n", "\n1111"]) == ["number [redacted]\n", "\n[redacted]"]


def test_text_around_a_mask_is_kept_exactly():
    assert redact("  two  spaces 45678,\tthen\nmore ") == "  two  spaces [redacted],\tthen\nmore "


def test_the_documented_table_is_what_the_code_does():
    """docs/analysts.md lists these cases; each of its rows must hold."""
    import re
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "analysts.md").read_text()
    table = doc.split("## Redaction", 1)[1]
    rows = re.findall(r"^\| `(.*)` \| `(.*)` \|$", table, flags=re.M)
    assert len(rows) == len(CASES)
    for said, shown in rows:
        assert redact(said) == shown, said


def test_word_times_follow_the_redacted_text():
    """A masked number is one word starting when the number did: times line up with what analysts
    read and do not tell how many words the number took."""
    from callscribe.redaction import redact_channel_timed

    texts = ["my card is 4111", "1111 1111 1111, thanks", "call 555.123.4567 or four five six seven now", "plain"]
    starts = [[0.0, 0.3, 0.6, 0.9], [2.0, 2.5, 3.0, 3.4], [5.0, 5.2, 5.9, 6.0, 6.1, 6.2, 6.3, 6.4], None]
    masked, timed = redact_channel_timed(texts, starts)
    assert masked == redact_channel(texts)  # single spaces already: nothing to tidy
    assert timed == [[0.0, 0.3, 0.6, 0.9], [2.0, 3.4], [5.0, 5.2, 5.9, 6.0, 6.4], None]
    assert all(t is None or len(t) == len(m.split()) for m, t in zip(masked, timed, strict=True))
    # Times that never lined up with the text stay unknown.
    assert redact_channel_timed(["a b c"], [[1.0, 2.0]])[1] == [None]


def test_what_analysts_get_has_single_spaces():
    """Words split the same way in Python and in the database (where hit times are looked up)."""
    from callscribe.redaction import redact_channel_timed

    masked, timed = redact_channel_timed(["\ta  b\u00a0c 45678 ", "x"], [[1.0, 2.0, 3.0, 4.0], None])
    assert masked == ["a b c [redacted]", "x"] and timed == [[1.0, 2.0, 3.0, 4.0], None]
