"""What `make demo` prints of a day's transcripts: the text analysts see (numbers masked, as the
README promises: the raw text is for the privileged role only), and who speaks on each channel."""

from __future__ import annotations

import pytest

from callscribe.dev.demo import transcript_lines
from tests.integration.conftest import CALLS

pytestmark = pytest.mark.integration


def test_the_demo_prints_masked_text_and_the_speakers(pg, loaded):
    out = "\n".join(transcript_lines(pg, CALLS["a"]["day"]))
    assert "analyst-a.wav" in out, out
    assert "4111" not in out and "[redacted]" in out, out
    assert "customer" in out and "agent" in out, out
