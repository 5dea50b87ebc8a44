"""Bronze's bundles: raw objects checked and concatenated as gzip members (no services)."""

from __future__ import annotations

import gzip

from spark_jobs.bronze import bundles


def _text(n: int, start: int = 0) -> bytes:
    return b"".join(b'{"line_no": %d, "pad": "%s"}\n' % (i, b"x" * 40) for i in range(start, n))


def test_an_intact_object_is_bundled_as_it_is() -> None:
    data = gzip.compress(_text(3))
    assert bundles.checked(data) is data


def test_an_object_without_a_final_newline_gets_one_so_lines_never_glue() -> None:
    first = bundles.checked(gzip.compress(_text(2).rstrip(b"\n")))
    second = bundles.checked(gzip.compress(_text(4, start=2)))

    assert gzip.decompress(first + second).splitlines() == _text(4).splitlines()


def test_a_damaged_object_gives_the_lines_that_inflate_and_a_cut_last_line() -> None:
    text = _text(2000)
    data = gzip.compress(text)
    cut = data[: len(data) * 6 // 10]

    salvaged = gzip.decompress(bundles.checked(cut))

    assert salvaged.endswith(b"\n")
    lines = salvaged.splitlines()
    assert 0 < len(lines) < 2000
    assert text.startswith(salvaged[:-1])  # a prefix of the object's text, nothing invented
    whole = text.splitlines()
    assert lines[:-1] == whole[: len(lines) - 1]
    assert lines[-1] != whole[len(lines) - 1]  # the last line is cut: bronze quarantines it


def test_what_is_not_gzip_or_holds_no_text_gives_nothing() -> None:
    assert bundles.checked(b"not gzip at all") == b""
    assert bundles.checked(gzip.compress(b"")) == b""
    assert bundles.checked(b"") == b""
