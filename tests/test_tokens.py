"""Token counts: the ASCII fast path counts exactly what the token pattern finds."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from rapo.tokens import _TOKEN, count_tokens


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(max_codepoint=127), max_size=120) | st.text(max_size=30))
def test_token_count_equals_the_token_pattern_count(text: str) -> None:
    count_tokens.cache_clear()
    assert count_tokens(text) == len(_TOKEN.findall(text))


def test_words_digit_runs_and_marks_count_one_each() -> None:
    assert count_tokens("Answer: 120 dollars.") == 5
