"""Varied training text for the demo model, and the held-out sets that never meet it.

Sources (all offline, all in the written form `medasr.synth.sentences` documents):
- clinical: sentence templates over the medical lexicon (`synth.TEMPLATES` plus the richer
  `CLINICAL_TEMPLATES` below: dates, times, abbreviations, spelled-out names, counts), and
  made-up drug names (`pseudo_drug`) that a model can only write correctly from the context;
- wordnet: the glosses and usage examples of WordNet 3.0 (Princeton University, WordNet 3.0
  licence, a permissive BSD-style licence; Debian package `wordnet-base`), read from
  /usr/share/wordnet/data.{noun,verb,adj,adv}.

Three held-out sets, none of which ever meets training:
- sentences: about 10 % of the sentences of the training sources, chosen by a hash of the
  text (`synth.split_of`), as before;
- documents: whole templates (`HELDOUT_TEMPLATES`, a disjoint tuple of templates no training
  sentence is drawn from) and whole WordNet lexicographer files (`HELDOUT_LEXFILES`: every gloss
  and example of those files). A training sentence whose text also occurs in a held-out file
  is dropped too;
- drug names: `HELDOUT_DRUGS`, real drugs missing from the lexicon; any training sentence that
  contains one (a WordNet gloss, say) is dropped. They measure what `--context` adds for names
  the model never heard.
`training_filter` is the one gate every training sentence passes; tests check it.
"""

from __future__ import annotations

import functools
import hashlib
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from medasr.errors import UserError
from medasr.text.lexicon import LEXICON
from medasr.text.normalize import written_form

WORDNET_DIR = Path("/usr/share/wordnet")
# WordNet's lexicographer files, in the numbering of its data files (lexnames(5WN)).
LEXFILES = (
    "adj.all", "adj.pert", "adv.all", "noun.Tops", "noun.act", "noun.animal", "noun.artifact",
    "noun.attribute", "noun.body", "noun.cognition", "noun.communication", "noun.event",
    "noun.feeling", "noun.food", "noun.group", "noun.location", "noun.motive", "noun.object",
    "noun.person", "noun.phenomenon", "noun.plant", "noun.possession", "noun.process",
    "noun.quantity", "noun.relation", "noun.shape", "noun.state", "noun.substance", "noun.time",
    "verb.body", "verb.change", "verb.cognition", "verb.communication", "verb.competition",
    "verb.consumption", "verb.contact", "verb.creation", "verb.emotion", "verb.motion",
    "verb.perception", "verb.possession", "verb.social", "verb.stative", "verb.weather", "adj.ppl",
)
# Everyday vocabulary, held out whole (about 1,900 synsets).
HELDOUT_LEXFILES = ("noun.feeling", "noun.time", "verb.emotion", "verb.weather")

# Real drugs missing from the lexicon: never in training text, used to measure `--context`.
HELDOUT_DRUGS = (
    "ticagrelor", "sacubitril", "ivabradine", "tirzepatide", "semaglutide", "edoxaban",
    "prasugrel", "eplerenone", "canagliflozin", "linagliptin", "dulaglutide", "rifaximin",
    "lacosamide", "brivaracetam", "apremilast", "tofacitinib", "ustekinumab", "vedolizumab",
    "evolocumab", "alirocumab", "fidaxomicin", "dalbavancin", "isavuconazole", "letermovir",
)

MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December")
FIRST_NAMES = (
    "Aisha", "Ben", "Carmen", "Daniel", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jonas",
    "Kamala", "Liam", "Maria", "Nikhil", "Olga", "Pedro", "Quinn", "Rosa", "Samuel", "Tanya",
    "Umar", "Vera", "Wei", "Yusuf", "Zoe", "Frank", "Helen", "Oscar", "Priya", "Victor",
)
SURNAMES = (
    "Abbott", "Baker", "Chen", "Dubois", "Ellis", "Fischer", "Garcia", "Haddad", "Ivanova",
    "Jensen", "Kowalski", "Lopez", "Murphy", "Nguyen", "Okafor", "Patel", "Quinlan", "Rossi",
    "Schmidt", "Tanaka", "Usman", "Varga", "Walsh", "Xu", "Young", "Zimmerman", "Brennan",
    "Castillo", "Dalton", "Foster", "Gupta", "Holm", "Kaur", "Lindqvist", "Moreau", "Novak",
)
ABBREVIATIONS = ("ECG", "EKG", "COPD", "CHF", "ICU", "ED", "BMI", "INR", "TSH", "MRI", "CT",
                 "IV", "BP", "GFR", "HbA1c", "CPR", "DNR", "UTI", "DVT", "PE", "NSAID", "CBC")
WARDS = ("cardiology", "the medical ward", "the surgical ward", "the ICU", "the emergency department",
         "outpatient clinic", "the stroke unit", "the renal unit", "day surgery", "the respiratory ward")

# Made-up drug names: syllables plus a real drug-class ending, so they sound like drugs.
_ONSETS = ("b", "br", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "tr", "v", "z", "c", "pr", "st", "x")
_VOWELS = ("a", "e", "i", "o", "u", "ai", "o", "a", "e", "i")
_ENDINGS = ("mab", "tinib", "pril", "sartan", "olol", "azole", "statin", "mycin", "cillin", "vir",
            "parin", "tide", "gliptin", "floxacin", "dronate", "setron", "tidine", "azepam", "oxetine",
            "lukast", "glitazone", "semide", "dipine", "afil", "caine", "grel", "xaban", "gliflozin",
            "prazole", "triptan", "cycline", "platin", "lamide", "zumab", "ximab")

# New clinical templates (slots: those of `synth._fill` plus the fillers of `_extra`).
CLINICAL_TEMPLATES = (
    "Mr. {surname} was seen in clinic on {date}.",
    "{first} {surname} was admitted to {ward} on {date} with {condition}.",
    "The patient's name is {first} {surname}, spelled {spelled}.",
    "Please spell the surname: {spelled}.",
    "Date of birth {date_year}.",
    "The {abbr} was repeated at {time}.",
    "An {abbr2} was requested because of {symptom}.",
    "She was started on {newdrug} {dose} {freq}.",
    "{newdrug} {dose} {route} was given at {time}.",
    "He stopped taking {newdrug} on {date} because of {symptom}.",
    "We discussed switching from {drug} to {newdrug}.",
    "Her regular medications are {drug}, {drug2} and {newdrug}.",
    "Review in {weeks} to check the response to {newdrug}.",
    "The last dose of {drug} was at {time} yesterday.",
    "Blood cultures were taken on {date} and {drug} was started.",
    "There are {count} beds free on {ward}.",
    "She has had {count} episodes of {symptom} since {date}.",
    "He smokes {count} cigarettes a day and drinks {count2} units of alcohol a week.",
    "The {lab} fell from {value} to {value2} over {days}.",
    "On examination the {anatomy} was tender, with {finding} on {imaging}.",
    "No known drug allergies; {drug} was well tolerated in {year}.",
    "Discharge summary for {first} {surname}, seen by Dr. {surname2}.",
    "Dr. {surname} called back at {time} about the {lab} result.",
    "The {abbr} shows {finding}; discuss with {specialty} tomorrow.",
    "I would like to refer {first} to {specialty} for {procedure}.",
    "{first} is {age} {sex} who lives alone and walks with a stick.",
    "Pain score is {score} out of 10, improved from {score2} this morning.",
    "Fluid balance is positive by {fluid} milliliters over 24 hours.",
    "Urine output was {fluid} milliliters overnight.",
    "Her weight has gone from {weight} to {weight2} since {month}.",
    "If the {symptom} returns, she should come back to the emergency department.",
    "Can you check whether he is still taking {drug}?",
    "Is there any history of {condition} in the family?",
    "Allergic to {drug}: it caused {symptom} in {year}.",
    "Bed {count} on {ward} needs a review of the {drug} dose.",
    "Glasgow Coma Scale was {gcs} on arrival at {time}.",
    "The operation is booked for {date} at {time}.",
    "Stop {drug} {count} days before the {procedure}.",
    "The {procedure} on {date} was complicated by {symptom}.",
    "Telephone follow up with {first} in {weeks}.",
)

# Held out whole: no training sentence is ever drawn from these templates.
HELDOUT_TEMPLATES = (
    "Her potassium came back at {value} this morning, so we will give {drug} {route}.",
    "{first} {surname} phoned on {date} to say the {symptom} is worse.",
    "The {abbr} from {date} was compared with today's and shows {finding}.",
    "Please make sure {newdrug} is not given together with {drug}.",
    "After {procedure} he developed {symptom} and was treated with {drug} {dose}.",
    "We reviewed {first} at {time} and the {lab} was {value}.",
    "She takes {drug} {dose} {freq} and has no problems with it.",
    "Repeat {imaging} of the {anatomy} in {weeks} unless the {symptom} settles.",
    "The family were told about the {condition} on {date}.",
    "His {lab} is {value}, which is lower than last {month}.",
)


@dataclass(frozen=True)
class Sentence:
    """One training or evaluation sentence and where it came from."""

    text: str
    source: str  # "clinical" or "wordnet"
    doc: str  # template or WordNet lexicographer file: the unit held out whole
    terms: tuple[str, ...] = field(default=())  # rare words in it (drugs, made-up drugs): context material


# ---- clinical ---------------------------------------------------------------------------------

def pseudo_drug(rng: random.Random) -> str:
    """A made-up drug name (two or three syllables and a drug-class ending)."""
    while True:
        stem = "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(rng.randint(1, 2)))
        name = stem + rng.choice(_ENDINGS)
        if name not in _real_words():
            return name


@functools.lru_cache(maxsize=1)
def _real_words() -> frozenset[str]:
    words = {w.lower() for cat in LEXICON.values() for term in cat for w in term.split()}
    return frozenset(words | set(HELDOUT_DRUGS))


def _extra(rng_terms: list[str]) -> dict:
    def newdrug(rng: random.Random) -> str:
        name = pseudo_drug(rng)
        rng_terms.append(name)
        return name

    def spelled(rng: random.Random) -> str:
        return " ".join(rng.choice(SURNAMES).upper())

    return {
        "newdrug": newdrug,
        "first": lambda rng: rng.choice(FIRST_NAMES),
        "surname": lambda rng: rng.choice(SURNAMES),
        "spelled": spelled,
        "date": lambda rng: f"{rng.choice(MONTHS)} {rng.randint(1, 28)}",
        "date_year": lambda rng: f"{rng.choice(MONTHS)} {rng.randint(1, 28)}, {rng.randint(1935, 2024)}",
        "year": lambda rng: str(rng.randint(1990, 2024)),
        "month": lambda rng: rng.choice(MONTHS),
        "time": lambda rng: f"{rng.randint(1, 12)}:{rng.choice(('00', '15', '30', '45', '10', '20', '40', '50'))}",
        "abbr": lambda rng: rng.choice(ABBREVIATIONS),
        "ward": lambda rng: rng.choice(WARDS),
        "count": lambda rng: str(rng.randint(2, 40)),
        "score": lambda rng: str(rng.randint(0, 10)),
        "gcs": lambda rng: str(rng.randint(3, 15)),
        "fluid": lambda rng: str(rng.randrange(100, 3000, 50)),
    }


def _sentence_terms(text: str, extra_terms: list[str]) -> tuple[str, ...]:
    words = set(re.findall(r"[a-z]+", text.lower()))
    found = [d for d in _drug_names() if d.split()[0] in words and all(w in words for w in d.split())]
    return tuple(dict.fromkeys([*extra_terms, *found]))


@functools.lru_cache(maxsize=1)
def _drug_names() -> tuple[str, ...]:
    return (*LEXICON["drugs"], *HELDOUT_DRUGS)


def clinical(template: str, rng: random.Random) -> Sentence:
    from medasr.synth import sentences as synth

    made_up: list[str] = []
    text = synth._fill(template, rng, synth._terms(None), _extra(made_up))
    return Sentence(text, "clinical", "template:" + _template_id(template), _sentence_terms(text, made_up))


def _template_id(template: str) -> str:
    return hashlib.sha1(template.encode("utf-8")).hexdigest()[:8]


def training_templates() -> tuple[str, ...]:
    from medasr.synth.sentences import TEMPLATES

    return tuple(t for t in (*TEMPLATES, *CLINICAL_TEMPLATES) if t not in HELDOUT_TEMPLATES)


# ---- WordNet ----------------------------------------------------------------------------------

_CLEAN = re.compile(r"^[A-Za-z0-9 ,.;:'?!\-]+$")


def _wordnet_files() -> list[Path]:
    files = [WORDNET_DIR / f"data.{pos}" for pos in ("noun", "verb", "adj", "adv")]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise UserError(f"WordNet is not installed ({', '.join(missing)} missing): "
                        "apt-get install wordnet-base")
    return files


def _tidy(text: str) -> str | None:
    """A gloss or example as a clean sentence in written form, or None when unusable."""
    text = text.split(" -- ")[0].split("--")[0]
    text = text.replace("(", "").replace(")", "").replace("`", "'").strip(" ;:,\"'")
    text = re.sub(r"\s+", " ", text)
    if not text or not _CLEAN.match(text) or not 3 <= len(text.split()) <= 32:
        return None
    if not text.endswith((".", "?", "!")):
        text += "."
    return written_form(text[0].upper() + text[1:])


def _gloss_sentence(pos: str, lemma: str, gloss: str, rng: random.Random) -> str:
    word = lemma.replace("_", " ")
    word = re.sub(r"\(.*?\)", "", word).strip()
    choice = rng.random()
    if choice < 0.4 or not word.replace(" ", "").replace("-", "").isalpha():
        return gloss
    if pos == "v":
        return f"To {word} is to {gloss}"
    if pos == "n" and re.match(r"(a|an|the|any|one|someone|something)\b", gloss):
        return f"{word[0].upper() + word[1:]} is {gloss}"
    return f"{word[0].upper() + word[1:]} means {gloss}"


@functools.lru_cache(maxsize=1)
def wordnet_sentences() -> tuple[Sentence, ...]:
    """Every usable gloss and example of WordNet, in file order, each as a Sentence."""
    rng = random.Random(0)  # the phrasing of a gloss sentence: fixed, so the set is stable
    out: list[Sentence] = []
    seen: set[str] = set()
    for path in _wordnet_files():
        with path.open(encoding="latin-1") as fh:
            for line in fh:
                if line.startswith("  ") or "|" not in line:
                    continue
                head, _, gloss = line.partition("|")
                fields = head.split()
                lexfile, pos, lemma = LEXFILES[int(fields[1])], fields[2], fields[4]
                parts = [p.strip() for p in gloss.strip().split(";")]
                definition = parts[0]
                examples = [p.strip('"') for p in parts[1:] if p.startswith('"')]
                candidates = []
                if definition and not definition.startswith('"'):
                    candidates.append(_gloss_sentence(pos, lemma, definition, rng))
                candidates += examples
                for raw in candidates:
                    text = _tidy(raw)
                    if text and text not in seen:
                        seen.add(text)
                        out.append(Sentence(text, "wordnet", "wordnet:" + lexfile, _sentence_terms(text, [])))
    return tuple(out)


@functools.lru_cache(maxsize=1)
def heldout_document_texts() -> frozenset[str]:
    """The text of every WordNet sentence of a held-out lexicographer file."""
    docs = {"wordnet:" + name for name in HELDOUT_LEXFILES}
    return frozenset(s.text for s in wordnet_sentences() if s.doc in docs)


# ---- the gate, the corpus and the held-out sets -----------------------------------------------

_HELDOUT_DRUG_RE = re.compile(r"\b(" + "|".join(HELDOUT_DRUGS) + r")\b", re.IGNORECASE)


def training_filter(s: Sentence) -> bool:
    """True when `s` may be trained on: not of a held-out document, template or hash bucket,
    no held-out drug in it, not the text of any held-out document's sentence."""
    from medasr.synth.sentences import split_of

    if s.doc in _heldout_docs() or split_of(s.text) != "train":
        return False
    if _HELDOUT_DRUG_RE.search(s.text):
        return False
    return s.source != "wordnet" or s.text not in heldout_document_texts()


@functools.lru_cache(maxsize=1)
def _heldout_docs() -> frozenset[str]:
    return frozenset({"wordnet:" + n for n in HELDOUT_LEXFILES} | {"template:" + _template_id(t) for t in HELDOUT_TEMPLATES})


SPLITS = ("train", "heldout", "heldout-docs")
CLINICAL_SHARE = 0.55  # of the sentences: clinical; the rest WordNet


def corpus(n: int, seed: int = 0, split: str = "train", clinical_share: float = CLINICAL_SHARE) -> list[Sentence]:
    """`n` distinct sentences of `split`:
    - train: clinical (training templates) and WordNet (training files), through `training_filter`;
    - heldout: the same sources, only sentences of the held-out hash bucket;
    - heldout-docs: held-out templates and held-out WordNet files only.
    The same for a given seed.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}; got {split!r}")
    return list(_draw(n, seed, split, clinical_share))


def _draw(n: int, seed: int, split: str, clinical_share: float) -> Iterator[Sentence]:
    from medasr.synth.sentences import MAX_MISSES, split_of

    rng = random.Random(f"corpus:{seed}:{split}")
    if split == "heldout-docs":
        templates = HELDOUT_TEMPLATES
        docs = {"wordnet:" + n for n in HELDOUT_LEXFILES}
        pool = [s for s in wordnet_sentences() if s.doc in docs]
    else:
        templates = training_templates()
        held = _heldout_docs()
        pool = [s for s in wordnet_sentences() if s.doc not in held]

    def keep(s: Sentence) -> bool:
        if split == "train":
            return training_filter(s)
        if split == "heldout":
            return s.doc not in _heldout_docs() and split_of(s.text) == "heldout"
        return not _HELDOUT_DRUG_RE.search(s.text) or s.source == "clinical"

    order = rng.sample(range(len(pool)), len(pool))
    position = 0
    seen: set[str] = set()
    misses = 0
    while len(seen) < n:
        if rng.random() < clinical_share or position >= len(order):
            s = clinical(rng.choice(templates), rng)
        else:
            s = pool[order[position]]
            position += 1
        if s.text in seen or not keep(s):
            misses += 1
            if misses > MAX_MISSES:
                raise ValueError(f"could only make {len(seen)} distinct {split} sentences, not {n}")
            continue
        misses = 0
        seen.add(s.text)
        yield s


# ---- contexts ---------------------------------------------------------------------------------

def hotword_context(terms: tuple[str, ...], rng: random.Random, related: bool = True) -> str:
    """A hotword list as a user would pass to `--context`: some of `terms` (related) among
    distractors from the lexicon and made-up names, or (not related) distractors only."""
    chosen = list(terms) if related else []
    if related and len(chosen) > 1:
        chosen = rng.sample(chosen, rng.randint(1, len(chosen)))
    distractors = [rng.choice(LEXICON["drugs"]) if rng.random() < 0.6 else pseudo_drug(rng)
                   for _ in range(rng.randint(1 if chosen else 2, 12))]
    words = list(dict.fromkeys(chosen + [d for d in distractors if d not in terms]))
    rng.shuffle(words)
    joined = ", ".join(words) if rng.random() < 0.8 else " ".join(words)
    label = rng.choice(("", "", "", "Medications: ", "Hotwords: ", "Terms: "))
    return label + joined


def unrelated_context(rng: random.Random) -> str:
    """Context with nothing of the clip in it: a hotword list or a line of prose."""
    if rng.random() < 0.6:
        return hotword_context((), rng, related=False)
    pool = wordnet_sentences()
    while True:  # prose of the training side only: held-out text never reaches training, not even as context
        s = pool[rng.randrange(len(pool))]
        if training_filter(s):
            return s.text
