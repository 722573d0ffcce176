"""News files a careless user gives ``--replay``: each is one UsageError naming the right line, never a
traceback, and never a later headline merged into an earlier row (a look-ahead through bad input)."""

from __future__ import annotations

from pathlib import Path

import pytest

from alphasignal.errors import UsageError
from alphasignal.replay.news import load_news

HEAD = "timestamp,ticker,headline\n"
CASES = {
    "year 1": ("n.csv", HEAD + "0001-01-01T00:00:00Z,AAPL,old\n", r"line 2: timestamp '0001-01-01T00:00:00Z' is "
               "before 1900"),
    "year 1500": ("n.csv", HEAD + "2024-01-01T10:00Z,AAPL,fine\n1500-06-01,AAPL,old\n", "line 3: .* before 1900"),
    "unterminated quote": ("n.csv", HEAD + '2024-01-01T10:00Z,AAPL,"never closed\n2024-03-01T10:00Z,AAPL,later\n',
                           "line 2: a field runs on over several lines"),
    "NaN headline": ("n.jsonl", '{"timestamp": "2024-01-01T10:00Z", "ticker": "AAPL", "headline": NaN}\n',
                     "line 1: headline nan is not text"),
    "number ticker": ("n.jsonl", '{"timestamp": "2024-01-01T10:00Z", "ticker": 7, "headline": "x"}\n',
                      "line 1: ticker 7 is not text"),
    "field too large": ("n.csv", HEAD + "2024-01-01T10:00Z,AAPL,ok\n2024-01-02T10:00Z,AAPL,\"" + "x" * 200_000
                        + '"\n', "line 3 is not valid CSV .*field larger.*a headline is a line of text"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_bad_news_file_is_one_error_naming_its_line(case, tmp_path: Path) -> None:
    name, text, needle = CASES[case]
    (tmp_path / name).write_text(text)
    with pytest.raises(UsageError, match=needle) as info:
        load_news(tmp_path / name, ["AAPL"])
    assert "\n" not in str(info.value)


def test_a_folder_given_as_the_news_file_is_named_a_folder(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="is a folder, not a file"):
        load_news(tmp_path, ["AAPL"])


def test_quoted_commas_and_later_rows_stay_their_own_rows(tmp_path: Path) -> None:
    (tmp_path / "n.csv").write_text(HEAD + '2024-01-01T10:00Z,AAPL,"quoted, with comma"\n2024-01-02T10:00Z,AAPL,'
                                           "plain\n")
    news = load_news(tmp_path / "n.csv", ["AAPL"])
    assert news.headlines["AAPL"] == ("quoted, with comma", "plain")
