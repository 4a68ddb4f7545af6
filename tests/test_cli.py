"""Tests of the `sdrc` command: the demo on real digits, and clear errors with a non-zero exit for bad arguments."""
import pytest

from sdrc.cli import build_parser, demo, format_demo, main


def test_demo_on_real_digits(digits_root):
    rows = demo("mnist", "usps", root=digits_root)
    p, q, exact, dec = rows["P"], rows["Q (SRDC eq. 2)"], rows["Q (exact eq. 1)"], rows["Q (DEC)"]
    assert 0.2 < p["accuracy"] < 1.0  # a source-only linear model: better than chance, hurt by the shift
    assert q["largest_cluster"] < p["largest_cluster"] and q["smallest_cluster"] > p["smallest_cluster"]
    assert exact["eq1"] <= q["eq1"] <= p["eq1"]
    assert dec["entropy"] < p["entropy"]
    table = format_demo(rows, "mnist", "usps")
    assert table.splitlines()[0].startswith("SRDC's distributions on the usps test set") and "p-hat (softmax)" in table


def test_demo_command_prints_the_table(digits_root, capsys):
    assert main(["demo", "--source", "mnistm", "--target", "mnist", "--data", str(digits_root)]) == 0
    out = capsys.readouterr().out
    assert "on the mnist test set, from a linear classifier fitted on mnistm" in out and "Q (DEC)" in out


def test_missing_data_is_a_clear_error(tmp_path, capsys):
    assert main(["demo", "--data", str(tmp_path)]) == 2
    assert "digits_real.npz was not found; looked in: " + str(tmp_path) in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["demo", "--source", "svhn"], "invalid choice: 'svhn'"),
    (["demo", "--source", "usps", "--target", "usps"], "both 'usps'"),
    (["demo", "--seed", "x"], "invalid int value"),
    (["fly"], "invalid choice: 'fly'"),
    ([], "the following arguments are required: COMMAND"),
])
def test_bad_arguments_exit_non_zero(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_help_describes_every_option(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["demo", "--help"])
    text = capsys.readouterr().out
    for option in ("--source", "--target", "--data", "--seed", "SDRC_DATA"):
        assert option in text
