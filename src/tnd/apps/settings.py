"""Settings dataclasses as command-line options: one way for every ``tnd`` sub-command.

A command's settings are a dataclass; each field is one option, ``--field-name``, and the
docstring under the field is its help text. The field's type gives the kind of option:

* ``bool``: a flag; ``--name`` when the default is False, ``--no-name`` when it is True.
* ``int``, ``float``, ``str`` (or ``X | None``): one value. Numbers are checked against the
  bounds given with :func:`setting` (ints default to ``[0, 2**31)``, C ints; floats must be finite).
* ``tuple[X, ...]``: a list. **Lists take space- or comma-separated values, or both**:
  ``--seeds 0 1 2``, ``--seeds 0,1,2`` and ``--seeds 0,1 2`` are the same. Values are distinct.
  A count is never spelled like a list: counts are single numbers (``--workers 2``).

Defaults are printed as a user types them (``(default: 0 1 2)``). A bad value gets one line,
``tnd pong: error: --seeds: expected integers in [0, 2**31) such as --seeds 0 1 2, got '0,x'``
(exit code 2), from :class:`Parser` (a one-line ``error``) or :class:`UsageError` (raised by
:func:`from_args` and by a settings class's own ``check()`` for options that only clash together).
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import math
import textwrap
import typing
from pathlib import Path
from typing import Any

__all__ = ["UsageError", "Parser", "setting", "field_docs", "add_options", "from_args", "check_values",
           "command_args", "LIST_CONVENTION"]

BIG = 2**31  # counts and seeds stay C ints (torch, numpy and the environments take them as such)
LIST_CONVENTION = ("Lists take space- or comma-separated values (--seeds 0 1 2 or --seeds 0,1,2); "
                   "counts are single numbers (--workers 2).")


class UsageError(ValueError):
    """A refused command line; its message starts with the option it names."""


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line, ``<prog>: error: <message>`` (no usage block)."""

    def error(self, message: str) -> typing.NoReturn:
        if message.startswith("argument "):
            message = message[len("argument "):]
        opt, _, rest = message.partition(": ")
        if rest == "expected at least one argument":  # a list option given no value
            for action in self._actions:
                if isinstance(action, _ListAction) and opt in action.option_strings:
                    message = str(action.field.fail(""))
        if message.startswith("unrecognized arguments") or message.startswith("the following arguments"):
            message += f" (see {self.prog} --help)"
        self.exit(2, f"{self.prog}: error: {message}\n")


@dataclasses.dataclass(frozen=True)
class _Spec:
    low: float | None = None  # ints: 0 when None
    high: float | None = None  # ints: below 2**31 when None
    low_open: bool = False
    high_open: bool = False
    choices: tuple | None = None
    metavar: str | None = None
    option: str | None = None  # the option's spelling, when not --field-name
    positional: bool = False
    kind: str | None = None  # "folder" / "file": a path whose nearest existing ancestor is a folder
    all_word: bool = False  # a list that also takes "all" (its default)
    allow_empty: bool = False
    example: str | None = None


def setting(default: Any = dataclasses.MISSING, **spec: Any) -> Any:
    """A dataclass field with option details (see :class:`_Spec`): ``low``/``high`` bounds (``None``:
    unbounded; ``low_open``/``high_open``), ``choices``, ``metavar``, ``option``, ``positional``,
    ``kind``, ``all_word``, ``allow_empty``, ``example``."""
    return dataclasses.field(default=default, metadata={"tnd": _Spec(**spec)})


def field_docs(cls: type) -> dict[str, str]:
    """The docstring under each field of ``cls`` and its dataclass bases, read from the source."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError, SyntaxError):  # pragma: no cover - no source available
            continue
        body = tree.body[0].body  # type: ignore[attr-defined]
        for a, b in zip(body, body[1:]):
            if isinstance(a, ast.AnnAssign) and isinstance(a.target, ast.Name) and isinstance(b, ast.Expr) \
                    and isinstance(getattr(b, "value", None), ast.Constant) and isinstance(b.value.value, str):
                docs[a.target.id] = " ".join(b.value.value.split())
    return docs


# ----------------------------------------------------------------------------- one field
@dataclasses.dataclass
class _Field:
    name: str
    default: Any
    base: type  # int, float, str or bool
    is_list: bool
    optional: bool
    spec: _Spec
    doc: str

    @property
    def option(self) -> str:
        if self.spec.option:
            return self.spec.option
        if self.spec.positional:
            return self.name.upper()
        return "--" + self.name.replace("_", "-")

    @property
    def required(self) -> bool:
        return self.default is dataclasses.MISSING

    def expected(self) -> str:
        """What a value must be, e.g. ``integers in [1, 2**31)``."""
        s = self.spec
        plural = self.is_list
        if s.choices is not None:
            return ("names from " if plural else "one of ") + ", ".join(map(str, s.choices)) + \
                (" (or all)" if s.all_word else "")
        if self.base is str:
            return "a path" if s.kind else ("names" if plural else "a name")
        noun = ("integers" if plural else "an integer") if self.base is int else \
            ("finite numbers" if plural else "a finite number")
        return noun + _range_text(s)

    def example(self) -> str:
        if self.spec.example:
            return self.spec.example
        d = self.default
        if self.is_list and d not in (None, dataclasses.MISSING) and len(d):
            vals = list(d)[:3 if self.base in (int, float) else 2]
        elif not self.is_list and d not in (None, dataclasses.MISSING):
            vals = [d]
        elif self.spec.choices:
            vals = list(self.spec.choices)[:2]
        else:
            lo = self.spec.low if self.spec.low is not None else 0
            vals = [int(lo) + 1 if self.spec.low_open else int(lo)] if self.base in (int, float) else ["NAME"]
        words = " ".join(_show(v) for v in vals)
        return words if self.spec.positional else f"{self.option} {words}"

    def fail(self, got: str) -> UsageError:
        shown = repr(got) if got else "nothing"
        return UsageError(f"{self.option}: expected {self.expected()} such as {self.example()}, got {shown}")

    def convert(self, text: str) -> Any:
        """One value from its text (UsageError naming the option when it does not fit)."""
        s = self.spec
        if self.base is str:
            if s.choices is not None and text not in s.choices:
                raise self.fail(text)
            if not text:
                raise self.fail(text)
            return text
        try:
            v: Any = int(text) if self.base is int else float(text)
        except ValueError:
            raise self.fail(text) from None
        if not _in_range(v, s):
            raise self.fail(text)
        return v

    def check(self, value: Any) -> None:
        """``value`` (of a settings object, however it was made) fits this option."""
        if value is None and (self.optional or self.default is None):
            return
        if self.base is bool:
            if not isinstance(value, bool):
                raise UsageError(f"{self.option}: expected True or False, got {value!r}")
            return
        if self.is_list and not isinstance(value, (tuple, list)):
            raise self.fail(_show(value))
        values = list(value) if self.is_list else [value]
        shown = " ".join(map(_show, values)) if self.is_list else _show(value)
        if self.is_list and not values and not self.spec.allow_empty:
            raise self.fail("")
        for v in values:
            if self.base is int and (isinstance(v, bool) or not isinstance(v, int)):
                raise self.fail(shown)
            if self.base is float and (isinstance(v, bool) or not isinstance(v, (int, float))):
                raise self.fail(shown)
            if self.base in (int, float) and not _in_range(v, self.spec):
                raise self.fail(shown)
            if self.base is str:
                if not isinstance(v, str) or not v or (self.spec.choices is not None and v not in self.spec.choices):
                    raise self.fail(shown)
        if self.is_list and len(set(values)) != len(values):
            raise UsageError(f"{self.option}: values must be distinct, got {shown!r}")
        if self.spec.kind and not self.is_list:
            _check_path(self.option, str(value), self.spec.kind)


def _range_text(s: _Spec) -> str:
    def num(v):
        return "2**31" if v == BIG else _show(float(v))

    lo, hi = s.low, s.high
    if lo is None and hi is None:
        return ""
    if hi is None:
        return f" {'>' if s.low_open else '>='} {num(lo)}"
    if lo is None:
        return f" {'<' if s.high_open else '<='} {num(hi)}"
    return f" in {'(' if s.low_open else '['}{num(lo)}, {num(hi)}{')' if s.high_open else ']'}"


def _in_range(v: float, s: _Spec) -> bool:
    if not math.isfinite(v):
        return False
    if s.low is not None and (v < s.low or (s.low_open and v == s.low)):
        return False
    return not (s.high is not None and (v > s.high or (s.high_open and v == s.high)))


def _check_path(option: str, text: str, kind: str) -> None:
    path = Path(text)
    if kind == "file" and path.is_dir():
        raise UsageError(f"{option}: {text} is a folder, expected a file path")
    for p in (path, *path.parents) if kind == "folder" else path.parents:
        if p.exists():
            if not p.is_dir():
                raise UsageError(f"{option} {text}: {p} is a file, not a folder")
            break


def _show(v: Any) -> str:
    """A value as a user types it (``2`` for 2.0; floats otherwise exact)."""
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e15:
        return str(int(v))
    return repr(v) if isinstance(v, float) else str(v)


def _fields(cls: type, skip: tuple[str, ...] = ()) -> list[_Field]:
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    out = []
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        typ, optional = hints[f.name], False
        args = typing.get_args(typ)
        if type(None) in args:  # X | None
            optional = True
            typ = next(a for a in args if a is not type(None))
        is_list = typing.get_origin(typ) is tuple
        base = typing.get_args(typ)[0] if is_list else typ
        if base not in (int, float, str, bool):
            raise TypeError(f"{cls.__name__}.{f.name}: unsupported option type {typ!r}")
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else dataclasses.MISSING)
        spec = f.metadata.get("tnd", _Spec())
        if base is int and spec.low is None:
            spec = dataclasses.replace(spec, low=0, low_open=False)
        if base is int and spec.high is None:
            spec = dataclasses.replace(spec, high=BIG, high_open=True)
        doc = docs.get(f.name)
        if not doc:
            raise TypeError(f"{cls.__name__}.{f.name}: an option needs a docstring (its help text)")
        out.append(_Field(f.name, default, base, is_list, optional, spec, doc))
    return out


# ----------------------------------------------------------------------------- argparse
class _ListAction(argparse.Action):
    """A list option: space- or comma-separated values, or both; every value converted and checked."""

    def __init__(self, *a: Any, field: _Field, **kw: Any) -> None:
        self.field = field
        super().__init__(*a, **kw)

    def __call__(self, parser, namespace, values, option_string=None):
        f = self.field
        words = [w.strip() for v in values for w in v.split(",")]
        if any(not w for w in words) and values:
            raise argparse.ArgumentError(self, _strip(f.fail(",".join(values) if len(values) == 1 else " ".join(values))))
        if f.spec.all_word and words == ["all"]:
            setattr(namespace, self.dest, tuple(f.default))
            return
        if not words and not f.spec.allow_empty:
            raise argparse.ArgumentError(self, _strip(f.fail("")))
        vals = []
        for token in values:  # the error shows the token as typed that holds the bad value
            try:
                vals += [f.convert(w.strip()) for w in token.split(",")]
            except UsageError:
                raise argparse.ArgumentError(self, _strip(f.fail(token))) from None
        vals = tuple(vals)
        if len(set(vals)) != len(vals):
            raise argparse.ArgumentError(self, f"values must be distinct, got {' '.join(values)!r}")
        setattr(namespace, self.dest, vals)


def _strip(err: UsageError) -> str:
    """The message without its leading ``--option: `` (argparse puts ``--option: `` in front)."""
    msg = str(err)
    return msg.split(": ", 1)[1] if ": " in msg else msg


def _scalar_type(f: _Field):
    def parse(text: str):
        try:
            return f.convert(text)
        except UsageError as e:
            raise argparse.ArgumentTypeError(_strip(e)) from None

    parse.__name__ = f.base.__name__
    return parse


def _help(f: _Field) -> str:
    text = f.doc
    if f.base is not bool and not f.required and f.default is not None:
        if f.is_list:
            shown = "all" if f.spec.all_word else " ".join(map(_show, f.default)) or "none"
        else:
            shown = _show(f.default)
        text += f" (default: {shown})"
    return text.replace("%", "%%")


def add_options(parser: argparse.ArgumentParser, cls: type, skip: tuple[str, ...] = (),
                group: str | None = None) -> None:
    """One option per field of the settings dataclass ``cls`` (except ``skip``); argparse's default
    is None for every option, so :func:`from_args` can tell given options from defaults."""
    target = parser.add_argument_group(group) if group else parser
    for f in _fields(cls, skip):
        help_text = _help(f)
        if f.spec.positional:
            target.add_argument(f.name, metavar=f.option, type=_scalar_type(f), help=help_text)
        elif f.base is bool:
            if f.default is True:
                target.add_argument("--no-" + f.option[2:], dest=f.name, action="store_false", default=None,
                                    help=help_text)
            else:
                target.add_argument(f.option, dest=f.name, action="store_true", default=None, help=help_text)
        elif f.is_list:
            metavar = f.spec.metavar or (f.name[:-1] if f.name.endswith("s") else f.name).upper()
            target.add_argument(f.option, dest=f.name, nargs="*" if f.spec.allow_empty else "+", action=_ListAction,
                                field=f, default=None,
                                metavar=metavar, help=help_text)
        else:
            metavar = f.spec.metavar or ("DIR" if f.spec.kind == "folder" else "FILE" if f.spec.kind == "file"
                                         else "{" + ",".join(map(str, f.spec.choices)) + "}" if f.spec.choices
                                         else f.base.__name__.upper() if f.base is not str else "TEXT")
            target.add_argument(f.option, dest=f.name, type=_scalar_type(f), default=None, metavar=metavar,
                                required=f.required, help=help_text)


def check_values(obj: Any, skip: tuple[str, ...] = ()) -> None:
    """Every field of the settings object ``obj`` fits its option, then ``obj.check()`` (the checks
    of options that only clash together) when the class has one; UsageError otherwise."""
    for f in _fields(type(obj), skip):
        f.check(getattr(obj, f.name))
    check = getattr(obj, "check", None)
    if callable(check):
        check()


def from_args(cls: type, args: argparse.Namespace, presets: dict[str, Any] | None = None,
              skip: tuple[str, ...] = ()) -> Any:
    """The settings of ``cls`` from parsed ``args``: defaults <- ``presets`` <- options given;
    checked by :func:`check_values`."""
    names = {f.name for f in dataclasses.fields(cls)}
    given = {k: v for k, v in vars(args).items() if k in names and v is not None}
    values = dict(presets or {})
    values.update(given)
    obj = cls(**values)
    check_values(obj, skip)
    return obj


def command_args(obj: Any, base: Any, skip: tuple[str, ...] = ()) -> list[str]:
    """The options that turn the settings ``base`` into ``obj``, as a user types them."""
    parts: list[str] = []
    for f in _fields(type(obj), skip):
        v = getattr(obj, f.name)
        if v == getattr(base, f.name):
            continue
        if f.base is bool:
            if f.default is True and v is False:
                parts.append("--no-" + f.option[2:])
            elif v is True:
                parts.append(f.option)
        elif f.spec.positional:
            parts.append(str(v))
        elif f.is_list:
            parts += [f.option, *map(_show, v)]
        elif v is not None:
            parts += [f.option, _show(v)]
    return parts

