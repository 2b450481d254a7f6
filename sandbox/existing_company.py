"""A company that already has data in both systems, as generated data: the same customers and
products typed differently in Salesforce and in Sage 100, and which of them are the same.

What it owns: `generate(customers, seed)`, which returns an `ExistingCompany`: Account and
Product2 field sets for Salesforce, AR_Customer and CI_Item rows for Sage, Closed Won
opportunities from before go-live with the Sage orders entered for them by hand, and the truth
(which Account is which customer, which Product2 which item). Writing it somewhere is
sandbox/seed_existing.py's.

How the data is made: each company has one true identity (name, phone, address); each side
writes it its own way, as people do: legal suffixes (Inc / Incorporated / none), case, `&` or
`and`, abbreviations (Mfg, Intl, Bros), a typo, a leading "The", Sage's 30-character cut, phone
formats, street abbreviations, suite lines or none, ZIP+4, a state spelled out; sometimes a
different phone (the AP line) or a moved address. About a quarter of Sage's customers have no
Account and some Accounts (prospects) no customer; some companies are branches sharing a name in
other cities, and some are different companies with nearly the same name. A few pairs are
linked already (ExternalID__c on the Account, UDF_SALESFORCE_ID in Sage). Items and products:
codes differ in case, spacing, dashes, a prefix (SKU-, FG-) or zero padding; neighbouring codes
have nearly the same description. Everything is drawn from one `random.Random(seed)`, so a seed
gives the same company every time, and fits Sage's column lengths and Windows-1252.

Limits: US addresses only; no duplicate records within one system (each side has one record per
company); contacts are not generated.
"""

from __future__ import annotations

import random
import re
import string
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

__all__ = ["ExistingCompany", "OrderBeforeGoLive", "generate"]

_PLACES = (
    "Acme", "Allied", "Alpine", "American", "Apex", "Arrow", "Atlas", "Aurora", "Bay Area", "Beacon",
    "Bear Creek", "Birch", "Blue Ridge", "Boulder", "Bridgeport", "Buckeye", "Canyon", "Capital",
    "Cardinal", "Cascade", "Cedar", "Centennial", "Central", "Champion", "Chesapeake", "Coastal",
    "Colonial", "Columbia", "Copper", "Crescent", "Crown", "Cypress", "Delta", "Diamond", "Dixie",
    "Eagle", "Eastern", "Empire", "Evergreen", "Excel", "Falcon", "First Choice", "Frontier",
    "Galaxy", "Gateway", "Golden State", "Granite", "Great Lakes", "Green Valley", "Gulf Coast",
    "Harbor", "Heartland", "Heritage", "Highland", "Horizon", "Hudson", "Independence", "Iron Horse",
    "Ironwood", "Keystone", "Lakeside", "Legacy", "Liberty", "Lone Star", "Magnolia", "Maple Leaf",
    "Meridian", "Metro", "Midland", "Midwest", "Mission", "Mountain View", "National", "New England",
    "North Star", "Northern", "Northwest", "Oak Hill", "Oakridge", "Ocean", "Old Dominion", "Olympic",
    "Orchard", "Pacific", "Palmetto", "Panther", "Paramount", "Patriot", "Peachtree", "Pinnacle",
    "Pioneer", "Prairie", "Precision", "Premier", "Quality", "Quarry", "Rainier", "Redwood",
    "Regal", "Reliable", "River City", "Riverside", "Rocky Mountain", "Royal", "Saddleback",
    "Sierra", "Silver Creek", "Southern", "Southwest", "Sterling", "Summit", "Sun Valley", "Sunrise",
    "Superior", "Tidewater", "Timberline", "Tri-County", "Trinity", "United", "Valley", "Vanguard",
    "Victory", "Vista", "Western", "Westside", "Wildcat", "Willow Creek", "Yankee",
)  # fmt: skip
_SURNAMES = (
    "Anderson", "Baker", "Barnes", "Bennett", "Brooks", "Caldwell", "Carter", "Castillo", "Chen",
    "Collins", "Delgado", "Dunn", "Ellis", "Fischer", "Fleming", "Garcia", "Gordon", "Graham",
    "Hansen", "Harper", "Hayes", "Holt", "Hughes", "Jensen", "Kaufman", "Keller", "Kowalski",
    "Larsen", "Lindqvist", "Lopez", "Marsh", "Martinez", "McAllister", "Meyer", "Morales", "Murphy",
    "Nakamura", "Nguyen", "Novak", "O'Brien", "O'Connor", "Olsen", "Park", "Patel", "Perez",
    "Porter", "Quinn", "Ramirez", "Reyes", "Rossi", "Russo", "Schmidt", "Schultz", "Shapiro",
    "Sullivan", "Tanaka", "Thornton", "Vasquez", "Wagner", "Walsh", "Weber", "Whitfield", "Yoder",
    "Zimmerman", "Müller", "Gómez", "Nuñez", "Brontë",
)  # fmt: skip
_TRADES = (
    "Hardware", "Supply", "Plumbing", "Electric", "Builders", "Foods", "Marine", "Logistics",
    "Industrial Supply", "Manufacturing", "Distribution", "Services", "Laboratories", "Auto Parts",
    "Office Products", "Medical Supply", "Tool & Die", "Machine Works", "Fasteners", "Packaging",
    "Printing", "Landscaping", "Roofing", "Heating & Cooling", "Flooring", "Cabinets", "Furniture",
    "Textiles", "Brewing", "Bakery", "Dental Supply", "Pharmacy", "Veterinary Clinic",
    "Construction", "Engineering", "Consulting", "Trucking", "Equipment Rental", "Paper", "Chemicals",
    "Plastics", "Metals", "Glass", "Electronics", "Outfitters", "Sporting Goods", "Lumber",
    "Feed & Seed", "Restaurant Supply", "Janitorial Supply", "Farm Equipment", "Welding Supply",
    "Pool & Spa", "Signs", "Florist", "Tire & Wheel", "Appliance", "Lighting", "Irrigation",
    "Safety Products", "Associates", "Brothers", "International", "Technologies", "Systems",
)  # fmt: skip
_RELATED_TRADES = {
    "Supply": "Supply Chain", "Electric": "Electrical Contractors", "Plumbing": "Plumbing & Heating",
    "Hardware": "Hardware & Paint", "Foods": "Food Service", "Marine": "Marine Services",
    "Printing": "Print & Copy", "Construction": "Construction Services", "Metals": "Metal Works",
    "Lumber": "Lumber & Millwork", "Services": "Service Co", "Systems": "Systems Integration",
}  # fmt: skip
# legal forms: each entry is one form, written several ways
_LEGAL = (
    ("Inc.", "Inc", "Incorporated", ", Inc."),
    ("LLC", "L.L.C.", "LLC."),
    ("Corp.", "Corp", "Corporation"),
    ("Co.", "Co", "Company"),
    ("Ltd.", "Ltd", "Limited"),
    ("LP", "L.P."),
    ("Group",),
)
# word -> its short form, as users type them either way
_ABBREVIATIONS = {
    "International": "Intl", "Manufacturing": "Mfg", "Brothers": "Bros", "Services": "Svcs",
    "Distribution": "Dist", "Associates": "Assoc", "Laboratories": "Labs", "Technologies": "Tech",
    "Industrial": "Ind", "Equipment": "Equip", "Engineering": "Eng", "Construction": "Constr",
    "Mountain": "Mtn", "Saint": "St", "North": "N", "South": "S", "Company": "Co",
    "Products": "Prods", "Supply": "Sply", "Systems": "Sys",
}  # fmt: skip
_CITIES = (
    ("Denver", "CO", "Colorado", "802", "303"), ("Boulder", "CO", "Colorado", "803", "720"),
    ("Boston", "MA", "Massachusetts", "021", "617"), ("Worcester", "MA", "Massachusetts", "016", "508"),
    ("Austin", "TX", "Texas", "787", "512"), ("Houston", "TX", "Texas", "770", "713"),
    ("Dallas", "TX", "Texas", "752", "214"), ("San Antonio", "TX", "Texas", "782", "210"),
    ("Chicago", "IL", "Illinois", "606", "312"), ("Naperville", "IL", "Illinois", "605", "630"),
    ("Seattle", "WA", "Washington", "981", "206"), ("Spokane", "WA", "Washington", "992", "509"),
    ("Atlanta", "GA", "Georgia", "303", "404"), ("Savannah", "GA", "Georgia", "314", "912"),
    ("Portland", "OR", "Oregon", "972", "503"), ("Eugene", "OR", "Oregon", "974", "541"),
    ("Phoenix", "AZ", "Arizona", "850", "602"), ("Tucson", "AZ", "Arizona", "857", "520"),
    ("Irvine", "CA", "California", "926", "949"), ("San Diego", "CA", "California", "921", "619"),
    ("Sacramento", "CA", "California", "958", "916"), ("Fresno", "CA", "California", "937", "559"),
    ("Minneapolis", "MN", "Minnesota", "554", "612"), ("Saint Paul", "MN", "Minnesota", "551", "651"),
    ("Columbus", "OH", "Ohio", "432", "614"), ("Cleveland", "OH", "Ohio", "441", "216"),
    ("Nashville", "TN", "Tennessee", "372", "615"), ("Memphis", "TN", "Tennessee", "381", "901"),
    ("Raleigh", "NC", "North Carolina", "276", "919"), ("Charlotte", "NC", "North Carolina", "282", "704"),
    ("Tampa", "FL", "Florida", "336", "813"), ("Orlando", "FL", "Florida", "328", "407"),
    ("Salt Lake City", "UT", "Utah", "841", "801"), ("Boise", "ID", "Idaho", "837", "208"),
    ("Omaha", "NE", "Nebraska", "681", "402"), ("Kansas City", "MO", "Missouri", "641", "816"),
    ("Saint Louis", "MO", "Missouri", "631", "314"), ("Milwaukee", "WI", "Wisconsin", "532", "414"),
    ("Madison", "WI", "Wisconsin", "537", "608"), ("Pittsburgh", "PA", "Pennsylvania", "152", "412"),
    ("Albany", "NY", "New York", "122", "518"), ("Buffalo", "NY", "New York", "142", "716"),
    ("Hartford", "CT", "Connecticut", "061", "860"), ("Richmond", "VA", "Virginia", "232", "804"),
    ("Louisville", "KY", "Kentucky", "402", "502"), ("Albuquerque", "NM", "New Mexico", "871", "505"),
    ("Las Vegas", "NV", "Nevada", "891", "702"), ("Anchorage", "AK", "Alaska", "995", "907"),
)  # fmt: skip
_STREET_NAMES = (
    "Main", "Oak", "Maple", "Cedar", "Pine", "Elm", "Washington", "Lincoln", "Jefferson", "Madison",
    "Park", "Lake", "Hill", "Industrial", "Commerce", "Market", "Harbor", "River", "Spring", "Mill",
    "Center", "Church", "Highland", "Sunset", "Airport", "Railroad", "Union", "Franklin", "Grant",
    "Jackson", "Forest", "Meadow", "Valley", "Ridge", "Canyon", "Prospect", "Broadway", "Front",
    "Water", "Bridge", "North", "South", "Saint Charles", "Mountain",
)  # fmt: skip
_STREET_TYPES = (
    ("Street", "St"), ("Avenue", "Ave"), ("Boulevard", "Blvd"), ("Road", "Rd"), ("Drive", "Dr"),
    ("Parkway", "Pkwy"), ("Lane", "Ln"), ("Court", "Ct"), ("Highway", "Hwy"), ("Way", "Way"),
)  # fmt: skip
_UNITS = (("Suite", "Ste"), ("Unit", "Unit"), ("Building", "Bldg"), ("Floor", "Fl"))
_ITEM_LINES = {
    "HRDW": ("Hinge", "Bracket", "Hasp", "Latch", "Hook", "Hanger", "Shelf Pin", "Door Stop"),
    "ELEC": ("Cable", "Switch", "Outlet", "Breaker", "Conduit", "Junction Box", "Wire Nut", "Fuse"),
    "PLMB": ("Valve", "Elbow", "Coupling", "Faucet", "Trap", "Flange", "Nipple", "Union"),
    "TOOL": ("Wrench", "Hammer", "Drill Bit", "Clamp", "Saw Blade", "Chisel", "Level", "Pliers"),
    "FAST": ("Wood Screw", "Hex Bolt", "Lag Screw", "Anchor", "Washer", "Rivet", "Nail", "Staple"),
    "SAFE": ("Glove", "Goggles", "Ear Plug", "Hard Hat", "Vest", "Respirator", "Knee Pad", "Boot"),
}
_ITEM_SIZES = (
    "Small", "Medium", "Large", "XL", "1/4in", "1/2in", "3/4in", "1in", "2in", "6in", "12in",
    "Steel", "Brass", "Chrome", "Black", "White", "Zinc", "10pk", "25pk", "100pk",
)  # fmt: skip
_FAMILIES = {"HRDW": "Hardware", "ELEC": "Hardware", "PLMB": "Parts", "TOOL": "Parts", "FAST": "Parts"}


@dataclass(frozen=True)
class _Company:
    """One real company: how it is really called and where it is."""

    name: str
    legal: int | None  # index in _LEGAL, or None: no legal form
    phone: str  # ten digits
    number: int
    street: str
    street_type: int
    unit: tuple[int, int] | None  # (_UNITS index, number)
    city: int


@dataclass
class OrderBeforeGoLive:
    """A Closed Won opportunity from before go-live and the Sage order entered for it by hand."""

    account: int  # index in ExistingCompany.accounts
    name: str
    close_date: date
    po_number: str
    lines: list[tuple[int, Decimal, Decimal]]  # (index in products, quantity, unit price)
    sales_order_no: str
    completed: bool  # in SO_SalesOrderHistoryHeader only (invoiced); else an open order too


@dataclass
class ExistingCompany:
    """Both systems' records of one company, and the truth about them (see the module doc).

    `customer_pairs` and `item_pairs` index `accounts`/`sage_customers` and `products`/`items`;
    `linked_on_account` lists the pairs whose Account carries ExternalID__c already,
    `linked_in_sage` those whose customer carries the Account's ID in UDF_SALESFORCE_ID (filled
    once the Account has an ID)."""

    seed: int
    accounts: list[dict[str, Any]] = field(default_factory=list)
    sage_customers: list[dict[str, Any]] = field(default_factory=list)
    products: list[dict[str, Any]] = field(default_factory=list)  # Product2 fields + "UnitPrice"
    items: list[dict[str, Any]] = field(default_factory=list)
    customer_pairs: list[tuple[int, int]] = field(default_factory=list)
    item_pairs: list[tuple[int, int]] = field(default_factory=list)
    linked_on_account: set[int] = field(default_factory=set)  # indexes in customer_pairs
    linked_in_sage: set[int] = field(default_factory=set)
    orders: list[OrderBeforeGoLive] = field(default_factory=list)


# --- names ---------------------------------------------------------------------------------------


def _company_name(rng: random.Random) -> tuple[str, int | None]:
    kind = rng.random()
    trade = rng.choice(_TRADES)
    if kind < 0.45:
        base = f"{rng.choice(_PLACES)} {trade}"
    elif kind < 0.65:
        base = f"{rng.choice(_SURNAMES)} {trade}"
    elif kind < 0.75:
        base = (
            f"{rng.choice(_SURNAMES)} & Sons {trade}"
            if rng.random() < 0.6
            else f"{rng.choice(_SURNAMES)} Bros {trade}"
        )
    elif kind < 0.85:
        a, b = rng.sample(_SURNAMES, 2)
        base = f"{a} & {b}" if rng.random() < 0.5 else f"{a} {b} {trade}"
    elif kind < 0.92:
        letters = "".join(rng.choice(string.ascii_uppercase) for _ in range(rng.choice((2, 3))))
        base = f"{letters} {trade}"
    else:
        base = f"{rng.choice(_PLACES)} {trade} of {rng.choice(_CITIES)[0]}"
    legal = rng.choice((0, 0, 0, 1, 1, 1, 2, 2, 3, 4, 5, 6, None, None, None))
    return base, legal


def _legal_text(legal: int | None, rng: random.Random, canonical: bool) -> str:
    if legal is None:
        return ""
    forms = _LEGAL[legal]
    form = forms[0] if canonical else rng.choice(forms)
    return form if form.startswith(",") else f" {form}"


def _abbreviate(name: str, rng: random.Random) -> str:
    words = name.split(" ")
    candidates = [i for i, w in enumerate(words) if w in _ABBREVIATIONS]
    if not candidates:
        return name
    i = rng.choice(candidates)
    short = _ABBREVIATIONS[words[i]]
    words[i] = short + ("." if rng.random() < 0.4 else "")
    return " ".join(words)


def _typo(name: str, rng: random.Random) -> str:
    words = name.split(" ")
    long = [i for i, w in enumerate(words) if len(w) >= 5 and w.isalpha()]
    if not long:
        return name
    i = rng.choice(long)
    w = words[i]
    at = rng.randrange(1, len(w) - 1)
    kind = rng.random()
    if kind < 0.35:
        w = w[:at] + w[at + 1 :]  # a letter left out
    elif kind < 0.7:
        w = w[:at] + w[at + 1] + w[at] + w[at + 2 :]  # two letters swapped
    else:
        w = w[:at] + w[at] + w[at:]  # a letter doubled
    words[i] = w
    return " ".join(words)


def _punctuation(name: str, rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.4 and "&" in name:
        return name.replace("&", "and")
    if kind < 0.6 and " and " in name:
        return name.replace(" and ", " & ")
    if kind < 0.8:
        return name.replace(".", "").replace(",", "")
    return name.replace("-", " ").replace("'", "")


def _fold_accents(text: str) -> str:
    table = str.maketrans("üóñëéèáíúçÜÓÑËÉ", "uoneeeaiucUONEE")
    return text.translate(table)


def _written(company: _Company, rng: random.Random, sage: bool) -> str:
    """The company's name as one side typed it."""
    name = company.name
    if rng.random() < 0.05:
        name = f"The {name}"
    name += _legal_text(company.legal, rng, canonical=rng.random() < 0.5)
    if company.legal is not None and rng.random() < 0.12:
        name = name.replace(_legal_text(company.legal, rng, canonical=True), "")  # left off
    edits: list[tuple[float, Callable[[str, random.Random], str]]] = [
        (0.2, _abbreviate),
        (0.2, _punctuation),
        (0.08, _typo),
    ]
    for chance, edit in edits:
        if rng.random() < chance:
            name = edit(name, rng)
    if sage and rng.random() < 0.5:
        name = _fold_accents(name)
    if sage and rng.random() < 0.2:
        name = name.upper()
    elif not sage and rng.random() < 0.04:
        name = name.lower()
    return _sage_text(name, 30) if sage else name


def _sage_text(text: str, length: int) -> str:
    """`text` as a Sage column holds it: Windows-1252 only, cut to its length."""
    folded = text.encode("cp1252", errors="replace").decode("cp1252")
    return folded[:length].rstrip()


# --- phones and addresses ------------------------------------------------------------------------


def _phone(digits: str, rng: random.Random, limit: int | None) -> str:
    a, b, c = digits[:3], digits[3:6], digits[6:]
    formats = (
        f"({a}) {b}-{c}",
        f"{a}-{b}-{c}",
        f"{a}.{b}.{c}",
        f"{a} {b} {c}",
        f"+1 {a}-{b}-{c}",
        f"1-{a}-{b}-{c}",
        f"{a}{b}{c}",
    )
    text = rng.choice(formats)
    if rng.random() < 0.08:
        ext = f" x{rng.randrange(10, 999)}"
        if limit is None or len(text + ext) <= limit:
            text += ext
    return text


def _street(company: _Company, rng: random.Random, unit_inline: bool) -> tuple[str, str]:
    """Line 1 and line 2 of the company's street address, abbreviated or not."""
    full, short = _STREET_TYPES[company.street_type]
    street_type = full if rng.random() < 0.4 else short + ("." if rng.random() < 0.2 else "")
    name = company.street
    if " " not in name and rng.random() < 0.1:
        name = name.upper()
    line1 = f"{company.number} {name} {street_type}"
    line2 = ""
    if company.unit is not None and rng.random() < 0.85:
        (unit_full, unit_short), unit_no = _UNITS[company.unit[0]], company.unit[1]
        unit = rng.choice((f"{unit_full} {unit_no}", f"{unit_short} {unit_no}", f"#{unit_no}"))
        if unit_inline:
            line1 = f"{line1} {unit}"
        else:
            line2 = unit
    return line1, line2


def _zip(company: _Company, rng: random.Random) -> str:
    prefix = _CITIES[company.city][3]
    code = f"{prefix}{company.number % 97:02d}"
    return f"{code}-{rng.randrange(1000, 9999)}" if rng.random() < 0.15 else code


def _account(company: _Company, rng: random.Random) -> dict[str, Any]:
    city, state, state_name, _, _ = _CITIES[company.city]
    line1, line2 = _street(company, rng, unit_inline=rng.random() < 0.4)
    record: dict[str, Any] = {
        "Name": _written(company, rng, sage=False),
        "Phone": _phone(company.phone, rng, None) if rng.random() < 0.92 else None,
        "BillingStreet": f"{line1}\n{line2}" if line2 else line1,
        "BillingCity": city if rng.random() < 0.95 else city.upper(),
        "BillingState": state if rng.random() < 0.8 else state_name,
        "BillingPostalCode": _zip(company, rng),
        "BillingCountry": rng.choice(("USA", "United States", "US", None)),
        "Type": rng.choice(("Customer - Direct", "Customer - Direct", "Customer - Channel")),
    }
    return {k: v for k, v in record.items() if v is not None}


def _sage_customer(company: _Company, rng: random.Random, division: str, number: str) -> dict[str, Any]:
    city, state, _, _, _ = _CITIES[company.city]
    line1, line2 = _street(company, rng, unit_inline=rng.random() < 0.3)
    if rng.random() < 0.25:
        line1 = line1.upper()
    return {
        "ARDivisionNo": division,
        "CustomerNo": number,
        "CustomerName": _written(company, rng, sage=True),
        "AddressLine1": _sage_text(line1, 30),
        "AddressLine2": _sage_text(line2, 30),
        "City": _sage_text(city, 20),
        "State": state,
        "ZipCode": _zip(company, rng)[:10],
        "CountryCode": "USA",
        "TelephoneNo": _phone(company.phone, rng, 17) if rng.random() < 0.92 else "",
        "CustomerType": rng.choice(("RETL", "WHSL", "DIST")),
        "TermsCode": rng.choice(("00", "01", "02", "05")),
        "CustomerStatus": "A" if rng.random() < 0.95 else "I",
        "CreditLimit": f"{rng.choice((0, 5000, 10000, 25000, 50000)):.2f}",
    }


def _moved(company: _Company, rng: random.Random) -> _Company:
    """The same company at another address in the same city (one side was not updated)."""
    return _Company(
        company.name,
        company.legal,
        company.phone,
        rng.randrange(10, 9999),
        rng.choice(_STREET_NAMES),
        rng.randrange(len(_STREET_TYPES)),
        None,
        company.city,
    )


# --- companies -----------------------------------------------------------------------------------


def _new_company(
    rng: random.Random, taken: set[str], name: str | None = None, city: int | None = None
) -> _Company:
    legal = rng.choice((0, 1, 2, None))
    while name is None or _identity(name) in taken:
        name, legal = _company_name(rng)
    taken.add(_identity(name))
    city = rng.randrange(len(_CITIES)) if city is None else city
    area = _CITIES[city][4]
    exchange = f"{rng.randrange(2, 10)}{rng.randrange(0, 10)}{rng.randrange(2, 10)}"
    phone = f"{area}{exchange}{rng.randrange(0, 10000):04d}"
    unit = (
        (rng.randrange(len(_UNITS)), rng.choice((100, 110, 200, 210, 300, 400, 1200)))
        if rng.random() < 0.35
        else None
    )
    return _Company(
        name,
        legal,
        phone,
        rng.randrange(10, 9999),
        rng.choice(_STREET_NAMES),
        rng.randrange(len(_STREET_TYPES)),
        unit,
        city,
    )


def _identity(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _companies(count: int, rng: random.Random) -> list[_Company]:
    """`count` companies, among them branches (one name, several cities) and near-namesakes."""
    taken: set[str] = set()
    out: list[_Company] = []
    while len(out) < count:
        company = _new_company(rng, taken)
        out.append(company)
        roll = rng.random()
        if roll < 0.04:  # a branch in another city, called the same
            other = rng.randrange(len(_CITIES))
            out.append(replace(_new_company(rng, set(), company.name, other), legal=company.legal))
        elif roll < 0.08:  # another company, nearly the same name
            words = company.name.split(" ")
            trade = words[-1]
            near = " ".join([*words[:-1], _RELATED_TRADES.get(trade, trade + " Center")])
            if _identity(near) not in taken:
                out.append(_new_company(rng, taken, near))
    return out[:count]


def _customer_numbers(companies: list[_Company], rng: random.Random) -> list[tuple[str, str]]:
    used: set[tuple[str, str]] = set()
    out = []
    for i, company in enumerate(companies):
        division = "01" if rng.random() < 0.8 else "02"
        letters = re.sub(r"[^A-Z]", "", _fold_accents(company.name).upper())[:4] or "CUST"
        number = f"{letters}{i + 1:04d}" if rng.random() < 0.7 else f"{i + 1:07d}"
        while (division, number) in used:
            number = f"{number[:18]}{rng.randrange(10)}"
        used.add((division, number))
        out.append((division, number))
    return out


# --- products ------------------------------------------------------------------------------------


def _product_code(code: str, rng: random.Random) -> str:
    """An item code as Salesforce's ProductCode has it: the same, or differing in case, spacing,
    dashes, a prefix or zero padding."""
    roll = rng.random()
    line, _, number = code.partition("-")
    if roll < 0.4:
        return code
    if roll < 0.55:
        return code.lower()
    if roll < 0.65:
        return f"{line} {number}"
    if roll < 0.75:
        return f"{line}{number}"
    if roll < 0.88:
        return f"{rng.choice(('SKU-', 'FG-', 'P-'))}{code}"
    if roll < 0.94:
        return f"{line}-0{number}"
    return f" {code} " if rng.random() < 0.5 else f"{line}_{number}"


def _product_name(description: str, rng: random.Random) -> str:
    noun, _, size = description.rpartition(" ")
    roll = rng.random()
    if roll < 0.35:
        return description
    if roll < 0.55:
        return f"{size} {noun}"
    if roll < 0.7:
        return f"{noun}, {size}"
    if roll < 0.85:
        return f"{noun} - {size}".upper() if rng.random() < 0.3 else f"{noun} - {size}"
    return f"{noun} ({size})"


def _items(count: int, rng: random.Random) -> list[dict[str, Any]]:
    lines = list(_ITEM_LINES.items())
    rows = [
        {"ItemCode": "/FREIGHT", "ItemType": "3", "ItemCodeDesc": "Freight charge", "StandardUnitPrice": "0"},
        {
            "ItemCode": "/HANDLING",
            "ItemType": "3",
            "ItemCodeDesc": "Handling charge",
            "StandardUnitPrice": "0",
        },
    ]
    for i in range(count - len(rows)):
        line, nouns = lines[i % len(lines)]
        noun = nouns[(i // len(lines)) % len(nouns)]
        size = _ITEM_SIZES[(i // (len(lines) * len(nouns))) % len(_ITEM_SIZES)]
        cost = Decimal(rng.randrange(50, 50000)) / 100
        price = (cost * Decimal(rng.choice(("1.25", "1.4", "1.6", "2")))).quantize(Decimal("0.01"))
        rows.append(
            {
                "ItemCode": f"{line}-{1000 + i}",
                "ItemType": "1",
                "ItemCodeDesc": f"{noun} {size}"[:30],
                "ProductLine": line,
                "StandardUnitOfMeasure": "EACH",
                "StandardUnitPrice": str(price),
                "StandardUnitCost": str(cost),
                "InactiveItem": "N" if rng.random() < 0.96 else "Y",
            }
        )
    return rows


def _product(item: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    price = Decimal(item["StandardUnitPrice"])
    if rng.random() < 0.2:
        price = (price * Decimal(rng.choice(("0.9", "0.95", "1.05", "1.1")))).quantize(Decimal("0.01"))
    code = item["ItemCode"]
    if rng.random() < 0.02 and code[-2:].isdigit():
        code = code[:-2] + code[-1] + code[-2]  # two digits swapped when it was typed in
    return {
        "ProductCode": _product_code(code, rng),
        "Name": _product_name(item["ItemCodeDesc"], rng),
        "Family": _FAMILIES.get(str(item.get("ProductLine")), "Other"),
        "IsActive": item.get("InactiveItem") != "Y",
        "UnitPrice": price,
    }


def _salesforce_only_product(n: int, rng: random.Random) -> dict[str, Any]:
    kind = rng.choice(("SVC", "BND", "WAR"))
    names = {"SVC": "Installation Service", "BND": "Starter Bundle", "WAR": "Extended Warranty"}
    return {
        "ProductCode": f"{kind}-{100 + n}",
        "Name": f"{names[kind]} {rng.choice(('Basic', 'Plus', 'Pro', 'Premium'))} {n}",
        "Family": "Service",
        "IsActive": True,
        "UnitPrice": Decimal(rng.randrange(20, 900)),
    }


# --- the whole company ---------------------------------------------------------------------------


def generate(
    customers: int, seed: int = 13, *, items: int | None = None, go_live: date | None = None
) -> ExistingCompany:
    """The company with `customers` Sage customers (about 3/4 of them also an Account), about
    customers/3 Salesforce-only Accounts, `items` Sage items (default customers/4, at least 40)
    and the products Salesforce has for most of them (see the module doc)."""
    rng = random.Random(seed)  # noqa: S311 - sandbox data, not security
    go_live = go_live or date(2026, 1, 1)
    out = ExistingCompany(seed=seed)
    salesforce_only = customers // 3
    companies = _companies(customers + salesforce_only, rng)
    numbers = _customer_numbers(companies[:customers], rng)
    order = list(range(len(companies)))
    rng.shuffle(order)  # branches and namesakes are spread over both sides' lists
    for index in order:
        company = companies[index]
        if index >= customers:  # a prospect: Salesforce only
            out.accounts.append(_account(company, rng))
            continue
        division, number = numbers[index]
        both = rng.random() < 0.75
        sage_side = _moved(company, rng) if both and rng.random() < 0.06 else company
        out.sage_customers.append(_sage_customer(sage_side, rng, division, number))
        if not both:
            continue
        account = _account(company, rng)
        if rng.random() < 0.1:  # another number on one side: the AP line, a new main line
            account["Phone"] = _phone(_new_company(rng, set(), company.name).phone, rng, None)
        out.accounts.append(account)
        out.customer_pairs.append((len(out.accounts) - 1, len(out.sage_customers) - 1))
        pair = len(out.customer_pairs) - 1
        roll = rng.random()
        if roll < 0.04:
            out.linked_on_account.add(pair)
            account["ExternalID__c"] = f"{division}-{number}"
        elif roll < 0.07:
            out.linked_in_sage.add(pair)
        elif roll < 0.09:
            out.linked_on_account.add(pair)
            out.linked_in_sage.add(pair)
            account["ExternalID__c"] = f"{division}-{number}"
    _add_products(out, max(40, customers // 4), rng, items)
    _add_orders(out, rng, go_live)
    return out


def _add_products(out: ExistingCompany, default: int, rng: random.Random, items: int | None) -> None:
    out.items = _items(items or default, rng)
    for index, item in enumerate(out.items):
        if item["ItemType"] != "1" or rng.random() >= 0.8:
            continue  # charges and parts Salesforce never sells
        out.products.append(_product(item, rng))
        out.item_pairs.append((len(out.products) - 1, index))
    for n in range(max(3, len(out.items) // 10)):
        out.products.append(_salesforce_only_product(n, rng))


def _add_orders(out: ExistingCompany, rng: random.Random, go_live: date) -> None:
    """Won opportunities on about 4% of the paired Accounts, each with its order typed into Sage."""
    sold = [p for p, i in out.item_pairs if out.items[i]["InactiveItem"] == "N"]
    if not sold:
        return
    for account, _ in out.customer_pairs:
        if rng.random() >= 0.04:
            continue
        close = go_live - timedelta(days=rng.randrange(5, 300))
        lines = []
        for product in rng.sample(sold, k=min(len(sold), rng.randrange(1, 4))):
            quantity = Decimal(rng.randrange(1, 25))
            lines.append((product, quantity, Decimal(out.products[product]["UnitPrice"])))
        name = out.accounts[account]["Name"]
        out.orders.append(
            OrderBeforeGoLive(
                account=account,
                name=f"{name[:60]} - {close:%b %Y} order",
                close_date=close,
                po_number=f"PO-{rng.randrange(10000, 99999)}",
                lines=lines,
                sales_order_no=f"{len(out.orders) + 1:07d}",
                completed=(go_live - close).days > 30,
            )
        )
