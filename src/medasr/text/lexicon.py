"""A medical English lexicon: the terms synthetic speech is built from and medical-term metrics
are scored on. Terms are written as in running text: lower case, except proper names
(Parkinson's disease) and abbreviations always written in capitals (CT, MRI, INR).
A user file can add terms: one per line (category "custom"), or `category<TAB>term`; blank
lines and lines starting with `#` are ignored.
"""

from __future__ import annotations

from pathlib import Path

from medasr.errors import DataError

LEXICON: dict[str, tuple[str, ...]] = {
    "drugs": (
        "acetaminophen", "acyclovir", "albuterol", "alendronate", "allopurinol", "alprazolam",
        "amiodarone", "amitriptyline", "amlodipine", "amoxicillin", "ampicillin", "anastrozole",
        "apixaban", "aripiprazole", "aspirin", "atenolol", "atorvastatin", "azithromycin",
        "baclofen", "bisoprolol", "budesonide", "bumetanide", "buprenorphine", "bupropion",
        "carbamazepine", "carvedilol", "cefazolin", "ceftriaxone", "cephalexin", "cetirizine",
        "ciprofloxacin", "citalopram", "clarithromycin", "clindamycin", "clonazepam",
        "clonidine", "clopidogrel", "colchicine", "cyclobenzaprine", "dabigatran",
        "dapagliflozin", "dexamethasone", "diazepam", "diclofenac", "digoxin", "diltiazem",
        "diphenhydramine", "donepezil", "doxycycline", "duloxetine", "empagliflozin",
        "enalapril", "enoxaparin", "escitalopram", "esomeprazole", "famotidine", "fentanyl",
        "finasteride", "fluconazole", "fluoxetine", "fluticasone", "furosemide", "gabapentin",
        "glipizide", "haloperidol", "heparin", "hydralazine", "hydrochlorothiazide",
        "hydrocodone", "hydrocortisone", "hydromorphone", "ibuprofen", "insulin glargine",
        "insulin lispro", "ipratropium", "isosorbide mononitrate", "ketorolac", "labetalol",
        "lamotrigine", "lansoprazole", "levetiracetam", "levofloxacin", "levothyroxine",
        "lidocaine", "linezolid", "lisinopril", "lithium", "loratadine", "lorazepam",
        "losartan", "meloxicam", "memantine", "meropenem", "metformin", "methadone",
        "methotrexate", "methylprednisolone", "metoclopramide", "metoprolol", "metronidazole",
        "midazolam", "mirtazapine", "montelukast", "morphine", "naloxone", "naproxen",
        "nifedipine", "nitrofurantoin", "nitroglycerin", "norepinephrine", "olanzapine",
        "omeprazole", "ondansetron", "oxycodone", "pantoprazole", "paroxetine",
        "piperacillin", "potassium chloride", "pravastatin", "prednisolone", "prednisone",
        "pregabalin", "propofol", "propranolol", "quetiapine", "ramipril", "ranolazine",
        "risperidone", "rivaroxaban", "rosuvastatin", "salbutamol", "sertraline",
        "simvastatin", "sitagliptin", "spironolactone", "sumatriptan", "tamoxifen",
        "tamsulosin", "tiotropium", "topiramate", "torsemide", "tramadol", "trazodone",
        "valacyclovir", "valproate", "vancomycin", "venlafaxine", "verapamil", "warfarin",
        "zolpidem",
    ),
    "conditions": (
        "acute kidney injury", "acute myocardial infarction", "Alzheimer's disease", "anemia",
        "angina", "ankylosing spondylitis", "anxiety", "aortic stenosis", "appendicitis",
        "asthma", "atrial fibrillation", "atrial flutter", "bronchiectasis", "bronchiolitis",
        "bronchitis", "cardiomyopathy", "cellulitis", "cholecystitis", "chronic kidney disease",
        "chronic obstructive pulmonary disease", "cirrhosis", "colitis", "congestive heart failure",
        "Crohn's disease", "deep vein thrombosis", "dementia", "depression", "dermatitis",
        "diabetic ketoacidosis", "diverticulitis", "endocarditis", "epilepsy", "gastritis",
        "gastroenteritis", "gastroesophageal reflux disease", "glaucoma", "gout", "hepatitis",
        "hyperkalemia", "hyperlipidemia", "hypertension", "hyperthyroidism", "hypoglycemia",
        "hypokalemia", "hyponatremia", "hypothyroidism", "influenza", "irritable bowel syndrome",
        "ischemic stroke", "lupus", "lymphoma", "meningitis", "migraine", "multiple sclerosis",
        "myasthenia gravis", "nephrolithiasis", "osteoarthritis", "osteomyelitis",
        "osteoporosis", "otitis media", "pancreatitis", "Parkinson's disease",
        "pericarditis", "peripheral neuropathy", "pharyngitis", "pleural effusion",
        "pneumonia", "pneumothorax", "psoriasis", "pulmonary embolism", "pulmonary fibrosis",
        "pyelonephritis", "rheumatoid arthritis", "sarcoidosis", "schizophrenia", "sepsis",
        "sickle cell disease", "sinusitis", "sleep apnea", "subarachnoid hemorrhage",
        "tuberculosis", "type 1 diabetes", "type 2 diabetes", "ulcerative colitis",
        "urinary tract infection",
    ),
    "symptoms": (
        "abdominal pain", "anorexia", "back pain", "chest pain", "chest tightness", "chills",
        "confusion", "constipation", "cough", "diaphoresis", "diarrhea", "dizziness",
        "dysphagia", "dyspnea", "dysuria", "edema", "fatigue", "fever", "headache",
        "hematuria", "hemoptysis", "hoarseness", "insomnia", "jaundice", "joint pain",
        "lethargy", "malaise", "melena", "myalgia", "nausea", "night sweats", "numbness",
        "orthopnea", "palpitations", "paresthesia", "photophobia", "pruritus", "rash",
        "shortness of breath", "sore throat", "syncope", "tachycardia", "tinnitus",
        "vertigo", "vomiting", "weakness", "weight loss", "wheezing",
    ),
    "anatomy": (
        "abdomen", "adrenal gland", "aorta", "appendix", "bladder", "brain", "bronchus",
        "carotid artery", "cervical spine", "chest", "colon", "coronary artery", "duodenum",
        "esophagus", "femur", "gallbladder", "heart", "hip", "humerus", "kidney", "knee",
        "larynx", "left atrium", "left ventricle", "liver", "lumbar spine", "lung",
        "mitral valve", "pancreas", "pelvis", "pituitary gland", "prostate", "rectum",
        "retina", "right lower quadrant", "shoulder", "sinuses", "small bowel", "spleen",
        "sternum", "stomach", "thoracic spine", "thyroid", "tibia", "trachea", "ureter",
        "uterus", "wrist",
    ),
    "procedures": (
        "angiography", "angioplasty", "appendectomy", "arthroscopy", "biopsy",
        "blood transfusion", "bronchoscopy", "cardiac catheterization", "cardioversion",
        "cholecystectomy", "colonoscopy", "coronary artery bypass grafting", "CT",
        "dialysis", "echocardiogram", "electrocardiogram", "electroencephalogram",
        "endoscopy", "hemodialysis", "hysterectomy", "intubation", "laparoscopy",
        "lumbar puncture", "mammogram", "MRI", "paracentesis", "pacemaker insertion",
        "stress test", "thoracentesis", "thyroidectomy", "total knee replacement",
        "total hip replacement", "tracheostomy", "ultrasound", "upper endoscopy", "x-ray",
    ),
    # Spoken forms of units; synth writes the spoken form, which is also how the model should
    # transcribe them (written form leaves "milligrams" as a word, see synth's convention).
    "units": (
        "milligrams", "micrograms", "grams", "milliliters", "liters", "units",
        "millimoles", "milliequivalents", "international units", "milligrams per kilogram",
        "millimeters of mercury", "beats per minute", "breaths per minute", "percent",
        "degrees Celsius", "kilograms", "centimeters", "millimeters",
    ),
    "frequencies": (
        "once daily", "twice daily", "three times daily", "four times daily", "every morning",
        "at bedtime", "every 4 hours", "every 6 hours", "every 8 hours",
        "every 12 hours", "as needed", "once weekly", "with meals",
    ),
    "routes": (
        "orally", "intravenously", "subcutaneously", "intramuscularly", "by inhalation",
        "topically", "sublingually", "rectally", "via nasogastric tube",
    ),
    "findings": (
        "no acute abnormality", "a small pleural effusion", "mild cardiomegaly",
        "consolidation", "a hypodense lesion", "free fluid", "bowel obstruction",
        "a renal calculus", "a hiatal hernia", "a reduced ejection fraction",
        "a filling defect", "ground glass opacities", "mild degenerative changes",
        "a pulmonary nodule", "hepatomegaly", "splenomegaly", "lymphadenopathy",
    ),
    "labs": (
        "hemoglobin", "white cell count", "platelet count", "creatinine", "potassium",
        "sodium", "troponin", "lactate", "glucose", "hemoglobin A1c", "INR", "C-reactive protein",
        "D-dimer", "bilirubin", "albumin", "TSH", "ferritin", "magnesium",
    ),
}


def medical_terms(extra_file: str | Path | None = None) -> dict[str, set[str]]:
    """The default lexicon as sets per category, merged with terms from `extra_file`."""
    terms = {category: set(words) for category, words in LEXICON.items()}
    if extra_file is None:
        return terms
    path = Path(extra_file)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise DataError(f"lexicon file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"cannot read lexicon file {path}: {err}") from None
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        category, tab, term = line.partition("\t")  # split before stripping: keep "cat<TAB>"
        if not tab:
            category, term = "custom", line
        category, term = category.strip().lower(), term.strip()
        if not category or not term:
            raise DataError(f"{path}:{number}: expected `term` or `category<TAB>term`, got {line!r}")
        terms.setdefault(category, set()).add(term)
    return terms


def all_terms(terms: dict[str, set[str]] | None = None) -> set[str]:
    """Every term of every category, for metrics that do not care about the category."""
    return set().union(*(terms or medical_terms()).values())
