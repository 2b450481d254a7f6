"""SOQL parsed with a real grammar (lark, LALR) into a small syntax tree.

What it owns: `parse(text) -> Select`, the SOQL subset the connectors and operators use:

    SELECT <items> FROM <object> [WHERE <condition>] [ORDER BY <order>] [LIMIT n] [OFFSET n]

- items: fields, parent paths (`Account.Name`, `Opportunity.Account.ExternalID__c`), child
  subqueries (`(SELECT Id, Quantity FROM OpportunityLineItems WHERE ... ORDER BY ... LIMIT n)`),
  `COUNT()`, aggregates without GROUP BY (`COUNT(Id)`, `COUNT_DISTINCT`, `MIN`, `MAX`, `SUM`,
  `AVG`, with an optional alias), `FIELDS(ALL|STANDARD|CUSTOM)`;
- conditions: `= != <> < > <= >=`, `LIKE`, `IN (...)`, `NOT IN (...)`, semi-joins
  `Id IN (SELECT AccountId FROM Contact ...)`, `AND`, `OR`, `NOT` and parentheses. As in
  Salesforce, AND and OR cannot be mixed at one level without parentheses;
- literals: strings, numbers, true/false/null, dates (`2024-05-01`), datetimes
  (`2024-05-01T10:00:00Z`, `...+02:00`, fractional seconds) and TODAY, YESTERDAY, TOMORROW,
  LAST_N_DAYS:n, NEXT_N_DAYS:n.

String literals follow Salesforce's escaping rules: `\\'`, `\\"`, `\\\\`, `\\n`, `\\r`, `\\t`,
`\\b`, `\\f`, `\\uXXXX`, and in LIKE patterns `\\%` and `\\_` for a literal percent sign and
underscore. Any other backslash sequence, and an unescaped quote inside a literal, is a syntax
error. The lexer takes a whole quoted literal as one token, so a value can never turn into query
text: `'O\\'Brien'` is the value O'Brien, and `'\\' OR Name != \\''` is the value ' OR Name != '.
Anything outside the grammar (GROUP BY, HAVING, WITH, USING SCOPE, TYPEOF, FOR UPDATE, INCLUDES,
bind variables, aliases on the object) raises `SoqlSyntaxError`, which the REST layer answers with
400 MALFORMED_QUERY. Names (objects, fields) are resolved later, in query.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError

GRAMMAR = r"""
start: select

select: "SELECT"i select_list "FROM"i NAME where? order? limit? offset?
subselect: "SELECT"i select_list "FROM"i NAME where? order? limit?

select_list: select_item ("," select_item)*
?select_item: field_ref
            | func_call
            | "(" subselect ")"                      -> subquery
func_call: NAME "(" [field_ref] ")" [NAME]

field_ref: NAME ("." NAME)*

where: "WHERE"i condition
?condition: or_chain | and_chain | unary
or_chain: unary ("OR"i unary)+
and_chain: unary ("AND"i unary)+
?unary: "NOT"i unary                                 -> not_
      | "(" condition ")"
      | comparison
?comparison: field_ref COMPARATOR value              -> compare
           | field_ref "LIKE"i STRING                -> like
           | field_ref "IN"i "(" value_list ")"      -> in_list
           | field_ref "NOT"i "IN"i "(" value_list ")" -> not_in_list
           | field_ref "IN"i "(" subselect ")"       -> in_select
           | field_ref "NOT"i "IN"i "(" subselect ")" -> not_in_select
value_list: value ("," value)*
?value: STRING                                       -> string
      | NUMBER                                       -> number
      | DATETIME                                     -> datetime
      | DATE                                         -> date
      | DATE_FN                                      -> date_fn
      | "TRUE"i                                      -> true
      | "FALSE"i                                     -> false
      | "NULL"i                                      -> null

order: "ORDER"i "BY"i order_item ("," order_item)*
order_item: field_ref [DIRECTION] [nulls]
nulls: "NULLS"i NULLS_WHICH
limit: "LIMIT"i INT
offset: "OFFSET"i INT

DIRECTION: /(ASC|DESC)(?![A-Za-z0-9_])/i
NULLS_WHICH: /(FIRST|LAST)(?![A-Za-z0-9_])/i
COMPARATOR: "=" | "!=" | "<>" | "<=" | ">=" | "<" | ">"
NAME: /[A-Za-z][A-Za-z0-9_]*/
STRING: /'(?:[^'\\]|\\.)*'/s
DATETIME.3: /\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:?\d{2})/
DATE.2: /\d{4}-\d{2}-\d{2}(?![0-9T])/
DATE_FN.2: /((LAST|NEXT)_N_DAYS:\d+|TODAY|YESTERDAY|TOMORROW)(?![A-Za-z0-9_])/i
NUMBER.1: /[+-]?(\d+(\.\d*)?|\.\d+)/
INT: /\d+/

%import common.WS
%ignore WS
"""

_ESCAPES = {"'": "'", '"': '"', "\\": "\\", "n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f"}


class SoqlSyntaxError(ValueError):
    """The text is not SOQL this emulator understands (Salesforce: MALFORMED_QUERY)."""


@dataclass(frozen=True)
class FieldRef:
    path: tuple[str, ...]

    @property
    def text(self) -> str:
        return ".".join(self.path)


@dataclass(frozen=True)
class Literal:
    kind: str  # string, number, boolean, null, date, datetime, date_fn
    value: Any
    raw: str
    like_regex: str | None = None  # for strings: the LIKE pattern as an anchored regex


@dataclass
class FunctionCall:
    name: str  # upper case: COUNT, COUNT_DISTINCT, MIN, MAX, SUM, AVG, FIELDS
    argument: FieldRef | None
    alias: str | None


@dataclass
class SubQuery:
    select: Select


@dataclass
class Comparison:
    field: FieldRef
    op: str  # = != < > <= >= LIKE IN NOT IN
    value: Literal | list[Literal] | Select


@dataclass
class BoolOp:
    op: str  # AND, OR
    operands: list[Condition]


@dataclass
class Not:
    operand: Condition


Condition = Comparison | BoolOp | Not
SelectItem = FieldRef | FunctionCall | SubQuery


@dataclass
class OrderItem:
    field: FieldRef
    descending: bool = False
    nulls_last: bool = False


@dataclass
class Select:
    items: list[SelectItem]
    sobject: str
    where: Condition | None = None
    order: list[OrderItem] = field(default_factory=list)
    limit: int | None = None
    offset: int | None = None


def unescape(token: str) -> tuple[str, str]:
    """A quoted SOQL literal's value and its LIKE pattern as a regex; SoqlSyntaxError if invalid."""
    body = token[1:-1]
    text: list[str] = []
    pattern: list[str] = []
    i = 0
    while i < len(body):
        char = body[i]
        if char == "\\":
            if i + 1 >= len(body):
                raise SoqlSyntaxError(f"Invalid string literal {token}: a trailing backslash")
            nxt = body[i + 1]
            if nxt in _ESCAPES:
                text.append(_ESCAPES[nxt])
                pattern.append(re.escape(_ESCAPES[nxt]))
                i += 2
            elif nxt in "%_":
                text.append(nxt)
                pattern.append(re.escape(nxt))
                i += 2
            elif nxt == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", body[i + 2 : i + 6]):
                decoded = chr(int(body[i + 2 : i + 6], 16))
                text.append(decoded)
                pattern.append(re.escape(decoded))
                i += 6
            else:
                raise SoqlSyntaxError(
                    f"Invalid string literal {token}. Illegal character sequence '\\{nxt}' in string literal."
                )
        else:
            text.append(char)
            pattern.append(".*" if char == "%" else "." if char == "_" else re.escape(char))
            i += 1
    return "".join(text), "".join(pattern)


@v_args(inline=True)
class _ToAst(Transformer[Token, Select]):
    def start(self, select: Select) -> Select:
        return select

    def select(self, items: list[SelectItem], sobject: Token, *clauses: Any) -> Select:
        result = Select(items=items, sobject=str(sobject))
        for clause in clauses:
            kind, value = clause
            setattr(result, kind, value)
        return result

    subselect = select

    def select_list(self, *items: SelectItem) -> list[SelectItem]:
        return list(items)

    def subquery(self, select: Select) -> SubQuery:
        return SubQuery(select)

    def func_call(self, name: Token, argument: FieldRef | None, alias: Token | None) -> FunctionCall:
        return FunctionCall(str(name).upper(), argument, str(alias) if alias is not None else None)

    def field_ref(self, *names: Token) -> FieldRef:
        return FieldRef(tuple(str(n) for n in names))

    def where(self, condition: Condition) -> tuple[str, Condition]:
        return "where", condition

    def or_chain(self, *operands: Condition) -> BoolOp:
        return BoolOp("OR", list(operands))

    def and_chain(self, *operands: Condition) -> BoolOp:
        return BoolOp("AND", list(operands))

    def not_(self, operand: Condition) -> Not:
        return Not(operand)

    def compare(self, ref: FieldRef, op: Token, value: Literal) -> Comparison:
        return Comparison(ref, "!=" if str(op) == "<>" else str(op), value)

    def like(self, ref: FieldRef, token: Token) -> Comparison:
        return Comparison(ref, "LIKE", self.string(token))

    def in_list(self, ref: FieldRef, values: list[Literal]) -> Comparison:
        return Comparison(ref, "IN", values)

    def not_in_list(self, ref: FieldRef, values: list[Literal]) -> Comparison:
        return Comparison(ref, "NOT IN", values)

    def in_select(self, ref: FieldRef, select: Select) -> Comparison:
        return Comparison(ref, "IN", select)

    def not_in_select(self, ref: FieldRef, select: Select) -> Comparison:
        return Comparison(ref, "NOT IN", select)

    def value_list(self, *values: Literal) -> list[Literal]:
        return list(values)

    def string(self, token: Token) -> Literal:
        text, pattern = unescape(str(token))
        return Literal("string", text, str(token), like_regex=pattern)

    def number(self, token: Token) -> Literal:
        raw = str(token)
        value: int | float = float(raw) if any(c in raw for c in ".") else int(raw)
        return Literal("number", value, raw)

    def datetime(self, token: Token) -> Literal:
        return Literal("datetime", str(token), str(token))

    def date(self, token: Token) -> Literal:
        return Literal("date", str(token), str(token))

    def date_fn(self, token: Token) -> Literal:
        return Literal("date_fn", str(token).upper(), str(token))

    def true(self) -> Literal:
        return Literal("boolean", True, "true")

    def false(self) -> Literal:
        return Literal("boolean", False, "false")

    def null(self) -> Literal:
        return Literal("null", None, "null")

    def order(self, *items: OrderItem) -> tuple[str, list[OrderItem]]:
        return "order", list(items)

    def order_item(self, ref: FieldRef, direction: Token | None, nulls: str | None) -> OrderItem:
        descending = direction is not None and str(direction).upper() == "DESC"
        nulls_last = nulls == "LAST" if nulls is not None else descending
        return OrderItem(ref, descending, nulls_last)

    def nulls(self, which: Token) -> str:
        return str(which).upper()

    def limit(self, token: Token) -> tuple[str, int]:
        return "limit", int(token)

    def offset(self, token: Token) -> tuple[str, int]:
        return "offset", int(token)


_PARSER = Lark(GRAMMAR, parser="lalr", maybe_placeholders=True)


def _position_error(text: str, err: UnexpectedInput, what: str) -> SoqlSyntaxError:
    line = getattr(err, "line", 1) or 1
    column = getattr(err, "column", 1) or 1
    source_line = text.splitlines()[line - 1] if text.splitlines() else text
    return SoqlSyntaxError(
        f"\n{source_line}\n{' ' * (column - 1)}^\nERROR at Row:{line}:Column:{column}\n{what}"
    )


def parse(text: str) -> Select:
    """The syntax tree of `text`; SoqlSyntaxError with Salesforce-like wording if it is not valid."""
    try:
        tree = _PARSER.parse(text)
        return _ToAst().transform(tree)
    except UnexpectedToken as err:
        token = err.token
        what = "unexpected end of query" if token.type == "$END" else f"unexpected token: '{token}'"
        raise _position_error(text, err, what) from None
    except UnexpectedCharacters as err:
        position = err.pos_in_stream or 0
        snippet = text[position : position + 12].split(" ")[0]
        raise _position_error(text, err, f"unexpected token: '{snippet}'") from None
    except UnexpectedEOF as err:
        raise _position_error(text, err, "unexpected end of query") from None
    except VisitError as err:
        if isinstance(err.orig_exc, SoqlSyntaxError):
            raise err.orig_exc from None
        raise
