import jiwer
import pytest
from hypothesis import given
from hypothesis import strategies as st

from medasr.errors import UserError
from medasr.text import normalize as text

# evaluation.md: the seed's score_written_form, as observed.
WRITTEN_FORM = [
    ("the patient presented with chest pain", "The patient presented with chest pain."),
    ("TAVI is indicated for severe aortic stenosis...", "TAVI is indicated for severe aortic stenosis."),
    ("What is the dosage?", "What is the dosage?"),
    ("  ", ""),
    ("eGFR was 45", "EGFR was 45."),
    ('"oi"', '"oi"'),
    ("...and then", "...and then."),
    ("dose given (see chart)", "Dose given (see chart)"),
    ("stop..", "Stop."),
    ("wait…", "Wait."),
]

# Texts with awkward characters: punctuation of several scripts, symbols, ellipses, quotes.
awkward = st.text(alphabet=st.sampled_from("abcXYZé ß19.…!?-'’\"»)(+$%/"), max_size=30)


@pytest.mark.parametrize("given_text, expected", WRITTEN_FORM)
def test_written_form_vectors(given_text, expected):
    assert text.written_form(given_text) == expected


def test_written_form_of_none_and_empty():
    assert text.written_form(None) == ""
    assert text.written_form("") == ""
    assert text.written_form("  \n ok\t") == "Ok."


@given(st.one_of(awkward, st.text(max_size=30)))
def test_written_form_is_idempotent(s):
    once = text.written_form(s)
    assert text.written_form(once) == once


@pytest.mark.parametrize(
    "given_text, expected",
    [
        ("COVID-19", "covid19"),
        ("Chest x-ray: clear.", "chest xray clear"),
        ("5 mg/kg", "5 mgkg"),
        ("Dr. Smith's patient", "dr smiths patient"),
        ("HbA1c  was   7.5 %", "hba1c was 75"),  # "%" is Unicode Po: deleted, as jiwer does
        ("Take 2 + 2, costs $5!", "take 2 + 2 costs $5"),
        ("«Quoted» — dash…", "quoted dash"),
        ("   ", ""),
    ],
)
def test_basic_on_medical_text(given_text, expected):
    assert text.basic(given_text) == expected


def test_basic_chars_keeps_inner_spaces():
    assert text.basic_chars(" A - b. ") == "a  b"
    assert text.basic("A - b") == "a b"


# The seed's normalized transforms (report_normalized.py), for comparison.
SEED_WER = jiwer.Compose([jiwer.ToLowerCase(), jiwer.RemovePunctuation(), jiwer.RemoveMultipleSpaces(), jiwer.Strip()])
SEED_CER = jiwer.Compose([jiwer.ToLowerCase(), jiwer.RemovePunctuation(), jiwer.Strip()])


@given(awkward)
def test_basic_matches_the_seed_transform(s):
    # Same as jiwer's chain whenever the only white space is " " (see basic's docstring).
    assert text.basic(s) == SEED_WER(s)
    assert text.basic_chars(s) == SEED_CER(s)


def test_basic_treats_any_white_space_as_a_word_break():
    assert text.basic("a\tb\u00a0c\nd") == "a b c d"


def test_english_normaliser_on_medical_text():
    assert text.english("Give fifteen milligrams of morphine.") == "give 15 milligrams of morphine"
    assert text.english("Dr. Smith: BP one hundred and forty over ninety") == "doctor smith bp 140 over 90"
    assert text.english("COVID-19 [inaudible] um, 2.5 mg (see chart)") == "covid 19 2.5 mg"
    assert text.english("  ") == ""
    assert isinstance(text.english_spelling_source(), str)


def test_registry():
    assert set(text.NORMALIZERS) == {"basic", "english", "none"}
    basic = text.get_normalizer("basic")
    assert basic("A, b") == basic.words("A, b") == "a b"
    assert basic.chars("A  b") == "a  b"
    assert text.get_normalizer(basic) is basic
    assert text.get_normalizer("none")("  As Is. ") == "  As Is. "


def test_unknown_normaliser_is_a_user_error():
    with pytest.raises(UserError, match="unknown normaliser 'whisper'.*basic, english, none"):
        text.get_normalizer("whisper")
    with pytest.raises(ValueError):
        text.get_normalizer("")
