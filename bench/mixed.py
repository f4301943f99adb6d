"""The mixed contacts file: what customers' exports hold, mess included. Seeded, streamed.

Twenty columns, `;`-separated, CRLF, UTF-8 with a BOM (or Windows-1252): e-mails in mixed case
with stray spaces, a few with a Unicode local part or an IDN domain; phones in every common
French and international shape; quoted cells holding the delimiter, quotes and line breaks
(most rows have one); French dates, a date and time, Oui/Non, integers and decimal amounts
spelled the French way. A share of the rows is rejected by the template (FAULTS), each for
one reason, the same rows in every version and encoding of a file.

As in data.py, two files of one seed hold the same people row by row, and a later version
changes some rows' details (phone, address, city, newsletter, points, amount, interests,
comment) and keeps their identity. Every phone and e-mail cell is unique in a file (rejected
ones included), so that the baselines, which store them unchecked under unique keys, load it.
"""

import codecs
import csv
import random
import unicodedata
from collections import Counter
from datetime import date, datetime, timedelta
from functools import cache

from .data import (
    CITIES,
    COMMENTS,
    DOMAINS,
    ENGLISH_FIRST,
    ENGLISH_LAST,
    FRENCH_FIRST,
    FRENCH_LAST,
    SOURCES,
    ascii_name,
    phone_digits,
)

COLUMNS = ("Civilité", "Prénom", "Nom", "E-mail", "Téléphone", "Date de naissance", "Adresse",
           "Code postal", "Ville", "Pays", "Société", "Fonction", "Newsletter",
           "Points fidélité", "Montant total", "Date d'inscription", "Source",
           "Centres d'intérêt", "Commentaire", "Référence client")
WIDTH = len(COLUMNS)
DELIMITER = ";"
#: The cells of a row by name, for the faults that spoil one.
(_CIVILITY, _FIRST, _LAST, _EMAIL, _PHONE, _BIRTH, _ADDRESS, _ZIP, _CITY, _COUNTRY, _COMPANY,
 _JOB, _NEWSLETTER, _POINTS, _AMOUNT, _SIGNED_UP, _SOURCE, _INTERESTS, _COMMENT,
 _REFERENCE) = range(WIDTH)

#: Why a row is rejected, and the share of the rows rejected for it (6.7% in all): each
#: faulty row has one fault, drawn from a stream of its own, so the same rows are rejected in
#: every version of a file. `reason` in the tests maps the worker's reasons onto these names.
FAULTS = (
    ("email", 0.015),        # no @, no dot in the domain, two @, a comma, two addresses...
    ("email_empty", 0.005),  # the required e-mail left empty
    ("phone", 0.025),        # overseas numbers written +33 6 9x, too long, two in a cell...
    ("date", 0.010),         # 31/02, an ISO date, 00/00/0000, month and day swapped
    ("cells", 0.005),        # an unquoted `;` in a cell (one cell more), a line cut short
    ("integer", 0.003),      # 1,5 or 12 pts as loyalty points
    ("boolean", 0.002),      # Peut-être as Oui/Non
    ("bytes", 0.002),        # a byte the file's encoding has no character for
)
#: The byte a faulty row holds: a Latin-1 `é` in UTF-8, a byte cp1252 leaves undefined.
UNDECODABLE = {"utf-8-sig": 0xE9, "utf-8": 0xE9, "cp1252": 0x81}

CIVILITIES = ("M.", "M.", "Mme", "Mme", "Mlle", "Monsieur", "Madame", "", "")
#: Internationalised domains, in their Unicode spelling (all within Windows-1252).
IDN_DOMAINS = ("société.fr", "crème-brûlée.fr", "münchen.de", "élysée.fr", "café-lumière.fr",
               "bücher.de", "pâtisserie-française.fr")
STREETS = ("rue de la République", "avenue Jean Jaurès", "boulevard Voltaire",
           "allée des Tilleuls", "rue Victor Hugo", "chemin des Écoliers", "place de l'Église",
           "impasse du Moulin", "quai Saint-Pierre", "route de Lyon", "rue Émile Zola",
           "avenue de la Gare", "cours Mirabeau", "rue du Général Leclerc")
#: Second lines of an address: the cell then holds a line break.
COMPLEMENTS = ("Bât. B, apt 12", "Résidence Les Pins", "3e étage, porte gauche", "BP 42",
               "Chez Mme Durand", "Lieu-dit « Les Granges »")
COUNTRIES = ("France",) * 17 + ("FR", "", "Belgique", "Suisse", "Royaume-Uni", "Allemagne",
                                "La Réunion")
COMPANIES = ("", "", "", "", "Dupont SARL", 'Boulangerie "Chez Paul"', "Durand & Fils",
             "Café de la Gare", "L'Atelier du Meuble", "Crédit Agricole; agence Lyon 3e",
             "Indépendant", "Mairie de Saint-Étienne", "Hôtel Le Relais, SAS", "Œnologie & Co")
JOBS = ("", "", "", "Gérant", "Directrice commerciale", "Responsable achats",
        "Assistant(e) de direction", "Chargée de communication", "Étudiant", "Retraité",
        "Infirmière", "Chef de projet; informatique")
INTERESTS = ("Mode", "Maison", "Voyages", "Cuisine", "Sport", "Jardinage", "Bien-être",
             "High-tech", "Enfants", "Vins & spiritueux", "Déco", "Lecture")
#: Comments of several lines, quoted like the others.
LONG_COMMENTS = ("Appeler après 18h.\nNe pas relancer avant juin.",
                 'Ancienne adresse : 4 rue des Lilas\n75011 Paris\n(voir "historique")',
                 "Préfère être contacté par e-mail; pas de SMS\r\nMerci")
#: Birthdays: the first one, and how many days on.
_BIRTHDAYS = (date(1940, 1, 1).toordinal(), (date(2006, 12, 31) - date(1940, 1, 1)).days)
#: Sign-ups, to the minute, over 14 years from this one.
_SIGNUPS = (datetime(2012, 1, 1), 14 * 365 * 24 * 60)
_NBSP = "\u00a0"


def _fold(error):
    """Encode what the file's encoding lacks: a lone surrogate (a byte that is not text, see
    UNDECODABLE) as its byte, any other character as its base letter (`ễ` -> `e`)."""
    out = bytearray()
    for char in error.object[error.start:error.end]:
        if "\udc80" <= char <= "\udcff":
            out.append(ord(char) - 0xDC00)
        else:
            base = "".join(c for c in unicodedata.normalize("NFKD", char)
                           if not unicodedata.combining(c))
            out += base.encode(error.encoding, "replace")
    return bytes(out), error.end


codecs.register_error("bench-fold", _fold)


def _pick(rng, items):
    """`rng.choice(items)` at a fifth of its cost: the benchmark writes millions of rows."""
    return items[int(rng.random() * len(items))]


def _below(rng, n):
    """A number in [0, n), as `_pick` picks."""
    return int(rng.random() * n)


def _spread(index, modulus):
    """A bijection of the row indexes below `modulus` onto [0, modulus): digits that differ
    from row to row (the factor is prime to 2, 3 and 5)."""
    return (index * 27_182_819 + 3_141_592) % modulus


def _pairs(digits):
    return " ".join(digits[i:i + 2] for i in range(0, len(digits), 2))


@cache
def _ascii_name(name):
    return ascii_name(name)


@cache
def _unicode_name(name):
    """`name` as an e-mail address with a Unicode local part spells it: `Le Gall` -> `legall`,
    `Lefèvre` -> `lefèvre`."""
    return "".join(c for c in name.lower() if c.isalnum() or c in "-'")


def _person(rng, index):
    """Who row `index` is: the cells that never change, and its e-mail's local part and
    domain (for the faults)."""
    english = rng.random() < 0.15
    first = _pick(rng, ENGLISH_FIRST if english else FRENCH_FIRST)
    last = _pick(rng, ENGLISH_LAST if english else FRENCH_LAST)
    shape = rng.random()
    if shape < 0.05:  # as in the customer's file: chloé.thomas.1@example.com
        local = f"{_unicode_name(first)}.{_unicode_name(last)}.{index}"
    else:
        a, b = _ascii_name(first), _ascii_name(last)
        local = (f"{a}.{b}", f"{a[0]}.{b}", f"{a}{b}", f"{b}.{a}", f"{a}_{b}")[
            _below(rng, 5)] + str(index)  # the index keeps e-mails unique
    domain = _pick(rng, IDN_DOMAINS) if rng.random() < 0.02 else _pick(rng, DOMAINS)
    email = f"{local}@{domain}"
    style = rng.random()
    if style < 0.06:
        email = email.title()
    elif style < 0.08:
        email = email.upper()
    spaces = rng.random()
    if spaces < 0.03:
        email = " " * (1 + _below(rng, 2)) + email + " " * _below(rng, 3)
    elif spaces < 0.035:
        email += _NBSP  # pasted from a web page
    birthday = date.fromordinal(_BIRTHDAYS[0] + _below(rng, _BIRTHDAYS[1]))
    if rng.random() < 0.1:
        birth = ""
    elif rng.random() < 0.05:
        birth = f"{birthday.day}/{birthday.month}/{birthday.year}"
    else:
        birth = f"{birthday.day:02d}/{birthday.month:02d}/{birthday.year}"
    start, minutes = _SIGNUPS
    at = start + timedelta(minutes=_below(rng, minutes))
    signed_up = f"{at.day:02d}/{at.month:02d}/{at.year} {at.hour:02d}:{at.minute:02d}"
    cells = [
        _pick(rng, CIVILITIES), first, last, email, "", birth, "", "", "",
        _pick(rng, COUNTRIES), _pick(rng, COMPANIES), _pick(rng, JOBS), "", "", "",
        signed_up if rng.random() < 0.95 else "", _pick(rng, SOURCES), "", "",
        f"CLI-{index:07d}",
    ]
    return cells, local, domain


def _phone(rng, index, version):
    """A valid phone of row `index`, or none, in one of the common shapes.

    Its digits are unique to the row and version: French mobile digits D (`06...`, `07...`
    later), a landline (`01...`, `03...` later), or 7 or 8 digits of the index for another
    country, after a prefix digit that differs by version: a later version's numbers are new.
    """
    pick = rng.random()
    if pick < 0.10:
        return ""
    d = phone_digits(index, version)
    if pick < 0.48:
        return _pairs(d)                                     # 06 12 34 56 78
    if pick < 0.60:
        return d                                             # 0612345678
    if pick < 0.67:
        return ".".join(d[i:i + 2] for i in range(0, 10, 2))  # 06.12.34.56.78
    if pick < 0.70:
        return "-".join(d[i:i + 2] for i in range(0, 10, 2))  # 06-12-34-56-78
    if pick < 0.77:
        return f"+33 {d[1]} {_pairs(d[2:])}"                   # +33 6 12 34 56 78
    if pick < 0.80:
        return f"+33 (0){d[1]} {_pairs(d[2:])}"                # +33 (0)6 12 34 56 78
    if pick < 0.82:
        return f"0033 {d[1]} {_pairs(d[2:])}"                  # 0033 6 12 34 56 78
    if pick < 0.83:
        return f"(+33) {d[1]} {_pairs(d[2:])}"
    if pick < 0.84:
        return f"+33 {_pairs(d)}"                              # +33 06 12 34 56 78
    if pick < 0.92:                                            # a landline, 01 (03 later)
        return _pairs(f"0{1 + 2 * version}{_spread(index, 10**8):08d}")
    s = f"{_spread(index, 10**7):07d}"
    country = _below(rng, 4)
    if country == 0:
        return f"+32 4{'79'[version]}{s[0]} {_pairs(s[1:])}"   # Belgium, mobile
    if country == 1:
        return f"+41 7{'98'[version]} {s[:3]} {s[3:5]} {s[5:]}"  # Switzerland, mobile
    if country == 2:
        return f"+49 15{'12'[version]} {_spread(index, 10**8):08d}"  # Germany, mobile
    return f"+44 74{'01'[version]}{s[0]} {s[1:]}"               # United Kingdom, mobile


def _bad_phone(pick, index, version):
    """An invalid phone of row `index`, unique in the file (for files of up to 3M rows);
    `pick` in [0, 1) chooses how it is wrong."""
    d = phone_digits(index, version)
    if pick < 0.5:  # an overseas mobile (069x) written as a metropolitan one
        overseas = ("0123", "467")[version]
        s = _spread(index, len(overseas) * 10**6)
        six = f"{s % 10**6:06d}"
        if pick < 0.4:
            return f"+33 6 9{overseas[s // 10**6]} {_pairs(six)}"
        return f"069{overseas[s // 10**6]} {_pairs(six)}"
    if pick < 0.65:
        return f"{_pairs(d)} {d[-2:]}"                       # a digit pair too many
    if pick < 0.8:
        return f"{_pairs(d)} / {_pairs(f'0{1 + 2 * version}{_spread(index, 10**8):08d}')}"
    if pick < 0.9:
        return f"Tél. {_pairs(d)}"
    return f"{_pairs(d)} poste {10 + index % 90}"


def _amount(rng):
    cents = int(rng.expovariate(1 / 40_000))
    if rng.random() < 0.02:
        cents = -cents  # a refund
    euros, rest = divmod(abs(cents), 100)
    grouped = f"{euros:,}".replace(",", _pick(rng, (" ", " ", _NBSP)))
    return f"{'-' if cents < 0 else ''}{grouped},{rest:02d}"


def _details(rng, index, version, cells):
    """What may change between two versions of a file, written into `cells`."""
    cells[_PHONE] = _phone(rng, index, version)
    address = f"{1 + _below(rng, 180)} {_pick(rng, STREETS)}"
    style = rng.random()
    if style < 0.10:
        address += "\n" + _pick(rng, COMPLEMENTS)
    elif style < 0.13:
        address = "ZI Nord; " + address
    cells[_ADDRESS] = address
    city, zips = _pick(rng, CITIES)
    cells[_CITY], cells[_ZIP] = city, _pick(rng, zips)
    newsletter = rng.random()
    cells[_NEWSLETTER] = ("Oui" if newsletter < 0.5 else "Non" if newsletter < 0.85
                          else "oui" if newsletter < 0.9 else "NON" if newsletter < 0.95 else "")
    points = rng.random()
    cells[_POINTS] = ("" if points < 0.2 else str(_below(rng, 1000)) if points < 0.7
                      else f"{1 + _below(rng, 99)} {_below(rng, 1000):03d}" if points < 0.95
                      else f"{1 + _below(rng, 99)}{_NBSP}{_below(rng, 1000):03d}")
    cells[_AMOUNT] = "" if rng.random() < 0.15 else _amount(rng)
    # Most rows hold a list in one cell, `;`-separated: quoted, as in the customer's file.
    cells[_INTERESTS] = ";".join(rng.sample(INTERESTS, _pick(rng, (0, 1, 2, 2, 3, 3, 4))))
    comment = rng.random()
    cells[_COMMENT] = _pick(rng, LONG_COMMENTS) if comment < 0.05 else _pick(rng, COMMENTS)


def _fault(rng):
    """The fault of the next row, or None, and the draw that picks its variant."""
    draw = rng.random()
    for name, share in FAULTS:
        if draw < share:
            return name, rng.random()
        draw -= share
    return None, None


def _spoil(cells, fault, variant, local, domain, index, version, byte):
    """`cells` with `fault`; a row of another width for the fault `cells`."""
    if fault == "email":
        shapes = (f"{local}{domain}", f"{local}@{domain.split('.')[0]}", f"{local}@@{domain}",
                  f"{local}@{domain.replace('.', ',', 1)}", f"{local}.@{domain}",
                  f"{local}@{domain}; {local[:1]}.contact@{domain}",
                  f"{local[:2]} {local[2:]}@{domain}", f"{local}@{domain}.")
        cells[_EMAIL] = shapes[int(variant * len(shapes))]
    elif fault == "email_empty":
        cells[_EMAIL] = "" if variant < 0.8 else "  "
    elif fault == "phone":
        cells[_PHONE] = _bad_phone(variant, index, version)
    elif fault == "date":
        year = 1940 + int(variant * 60)
        cells[_BIRTH] = (f"31/02/{year}", f"{year}-03-12", "00/00/0000", f"12/25/{year}")[
            int(variant * 4)]
    elif fault == "cells":
        if variant < 0.6:  # a `;` its writer did not quote: one cell more
            return [*cells[:_COMMENT], "Client fidèle", " rappeler en mai", *cells[_COMMENT + 1:]]
        return cells[:WIDTH - 3]  # a line cut short
    elif fault == "integer":
        cells[_POINTS] = ("1,5", "12 pts", "N/A", "1.200")[int(variant * 4)]
    elif fault == "boolean":
        cells[_NEWSLETTER] = ("Peut-être", "Oui/Non", "?")[int(variant * 3)]
    elif fault == "bytes":
        bad = chr(0xDC00 + byte)
        cells[_CITY] = (f"Orl{bad}ans", f"B{bad}ziers", f"Saint-{bad}tienne")[int(variant * 3)]
    return cells


def rows(seed, count, changed=0.0, byte=UNDECODABLE["utf-8"]):
    """Yield `count` rows, lists of strings (a row with the fault `cells` has another length).

    The same seed gives the same people in the same order whatever `count` and `changed`;
    a share `changed` of the rows (all of them at 1.0) carry their later details. `byte` is
    the byte of the rows with the fault `bytes`, carried as a lone surrogate (written as the
    byte by the `bench-fold` error handler).
    """
    people = random.Random(f"{seed}:people")
    before = random.Random(f"{seed}:before")
    after = random.Random(f"{seed}:after")
    picks = random.Random(f"{seed}:changes")
    faults = random.Random(f"{seed}:faults")
    for index in range(count):
        cells, local, domain = _person(people, index)
        _details(before, index, 0, cells)
        version = 0
        if changed and picks.random() < changed:
            version = 1
            _details(after, index, 1, cells)
        fault, variant = _fault(faults)
        if fault:
            cells = _spoil(cells, fault, variant, local, domain, index, version, byte)
        yield cells


def faults(seed, count):
    """How many rows of `rows(seed, count)` have each fault: a Counter of FAULTS' names."""
    stream = random.Random(f"{seed}:faults")
    return Counter(fault for fault, _ in (_fault(stream) for _ in range(count)) if fault)


def write(path, seed, count, changed=0.0, encoding="utf-8-sig"):
    """Write the file of `rows(seed, count, changed)` with its header, `;`-separated, CRLF,
    in `encoding` (default UTF-8 with a BOM; `cp1252`: what it lacks folded to base letters)."""
    byte = UNDECODABLE[encoding]
    with open(path, "w", encoding=encoding, errors="bench-fold", newline="") as file:
        writer = csv.writer(file, delimiter=DELIMITER, lineterminator="\r\n")
        writer.writerow(COLUMNS)
        writer.writerows(rows(seed, count, changed, byte))
    return path
