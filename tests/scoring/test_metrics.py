import random

import jiwer
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medasr.scoring import medical, metrics
from medasr.scoring.metrics import ErrorCounts
from medasr.scoring.summary import summary

# The seed's normalized protocol as jiwer transforms (report_normalized.py).
SEED_WER = jiwer.Compose([jiwer.ToLowerCase(), jiwer.RemovePunctuation(), jiwer.RemoveMultipleSpaces(),
                          jiwer.Strip(), jiwer.ReduceToListOfListOfWords()])
SEED_CER = jiwer.Compose([jiwer.ToLowerCase(), jiwer.RemovePunctuation(), jiwer.Strip(),
                          jiwer.ReduceToListOfListOfChars()])

# Small vocabulary so that hits, substitutions, deletions and insertions all happen.
word = st.sampled_from(["a", "the", "Mg", "mg", "x-ray", "COVID-19", "15", "dose.", "“pain”", "é", "...", "+"])
utterance = st.lists(word, max_size=8).map(" ".join)
pairs = st.lists(st.tuples(utterance, utterance), min_size=1, max_size=12)


@settings(max_examples=200, deadline=None)
@given(pairs)
def test_corpus_figures_equal_jiwer(ps):
    refs, hyps = [r for r, _ in ps], [h for _, h in ps]
    s = metrics.score(refs, hyps, "basic")
    w = jiwer.process_words(refs, hyps, SEED_WER, SEED_WER)
    c = jiwer.process_characters(refs, hyps, SEED_CER, SEED_CER)
    t = s.word_total
    assert (t.hits, t.substitutions, t.deletions, t.insertions) == (w.hits, w.substitutions, w.deletions, w.insertions)
    assert s.wer == pytest.approx(w.wer)
    assert s.cer == pytest.approx(c.cer)
    assert s.char_total.insertions == c.insertions
    assert sum(u.errors for u in s.words) == t.errors


@settings(max_examples=50, deadline=None)
@given(pairs)
def test_none_normaliser_equals_jiwer_defaults(ps):
    refs, hyps = [r for r, _ in ps], [h for _, h in ps]
    s = metrics.score(refs, hyps, "none")
    assert s.wer == pytest.approx(jiwer.wer(refs, hyps))
    assert s.cer == pytest.approx(jiwer.cer(refs, hyps))


def test_none_normaliser_keeps_spaces_for_cer():
    s = metrics.score(["a  b"], ["a b"], "none")
    assert s.wer == 0.0 and s.cer == pytest.approx(jiwer.cer(["a  b"], ["a b"])) == 0.25
    english = metrics.score(["Dr. Smith gave fifteen mg"], ["doctor smith gave 15 mg"], "english")
    assert english.wer == 0.0 and english.cer == 0.0


def test_corpus_level_not_mean_of_rates():
    refs = ["one two three four five six seven eight nine ten", "a b"]
    hyps = ["one two three four five six seven eight nine ten", "a c"]
    assert metrics.score(refs, hyps).wer == pytest.approx(1 / 12)


def test_empty_reference_rule():
    s = metrics.score(["", "a b"], ["x y", "a b"])
    assert s.words[0] == ErrorCounts(insertions=2)
    assert (s.word_total.ref_len, s.word_total.insertions, s.wer) == (2, 2, 1.0)
    assert metrics.score([""], [""]).wer == 0.0
    assert metrics.score(["..."], ["Hello there"]).wer == 2.0  # no reference words: the insertion count
    assert metrics.score([None], ["a"]).wer == jiwer.wer([""], ["a"])
    empty = metrics.score([], [])
    assert (empty.n, empty.wer, empty.cer) == (0, 0.0, 0.0)


def test_length_mismatch():
    with pytest.raises(ValueError, match="2 references but 1 hypotheses"):
        metrics.score(["a", "b"], ["a"])


def _noisy(n=300, error=0.1, seed=0):
    rng = random.Random(seed)
    vocab = [f"w{i}" for i in range(50)]
    refs = [" ".join(rng.choices(vocab, k=rng.randint(3, 15))) for _ in range(n)]
    hyps = [" ".join(w if rng.random() > error else rng.choice(vocab) for w in r.split()) for r in refs]
    return refs, hyps


def test_bootstrap_ci_contains_estimate_and_is_deterministic():
    s = metrics.score(*_noisy())
    ci = metrics.wer_ci(s)
    assert ci.low < s.wer < ci.high
    assert (ci.resamples, ci.seed, ci.level) == (1000, 42, 0.95)
    assert metrics.wer_ci(s) == ci
    assert metrics.wer_ci(s, seed=7) != ci
    wide = metrics.wer_ci(s, resamples=10_000)
    assert wide.low < s.wer < wide.high
    errors, ref_lens = s.word_arrays()
    assert metrics.bootstrap_ci(errors, ref_lens) == ci
    with pytest.raises(ValueError):
        metrics.wer_ci(s, resamples=0)


def test_paired_bootstrap():
    refs, good = _noisy(error=0.05, seed=1)
    _, bad = _noisy(error=0.3, seed=1)
    a, b = metrics.score(refs, bad), metrics.score(refs, good)
    worse = metrics.paired_bootstrap(a, b)
    assert worse.delta > 0 and worse.delta_ci.low > 0
    assert worse.p_value < 0.01
    same = metrics.paired_bootstrap(b, metrics.score(refs, good))
    assert same.delta == 0 and same.p_value == 1.0
    assert metrics.paired_bootstrap(a, b) == worse
    with pytest.raises(ValueError, match="same references"):
        metrics.paired_bootstrap(a, metrics.score(bad, good))


TERMS = {"drugs": ["metformin", "insulin glargine"], "symptoms": ["chest pain"], "anatomy": ["chest", "arm"]}


def test_medical_terms_hand_computed():
    refs = ["Metformin and insulin glargine for chest pain.", "Pain in the left arm"]
    hyps = ["met forming and insulin glargine for chest pain", "pain in the left arm metformin"]
    m = medical.medical(metrics.score(refs, hyps), TERMS)
    # Reference term words: metformin, insulin glargine, chest pain, arm = 6 words.
    # metformin -> "met" substituted (+ "forming" inserted, not a term); "metformin" inserted in
    # the second utterance is a spurious medical insertion (drugs).
    assert (m.overall.ref_words, m.overall.substitutions, m.overall.deletions, m.overall.insertions) == (6, 1, 0, 1)
    assert m.overall.mwer == pytest.approx(2 / 6)
    assert m.drugs.ref_words == 3 and m.drugs.mwer == pytest.approx(2 / 3)
    assert m.categories["symptoms"].mwer == 0.0
    # "chest pain" is one symptom (longest match), not also the anatomy term "chest".
    assert m.categories["anatomy"].occurrences == 1 and m.categories["anatomy"].recall == 1.0
    # Occurrences: metformin, insulin glargine, chest pain, arm; all but metformin recalled.
    assert (m.overall.occurrences, m.overall.recalled) == (4, 3)
    assert m.drugs.recall == pytest.approx(0.5)


def test_medical_deletions_and_multiword_terms():
    m = medical.medical(metrics.score(["insulin glargine at night"], ["insulin at night"]), TERMS)
    assert (m.drugs.ref_words, m.drugs.deletions, m.drugs.recalled) == (2, 1, 0)
    assert medical.medical(metrics.score(["the arm"], ["the arm"]), TERMS).categories["drugs"].mwer is None


def test_terms_are_normalised_like_the_texts():
    terms = {"conditions": ["Crohn's disease"], "labs": ["HbA1c"]}
    m = medical.medical(metrics.score(["CROHNS disease, hba1c 7"], ["Crohn's disease HbA1c 7"]), terms)
    assert (m.overall.occurrences, m.overall.recalled, m.overall.mwer) == (2, 2, 0.0)


def test_dose_accuracy():
    m = medical.medical(metrics.score(["Give 15 mg of morphine."], ["Give 50 mg of morphine."]), TERMS)
    assert m.doses.to_dict() == {"total": 1, "found": 0, "accuracy": 0.0}
    assert (m.numbers.total, m.numbers.found) == (1, 0)
    ok = medical.medical(metrics.score(["Give 15 mg, then 2.5 mg/kg"], ["give 15 milligrams then 2.5 mg/kg"]), TERMS)
    assert (ok.doses.total, ok.doses.found, ok.numbers.found) == (2, 2, 2)


@pytest.mark.parametrize(
    "raw, numbers, doses",
    [
        ("2.5 mg/kg daily", ["2.5"], ["2.5 mg/kg"]),
        ("1,000 units, 40% and 12 patients.", ["1000", "40", "12"], ["1000 unit", "40 %"]),
        ("HbA1c 7.5. COVID-19", ["7.5", "19"], []),
        ("500MG twice, 5 mcg/hr", ["500", "5"], ["500 mg", "5 mcg/h"]),
    ],
)
def test_quantities(raw, numbers, doses):
    assert medical.quantities(raw) == (numbers, doses)


def test_default_terms_come_from_the_lexicon(tmp_path):
    terms = medical.default_terms()
    assert "drugs" in terms and "units" not in terms and "findings" not in terms
    extra = tmp_path / "terms.txt"
    extra.write_text("# mine\nzzzumab\ndrugs\tqqqmycin\n", encoding="utf-8")
    terms = medical.default_terms(extra)
    assert "zzzumab" in terms["custom"] and "qqqmycin" in terms["drugs"]
    m = medical.medical(metrics.score(["zzzumab and metformin"], ["zzzumab and metformin"]))
    assert m.drugs.occurrences == 1


def test_repetition_loop():
    assert metrics.repetition_loop(["no", "no", "no", "no"])
    assert not metrics.repetition_loop(["no", "no", "no"])
    assert metrics.repetition_loop(("x " + "take the pill " * 4).split())
    assert not metrics.repetition_loop(["take", "the", "pill", "take", "the", "pill", "take", "the", "pill"])
    assert metrics.repetition_loop(["a", "b", "a", "b", "a", "b", "a", "b"], min_repeats=4)


def test_hallucination_indicators():
    refs = ["the patient is stable", "no pain", "no no no no", "", "ok"]
    hyps = ["the patient is stable thank you", "", "no no no no", "hello", "ok ok ok ok ok"]
    h = metrics.hallucination(metrics.score(refs, hyps), [False, False, True, False, True])
    assert (h.empty_outputs, h.repetitions, h.token_cap_hits) == (1, 1, 2)
    assert h.insertions == 2 + 1 + 4 and h.ref_words == 4 + 2 + 4 + 1
    assert h.insertion_rate == pytest.approx(7 / 11)
    assert metrics.hallucination(metrics.score(refs, hyps)).token_cap_hits is None
    with pytest.raises(ValueError):
        metrics.hallucination(metrics.score(refs, hyps), [True])


def test_report_has_the_required_fields():
    r = summary(metrics.score(*_noisy(n=50)), terms=TERMS, hit_token_cap=[False] * 50)
    for key in ("wer", "cer", "hits", "substitutions", "deletions", "insertions", "ref_words", "n",
                "wer_ci95", "normalizer", "hallucination", "medical"):
        assert key in r
    assert r["wer_ci95"][0] <= r["wer"] <= r["wer_ci95"][1]
    assert "medical" not in summary(metrics.score(["a"], ["a"]), include_medical=False)
