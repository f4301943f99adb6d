"""The benchmark's contacts files, generated: seeded, streamed to disk, French and English.

Pure except `write`. Two files of one seed hold the same people row by row: a later version of
a file changes some rows' details (phone, city, opt-in, custom fields) and keeps their identity
(names, e-mail, birth date). Never a list of rows in memory: a million rows stream to disk.
"""

import csv
import random
import unicodedata
from datetime import date

COLUMNS = ("E-mail", "Prénom", "Nom", "Téléphone", "Ville", "Code postal", "Date de naissance",
           "Opt-in", "Source", "Commentaire")
DELIMITER = ";"

FRENCH_FIRST = (
    "Chloé", "Noémie", "Zoë", "François", "Léa", "Hélène", "Jérôme", "Agnès", "Benoît", "Inès",
    "Gaël", "Maëlle", "Anaïs", "Loïc", "Céline", "Élodie", "Émile", "Thérèse", "Clémence",
    "Aurélien", "Stéphane", "Frédéric", "Raphaël", "Océane", "Solène", "Maïwenn", "Cécile",
    "Jean-Pierre", "Marie-Thérèse", "Jean", "Marie", "Camille", "Louis", "Lucas", "Manon",
    "Hugo", "Sarah", "Nathan", "Léo", "Mathéo", "Joël", "Renée", "Éloïse", "Anne-Sophie",
)
ENGLISH_FIRST = (
    "Oliver", "Emily", "Harry", "Charlotte", "James", "Sophie", "Jack", "Amelia", "William",
    "Grace", "Thomas", "Olivia", "George", "Isla", "Chloe", "Zoe", "Siobhan", "Niamh",
)
FRENCH_LAST = (
    "Martin", "Bernard", "Dubois", "Thomas", "Robert", "Richard", "Petit", "Durand", "Leroy",
    "Moreau", "Simon", "Laurent", "Lefèvre", "Michel", "Garcia", "Bertrand", "Roux", "Fournier",
    "Girard", "André", "Mercier", "Dupont", "Lambert", "Bonnet", "François", "Légaré", "Brûlé",
    "Œuvray", "Bézier", "Déprez", "Gérard", "Hébert", "Lemaître", "Pérez", "Cœurdevey",
    "Duchêne", "Le Gall", "de La Fontaine", "N'Diaye", "Nguyễn",
)
ENGLISH_LAST = (
    "Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Johnson", "Davies", "Robinson",
    "Wright", "Thompson", "Evans", "Walker", "O'Brien", "Hughes", "Green", "McAllister",
)
DOMAINS = (
    "gmail.com", "orange.fr", "free.fr", "hotmail.fr", "yahoo.fr", "laposte.net", "outlook.com",
    "sfr.fr", "wanadoo.fr", "icloud.com", "bbox.fr", "protonmail.com", "example.co.uk",
)
#: City and its zip codes (Paris, Lyon and Marseille by arrondissement).
CITIES = (
    ("Paris", tuple(f"750{n:02d}" for n in range(1, 21))),
    ("Marseille", tuple(f"130{n:02d}" for n in range(1, 17))),
    ("Lyon", tuple(f"6900{n}" for n in range(1, 10))),
    ("Toulouse", ("31000", "31100", "31200", "31300", "31400", "31500")),
    ("Nice", ("06000", "06100", "06200", "06300")),
    ("Nantes", ("44000", "44100", "44200", "44300")),
    ("Strasbourg", ("67000", "67100", "67200")),
    ("Montpellier", ("34000", "34070", "34080", "34090")),
    ("Bordeaux", ("33000", "33100", "33200", "33300", "33800")),
    ("Lille", ("59000", "59160", "59260", "59777", "59800")),
    ("Rennes", ("35000", "35200", "35700")),
    ("Saint-Étienne", ("42000", "42100")),
    ("Le Havre", ("76600", "76610", "76620")),
    ("Grenoble", ("38000", "38100")),
    ("Dijon", ("21000",)),
    ("Angers", ("49000", "49100")),
    ("Nîmes", ("30000", "30900")),
    ("Clermont-Ferrand", ("63000", "63100")),
    ("Aix-en-Provence", ("13080", "13090", "13100", "13290", "13540")),
    ("Brest", ("29200",)),
    ("Besançon", ("25000",)),
    ("Orléans", ("45000", "45100")),
    ("Évry-Courcouronnes", ("91000", "91080")),
    ("Créteil", ("94000",)),
    ("Besse-et-Saint-Anastaise", ("63610",)),
    ("L'Haÿ-les-Roses", ("94240",)),
    ("Pointe-à-Pitre", ("97110",)),
)
SOURCES = (
    "Site web", "Site web", "Boutique Lyon Part-Dieu", "Salon Maison & Objet", "Parrainage",
    "Newsletter", "Jeu concours été", "Partenaire", "Application mobile", "",
)
COMMENTS = (
    "", "", "", "", "", "Préfère être contacté le soir", "Client fidèle depuis 2015",
    "Intéressé par la gamme été; rappeler en mai", 'A demandé le catalogue "Noël"',
    "Allergique aux fruits à coque", "Ne pas appeler le week-end", "VIP – carte Or",
    "Moved to London, keep French newsletter",
)
_BIRTH = (date(1940, 1, 1).toordinal(), date(2006, 12, 31).toordinal())
#: The first digit after 06 (before) and 07 (after) of a valid French mobile number.
_MOBILE = {0: "01245678", 1: "3456789"}
_LIGATURES = str.maketrans({"œ": "oe", "Œ": "Oe", "æ": "ae", "Æ": "Ae", "ß": "ss"})


def ascii_name(name):
    """`name` as an e-mail address spells it: `Lefèvre` -> `lefevre`, `Œuvray` -> `oeuvray`."""
    plain = unicodedata.normalize("NFKD", name.translate(_LIGATURES))
    return "".join(c for c in plain.lower() if c.isascii() and (c.isalnum() or c == "-"))


def phone_digits(index, version):
    """A French mobile number of 10 digits, unique for each (index, version).

    The phone is a contact key, unique within an account, so no two rows may share one: the
    number is a bijection of the row index (the factor is prime to both moduli), 06 before,
    07 after.
    """
    firsts = _MOBILE[version]
    n = (index * 27_182_819 + 3_141_592) % (len(firsts) * 10**7)
    return f"0{6 + version}{firsts[n // 10**7]}{n % 10**7:07d}"


def _person(rng, index):
    """Who row `index` is: first name, last name, e-mail, birth date."""
    english = rng.random() < 0.15
    first = rng.choice(ENGLISH_FIRST if english else FRENCH_FIRST)
    last = rng.choice(ENGLISH_LAST if english else FRENCH_LAST)
    a, b = ascii_name(first), ascii_name(last)
    local = (f"{a}.{b}", f"{a[0]}.{b}", f"{a}{b}", f"{b}.{a}", f"{a}_{b}")[rng.randrange(5)]
    email = f"{local}{index}@{rng.choice(DOMAINS)}"  # the index keeps e-mails unique
    style = rng.random()
    if style < 0.06:
        email = email.title()
    elif style < 0.08:
        email = email.upper()
    if rng.random() < 0.03:
        email = " " * rng.randint(1, 2) + email + " " * rng.randint(0, 2)
    birth = date.fromordinal(rng.randint(*_BIRTH)).strftime("%d/%m/%Y")
    return email, first, last, birth


def _details(rng, index, version):
    """What may change between two versions of a file: phone, city, opt-in, custom fields."""
    digits = phone_digits(index, version)
    shape = rng.random()
    if shape < 0.70:
        phone = " ".join(digits[i:i + 2] for i in range(0, 10, 2))  # 06 12 34 56 78
    elif shape < 0.85:
        phone = digits
    elif shape < 0.94:
        phone = ".".join(digits[i:i + 2] for i in range(0, 10, 2))
    elif shape < 0.98:
        phone = f"+33 {digits[1]} " + " ".join(digits[i:i + 2] for i in range(2, 10, 2))
    elif shape < 0.99:
        phone = ""
    else:
        phone = digits + "0"  # a typing error: invalid, stored empty by the template
    city, zips = rng.choice(CITIES)
    return (phone, city, rng.choice(zips), "1" if rng.random() < 0.6 else "0",
            rng.choice(SOURCES), rng.choice(COMMENTS))


def rows(seed, count, changed=0.0):
    """Yield `count` rows of the 10 COLUMNS, as strings.

    The same seed gives the same people in the same order whatever `count` and `changed`;
    a share `changed` of the rows (all of them at 1.0) carry their later details.
    """
    people = random.Random(f"{seed}:people")
    before = random.Random(f"{seed}:before")
    after = random.Random(f"{seed}:after")
    picks = random.Random(f"{seed}:changes")
    for index in range(count):
        email, first, last, birth = _person(people, index)
        details = _details(before, index, 0)
        if changed and picks.random() < changed:
            details = _details(after, index, 1)
        phone, city, zip_code, opt_in, source, comment = details
        yield [email, first, last, phone, city, zip_code, birth, opt_in, source, comment]


def numbered(rows, number):
    """`rows` with the first one's comment naming upload `number` of a series.

    Each file of the series then differs from the one before: the worker does not import a
    file identical to the last one again.
    """
    for index, row in enumerate(rows):
        yield [*row[:-1], f"upload {number}"] if index == 0 else row


def of_one_email(rows, email):
    """`rows`, each with the e-mail `email`: one contact, which each row updates in turn."""
    for row in rows:
        yield [email, *row[1:]]


def write(path, seed, count, changed=0.0, number=None, email=None):
    """Write the file of `rows(seed, count, changed)` with its header, `;`-separated, UTF-8;
    as upload `number` of a series (see `numbered`) when one is given; every row with the
    e-mail `email` (see `of_one_email`) when one is given."""
    lines = rows(seed, count, changed)
    if number is not None:
        lines = numbered(lines, number)
    if email is not None:
        lines = of_one_email(lines, email)
    with open(path, "w", encoding="utf-8", newline="") as file:
        writer = csv.writer(file, delimiter=DELIMITER)
        writer.writerow(COLUMNS)
        writer.writerows(lines)
    return path
