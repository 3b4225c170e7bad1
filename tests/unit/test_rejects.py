"""The loss threshold: below it a summary line, above it (or at 100 %) an error with counts and reasons."""
import pytest

from pipeline.rejects import DataLossError, check_loss, top_reasons


def test_below_the_threshold_it_summarises():
    line = check_loss("test images", 400, ["missing image file"] * 3, 0.05, "data/rejects.parquet")
    assert "3 of 400 rejected (0.8 %)" in line and "data/rejects.parquet" in line
    assert check_loss("test images", 400, [], 0.05) == ""


def test_above_the_threshold_or_everything_it_fails_with_the_top_reasons():
    reasons = ["missing image file"] * 390 + ["box [1, 2, 3, 4] lies outside the 10x10 image"] * 5
    with pytest.raises(DataLossError, match=r"395 of 400 rejected .*missing image file \(390\); box \(5\)"):
        check_loss("precomputed detection files", 400, reasons, 0.05)
    with pytest.raises(DataLossError, match="every one"):
        check_loss("train images", 2, ["x", "y"], 1.0)


def test_reasons_are_grouped_by_their_generic_part():
    assert top_reasons(["inverted box [1, 2, 0, 0]", "inverted box [5, 5, 1, 1]", "other"]) == \
        "inverted box (2); other (1)"


def test_a_failure_names_no_rejects_file(tmp_path):
    # A stage that fails writes nothing, its rejects file included: the message must not send the user there.
    path = tmp_path / "detect_rejects.parquet"
    with pytest.raises(DataLossError) as e:
        check_loss("precomputed detection files", 4, ["no detection file for this image"] * 4, 0.05, str(path))
    assert str(path) not in str(e.value) and "no detection file for this image (4)" in str(e.value)
    assert not path.exists()
